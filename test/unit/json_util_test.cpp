// The JSON helpers (core/json_util.hpp) that guard what reaches Postgres.
#include <string>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace cdp {
namespace {

using test::json;

TEST(JsonDepth, CountsTheDeepestObjectOrArray) {
  EXPECT_EQ(json_depth("42"), 0);
  EXPECT_EQ(json_depth("{}"), 1);
  EXPECT_EQ(json_depth(R"({"a":[1,{"b":2}],"c":{}})"), 3);
  EXPECT_EQ(json_depth("[[[]],[]]"), 3);
}

TEST(JsonDepth, IgnoresBracketsInsideStrings) {
  EXPECT_EQ(json_depth(R"({"a":"[[[[{{{{"})"), 1);
  EXPECT_EQ(json_depth(R"({"a\"[[":"\\", "b":[1]})"), 2) << "escaped quotes and backslashes";
}

TEST(ToJson, IsCompact) {
  EXPECT_EQ(to_json(json(R"({ "a" : [ 1 , 2 ] , "b" : "x" })")), R"({"a":[1,2],"b":"x"})");
}

TEST(ToJson, EscapesNulSoTheTextHasNone) {
  std::string out = to_json(json(R"({"a":"x\u0000y"})"));
  EXPECT_EQ(out.find('\0'), std::string::npos);
  EXPECT_EQ(out, R"({"a":"x\u0000y"})");
}

TEST(FindNul, NoneInCleanJson) {
  EXPECT_EQ(find_nul(json(R"({"a":"b","c":[1,"d",{"e":null}]})"), ""), std::nullopt);
}

TEST(FindNul, GivesTheJsonPathOfTheValue) {
  EXPECT_EQ(find_nul(json(R"({"properties":{"items":[{"name":"a"},{},{"name":"b\u0000"}]}})"), ""),
            "properties.items[2].name");
  EXPECT_EQ(find_nul(json(R"({"userId":"\u0000"})"), ""), "userId");
}

TEST(FindNul, FindsItInKeysAndSpellsItAsAnEscapeInThePath) {
  // The path is stored (cdp.quarantine.field is text), so it must not hold a NUL itself.
  auto path = find_nul(json(R"({"traits":{"bad\u0000key":1}})"), "");
  ASSERT_TRUE(path);
  EXPECT_EQ(*path, R"(traits.bad\u0000key)");
  EXPECT_EQ(path->find('\0'), std::string::npos);
}

TEST(FindNul, PrefixesTheGivenPath) {
  EXPECT_EQ(find_nul(json(R"({"x":["\u0000"]})"), "context"), "context.x[0]");
}

// parse_json: RapidJSON's parser with the numbers converted by std::from_chars.
std::string reparsed(std::string_view text) {
  rapidjson::Document doc;
  rapidjson::ParseResult r = parse_json(doc, text);
  return r.IsError() ? "error " + std::to_string(r.Code()) + " at " + std::to_string(r.Offset())
                     : to_json(doc);
}

TEST(ParseJson, NumbersKeepTheirTypesAndValues) {
  EXPECT_EQ(reparsed("[0,-0,1,-1,2147483648,-2147483649,9223372036854775807,"
                     "-9223372036854775808,18446744073709551615]"),
            "[0,0,1,-1,2147483648,-2147483649,9223372036854775807,-9223372036854775808,"
            "18446744073709551615]");
  EXPECT_EQ(reparsed("[18446744073709551616,-9223372036854775809]"),
            "[18446744073709553000.0,-9223372036854776000.0]") << "past 64 bits: a double";
  EXPECT_EQ(reparsed("[0.1,1e-7,129.95,-2.5E+3,1.7976931348623157e308,5e-324]"),
            "[0.1,1e-7,129.95,-2500.0,1.7976931348623157e308,5e-324]");
  rapidjson::Document doc;
  ASSERT_FALSE(parse_json(doc, R"({"i":7,"u":3000000000,"d":7.0,"x":0.30000000000000004})").IsError());
  EXPECT_TRUE(doc["i"].IsInt());
  EXPECT_TRUE(doc["u"].IsUint() && !doc["u"].IsInt());
  EXPECT_TRUE(doc["d"].IsDouble());
  EXPECT_EQ(doc["x"].GetDouble(), 0.1 + 0.2) << "the nearest double, to the last bit";
}

TEST(ParseJson, ZerosAreZeroHoweverTheyAreWritten) {
  // RapidJSON 1.1.0's own full-precision parse gives -4.7e21, -2.4e229 and -1.4e-194.
  EXPECT_EQ(reparsed("[0e-101,0e40,0.0000000000000000000000000,-0E-30,0.0e5]"),
            "[0.0,0.0,0.0,-0.0,0.0]");
}

TEST(ParseJson, TooSmallIsZero) {
  EXPECT_EQ(reparsed("[1e-400,-2e-324,0.1e-323,1e-99999999]"), "[0.0,-0.0,0.0,0.0]");
}

TEST(ParseJson, TooBigIsAnErrorNotGarbage) {
  // RapidJSON 1.1.0 alone: infinity, -3.1e-308 and -6.2e-290.
  for (const char* s : {"[1.8e308]", "[10e308]", "[20000000000000000000e308]", "[0.00018e312]",
                        "[-1e309]", "[1e400]"})
    EXPECT_EQ(reparsed(s), "error " + std::to_string(rapidjson::kParseErrorNumberTooBig) + " at 1")
        << s;
}

TEST(ParseJson, SyntaxErrorsAreRapidJsonsOwn) {
  EXPECT_EQ(reparsed(R"({"a":})"), "error " + std::to_string(rapidjson::kParseErrorValueInvalid) + " at 5");
  EXPECT_EQ(reparsed("[0e-110e-1111]"),
            "error " + std::to_string(rapidjson::kParseErrorArrayMissCommaOrSquareBracket) + " at 7");
  EXPECT_EQ(reparsed("[1] x"), "error " + std::to_string(rapidjson::kParseErrorDocumentRootNotSingular) + " at 4");
}

TEST(ParseJson, StopsAtTheGivenLength) {
  std::string text = "[1,2]garbage";
  EXPECT_EQ(reparsed(std::string_view(text).substr(0, 5)), "[1,2]");
}

TEST(IsBlank, EmptyOrWhitespaceOnly) {
  EXPECT_TRUE(is_blank(""));
  EXPECT_TRUE(is_blank(" \t\r\n\f\v"));
  EXPECT_FALSE(is_blank(" a "));
  EXPECT_FALSE(is_blank("0"));
}

}  // namespace
}  // namespace cdp
