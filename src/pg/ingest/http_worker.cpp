// The HTTP collector's background workers. Each owns an HttpServer (whose
// threads never touch Postgres) and is its committer: it sleeps on its latch
// and the server's eventfd, takes every validated request waiting, writes them
// in one transaction (group commit), and only then lets the server answer.
#include "pg/ingest/http_worker.hpp"

#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "core/http_protocol.hpp"
#include "core/http_server.hpp"
#include "core/sdk_settings.hpp"
#include "pg/ingest/plans.hpp"
#include "pg/ingest/store.hpp"
#include "pg/profiles/profile_api.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/shared.hpp"
#include "pg/runtime/spi.hpp"
#include "pg/runtime/worker.hpp"

extern "C" {
#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"
}

extern "C" {
PGDLLEXPORT void cdp_http_worker_main(Datum arg);
}

namespace cdp::pg {
namespace {

// GUCs (see docs/gucs.md).
char* http_listen = nullptr;
int http_workers = 1;
int http_threads = 2;
int http_max_connections = 1024;
int http_idle_timeout = 30;
int http_request_timeout = 10;
int http_max_queue_messages = 50000;
int http_max_buffer_mb = 256;
int http_commit_max_messages = 5000;
char* http_cors_origins = nullptr;
char* http_trusted_proxies = nullptr;
char* public_url = nullptr;

HttpServer* server = nullptr;  // lives for the process; stopped at exit
using worker::shutdown_requested;

bool check_listen(char** value, void**, GucSource) {
  if (**value == '\0') return true;
  const char* colon = strrchr(*value, ':');
  if (colon && colon != *value && atoi(colon + 1) > 0 && atoi(colon + 1) < 65536) {
    std::string host(*value, static_cast<size_t>(colon - *value));
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1) return true;
  }
  GUC_check_errdetail("cdp.http_listen must be empty or \"IP address:port\", e.g. \"127.0.0.1:8765\" or \"[::1]:8765\".");
  return false;
}

bool check_public_url(char** value, void**, GucSource) {
  try {
    if (**value == '\0' || sdk::parse_public_url(*value)) return true;
  } catch (...) {
  }
  GUC_check_errdetail("cdp.public_url must be empty or \"http(s)://host[:port][/path]\" without a query, "
                      "e.g. \"https://cdp.example.com\".");
  return false;
}

HttpConfig static_config() {
  HttpConfig c;
  std::string listen = http_listen;
  size_t colon = listen.rfind(':');
  c.host = listen.substr(0, colon);
  if (c.host.size() > 2 && c.host.front() == '[') c.host = c.host.substr(1, c.host.size() - 2);
  c.port = static_cast<uint16_t>(atoi(listen.c_str() + colon + 1));
  c.threads = http_threads;
  c.max_connections = http_max_connections;
  c.idle_timeout_s = http_idle_timeout;
  c.request_timeout_s = http_request_timeout;
  c.max_queue_messages = http_max_queue_messages;
  c.max_buffered_bytes = static_cast<size_t>(http_max_buffer_mb) << 20;
  return c;
}

HttpDynamicConfig dynamic_config() {
  HttpDynamicConfig c;
  c.cors_origins = split_list(http_cors_origins ? http_cors_origins : "");
  c.trusted_proxies = split_list(http_trusted_proxies ? http_trusted_proxies : "");
  c.public_url = public_url ? public_url : "";
  return c;
}

// The write keys, read from cdp.sources by this (main) thread and published
// to the request threads, which refuse an unknown Basic key before its body.
// Re-read when older than a second (so a revoked key stops working within a
// second), when a request thread waits for a key it does not know (one made
// since), and at commit for a request that arrived after the last read.
std::shared_ptr<const WriteKeys> keys;
constexpr auto kKeysMaxAge = std::chrono::seconds(1);

// Inside a transaction.
void load_keys() {
  auto next = std::make_shared<WriteKeys>();
  next->loaded_at = std::chrono::steady_clock::now();
  sql::Rows rows =
      sql::select("select id, write_key_hash from cdp.sources where revoked_at is null and write_key_hash is not null");
  for (size_t r = 0; r < rows.size(); r++) next->sources.emplace(rows.str(r, 1), rows.int4(r, 0));
  next->plans = attached_plans();
  keys = next;
  server->set_write_keys(keys);
}

bool keys_stale() { return !keys || std::chrono::steady_clock::now() - keys->loaded_at > kKeysMaxAge; }

// In its own transaction, between commits.
void refresh_keys() {
  try {
    worker::begin("cdp http: reading write keys");
    if (worker::extension_installed()) load_keys();
    worker::commit();
  } catch (const std::exception& e) {
    worker::abort("cdp http: reading write keys", e.what());
  }
}

// The source a request writes as, or -1. Inside a transaction.
int source_of(const PendingRequest* r, bool& reloaded) {
  int source = keys->find(r->write_key);
  if (source < 0 && !reloaded && keys->loaded_at < r->arrived) {
    load_keys();  // the key may have been made after the last read
    reloaded = true;
    source = keys->find(r->write_key);
  }
  return source;
}

void answer(PendingRequest* r, int status, std::string body, const char* retry_after = nullptr) {
  r->http_status = status;
  r->body = std::move(body);
  if (retry_after) r->retry_after = retry_after;
}

// Writes one group of requests in one transaction and fills in each answer.
// Returns false (answers left unset) when the transaction failed.
bool write_group(const std::vector<PendingRequest*>& group, std::string& failure) {
  std::vector<Incoming> in;
  std::vector<PendingRequest*> authorized;
  try {
    // With the worker's own (the extension owner's) rights: since 0.2.0 no role
    // writes cdp.events or the ledger directly, and this code, like cdp.ingest,
    // sets every id, txid, time and ledger row itself.
    worker::begin("cdp http: committing events");
    bool reloaded = keys_stale() || server->keys_wanted();
    if (reloaded) load_keys();
    Micros latest = 0;
    for (PendingRequest* r : group) {
      int source = source_of(r, reloaded);
      if (source < 0) {
        answer(r, 401, error_response("is unknown or revoked", "writeKey"));
        continue;
      }
      if (source != r->checked_source && keys->plan_for(source)) {  // a body key newer than the snapshot
        answer(r, 503, error_response("the source's tracking plan is not loaded yet, retry"), "1");
        continue;
      }
      authorized.push_back(r);
      latest = std::max(latest, r->received_at);
      for (auto& m : r->payload.messages) in.push_back({source, r->received_at, &m});
    }
    if (!in.empty()) ensure_partition_for(to_pg(latest));
    std::vector<MessageStatus> statuses = in.empty() ? std::vector<MessageStatus>() : store_messages(in);
    worker::commit();
    size_t at = 0;
    uint64_t counts[3] = {0, 0, 0};
    for (PendingRequest* r : authorized) {
      std::vector<MessageStatus> mine(statuses.begin() + at,
                                      statuses.begin() + at + r->payload.messages.size());
      at += mine.size();
      for (auto s : mine) counts[static_cast<int>(s)]++;
      answer(r, 200, ingest_response(r->payload, mine));
    }
    for (int i = 0; i < 3; i++) shared_metrics()->count_events(i, counts[i]);
    return true;
  } catch (const std::exception& e) {  // PgError, or a bug: either way nothing was committed
    failure = e.what();
    worker::abort("cdp http: commit", failure);
    return false;
  }
}

// Commits a group and answers every request in it. If the group fails, each
// request is retried alone: one poisoned request, or one whose messageId an
// open SQL transaction holds (we wait at most lock_timeout), fails by itself
// instead of taking the whole group down.
void commit_group(std::vector<PendingRequest*>& group) {
  std::string failure;
  bool any_stored = write_group(group, failure);
  if (!any_stored) {
    for (PendingRequest* r : group) {
      if (group.size() > 1 && write_group({r}, failure)) {
        any_stored = true;
      } else {
        answer(r, 503, error_response("could not store events, retry later"), "1");
      }
    }
  }
  server->set_healthy(any_stored);  // unhealthy only when nothing at all could be stored
  auto done = std::chrono::steady_clock::now();
  for (PendingRequest* r : group) {  // queued -> committed, per request
    shared_metrics()->observe_commit(std::chrono::duration<double>(done - r->queued_at).count());
    server->complete(r);
  }
}

// Lookups are answered first, in one statement (they need no commit), then
// the writes are committed together.
void drain(size_t max_messages) {
  for (;;) {
    std::vector<PendingRequest*> group = server->take(max_messages), lookups, writes;
    if (group.empty()) return;
    for (PendingRequest* r : group) (r->route == Route::Profile ? lookups : writes).push_back(r);
    profiles::answer_lookups(lookups, shared_metrics());
    for (PendingRequest* r : lookups) server->complete(r);
    if (!writes.empty()) commit_group(writes);
  }
}

bool extension_ready() {
  bool ready = false;
  try {
    worker::begin("cdp http: checking the extension");
    ready = worker::extension_installed();
    worker::commit();
  } catch (const std::exception& e) {
    worker::abort("cdp http: extension check", e.what());
  }
  return ready;
}

void stop_server(int, Datum) {
  if (server) server->stop();
}

// Waits for the latch or a request; false once shutdown is requested.
bool wait_for_work(WaitEventSet* events, long timeout_ms) {
  WaitEvent ev[3];
  WaitEventSetWait(events, timeout_ms, ev, 3, PG_WAIT_EXTENSION);
  ResetLatch(MyLatch);
  CHECK_FOR_INTERRUPTS();
  if (ConfigReloadPending) {
    ConfigReloadPending = false;
    ProcessConfigFile(PGC_SIGHUP);
    if (server) server->set_dynamic(dynamic_config());
  }
  return !shutdown_requested;
}

// SIGTERM: stop accepting, answer what was read, then exit.
void shut_down() {
  server->quiesce();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (std::chrono::steady_clock::now() < deadline) {
    if (server->keys_wanted()) refresh_keys();
    drain(http_commit_max_messages);
    pg_usleep(20000);
    if (server->waiting() == 0) break;
  }
  server->refuse_new();
  drain(http_commit_max_messages);
  pg_usleep(100000);  // let the threads send the last answers
}

void worker_main(int index) {
  while (!extension_ready()) {
    if (index == 0)
      ereport(LOG, (errmsg("cdp http: waiting for CREATE EXTENSION cdp in database \"%s\"",
                           worker::database())));
    int rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 5000, PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
    if (shutdown_requested) proc_exit(1);
    (void)rc;
  }
  // A messageId held by an open transaction elsewhere must not stall every request.
  SetConfigOption("lock_timeout", "1000", PGC_SUSET, PGC_S_OVERRIDE);
  server = new HttpServer(static_config(), shared_metrics(), [] { return from_pg(GetCurrentTimestamp()); });
  server->set_dynamic(dynamic_config());
  refresh_keys();
  before_shmem_exit(stop_server, 0);
  char failure[512] = "";
  try {
    server->start();
  } catch (const Error& e) {
    snprintf(failure, sizeof failure, "%s", e.what());
  }
  if (failure[0]) ereport(ERROR, (errmsg("cdp http: %s", failure)));
  server->set_healthy(true);
  ereport(LOG, (errmsg("cdp http: listening on %s (worker %d)", http_listen, index)));
  const DescriptorPlan& fds = server->descriptors();
  if (fds.connections < static_cast<unsigned>(http_max_connections))
    ereport(WARNING, (errmsg("cdp http: at most %u connections, not cdp.http_max_connections = %d: "
                             "the file descriptor limit is %llu",
                             fds.connections, http_max_connections,
                             static_cast<unsigned long long>(fds.soft_limit))));

  WaitEventSet* events = CreateWaitEventSet(TopMemoryContext, 3);
  AddWaitEventToSet(events, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
  AddWaitEventToSet(events, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
  AddWaitEventToSet(events, WL_SOCKET_READABLE, server->wake_fd(), nullptr, nullptr);
  while (wait_for_work(events, 1000)) {
    server->clear_wake();
    if (server->keys_wanted() || keys_stale()) refresh_keys();
    drain(http_commit_max_messages);
    if (!server->healthy()) server->set_healthy(extension_ready());  // recover without traffic
  }
  shut_down();
  proc_exit(1);  // non-zero: if only this worker was terminated, the postmaster restarts it
}

}  // namespace

void define_http_gucs() {
  DefineCustomStringVariable("cdp.http_listen", "Address and port of the HTTP Tracking API.",
                             "Empty disables the HTTP workers.", &http_listen, "127.0.0.1:8765",
                             PGC_POSTMASTER, 0, check_listen, nullptr, nullptr);
  DefineCustomIntVariable("cdp.http_workers", "HTTP worker processes (they share the port).",
                          nullptr, &http_workers, 1, 0, 32, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.http_threads", "Request threads per HTTP worker.",
                          "They read, inflate, parse and validate; only the worker's main thread "
                          "touches Postgres.",
                          &http_threads, 2, 1, 64, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.http_max_connections", "Client connections per HTTP worker.",
                          "Connections past this are refused.", &http_max_connections, 1024, 1,
                          65535, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.http_idle_timeout", "Seconds before an idle or slow connection is closed.",
                          nullptr, &http_idle_timeout, 30, 1, 3600, PGC_POSTMASTER, GUC_UNIT_S,
                          nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.http_request_timeout",
                          "Seconds a request may take to arrive whole, from its first line.",
                          "Slower requests are cut, however steadily their bytes trickle in.",
                          &http_request_timeout, 10, 1, 3600, PGC_POSTMASTER, GUC_UNIT_S, nullptr,
                          nullptr, nullptr);
  DefineCustomIntVariable("cdp.http_max_queue_messages",
                          "Validated messages that may wait for commit; past it requests get 503.",
                          nullptr, &http_max_queue_messages, 50000, 100, 10000000, PGC_POSTMASTER, 0,
                          nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.http_max_buffer_mb",
                          "Megabytes of request bodies a worker may hold; past it requests get 503.",
                          nullptr, &http_max_buffer_mb, 256, 1, 65536, PGC_POSTMASTER, 0, nullptr,
                          nullptr, nullptr);
  DefineCustomIntVariable("cdp.http_commit_max_messages", "Most messages written in one commit.",
                          nullptr, &http_commit_max_messages, 5000, 1, 100000, PGC_SIGHUP, 0,
                          nullptr, nullptr, nullptr);
  DefineCustomStringVariable("cdp.http_cors_origins",
                             "Origins browsers may send events from (comma-separated, * for any).",
                             nullptr, &http_cors_origins, "*", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomStringVariable("cdp.http_trusted_proxies",
                             "Proxy addresses whose X-Forwarded-For is believed (comma-separated).",
                             nullptr, &http_trusted_proxies, "", PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomStringVariable("cdp.public_url",
                             "The URL SDKs reach this server at, named in the settings documents they fetch.",
                             "Empty: http:// and the request's Host header.", &public_url, "", PGC_SIGHUP,
                             0, check_public_url, nullptr, nullptr);
}

void register_http_workers() {
  if (http_listen[0] == '\0') return;
  for (int i = 0; i < http_workers; i++) {
    char name[BGW_MAXLEN];
    snprintf(name, sizeof name, "cdp http worker %d", i);
    worker::register_worker(name, "cdp http", "cdp_http_worker_main", i);
  }
}

}  // namespace cdp::pg

void cdp_http_worker_main(Datum arg) {
  cdp::pg::worker::install_signals();
  cdp::pg::worker::connect("cdp http");
  cdp::pg::worker_main(DatumGetInt32(arg));
}
