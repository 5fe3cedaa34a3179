#include "core/http_server.hpp"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "core/gzip.hpp"
#include "core/http_protocol.hpp"

namespace cdp {
namespace {

MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method,
                      const char*, const char* upload, size_t* upload_size, void** state) {
  return static_cast<MHD_Result>(
      static_cast<HttpServer*>(cls)->handle(c, url, method, upload, upload_size, state));
}

void on_completed(void* cls, MHD_Connection*, void** state, MHD_RequestTerminationCode) {
  if (*state) static_cast<HttpServer*>(cls)->request_done(static_cast<PendingRequest*>(*state));
  *state = nullptr;
}

void on_connection(void* cls, MHD_Connection*, void**, MHD_ConnectionNotificationCode code) {
  static_cast<HttpServer*>(cls)->connection_event(code == MHD_CONNECTION_NOTIFY_STARTED);
}

int status_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidInput:
    case ErrorKind::MalformedJson: return MHD_HTTP_BAD_REQUEST;
    case ErrorKind::TooLarge: return MHD_HTTP_CONTENT_TOO_LARGE;
    case ErrorKind::Unauthorized: return MHD_HTTP_UNAUTHORIZED;
    case ErrorKind::Internal: break;
  }
  return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

const char* header(MHD_Connection* c, const char* name) {
  return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

bool starts_with_ci(const char* s, const char* prefix) {
  return strncasecmp(s, prefix, std::strlen(prefix)) == 0;
}

}  // namespace

HttpServer::HttpServer(HttpConfig config, HttpMetrics* metrics, Clock clock)
    : config_(std::move(config)),
      metrics_(metrics),
      clock_(std::move(clock)),
      dynamic_(std::make_shared<HttpDynamicConfig>()) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  sockaddr_storage addr{};
  bool ipv6 = false;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, config_.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(config_.port);
  } else if (inet_pton(AF_INET6, config_.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(config_.port);
    ipv6 = true;
  } else {
    throw Error(ErrorKind::InvalidInput, "cdp.http_listen",
                "must be an IP address and port, not \"" + config_.host + "\"");
  }
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw Error(ErrorKind::Internal, "eventfd", std::strerror(errno));

  // Threads inherit the signal mask: block everything so that SIGTERM, SIGHUP
  // and SIGUSR1 always reach the Postgres (main) thread.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO |
                   (ipv6 ? MHD_USE_IPv6 : 0);
  daemon_ = MHD_start_daemon(
      flags, config_.port, nullptr, nullptr, &on_request, this, MHD_OPTION_SOCK_ADDR, &addr,
      MHD_OPTION_THREAD_POOL_SIZE, config_.threads, MHD_OPTION_CONNECTION_LIMIT,
      config_.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, config_.idle_timeout_s,
      MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
      MHD_OPTION_NOTIFY_COMPLETED, &on_completed, this, MHD_OPTION_NOTIFY_CONNECTION,
      &on_connection, this, MHD_OPTION_END);
  int err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!daemon_)
    throw Error(ErrorKind::Internal, "cdp.http_listen",
                "could not listen on " + config_.host + ":" + std::to_string(config_.port) + ": " +
                    std::strerror(err));
}

void HttpServer::quiesce() {
  if (!daemon_) return;
  MHD_socket fd = MHD_quiesce_daemon(daemon_);
  if (fd != MHD_INVALID_SOCKET) close(fd);
}

void HttpServer::refuse_new() {
  std::lock_guard lock(mutex_);
  closing_ = true;
}

void HttpServer::stop() {
  if (daemon_) MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
  if (wake_fd_ >= 0) close(wake_fd_);
  wake_fd_ = -1;
}

void HttpServer::set_dynamic(HttpDynamicConfig config) {
  auto next = std::make_shared<const HttpDynamicConfig>(std::move(config));
  std::lock_guard lock(mutex_);
  dynamic_ = std::move(next);
}

void HttpServer::clear_wake() {
  uint64_t n;
  while (read(wake_fd_, &n, sizeof n) == sizeof n) {
  }
}

std::vector<PendingRequest*> HttpServer::take(size_t max_messages) {
  std::vector<PendingRequest*> out;
  size_t n = 0;
  {
    std::lock_guard lock(mutex_);
    while (!queue_.empty()) {
      size_t next = queue_.front()->payload.messages.size();
      if (!out.empty() && n + next > max_messages) break;
      n += next;
      out.push_back(queue_.front());
      queue_.pop_front();
    }
    queued_messages_ -= n;
    metrics_->queue_messages -= static_cast<int64_t>(n);
  }
  return out;
}

size_t HttpServer::waiting() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void HttpServer::complete(PendingRequest* r) { MHD_resume_connection(r->connection); }

void HttpServer::request_done(PendingRequest* r) {
  buffered_bytes_ -= r->raw.size();
  metrics_->buffered_bytes -= static_cast<int64_t>(r->raw.size());
  delete r;
}

void HttpServer::connection_event(bool opened) { metrics_->open_connections += opened ? 1 : -1; }

int HttpServer::respond(MHD_Connection* c, int status, const std::string& body,
                        const std::string& origin, const char* content_type,
                        const char* retry_after) {
  MHD_Response* resp = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                       MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  if (retry_after) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
  if (!origin.empty()) {
    std::shared_ptr<const HttpDynamicConfig> dyn;
    {
      std::lock_guard lock(mutex_);
      dyn = dynamic_;
    }
    if (origin_allowed(origin, dyn->cors_origins)) {
      MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, origin.c_str());
      MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
      if (status == MHD_HTTP_NO_CONTENT) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "POST, GET, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Content-Type, Authorization, Content-Encoding");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
      }
    }
  }
  int ret = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  metrics_->count_request(status);
  return ret;
}

std::string HttpServer::peer_address(MHD_Connection* c, const char* forwarded_for) {
  const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char buf[INET6_ADDRSTRLEN] = "";
  if (info && info->client_addr) {
    const sockaddr* sa = info->client_addr;
    if (sa->sa_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
    else if (sa->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  }
  if (!forwarded_for) return buf;
  std::shared_ptr<const HttpDynamicConfig> dyn;
  {
    std::lock_guard lock(mutex_);
    dyn = dynamic_;
  }
  return client_ip(buf, forwarded_for, dyn->trusted_proxies);
}

int HttpServer::handle(MHD_Connection* c, const char* url, const char* method, const char* upload,
                       size_t* upload_size, void** state) {
  auto* r = static_cast<PendingRequest*>(*state);
  if (!r) {  // headers are in; the body (if any) comes next
    r = new PendingRequest;
    *state = r;
    if (const char* origin = header(c, "Origin")) r->origin = origin;
    const char* length = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length && std::strtoull(length, nullptr, 10) > config_.limits.max_payload_bytes) {
      r->finished = true;  // do not read a body we would refuse
      return respond(c, MHD_HTTP_CONTENT_TOO_LARGE,
                     error_response("is larger than the limit of " +
                                        std::to_string(config_.limits.max_payload_bytes) + " bytes",
                                    "body"),
                     r->origin);
    }
    return MHD_YES;
  }
  if (*upload_size) {
    size_t n = *upload_size;
    *upload_size = 0;
    if (r->finished || r->too_large || r->overloaded) return MHD_YES;
    if (r->raw.size() + n > config_.limits.max_payload_bytes) {
      r->too_large = true;
    } else if (buffered_bytes_ + n > config_.max_buffered_bytes) {
      r->overloaded = true;
    } else {
      r->raw.append(upload, n);
      buffered_bytes_ += n;
      metrics_->buffered_bytes += static_cast<int64_t>(n);
      return MHD_YES;
    }
    buffered_bytes_ -= r->raw.size();
    metrics_->buffered_bytes -= static_cast<int64_t>(r->raw.size());
    std::string().swap(r->raw);
    return MHD_YES;
  }
  if (r->finished) return MHD_YES;
  if (r->http_status) {  // resumed: the committer has answered
    r->finished = true;
    return respond(c, r->http_status, r->body, r->origin, "application/json",
                   r->retry_after.empty() ? nullptr : r->retry_after.c_str());
  }
  r->finished = true;
  if (std::strcmp(method, "OPTIONS") == 0) return respond(c, MHD_HTTP_NO_CONTENT, "", r->origin);
  RouteMatch m = match_route(url);
  bool get = std::strcmp(method, "GET") == 0 || std::strcmp(method, "HEAD") == 0;
  switch (m.route) {
    case Route::Health:
      if (!get) break;
      return healthy_ ? respond(c, MHD_HTTP_OK, "{\"status\":\"ok\"}", r->origin)
                      : respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"status\":\"unavailable\"}",
                                r->origin, "application/json", "1");
    case Route::Metrics:
      if (!get) break;
      return respond(c, MHD_HTTP_OK, metrics_->render(), r->origin, "text/plain; version=0.0.4");
    case Route::NotFound:
      return respond(c, MHD_HTTP_NOT_FOUND, error_response("no such endpoint", "path"), r->origin);
    case Route::Ingest:
      if (std::strcmp(method, "POST") != 0) break;
      r->finished = false;
      return ingest(c, r, m.implied_type);
  }
  return respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, error_response("method not allowed", "method"),
                 r->origin);
}

int HttpServer::ingest(MHD_Connection* c, PendingRequest* r, std::optional<MessageType> implied) {
  r->finished = true;
  const size_t limit = config_.limits.max_payload_bytes;
  if (r->too_large)
    return respond(c, MHD_HTTP_CONTENT_TOO_LARGE,
                   error_response("is larger than the limit of " + std::to_string(limit) + " bytes", "body"),
                   r->origin);
  if (r->overloaded)
    return respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, error_response("overloaded, retry later"),
                   r->origin, "application/json", "1");
  const char* type = header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (type && !starts_with_ci(type, "application/json") && !starts_with_ci(type, "text/plain"))
    return respond(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                   error_response("must be application/json or text/plain", "Content-Type"), r->origin);
  const char* encoding = header(c, MHD_HTTP_HEADER_CONTENT_ENCODING);
  bool compressed = encoding && (strcasecmp(encoding, "gzip") == 0 || strcasecmp(encoding, "deflate") == 0);
  if (encoding && !compressed && strcasecmp(encoding, "identity") != 0)
    return respond(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                   error_response("must be gzip, deflate or identity", "Content-Encoding"), r->origin);
  try {
    std::string inflated;
    if (compressed) inflated = inflate_body(r->raw, limit);
    PayloadOptions opts;
    opts.received_at = r->received_at = clock_();
    opts.implied_type = implied;
    opts.limits = config_.limits;
    opts.client_ip = peer_address(c, header(c, "X-Forwarded-For"));
    r->payload = parse_payload(compressed ? inflated : r->raw, opts);
  } catch (const Error& e) {
    return respond(c, status_for(e.kind()), error_response(e.what(), e.field()), r->origin);
  }
  char* password = nullptr;
  if (char* user = MHD_basic_auth_get_username_password(c, &password)) {
    r->write_key = user;
    MHD_free(user);
  }
  if (password) MHD_free(password);
  if (r->write_key.empty()) r->write_key = r->payload.write_key;
  if (r->write_key.empty())
    return respond(c, MHD_HTTP_UNAUTHORIZED,
                   error_response("a write key is required (HTTP Basic user name, or writeKey in the body)",
                                  "writeKey"),
                   r->origin);
  buffered_bytes_ -= r->raw.size();
  metrics_->buffered_bytes -= static_cast<int64_t>(r->raw.size());
  std::string().swap(r->raw);  // the payload holds what is needed now

  size_t n = r->payload.messages.size();
  if (queued_messages_ + n > config_.max_queue_messages)
    return respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, error_response("overloaded, retry later"),
                   r->origin, "application/json", "1");
  metrics_->observe_batch(n);
  // Suspend before queueing: the committer may resume the connection at once.
  r->finished = false;
  r->connection = c;
  r->queued_at = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    if (closing_) {
      r->finished = true;
      return respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, error_response("shutting down, retry later"),
                     r->origin, "application/json", "1");
    }
    MHD_suspend_connection(c);
    queue_.push_back(r);
    queued_messages_ += n;  // under the lock, so take() never subtracts first
    metrics_->queue_messages += static_cast<int64_t>(n);
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = write(wake_fd_, &one, sizeof one);
  return MHD_YES;
}

}  // namespace cdp
