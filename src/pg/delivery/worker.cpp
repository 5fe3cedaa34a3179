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
#include <deque>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "core/delivery.hpp"
#include "core/delivery_round.hpp"
#include "core/http_metrics.hpp"
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
  std::string url, options_text, owner;
  cdp::delivery::Options options;
  bool paused = false, bad = false;
  int failures = 0;
  Micros open_until = 0;  // 0: closed
  std::vector<double> latencies_ms;  // recent, for p50/p99
  double tokens = 0;       // options.rate_limit: requests it may start now
  Micros refilled = 0;
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
  std::string key, body, response, retry_after, rate_limit_reset;
  std::string url;                   // the destination's, plus a kind's path
  std::vector<std::string> kind_headers;
  std::vector<cdp::connectors::Item> items;  // a kind's items, read back from the answer
  std::vector<size_t> item_rows;
  size_t keep = 1024;                // how much of the answer is kept
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
  if (r->response.size() < r->keep) r->response.append(data, std::min(len, r->keep - r->response.size()));
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Request*>(user);
  std::string_view line(data, size * n);
  auto value_of = [&](std::string_view name, std::string& out) {
    if (line.size() <= name.size()) return;
    std::string head(line.substr(0, name.size()));
    std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return std::tolower(c); });
    if (head != name) return;
    std::string_view v = line.substr(name.size());
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
    out = std::string(v);
  };
  value_of("retry-after:", r->retry_after);
  value_of("x-ratelimit-reset:", r->rate_limit_reset);
  return size * n;
}

// Destinations this worker sends to, read again every round (a small table).
void load_destinations() {
  sql::Rows rows = sql::select("select destination_id, url, options::text, paused, failures,"
                               " coalesce(circuit_open_until, 'epoch'), to_jsonb(d)->>'owner'"
                               " from cdp.destinations d");  // (no owner column before 0.2.0)
  std::map<int, Destination> next;
  for (size_t r = 0; r < rows.size(); r++) {
    int id = rows.int4(r, 0);
    Destination d;
    auto old = destinations.find(id);
    if (old != destinations.end()) d = std::move(old->second);
    d.id = id;
    d.url = rows.str(r, 1);
    d.paused = rows.boolean(r, 3);
    d.failures = rows.int4(r, 4);
    d.open_until = rows.timestamptz(r, 5);
    d.owner = rows.str(r, 6);
    if (d.options_text != rows.text(r, 2)) {
      d.options_text = rows.str(r, 2);
      try {
        d.options = cdp::delivery::Options::parse(d.options_text);
        d.bad = false;
      } catch (const std::exception&) {
        d.bad = true;
      }
    }
    next.emplace(id, std::move(d));
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
  std::vector<std::string> lines = r->kind_headers;  // a kind's own, Content-Type included
  if (lines.empty()) lines.push_back("Content-Type: application/json");
  lines.push_back("User-Agent: cdp/0.1");
  lines.push_back("Idempotency-Key: " + r->key);
  lines.push_back("X-CDP-Timestamp: " + ts);
  if (!d.options.secret.empty())
    lines.push_back("X-CDP-Signature: " + cdp::delivery::signature(d.options.secret, ts, r->body));
  for (auto& [name, value] : d.options.headers) lines.push_back(name + ": " + value);
  for (auto& l : lines) r->headers = curl_slist_append(r->headers, l.c_str());
  curl_easy_setopt(r->easy, CURLOPT_URL, r->url.c_str());
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

// options.rate_limit: a bucket of one second's requests, refilled as time passes.
void refill(Destination& d, Micros now) {
  int rps = d.options.requests_per_second;
  if (rps <= 0) return;
  d.tokens = d.refilled == 0 ? rps : std::min<double>(rps, d.tokens + (now - d.refilled) * rps / 1e6);
  d.refilled = now;
}

// Whether the destination may start one more request now (and takes it).
bool take_token(Destination& d, Micros now) {
  if (d.options.requests_per_second <= 0) return true;
  refill(d, now);
  if (d.tokens < 1) return false;
  d.tokens -= 1;
  return true;
}

// Runs each destination's transformation over its rows (transform.cpp).
void transform_rows(std::vector<cdp::delivery::QueuedRow>& rows) {
  std::map<int, std::vector<cdp::delivery::QueuedRow*>> by_dest;
  for (auto& r : rows)
    if (!destinations.at(r.dest).options.transform.empty()) by_dest[r.dest].push_back(&r);
  for (auto& [id, list] : by_dest) {
    const Destination& d = destinations.at(id);
    transform(d.options.transform, d.owner, d.options.transform_timeout_ms, list);
  }
}

// Rows settled at claim: dropped ones leave the queue (counted in dropped),
// refused ones move to the dead letters with the reason.
void write_settled(const std::vector<cdp::delivery::Settled>& settled) {
  std::vector<int64_t> dropped, dead;
  std::vector<std::string> why;
  for (auto& s : settled) {
    if (s.dead) {
      dead.push_back(s.id);
      why.push_back(s.why.substr(0, 1024));
    } else {
      dropped.push_back(s.id);
    }
  }
  if (!dropped.empty())
    sql::run("with gone as (delete from cdp.deliveries where id = any($1) returning destination_id)"
             " update cdp.destinations d set dropped = d.dropped + g.n"
             " from (select destination_id, count(*) n from gone group by 1) g where d.destination_id = g.destination_id",
             {sql::int8s(dropped)}, SPI_OK_UPDATE);
  if (!dead.empty())
    sql::run("with gone as (delete from cdp.deliveries q using unnest($1::int8[], $2::text[]) x(id, e)"
             "   where q.id = x.id returning q.*, x.e),"
             " moved as (insert into cdp.dead_letters (id, destination_id, profile_id, kind, payload, created_at,"
             "   attempts, status, response)"
             "   select id, destination_id, profile_id, kind, payload, created_at, attempts, null, e from gone"
             "   returning destination_id)"
             " update cdp.destinations d set dead = d.dead + m.n"
             " from (select destination_id, count(*) n from moved group by 1) m where d.destination_id = m.destination_id",
             {sql::int8s(dead), sql::texts(why)}, SPI_OK_UPDATE);
  if (HttpMetrics* m = shared_metrics()) m->count_deliveries(HttpMetrics::kDead, dead.size());
}

// One transaction: picks due rows and forms requests into `out` as the core
// plans them (core/delivery_round), to start after the commit (their keys are
// stored first). On an error the caller releases what `out` holds.
void claim(std::vector<Request*>& out) {
  load_destinations();
  Micros now = now_micros();
  std::vector<int> ids;
  std::map<int, cdp::delivery::Room> room;  // destination -> requests it may start now
  for (auto& [id, d] : destinations) {
    if (d.paused || d.bad || d.open_until > now) continue;  // paused, or circuit open
    int busy = claimed_for(id);
    int allowed = allowed_for(d) - busy;
    if (d.options.requests_per_second > 0) {
      refill(d, now);
      int waiting = static_cast<int>(std::count_if(backlog.begin(), backlog.end(), [&](Request* r) { return r->dest == id; }));
      allowed = std::min(allowed, std::max(1, static_cast<int>(d.tokens)) - waiting);
    }
    if (allowed > 0) {
      ids.push_back(id);
      room[id] = {&d.options, allowed};
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
  std::vector<int64_t> busy_ids(claimed_ids.begin(), claimed_ids.end());
  // Walk the queue in id order and stop at the limit: a bitmap scan plus a
  // sort would read every due row each round.
  sql::run("set local enable_sort = off", SPI_OK_UTILITY);
  sql::run("set local enable_bitmapscan = off", SPI_OK_UTILITY);
  // The rows in flight ($2) are thousands with batches: planned with their
  // values, "<> all" is a hash lookup (Postgres 15); as a generic plan's
  // parameter it compares each due row with every one of them.
  sql::run("set local plan_cache_mode = force_custom_plan", SPI_OK_UTILITY);
  sql::Rows due = sql::select(
      "select q.id, q.destination_id, q.profile_id, q.payload::text, q.created_at, q.attempts,"
      " coalesce(q.batch_key, '') from cdp.deliveries q"
      " where q.destination_id = any($1) and q.next_attempt_at <= now() and q.id <> all($2)"
      "   and not exists (select from cdp.deliveries e where e.destination_id = q.destination_id"
      "                    and e.profile_id = q.profile_id and e.id < q.id)"
      " order by q.id limit $3",
      {sql::int4s(ids), sql::int8s(busy_ids), sql::int4(limit)});
  std::vector<cdp::delivery::QueuedRow> rows;
  rows.reserve(due.size());
  for (size_t r = 0; r < due.size(); r++)
    rows.push_back({due.int8(r, 0), due.int8(r, 2), due.int4(r, 1), due.int4(r, 5), due.str(r, 3), due.str(r, 6),
                    due.timestamptz(r, 4)});
  transform_rows(rows);
  cdp::delivery::ClaimPlan plan = cdp::delivery::plan_claim(rows, std::move(room), free_slots, now);
  write_settled(plan.settled);
  for (auto& p : plan.requests) {
    auto* req = new Request;
    out.push_back(req);
    const Destination& d = destinations.at(p.dest);
    req->dest = p.dest;
    req->key = std::move(p.key);
    req->body = std::move(p.body);
    req->attempts = p.attempts;
    req->url = d.url;
    if (d.options.connector) {
      while (!req->url.empty() && req->url.back() == '/') req->url.pop_back();
      req->url += p.path;
      req->keep = cdp::connectors::kMaxResponse;
    }
    req->kind_headers = std::move(p.headers);
    req->items = std::move(p.items);
    req->item_rows = std::move(p.item_rows);
    for (size_t k : p.rows) {
      req->ids.push_back(rows[k].id);
      req->created.push_back(rows[k].created);
      claimed_ids.insert(rows[k].id);
    }
  }
  sql::run("update cdp.deliveries q set batch_key = x.k from unnest($1::int8[], $2::text[]) x(id, k)"
           " where q.id = x.id",
           {sql::int8s(plan.key_ids), sql::texts(plan.keys)}, SPI_OK_UPDATE);
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

using Writes = cdp::delivery::RecordWrites;

// The queue's side of a round: acknowledged rows go, failed ones are
// rescheduled, given-up ones move to cdp.dead_letters.
void write_outcomes(const Writes& w) {
  std::vector<int64_t> retry_ids, dead_ids, dead_status;
  std::vector<Micros> retry_at;
  std::vector<int> retry_status;
  std::vector<std::string> retry_error, dead_error;
  for (auto& r : w.retries) {
    retry_ids.push_back(r.id);
    retry_at.push_back(r.at);
    retry_status.push_back(r.status);
    retry_error.push_back(r.error.substr(0, 1100));
  }
  for (auto& d : w.dead) {
    dead_ids.push_back(d.id);
    dead_status.push_back(d.status);
    dead_error.push_back(d.error.substr(0, 1100));
  }
  sql::run("delete from cdp.deliveries where id = any($1)", {sql::int8s(w.delivered)}, SPI_OK_DELETE);
  if (!w.rekeys.empty()) {
    std::vector<int64_t> ids;
    std::vector<Micros> at;
    std::vector<std::string> keys, errors;
    std::vector<int> statuses, attempts;
    for (auto& k : w.rekeys) {
      ids.push_back(k.id);
      at.push_back(k.at);
      keys.push_back(k.key);
      statuses.push_back(k.status);
      errors.push_back(k.error.substr(0, 1024));
      attempts.push_back(k.attempt ? 1 : 0);
    }
    sql::run("update cdp.deliveries q set batch_key = nullif(x.k, ''), next_attempt_at = x.t,"
             " attempts = q.attempts + x.a, last_status = x.s, last_error = x.e"
             " from unnest($1::int8[], $2::timestamptz[], $3::text[], $4::int4[], $5::text[], $6::int4[])"
             "   x(id, t, k, s, e, a) where q.id = x.id",
             {sql::int8s(ids), sql::timestamptzs(at), sql::texts(keys), sql::int4s(statuses), sql::texts(errors),
              sql::int4s(attempts)},
             SPI_OK_UPDATE);
  }
  sql::run("update cdp.deliveries q set attempts = attempts + 1, next_attempt_at = x.t, last_status = x.s,"
           " last_error = x.e from unnest($1::int8[], $2::timestamptz[], $3::int4[], $4::text[]) x(id, t, s, e)"
           " where q.id = x.id",
           {sql::int8s(retry_ids), sql::timestamptzs(retry_at), sql::int4s(retry_status), sql::texts(retry_error)},
           SPI_OK_UPDATE);
  sql::run("with gone as (delete from cdp.deliveries q using unnest($1::int8[], $2::int8[], $3::text[]) x(id, s, e)"
           "   where q.id = x.id returning q.*, x.s, x.e)"
           " insert into cdp.dead_letters (id, destination_id, profile_id, kind, payload, created_at, attempts, status, response)"
           " select id, destination_id, profile_id, kind, payload, created_at, attempts + 1, s, e from gone",
           {sql::int8s(dead_ids), sql::int8s(dead_status), sql::texts(dead_error)}, SPI_OK_INSERT);
}

// The metrics' side (GET /metrics): delivered and dead rows, failed attempts, latencies.
void count_outcomes(const Writes& w) {
  HttpMetrics* m = shared_metrics();
  if (!m) return;
  m->count_deliveries(HttpMetrics::kDelivered, w.delivered.size());
  m->count_deliveries(HttpMetrics::kDead, w.dead.size());
  for (auto& [id, c] : w.per_destination) {
    m->count_deliveries(HttpMetrics::kFailedAttempt, c.failed);
    for (double ms : c.latencies_ms) m->observe_delivery(ms / 1000.0);
  }
}

// A destination's counters, circuit (open_until 0: closed, stored as NULL)
// and latencies after a round; the last error and percentiles stay when the
// round has none.
void write_destination(const Destination& d, const Writes::PerDestination& c) {
  bool measured = !d.latencies_ms.empty();
  double p50 = measured ? percentile(d.latencies_ms, 0.5) : 0, p99 = measured ? percentile(d.latencies_ms, 0.99) : 0;
  sql::run("update cdp.destinations set delivered = delivered + $2, failed_attempts = failed_attempts + $3,"
           " dead = dead + $4, failures = $5, circuit_open_until = nullif($6, 'epoch'),"
           " latency_p50_ms = case when $10 then $7 else latency_p50_ms end,"
           " latency_p99_ms = case when $10 then $8 else latency_p99_ms end,"
           " last_delivery_at = case when $2 > 0 then now() else last_delivery_at end,"
           " last_error = coalesce($9, last_error) where destination_id = $1",
           {sql::int4(d.id), sql::int8(c.delivered), sql::int8(c.failed), sql::int8(c.dead), sql::int4(d.failures),
            sql::timestamptz(d.open_until), sql::float8(p50), sql::float8(p99), sql::text(c.error.substr(0, 1024)),
            sql::boolean(measured)},
           SPI_OK_UPDATE);
}

// One transaction: the outcome of every finished request, as the core reads
// it (core/delivery_round): delete, reschedule or dead-letter, then each
// destination's counters and circuit.
void record() {
  Micros now = now_micros();
  std::vector<cdp::delivery::Answer> answers;
  answers.reserve(finished.size());
  for (Request* r : finished)
    answers.push_back({r->dest, r->ids, r->created, r->attempts, r->status, r->response, r->retry_after,
                       r->transport_error, r->items, r->item_rows, r->rate_limit_reset});
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  auto options_of = [](int dest) -> const cdp::delivery::Options* {
    auto it = destinations.find(dest);
    return it == destinations.end() ? nullptr : &it->second.options;
  };
  Writes w = cdp::delivery::plan_record(answers, options_of, now, [&] { return jitter(rng); });
  write_outcomes(w);
  count_outcomes(w);
  for (auto& [id, c] : w.per_destination) {
    auto it = destinations.find(id);
    if (it == destinations.end()) continue;
    Destination& d = it->second;
    for (double ms : c.latencies_ms) {
      d.latencies_ms.push_back(ms);
      if (d.latencies_ms.size() > 2000) d.latencies_ms.erase(d.latencies_ms.begin(), d.latencies_ms.begin() + 1000);
    }
    cdp::delivery::Circuit circuit = cdp::delivery::next_circuit(d.failures, c, now);
    d.failures = circuit.failures;
    d.open_until = circuit.open_until;
    write_destination(d, c);
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
    if (static_cast<int>(in_flight.size()) >= concurrency || in_flight_for(r->dest) >= allowed_for(d->second) ||
        !take_token(d->second, now_micros())) {
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
    if (!backlog.empty()) {
      // Held back by a rate limit: wait a little for its bucket to refill.
      (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
      ResetLatch(MyLatch);
      CHECK_FOR_INTERRUPTS();
      continue;
    }
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
  delivery::register_transform_timeout();
  worker::connect("cdp delivery");
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) elog(FATAL, "cdp delivery: curl_global_init failed");
  delivery::multi = curl_multi_init();
  curl_multi_setopt(delivery::multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(delivery::concurrency));
  receive_wakeups(Wakeup::Delivery);
  delivery::loop();
  proc_exit(1);  // (0 would unregister the worker for good)
}
