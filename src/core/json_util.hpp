// Small RapidJSON helpers shared by validation, segments and the HTTP worker.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace cdp {

// Every parse goes through here: full-precision numbers, UTF-8 validated,
// iterative (no recursion, so deep nesting cannot overflow the stack).
constexpr unsigned kParseFlags = rapidjson::kParseFullPrecisionFlag |
                                 rapidjson::kParseValidateEncodingFlag |
                                 rapidjson::kParseIterativeFlag;

// Deepest nesting of objects/arrays we accept. Our own walks recurse, and no
// real event needs more.
constexpr int kMaxJsonDepth = 64;

// Nesting depth of a JSON text, counted without parsing (strings are skipped).
int json_depth(std::string_view text);

// Parses `text` into `doc` as Document::Parse<kParseFlags> would, except that
// numbers are converted by std::from_chars: RapidJSON 1.1.0's full-precision
// conversion reads zeros written with an exponent wrong ("0e-23" gives
// -1.75e-192: clz(0) in its DiyFp) and numbers past the double range too
// ("20000000000000000000e308" gives -6.2e-290, "1.8e308" infinity: reads past
// its table of powers). Too big is an error (kParseErrorNumberTooBig), as
// RapidJSON says for "1e400"; too small is zero. Check the result, not `doc`.
//
// With Numbers::Exact, a number that a double (or a 64-bit integer) would not
// hold exactly ("12345678901234567890123", "0.12345678901234567890") is kept
// as its text, in a string value marked as a number (raw_number() reads it);
// to_json and JsonWriter write it back as the number it was. Only for
// documents whose numbers are stored again: every reader of such a document
// must ask raw_number() before taking a string for a string.
// Longer numbers (or smaller than 1e-330) are read as doubles even then:
// jsonb's numeric refuses more than 16,383 digits after the point, and such a
// number must not make a whole payload fail to store.
enum class Numbers { Double, Exact };
constexpr size_t kMaxExactNumber = 100;
rapidjson::ParseResult parse_json(rapidjson::Document& doc, std::string_view text,
                                  Numbers numbers = Numbers::Double);

// A number kept as text by parse_json(..., Numbers::Exact), or nullopt.
// The mark is a leading 0xFF byte, which validated UTF-8 never holds.
constexpr char kRawNumberMark = '\xFF';
inline std::optional<std::string_view> raw_number(const rapidjson::Value& v) {
  if (!v.IsString() || v.GetStringLength() < 2 || v.GetString()[0] != kRawNumberMark) return std::nullopt;
  return std::string_view(v.GetString() + 1, v.GetStringLength() - 1);
}
// A string that is a string (not a number kept as text).
inline bool is_string(const rapidjson::Value& v) { return v.IsString() && !raw_number(v); }
// A number, whether held as one or kept as text.
inline bool is_number(const rapidjson::Value& v) { return v.IsNumber() || raw_number(v).has_value(); }

// A compact JSON writer that writes numbers kept as text as numbers. Every
// writer of a parsed document goes through it.
class JsonWriter : public rapidjson::Writer<rapidjson::StringBuffer> {
 public:
  using rapidjson::Writer<rapidjson::StringBuffer>::Writer;
  bool String(const char* s, rapidjson::SizeType n, bool copy = false) {
    if (n >= 2 && s[0] == kRawNumberMark) return RawValue(s + 1, n - 1, rapidjson::kNumberType);
    return Writer::String(s, n, copy);
  }
};

// Compact JSON text of a value.
std::string to_json(const rapidjson::Value& v);

// JSON path ("properties.items[2].name") of the first string or key holding
// a NUL character, which Postgres text and jsonb cannot store; nullopt if none.
// A NUL in a key is spelled \u0000 in the path, so the path can be stored.
std::optional<std::string> find_nul(const rapidjson::Value& v, const std::string& path);

// True if a string or key holds an unpaired UTF-16 surrogate. RapidJSON lets
// an escaped lone low surrogate ("\udc00") through and decodes it into bytes
// that are not UTF-8 (ED B0 80); Postgres refuses such text and such jsonb.
bool has_lone_surrogate(const rapidjson::Value& v);

// "blank" = empty or only whitespace.
bool is_blank(std::string_view s);

// The text of a string value (no copy).
inline std::string_view string_of(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

// A member by name, or nullptr.
inline const rapidjson::Value* member_of(const rapidjson::Value& obj, const char* key) {
  auto it = obj.FindMember(key);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

}  // namespace cdp
