// Small RapidJSON helpers shared by validation, segments and the HTTP worker.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

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
rapidjson::ParseResult parse_json(rapidjson::Document& doc, std::string_view text);

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
