// One round of the delivery worker, decided in the core: which claimed rows
// go out together under which idempotency key (plan_claim), and what the
// answers mean for the queue (plan_record). The worker (src/pg/delivery/)
// reads the due rows, sends the planned requests with libcurl and ships the
// record's writes in one transaction; no decision is made there.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/connectors/connector.hpp"
#include "core/delivery.hpp"

namespace cdp::delivery {

// A due row of cdp.deliveries.
struct QueuedRow {
  int64_t id = 0, profile = 0;
  int dest = 0, attempts = 0;
  std::string payload;    // JSON text as stored (or as the destination's transformation returned it)
  std::string batch_key;  // "cdp-<first id>-<n>" once sent; empty before
  Micros created = 0;
  // What the destination's transformation made of it (the worker runs it).
  enum class Fate { Send, Drop, Fail } fate = Fate::Send;
  std::string why;  // Fail: the error
};

// A destination that may start requests this round.
struct Room {
  const Options* options = nullptr;
  int requests = 0;  // it may start this many now
};

// One request to send: rows (indexes into the claimed rows, in id order) and
// its body, under `key` (the Idempotency-Key header).
struct PlannedRequest {
  int dest = 0;
  std::vector<size_t> rows;
  std::string key, body;
  int attempts = 0;  // the most any of its rows had
  // A built-in kind's request: appended to the URL, its own headers, and the
  // items it holds with the position in `rows` of the row each came from
  // (its answer is read item by item).
  std::string path;
  std::vector<std::string> headers;
  std::vector<connectors::Item> items;
  std::vector<size_t> item_rows;
};

// A row settled without a request: dropped (its transformation returned null,
// or the kind has no counterpart for it) or dead (a transformation error, a
// message the API's rules refuse).
struct Settled {
  int64_t id = 0;
  int dest = 0;
  bool dead = false;
  std::string why;
};

struct ClaimPlan {
  std::vector<PlannedRequest> requests;
  // Keys given to rows sent for the first time, stored before they go out.
  std::vector<int64_t> key_ids;
  std::vector<std::string> keys;
  std::vector<Settled> settled;
};

// Rows sent before go again with the same companions and key (a group the
// claim limit cut waits for its missing rows); new rows are batched per
// destination, and a partial batch waits until its oldest row has waited
// batch.max_wait_ms. At most `free_slots` requests, and per destination at
// most its room. Bodies have the PII policy applied.
ClaimPlan plan_claim(const std::vector<QueuedRow>& rows, std::map<int, Room> room, int free_slots, Micros now);

// The answer to one request that finished.
struct Answer {
  int dest = 0;
  std::vector<int64_t> ids;
  std::vector<Micros> created;
  int attempts = 0;
  long status = 0;  // 0: no HTTP answer (transport_error says why)
  std::string response, retry_after, transport_error;
  // A built-in kind's request: its items (see PlannedRequest) and the
  // X-RateLimit-Reset header; the kind reads the answer item by item.
  std::vector<connectors::Item> items;
  std::vector<size_t> item_rows;
  std::string rate_limit_reset;
};

struct RecordWrites {
  struct Retry {
    int64_t id;
    Micros at;
    int status;
    std::string error;
  };
  struct Dead {
    int64_t id;
    int64_t status;
    std::string error;
  };
  // A row to send again in another request: under `key` ("": batched afresh),
  // not before `at`; `attempt` counts it as a failed attempt.
  struct Rekey {
    int64_t id;
    Micros at;
    std::string key;
    int status;
    std::string error;
    bool attempt;
  };
  struct PerDestination {
    int64_t delivered = 0, failed = 0, dead = 0;  // rows, requests, rows
    bool success = false;  // a request was delivered
    bool failure = false;  // a request failed in a way that may be an outage
    std::string error;     // the last failure
    std::vector<double> latencies_ms;  // created -> delivered, per delivered row
  };
  std::vector<int64_t> delivered;  // rows to delete
  std::vector<Retry> retries;
  std::vector<Dead> dead;          // rows to move to cdp.dead_letters
  std::vector<Rekey> rekeys;       // rows split off or held back from a request another row failed
  std::map<int, PerDestination> per_destination;
};

// `options_of` gives a destination's options (nullptr once it is gone: the
// defaults apply); `jitter01` a number in [0, 1) for each retried request.
RecordWrites plan_record(const std::vector<Answer>& answers, const std::function<const Options*(int)>& options_of,
                         Micros now, const std::function<double()>& jitter01);

// A destination's circuit after a round: any success closes it; a round of
// retryable failures with none counts once towards opening it.
struct Circuit {
  int failures = 0;
  Micros open_until = 0;  // 0: closed
};
Circuit next_circuit(int failures_before, const RecordWrites::PerDestination& round, Micros now);

}  // namespace cdp::delivery
