// Tracking plans for ingestion, and cdp.check_tracking_plan(plan), which
// create and update call so that a plan the core cannot compile is refused
// at creation with the JSON path of what is wrong.
#include "pg/ingest/plans.hpp"

#include <map>
#include <string>
#include <utility>

#include "pg/runtime/guard.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(cdp_check_tracking_plan);
}

namespace cdp::pg {
namespace {

// Row k: an attachment and its options. $1 NULL: every source.
constexpr const char* kAttached = R"SQL(
select a.source_id, a.plan_id, p.version, p.name, a.unplanned_events = 'block', a.unplanned_properties = 'omit',
       a.violations = 'block', a.context_violations
  from cdp.source_tracking_plans a join cdp.tracking_plans p on p.id = a.plan_id
 where $1::int is null or a.source_id = $1
)SQL";

// Compiled versions by (plan, version): immutable, so never stale.
std::map<std::pair<int64_t, int>, std::shared_ptr<const plans::Plan>> compiled;

std::shared_ptr<const plans::Plan> compiled_version(int64_t plan_id, int version) {
  auto key = std::make_pair(plan_id, version);
  if (auto it = compiled.find(key); it != compiled.end()) return it->second;
  sql::Rows text = sql::select("select plan::text from cdp.tracking_plan_versions where plan_id = $1 and version = $2",
                               {sql::int4(static_cast<int>(plan_id)), sql::int4(version)});
  if (text.empty()) throw Error(ErrorKind::Internal, "tracking plan", "a version attached to a source is missing");
  auto plan = plans::Plan::compile(text.str(0, 0));
  if (compiled.size() > 256) compiled.clear();  // old versions pile up in a long-lived worker
  compiled.emplace(key, plan);
  return plan;
}

std::unordered_map<int, std::shared_ptr<const plans::Attached>> read_attached(std::optional<int> source) {
  sql::Rows rows = sql::select(kAttached, {source ? sql::int4(*source) : sql::null_if(true, sql::int4(0))});
  std::unordered_map<int, std::shared_ptr<const plans::Attached>> out;
  for (size_t r = 0; r < rows.size(); r++) {
    auto a = std::make_shared<plans::Attached>();
    a->plan_id = rows.int8(r, 1);
    a->version = rows.int4(r, 2);
    a->name = rows.str(r, 3);
    a->options = {rows.boolean(r, 4), rows.boolean(r, 5), rows.boolean(r, 6), rows.boolean(r, 7)};
    try {
      a->plan = compiled_version(a->plan_id, a->version);
    } catch (const Error& e) {  // checked at creation; a stored plan a newer core refuses must not stop ingestion
      std::string why = e.what();
      call([&] { elog(WARNING, "cdp: tracking plan \"%s\" version %d is not used: %s", a->name.c_str(), a->version, why.c_str()); });
      continue;
    }
    out.emplace(rows.int4(r, 0), std::move(a));
  }
  return out;
}

// A 0.1.0 schema (the new library before ALTER EXTENSION cdp UPDATE) has no
// plans. A catalog cache lookup, no statement: cdp.ingest asks on every call.
bool plans_installed() {
  bool found = false;
  call([&] {
    Oid ns = get_namespace_oid("cdp", true);
    found = OidIsValid(ns) && OidIsValid(get_relname_relid("source_tracking_plans", ns));
  });
  return found;
}

Datum check_tracking_plan(FunctionCallInfo fcinfo) {
  if (PG_ARGISNULL(0)) throw Error(ErrorKind::InvalidInput, "plan", "must not be NULL");
  char* json = nullptr;
  call([&] {
    Jsonb* jb = PG_GETARG_JSONB_P(0);
    json = JsonbToCString(nullptr, &jb->root, VARSIZE(jb));
  });
  auto plan = plans::Plan::compile(std::string_view(json));
  return Int32GetDatum(static_cast<int32>(plan->events()));
}

}  // namespace

std::shared_ptr<const plans::Attached> attached_plan(int source_id) {
  if (!plans_installed()) return nullptr;
  auto all = read_attached(source_id);
  return all.empty() ? nullptr : all.begin()->second;
}

std::unordered_map<int, std::shared_ptr<const plans::Attached>> attached_plans() {
  if (!plans_installed()) return {};
  return read_attached(std::nullopt);
}

}  // namespace cdp::pg

Datum cdp_check_tracking_plan(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&] { return cdp::pg::check_tracking_plan(fcinfo); });
}
