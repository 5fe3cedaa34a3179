// The delivery worker: sends cdp.deliveries to their destinations with libcurl
// multi (many requests in flight, connections kept alive, TLS verified), all
// from the worker's main thread, between short transactions:
//   claim   pick due rows that head their (destination, profile) queue, form
//           requests, persist each request's Idempotency-Key, commit;
//   send    curl_multi until requests finish (the latch is checked between);
//   record  delete acknowledged rows, reschedule or dead-letter failures,
//           update the destination's counters, commit.
// The queue table is the truth: after a crash, anything sent but not recorded
// is sent again with the same Idempotency-Key.
#include <curl/curl.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "core/delivery.hpp"
#include "core/http_metrics.hpp"
#include "core/json_util.hpp"
#include "pg/delivery/delivery.hpp"
#include "pg/runtime/clock.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/shared.hpp"
#include "pg/runtime/spi.hpp"
#include "pg/runtime/worker.hpp"

extern "C" {
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"
}

extern "C" {
PGDLLEXPORT void cdp_delivery_main(Datum arg);
}

namespace cdp::pg::delivery {
namespace {

bool enabled = true;
int concurrency = 256;  // requests in flight
int claim_limit = 1000;
using worker::shutdown_requested;

struct Destination {
  int id = 0;
  std::string url, options_text;
  cdp::delivery::Options options;
  bool paused = false, bad = false;
  int failures = 0;
  Micros open_until = 0;  // 0: closed
  std::vector<double> latencies_ms;  // recent, for p50/p99
};

struct Row {
  int64_t id, profile;
  int dest, attempts;
  std::string payload, batch_key;
  Micros created;
};

struct Request {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  int dest = 0;
  std::vector<int64_t> ids;
  std::vector<Micros> created;
  int attempts = 0;  // the most any row had
  std::string key, body, response, retry_after;
  long status = 0;
  std::string transport_error;
  char error_buffer[CURL_ERROR_SIZE] = {0};
};

CURLM* multi = nullptr;
std::map<int, Destination> destinations;
std::map<CURL*, Request*> in_flight;
std::deque<Request*> backlog;  // claimed, keys stored, not started yet
std::set<int64_t> claimed_ids;  // rows in the backlog or in flight
std::vector<Request*> finished;
std::mt19937_64 rng{std::random_device{}()};

Micros now_micros() { return from_pg(GetCurrentTimestamp()); }

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Request*>(user);
  size_t len = size * n;
  if (r->response.size() < 1024) r->response.append(data, std::min(len, 1024 - r->response.size()));
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Request*>(user);
  std::string_view line(data, size * n);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    std::string head(line.substr(0, kName.size()));
    std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return std::tolower(c); });
    if (head == kName) r->retry_after = std::string(line.substr(kName.size()));
  }
  return size * n;
}

// Destinations this worker sends to, read again every round (a small table).
void load_destinations() {
  struct Loaded {
    int id;
    std::string url, options;
    bool paused;
    int failures;
    Micros open_until;
  };
  std::vector<Loaded> rows;
  call([&] {
    uint64 n = spi::exec("select destination_id, url, options::text, paused, failures,"
                         " coalesce(circuit_open_until, 'epoch') from cdp.destinations",
                         SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++)
      rows.push_back({spi::get_int4(r, 1), spi::get_text(r, 2), spi::get_text(r, 3), spi::get_bool(r, 4),
                      spi::get_int4(r, 5), spi::get_timestamptz(r, 6)});
  });
  std::map<int, Destination> next;
  for (auto& l : rows) {
    Destination d;
    auto old = destinations.find(l.id);
    if (old != destinations.end()) d = std::move(old->second);
    d.id = l.id;
    d.url = l.url;
    d.paused = l.paused;
    d.failures = l.failures;
    d.open_until = l.open_until;
    if (d.options_text != l.options) {
      d.options_text = l.options;
      try {
        d.options = cdp::delivery::Options::parse(l.options);
        d.bad = false;
      } catch (const std::exception&) {
        d.bad = true;
      }
    }
    next.emplace(l.id, std::move(d));
  }
  destinations = std::move(next);
}

int in_flight_for(int dest) {
  int n = 0;
  for (auto& [easy, r] : in_flight) n += r->dest == dest;
  return n;
}

int claimed_for(int dest) {
  int n = in_flight_for(dest);
  for (Request* r : backlog) n += r->dest == dest;
  return n;
}

// Requests a destination may have in flight: one probe while its circuit is half open.
int allowed_for(const Destination& d) { return d.open_until != 0 ? 1 : concurrency; }

void start(Request* r, const Destination& d) {
  Micros now = now_micros();
  std::string ts = std::to_string(now / 1000000);
  r->easy = curl_easy_init();
  if (!r->easy) throw std::runtime_error("curl_easy_init failed");
  std::vector<std::string> lines = {"Content-Type: application/json", "User-Agent: cdp/0.1",
                                    "Idempotency-Key: " + r->key, "X-CDP-Timestamp: " + ts};
  if (!d.options.secret.empty())
    lines.push_back("X-CDP-Signature: " + cdp::delivery::signature(d.options.secret, ts, r->body));
  for (auto& [name, value] : d.options.headers) lines.push_back(name + ": " + value);
  for (auto& l : lines) r->headers = curl_slist_append(r->headers, l.c_str());
  curl_easy_setopt(r->easy, CURLOPT_URL, d.url.c_str());
  curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
  curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body.c_str());
  curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r->body.size()));
  curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, static_cast<long>(d.options.timeout_ms));
  curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min(d.options.timeout_ms, 5000)));
  curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->error_buffer);
  curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
  curl_multi_add_handle(multi, r->easy);
  in_flight[r->easy] = r;
}

// One transaction: picks due rows and forms requests into `out`, to start
// after the commit (their keys are stored first). On an error the caller
// releases what `out` holds.
void claim(std::vector<Request*>& out) {
  load_destinations();
  Micros now = now_micros();
  std::vector<int> ids;
  std::map<int, int> room;  // destination -> requests it may start now
  for (auto& [id, d] : destinations) {
    if (d.paused || d.bad || d.open_until > now) continue;  // paused, or circuit open
    int busy = claimed_for(id);
    if (busy < allowed_for(d)) {
      ids.push_back(id);
      room[id] = allowed_for(d) - busy;
    }
  }
  // Claim up to twice what can be in flight, so that requests start as soon
  // as others finish, without a round trip to the database.
  int free_slots = 2 * concurrency - static_cast<int>(in_flight.size() + backlog.size());
  if (ids.empty() || free_slots <= 0) return;
  // Rows for the requests there is room for, no more (each is read and parsed).
  int widest = 1;
  for (int id : ids) widest = std::max(widest, destinations.at(id).options.max_events);
  int limit = std::min(claim_limit, free_slots * widest);
  std::vector<Row> rows;
  std::vector<int64_t> busy_ids(claimed_ids.begin(), claimed_ids.end());
  call([&] {
    // Walk the queue in id order and stop at the limit: a bitmap scan plus a
    // sort would read every due row each round.
    spi::exec("set local enable_sort = off", SPI_OK_UTILITY);
    spi::exec("set local enable_bitmapscan = off", SPI_OK_UTILITY);
    uint64 n = spi::exec(
        "select q.id, q.destination_id, q.profile_id, q.payload::text, q.created_at, q.attempts,"
        " coalesce(q.batch_key, '') from cdp.deliveries q"
        " where q.destination_id = any($1) and q.next_attempt_at <= now() and q.id <> all($2)"
        "   and not exists (select from cdp.deliveries e where e.destination_id = q.destination_id"
        "                    and e.profile_id = q.profile_id and e.id < q.id)"
        " order by q.id limit $3",
        {spi::int4_array(ids), spi::int8_array(busy_ids), spi::int4(limit)}, SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++)
      rows.push_back({spi::get_int8(r, 1), spi::get_int8(r, 3), spi::get_int4(r, 2), spi::get_int4(r, 6),
                      spi::get_text(r, 4), spi::get_text(r, 7), spi::get_timestamptz(r, 5)});
  });
  // Rows sent before go again with the same companions and key; new rows are
  // batched per destination.
  std::map<std::string, std::vector<Row*>> resend;
  std::map<int, std::vector<Row*>> fresh;
  for (Row& r : rows) (r.batch_key.empty() ? fresh[r.dest] : resend[r.batch_key]).push_back(&r);
  std::vector<int64_t> key_ids;
  std::vector<std::string> keys;
  auto add = [&](int dest, const std::vector<Row*>& group, const std::string& key) {
    auto* req = new Request;
    req->dest = dest;
    req->key = key;
    std::vector<std::string> payloads;
    const Destination& d = destinations.at(dest);
    for (Row* r : group) {
      req->ids.push_back(r->id);
      claimed_ids.insert(r->id);
      req->created.push_back(r->created);
      req->attempts = std::max(req->attempts, r->attempts);
      rapidjson::Document doc;
      if ((d.options.drop.empty() && d.options.hash.empty()) || parse_json(doc, r->payload, cdp::Numbers::Exact).IsError()) {
        payloads.push_back(r->payload);  // no PII policy: sent as stored
        continue;
      }
      cdp::delivery::apply_pii(doc, d.options);  // numbers kept exactly: written back as stored
      payloads.push_back(to_json(doc));
    }
    req->body = cdp::delivery::request_body(payloads, d.options.max_events > 1, now);
    out.push_back(req);
    room[dest]--;
    free_slots--;
  };
  for (auto& [key, group] : resend) {
    int dest = group.front()->dest;
    if (free_slots <= 0) break;
    // The key ("cdp-<first id>-<n>") names n rows: a group the limit cut
    // waits, rather than going under its key without the rest.
    size_t n = std::strtoul(key.substr(key.rfind('-') + 1).c_str(), nullptr, 10);
    if (group.size() != n) continue;
    if (room[dest] > 0) add(dest, group, key);
  }
  for (auto& [dest, group] : fresh) {
    const cdp::delivery::Options& o = destinations.at(dest).options;
    for (size_t i = 0; i < group.size() && free_slots > 0 && room[dest] > 0; i += o.max_events) {
      std::vector<Row*> part(group.begin() + i, group.begin() + std::min(group.size(), i + o.max_events));
      // A partial batch waits for more until its oldest row has waited max_wait_ms.
      if (static_cast<int>(part.size()) < o.max_events && now - part.front()->created < o.max_wait_ms * 1000LL) break;
      std::string key = "cdp-" + std::to_string(part.front()->id) + "-" + std::to_string(part.size());
      for (Row* r : part) {
        key_ids.push_back(r->id);
        keys.push_back(key);
      }
      add(dest, part, key);
    }
  }
  call([&] {
    spi::exec("update cdp.deliveries q set batch_key = x.k from unnest($1::int8[], $2::text[]) x(id, k)"
              " where q.id = x.id",
              {spi::int8_array(key_ids), spi::text_array(keys)}, SPI_OK_UPDATE);
  });
}

// Collects what curl finished.
void reap() {
  int left;
  while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
    if (m->msg != CURLMSG_DONE) continue;
    // The message lives in the easy handle: copy what is needed before freeing it.
    CURL* easy = m->easy_handle;
    CURLcode result = m->data.result;
    Request* r = in_flight.at(easy);
    if (result == CURLE_OK) {
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->status);
    } else {
      r->status = 0;
      r->transport_error = r->error_buffer[0] ? r->error_buffer : curl_easy_strerror(result);
    }
    in_flight.erase(easy);
    curl_multi_remove_handle(multi, easy);
    curl_easy_cleanup(easy);
    curl_slist_free_all(r->headers);
    finished.push_back(r);  // its rows stay claimed until the outcome is recorded
  }
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

// One transaction: the outcome of every finished request.
void record() {
  Micros now = now_micros();
  std::vector<int64_t> ok_ids, retry_ids, dead_ids, dead_status;
  std::vector<Micros> retry_at;
  std::vector<int> retry_status;
  std::vector<std::string> retry_error, dead_error;
  struct Counts {
    int64_t delivered = 0, failed = 0, dead = 0;
    bool success = false, failure = false;
    std::string error;
  };
  std::map<int, Counts> per;
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  for (Request* r : finished) {
    Destination* d = destinations.count(r->dest) ? &destinations.at(r->dest) : nullptr;
    Micros max_age = d ? d->options.max_age : 24LL * 3600 * 1000000;
    cdp::delivery::Outcome o = cdp::delivery::classify(r->status);
    std::string error = r->status ? "HTTP " + std::to_string(r->status) + ": " + r->response : r->transport_error;
    Counts& c = per[r->dest];
    if (o == cdp::delivery::Outcome::Delivered) {
      c.success = true;
      c.delivered += static_cast<int64_t>(r->ids.size());
      ok_ids.insert(ok_ids.end(), r->ids.begin(), r->ids.end());
      if (HttpMetrics* m = shared_metrics())
        for (Micros t : r->created) m->observe_delivery((now - t) / 1e6);
      if (d)
        for (Micros t : r->created) {
          d->latencies_ms.push_back((now - t) / 1000.0);
          if (d->latencies_ms.size() > 2000) d->latencies_ms.erase(d->latencies_ms.begin(), d->latencies_ms.begin() + 1000);
        }
      continue;
    }
    c.failed++;
    c.error = error;
    c.failure |= o == cdp::delivery::Outcome::Retry;  // a refused payload is not an outage
    bool expired = std::any_of(r->created.begin(), r->created.end(), [&](Micros t) { return now - t >= max_age; });
    if (o == cdp::delivery::Outcome::Dead || expired) {
      c.dead += static_cast<int64_t>(r->ids.size());
      for (int64_t id : r->ids) {
        dead_ids.push_back(id);
        dead_status.push_back(r->status);
        dead_error.push_back(error);
      }
      continue;
    }
    Micros delay = cdp::delivery::backoff(r->attempts + 1, jitter(rng), cdp::delivery::parse_retry_after(r->retry_after, now));
    for (int64_t id : r->ids) {
      retry_ids.push_back(id);
      retry_at.push_back(now + delay);
      retry_status.push_back(static_cast<int>(r->status));
      retry_error.push_back(error);
    }
  }
  call([&] {
    spi::exec("delete from cdp.deliveries where id = any($1)", {spi::int8_array(ok_ids)}, SPI_OK_DELETE);
    spi::exec("update cdp.deliveries q set attempts = attempts + 1, next_attempt_at = x.t, last_status = x.s,"
              " last_error = x.e from unnest($1::int8[], $2::timestamptz[], $3::int4[], $4::text[]) x(id, t, s, e)"
              " where q.id = x.id",
              {spi::int8_array(retry_ids), spi::timestamptz_array(retry_at), spi::int4_array(retry_status),
               spi::text_array(retry_error)},
              SPI_OK_UPDATE);
    spi::exec("with gone as (delete from cdp.deliveries q using unnest($1::int8[], $2::int8[], $3::text[]) x(id, s, e)"
              "   where q.id = x.id returning q.*, x.s, x.e)"
              " insert into cdp.dead_letters (id, destination_id, profile_id, kind, payload, created_at, attempts, status, response)"
              " select id, destination_id, profile_id, kind, payload, created_at, attempts + 1, s, e from gone",
              {spi::int8_array(dead_ids), spi::int8_array(dead_status), spi::text_array(dead_error)}, SPI_OK_INSERT);
  });
  if (HttpMetrics* m = shared_metrics()) {
    m->count_deliveries(HttpMetrics::kDelivered, ok_ids.size());
    m->count_deliveries(HttpMetrics::kDead, dead_ids.size());
    for (auto& [id, c] : per) m->count_deliveries(HttpMetrics::kFailedAttempt, c.failed);
  }
  for (auto& [id, c] : per) {
    auto it = destinations.find(id);
    if (it == destinations.end()) continue;
    Destination& d = it->second;
    // Any success closes the circuit; a round of retryable failures with no
    // success counts once towards opening it.
    int failures = c.success ? 0 : d.failures + (c.failure ? 1 : 0);
    Micros open_until = failures >= cdp::delivery::kCircuitFailures ? now + cdp::delivery::circuit_pause(failures) : 0;
    d.failures = failures;
    d.open_until = open_until;
    call([&] {
      spi::Arg until = spi::timestamptz(open_until);
      if (!open_until) until.isnull = true;
      spi::Arg p50 = spi::float8(percentile(d.latencies_ms, 0.5)), p99 = spi::float8(percentile(d.latencies_ms, 0.99));
      if (d.latencies_ms.empty()) p50.isnull = p99.isnull = true;
      spi::exec("update cdp.destinations set delivered = delivered + $2, failed_attempts = failed_attempts + $3,"
                " dead = dead + $4, failures = $5, circuit_open_until = $6, latency_p50_ms = coalesce($7, latency_p50_ms),"
                " latency_p99_ms = coalesce($8, latency_p99_ms),"
                " last_delivery_at = case when $2 > 0 then now() else last_delivery_at end,"
                " last_error = coalesce($9, last_error) where destination_id = $1",
                {spi::int4(id), spi::int8(c.delivered), spi::int8(c.failed), spi::int8(c.dead), spi::int4(failures),
                 until, p50, p99, spi::str(c.error.substr(0, 1024))},
                SPI_OK_UPDATE);
    });
  }
}

// Drops a request that will not be sent now: its rows stay queued with their key.
void release(Request* r) {
  for (int64_t id : r->ids) claimed_ids.erase(id);
  delete r;
}

// Starts what the backlog holds, as far as concurrency allows.
void start_backlog() {
  std::deque<Request*> waiting;
  while (!backlog.empty()) {
    Request* r = backlog.front();
    backlog.pop_front();
    auto d = destinations.find(r->dest);
    if (d == destinations.end() || d->second.paused || d->second.bad || d->second.open_until > now_micros()) {
      release(r);  // dropped, paused or circuit open since it was claimed
      continue;
    }
    if (static_cast<int>(in_flight.size()) >= concurrency || in_flight_for(r->dest) >= allowed_for(d->second)) {
      waiting.push_back(r);
      continue;
    }
    start(r, d->second);
  }
  backlog = std::move(waiting);
}

// After SIGTERM, requests in flight get this long to finish (a destination's
// timeout_ms may be minutes). Those still going are left: their rows are still
// queued and go again after the restart, with the same Idempotency-Key.
constexpr TimestampTz kShutdownGrace = 5 * USECS_PER_SEC;

void loop() {
  TimestampTz last_claim = 0, first_finished = 0, shutdown_at = 0;
  while (!shutdown_requested || !in_flight.empty()) {
    if (ConfigReloadPending) {
      ConfigReloadPending = false;
      ProcessConfigFile(PGC_SIGHUP);
    }
    if (shutdown_requested && shutdown_at == 0) shutdown_at = GetCurrentTimestamp();
    if (shutdown_at != 0 && GetCurrentTimestamp() - shutdown_at >= kShutdownGrace) {
      if (!finished.empty()) worker::in_transaction("cdp delivery: recording", [] { record(); });
      ereport(LOG, (errmsg("cdp delivery: %zu requests still in flight %d s after SIGTERM are left to be sent "
                           "again after the restart",
                           in_flight.size(), static_cast<int>(kShutdownGrace / USECS_PER_SEC))));
      break;
    }
    bool claimed = false;
    bool idle = in_flight.empty() && backlog.empty();
    if (!shutdown_requested && static_cast<int>(backlog.size()) < concurrency &&
        (idle || GetCurrentTimestamp() - last_claim >= 5000)) {
      std::vector<Request*> fresh;
      if (!worker::in_transaction("cdp delivery: claiming", [&] { claim(fresh); }))
        for (Request*& r : fresh) release(r), r = nullptr;
      for (Request* r : fresh)
        if (r) backlog.push_back(r);
      claimed = !fresh.empty();
      last_claim = GetCurrentTimestamp();
    }
    if (shutdown_requested)
      while (!backlog.empty()) release(backlog.front()), backlog.pop_front();
    start_backlog();
    int running = 0;
    curl_multi_perform(multi, &running);
    size_t before = finished.size();
    reap();
    if (before == 0 && !finished.empty()) first_finished = GetCurrentTimestamp();
    // Outcomes are recorded in groups: one transaction for many requests.
    if (!finished.empty() && (finished.size() >= 64 || in_flight.empty() ||
                              GetCurrentTimestamp() - first_finished >= 10000)) {
      // If recording fails, the rows are still queued and go again, with the same keys.
      worker::in_transaction("cdp delivery: recording", [] { record(); });
      for (Request* r : finished) release(r);
      finished.clear();
      continue;
    }
    if (!in_flight.empty()) {
      curl_multi_poll(multi, nullptr, 0, 5, nullptr);  // the latch is checked every few ms
      CHECK_FOR_INTERRUPTS();
      continue;
    }
    if (shutdown_requested) break;
    if (!backlog.empty()) continue;
    // Nothing to do: sleep until a commit queues deliveries, or a second
    // passes (retries coming due, resumed destinations, replays).
    int rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, claimed ? 0 : 1000, PG_WAIT_EXTENSION);
    (void)rc;
    ResetLatch(MyLatch);
    CHECK_FOR_INTERRUPTS();
  }
}

}  // namespace

void define_gucs() {
  DefineCustomBoolVariable("cdp.delivery_enabled", "Run the delivery background worker.", nullptr, &enabled, true,
                           PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.delivery_concurrency", "Most requests the delivery worker has in flight.", nullptr,
                          &concurrency, 256, 1, 1000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.delivery_claim_size", "Most queued deliveries read per round.", nullptr, &claim_limit,
                          1000, 1, 100000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
}

void register_workers() {
  if (enabled) worker::register_worker("cdp delivery", "cdp delivery", "cdp_delivery_main");
}

}  // namespace cdp::pg::delivery

void cdp_delivery_main(Datum) {
  using namespace cdp::pg;
  worker::install_signals();
  worker::connect("cdp delivery");
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) elog(FATAL, "cdp delivery: curl_global_init failed");
  delivery::multi = curl_multi_init();
  curl_multi_setopt(delivery::multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(delivery::concurrency));
  receive_wakeups(Wakeup::Delivery);
  delivery::loop();
  proc_exit(1);  // (0 would unregister the worker for good)
}
