#include "core/delivery_round.hpp"

#include <algorithm>
#include <cstdlib>

#include <rapidjson/document.h>

#include "core/json_util.hpp"

namespace cdp::delivery {
namespace {

constexpr Micros kDefaultMaxAge = 24LL * 3600 * 1000000;
// Room for a kind's envelope (credentials, sentAt, brackets) beside its items.
constexpr size_t kEnvelopeBytes = 1024;

// The payload as the destination may see it: the PII policy applied, numbers
// written back exactly as stored. A payload that does not parse goes as stored.
std::string outgoing(const std::string& payload, const Options& o) {
  if (o.drop.empty() && o.hash.empty()) return payload;
  rapidjson::Document doc;
  if (parse_json(doc, payload, Numbers::Exact).IsError()) return payload;
  apply_pii(doc, o);
  return to_json(doc);
}

// A row as a built-in kind maps it: the PII policy first, then the kind.
connectors::Mapping mapped(const QueuedRow& row, const Options& o, Micros now) {
  rapidjson::Document doc;
  if (parse_json(doc, row.payload, Numbers::Exact).IsError() || !doc.IsObject())
    return connectors::Mapping::reject("payload: not a JSON object");
  apply_pii(doc, o);
  return o.connector->map(doc, o.config, now);
}

// A row ready to go: its items (a kind) or its outgoing payload (a webhook).
struct Ready {
  size_t row;
  std::vector<connectors::Item> items;
  size_t bytes = 0;
};

class Planner {
 public:
  Planner(const std::vector<QueuedRow>& rows, std::map<int, Room> room, int free_slots, Micros now)
      : rows_(rows), room_(std::move(room)), free_(free_slots), now_(now) {}

  ClaimPlan run() {
    std::map<std::string, std::vector<size_t>> resend;
    std::map<int, std::vector<size_t>> fresh;
    for (size_t i = 0; i < rows_.size(); i++)
      if (room_.count(rows_[i].dest))
        (rows_[i].batch_key.empty() ? fresh[rows_[i].dest] : resend[rows_[i].batch_key]).push_back(i);
    for (auto& [stored_key, group] : resend) {
      std::string key = stored_key;
      if (free_ <= 0) break;
      // The key ("cdp-<first id>-<n>") names n rows: a group the limit cut
      // waits, rather than going under its key without the rest.
      size_t n = std::strtoul(key.substr(key.rfind('-') + 1).c_str(), nullptr, 10);
      if (group.size() != n) continue;
      int dest = rows_[group.front()].dest;
      if (room_[dest].requests <= 0) continue;
      std::vector<Ready> ready = prepare(dest, group);
      if (ready.empty()) continue;
      if (ready.size() < group.size()) key = rekey(ready);  // the key must name the rows it holds
      add(dest, ready, key);
    }
    for (auto& [dest, group] : fresh) batch_fresh(dest, group);
    return std::move(plan_);
  }

 private:
  // The rows of `group` that go out, in order; the others settled.
  std::vector<Ready> prepare(int dest, const std::vector<size_t>& group) {
    const Options& o = *room_[dest].options;
    std::vector<Ready> out;
    for (size_t k : group) {
      const QueuedRow& r = rows_[k];
      if (r.fate != QueuedRow::Fate::Send) {
        settle(r, r.fate == QueuedRow::Fate::Fail, r.why);
        continue;
      }
      Ready ready{k, {}, 0};
      if (!o.connector) {
        ready.items.push_back({outgoing(r.payload, o), "", "", ""});
      } else {
        connectors::Mapping m = mapped(r, o, now_);
        if (m.kind != connectors::Mapping::Kind::Items || m.items.empty()) {
          settle(r, m.kind == connectors::Mapping::Kind::Reject, m.reason);
          continue;
        }
        ready.items = std::move(m.items);
      }
      for (auto& item : ready.items) ready.bytes += item.json.size() + 1;
      if (std::string why = too_large(o, ready); !why.empty()) {
        settle(r, true, why);
        continue;
      }
      out.push_back(std::move(ready));
    }
    return out;
  }

  // Why one row's items can never go in a request of this kind ("": they can).
  static std::string too_large(const Options& o, const Ready& ready) {
    if (!o.connector) return "";
    connectors::Caps caps = o.connector->caps();
    std::map<std::string, int> per_array;
    for (auto& item : ready.items) {
      if (caps.max_item_bytes && item.json.size() > caps.max_item_bytes)
        return "payload: " + std::to_string(item.json.size()) + " bytes, over " + std::string(o.connector->kind()) +
               "'s limit of " + std::to_string(caps.max_item_bytes) + " bytes a message";
      if (++per_array[item.array] > caps.max_items)
        return "payload: more items than " + std::string(o.connector->kind()) + " takes in one request";
    }
    if (ready.bytes + kEnvelopeBytes > caps.max_bytes)
      return "payload: " + std::to_string(ready.bytes) + " bytes, over " + std::string(o.connector->kind()) +
             "'s limit of " + std::to_string(caps.max_bytes) + " bytes a request";
    return "";
  }

  // A new key for what is left of a group some of whose rows were settled.
  std::string rekey(const std::vector<Ready>& ready) {
    std::string key = "cdp-" + std::to_string(rows_[ready.front().row].id) + "-r-" + std::to_string(ready.size());
    for (const Ready& x : ready) {
      plan_.key_ids.push_back(rows_[x.row].id);
      plan_.keys.push_back(key);
    }
    return key;
  }

  void settle(const QueuedRow& r, bool dead, const std::string& why) {
    plan_.settled.push_back({r.id, r.dest, dead, why});
  }

  // Fresh rows cut into requests: per group (a kind may only batch items
  // about the same user), at most max_events rows, the kind's items per array
  // and bytes. A last request that is not full waits for more until its
  // oldest row has waited max_wait_ms.
  void batch_fresh(int dest, const std::vector<size_t>& group) {
    Room& r = room_[dest];
    const Options& o = *r.options;
    std::vector<Ready> ready = prepare(dest, group);
    std::vector<std::string> order;
    std::map<std::string, std::vector<Ready>> by_group;
    for (Ready& x : ready) {
      const std::string& g = x.items.front().group;
      if (!by_group.count(g)) order.push_back(g);
      by_group[g].push_back(std::move(x));
    }
    for (const std::string& g : order) {
      std::vector<Ready>& list = by_group[g];
      size_t i = 0;
      while (i < list.size() && free_ > 0 && r.requests > 0) {
        size_t end = fill(o, list, i);
        bool full = end < list.size() || static_cast<int>(end - i) >= o.max_events;
        if (!full && now_ - rows_[list[i].row].created < o.max_wait_ms * 1000LL) break;
        std::vector<Ready> part(std::make_move_iterator(list.begin() + i), std::make_move_iterator(list.begin() + end));
        std::string key = "cdp-" + std::to_string(rows_[part.front().row].id) + "-" + std::to_string(part.size());
        for (Ready& x : part) {
          plan_.key_ids.push_back(rows_[x.row].id);
          plan_.keys.push_back(key);
        }
        add(dest, part, key);
        i = end;
      }
    }
  }

  // The end of the request that starts at list[from]: as many rows as fit.
  static size_t fill(const Options& o, const std::vector<Ready>& list, size_t from) {
    size_t end = from, bytes = kEnvelopeBytes;
    std::map<std::string, int> per_array;
    connectors::Caps caps = o.connector ? o.connector->caps() : connectors::Caps{};
    while (end < list.size() && static_cast<int>(end - from) < o.max_events) {
      if (o.connector) {
        std::map<std::string, int> next = per_array;
        bool fits = bytes + list[end].bytes <= caps.max_bytes;
        for (auto& item : list[end].items) fits &= ++next[item.array] <= caps.max_items;
        if (!fits && end > from) break;
        per_array = std::move(next);
        bytes += list[end].bytes;
      }
      end++;
    }
    return end;
  }

  void add(int dest, const std::vector<Ready>& ready, const std::string& key) {
    Room& r = room_[dest];
    const Options& o = *r.options;
    PlannedRequest req;
    req.dest = dest;
    req.key = key;
    for (const Ready& x : ready) {
      req.attempts = std::max(req.attempts, rows_[x.row].attempts);
      for (auto& item : x.items) {
        req.items.push_back(item);
        req.item_rows.push_back(req.rows.size());
      }
      req.rows.push_back(x.row);
    }
    if (o.connector) {
      std::vector<const connectors::Item*> items;
      for (auto& item : req.items) items.push_back(&item);
      connectors::Request built = o.connector->build(items, o.config, now_);
      req.path = std::move(built.path);
      req.headers = std::move(built.headers);
      req.body = std::move(built.body);
    } else {
      std::vector<std::string> payloads;
      for (auto& item : req.items) payloads.push_back(std::move(item.json));
      req.items.clear();
      req.item_rows.clear();
      req.body = request_body(payloads, o.max_events > 1, now_);
    }
    plan_.requests.push_back(std::move(req));
    r.requests--;
    free_--;
  }

  const std::vector<QueuedRow>& rows_;
  std::map<int, Room> room_;
  int free_;
  Micros now_;
  ClaimPlan plan_;
};

// How bad a verdict is for the row it falls on: a row takes its worst item's.
int severity(connectors::Verdict v) {
  switch (v) {
    case connectors::Verdict::Delivered: return 0;
    case connectors::Verdict::RetryNow: return 1;
    case connectors::Verdict::Throttled: return 2;
    case connectors::Verdict::Retry: return 3;
    case connectors::Verdict::Dead: return 4;
  }
  return 4;
}

// One verdict per row of the request, and whether it points at an outage.
struct Read {
  std::vector<connectors::ItemAnswer> rows;
  bool split = false, outage = false, any_delivered = false;
  long status = 0;
};

Read read_answer(const Answer& a, const Options* o, Micros now) {
  Read out;
  connectors::Response r{a.status, a.response, a.retry_after, a.rate_limit_reset, a.transport_error};
  connectors::Answer ans;
  if (o && o->connector) {
    std::vector<const connectors::Item*> items;
    for (auto& item : a.items) items.push_back(&item);
    ans = o->connector->read(r, items, now);
  } else {
    ans = connectors::by_status(r);
  }
  out.split = ans.split && a.ids.size() > 1;
  out.outage = ans.outage;
  out.rows.assign(a.ids.size(), ans.whole);
  if (!ans.items.empty() && ans.items.size() == a.items.size()) {
    std::vector<int> worst(a.ids.size(), -1);
    for (size_t i = 0; i < ans.items.size(); i++) {
      size_t row = a.item_rows[i];
      if (severity(ans.items[i].verdict) > worst[row]) {
        worst[row] = severity(ans.items[i].verdict);
        out.rows[row] = ans.items[i];
      }
    }
  }
  for (auto& v : out.rows) {
    if (v.verdict != connectors::Verdict::Delivered && v.reason.empty()) v.reason = connectors::describe(r);
    out.any_delivered |= v.verdict == connectors::Verdict::Delivered;
  }
  return out;
}

}  // namespace

ClaimPlan plan_claim(const std::vector<QueuedRow>& rows, std::map<int, Room> room, int free_slots, Micros now) {
  return Planner(rows, std::move(room), free_slots, now).run();
}

RecordWrites plan_record(const std::vector<Answer>& answers, const std::function<const Options*(int)>& options_of,
                         Micros now, const std::function<double()>& jitter01) {
  using connectors::Verdict;
  RecordWrites w;
  for (const Answer& a : answers) {
    const Options* o = options_of(a.dest);
    Micros max_age = o ? o->max_age : kDefaultMaxAge;
    Read read = read_answer(a, o, now);
    RecordWrites::PerDestination& c = w.per_destination[a.dest];
    int status = static_cast<int>(a.status);
    // Past max_age, a failure is final. Rows retried together stay together:
    // one of them expired makes the request's retried rows all dead.
    bool expired = false;
    for (size_t i = 0; i < a.ids.size(); i++)
      expired |= read.rows[i].verdict == Verdict::Retry && now - a.created[i] >= max_age;
    for (size_t i = 0; i < a.ids.size(); i++) {
      Verdict& v = read.rows[i].verdict;
      if ((v == Verdict::Retry && expired) || (v == Verdict::Throttled && now - a.created[i] >= max_age))
        v = Verdict::Dead;
    }
    bool all_delivered = true, all_retry = true;
    for (auto& v : read.rows) {
      all_delivered &= v.verdict == Verdict::Delivered;
      all_retry &= v.verdict == Verdict::Retry;
    }
    if (read.any_delivered) c.success = true;
    if (!all_delivered) {
      c.failed++;
      c.failure |= read.outage;  // a refused payload or a throttled user is not an outage
    }
    if (read.split && !expired) {
      // Halves at once, under keys of their own, until the bad row is alone.
      size_t half = a.ids.size() / 2;
      for (size_t i = 0; i < a.ids.size(); i++) {
        size_t first = i < half ? 0 : half, n = i < half ? half : a.ids.size() - half;
        std::string key = "cdp-" + std::to_string(a.ids[first]) + "-s-" + std::to_string(n);
        w.rekeys.push_back({a.ids[i], now, key, status, read.rows[i].reason, false});
      }
      c.error = read.rows.front().reason;
      continue;
    }
    Micros delay = 0;
    bool delay_set = false;
    for (size_t i = 0; i < a.ids.size(); i++) {
      const connectors::ItemAnswer& v = read.rows[i];
      if (v.verdict == Verdict::Delivered) {
        c.delivered++;
        w.delivered.push_back(a.ids[i]);
        c.latencies_ms.push_back((now - a.created[i]) / 1000.0);
        continue;
      }
      c.error = v.reason;
      if (v.verdict == Verdict::Dead) {
        c.dead++;
        w.dead.push_back({a.ids[i], a.status, v.reason});
        continue;
      }
      if (v.verdict == Verdict::RetryNow) {
        w.rekeys.push_back({a.ids[i], now, "", status, v.reason, false});
        continue;
      }
      if (v.verdict == Verdict::Throttled) {
        w.rekeys.push_back({a.ids[i], now + v.delay, "", status, v.reason, true});
        continue;
      }
      // Retry: one backoff for the request; the rows keep their key only when
      // they all go again together.
      if (!delay_set) {
        std::optional<Micros> asked = v.delay > 0 ? std::optional<Micros>(v.delay) : parse_retry_after(a.retry_after, now);
        delay = backoff(a.attempts + 1, jitter01(), asked);
        delay_set = true;
      }
      if (all_retry)
        w.retries.push_back({a.ids[i], now + delay, status, v.reason});
      else
        w.rekeys.push_back({a.ids[i], now + delay, "", status, v.reason, true});
    }
  }
  return w;
}

Circuit next_circuit(int failures_before, const RecordWrites::PerDestination& round, Micros now) {
  int failures = round.success ? 0 : failures_before + (round.failure ? 1 : 0);
  return {failures, failures >= kCircuitFailures ? now + circuit_pause(failures) : 0};
}

}  // namespace cdp::delivery
