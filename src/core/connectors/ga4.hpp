// What kind "ga4" offers beyond the Connector interface: GA4's validation
// server (POST /debug/mp/collect), which answers what /mp/collect never
// says. cdp.test_destination() sends its sample there. docs/connectors/ga4.md.
#pragma once
#include <string>
#include <string_view>

#include "core/connectors/connector.hpp"

namespace cdp::connectors {

// "/debug/mp/collect?measurement_id=...&api_secret=...": the validation
// server's path under the destination's URL, for a config check_config accepted.
std::string ga4_debug_path(const Config& c);

// The validation server's answer ({"validationMessages": [{"fieldPath",
// "description", "validationCode"}]}) in one line: "" when it lists no
// problem, else each problem as "fieldPath: description (validationCode)".
std::string ga4_validation(std::string_view debug_body);

}  // namespace cdp::connectors
