// Built-in destination kinds: what turns a queued Segment-spec message into
// a request to a tool's public HTTP API, and reads that API's answer back
// item by item. One file per kind (segment.cpp, ga4.cpp, ...); no I/O here:
// the delivery worker sends what build() returns and hands the answer to
// read(). A destination's options choose one with "kind" (default: the
// generic webhook, which has no connector) and configure it with "config".
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <rapidjson/document.h>

#include "core/timestamp.hpp"

namespace cdp::connectors {

// options.config, checked by the kind: string values only (ids, secrets,
// versions). Secrets are kept here too; the audit log keeps only the keys.
using Config = std::map<std::string, std::string>;

// One element of the API's batch: an event, a user attribute object, ...
struct Item {
  std::string json;   // the element as the API wants it
  std::string group;  // items share a request only with the same group ("" : any)
  std::string array;  // which array of the request it goes in, for APIs with several ("" : the one)
  std::string user;   // the user or device it is about, for per-user throttling ("" : none)
};

// What a message becomes for a kind.
struct Mapping {
  enum class Kind {
    Items,   // send `items` (one or more)
    Skip,    // the API has no counterpart for this message: dropped, counted, not an error
    Reject,  // the message breaks the API's rules: dead letter at once with `reason`
  };
  Kind kind = Kind::Items;
  std::vector<Item> items;
  std::string reason;  // Skip and Reject: names the field and the rule
  static Mapping skip(std::string why) { return {Kind::Skip, {}, std::move(why)}; }
  static Mapping reject(std::string why) { return {Kind::Reject, {}, std::move(why)}; }
  static Mapping one(Item item) { return {Kind::Items, {std::move(item)}, {}}; }
};

// The API's published limits for one request.
struct Caps {
  int max_items = 1;           // per request, and per array for APIs with several arrays
  size_t max_bytes = 1 << 20;  // the whole body
  size_t max_item_bytes = 0;   // one item (0: only max_bytes applies)
  int requests_per_second = 0; // the documented rate limit per key (0: none documented)
};

// One request, built from a group of items (all with the same group).
struct Request {
  std::string path;                  // appended to the destination's URL, query included
  std::vector<std::string> headers;  // "Name: value", Content-Type included
  std::string body;
};

enum class Verdict {
  Delivered,   // accepted
  Retry,       // try again after the backoff (attempts count; max_age applies)
  RetryNow,    // not sent for its own fault (another item failed the request): resend at once in a new batch
  Throttled,   // this user or device is throttled: wait `delay`, in a new batch, without pausing the destination
  Dead,        // refused for good: dead letter with `reason`
};

struct ItemAnswer {
  Verdict verdict = Verdict::Delivered;
  std::string reason;  // Dead and Throttled: the API's own words
  Micros delay = 0;    // Throttled (and Retry, when the API says when): how long to wait
};

// How the API answered one request.
struct Answer {
  // When empty, every item gets `whole`.
  std::vector<ItemAnswer> items;  // else one per item, in the request's order
  ItemAnswer whole;
  // The API failed the whole request because of some item it does not name
  // (a 400 for the batch): split it in halves and send each at once, until
  // the bad one is alone and dead. Only for requests of 2 items or more.
  bool split = false;
  bool outage = false;  // counts towards the destination's circuit (5xx, timeouts, 429 for the key)
};

// What the worker read of the answer.
struct Response {
  long status = 0;  // 0: no HTTP answer
  std::string body; // up to kMaxResponse bytes
  std::string retry_after, rate_limit_reset;  // Retry-After and X-RateLimit-Reset headers, as sent
  std::string transport_error;
};
constexpr size_t kMaxResponse = 4 << 20;

class Connector {
 public:
  virtual ~Connector() = default;
  virtual std::string_view kind() const = 0;
  // Where the API is when create_destination is given no URL ("" : a URL is required).
  virtual std::string_view default_url() const = 0;
  virtual Caps caps() const = 0;
  // Checks options.config; throws cdp::Error on the key ("measurement_id"), the
  // caller prefixes "config.". Unknown keys are refused.
  virtual Config check_config(const rapidjson::Value& config) const = 0;
  // Config values that are secrets (shown as "<secret>" by cdp.test_destination).
  virtual std::vector<std::string> secrets(const Config& c) const = 0;
  // One message (event, segment_enter/exit, delete notice: see docs/destinations.md
  // "What is sent"), after transformation and PII policy. `now` for age limits.
  virtual Mapping map(const rapidjson::Value& message, const Config& c, Micros now) const = 0;
  // A request for items of one group, within caps().
  virtual Request build(const std::vector<const Item*>& items, const Config& c, Micros now) const = 0;
  // Reads the answer to a request built from `items`.
  virtual Answer read(const Response& r, const std::vector<const Item*>& items, Micros now) const = 0;
};

// The connector of a kind; nullptr for "webhook" and unknown kinds.
const Connector* find(std::string_view kind);
// Every kind, for error messages and docs: "webhook, segment, ga4, ...".
std::string kinds();

// Shared by the kinds ----------------------------------------------------------

// A message the API's rules refuse: a kind's helpers throw it deep in a
// mapping, its map() catches it and returns Mapping::reject(why).
struct Refusal {
  std::string why;
};
[[noreturn]] inline void refuse(std::string why) { throw Refusal{std::move(why)}; }

// The message's member at a dotted path ("context.page.url"), or nullptr.
const rapidjson::Value* at(const rapidjson::Value& message, std::string_view path);
// A string member, or "" when absent or not a string.
std::string text(const rapidjson::Value& message, std::string_view path);
// The message's time (timestamp, else at, else receivedAt) in microseconds; 0 when none parses.
Micros time_of(const rapidjson::Value& message);
// The message type: track, identify, page, screen, group, alias, segment_enter, segment_exit, delete.
std::string type_of(const rapidjson::Value& message);
// A config value that must be present and non-empty; throws naming `key`.
const std::string& required(const Config& c, const std::string& key);
// Reads options.config as an object of strings with the given keys only;
// `required_keys` must be present. Throws cdp::Error naming the key.
Config string_config(const rapidjson::Value& config, const std::vector<std::string>& keys,
                     const std::vector<std::string>& required_keys);
std::string base64(std::string_view data);
std::string url_encode(std::string_view s);
// The default answer of an API without item-level errors: 2xx delivered; 408,
// 429, 5xx and no answer retried (an outage); other statuses dead.
Answer by_status(const Response& r);
// "HTTP <status>: <start of the body>" or the transport error, for dead letters.
std::string describe(const Response& r);

}  // namespace cdp::connectors
