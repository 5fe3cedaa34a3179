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

TEST(IsBlank, EmptyOrWhitespaceOnly) {
  EXPECT_TRUE(is_blank(""));
  EXPECT_TRUE(is_blank(" \t\r\n\f\v"));
  EXPECT_FALSE(is_blank(" a "));
  EXPECT_FALSE(is_blank("0"));
}

}  // namespace
}  // namespace cdp
