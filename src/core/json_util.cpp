#include "core/json_util.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include <rapidjson/encodedstream.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace cdp {

int json_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') i++;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > deepest) deepest = depth;
    } else if (c == '}' || c == ']') {
      depth--;
    }
  }
  return deepest;
}

namespace {

// Roughly log10 of a JSON number's magnitude: enough to tell a number too big
// for a double from one too small.
long decimal_exponent(const char* p, const char* end) {
  long e = 0;
  bool significant = false, fraction = false;
  for (; p < end && *p != 'e' && *p != 'E'; p++) {
    if (*p == '-') continue;
    if (*p == '.') {
      fraction = true;
    } else if (!significant) {
      if (fraction) e--;  // 0.0012: each decimal up to the 1 is a power of ten less
      significant = *p != '0';
    } else if (!fraction) {
      e++;  // 1234: each digit after the 1 is a power of ten more
    }
  }
  long x = 0;
  bool minus = false;
  if (p < end) {  // the exponent
    p++;
    if (p < end && (*p == '+' || *p == '-')) minus = *p++ == '-';
    for (; p < end; p++)
      if (x < 100000) x = x * 10 + (*p - '0');
  }
  return e + (minus ? -x : x);
}

// The significant digits of a JSON number (no leading or trailing zeros) and
// the power of ten of its last one: equal for two texts of the same value.
std::pair<std::string, long> decimal_value(const char* p, const char* end) {
  std::string digits;
  long point = 0;  // digits before the decimal point
  bool fraction = false;
  for (; p < end && *p != 'e' && *p != 'E'; p++) {
    if (*p == '-') continue;
    if (*p == '.') {
      fraction = true;
      continue;
    }
    if (digits.empty() && *p == '0') {
      if (fraction) point--;
      continue;
    }
    digits += *p;
    if (!fraction) point++;
  }
  long e = 0;
  bool minus = false;
  if (p < end) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) minus = *p++ == '-';
    for (; p < end; p++)
      if (e < 100000) e = e * 10 + (*p - '0');
  }
  while (!digits.empty() && digits.back() == '0') digits.pop_back();
  return {digits, point + (minus ? -e : e) - static_cast<long>(digits.size())};
}

// Whether the double `d`, written back as JSON, denotes the same decimal value
// as the text it was read from. Up to 15 significant digits always does (DBL_DIG).
bool round_trips(const char* s, const char* end, double d) {
  size_t significant = 0;
  bool leading = true;
  for (const char* p = s; p < end && *p != 'e' && *p != 'E'; p++)
    if (*p >= '0' && *p <= '9' && !(leading && *p == '0')) significant++, leading = false;
  if (significant <= 15) return true;
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.Double(d);
  const char* t = buf.GetString();
  return decimal_value(s, end) == decimal_value(t, t + buf.GetSize());
}

// Forwards every event to the document, converting numbers on the way.
struct NumberConverter {
  rapidjson::Document& doc;
  Numbers mode;
  bool too_big = false;

  bool keep_text(const char* s, rapidjson::SizeType n) {
    std::string text(1, kRawNumberMark);
    text.append(s, n);
    return doc.String(text.data(), static_cast<rapidjson::SizeType>(text.size()), true);
  }

  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    const char* end = s + n;
    auto whole = [end](std::from_chars_result r) { return r.ec == std::errc() && r.ptr == end; };
    bool integer = std::find_if(s, end, [](char c) { return c == '.' || c == 'e' || c == 'E'; }) == end;
    if (integer) {
      int64_t i;  // rapidjson's own types: Int64 for negatives, Uint64 otherwise,
      uint64_t u;  // a double past 64 bits
      if (*s == '-' && whole(std::from_chars(s, end, i))) return doc.Int64(i);
      if (*s != '-' && whole(std::from_chars(s, end, u))) return doc.Uint64(u);
    }
    double d = 0;
    auto r = std::from_chars(s, end, d);
    if (r.ec == std::errc::result_out_of_range && decimal_exponent(s, end) < 0)
      d = *s == '-' ? -0.0 : 0.0;  // underflow
    else if (!whole(r))
      return too_big = true, false;  // overflow (the reader has checked the syntax)
    // Exact: an integer past 64 bits keeps every digit, a decimal whatever a double would lose,
    // as long as Postgres' numeric (and so jsonb) can take the text: no more than
    // kMaxExactNumber characters, within the double's powers of ten. Past that the double stays.
    if (mode == Numbers::Exact && n <= kMaxExactNumber && decimal_exponent(s, end) >= -330 &&
        (integer || !round_trips(s, end, d)))
      return keep_text(s, n);
    return doc.Double(d);
  }
  bool Null() { return doc.Null(); }
  bool Bool(bool b) { return doc.Bool(b); }
  bool Int(int i) { return doc.Int(i); }
  bool Uint(unsigned u) { return doc.Uint(u); }
  bool Int64(int64_t i) { return doc.Int64(i); }
  bool Uint64(uint64_t u) { return doc.Uint64(u); }
  bool Double(double d) { return doc.Double(d); }
  bool String(const char* s, rapidjson::SizeType n, bool copy) { return doc.String(s, n, copy); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) { return doc.Key(s, n, copy); }
  bool StartObject() { return doc.StartObject(); }
  bool EndObject(rapidjson::SizeType n) { return doc.EndObject(n); }
  bool StartArray() { return doc.StartArray(); }
  bool EndArray(rapidjson::SizeType n) { return doc.EndArray(n); }
};

}  // namespace

rapidjson::ParseResult parse_json(rapidjson::Document& doc, std::string_view text, Numbers mode) {
  NumberConverter numbers{doc, mode};
  rapidjson::ParseResult result;
  auto generate = [&](rapidjson::Document&) {
    rapidjson::MemoryStream ms(text.data(), text.size());
    rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(ms);
    rapidjson::Reader reader;
    result = reader.Parse<kParseFlags | rapidjson::kParseNumbersAsStringsFlag>(in, numbers);
    return !result.IsError();
  };
  doc.Populate(generate);
  if (numbers.too_big) result.Set(rapidjson::kParseErrorNumberTooBig, result.Offset());
  return result;
}

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  JsonWriter writer(buf);
  v.Accept(writer);
  return std::string(buf.GetString(), buf.GetSize());
}

static bool has_nul(const rapidjson::Value& s) {
  return std::string_view(s.GetString(), s.GetStringLength()).find('\0') != std::string_view::npos;
}

std::optional<std::string> find_nul(const rapidjson::Value& v, const std::string& path) {
  if (v.IsString()) return has_nul(v) ? std::optional(path) : std::nullopt;
  if (v.IsObject()) {
    for (auto& m : v.GetObject()) {
      std::string key(m.name.GetString(), m.name.GetStringLength());
      bool bad = has_nul(m.name);
      for (size_t i = 0; bad && i < key.size(); i++)
        if (key[i] == '\0') key.replace(i, 1, "\\u0000");
      std::string sub = path.empty() ? key : path + "." + key;
      if (bad) return sub;
      if (auto p = find_nul(m.value, sub)) return p;
    }
  } else if (v.IsArray()) {
    for (rapidjson::SizeType i = 0; i < v.Size(); i++)
      if (auto p = find_nul(v[i], path + "[" + std::to_string(i) + "]")) return p;
  }
  return std::nullopt;
}

// Input is validated UTF-8, so the only bytes ED A0..ED BF (a surrogate's
// encoding) come from a decoded \u escape.
static bool surrogate_bytes(const rapidjson::Value& s) {
  const char* p = s.GetString();
  const char* end = p + s.GetStringLength();
  while ((p = static_cast<const char*>(std::memchr(p, 0xED, end - p))) && ++p < end)
    if (static_cast<unsigned char>(*p) >= 0xA0) return true;
  return false;
}

bool has_lone_surrogate(const rapidjson::Value& v) {
  if (v.IsString()) return surrogate_bytes(v);
  if (v.IsObject()) {
    for (auto& m : v.GetObject())
      if (surrogate_bytes(m.name) || has_lone_surrogate(m.value)) return true;
  } else if (v.IsArray()) {
    for (auto& e : v.GetArray())
      if (has_lone_surrogate(e)) return true;
  }
  return false;
}

bool is_blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') return false;
  return true;
}

}  // namespace cdp
