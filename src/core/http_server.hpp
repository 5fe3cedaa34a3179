// The HTTP side of the collector, on libmicrohttpd. Its threads read, inflate,
// parse and validate requests; the only way to Postgres is a queue that one
// committer thread (the background worker's main thread) drains: it takes
// validated requests, commits them together, and hands back the answers. A
// request's connection stays suspended until then, so a 200 means committed.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/http_metrics.hpp"
#include "core/payload.hpp"

struct MHD_Daemon;
struct MHD_Connection;

namespace cdp {

struct HttpConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 8765;
  unsigned threads = 2;               // request threads (parse and validate)
  unsigned max_connections = 1024;    // more are refused
  unsigned idle_timeout_s = 30;       // idle keep-alive and slow clients are cut
  size_t max_queue_messages = 50000;  // validated, waiting for commit; past it: 503
  size_t max_buffered_bytes = size_t(256) << 20;  // request bodies in memory; past it: 503
  Limits limits;
};

// Settings that SIGHUP may change while requests are being served.
struct HttpDynamicConfig {
  std::vector<std::string> cors_origins{"*"};
  std::vector<std::string> trusted_proxies;
};

// A validated request waiting for its commit.
struct PendingRequest {
  Payload payload;
  std::string write_key;
  Micros received_at = 0;
  std::chrono::steady_clock::time_point queued_at;
  // For the committer to fill before complete():
  int http_status = 0;
  std::string body;
  std::string retry_after;  // seconds, for 503
  // Internal to the server.
  MHD_Connection* connection = nullptr;
  std::string origin;
  std::string raw;
  bool too_large = false;
  bool overloaded = false;
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

  // Readable (an eventfd) while requests wait; the committer polls it.
  int wake_fd() const { return wake_fd_; }
  void clear_wake();

  // Committer side: take waiting requests (at least one if any, up to about
  // max_messages messages), then complete each with its answer.
  std::vector<PendingRequest*> take(size_t max_messages);
  void complete(PendingRequest* request);
  size_t waiting() const;

  // Internal, called from libmicrohttpd's threads.
  int handle(MHD_Connection* c, const char* url, const char* method, const char* upload,
             size_t* upload_size, void** state);
  void request_done(PendingRequest* r);
  void connection_event(bool opened);

 private:
  int respond(MHD_Connection* c, int status, const std::string& body, const std::string& origin,
              const char* content_type = "application/json", const char* retry_after = nullptr);
  int ingest(MHD_Connection* c, PendingRequest* r, std::optional<MessageType> implied);
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
};

}  // namespace cdp
