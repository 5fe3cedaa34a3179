// ISO-8601 parsing and formatting (core/timestamp.hpp). Every client clock
// value (timestamp, originalTimestamp, sentAt) goes through parse_iso8601.
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "core/timestamp.hpp"

namespace cdp {
namespace {

constexpr Micros kSecond = 1'000'000;
constexpr Micros kMinute = 60 * kSecond;
constexpr Micros kHour = 60 * kMinute;

// 2024-05-01T12:30:00Z, worked out independently (Python's datetime).
constexpr Micros kMayDay = 1'714'566'600 * kSecond;

TEST(Timestamp, EpochIsZero) {
  EXPECT_EQ(parse_iso8601("1970-01-01T00:00:00Z"), Micros{0});
}

TEST(Timestamp, UtcWithZ) {
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00Z"), kMayDay);
  EXPECT_EQ(parse_iso8601("2024-05-01t12:30:00z"), kMayDay) << "lower-case t and z";
}

TEST(Timestamp, OffsetWithColonIsSubtractedToGetUtc) {
  // 12:30 in UTC+2 is 10:30 UTC.
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00+02:00"), kMayDay - 2 * kHour);
  // 12:30 in UTC-05:30 is 18:00 UTC.
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00-05:30"), kMayDay + 5 * kHour + 30 * kMinute);
}

TEST(Timestamp, OffsetWithoutColon) {
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00+0200"), kMayDay - 2 * kHour);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00-0530"), kMayDay + 5 * kHour + 30 * kMinute);
}

TEST(Timestamp, HoursOnlyOffset) {
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00+02"), kMayDay - 2 * kHour);
}

TEST(Timestamp, ZeroOffsetsEqualZ) {
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00+00:00"), kMayDay);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00-00:00"), kMayDay);
}

TEST(Timestamp, NoOffsetMeansUtc) {
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00"), kMayDay);
  EXPECT_EQ(parse_iso8601("2024-05-01 12:30:00"), kMayDay) << "space instead of T, as Postgres prints";
}

TEST(Timestamp, SecondsAreOptional) {
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30Z"), kMayDay);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30+02:00"), kMayDay - 2 * kHour);
}

TEST(Timestamp, FractionalSecondsToTheMicrosecond) {
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00.123Z"), kMayDay + 123'000);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00.5Z"), kMayDay + 500'000);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00.000001Z"), kMayDay + 1);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00,25Z"), kMayDay + 250'000) << "comma decimal mark";
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00.123+02:00"), kMayDay - 2 * kHour + 123'000);
}

TEST(Timestamp, DigitsBeyondMicrosecondsAreTruncatedNotRounded) {
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00.1234569Z"), kMayDay + 123'456);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00.999999999Z"), kMayDay + 999'999);
}

TEST(Timestamp, DateOnlyIsMidnightUtc) {
  EXPECT_EQ(parse_iso8601("2024-05-01"), kMayDay - 12 * kHour - 30 * kMinute);
}

TEST(Timestamp, LeapDaysFollowTheGregorianRules) {
  EXPECT_EQ(parse_iso8601("2024-02-29"), 1'709'164'800 * kSecond);  // divisible by 4
  EXPECT_EQ(parse_iso8601("2000-02-29"), 951'782'400 * kSecond);    // divisible by 400
  EXPECT_EQ(parse_iso8601("2023-02-29"), std::nullopt);             // not a leap year
  EXPECT_EQ(parse_iso8601("1900-02-29"), std::nullopt);             // divisible by 100 only
  EXPECT_EQ(parse_iso8601("2024-02-30"), std::nullopt);
}

TEST(Timestamp, ImpossibleDatesAreRejected) {
  EXPECT_EQ(parse_iso8601("2024-13-01"), std::nullopt) << "month 13";
  EXPECT_EQ(parse_iso8601("2024-00-01"), std::nullopt) << "month 0";
  EXPECT_EQ(parse_iso8601("2024-04-31"), std::nullopt) << "April has 30 days";
  EXPECT_EQ(parse_iso8601("2024-01-32"), std::nullopt);
  EXPECT_EQ(parse_iso8601("2024-01-00"), std::nullopt);
  EXPECT_EQ(parse_iso8601("0000-01-01"), std::nullopt) << "year 0";
}

TEST(Timestamp, ImpossibleTimesAreRejected) {
  EXPECT_EQ(parse_iso8601("2024-05-01T24:00:00Z"), std::nullopt);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:60:00Z"), std::nullopt);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:61Z"), std::nullopt);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00+24:00"), std::nullopt);
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00+02:60"), std::nullopt);
}

TEST(Timestamp, LeapSecondIsClampedToTheSecondBefore) {
  EXPECT_EQ(parse_iso8601("2016-12-31T23:59:60Z"), parse_iso8601("2016-12-31T23:59:59Z"));
}

TEST(Timestamp, GarbageIsRejected) {
  for (const char* s : {"", "garbage", "now", "1714566600", "2024", "2024-05", "2024-5-1",
                        "24-05-01", "2024/05/01", "01-05-2024", " 2024-05-01", "2024-05-01T",
                        "2024-05-01T12", "2024-05-01T1:30", "2024-05-01T12:3",
                        "2024-05-01T12:30:0", "2024-05-01T12:30:00.", "2024-05-01T12:30:00.Z",
                        "2024-05-01T12:30:00+", "2024-05-01T12:30:00+2", "2024-05-01T12:30:00+02:0",
                        "2024-05-01T12:30:00 +02:00", "Wed, 01 May 2024 12:30:00 GMT"})
    EXPECT_EQ(parse_iso8601(s), std::nullopt) << '"' << s << '"';
}

TEST(Timestamp, TrailingJunkIsRejected) {
  for (const char* s : {"2024-05-01x", "2024-05-01 ", "2024-05-01T12:30:00Zx", "2024-05-01T12:30:00ZZ",
                        "2024-05-01T12:30:00Z ", "2024-05-01T12:30:00+02:00x",
                        "2024-05-01T12:30:00+02:00:00", "2024-05-01T12:30:00+0200Z",
                        "2024-05-01T12:30:00.123abc", "2024-05-01T12:30:00+02:"})
    EXPECT_EQ(parse_iso8601(s), std::nullopt) << '"' << s << '"';
}

TEST(Timestamp, EmbeddedNulIsNotAnEnd) {
  using namespace std::string_literals;
  EXPECT_EQ(parse_iso8601("2024-05-01T12:30:00Z\0junk"s), std::nullopt);
}

TEST(Timestamp, YearRangeIsOneToNineThousandNineHundredNinetyNine) {
  EXPECT_EQ(parse_iso8601("0001-01-01T00:00:00Z"), -62'135'596'800 * kSecond);
  EXPECT_EQ(parse_iso8601("9999-12-31T23:59:00Z"), 253'402'300'740 * kSecond);
}

TEST(Timestamp, FormatIsUtcWithMicroseconds) {
  EXPECT_EQ(format_iso8601(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_iso8601(kMayDay + 123'000), "2024-05-01T12:30:00.123000Z");
  EXPECT_EQ(format_iso8601(kMayDay - 2 * kHour), "2024-05-01T10:30:00.000000Z");
}

TEST(Timestamp, FormatBeforeTheEpochRoundsTowardsThePast) {
  EXPECT_EQ(format_iso8601(-1), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(format_iso8601(-kSecond), "1969-12-31T23:59:59.000000Z");
  EXPECT_EQ(format_iso8601(-86'400 * kSecond), "1969-12-31T00:00:00.000000Z");
}

TEST(Timestamp, FormatThenParseGivesTheSameInstant) {
  for (Micros t : {Micros{0}, Micros{1}, Micros{-1}, kMayDay, kMayDay + 999'999,
                   Micros{951'782'400} * kSecond, Micros{1'704'067'199} * kSecond + 999'999,
                   Micros{-62'135'596'800} * kSecond, Micros{253'402'300'799} * kSecond + 999'999}) {
    std::string text = format_iso8601(t);
    EXPECT_EQ(parse_iso8601(text), t) << text;
  }
}

TEST(Timestamp, ParseThenFormatNormalisesToUtc) {
  auto t = parse_iso8601("2024-05-01T14:30:00.5+02:00");
  ASSERT_TRUE(t);
  EXPECT_EQ(format_iso8601(*t), "2024-05-01T12:30:00.500000Z");
}

}  // namespace
}  // namespace cdp
