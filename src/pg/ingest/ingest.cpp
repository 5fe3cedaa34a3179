// cdp.ingest(payload jsonb, write_key text): SQL ingestion through the same
// validation core as the HTTP worker.
#include "core/payload.hpp"
#include "pg/ingest/plans.hpp"
#include "pg/ingest/store.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(cdp_ingest);
}

namespace cdp::pg {
namespace {

void emit(ReturnSetInfo* rsinfo, const MessageOutcome& m, MessageStatus s) {
  const std::string& id = m.ok() ? m.event->message_id : m.rejection.message_id;
  std::string reason = m.ok() ? std::string() : m.rejection.reason();
  call([&] {
    Datum values[3];
    bool nulls[3] = {id.empty(), false, reason.empty()};
    values[0] = id.empty() ? 0 : CStringGetTextDatum(id.c_str());
    values[1] = CStringGetTextDatum(message_status_name(s));
    values[2] = reason.empty() ? 0 : CStringGetTextDatum(reason.c_str());
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
  });
}

Datum ingest(FunctionCallInfo fcinfo) {
  if (PG_ARGISNULL(0)) throw Error(ErrorKind::InvalidInput, "payload", "must not be NULL");
  char* json = nullptr;
  char* key = nullptr;
  TimestampTz received = 0;
  call([&] {
    Jsonb* jb = PG_GETARG_JSONB_P(0);
    json = JsonbToCString(nullptr, &jb->root, VARSIZE(jb));
    if (!PG_ARGISNULL(1)) key = text_to_cstring(PG_GETARG_TEXT_PP(1));
    received = now();
    InitMaterializedSRF(fcinfo, 0);
  });
  PayloadOptions opts;
  opts.received_at = from_pg(received);
  Payload payload;
  std::vector<MessageStatus> status = spi::connected([&] {
    // The source (and so its tracking plan) is known once the body's writeKey is.
    int source = -1;
    opts.plan_for = [&](const std::string& body_key) {
      source = source_for_key(key && *key ? key : body_key);
      return attached_plan(source);
    };
    payload = parse_payload(json, opts);
    if (payload.accepted() > 0) ensure_partition_for(received);
    std::vector<Incoming> in;
    in.reserve(payload.messages.size());
    for (auto& m : payload.messages) in.push_back({source, opts.received_at, &m});
    return store_messages(in);
  });

  auto* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
  for (size_t i = 0; i < status.size(); i++) emit(rsinfo, payload.messages[i], status[i]);
  return Datum(0);
}

}  // namespace
}  // namespace cdp::pg

Datum cdp_ingest(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&] { return cdp::pg::ingest(fcinfo); });
}
