// The collector's and the delivery worker's counters, as /metrics renders them.
#include <gtest/gtest.h>

#include <string>

#include "core/http_metrics.hpp"

TEST(HttpMetricsDeliveries, CountsAndLatencyAreRendered) {
  cdp::HttpMetrics m;
  m.count_deliveries(cdp::HttpMetrics::kDelivered, 3);
  m.count_deliveries(cdp::HttpMetrics::kFailedAttempt, 2);
  m.count_deliveries(cdp::HttpMetrics::kDead, 1);
  m.observe_delivery(0.004);  // first bucket
  m.observe_delivery(0.2);    // le 0.25
  std::string text = m.render();
  EXPECT_NE(text.find("cdp_deliveries_total{outcome=\"delivered\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("cdp_deliveries_total{outcome=\"failed_attempt\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("cdp_deliveries_total{outcome=\"dead\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("cdp_delivery_seconds_bucket{le=\"0.005\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("cdp_delivery_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("cdp_delivery_seconds_bucket{le=\"0.25\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("cdp_delivery_seconds_count 2\n"), std::string::npos);
}
