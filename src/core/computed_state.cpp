#include "core/computed_state.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"

namespace cdp::computed {
namespace {

[[noreturn]] void bad() { throw Error(ErrorKind::InvalidInput, "state", "is not a state this version wrote"); }

bool numeric(Kind k) { return k == Kind::Sum || k == Kind::Min || k == Kind::Max || k == Kind::Avg; }
bool valued(Kind k) { return k == Kind::First || k == Kind::Last; }
bool keyed(Kind k) { return k == Kind::MostFrequent || k == Kind::Unique; }

void put_double(std::string& out, double x) {
  char b[8];
  std::memcpy(b, &x, 8);  // little-endian hosts only (x86-64, arm64), as Postgres' own builds here
  out.append(b, 8);
}

double get_double(std::string_view bytes, size_t& at) {
  if (bytes.size() - at < 8) bad();
  double x;
  std::memcpy(&x, bytes.data() + at, 8);
  at += 8;
  return x;
}

void put_text(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

std::string_view get_text(std::string_view bytes, size_t& at) {
  uint64_t n = get_varint(bytes, at);
  if (n > bytes.size() - at) bad();
  std::string_view s = bytes.substr(at, n);
  at += n;
  return s;
}

// One bucket as the bytes hold it; the strings and the value list point into them.
struct BucketRef {
  Micros start = 0;
  int64_t count = 0;
  double number = 0;
  Micros at = 0;
  int64_t event_id = 0;
  std::string_view value;
  uint64_t values = 0;     // most_frequent / unique: how many (value, number) pairs follow
  size_t values_at = 0;    // and where they start
};

// Calls f(const BucketRef&) for each bucket, oldest first; f returns false to stop.
template <typename F>
void each_bucket(const Definition& d, std::string_view bytes, F&& f) {
  size_t at = 0;
  Micros start = 0;
  bool first = true;
  while (at < bytes.size()) {
    BucketRef b;
    int64_t delta = unzigzag(get_varint(bytes, at));
    if (!first && delta <= 0) bad();  // strictly increasing, as State keeps them
    start = first ? delta : static_cast<Micros>(static_cast<uint64_t>(start) + static_cast<uint64_t>(delta));
    first = false;
    b.start = start;
    b.count = unzigzag(get_varint(bytes, at));
    if (numeric(d.kind)) b.number = get_double(bytes, at);
    if (valued(d.kind)) {
      b.at = unzigzag(get_varint(bytes, at));
      b.event_id = unzigzag(get_varint(bytes, at));
      b.value = get_text(bytes, at);
    }
    if (keyed(d.kind)) {
      b.values = get_varint(bytes, at);
      b.values_at = at;
      for (uint64_t i = 0; i < b.values; i++) {
        get_text(bytes, at);
        get_varint(bytes, at);
      }
    }
    if (!f(static_cast<const BucketRef&>(b))) return;
  }
}

}  // namespace

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

uint64_t get_varint(std::string_view bytes, size_t& at) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (at >= bytes.size()) bad();
    uint8_t c = static_cast<uint8_t>(bytes[at++]);
    v |= static_cast<uint64_t>(c & 0x7f) << shift;
    if (!(c & 0x80)) return v;
  }
  bad();
}

void encode_state(const Definition& d, const State& s, std::string& out) {
  Micros prev = 0;
  for (size_t i = 0; i < s.buckets.size(); i++) {
    const Bucket& b = s.buckets[i];
    put_varint(out, zigzag(i == 0 ? b.start : static_cast<int64_t>(static_cast<uint64_t>(b.start) - static_cast<uint64_t>(prev))));
    prev = b.start;
    put_varint(out, zigzag(b.count));
    if (numeric(d.kind)) put_double(out, b.number);
    if (valued(d.kind)) {
      put_varint(out, zigzag(b.at));
      put_varint(out, zigzag(b.event_id));
      put_text(out, b.value);
    }
    if (keyed(d.kind)) {
      put_varint(out, b.values.size());
      for (auto& [v, n] : b.values) {
        put_text(out, v);
        put_varint(out, zigzag(n));
      }
    }
  }
}

State decode_state(const Definition& d, std::string_view bytes) {
  State s;
  each_bucket(d, bytes, [&](const BucketRef& r) {
    Bucket b;
    b.start = r.start;
    b.count = r.count;
    b.number = r.number;
    b.at = r.at;
    b.event_id = r.event_id;
    b.value.assign(r.value);
    size_t at = r.values_at;
    for (uint64_t i = 0; i < r.values; i++) {
      std::string_view v = get_text(bytes, at);
      int64_t n = unzigzag(get_varint(bytes, at));
      b.values.emplace(std::string(v), n);
    }
    s.buckets.push_back(std::move(b));
    return true;
  });
  return s;
}

bool any_expired(const Definition& d, StateView v, Micros now) {
  if (d.window == 0 || v.empty()) return false;
  bool expired = false;
  each_bucket(d, v.bytes, [&](const BucketRef& b) {  // the oldest decides
    expired = !d.live(b.start, now);
    return false;
  });
  return expired;
}

std::optional<Micros> next_expiry(const Definition& d, StateView v) {
  if (d.window == 0 || v.empty()) return std::nullopt;
  std::optional<Micros> out;
  each_bucket(d, v.bytes, [&](const BucketRef& b) {
    out = clamp_time(b.start) + d.window;
    return false;
  });
  return out;
}

int64_t count(const Definition& d, StateView v, Micros now) {
  int64_t n = 0;
  each_bucket(d, v.bytes, [&](const BucketRef& b) {
    if (d.live(b.start, now)) n += b.count;
    return true;
  });
  return n;
}

namespace {

// The live total of a numeric kind, combined as computed.cpp's combine() does.
struct Total {
  int64_t count = 0;
  double number = 0;
};

Total numeric_total(const Definition& d, StateView v, Micros now) {
  Total t;
  if (d.kind == Kind::Min) t.number = INFINITY;
  if (d.kind == Kind::Max) t.number = -INFINITY;
  each_bucket(d, v.bytes, [&](const BucketRef& b) {
    if (!d.live(b.start, now)) return true;
    if (d.kind == Kind::Sum || d.kind == Kind::Avg) t.number += b.number;
    if (d.kind == Kind::Min) t.number = std::min(t.number, b.number);
    if (d.kind == Kind::Max) t.number = std::max(t.number, b.number);
    t.count += b.count;
    return true;
  });
  return t;
}

// What value() prints for a numeric result, or nullopt for null.
std::optional<double> numeric_result(const Definition& d, const Total& t, bool& is_count) {
  is_count = d.kind == Kind::Count;
  switch (d.kind) {
    case Kind::Count: return static_cast<double>(t.count);
    case Kind::Sum: return t.number;
    case Kind::Min:
    case Kind::Max: return t.count ? std::optional<double>(t.number) : std::nullopt;
    case Kind::Avg: return t.count ? std::optional<double>(t.number / double(t.count)) : std::nullopt;
    default: return std::nullopt;
  }
}

}  // namespace

std::string value(const Definition& d, StateView v, Micros now) {
  if (d.kind != Kind::Count && !numeric(d.kind)) return value(d, decode_state(d, v.bytes), now);
  Total t = numeric_total(d, v, now);
  if (d.kind == Kind::Count) return std::to_string(t.count);
  bool is_count = false;
  std::optional<double> x = numeric_result(d, t, is_count);
  return x ? number_text(*x) : "null";
}

std::optional<Number> number_value(const Definition& d, StateView v, Micros now) {
  if (d.kind != Kind::Count && !numeric(d.kind)) return std::nullopt;
  Total t = numeric_total(d, v, now);
  Number n;
  if (d.kind == Kind::Count) {
    n.integral = true;
    n.integer = t.count;
    return n;
  }
  bool is_count = false;
  std::optional<double> x = numeric_result(d, t, is_count);
  if (!x) return std::nullopt;
  std::string text = number_text(*x);  // the digits value() writes, read back as JSON would
  if (text.find_first_of(".eEni") == std::string::npos) {
    n.integral = true;
    n.integer = std::strtoll(text.c_str(), nullptr, 10);
  } else {
    n.real = std::strtod(text.c_str(), nullptr);
  }
  return n;
}

}  // namespace cdp::computed
