// The processor's rules: cdp.identifier_types and cdp.trait_rules, read into
// the core's IdentityRules and TraitRules, cached per process, and the guard
// rails that go with them (cdp.max_*_per_profile).
#include <memory>

#include "core/json_util.hpp"
#include "pg/processor/internal.hpp"
#include "pg/runtime/guard.hpp"
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

IdentityRules load_identity_rules() {
  std::vector<IdentifierType> types;
  std::vector<std::string> paths, values, patterns;  // arrays as JSON text, parsed below
  call([&] {
    uint64 n = spi::exec(
        "select type, array_to_json(paths)::text, normalise, coalesce(max_per_profile, 0),"
        " coalesce((extract(epoch from limit_window) * 1000000)::int8, 0), priority,"
        " array_to_json(blocked_values)::text, array_to_json(blocked_patterns)::text,"
        " default_country_code from cdp.identifier_types order by priority, type",
        SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++) {
      IdentifierType t;
      t.name = spi::get_text(r, 1);
      t.normalise = parse_normalise(spi::get_text(r, 3)).value_or(Normalise::None);
      t.limit = spi::get_int4(r, 4);
      t.window = spi::get_int8(r, 5);
      t.priority = spi::get_int4(r, 6);
      t.default_country_code = spi::get_text(r, 9);
      types.push_back(std::move(t));
      paths.push_back(spi::get_text(r, 2));
      values.push_back(spi::get_text(r, 7));
      patterns.push_back(spi::get_text(r, 8));
    }
  });
  auto list = [](const std::string& json) {
    std::vector<std::string> out;
    rapidjson::Document d;
    if (!d.Parse(json.data(), json.size()).HasParseError() && d.IsArray())
      for (auto& v : d.GetArray())
        if (v.IsString()) out.emplace_back(v.GetString(), v.GetStringLength());
    return out;
  };
  for (size_t i = 0; i < types.size(); i++) {
    types[i].paths = list(paths[i]);
    types[i].blocked_values = list(values[i]);
    types[i].blocked_patterns = list(patterns[i]);
  }
  return IdentityRules(std::move(types), GuardRails{max_merges, max_identifiers});
}

TraitRules load_trait_rules() {
  std::vector<TraitRule> rules;
  std::vector<std::string> priorities;
  call([&] {
    uint64 n = spi::exec(
        "select trait, strategy, array_to_json(source_priority)::text, coalesce(from_path, '')"
        " from cdp.trait_rules order by trait",
        SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++) {
      TraitRule t;
      t.trait = spi::get_text(r, 1);
      t.strategy = parse_trait_strategy(spi::get_text(r, 2)).value_or(TraitStrategy::Last);
      t.from_path = spi::get_text(r, 4);
      priorities.push_back(spi::get_text(r, 3));
      rules.push_back(std::move(t));
    }
  });
  for (size_t i = 0; i < rules.size(); i++) {
    rapidjson::Document d;
    if (!d.Parse(priorities[i].data(), priorities[i].size()).HasParseError() && d.IsArray())
      for (auto& v : d.GetArray())
        if (v.IsInt()) rules[i].source_priority.push_back(v.GetInt());
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
