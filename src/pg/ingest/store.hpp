// Writes validated messages: accepted events into cdp.events (deduplicated
// through cdp.message_ids), rejected ones into cdp.quarantine. Shared by
// cdp.ingest and the HTTP worker's group commit. Caller holds an SPI connection.
#pragma once
#include <string>
#include <vector>

#include "core/message.hpp"
#include "pg/runtime/clock.hpp"

namespace cdp::pg {

struct Incoming {
  int source_id;
  Micros received_at;
  const MessageOutcome* outcome;
};

// One status per incoming message, in order. Errors from Postgres arrive as
// PgError; nothing is written unless the surrounding transaction commits.
std::vector<MessageStatus> store_messages(const std::vector<Incoming>& in);

// Makes sure cdp.events has a partition for `at` (and some days ahead).
void ensure_partition_for(TimestampTz at);

// The source a write key belongs to (empty key: the built-in "sql" source);
// throws cdp::Error(Unauthorized) when unknown or revoked.
int source_for_key(const std::string& write_key);

}  // namespace cdp::pg
