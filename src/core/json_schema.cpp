#include "core/json_schema.hpp"

#include <arpa/inet.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <re2/re2.h>

#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp::schema {
namespace {

using rapidjson::Value;

enum TypeBit : unsigned { kNull = 1, kBoolean = 2, kObject = 4, kArray = 8, kNumber = 16, kString = 32, kInteger = 64 };
constexpr const char* kTypeNames[] = {"null", "boolean", "object", "array", "number", "string", "integer"};

enum class Format { None, DateTime, Date, Time, Email, Uri, Ipv4, Ipv6, Hostname, Uuid };

struct Node;
struct Dependency {
  std::string property;
  std::vector<std::string> required;  // the array form
  const Node* schema = nullptr;       // the schema form
};

// One compiled (sub)schema. `path` is its JSON Pointer from the root ("#",
// "#/properties/x"); keyword paths are path + "/" + keyword.
struct Node {
  std::string path;
  bool never = false;  // the schema false
  const Node* ref = nullptr;
  std::string ref_text;  // until resolved
  unsigned types = 0;
  std::vector<std::pair<std::string, const Node*>> properties;
  std::vector<std::pair<std::unique_ptr<re2::RE2>, const Node*>> pattern_properties;
  const Node* additional_properties = nullptr;
  const Node* property_names = nullptr;
  std::vector<std::string> required;
  std::optional<size_t> min_properties, max_properties;
  std::vector<Dependency> dependencies;
  const Node* items = nullptr;              // one schema for every item
  std::vector<const Node*> tuple;           // items as an array
  const Node* additional_items = nullptr;
  const Node* contains = nullptr;
  std::optional<size_t> min_items, max_items;
  bool unique_items = false;
  std::optional<size_t> min_length, max_length;
  std::optional<double> minimum, maximum, exclusive_minimum, exclusive_maximum, multiple_of;
  std::unique_ptr<re2::RE2> pattern;
  Format format = Format::None;
  const Value* enum_values = nullptr;  // an array, in the compiled copy of the schema
  const Value* const_value = nullptr;
  std::vector<const Node*> all_of, any_of, one_of;
  const Node* not_ = nullptr;
  const Node *if_ = nullptr, *then_ = nullptr, *else_ = nullptr;
};

// ---------------------------------------------------------------- values

std::optional<double> number_of(const Value& v) {
  if (v.IsNumber()) return v.GetDouble();
  if (auto raw = raw_number(v)) return std::strtod(std::string(*raw).c_str(), nullptr);
  return std::nullopt;
}

bool is_integer(const Value& v) {
  if (v.IsInt64() || v.IsUint64()) return true;
  auto d = number_of(v);
  return d && std::isfinite(*d) && std::floor(*d) == *d;
}

unsigned type_bit(const Value& v) {
  if (is_number(v)) return is_integer(v) ? (kNumber | kInteger) : kNumber;
  if (v.IsString()) return kString;
  if (v.IsObject()) return kObject;
  if (v.IsArray()) return kArray;
  if (v.IsBool()) return kBoolean;
  return kNull;
}

std::string type_name(const Value& v) {
  unsigned b = type_bit(v);
  if (b & kInteger) return "integer";
  for (int i = 0; i < 6; i++)
    if (b == (1u << i)) return kTypeNames[i];
  return "null";
}

size_t code_points(const Value& v) {
  size_t n = 0;
  for (rapidjson::SizeType i = 0; i < v.GetStringLength(); i++) n += (v.GetString()[i] & 0xC0) != 0x80;
  return n;
}

bool equal(const Value& a, const Value& b) {
  if (is_number(a) || is_number(b)) {
    if (!is_number(a) || !is_number(b)) return false;
    auto ra = raw_number(a), rb = raw_number(b);
    if (ra && rb) return *ra == *rb || *number_of(a) == *number_of(b);
    return *number_of(a) == *number_of(b);
  }
  if (a.GetType() != b.GetType()) return false;
  if (a.IsString()) return a.GetStringLength() == b.GetStringLength() && std::memcmp(a.GetString(), b.GetString(), a.GetStringLength()) == 0;
  if (a.IsArray()) {
    if (a.Size() != b.Size()) return false;
    for (rapidjson::SizeType i = 0; i < a.Size(); i++)
      if (!equal(a[i], b[i])) return false;
    return true;
  }
  if (a.IsObject()) {
    if (a.MemberCount() != b.MemberCount()) return false;
    for (auto& m : a.GetObject()) {
      auto it = b.FindMember(m.name);
      if (it == b.MemberEnd() || !equal(m.value, it->value)) return false;
    }
    return true;
  }
  return a == b;  // bool, null
}

// ---------------------------------------------------------------- formats

bool digits(std::string_view s, size_t at, size_t n) {
  if (at + n > s.size()) return false;
  for (size_t i = at; i < at + n; i++)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}
int num(std::string_view s, size_t at, size_t n) { return std::atoi(std::string(s.substr(at, n)).c_str()); }

bool full_date(std::string_view s) {
  if (s.size() != 10 || !digits(s, 0, 4) || s[4] != '-' || !digits(s, 5, 2) || s[7] != '-' || !digits(s, 8, 2)) return false;
  int y = num(s, 0, 4), m = num(s, 5, 2), d = num(s, 8, 2);
  static const int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m < 1 || m > 12 || d < 1 || d > kDays[m - 1]) return false;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return !(m == 2 && d == 29 && !leap);
}

// HH:MM:SS[.frac](Z|+HH:MM|-HH:MM); a leap second only at 23:59:60 UTC.
bool full_time(std::string_view s) {
  if (s.size() < 9 || !digits(s, 0, 2) || s[2] != ':' || !digits(s, 3, 2) || s[5] != ':' || !digits(s, 6, 2)) return false;
  int h = num(s, 0, 2), mi = num(s, 3, 2), sec = num(s, 6, 2);
  size_t i = 8;
  if (i < s.size() && s[i] == '.') {
    size_t from = ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') i++;
    if (i == from) return false;
  }
  if (i >= s.size()) return false;
  int offset = 0;
  if (s[i] == 'Z' || s[i] == 'z') {
    if (i + 1 != s.size()) return false;
  } else if (s[i] == '+' || s[i] == '-') {
    if (s.size() != i + 6 || !digits(s, i + 1, 2) || s[i + 3] != ':' || !digits(s, i + 4, 2)) return false;
    int oh = num(s, i + 1, 2), om = num(s, i + 4, 2);
    if (oh > 23 || om > 59) return false;
    offset = (s[i] == '+' ? 1 : -1) * (oh * 60 + om);
  } else {
    return false;
  }
  if (h > 23 || mi > 59 || sec > 60) return false;
  if (sec == 60) {
    int utc = ((h * 60 + mi - offset) % 1440 + 1440) % 1440;
    if (utc != 23 * 60 + 59) return false;
  }
  return true;
}

bool date_time(std::string_view s) {
  return s.size() > 11 && (s[10] == 'T' || s[10] == 't') && full_date(s.substr(0, 10)) && full_time(s.substr(11));
}

bool email(std::string_view s) {
  size_t at = s.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == s.size()) return false;
  std::string_view local = s.substr(0, at), domain = s.substr(at + 1);
  if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) return false;
  for (char c : s)
    if (static_cast<unsigned char>(c) <= ' ' || c == '\x7f') return false;
  return domain.find('@') == std::string_view::npos && domain.front() != '.' && domain.back() != '.';
}

bool hostname(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t from = 0;
  while (true) {
    size_t dot = s.find('.', from);
    std::string_view label = s.substr(from, dot == std::string_view::npos ? std::string_view::npos : dot - from);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    if (dot == std::string_view::npos) return true;
    from = dot + 1;
  }
}

bool ipv4(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (true) {
    size_t from = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') i++;
    size_t n = i - from;
    if (n == 0 || n > 3 || (n > 1 && s[from] == '0') || num(s, from, n) > 255) return false;
    if (++parts == 4) return i == s.size();
    if (i >= s.size() || s[i] != '.') return false;
    i++;
  }
}

bool ipv6(std::string_view s) {
  if (s.size() > 45) return false;
  unsigned char buf[16];
  return inet_pton(AF_INET6, std::string(s).c_str(), buf) == 1;
}

bool uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < 36; i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

// An absolute URI (RFC 3986): a scheme, then only characters a URI may hold,
// with every % followed by two hex digits.
bool uri(std::string_view s) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0 || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (size_t i = 1; i < colon; i++)
    if (!std::isalnum(static_cast<unsigned char>(s[i])) && s[i] != '+' && s[i] != '-' && s[i] != '.') return false;
  static const std::string_view kAllowed = "-._~:/?#[]@!$&'()*+,;=";
  for (size_t i = colon + 1; i < s.size(); i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '%') {
      if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
          !std::isxdigit(static_cast<unsigned char>(s[i + 2])))
        return false;
      i += 2;
    } else if (!std::isalnum(c) && kAllowed.find(static_cast<char>(c)) == std::string_view::npos) {
      return false;
    }
  }
  // "//" starts an authority: a '[' there must hold an address in brackets.
  std::string_view rest = s.substr(colon + 1);
  if (rest.starts_with("//")) {
    std::string_view auth = rest.substr(2, rest.find_first_of("/?#", 2) - 2);
    size_t open = auth.find('[');
    if (open != std::string_view::npos && auth.find(']', open) == std::string_view::npos) return false;
  }
  return true;
}

bool format_ok(Format f, std::string_view s) {
  switch (f) {
    case Format::None: return true;
    case Format::DateTime: return date_time(s);
    case Format::Date: return full_date(s);
    case Format::Time: return full_time(s);
    case Format::Email: return email(s);
    case Format::Uri: return uri(s);
    case Format::Ipv4: return ipv4(s);
    case Format::Ipv6: return ipv6(s);
    case Format::Hostname: return hostname(s);
    case Format::Uuid: return uuid(s);
  }
  return true;
}

const std::map<std::string_view, Format> kFormats = {
    {"date-time", Format::DateTime}, {"date", Format::Date}, {"time", Format::Time},         {"email", Format::Email},
    {"uri", Format::Uri},            {"ipv4", Format::Ipv4}, {"ipv6", Format::Ipv6},         {"hostname", Format::Hostname},
    {"uuid", Format::Uuid}};

const char* format_name(Format f) {
  for (auto& [name, g] : kFormats)
    if (g == f) return name.data();
  return "";
}

// ---------------------------------------------------------------- paths

std::string pointer_token(std::string_view key) {
  std::string out;
  for (char c : key) out += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
  return out;
}

// A key in a dotted instance path: bare when it is an identifier, else ["quoted"].
void append_key(std::string& path, std::string_view key) {
  bool bare = !key.empty() && !std::isdigit(static_cast<unsigned char>(key[0]));
  for (char c : key)
    bare = bare && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$');
  if (bare) {
    if (!path.empty()) path += '.';
    path += key;
  } else {
    Value k(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    path += '[' + to_json(k) + ']';
  }
}

}  // namespace

// ---------------------------------------------------------------- compiling

struct Schema::Impl {
  rapidjson::Document doc;  // the schema, copied: enum and const point into it
  std::deque<Node> nodes;   // stable addresses
  std::unordered_map<std::string, const Node*> by_pointer;
  const Node* root = nullptr;
  std::string where;

  Error refuse(const std::string& dotted, const std::string& rule) const {
    std::string field = where;
    if (!dotted.empty()) field += (field.empty() ? "" : ".") + dotted;
    return Error(ErrorKind::InvalidInput, field.empty() ? "schema" : field, rule);
  }

  static std::string dot(const std::string& dotted, std::string_view key) {
    std::string out = dotted;
    append_key(out, key);
    return out;
  }

  const Node* compile(const Value& s, const std::string& pointer, const std::string& dotted);
  void keyword(Node& n, std::string_view k, const Value& v, const std::string& dotted);
  const Node* resolve(const std::string& ref, const std::string& dotted);
  void check_cycles() const;
};

namespace {

size_t count_of(const Value& v, const std::string& dotted, const Schema::Impl& impl) {
  if (!is_number(v) || !is_integer(v) || *number_of(v) < 0)
    throw impl.refuse(dotted, "must be a non-negative integer");
  return static_cast<size_t>(*number_of(v));
}

double number_keyword(const Value& v, const std::string& dotted, const Schema::Impl& impl) {
  if (!is_number(v)) throw impl.refuse(dotted, "must be a number");
  return *number_of(v);
}

std::unique_ptr<re2::RE2> regex(const Value& v, const std::string& dotted, const Schema::Impl& impl) {
  if (!is_string(v)) throw impl.refuse(dotted, "must be a string (a regular expression)");
  re2::RE2::Options o;
  o.set_log_errors(false);
  o.set_max_mem(1 << 20);
  auto re = std::make_unique<re2::RE2>(re2::StringPiece(v.GetString(), v.GetStringLength()), o);
  if (!re->ok())
    throw impl.refuse(dotted, "is not a regular expression RE2 can run in linear time (" + re->error() + ")");
  return re;
}

}  // namespace

const Node* Schema::Impl::compile(const Value& s, const std::string& pointer, const std::string& dotted) {
  if (auto it = by_pointer.find(pointer); it != by_pointer.end()) return it->second;
  Node& n = nodes.emplace_back();
  n.path = pointer;
  by_pointer.emplace(pointer, &n);
  if (s.IsBool()) {
    n.never = !s.GetBool();
    return &n;
  }
  if (!s.IsObject()) throw refuse(dotted, "must be a JSON Schema: an object or a boolean");
  if (auto r = s.FindMember("$ref"); r != s.MemberEnd()) {  // draft-07: siblings of $ref are ignored
    if (!is_string(r->value)) throw refuse(dot(dotted, "$ref"), "must be a string");
    n.ref_text.assign(r->value.GetString(), r->value.GetStringLength());
    if (n.ref_text.empty() || n.ref_text[0] != '#')
      throw refuse(dot(dotted, "$ref"), "remote references are not supported: only \"#...\" within the plan");
    return &n;
  }
  for (auto& m : s.GetObject()) keyword(n, {m.name.GetString(), m.name.GetStringLength()}, m.value, dotted);
  return &n;
}

void Schema::Impl::keyword(Node& n, std::string_view k, const Value& v, const std::string& dotted) {
  const std::string at = dot(dotted, k);
  const std::string ptr = n.path + "/" + pointer_token(k);
  auto sub = [&](const Value& s, const std::string& p, const std::string& d) { return compile(s, p, d); };
  auto list = [&](std::vector<const Node*>& out) {
    if (!v.IsArray() || v.Empty()) throw refuse(at, "must be a non-empty array of schemas");
    for (rapidjson::SizeType i = 0; i < v.Size(); i++)
      out.push_back(sub(v[i], ptr + "/" + std::to_string(i), at + "[" + std::to_string(i) + "]"));
  };
  auto schemas_by_key = [&](auto&& each) {
    if (!v.IsObject()) throw refuse(at, "must be an object");
    for (auto& m : v.GetObject()) {
      std::string_view key(m.name.GetString(), m.name.GetStringLength());
      each(key, sub(m.value, ptr + "/" + pointer_token(key), dot(at, key)));
    }
  };
  if (k == "type") {
    auto one = [&](const Value& t, const std::string& d) {
      if (!is_string(t)) throw refuse(d, "must name a JSON type");
      std::string_view name(t.GetString(), t.GetStringLength());
      for (int i = 0; i < 7; i++)
        if (name == kTypeNames[i]) return n.types |= 1u << i, void();
      throw refuse(d, "\"" + std::string(name) + "\" is not a JSON Schema type (null, boolean, object, array, number, string, integer)");
    };
    if (v.IsArray()) {
      for (rapidjson::SizeType i = 0; i < v.Size(); i++) one(v[i], at + "[" + std::to_string(i) + "]");
    } else {
      one(v, at);
    }
  } else if (k == "properties") {
    schemas_by_key([&](std::string_view key, const Node* s) { n.properties.emplace_back(std::string(key), s); });
  } else if (k == "patternProperties") {
    if (!v.IsObject()) throw refuse(at, "must be an object");
    for (auto& m : v.GetObject()) {
      std::string_view key(m.name.GetString(), m.name.GetStringLength());
      Value pattern(m.name.GetString(), m.name.GetStringLength());
      n.pattern_properties.emplace_back(regex(pattern, dot(at, key), *this),
                                        sub(m.value, ptr + "/" + pointer_token(key), dot(at, key)));
    }
  } else if (k == "additionalProperties") {
    n.additional_properties = sub(v, ptr, at);
  } else if (k == "propertyNames") {
    n.property_names = sub(v, ptr, at);
  } else if (k == "required") {
    if (!v.IsArray()) throw refuse(at, "must be an array of property names");
    for (auto& r : v.GetArray()) {
      if (!is_string(r)) throw refuse(at, "must be an array of property names");
      n.required.emplace_back(r.GetString(), r.GetStringLength());
    }
  } else if (k == "minProperties") {
    n.min_properties = count_of(v, at, *this);
  } else if (k == "maxProperties") {
    n.max_properties = count_of(v, at, *this);
  } else if (k == "dependencies") {
    if (!v.IsObject()) throw refuse(at, "must be an object");
    for (auto& m : v.GetObject()) {
      std::string key(m.name.GetString(), m.name.GetStringLength());
      Dependency d{key, {}, nullptr};
      if (m.value.IsArray()) {
        for (auto& r : m.value.GetArray()) {
          if (!is_string(r)) throw refuse(dot(at, key), "must be an array of property names or a schema");
          d.required.emplace_back(r.GetString(), r.GetStringLength());
        }
      } else {
        d.schema = sub(m.value, ptr + "/" + pointer_token(key), dot(at, key));
      }
      n.dependencies.push_back(std::move(d));
    }
  } else if (k == "items") {
    if (v.IsArray()) {
      for (rapidjson::SizeType i = 0; i < v.Size(); i++)
        n.tuple.push_back(sub(v[i], ptr + "/" + std::to_string(i), at + "[" + std::to_string(i) + "]"));
    } else {
      n.items = sub(v, ptr, at);
    }
  } else if (k == "additionalItems") {
    n.additional_items = sub(v, ptr, at);
  } else if (k == "contains") {
    n.contains = sub(v, ptr, at);
  } else if (k == "minItems") {
    n.min_items = count_of(v, at, *this);
  } else if (k == "maxItems") {
    n.max_items = count_of(v, at, *this);
  } else if (k == "uniqueItems") {
    if (!v.IsBool()) throw refuse(at, "must be true or false");
    n.unique_items = v.GetBool();
  } else if (k == "minLength") {
    n.min_length = count_of(v, at, *this);
  } else if (k == "maxLength") {
    n.max_length = count_of(v, at, *this);
  } else if (k == "minimum") {
    n.minimum = number_keyword(v, at, *this);
  } else if (k == "maximum") {
    n.maximum = number_keyword(v, at, *this);
  } else if (k == "exclusiveMinimum") {
    n.exclusive_minimum = number_keyword(v, at, *this);
  } else if (k == "exclusiveMaximum") {
    n.exclusive_maximum = number_keyword(v, at, *this);
  } else if (k == "multipleOf") {
    n.multiple_of = number_keyword(v, at, *this);
    if (*n.multiple_of <= 0) throw refuse(at, "must be more than 0");
  } else if (k == "pattern") {
    n.pattern = regex(v, at, *this);
  } else if (k == "format") {
    if (!is_string(v)) throw refuse(at, "must be a string");
    auto f = kFormats.find(std::string_view(v.GetString(), v.GetStringLength()));
    if (f == kFormats.end())
      throw refuse(at, "\"" + std::string(v.GetString(), v.GetStringLength()) +
                           "\" is not a supported format (date-time, date, time, email, uri, ipv4, ipv6, hostname, uuid)");
    n.format = f->second;
  } else if (k == "enum") {
    if (!v.IsArray()) throw refuse(at, "must be an array");
    n.enum_values = &v;
  } else if (k == "const") {
    n.const_value = &v;
  } else if (k == "allOf") {
    list(n.all_of);
  } else if (k == "anyOf") {
    list(n.any_of);
  } else if (k == "oneOf") {
    list(n.one_of);
  } else if (k == "not") {
    n.not_ = sub(v, ptr, at);
  } else if (k == "if") {
    n.if_ = sub(v, ptr, at);
  } else if (k == "then") {
    n.then_ = sub(v, ptr, at);
  } else if (k == "else") {
    n.else_ = sub(v, ptr, at);
  } else if (k == "definitions") {
    schemas_by_key([](std::string_view, const Node*) {});
  } else if (k == "$schema") {
    if (!is_string(v) || (std::string_view(v.GetString()) != "http://json-schema.org/draft-07/schema#" &&
                          std::string_view(v.GetString()) != "http://json-schema.org/draft-07/schema"))
      throw refuse(at, "only draft-07 (http://json-schema.org/draft-07/schema#) is supported");
  } else if (k == "$id") {
    if (n.path != "#") throw refuse(at, "is supported at the root only: references resolve within the plan, by JSON Pointer");
  } else if (k == "title" || k == "description" || k == "$comment" || k == "default" || k == "examples" ||
             k == "readOnly" || k == "writeOnly" || k == "contentMediaType" || k == "contentEncoding") {
    // annotations: no effect on validation
  } else {
    throw refuse(at, "is not a supported JSON Schema draft-07 keyword");
  }
}

// A "#/a/b" reference: the node compiled at that pointer, or the value there compiled now.
const Node* Schema::Impl::resolve(const std::string& ref, const std::string& dotted) {
  std::string pointer;  // decoded, then re-encoded as our node paths are
  std::string_view frag(ref);
  frag.remove_prefix(1);
  std::string decoded;
  for (size_t i = 0; i < frag.size(); i++) {
    if (frag[i] == '%' && i + 2 < frag.size() + 0 && std::isxdigit(static_cast<unsigned char>(frag[i + 1])) &&
        i + 2 < frag.size() && std::isxdigit(static_cast<unsigned char>(frag[i + 2]))) {
      decoded += static_cast<char>(std::strtol(std::string(frag.substr(i + 1, 2)).c_str(), nullptr, 16));
      i += 2;
    } else {
      decoded += frag[i];
    }
  }
  if (!decoded.empty() && decoded[0] != '/') throw refuse(dotted, "\"" + ref + "\" is not a JSON Pointer (#/...): $id anchors are not supported");
  const Value* at = &doc;
  std::string dotted_at;
  size_t i = 0;
  while (i < decoded.size()) {
    size_t next = decoded.find('/', i + 1);
    std::string token = decoded.substr(i + 1, next == std::string::npos ? std::string::npos : next - i - 1);
    std::string key;
    for (size_t j = 0; j < token.size(); j++) {
      if (token[j] == '~' && j + 1 < token.size() && (token[j + 1] == '0' || token[j + 1] == '1')) {
        key += token[j + 1] == '0' ? '~' : '/';
        j++;
      } else {
        key += token[j];
      }
    }
    if (at->IsObject()) {
      auto it = at->FindMember(Value(key.data(), static_cast<rapidjson::SizeType>(key.size())));
      if (it == at->MemberEnd()) throw refuse(dotted, "\"" + ref + "\" points nowhere in the plan");
      at = &it->value;
    } else if (at->IsArray() && !key.empty() && key.find_first_not_of("0123456789") == std::string::npos &&
               std::stoul(key) < at->Size()) {
      at = &(*at)[static_cast<rapidjson::SizeType>(std::stoul(key))];
    } else {
      throw refuse(dotted, "\"" + ref + "\" points nowhere in the plan");
    }
    pointer += "/" + pointer_token(key);
    append_key(dotted_at, key);
    if (next == std::string::npos) break;
    i = next;
  }
  return compile(*at, "#" + pointer, dotted_at);
}

// A schema reached again through $ref, allOf, anyOf, oneOf, not, if/then/else
// or dependencies, on the same value, would be checked for ever.
void Schema::Impl::check_cycles() const {
  std::unordered_map<const Node*, int> state;  // 1: on the path, 2: done
  std::function<void(const Node*)> visit = [&](const Node* n) {
    if (!n) return;
    int& s = state[n];
    if (s == 2) return;
    if (s == 1)
      throw Error(ErrorKind::InvalidInput, where.empty() ? "schema" : where,
                  "$ref cycle: " + n->path + " refers back to itself without reaching into the value");
    s = 1;
    visit(n->ref);
    for (auto* c : n->all_of) visit(c);
    for (auto* c : n->any_of) visit(c);
    for (auto* c : n->one_of) visit(c);
    for (auto& d : n->dependencies) visit(d.schema);
    visit(n->not_), visit(n->if_), visit(n->then_), visit(n->else_);
    state[n] = 2;
  };
  for (auto& n : nodes) visit(&n);
}

Schema::Schema(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Schema::~Schema() = default;

std::shared_ptr<const Schema> Schema::compile(const Value& schema, const std::string& where) {
  auto impl = std::make_unique<Impl>();
  impl->where = where;
  impl->doc.CopyFrom(schema, impl->doc.GetAllocator());
  impl->root = impl->compile(impl->doc, "#", "");
  // Resolve references; resolving may compile more nodes (deque: no moves).
  for (size_t i = 0; i < impl->nodes.size(); i++) {
    Node& n = impl->nodes[i];
    if (!n.ref_text.empty() && !n.ref) {
      std::string dotted;  // the $ref keyword's own path, from its node's pointer
      for (size_t p = 2, q; p < n.path.size() + 1; p = q + 1) {
        q = n.path.find('/', p);
        if (q == std::string::npos) q = n.path.size();
        if (q > p) append_key(dotted, n.path.substr(p, q - p));
      }
      append_key(dotted, "$ref");
      n.ref = impl->resolve(n.ref_text, dotted);
    }
  }
  impl->check_cycles();
  return std::shared_ptr<const Schema>(new Schema(std::move(impl)));
}

// ---------------------------------------------------------------- validating

namespace {

// The instance path, built only when a violation is recorded.
struct Path {
  std::vector<std::pair<std::string_view, int>> steps;  // a key, or an index (-1: key)
  std::string text() const {
    std::string out;
    for (auto& [key, index] : steps) {
      if (index >= 0)
        out += '[' + std::to_string(index) + ']';
      else
        append_key(out, key);
    }
    return out;
  }
};

struct Run {
  std::vector<Violation>* out;  // nullptr: quiet, stop at the first failure
  size_t max;
  Path path;
  bool full() const { return out && out->size() >= max; }
  // Records a violation; returns false (the value fails).
  bool fail(const Node& n, const char* keyword, std::string message, const Value* value) {
    if (out && out->size() < max)
      out->push_back({keyword, path.text(), n.path + "/" + keyword, std::move(message), value ? type_name(*value) : ""});
    return false;
  }
};

bool check(const Node& n, const Value& v, Run& run);

// Quiet: no violation recorded, no path kept, stops at the first failure.
bool quietly(const Node& n, const Value& v, Run&) {
  Run q{nullptr, 0, {}};
  return check(n, v, q);
}

// The path follows the value only when violations are recorded.
void enter(Run& run, std::string_view key, int index = -1) {
  if (run.out) run.path.steps.push_back({key, index});
}
void leave(Run& run) {
  if (run.out) run.path.steps.pop_back();
}

std::string types_text(unsigned types) {
  std::string out;
  for (int i = 0; i < 7; i++)
    if (types & (1u << i)) out += (out.empty() ? "" : " or ") + std::string(kTypeNames[i]);
  return out;
}

std::string number_text(double d) {
  if (std::floor(d) == d && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
  Value v(d);
  return to_json(v);
}

bool check_object(const Node& n, const Value& v, Run& run) {
  bool ok = true;
  for (auto& r : n.required) {
    if (run.full()) return false;
    if (!v.HasMember(Value(r.data(), static_cast<rapidjson::SizeType>(r.size())))) {
      enter(run, r);
      ok = run.fail(n, "required", "\"" + r + "\" is required", nullptr);
      leave(run);
      if (!run.out) return false;
    }
  }
  size_t members = v.MemberCount();
  if (n.min_properties && members < *n.min_properties)
    ok = run.fail(n, "minProperties", "must have at least " + std::to_string(*n.min_properties) + " properties", &v);
  if (n.max_properties && members > *n.max_properties)
    ok = run.fail(n, "maxProperties", "must have at most " + std::to_string(*n.max_properties) + " properties", &v);
  if (!ok && !run.out) return false;
  for (auto& d : n.dependencies) {
    if (!v.HasMember(Value(d.property.data(), static_cast<rapidjson::SizeType>(d.property.size())))) continue;
    for (auto& r : d.required)
      if (!v.HasMember(Value(r.data(), static_cast<rapidjson::SizeType>(r.size())))) {
        ok = run.fail(n, "dependencies", "\"" + r + "\" is required with \"" + d.property + "\"", &v);
        if (!run.out) return false;
      }
    if (d.schema && !check(*d.schema, v, run)) {
      ok = false;
      if (!run.out) return false;
    }
  }
  for (auto& m : v.GetObject()) {
    if (run.full()) return false;
    std::string_view key(m.name.GetString(), m.name.GetStringLength());
    enter(run, key);
    bool matched = false, member_ok = true;
    for (auto& [name, s] : n.properties)
      if (name == key) {
        matched = true;
        member_ok = check(*s, m.value, run) && member_ok;
      }
    for (auto& [re, s] : n.pattern_properties)
      if (re2::RE2::PartialMatch(re2::StringPiece(key.data(), key.size()), *re)) {
        matched = true;
        member_ok = check(*s, m.value, run) && member_ok;
      }
    if (!matched && n.additional_properties) {
      if (n.additional_properties->never)
        member_ok = run.fail(n, "additionalProperties", "is not allowed by the schema", &m.value);
      else
        member_ok = check(*n.additional_properties, m.value, run);
    }
    if (n.property_names) {
      Value name(m.name.GetString(), m.name.GetStringLength());
      if (!quietly(*n.property_names, name, run))
        member_ok = run.fail(n, "propertyNames", "is not an allowed property name", &name);
    }
    leave(run);
    ok = ok && member_ok;
    if (!ok && !run.out) return false;
  }
  return ok;
}

bool check_array(const Node& n, const Value& v, Run& run) {
  bool ok = true;
  size_t size = v.Size();
  if (n.min_items && size < *n.min_items)
    ok = run.fail(n, "minItems", "must have at least " + std::to_string(*n.min_items) + " items", &v);
  if (n.max_items && size > *n.max_items)
    ok = run.fail(n, "maxItems", "must have at most " + std::to_string(*n.max_items) + " items", &v);
  if (!ok && !run.out) return false;
  bool twice = false;
  if (n.unique_items)
    for (rapidjson::SizeType i = 0; i < size && !twice; i++)
      for (rapidjson::SizeType j = i + 1; j < size && !twice; j++)
        if ((twice = equal(v[i], v[j]))) {
          ok = run.fail(n, "uniqueItems", "must not hold the same item twice (items " + std::to_string(i) + " and " +
                                              std::to_string(j) + ")",
                        &v);
        }
  if (!ok && !run.out) return false;
  for (rapidjson::SizeType i = 0; i < size; i++) {
    if (run.full()) return false;
    const Node* s = n.items;
    if (!n.tuple.empty()) s = i < n.tuple.size() ? n.tuple[i] : n.additional_items;
    if (!s) continue;
    enter(run, {}, static_cast<int>(i));
    bool item_ok = s->never ? run.fail(n, i < n.tuple.size() || n.tuple.empty() ? "items" : "additionalItems",
                                       "is not allowed by the schema", &v[i])
                            : check(*s, v[i], run);
    leave(run);
    ok = ok && item_ok;
    if (!ok && !run.out) return false;
  }
  if (n.contains) {
    bool found = false;
    for (rapidjson::SizeType i = 0; i < size && !found; i++) found = quietly(*n.contains, v[i], run);
    if (!found) ok = run.fail(n, "contains", "must contain an item the schema describes", &v);
  }
  return ok;
}

bool check_number(const Node& n, const Value& v, Run& run) {
  double d = *number_of(v);
  bool ok = true;
  if (n.minimum && d < *n.minimum) ok = run.fail(n, "minimum", "must be >= " + number_text(*n.minimum), &v);
  if (n.maximum && d > *n.maximum) ok = run.fail(n, "maximum", "must be <= " + number_text(*n.maximum), &v);
  if (n.exclusive_minimum && d <= *n.exclusive_minimum)
    ok = run.fail(n, "exclusiveMinimum", "must be > " + number_text(*n.exclusive_minimum), &v);
  if (n.exclusive_maximum && d >= *n.exclusive_maximum)
    ok = run.fail(n, "exclusiveMaximum", "must be < " + number_text(*n.exclusive_maximum), &v);
  if (n.multiple_of) {
    double q = d / *n.multiple_of;
    bool multiple = std::isfinite(q) ? std::fabs(q - std::round(q)) < 1e-9 * std::max(1.0, std::fabs(q)) : false;
    if (!multiple) ok = run.fail(n, "multipleOf", "must be a multiple of " + number_text(*n.multiple_of), &v);
  }
  return ok;
}

bool check_string(const Node& n, const Value& v, Run& run) {
  bool ok = true;
  if (n.min_length || n.max_length) {
    size_t len = code_points(v);
    if (n.min_length && len < *n.min_length)
      ok = run.fail(n, "minLength", "must be at least " + std::to_string(*n.min_length) + " characters", &v);
    if (n.max_length && len > *n.max_length)
      ok = run.fail(n, "maxLength", "must be at most " + std::to_string(*n.max_length) + " characters", &v);
  }
  if (n.pattern && !re2::RE2::PartialMatch(re2::StringPiece(v.GetString(), v.GetStringLength()), *n.pattern))
    ok = run.fail(n, "pattern", "must match the pattern " + n.pattern->pattern(), &v);
  if (n.format != Format::None && !format_ok(n.format, {v.GetString(), v.GetStringLength()}))
    ok = run.fail(n, "format", std::string("must be a valid ") + format_name(n.format), &v);
  return ok;
}

bool check(const Node& n, const Value& v, Run& run) {
  if (n.ref) return check(*n.ref, v, run);
  if (n.never) return run.fail(n, "false", "is not allowed by the schema", &v);
  if (n.types) {
    unsigned t = type_bit(v);
    if (!(n.types & t)) return run.fail(n, "type", "must be " + types_text(n.types), &v);
  }
  bool ok = true;
  auto keep = [&](bool r) {
    ok = ok && r;
    return ok || run.out;  // quiet: stop at the first failure
  };
  if (n.enum_values) {
    bool found = false;
    for (auto& e : n.enum_values->GetArray()) found = found || equal(e, v);
    if (!keep(found || run.fail(n, "enum", "must be one of the enum values", &v))) return false;
  }
  if (n.const_value && !keep(equal(*n.const_value, v) || run.fail(n, "const", "must be the constant value", &v)))
    return false;
  bool string = is_string(v);
  if (is_number(v) && !keep(check_number(n, v, run))) return false;
  if (string && !keep(check_string(n, v, run))) return false;
  if (v.IsObject() && !keep(check_object(n, v, run))) return false;
  if (v.IsArray() && !keep(check_array(n, v, run))) return false;
  for (auto* s : n.all_of)
    if (!keep(check(*s, v, run))) return false;
  if (!n.any_of.empty()) {
    bool any = false;
    for (auto* s : n.any_of) any = any || quietly(*s, v, run);
    if (!keep(any || run.fail(n, "anyOf", "must match at least one schema of anyOf", &v))) return false;
  }
  if (!n.one_of.empty()) {
    int matches = 0;
    for (auto* s : n.one_of) matches += quietly(*s, v, run);
    if (!keep(matches == 1 || run.fail(n, "oneOf", "must match exactly one schema of oneOf (" + std::to_string(matches) + " match)", &v)))
      return false;
  }
  if (n.not_ && !keep(!quietly(*n.not_, v, run) || run.fail(n, "not", "must not match the schema of not", &v))) return false;
  if (n.if_) {
    const Node* branch = quietly(*n.if_, v, run) ? n.then_ : n.else_;
    if (branch && !keep(check(*branch, v, run))) return false;
  }
  return ok;
}

const Node* follow(const Node* n) {
  for (int hops = 0; n && n->ref && hops < 64; hops++) n = n->ref;
  return n;
}

}  // namespace

bool Schema::validate(const Value& instance, std::vector<Violation>* out, size_t max_violations) const {
  Run run{out, max_violations, {}};
  // The path's steps: one buffer per thread, kept between messages.
  thread_local std::vector<std::pair<std::string_view, int>> steps;
  steps.clear();
  std::swap(run.path.steps, steps);
  struct GiveBack {
    Run& run;
    ~GiveBack() { std::swap(run.path.steps, steps); }
  } give_back{run};
  if (out && out->size() >= max_violations) return quietly(*impl_->root, instance, run);
  return check(*impl_->root, instance, run);
}

bool Schema::declares(std::string_view member, std::string_view key) const {
  const Node* root = follow(impl_->root);
  if (!root) return false;
  for (auto& [name, s] : root->properties) {
    if (name != member) continue;
    const Node* m = follow(s);
    if (!m) return false;
    for (auto& [k, ignored] : m->properties)
      if (k == key) return true;
    for (auto& [re, ignored] : m->pattern_properties)
      if (re2::RE2::PartialMatch(re2::StringPiece(key.data(), key.size()), *re)) return true;
    return false;
  }
  return false;
}

}  // namespace cdp::schema
