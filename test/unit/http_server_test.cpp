// The collector's HTTP server on a loopback port, with a stand-in committer
// thread, hammered with raw sockets: connection cap, request deadline, write
// keys checked before the body, the keyless share of the buffer, framing
// checks and JSON for errors libmicrohttpd would answer in HTML.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/http_server.hpp"

namespace cdp {
namespace {

using namespace std::chrono_literals;
const std::string kKey = "cdp_good_key";
const std::string kTrack = R"({"userId":"u1","event":"e1"})";

std::string base64(std::string_view in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    unsigned v = uint8_t(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    unsigned v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

std::string auth(const std::string& key) { return "Authorization: Basic " + base64(key + ":") + "\r\n"; }

// An HttpServer with a committer thread that answers every request 200 and
// publishes `keys` whenever the server asks for a newer snapshot.
class Collector {
 public:
  explicit Collector(HttpConfig config = {}) {
    config.host = "127.0.0.1";
    config.port = 0;
    config.threads = 2;
    server_ = std::make_unique<HttpServer>(config, &metrics, [] { return Micros(1700000000000000); });
    add_key(kKey, 7);
    publish();
    server_->start();
    server_->set_healthy(true);
    committer_ = std::thread([this] { commit_loop(); });
  }
  ~Collector() {
    stop_ = true;
    committer_.join();
    server_->stop();
  }
  // Known to the committer; the server sees it at the next snapshot.
  void add_key(const std::string& key, int source) {
    std::lock_guard lock(mutex_);
    keys_.sources[key_digest(key)] = source;
  }
  void publish() {
    std::lock_guard lock(mutex_);
    auto snapshot = std::make_shared<WriteKeys>(keys_);
    snapshot->loaded_at = std::chrono::steady_clock::now();
    server_->set_write_keys(std::move(snapshot));
  }
  uint16_t port() const { return server_->port(); }
  HttpServer& server() { return *server_; }
  HttpMetrics metrics;

 private:
  void commit_loop() {
    while (!stop_) {
      pollfd p{server_->wake_fd(), POLLIN, 0};
      poll(&p, 1, 20);
      server_->clear_wake();
      if (server_->keys_wanted()) publish();
      for (PendingRequest* r : server_->take(1000)) {
        r->http_status = 200;
        r->body = r->route == Route::Profile ? describe(r->lookup)
                                             : "{\"source\":" + std::to_string(r->source_id) + "}";
        server_->complete(r);
      }
    }
  }
  // A lookup as the server parsed it, for the tests to read back.
  static std::string describe(const profiles::Lookup& l) {
    return "type=" + l.type + " value=" + l.value + " id=" + std::to_string(l.profile_id) + " parts=" +
           profiles::part_names(l.parts) + " limit=" + std::to_string(l.limit) + " cursor=" + std::to_string(l.cursor);
  }
  std::unique_ptr<HttpServer> server_;
  std::thread committer_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  WriteKeys keys_;
};

// A raw client connection.
class Socket {
 public:
  explicit Socket(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Socket() { close(fd_); }
  Socket(const Socket&) = delete;
  bool connected() const { return connected_; }
  bool send(const std::string& data) {
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == ssize_t(data.size());
  }
  // Reads until the server closes or `timeout` passes; "closed" tells which.
  std::string read_all(std::chrono::milliseconds timeout, bool* closed = nullptr) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[8192];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        if (closed) *closed = true;
        return out;
      }
      out.append(buf, size_t(n));
    }
    if (closed) *closed = false;
    return out;
  }
  // One response: reads until the body announced by Content-Length is in.
  std::string response(std::chrono::milliseconds timeout = 3000ms) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      size_t end = out.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t at = out.find("Content-Length: ");
        size_t len = at == std::string::npos ? 0 : std::stoul(out.substr(at + 16));
        if (out.size() >= end + 4 + len) return out;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      char buf[8192];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, size_t(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Sends a request on a new connection and returns the answer (or "" if none in 3 s).
std::string exchange(uint16_t port, const std::string& request) {
  Socket s(port);
  EXPECT_TRUE(s.connected());
  s.send(request);
  return s.response();
}

std::string post(const std::string& path, const std::string& body, const std::string& extra = auth(kKey)) {
  return "POST " + path + " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string status_line(const std::string& response) { return response.substr(0, response.find("\r\n")); }
std::string body_of(const std::string& response) {
  size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}
std::string metric(const HttpMetrics& m, const std::string& series) {
  std::string text = m.render();
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return "<missing>";
  size_t from = at + series.size() + 2;
  return text.substr(from, text.find('\n', from) - from);
}

TEST(HttpDescriptors, RaisesTheSoftLimitTowardTheHardOne) {
  DescriptorPlan p = plan_descriptors(1024, 524288, 20, 1024);
  EXPECT_EQ(p.connections, 1024u);
  EXPECT_EQ(p.soft_limit, 20u + kDescriptorHeadroom + p.reserve + 1024u);
}

TEST(HttpDescriptors, CapsConnectionsBelowAHardLimitWithHeadroom) {
  DescriptorPlan p = plan_descriptors(1024, 1024, 20, 1024);
  EXPECT_EQ(p.soft_limit, 1024u);
  EXPECT_EQ(p.connections, 1024u - 20u - kDescriptorHeadroom - p.reserve);
  EXPECT_LT(p.connections + p.reserve + 20 + 100, 1024u);  // room for Postgres's own files
}

TEST(HttpDescriptors, LeavesAGenerousLimitAlone) {
  DescriptorPlan p = plan_descriptors(1 << 20, 1 << 20, 20, 1024);
  EXPECT_EQ(p.soft_limit, uint64_t(1) << 20);
  EXPECT_EQ(p.connections, 1024u);
}

TEST(HttpServerBasics, HealthTrackAndErrorsAnswerJson) {
  Collector c;
  std::string r = exchange(c.port(), "GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK");
  EXPECT_EQ(body_of(r), R"({"status":"ok"})");
  r = exchange(c.port(), post("/v1/track", kTrack));
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK") << r;
  EXPECT_EQ(body_of(r), R"({"source":7})");
  r = exchange(c.port(), post("/v1/nope", kTrack));
  EXPECT_EQ(status_line(r), "HTTP/1.1 404 Not Found");
  r = exchange(c.port(), post("/v1/track", R"({"writeKey":")" + kKey + R"(","userId":"u","event":"e"})", ""));
  EXPECT_EQ(body_of(r), R"({"source":7})") << r;
  r = exchange(c.port(), post("/v1/track", kTrack, ""));
  EXPECT_NE(r.find("401 Unauthorized"), std::string::npos) << r;
}

// Finding 1: connections past the cap get a 503 at once instead of hanging,
// and /health says overloaded before the cap is reached.
TEST(HttpServerAbuse, ConnectionsPastTheCapAreRefusedAtOnce) {
  HttpConfig cfg;
  cfg.max_connections = 10;
  Collector c(cfg);
  ASSERT_EQ(c.server().descriptors().connections, 10u);
  std::vector<std::unique_ptr<Socket>> held;
  for (int i = 0; i < 9; i++) {  // half-sent requests, no key needed
    held.push_back(std::make_unique<Socket>(c.port()));
    held.back()->send("POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{");
  }
  std::this_thread::sleep_for(100ms);
  std::string r = exchange(c.port(), "GET /health HTTP/1.1\r\nHost: t\r\n\r\n");  // the 10th
  EXPECT_EQ(status_line(r), "HTTP/1.1 503 Service Unavailable") << r;
  EXPECT_NE(body_of(r).find(R"("status":"overloaded","reason":"connections: 10 open of 10")"),
            std::string::npos)
      << r;
  held.push_back(std::make_unique<Socket>(c.port()));  // the 10th, held
  held.back()->send("GET /hea");
  std::this_thread::sleep_for(100ms);
  auto t0 = std::chrono::steady_clock::now();
  Socket extra(c.port());  // the 11th
  ASSERT_TRUE(extra.connected());
  extra.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
  bool closed = false;
  r = extra.read_all(3000ms, &closed);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
  EXPECT_TRUE(closed);
  EXPECT_EQ(status_line(r), "HTTP/1.1 503 Service Unavailable") << r;
  EXPECT_NE(r.find("too many connections"), std::string::npos) << r;
  EXPECT_EQ(metric(c.metrics, "cdp_http_connections_refused_total"), "1");
  held.clear();
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(status_line(exchange(c.port(), "GET /health HTTP/1.1\r\nHost: t\r\n\r\n")), "HTTP/1.1 200 OK");
}

// Finding 1: a request trickled a byte at a time is cut at its deadline,
// although each byte would restart libmicrohttpd's idle timeout.
TEST(HttpServerAbuse, TricklingRequestIsCutAtTheRequestDeadline) {
  HttpConfig cfg;
  cfg.request_timeout_s = 1;
  cfg.idle_timeout_s = 30;
  Collector c(cfg);
  Socket s(c.port());
  s.send("POST /v1/batch HTTP/1.1\r\n");
  auto t0 = std::chrono::steady_clock::now();
  bool closed = false;
  std::string header = "Host: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  for (char ch : header) {
    if (!s.send(std::string(1, ch))) break;
    s.read_all(150ms, &closed);
    if (closed) break;
  }
  EXPECT_TRUE(closed) << "still open after trickling for 6 s";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2500ms);
  EXPECT_EQ(metric(c.metrics, "cdp_http_requests_timed_out_total"), "1");
}

// Finding 2: an unknown Basic key is refused before any of the body is read.
TEST(HttpServerAbuse, UnknownKeyGets401BeforeTheBody) {
  Collector c;
  Socket s(c.port());
  s.send("POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + auth("cdp_bogus") +
         "Content-Length: 400000\r\n\r\n");
  std::string r = s.response(2000ms);
  EXPECT_EQ(status_line(r), "HTTP/1.1 401 Unauthorized") << r;
  EXPECT_EQ(body_of(r), R"({"success":false,"error":"is unknown or revoked","field":"writeKey"})");
}

// A key created after the last snapshot works: the request waits for the next one.
TEST(HttpServerAbuse, NewKeyWaitsForTheNextSnapshot) {
  Collector c;
  c.add_key("cdp_brand_new", 9);  // not published yet
  std::string r = exchange(c.port(), post("/v1/track", kTrack, auth("cdp_brand_new")));
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK") << r;
  EXPECT_EQ(body_of(r), R"({"source":9})");
}

// Finding 2: unfinished uploads without a Basic key fill only their share of
// the buffer; authenticated requests still get in, and /health tells when the
// buffer as a whole runs full.
TEST(HttpServerAbuse, KeylessUploadsCannotStarveAuthenticatedOnes) {
  HttpConfig cfg;
  cfg.max_buffered_bytes = 1000000;  // keyless share: 250,000
  Collector c(cfg);
  std::vector<std::unique_ptr<Socket>> held;
  std::string head = "POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n";
  for (int i = 0; i < 2; i++) {
    held.push_back(std::make_unique<Socket>(c.port()));
    held.back()->send(head + "\r\n{\"batch\":[");
  }
  std::this_thread::sleep_for(100ms);
  Socket third(c.port());
  third.send(head + "\r\n{");
  std::string r = third.response(2000ms);
  EXPECT_EQ(status_line(r), "HTTP/1.1 503 Service Unavailable") << r;
  EXPECT_EQ(body_of(r), R"({"success":false,"error":"overloaded, retry later"})");
  r = exchange(c.port(), post("/v1/track", kTrack));
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK") << r;
  // Authenticated uploads may use the rest; near the limit /health says so.
  for (int i = 0; i < 7; i++) {
    held.push_back(std::make_unique<Socket>(c.port()));
    held.back()->send("POST /v1/batch HTTP/1.1\r\nHost: t\r\n" + auth(kKey) + "Content-Length: 100000\r\n\r\n{");
  }
  std::this_thread::sleep_for(100ms);
  r = exchange(c.port(), "GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 503 Service Unavailable") << r;
  EXPECT_NE(body_of(r).find("request buffer: 900000 of 1000000 bytes in use"), std::string::npos) << r;
  held.clear();
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(metric(c.metrics, "cdp_http_buffered_bytes"), "0");
}

// Finding 4: framing that a proxy and libmicrohttpd could read differently.
TEST(HttpServerAbuse, AmbiguousFramingIsRefused) {
  Collector c;
  auto t0 = std::chrono::steady_clock::now();
  std::string r = exchange(c.port(),
                           "POST /v1/track HTTP/1.1\r\nHost: t\r\n" + auth(kKey) +
                               "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 501 Not Implemented") << r;
  EXPECT_EQ(body_of(r), R"({"success":false,"error":"must be chunked, alone","field":"Transfer-Encoding"})");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  r = exchange(c.port(), "POST /v1/track HTTP/1.1\r\nHost: t\r\n" + auth(kKey) +
                             "Content-Length: 28\r\nContent-Length: 5\r\n\r\n" + kTrack);
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request") << r;
  EXPECT_EQ(body_of(r), R"({"success":false,"error":"must be given once","field":"Content-Length"})");
  r = exchange(c.port(), "POST /v1/track HTTP/1.1\r\nHost: t\r\n" + auth(kKey) +
                             "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request") << r;
  r = exchange(c.port(), "POST /v1/track HTTP/1.1\r\n" + auth(kKey) + "Content-Length: 28\r\n\r\n" + kTrack);
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request") << r;
  EXPECT_EQ(body_of(r), R"({"success":false,"error":"is required in HTTP/1.1","field":"Host"})");
  r = exchange(c.port(), "GET /health HTTP/1.0\r\n\r\n");  // HTTP/1.0 needs no Host
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK") << r;
}

// Finding 3: limits libmicrohttpd would answer in HTML answer in JSON and
// are counted; its own remaining errors are counted too.
TEST(HttpServerAbuse, OversizedRequestLinesAndHeadersAnswerJson) {
  Collector c;
  std::string r = exchange(c.port(), "GET /" + std::string(10000, 'a') + " HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 414 URI Too Long") << r.substr(0, 200);
  EXPECT_EQ(body_of(r), R"({"success":false,"error":"is longer than the limit of 8192 bytes","field":"path"})");
  r = exchange(c.port(), "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(20000, 'b') + "\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 431 Request Header Fields Too Large") << r.substr(0, 200);
  EXPECT_EQ(body_of(r), R"({"success":false,"error":"are larger than the limit of 16384 bytes","field":"headers"})");
  r = exchange(c.port(), "GET /health HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n");  // libmicrohttpd's own 400
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request") << r;
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(metric(c.metrics, "cdp_http_requests_total{code=\"414\"}"), "1");
  EXPECT_EQ(metric(c.metrics, "cdp_http_requests_total{code=\"431\"}"), "1");
  EXPECT_EQ(metric(c.metrics, "cdp_http_requests_total{code=\"400\"}"), "1");
}

// Issue 15: what the browser and server SDKs send, unchanged.
std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: cdp.test:8765\r\n" + extra + "\r\n";
}
std::string header_of(const std::string& response, const std::string& name) {
  size_t at = response.find("\r\n" + name + ": ");
  if (at == std::string::npos) return "<missing>";
  size_t from = at + name.size() + 4;
  return response.substr(from, response.find("\r\n", from) - from);
}

TEST(HttpServerSdks, PreflightAllowsTheHeadersTheSdksAskFor) {
  Collector c;
  std::string r = exchange(c.port(), "OPTIONS /v1/b HTTP/1.1\r\nHost: t\r\nOrigin: http://shop.test\r\n"
                                     "Access-Control-Request-Method: POST\r\n"
                                     "Access-Control-Request-Headers: content-type,x-retry-count\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 204 No Content") << r;
  EXPECT_EQ(header_of(r, "Access-Control-Allow-Origin"), "http://shop.test");
  EXPECT_EQ(header_of(r, "Access-Control-Allow-Headers"), "content-type, x-retry-count");
  EXPECT_EQ(header_of(r, "Vary"), "Origin, Access-Control-Request-Headers, Access-Control-Request-Method");
  EXPECT_EQ(header_of(r, "Access-Control-Allow-Credentials"), "<missing>");  // "*" never allows credentials
  EXPECT_EQ(header_of(r, "Access-Control-Max-Age"), "86400");
}

TEST(HttpServerSdks, BodiesAreJudgedByContentNotLabel) {
  Collector c;
  std::string body = R"({"batch":[{"type":"track","userId":"u","event":"e"}]})";
  std::string form = "POST /v1/b HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
                     auth(kKey) + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  std::string r = exchange(c.port(), form);
  EXPECT_EQ(body_of(r), R"({"source":7})") << r;
  std::string junk = "a=1&b=2";
  r = exchange(c.port(), "POST /v1/b HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
                             auth(kKey) + "Content-Length: 7\r\n\r\n" + junk);
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request") << r;
}

TEST(HttpServerSdks, BeaconsCarryTheKeyInTheQuery) {
  Collector c;
  std::string body = R"({"batch":[{"type":"track","anonymousId":"a","event":"e"}],"sentAt":"2026-01-01T00:00:00Z"})";
  std::string r = exchange(c.port(), "POST /beacon/v1/batch?writeKey=" + kKey +
                                         " HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain;charset=UTF-8\r\n"
                                         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(body_of(r), R"({"source":7})") << r;
  r = exchange(c.port(), "POST /beacon/v1/batch?writeKey=cdp_bogus HTTP/1.1\r\nHost: t\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(status_line(r), "HTTP/1.1 401 Unauthorized") << r;  // refused before the body
}

TEST(HttpServerSdks, SegmentSettingsAreCacheableAndKeyed) {
  Collector c;
  std::string r = exchange(c.port(), get("/v1/projects/" + kKey + "/settings", "Origin: http://shop.test\r\n"));
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK") << r;
  EXPECT_NE(body_of(r).find(R"("apiHost":"cdp.test:8765/v1")"), std::string::npos) << r;
  EXPECT_EQ(header_of(r, "Cache-Control"), "public, max-age=60");
  EXPECT_EQ(header_of(r, "Access-Control-Allow-Origin"), "http://shop.test");
  std::string tag = header_of(r, "ETag");
  r = exchange(c.port(), get("/v1/projects/" + kKey + "/settings", "If-None-Match: " + tag + "\r\n"));
  EXPECT_EQ(status_line(r), "HTTP/1.1 304 Not Modified") << r;
  r = exchange(c.port(), "GET /v1/projects/" + kKey + "/settings HTTP/1.1\r\nHost: a\"b/c\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request") << r;  // a Host no document may name
  EXPECT_NE(body_of(r).find(R"("field":"Host")"), std::string::npos) << r;
  r = exchange(c.port(), get("/v1/projects/cdp_bogus/settings"));
  EXPECT_EQ(status_line(r), "HTTP/1.1 404 Not Found") << r;
  EXPECT_EQ(body_of(r), R"({"success":false,"error":"is unknown or revoked","field":"writeKey"})");
  c.server().set_dynamic({{"*"}, {}, "https://collect.example.com"});
  r = exchange(c.port(), get("/v1/projects/" + kKey + "/settings"));
  EXPECT_NE(body_of(r).find(R"("apiHost":"collect.example.com/v1","protocol":"https")"), std::string::npos) << r;
}

TEST(HttpServerSdks, RudderStackSourceConfigByQueryOrBasicKey) {
  Collector c;
  std::string r = exchange(c.port(), get("/sourceConfig/?p=npm&v=3.34.1&writeKey=" + kKey));
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK") << r;
  EXPECT_NE(body_of(r).find(R"("id":"cdp-source-7")"), std::string::npos) << r;
  r = exchange(c.port(), get("/sourceConfig", auth(kKey)));
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK") << r;
  r = exchange(c.port(), get("/sourceConfig?writeKey=cdp_bogus"));
  EXPECT_EQ(status_line(r), "HTTP/1.1 404 Not Found") << r;
  r = exchange(c.port(), get("/sourceConfig"));
  EXPECT_EQ(status_line(r), "HTTP/1.1 401 Unauthorized") << r;
}

TEST(HttpServerSdks, SdkReportsAreCountedNotStored) {
  Collector c;
  std::string r = exchange(c.port(), post("/v1/m", R"({"series":[]})", ""));
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK") << r;
  EXPECT_EQ(metric(c.metrics, "cdp_http_sdk_reports_total"), "1");
  r = exchange(c.port(), get("/"));
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK") << r;
  EXPECT_EQ(header_of(r, "Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(body_of(r).find("cdnURL: 'http://cdp.test:8765'"), std::string::npos);
}

constexpr const char* kBearer = "Authorization: Bearer cdpr_test\r\n";

TEST(HttpServerProfiles, AnEncodedSlashStaysInTheValue) {
  Collector c;
  std::string r = exchange(c.port(), get("/v1/profiles/email:a%2Fb%40x.com", kBearer));
  EXPECT_EQ(status_line(r), "HTTP/1.1 200 OK") << r;
  EXPECT_EQ(body_of(r), "type=email value=a/b@x.com id=0 parts=traits,computed,segments limit=20 cursor=0");
  EXPECT_EQ(header_of(r, "Cache-Control"), "no-store");  // a person's data is never cached on the way
}

TEST(HttpServerProfiles, SubResourcesAndQueriesSayWhatIsAsked) {
  Collector c;
  std::string r = exchange(c.port(), get("/v1/profiles/123/events?limit=5&cursor=9", kBearer));
  EXPECT_EQ(body_of(r), "type= value= id=123 parts=events limit=5 cursor=9") << r;
  r = exchange(c.port(), get("/v1/profiles/user_id:u%201?include=traits,consent", kBearer));
  EXPECT_EQ(body_of(r), "type=user_id value=u 1 id=0 parts=traits,consent limit=20 cursor=0") << r;
}

TEST(HttpServerProfiles, BadRequestsAreRefusedBeforeTheDatabase) {
  Collector c;
  std::string r = exchange(c.port(), get("/v1/profiles/email:ada%40x.com"));
  EXPECT_EQ(status_line(r), "HTTP/1.1 401 Unauthorized") << r;
  EXPECT_NE(body_of(r).find("\"field\":\"Authorization\""), std::string::npos) << r;
  r = exchange(c.port(), get("/v1/profiles/email:ada", "Authorization: Basic eDo=\r\n"));  // a write key cannot read
  EXPECT_EQ(status_line(r), "HTTP/1.1 401 Unauthorized") << r;
  r = exchange(c.port(), get("/v1/profiles/..", kBearer));
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request") << r;
  EXPECT_NE(body_of(r).find("\"field\":\"identifier\""), std::string::npos) << r;
  r = exchange(c.port(), get("/v1/profiles/email:" + std::string(1100, 'a'), kBearer));
  EXPECT_EQ(status_line(r), "HTTP/1.1 400 Bad Request") << r;
  r = exchange(c.port(), get("/v1/profiles/email:a/secrets", kBearer));
  EXPECT_NE(body_of(r).find("\"field\":\"part\""), std::string::npos) << r;
  r = exchange(c.port(), get("/v1/profiles/email:a?limit=0", kBearer));
  EXPECT_NE(body_of(r).find("\"field\":\"limit\""), std::string::npos) << r;
  r = exchange(c.port(), post("/v1/profiles/email:a", "{}", kBearer));
  EXPECT_EQ(status_line(r), "HTTP/1.1 405 Method Not Allowed") << r;
}

TEST(HttpServerProfiles, BrowsersMaySendTheToken) {
  Collector c;
  std::string r = exchange(c.port(), "OPTIONS /v1/profiles/email:a HTTP/1.1\r\nHost: t\r\nOrigin: http://shop.test\r\n"
                                     "Access-Control-Request-Method: GET\r\n"
                                     "Access-Control-Request-Headers: authorization\r\n\r\n");
  EXPECT_EQ(status_line(r), "HTTP/1.1 204 No Content") << r;
  EXPECT_EQ(header_of(r, "Access-Control-Allow-Headers"), "authorization");
  r = exchange(c.port(), get("/v1/profiles/email:a", std::string(kBearer) + "Origin: http://shop.test\r\n"));
  EXPECT_EQ(header_of(r, "Access-Control-Allow-Origin"), "http://shop.test") << r;
}

TEST(HttpServerProfiles, LookupsAreCountedByToken) {
  HttpMetrics m;
  m.count_lookup(3, "web", 200);
  m.count_lookup(3, "web", 200);
  m.count_lookup(4, "app", 403);
  m.lookups_unauthorized++;
  EXPECT_EQ(metric(m, "cdp_profile_lookups_total{token=\"web\",status=\"200\"}"), "2");
  EXPECT_EQ(metric(m, "cdp_profile_lookups_total{token=\"app\",status=\"403\"}"), "1");
  EXPECT_EQ(metric(m, "cdp_profile_lookups_unauthorized_total"), "1");
  for (int id = 10; id < 10 + HttpMetrics::kTokenSlots; id++) m.count_lookup(id, "t" + std::to_string(id), 404);
  EXPECT_EQ(metric(m, "cdp_profile_lookups_total{token=\"(other)\",status=\"404\"}"), "3");  // past the slots
}

}  // namespace
}  // namespace cdp
