// The HTTP side of the collector, on libmicrohttpd. Its threads read, inflate,
// parse and validate requests; the only way to Postgres is a queue that one
// committer thread (the background worker's main thread) drains: it takes
// validated requests, commits them together, and hands back the answers. A
// request's connection stays suspended until then, so a 200 means committed.
//
// Abuse bounds (docs/http-api.md#backpressure-and-timeouts): a connection cap
// below the file descriptor limit, answered 503 past it; a deadline for each
// request to arrive whole, kept by a watchdog thread (libmicrohttpd's own idle
// timeout restarts on every byte); a Basic-auth write key checked against the
// committer's snapshot of keys before any body is read; a bounded share of the
// body buffer for requests whose key is only in the body.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/http_metrics.hpp"
#include "core/http_protocol.hpp"
#include "core/payload.hpp"
#include "core/profile_api.hpp"
#include "core/sdk_settings.hpp"

struct MHD_Daemon;
struct MHD_Connection;
struct MHD_Response;

namespace cdp {

struct HttpConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 8765;
  unsigned threads = 2;               // request threads (parse and validate)
  unsigned max_connections = 1024;    // more are refused
  unsigned idle_timeout_s = 30;       // idle keep-alive and slow clients are cut
  unsigned request_timeout_s = 10;    // a request line, headers and body must all arrive by then
  size_t max_url_bytes = 8192;        // longer: 414
  size_t max_header_bytes = 16384;    // request line and headers; more: 431
  unsigned keyless_buffer_percent = 25;  // of max_buffered_bytes, for bodies without a Basic key
  size_t max_queue_messages = 50000;  // validated, waiting for commit; past it: 503
  size_t max_buffered_bytes = size_t(256) << 20;  // request bodies in memory; past it: 503
  Limits limits;
};

// Settings that SIGHUP may change while requests are being served.
struct HttpDynamicConfig {
  std::vector<std::string> cors_origins{"*"};
  std::vector<std::string> trusted_proxies;
  std::string public_url;  // cdp.public_url, checked; "": http://<the request's Host>
};

// The write keys the committer last read from cdp.sources: the SHA-256 of
// each active key and its source id. Published to the request threads, which
// cannot query Postgres, so that they refuse an unknown key before its body.
struct WriteKeys {
  std::unordered_map<std::string, int> sources;  // raw 32-byte digest -> source id
  // The tracking plan version attached to a source, as of loaded_at.
  std::unordered_map<int, std::shared_ptr<const plans::Attached>> plans;
  std::chrono::steady_clock::time_point loaded_at{};
  int find(std::string_view key) const;  // source id, or -1 if unknown or revoked
  std::shared_ptr<const plans::Attached> plan_for(int source_id) const;  // nullptr: none
};
std::string key_digest(std::string_view key);  // SHA-256, raw bytes

// How many connections fit in the process's file descriptors. The soft
// RLIMIT_NOFILE is raised toward the hard limit as far as the connections
// need; the connection cap stays `headroom` descriptors below it for
// Postgres's own files, the listening socket and the threads' event fds.
struct DescriptorPlan {
  uint64_t soft_limit = 0;     // to set (unchanged when it already suffices)
  unsigned connections = 0;    // the cap actually used (<= wanted)
  unsigned reserve = 0;        // extra slots libmicrohttpd keeps to answer refusals
};
DescriptorPlan plan_descriptors(uint64_t soft, uint64_t hard, uint64_t open_now, unsigned wanted);
constexpr unsigned kDescriptorHeadroom = 256;

struct ConnectionState;

// A validated request waiting for its commit.
struct PendingRequest {
  Payload payload;
  std::string write_key;
  int source_id = -1;      // from the key snapshot when the request was read; -1: unknown
  int checked_source = -1; // the source whose tracking plan (if any) the payload was checked against
  std::chrono::steady_clock::time_point arrived;  // headers in
  Micros received_at = 0;
  std::chrono::steady_clock::time_point queued_at;
  // For the committer to fill before complete():
  int http_status = 0;
  std::string body;
  std::string retry_after;  // seconds, for 503
  // A Profile API lookup (route Profile): what it asks for and the SHA-256 of
  // its bearer token, which the committer checks against cdp.access_tokens.
  profiles::Lookup lookup;
  std::string token_digest;
  // Internal to the server.
  MHD_Connection* connection = nullptr;
  ConnectionState* conn = nullptr;
  std::optional<MessageType> implied;
  Route route = Route::NotFound;
  std::string origin;
  std::string host;             // the Host header, for documents naming this server
  std::string asked_headers;    // a preflight's Access-Control-Request-Headers
  std::string raw;
  size_t charged = 0;        // bytes counted against the buffer budget
  bool waited_for_keys = false;  // the key was looked up again in a newer snapshot
  bool started = false;      // the headers have been checked
  bool awaiting_keys = false;  // suspended until the next key snapshot
  bool keyless = false;      // no Basic user name: the key, if any, is in the body
  bool answered = false;     // a response of ours was queued (else MHD's own error)
  bool too_large = false;
  bool overloaded = false;
  bool discard = false;      // the body is read and dropped (/v1/m)
  bool finished = false;
};

class HttpServer {
 public:
  using Clock = std::function<Micros()>;
  HttpServer(HttpConfig config, HttpMetrics* metrics, Clock clock);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the request threads, with every signal blocked in them.
  // Throws cdp::Error if the address cannot be used.
  void start();
  // Stops accepting connections; requests already read still complete.
  void quiesce();
  // From now on requests are answered 503 instead of queued (shutting down).
  void refuse_new();
  // Stops the threads. Every taken request must have been completed.
  void stop();

  void set_dynamic(HttpDynamicConfig config);
  void set_healthy(bool healthy) { healthy_ = healthy; }
  bool healthy() const { return healthy_; }

  // The committer publishes the keys it read; requests that waited for a newer
  // snapshot (their key was unknown) are then decided. Call once before start().
  void set_write_keys(std::shared_ptr<const WriteKeys> keys);
  std::shared_ptr<const WriteKeys> write_keys() const;
  // Whether a request waits for a newer key snapshot (the committer should read one).
  bool keys_wanted() const { return key_waiters_ > 0; }

  // After start(): the port listened on (config port 0 picks a free one).
  uint16_t port() const;
  // After start(): the connection cap in use and the descriptor limit set.
  const DescriptorPlan& descriptors() const { return plan_; }
  // Why /health would say overloaded now, or "" when it would not.
  std::string overload_reason() const;

  // Readable (an eventfd) while requests wait; the committer polls it.
  int wake_fd() const { return wake_fd_; }
  void clear_wake();

  // Committer side: take waiting requests (at least one if any, up to about
  // max_messages messages), then complete each with its answer.
  std::vector<PendingRequest*> take(size_t max_messages);
  void complete(PendingRequest* request);
  size_t waiting() const;

  // Internal, called from libmicrohttpd's threads.
  int handle(MHD_Connection* c, const char* url, const char* method, const char* version,
             const char* upload, size_t* upload_size, void** state);
  PendingRequest* request_started(MHD_Connection* c);
  void request_done(MHD_Connection* c, PendingRequest* r);
  void connection_opened(MHD_Connection* c, void** socket_context);
  void connection_closed(void** socket_context);

 private:
  int respond(MHD_Connection* c, PendingRequest* r, int status, const std::string& body,
              const char* content_type = "application/json", const char* retry_after = nullptr,
              const char* cache_control = nullptr);
  int refuse(MHD_Connection* c, PendingRequest* r, int status, std::string_view error,
             std::string_view field = {});
  int overloaded(MHD_Connection* c, PendingRequest* r, const char* why = "overloaded, retry later");
  int begin(MHD_Connection* c, PendingRequest* r, const char* url, const char* method,
            const char* version);
  int admit(MHD_Connection* c, PendingRequest* r);
  int answer(MHD_Connection* c, PendingRequest* r, int status, MHD_Response* resp);
  int sdk_document(MHD_Connection* c, PendingRequest* r);
  std::optional<sdk::PublicUrl> public_url(const PendingRequest* r) const;
  void add_cors(MHD_Response* resp, const PendingRequest* r, bool preflight);
  std::shared_ptr<const HttpDynamicConfig> dynamic() const;
  int ingest(MHD_Connection* c, PendingRequest* r, std::optional<MessageType> implied);
  int profile_lookup(MHD_Connection* c, PendingRequest* r, const char* rest);
  int enqueue(MHD_Connection* c, PendingRequest* r, size_t messages);
  bool charge(PendingRequest* r, size_t bytes);
  void release(PendingRequest* r);
  void resume_key_waiters();
  void watch();
  std::string peer_address(MHD_Connection* c, const char* forwarded_for);

  HttpConfig config_;
  HttpMetrics* metrics_;
  Clock clock_;
  MHD_Daemon* daemon_ = nullptr;
  int wake_fd_ = -1;
  std::atomic<bool> healthy_{false};
  bool closing_ = false;  // guarded by mutex_

  mutable std::mutex mutex_;  // guards queue_, dynamic_
  std::deque<PendingRequest*> queue_;
  std::shared_ptr<const HttpDynamicConfig> dynamic_;
  std::atomic<size_t> queued_messages_{0};
  std::atomic<size_t> buffered_bytes_{0};
  std::atomic<size_t> keyless_bytes_{0};  // part of buffered_bytes_
  size_t keyless_budget_ = 0;

  std::shared_ptr<const WriteKeys> keys_;     // guarded by mutex_
  std::vector<PendingRequest*> key_waiters_list_;  // guarded by mutex_
  std::atomic<size_t> key_waiters_{0};

  DescriptorPlan plan_;
  std::atomic<unsigned> open_{0};  // this server's connections (metrics_ sums every worker's)
  mutable std::mutex conns_mutex_;  // guards conns_; held while the watchdog shuts a socket
  ConnectionState* conns_ = nullptr;  // intrusive list
  std::thread watchdog_;
  std::mutex watchdog_mutex_;
  std::condition_variable watchdog_wake_;
  bool watchdog_stop_ = false;  // guarded by watchdog_mutex_
};

}  // namespace cdp
