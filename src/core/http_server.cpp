#include "core/http_server.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "core/gzip.hpp"
#include "core/http_protocol.hpp"
#include "core/sdk_settings.hpp"

namespace cdp {

// One TCP connection, for the watchdog: which part of a request it is in and
// since when. The list and the socket are only touched under conns_mutex_, and
// libmicrohttpd calls connection_closed (which unlinks) before it closes the
// socket, so the watchdog never shuts a descriptor that was reused.
struct ConnectionState {
  enum Phase : int { kIdle, kReceiving, kProcessing, kRefused };
  int fd = -1;
  std::atomic<int> phase{kIdle};
  std::atomic<int64_t> since{0};  // steady clock, nanoseconds
  bool cut = false;
  ConnectionState* prev = nullptr;
  ConnectionState* next = nullptr;
};

namespace {

// Each connection's memory pool holds the request line and headers (and read
// buffers). It is larger than max_header_bytes, so our own JSON 414 and 431
// answer before libmicrohttpd's HTML ones would.
constexpr size_t kConnectionMemory = 64 * 1024;
constexpr auto kRefusedGrace = std::chrono::seconds(1);
constexpr auto kWatchdogTick = std::chrono::milliseconds(200);

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void mark(ConnectionState* cs, ConnectionState::Phase phase) {
  if (!cs || cs->phase == ConnectionState::kRefused) return;
  cs->since = steady_ns();
  cs->phase = phase;
}

MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method,
                      const char* version, const char* upload, size_t* upload_size, void** state) {
  return static_cast<MHD_Result>(static_cast<HttpServer*>(cls)->handle(
      c, url, method, version, upload, upload_size, state));
}

void* on_uri(void* cls, const char*, MHD_Connection* c) {
  return static_cast<HttpServer*>(cls)->request_started(c);
}

// Paths and query values stay as they arrived: match_route and query_arg
// decode them, so that an encoded slash in a profile identifier stays part of
// the value instead of splitting the path.
size_t keep_escaped(void*, MHD_Connection*, char* s) { return std::strlen(s); }

void on_completed(void* cls, MHD_Connection* c, void** state, MHD_RequestTerminationCode) {
  if (*state) static_cast<HttpServer*>(cls)->request_done(c, static_cast<PendingRequest*>(*state));
  *state = nullptr;
}

void on_connection(void* cls, MHD_Connection* c, void** socket_context,
                   MHD_ConnectionNotificationCode code) {
  auto* server = static_cast<HttpServer*>(cls);
  if (code == MHD_CONNECTION_NOTIFY_STARTED)
    server->connection_opened(c, socket_context);
  else
    server->connection_closed(socket_context);
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

// A query parameter, percent-decoded ("+" is a space); nullopt when absent or broken.
std::optional<std::string> query_arg(MHD_Connection* c, const char* name) {
  const char* raw = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
  if (!raw) return std::nullopt;
  return percent_decode(raw, true);
}

// The headers that decide how the body is framed, counted: libmicrohttpd
// looks at the first of each only, a proxy in front may look at another.
struct Framing {
  int host = 0, content_length = 0, transfer_encoding = 0;
  const char* encoding = nullptr;
};

MHD_Result count_framing(void* cls, MHD_ValueKind, const char* key, const char* value) {
  auto* f = static_cast<Framing*>(cls);
  if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) f->host++;
  if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) f->content_length++;
  if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    f->transfer_encoding++;
    f->encoding = value;
  }
  return MHD_YES;
}

size_t open_descriptors() {
  size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) n++;
    closedir(d);
    n = n > 3 ? n - 3 : 0;  // ".", "..", and the directory's own descriptor
  }
  return n;
}

// Written straight to a connection past the cap, before libmicrohttpd reads it.
const std::string& refusal() {
  static const std::string text = [] {
    std::string body = error_response("too many connections, retry later");
    return "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
           "Content-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }();
  return text;
}

}  // namespace

int WriteKeys::find(std::string_view key) const {
  if (key.empty()) return -1;
  auto it = sources.find(key_digest(key));
  return it == sources.end() ? -1 : it->second;
}

std::shared_ptr<const plans::Attached> WriteKeys::plan_for(int source_id) const {
  auto it = plans.find(source_id);
  return it == plans.end() ? nullptr : it->second;
}

std::string key_digest(std::string_view key) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof md);
}

DescriptorPlan plan_descriptors(uint64_t soft, uint64_t hard, uint64_t open_now, unsigned wanted) {
  DescriptorPlan p;
  p.reserve = std::clamp(wanted / 16, 4u, 64u);
  uint64_t fixed = open_now + kDescriptorHeadroom + p.reserve;
  uint64_t need = fixed + wanted;
  p.soft_limit = std::max(soft, std::min(hard, need));
  uint64_t room = p.soft_limit > fixed ? p.soft_limit - fixed : 0;
  p.connections = static_cast<unsigned>(std::max<uint64_t>(1, std::min<uint64_t>(wanted, room)));
  return p;
}

HttpServer::HttpServer(HttpConfig config, HttpMetrics* metrics, Clock clock)
    : config_(std::move(config)),
      metrics_(metrics),
      clock_(std::move(clock)),
      dynamic_(std::make_shared<HttpDynamicConfig>()),
      keys_(std::make_shared<WriteKeys>()) {}

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
  // Connections are capped below the descriptor limit, so that running out
  // of descriptors never stalls accept() and the listening socket.
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  plan_ = plan_descriptors(lim.rlim_cur, lim.rlim_max, open_descriptors(), config_.max_connections);
  if (plan_.soft_limit > lim.rlim_cur) {
    rlimit raised = lim;
    raised.rlim_cur = plan_.soft_limit;
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0)
      plan_ = plan_descriptors(lim.rlim_cur, lim.rlim_cur, open_descriptors(), config_.max_connections);
  }
  keyless_budget_ = config_.max_buffered_bytes / 100 * config_.keyless_buffer_percent;

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
      plan_.connections + plan_.reserve, MHD_OPTION_CONNECTION_TIMEOUT, config_.idle_timeout_s,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory, MHD_OPTION_LISTENING_ADDRESS_REUSE,
      1u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_URI_LOG_CALLBACK, &on_uri, this,
      MHD_OPTION_UNESCAPE_CALLBACK, &keep_escaped, nullptr,
      MHD_OPTION_NOTIFY_COMPLETED, &on_completed, this, MHD_OPTION_NOTIFY_CONNECTION,
      &on_connection, this, MHD_OPTION_END);
  int err = errno;
  if (daemon_) {
    watchdog_stop_ = false;
    watchdog_ = std::thread([this] { watch(); });
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!daemon_)
    throw Error(ErrorKind::Internal, "cdp.http_listen",
                "could not listen on " + config_.host + ":" + std::to_string(config_.port) + ": " +
                    std::strerror(err));
}

uint16_t HttpServer::port() const {
  const MHD_DaemonInfo* info = daemon_ ? MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT) : nullptr;
  return info ? info->port : 0;
}

void HttpServer::quiesce() {
  if (!daemon_) return;
  MHD_socket fd = MHD_quiesce_daemon(daemon_);
  if (fd != MHD_INVALID_SOCKET) close(fd);
}

void HttpServer::refuse_new() {
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  resume_key_waiters();
}

void HttpServer::stop() {
  refuse_new();  // no connection may stay suspended waiting for keys
  if (watchdog_.joinable()) {
    {
      std::lock_guard lock(watchdog_mutex_);
      watchdog_stop_ = true;
    }
    watchdog_wake_.notify_all();
    watchdog_.join();
  }
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

void HttpServer::set_write_keys(std::shared_ptr<const WriteKeys> keys) {
  {
    std::lock_guard lock(mutex_);
    keys_ = std::move(keys);
  }
  resume_key_waiters();
}

std::shared_ptr<const WriteKeys> HttpServer::write_keys() const {
  std::lock_guard lock(mutex_);
  return keys_;
}

void HttpServer::resume_key_waiters() {
  std::vector<PendingRequest*> waiters;
  {
    std::lock_guard lock(mutex_);
    waiters.swap(key_waiters_list_);
    key_waiters_ = 0;
  }
  for (PendingRequest* r : waiters) MHD_resume_connection(r->connection);
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

std::string HttpServer::overload_reason() const {
  auto near = [](size_t used, size_t limit) { return limit > 0 && used * 10 >= limit * 9; };
  if (near(open_, plan_.connections))
    return "connections: " + std::to_string(open_.load()) + " open of " +
           std::to_string(plan_.connections);
  if (near(buffered_bytes_, config_.max_buffered_bytes))
    return "request buffer: " + std::to_string(buffered_bytes_.load()) + " of " +
           std::to_string(config_.max_buffered_bytes) + " bytes in use";
  if (near(queued_messages_, config_.max_queue_messages))
    return "commit queue: " + std::to_string(queued_messages_.load()) + " of " +
           std::to_string(config_.max_queue_messages) + " messages waiting";
  return {};
}

// --- connections and the watchdog ------------------------------------------

void HttpServer::connection_opened(MHD_Connection* c, void** socket_context) {
  auto* cs = new ConnectionState;
  if (const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD))
    cs->fd = info->connect_fd;
  cs->since = steady_ns();
  *socket_context = cs;
  metrics_->open_connections += 1;
  if (++open_ > plan_.connections && cs->fd >= 0) {
    // Past the cap: answer 503 now and close; the handler drops the request.
    cs->phase = ConnectionState::kRefused;
    metrics_->connections_refused += 1;
    metrics_->count_request(MHD_HTTP_SERVICE_UNAVAILABLE);
    const std::string& text = refusal();
    [[maybe_unused]] ssize_t w = send(cs->fd, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(cs->fd, SHUT_WR);
  }
  std::lock_guard lock(conns_mutex_);
  cs->next = conns_;
  if (conns_) conns_->prev = cs;
  conns_ = cs;
}

void HttpServer::connection_closed(void** socket_context) {
  auto* cs = static_cast<ConnectionState*>(*socket_context);
  *socket_context = nullptr;
  if (!cs) return;
  {
    std::lock_guard lock(conns_mutex_);
    if (cs->prev) cs->prev->next = cs->next;
    else conns_ = cs->next;
    if (cs->next) cs->next->prev = cs->prev;
  }
  delete cs;
  --open_;
  metrics_->open_connections -= 1;
}

// Shuts the socket of every connection that overstays its phase: a request
// not arrived whole within request_timeout_s of its first line, a connection
// with no request line within idle_timeout_s (however slowly bytes trickle
// in), a refused connection after a second. libmicrohttpd then sees the
// socket closed and cleans up. Requests waiting for their commit are exempt.
void HttpServer::watch() {
  const int64_t request_ns = int64_t(config_.request_timeout_s) * 1000000000;
  const int64_t idle_ns = int64_t(config_.idle_timeout_s) * 1000000000;
  const int64_t refused_ns = std::chrono::nanoseconds(kRefusedGrace).count();
  std::unique_lock wait(watchdog_mutex_);
  while (!watchdog_wake_.wait_for(wait, kWatchdogTick, [this] { return watchdog_stop_; })) {
    int64_t now = steady_ns();
    std::lock_guard lock(conns_mutex_);
    for (ConnectionState* cs = conns_; cs; cs = cs->next) {
      if (cs->cut || cs->fd < 0) continue;
      int64_t age = now - cs->since;
      int phase = cs->phase;
      bool expired = (phase == ConnectionState::kReceiving && age > request_ns) ||
                     (phase == ConnectionState::kIdle && age > idle_ns) ||
                     (phase == ConnectionState::kRefused && age > refused_ns);
      if (!expired) continue;
      if (phase == ConnectionState::kReceiving) metrics_->requests_timed_out += 1;
      cs->cut = true;
      shutdown(cs->fd, SHUT_RDWR);
    }
  }
}

PendingRequest* HttpServer::request_started(MHD_Connection* c) {
  auto* r = new PendingRequest;
  r->arrived = std::chrono::steady_clock::now();
  if (const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT))
    r->conn = static_cast<ConnectionState*>(info->socket_context);
  mark(r->conn, ConnectionState::kReceiving);
  return r;
}

void HttpServer::request_done(MHD_Connection* c, PendingRequest* r) {
  if (!r->answered) {  // libmicrohttpd answered by itself (a malformed request): count it
    const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
    if (info && info->http_status) metrics_->count_request(static_cast<int>(info->http_status));
  }
  release(r);
  mark(r->conn, ConnectionState::kIdle);
  delete r;
}

// --- the buffer budget ------------------------------------------------------

bool HttpServer::charge(PendingRequest* r, size_t bytes) {
  if (buffered_bytes_.fetch_add(bytes) + bytes > config_.max_buffered_bytes) {
    buffered_bytes_ -= bytes;
    return false;
  }
  if (r->keyless && keyless_bytes_.fetch_add(bytes) + bytes > keyless_budget_) {
    keyless_bytes_ -= bytes;
    buffered_bytes_ -= bytes;
    return false;
  }
  r->charged += bytes;
  metrics_->buffered_bytes += static_cast<int64_t>(bytes);
  return true;
}

void HttpServer::release(PendingRequest* r) {
  buffered_bytes_ -= r->charged;
  if (r->keyless) keyless_bytes_ -= r->charged;
  metrics_->buffered_bytes -= static_cast<int64_t>(r->charged);
  r->charged = 0;
  std::string().swap(r->raw);
}

// --- answers ----------------------------------------------------------------

std::shared_ptr<const HttpDynamicConfig> HttpServer::dynamic() const {
  std::lock_guard lock(mutex_);
  return dynamic_;
}

// CORS headers for an allowed Origin (docs/http-api.md#cors). Every answer
// varies by Origin; a preflight's also by the headers it asked for.
void HttpServer::add_cors(MHD_Response* resp, const PendingRequest* r, bool preflight) {
  if (r->origin.empty()) return;
  CorsAnswer a = cors_policy(r->origin, dynamic()->cors_origins, r->asked_headers);
  if (!a.allowed) return;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, r->origin.c_str());
  if (a.credentials) MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
  if (!preflight) {
    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", "Retry-After, ETag");
    return;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY,
                          "Origin, Access-Control-Request-Headers, Access-Control-Request-Method");
  MHD_add_response_header(resp, "Access-Control-Allow-Methods", "POST, GET, OPTIONS");
  MHD_add_response_header(resp, "Access-Control-Allow-Headers", a.allow_headers.c_str());
  MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
}

int HttpServer::respond(MHD_Connection* c, PendingRequest* r, int status, const std::string& body,
                        const char* content_type, const char* retry_after, const char* cache_control) {
  MHD_Response* resp = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                       MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  if (retry_after) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
  if (cache_control) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
  return answer(c, r, status, resp);
}

// Every answer's last step: CORS headers, queued, counted.
int HttpServer::answer(MHD_Connection* c, PendingRequest* r, int status, MHD_Response* resp) {
  r->finished = true;
  r->answered = true;
  add_cors(resp, r, status == MHD_HTTP_NO_CONTENT);
  int ret = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  metrics_->count_request(status);
  return ret;
}

// The URL documents name this server by: cdp.public_url, else http://Host.
std::optional<sdk::PublicUrl> HttpServer::public_url(const PendingRequest* r) const {
  std::string configured = dynamic()->public_url;
  return configured.empty() ? sdk::from_host(r->host) : sdk::parse_public_url(configured);
}

// The settings documents SDKs fetch (their key is known by now): cacheable
// for a minute, 304 when the client holds this version already.
int HttpServer::sdk_document(MHD_Connection* c, PendingRequest* r) {
  auto url = public_url(r);
  if (!url)
    return refuse(c, r, MHD_HTTP_BAD_REQUEST,
                  "must be a host name or address with an optional port (or set cdp.public_url)", "Host");
  std::string body = r->route == Route::Settings
                         ? sdk::segment_settings(r->write_key, *url)
                         : sdk::rudderstack_source_config(r->write_key, r->source_id, *url);
  std::string tag = sdk::etag(body);
  const char* asked = header(c, MHD_HTTP_HEADER_IF_NONE_MATCH);
  int status = asked && sdk::etag_matches(asked, tag) ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK;
  if (status == MHD_HTTP_NOT_MODIFIED) body.clear();
  MHD_Response* resp = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                       MHD_RESPMEM_MUST_COPY);
  if (status == MHD_HTTP_OK) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, tag.c_str());
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "public, max-age=60");
  return answer(c, r, status, resp);
}

int HttpServer::refuse(MHD_Connection* c, PendingRequest* r, int status, std::string_view error,
                       std::string_view field) {
  return respond(c, r, status, error_response(error, field));
}

int HttpServer::overloaded(MHD_Connection* c, PendingRequest* r, const char* why) {
  return respond(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, error_response(why), "application/json", "1");
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

// --- requests ---------------------------------------------------------------

int HttpServer::handle(MHD_Connection* c, const char* url, const char* method, const char* version,
                       const char* upload, size_t* upload_size, void** state) {
  auto* r = static_cast<PendingRequest*>(*state);
  if (!r) *state = r = request_started(c);
  if (r->conn && r->conn->phase == ConnectionState::kRefused) return MHD_NO;  // answered already
  if (!r->started) {  // the headers are in; the body (if any) comes next
    r->started = true;
    return begin(c, r, url, method, version);
  }
  if (r->awaiting_keys) {  // resumed: a newer key snapshot is out
    r->awaiting_keys = false;
    return admit(c, r);
  }
  if (*upload_size) {
    size_t n = *upload_size;
    *upload_size = 0;
    if (r->finished || r->too_large || r->overloaded || r->discard) return MHD_YES;  // read and dropped
    size_t size = r->raw.size() + n;
    if (size > config_.limits.max_payload_bytes) {
      r->too_large = true;
    } else if (size > r->charged && !charge(r, size - r->charged)) {
      r->overloaded = true;
    } else {
      r->raw.append(upload, n);
      return MHD_YES;
    }
    release(r);
    return MHD_YES;
  }
  if (r->finished) return MHD_YES;
  if (r->http_status)  // resumed: the committer has answered
    return respond(c, r, r->http_status, r->body, "application/json",
                   r->retry_after.empty() ? nullptr : r->retry_after.c_str(),
                   r->route == Route::Profile ? "no-store" : nullptr);
  mark(r->conn, ConnectionState::kProcessing);  // all of it arrived
  switch (r->route) {
    case Route::Settings:
    case Route::SourceConfig: return sdk_document(c, r);
    case Route::SdkReport:  // its body was read and dropped (a declared one is bounded in begin())
      metrics_->sdk_reports++;
      return respond(c, r, MHD_HTTP_OK, "{\"success\":true}");
    case Route::Profile: return enqueue(c, r, 0);
    default: break;
  }
  return ingest(c, r, r->implied);
}

// The write key a request carries outside its body: the HTTP Basic user name,
// else the writeKey query parameter (beacons and RudderStack's config fetch).
static std::string request_key(MHD_Connection* c) {
  std::string key;
  char* password = nullptr;
  if (char* user = MHD_basic_auth_get_username_password(c, &password)) {
    key = user;
    MHD_free(user);
  }
  if (password) MHD_free(password);
  if (key.empty())
    if (auto q = query_arg(c, "writeKey")) key = *q;
  return key;
}

// Everything that can be decided from the request line and headers, before a
// byte of the body is read. Answering now makes libmicrohttpd close the
// connection after the answer instead of reading the body.
int HttpServer::begin(MHD_Connection* c, PendingRequest* r, const char* url, const char* method,
                      const char* version) {
  if (const char* origin = header(c, "Origin")) r->origin = origin;
  if (const char* host = header(c, MHD_HTTP_HEADER_HOST)) r->host = host;
  if (const char* asked = header(c, "Access-Control-Request-Headers")) r->asked_headers = asked;
  if (std::strlen(url) > config_.max_url_bytes)
    return refuse(c, r, MHD_HTTP_URI_TOO_LONG,
                  "is longer than the limit of " + std::to_string(config_.max_url_bytes) + " bytes",
                  "path");
  const MHD_ConnectionInfo* size = MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
  if (size && size->header_size > config_.max_header_bytes)
    return refuse(c, r, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
                  "are larger than the limit of " + std::to_string(config_.max_header_bytes) + " bytes",
                  "headers");
  Framing f;
  MHD_get_connection_values(c, MHD_HEADER_KIND, &count_framing, &f);
  if (f.host == 0 && std::strcmp(version, MHD_HTTP_VERSION_1_1) == 0)
    return refuse(c, r, MHD_HTTP_BAD_REQUEST, "is required in HTTP/1.1", "Host");
  if (f.host > 1) return refuse(c, r, MHD_HTTP_BAD_REQUEST, "must be given once", "Host");
  if (f.content_length > 1)
    return refuse(c, r, MHD_HTTP_BAD_REQUEST, "must be given once", "Content-Length");
  if (f.content_length && f.transfer_encoding)
    return refuse(c, r, MHD_HTTP_BAD_REQUEST, "must not be combined with Content-Length",
                  "Transfer-Encoding");
  if (f.transfer_encoding > 1 || (f.encoding && strcasecmp(f.encoding, "chunked") != 0))
    return refuse(c, r, MHD_HTTP_NOT_IMPLEMENTED, "must be chunked, alone", "Transfer-Encoding");
  const char* length = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
  const size_t limit = config_.limits.max_payload_bytes;
  if (length && std::strtoull(length, nullptr, 10) > limit)  // do not read a body we would refuse
    return refuse(c, r, MHD_HTTP_CONTENT_TOO_LARGE,
                  "is larger than the limit of " + std::to_string(limit) + " bytes", "body");

  if (std::strcmp(method, "OPTIONS") == 0) return respond(c, r, MHD_HTTP_NO_CONTENT, "");
  RouteMatch m = match_route(url);
  r->route = m.route;
  bool get = std::strcmp(method, "GET") == 0 || std::strcmp(method, "HEAD") == 0;
  bool post = std::strcmp(method, "POST") == 0;
  switch (m.route) {
    case Route::Health: {
      if (!get) break;
      if (!healthy_)
        return respond(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, status_response("unavailable"),
                       "application/json", "1");
      std::string why = overload_reason();
      if (!why.empty())
        return respond(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, status_response("overloaded", why),
                       "application/json", "1");
      return respond(c, r, MHD_HTTP_OK, status_response("ok"));
    }
    case Route::Metrics:
      if (!get) break;
      return respond(c, r, MHD_HTTP_OK, metrics_->render(), "text/plain; version=0.0.4");
    case Route::NotFound:
      return refuse(c, r, MHD_HTTP_NOT_FOUND, "no such endpoint", "path");
    case Route::Snippets: {
      if (!get) break;
      auto u = public_url(r);
      if (!u) u = sdk::PublicUrl{"http", "127.0.0.1:" + std::to_string(port())};
      return respond(c, r, MHD_HTTP_OK, sdk::snippet_page(*u), "text/html; charset=utf-8");
    }
    case Route::SdkReport:
      if (!post) break;
      r->discard = true;  // nothing of it is kept: no key needed, nothing buffered
      return MHD_YES;
    case Route::Settings:
    case Route::SourceConfig:
      if (!get) break;
      r->write_key = m.route == Route::Settings ? m.write_key : request_key(c);
      if (r->write_key.empty())
        return refuse(c, r, MHD_HTTP_UNAUTHORIZED,
                      "a write key is required (HTTP Basic user name or the writeKey query parameter)",
                      "writeKey");
      return admit(c, r);
    case Route::Profile:
      if (!get) break;
      return profile_lookup(c, r, url);
    case Route::Ingest: {
      if (!post) break;
      // The body decides, not its label: SDKs send JSON as application/json,
      // text/plain (beacons) and application/x-www-form-urlencoded (axios).
      const char* encoding = header(c, MHD_HTTP_HEADER_CONTENT_ENCODING);
      if (encoding && strcasecmp(encoding, "gzip") != 0 && strcasecmp(encoding, "deflate") != 0 &&
          strcasecmp(encoding, "identity") != 0)
        return refuse(c, r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "must be gzip, deflate or identity",
                      "Content-Encoding");
      r->implied = m.implied_type;
      r->write_key = request_key(c);
      r->keyless = r->write_key.empty();
      return admit(c, r);
    }
  }
  return refuse(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", "method");
}

// An ingest request whose headers passed: its Basic key must be known (a key
// missing from the snapshot waits for one newer snapshot, so that a key made a
// moment ago works), and its declared length must fit in the buffer budget.
int HttpServer::admit(MHD_Connection* c, PendingRequest* r) {
  if (!r->keyless) {
    std::unique_lock lock(mutex_);
    if (closing_) {
      lock.unlock();
      return overloaded(c, r, "shutting down, retry later");
    }
    r->source_id = keys_->find(r->write_key);
    if (r->source_id < 0 && !r->waited_for_keys) {
      r->waited_for_keys = r->awaiting_keys = true;
      r->connection = c;
      MHD_suspend_connection(c);
      key_waiters_list_.push_back(r);
      key_waiters_ = key_waiters_list_.size();
      lock.unlock();
      uint64_t one = 1;
      [[maybe_unused]] ssize_t w = write(wake_fd_, &one, sizeof one);
      return MHD_YES;
    }
    lock.unlock();
    if (r->source_id < 0)
      return refuse(c, r, r->route == Route::Ingest ? MHD_HTTP_UNAUTHORIZED : MHD_HTTP_NOT_FOUND,
                    "is unknown or revoked", "writeKey");
  }
  if (const char* length = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH))
    if (!charge(r, std::strtoull(length, nullptr, 10))) return overloaded(c, r);
  return MHD_YES;
}

int HttpServer::ingest(MHD_Connection* c, PendingRequest* r, std::optional<MessageType> implied) {
  const size_t limit = config_.limits.max_payload_bytes;
  if (r->too_large)
    return refuse(c, r, MHD_HTTP_CONTENT_TOO_LARGE,
                  "is larger than the limit of " + std::to_string(limit) + " bytes", "body");
  if (r->overloaded) return overloaded(c, r);
  const char* encoding = header(c, MHD_HTTP_HEADER_CONTENT_ENCODING);
  bool compressed = encoding && strcasecmp(encoding, "identity") != 0;
  try {
    std::string inflated;
    if (compressed) inflated = inflate_body(r->raw, limit);
    PayloadOptions opts;
    opts.received_at = r->received_at = clock_();
    opts.implied_type = implied;
    opts.limits = config_.limits;
    opts.client_ip = peer_address(c, header(c, "X-Forwarded-For"));
    // The plan of the source at arrival: checked here, in this thread, so the
    // committer stores what passed. A body key not in the snapshot finds no
    // plan here; the committer then refuses to store it unchecked.
    auto keys = write_keys();
    opts.plan_for = [&](const std::string& body_key) {
      r->checked_source = r->keyless ? keys->find(body_key) : r->source_id;
      return keys->plan_for(r->checked_source);
    };
    r->payload = parse_payload(compressed ? inflated : r->raw, opts);
  } catch (const Error& e) {
    return respond(c, r, status_for(e.kind()), error_response(e.what(), e.field()));
  }
  if (r->keyless) {
    r->write_key = r->payload.write_key;
    if (r->write_key.empty())
      return refuse(c, r, MHD_HTTP_UNAUTHORIZED,
                    "a write key is required (HTTP Basic user name, or writeKey in the body)",
                    "writeKey");
    r->source_id = write_keys()->find(r->write_key);  // -1: the committer looks again
  }
  release(r);  // the payload holds what is needed now

  size_t n = r->payload.messages.size();
  if (queued_messages_ + n > config_.max_queue_messages) return overloaded(c, r);
  metrics_->observe_batch(n);
  return enqueue(c, r, n);
}

// Hands a request (n messages; 0 for a lookup) to the committer and suspends
// its connection until complete().
int HttpServer::enqueue(MHD_Connection* c, PendingRequest* r, size_t n) {
  // Suspend before queueing: the committer may resume the connection at once.
  r->connection = c;
  r->queued_at = std::chrono::steady_clock::now();
  bool queued = false;
  {
    std::lock_guard lock(mutex_);
    if (!closing_) {
      MHD_suspend_connection(c);
      queue_.push_back(r);
      queued_messages_ += n;  // under the lock, so take() never subtracts first
      metrics_->queue_messages += static_cast<int64_t>(n);
      queued = true;
    }
  }
  if (!queued) return overloaded(c, r, "shutting down, retry later");
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = write(wake_fd_, &one, sizeof one);
  return MHD_YES;
}

// A Profile API lookup, decided as far as it can be without the database:
// a bearer token is there, the path and query make sense. The committer
// checks the token and answers (queued like writes, answered before them).
int HttpServer::profile_lookup(MHD_Connection* c, PendingRequest* r, const char* url) {
  const char* authorization = header(c, MHD_HTTP_HEADER_AUTHORIZATION);
  std::string token = profiles::bearer_token(authorization ? authorization : "");
  if (token.empty())
    return refuse(c, r, MHD_HTTP_UNAUTHORIZED,
                  "a read token is required: Authorization: Bearer <token> (cdp.create_access_token)",
                  "Authorization");
  std::string_view path(url);
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  constexpr std::string_view kPrefix = "/v1/profiles/";
  path = path.size() > kPrefix.size() ? path.substr(kPrefix.size()) : std::string_view();
  try {
    r->lookup = profiles::parse_lookup(path, [c](const char* name) { return query_arg(c, name); });
  } catch (const Error& e) {
    return respond(c, r, status_for(e.kind()), error_response(e.what(), e.field()));
  }
  r->token_digest = key_digest(token);
  return MHD_YES;
}

}  // namespace cdp
