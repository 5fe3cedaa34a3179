// The processor's rules: cdp.identifier_types and cdp.trait_rules, read into
// the core's IdentityRules and TraitRules, cached per process, and the guard
// rails that go with them (cdp.max_*_per_profile).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/json_util.hpp"
#include "pg/processor/internal.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "utils/guc.h"
}

namespace cdp::pg::processor {
namespace {

int max_merges = 100;
int max_identifiers = 1000;
int max_traits = static_cast<int>(kDefaultMaxTraits);

}  // namespace

// Read at the start of each batch (small tables; changes apply at once).

namespace {

// A JSON array of strings (array_to_json of a text[]) as a vector.
std::vector<std::string> string_list(std::string_view json) {
  std::vector<std::string> out;
  rapidjson::Document d;
  if (!d.Parse(json.data(), json.size()).HasParseError() && d.IsArray())
    for (auto& v : d.GetArray())
      if (v.IsString()) out.emplace_back(v.GetString(), v.GetStringLength());
  return out;
}

}  // namespace

IdentityRules load_identity_rules() {
  sql::Rows rows = sql::select(
      "select type, array_to_json(paths)::text, normalise, coalesce(max_per_profile, 0),"
      " coalesce((extract(epoch from limit_window) * 1000000)::int8, 0), priority,"
      " array_to_json(blocked_values)::text, array_to_json(blocked_patterns)::text,"
      " default_country_code from cdp.identifier_types order by priority, type");
  std::vector<IdentifierType> types;
  for (size_t r = 0; r < rows.size(); r++) {
    IdentifierType t;
    t.name = rows.str(r, 0);
    t.paths = string_list(rows.text(r, 1));
    t.normalise = parse_normalise(rows.text(r, 2)).value_or(Normalise::None);
    t.limit = rows.int4(r, 3);
    t.window = rows.int8(r, 4);
    t.priority = rows.int4(r, 5);
    t.blocked_values = string_list(rows.text(r, 6));
    t.blocked_patterns = string_list(rows.text(r, 7));
    t.default_country_code = rows.str(r, 8);
    types.push_back(std::move(t));
  }
  return IdentityRules(std::move(types), GuardRails{max_merges, max_identifiers});
}

TraitRules load_trait_rules() {
  sql::Rows rows = sql::select(
      "select trait, strategy, array_to_json(source_priority)::text, coalesce(from_path, '')"
      " from cdp.trait_rules order by trait");
  std::vector<TraitRule> rules;
  for (size_t r = 0; r < rows.size(); r++) {
    TraitRule t;
    t.trait = rows.str(r, 0);
    t.strategy = parse_trait_strategy(rows.text(r, 1)).value_or(TraitStrategy::Last);
    t.from_path = rows.str(r, 3);
    rapidjson::Document d;
    std::string_view priority = rows.text(r, 2);
    if (!d.Parse(priority.data(), priority.size()).HasParseError() && d.IsArray())
      for (auto& v : d.GetArray())
        if (v.IsInt()) t.source_priority.push_back(v.GetInt());
    rules.push_back(std::move(t));
  }
  return TraitRules(std::move(rules), static_cast<size_t>(max_traits));
}

RulesCache rules_cache;

void refresh_rules() {
  RulesStamp stamp = RulesStamp::of("identifier_types");
  RulesCache& c = rules_cache;
  if (c.identity && c.stamp == stamp && c.merges == max_merges && c.identifiers == max_identifiers &&
      c.traits_limit == max_traits)
    return;
  c.identity.reset();  // if loading throws, the next batch tries again
  c.traits = std::make_unique<TraitRules>(load_trait_rules());
  c.identity = std::make_unique<IdentityRules>(load_identity_rules());
  c.stamp = stamp;
  c.merges = max_merges;
  c.identifiers = max_identifiers;
  c.traits_limit = max_traits;
}

void define_rules_gucs() {
  DefineCustomIntVariable("cdp.max_merges_per_profile",
                          "Guard rail: a profile that would pass this many merges takes no more and is flagged.",
                          nullptr, &max_merges, 100, 1, 1000000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.max_traits_per_profile",
                          "Guard rail: trait keys a profile or account takes from events.",
                          "Past it, new keys are refused (recorded in cdp.identity_refusals, the profile flagged);"
                          " keys it has still update.",
                          &max_traits, static_cast<int>(kDefaultMaxTraits), 1, 100000, PGC_SUSET, 0, nullptr,
                          nullptr, nullptr);
  DefineCustomIntVariable("cdp.max_identifiers_per_profile",
                          "Guard rail: a profile that would pass this many identifiers takes no more and is flagged.",
                          nullptr, &max_identifiers, 1000, 1, 10000000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
}

}  // namespace cdp::pg::processor
