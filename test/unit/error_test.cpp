// cdp::Error (core/error.hpp): the message is "field: rule", the rule and the
// field stay apart, and moving an error up a level keeps the rule whole, even
// when a field name taken from input holds a NUL (what() stops there).
#include <string>

#include <gtest/gtest.h>

#include "core/delivery.hpp"
#include "core/error.hpp"

namespace cdp {
namespace {

TEST(Error, MessageIsFieldThenRule) {
  Error e(ErrorKind::InvalidInput, "batch.max_events", "must be between 1 and 500");
  EXPECT_STREQ(e.what(), "batch.max_events: must be between 1 and 500");
  EXPECT_EQ(e.field(), "batch.max_events");
  EXPECT_EQ(e.rule(), "must be between 1 and 500");
}

TEST(Error, NoFieldIsTheRuleAlone) {
  Error e(ErrorKind::MalformedJson, "", "not JSON");
  EXPECT_STREQ(e.what(), "not JSON");
  EXPECT_EQ(e.rule(), "not JSON");
}

TEST(Error, UnderAndOnKeepTheRule) {
  Error e(ErrorKind::InvalidInput, "and[0].op", "unknown operator");
  Error up = e.under("rule");
  EXPECT_EQ(up.field(), "rule.and[0].op");
  EXPECT_EQ(up.rule(), "unknown operator");
  EXPECT_EQ(e.on("where").field(), "where");
  EXPECT_EQ(e.on("where").rule(), "unknown operator");
}

// Found by delivery_fuzz: a key "ba\t\0..." made rule() cut what() (which
// ends at the NUL) past its end and throw std::out_of_range.
TEST(Error, FieldWithANulKeepsItsRule) {
  std::string field("ba\t\0009", 5);
  Error e(ErrorKind::InvalidInput, field, "unknown option");
  EXPECT_EQ(e.field(), field);
  EXPECT_EQ(e.rule(), "unknown option");
  EXPECT_EQ(e.under("options").rule(), "unknown option");
}

TEST(Error, DestinationOptionWithANulInItsName) {
  try {
    delivery::Options::parse(std::string("{\"ba\\u0009\\u0000tch\": 1}"));
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    EXPECT_FALSE(e.rule().empty());
  }
}

}  // namespace
}  // namespace cdp
