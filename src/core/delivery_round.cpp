#include "core/delivery_round.hpp"

#include <algorithm>
#include <cstdlib>

#include <rapidjson/document.h>

#include "core/json_util.hpp"

namespace cdp::delivery {
namespace {

constexpr Micros kDefaultMaxAge = 24LL * 3600 * 1000000;

// The payload as the destination may see it: the PII policy applied, numbers
// written back exactly as stored. A payload that does not parse goes as stored.
std::string outgoing(const std::string& payload, const Options& o) {
  if (o.drop.empty() && o.hash.empty()) return payload;
  rapidjson::Document doc;
  if (parse_json(doc, payload, Numbers::Exact).IsError()) return payload;
  apply_pii(doc, o);
  return to_json(doc);
}

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
    for (auto& [key, group] : resend) {
      if (free_ <= 0) break;
      // The key ("cdp-<first id>-<n>") names n rows: a group the limit cut
      // waits, rather than going under its key without the rest.
      size_t n = std::strtoul(key.substr(key.rfind('-') + 1).c_str(), nullptr, 10);
      if (group.size() != n) continue;
      if (room_[rows_[group.front()].dest].requests > 0) add(rows_[group.front()].dest, group, key);
    }
    for (auto& [dest, group] : fresh) batch_fresh(dest, group);
    return std::move(plan_);
  }

 private:
  void batch_fresh(int dest, const std::vector<size_t>& group) {
    Room& r = room_[dest];
    const Options& o = *r.options;
    for (size_t i = 0; i < group.size() && free_ > 0 && r.requests > 0; i += o.max_events) {
      std::vector<size_t> part(group.begin() + i, group.begin() + std::min(group.size(), i + o.max_events));
      // A partial batch waits for more until its oldest row has waited max_wait_ms.
      if (static_cast<int>(part.size()) < o.max_events && now_ - rows_[part.front()].created < o.max_wait_ms * 1000LL)
        break;
      std::string key = "cdp-" + std::to_string(rows_[part.front()].id) + "-" + std::to_string(part.size());
      for (size_t k : part) {
        plan_.key_ids.push_back(rows_[k].id);
        plan_.keys.push_back(key);
      }
      add(dest, part, key);
    }
  }

  void add(int dest, const std::vector<size_t>& group, const std::string& key) {
    Room& r = room_[dest];
    PlannedRequest req;
    req.dest = dest;
    req.rows = group;
    req.key = key;
    std::vector<std::string> payloads;
    for (size_t k : group) {
      req.attempts = std::max(req.attempts, rows_[k].attempts);
      payloads.push_back(outgoing(rows_[k].payload, *r.options));
    }
    req.body = request_body(payloads, r.options->max_events > 1, now_);
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

}  // namespace

ClaimPlan plan_claim(const std::vector<QueuedRow>& rows, std::map<int, Room> room, int free_slots, Micros now) {
  return Planner(rows, std::move(room), free_slots, now).run();
}

RecordWrites plan_record(const std::vector<Answer>& answers, const std::function<const Options*(int)>& options_of,
                         Micros now, const std::function<double()>& jitter01) {
  RecordWrites w;
  for (const Answer& a : answers) {
    const Options* o = options_of(a.dest);
    Micros max_age = o ? o->max_age : kDefaultMaxAge;
    Outcome outcome = classify(a.status);
    std::string error = a.status ? "HTTP " + std::to_string(a.status) + ": " + a.response : a.transport_error;
    RecordWrites::PerDestination& c = w.per_destination[a.dest];
    if (outcome == Outcome::Delivered) {
      c.success = true;
      c.delivered += static_cast<int64_t>(a.ids.size());
      w.delivered.insert(w.delivered.end(), a.ids.begin(), a.ids.end());
      for (Micros t : a.created) c.latencies_ms.push_back((now - t) / 1000.0);
      continue;
    }
    c.failed++;
    c.error = error;
    c.failure |= outcome == Outcome::Retry;  // a refused payload is not an outage
    bool expired = std::any_of(a.created.begin(), a.created.end(), [&](Micros t) { return now - t >= max_age; });
    if (outcome == Outcome::Dead || expired) {
      c.dead += static_cast<int64_t>(a.ids.size());
      for (int64_t id : a.ids) w.dead.push_back({id, a.status, error});
      continue;
    }
    Micros delay = backoff(a.attempts + 1, jitter01(), parse_retry_after(a.retry_after, now));
    for (int64_t id : a.ids) w.retries.push_back({id, now + delay, static_cast<int>(a.status), error});
  }
  return w;
}

Circuit next_circuit(int failures_before, const RecordWrites::PerDestination& round, Micros now) {
  int failures = round.success ? 0 : failures_before + (round.failure ? 1 : 0);
  return {failures, failures >= kCircuitFailures ? now + circuit_pause(failures) : 0};
}

}  // namespace cdp::delivery
