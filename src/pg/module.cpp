// Module entry: refuses to load unless preloaded, defines the GUCs, makes the
// shared-memory segment and registers the background workers.
#include "pg/audience/audience.hpp"
#include "pg/delivery/delivery.hpp"
#include "pg/ingest/http_worker.hpp"
#include "pg/processor/processor.hpp"
#include "pg/runtime/clock.hpp"
#include "pg/runtime/shared.hpp"
#include "pg/runtime/worker.hpp"

extern "C" {
#include "miscadmin.h"
#include "utils/guc.h"
}

extern "C" {
PG_MODULE_MAGIC;
void _PG_init(void);
PG_FUNCTION_INFO_V1(cdp_now);
}

namespace cdp::pg {
namespace {

char* test_clock_text = nullptr;
bool test_clock_set = false;
Micros test_clock_micros = 0;
int dedup_window_hours = 168;

bool check_test_clock(char** value, void** extra, GucSource) {
  if (*value == nullptr || **value == '\0') return true;
  if (parse_iso8601(*value)) return true;
  GUC_check_errdetail("cdp.test_clock must be empty or an ISO-8601 date-time.");
  return false;
}

void assign_test_clock(const char* value, void*) {
  auto t = value && *value ? parse_iso8601(value) : std::nullopt;
  test_clock_set = t.has_value();
  test_clock_micros = t.value_or(0);
}

char* pii_traits = nullptr;

void define_gucs() {
  DefineCustomIntVariable(
      "cdp.dedup_window_hours", "How long a messageId is remembered for deduplication.",
      "A message repeating the messageId of one accepted from the same source within this "
      "many hours is stored once. Never less than 24.",
      &dedup_window_hours, 168, 24, 24 * 365, PGC_SIGHUP, 0, nullptr, nullptr,
      nullptr);
  DefineCustomStringVariable(
      "cdp.test_clock", "Overrides the server clock cdp uses (tests only).",
      "When set to an ISO-8601 date-time, receivedAt and every time-based rule use it "
      "instead of the real clock. Leave empty in production.",
      &test_clock_text, "", PGC_SUSET, 0, check_test_clock, assign_test_clock, nullptr);
  DefineCustomStringVariable(
      "cdp.pii_traits", "Trait names masked for analysts (comma-separated).",
      "cdp.analyst_profiles and cdp.analyst_events show these members, at any depth, as a SHA-256.",
      &pii_traits, "email,phone,first_name,last_name,address,ip", PGC_SUSET, 0, nullptr, nullptr, nullptr);
  worker::define_gucs();
  define_http_gucs();
  processor::define_gucs();
  audience::define_gucs();
  delivery::define_gucs();
  MarkGUCPrefixReserved("cdp");
}

}  // namespace

TimestampTz now() { return test_clock_set ? to_pg(test_clock_micros) : GetCurrentTimestamp(); }

}  // namespace cdp::pg

void _PG_init(void) {
  if (!process_shared_preload_libraries_in_progress)
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("cdp must be loaded via shared_preload_libraries"),
                    errhint("Add cdp to shared_preload_libraries in postgresql.conf and restart "
                            "the server.")));
  cdp::pg::define_gucs();
  cdp::pg::install_shared_memory();
  cdp::pg::register_http_workers();
  cdp::pg::processor::register_worker();
  cdp::pg::delivery::register_workers();
}

Datum cdp_now(PG_FUNCTION_ARGS) { PG_RETURN_TIMESTAMPTZ(cdp::pg::now()); }
