#include "testing/event_generator.hpp"

#include <cstdio>
#include <string_view>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/timestamp.hpp"

namespace cdp {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

// Salts keep the per-person hashes for different attributes independent.
enum Salt : uint64_t { kName = 1, kDevice, kWeb, kAccount, kAnonymous };

// splitmix64 finaliser. Per-person attributes hash (seed, person) instead of
// drawing from the message stream, so a person looks the same in every message.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t person_hash(uint64_t seed, uint64_t user, uint64_t salt) {
  return mix(mix(seed * 0x100000001b3ULL + salt) ^ user);
}

template <typename T, size_t N>
const T& pick(const T (&list)[N], uint64_t r) {
  return list[r % N];
}

// Display names with the ASCII spelling used in email addresses.
struct Name {
  const char* display;
  const char* ascii;
};
constexpr Name kFirstNames[] = {
    {"Olivia", "olivia"}, {"Liam", "liam"},       {"Emma", "emma"},       {"Noah", "noah"},
    {"Amelia", "amelia"}, {"Oliver", "oliver"},   {"Ava", "ava"},         {"Elijah", "elijah"},
    {"Sophia", "sophia"}, {"Mateo", "mateo"},     {"Chloé", "chloe"},     {"Hiroshi", "hiroshi"},
    {"Fatima", "fatima"}, {"Sven", "sven"},       {"Priya", "priya"},     {"Diego", "diego"},
    {"Aisha", "aisha"},   {"Jonas", "jonas"},     {"Yuki", "yuki"},       {"Zoë", "zoe"}};
constexpr Name kLastNames[] = {
    {"Smith", "smith"},   {"Johnson", "johnson"}, {"García", "garcia"},   {"Müller", "mueller"},
    {"Brown", "brown"},   {"Martin", "martin"},   {"Rossi", "rossi"},     {"Tanaka", "tanaka"},
    {"Silva", "silva"},   {"Kowalski", "kowalski"}, {"Nguyen", "nguyen"}, {"O'Brien", "obrien"},
    {"Dubois", "dubois"}, {"Jensen", "jensen"},   {"Patel", "patel"},     {"Kim", "kim"}};
constexpr const char* kEmailDomains[] = {"example.com", "example.org", "example.net",
                                         "mail.example", "corp.example"};
constexpr const char* kPlans[] = {"free", "free", "free", "starter", "starter", "pro",
                                  "enterprise"};
constexpr const char* kCompanyWords[] = {"Acme", "Globex", "Initech", "Umbrella", "Hooli",
                                         "Stark", "Wayne", "Tyrell", "Soylent", "Cyberdyne"};
constexpr const char* kCompanySuffixes[] = {"Inc", "GmbH", "Ltd", "Labs", "Group", "SA"};
constexpr const char* kLibraryVersions[] = {"npm:next-1.70.0", "npm:next-1.66.0",
                                            "4.15.3"};
constexpr const char* kUserAgents[] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"};
// Locale and the currency that goes with it, by position.
constexpr const char* kLocales[] = {"en-US", "en-US", "en-GB", "de-DE", "fr-FR", "pt-BR",
                                    "ja-JP"};
constexpr const char* kCurrencies[] = {"USD", "USD", "GBP", "EUR", "EUR", "BRL", "JPY"};
constexpr const char* kReferrers[] = {"", "https://www.google.com/", "https://www.bing.com/",
                                      "https://t.co/", "https://news.ycombinator.com/",
                                      "https://www.facebook.com/"};
constexpr const char* kCoupons[] = {"WELCOME10", "SPRING25", "FREESHIP", "VIP-2025"};
constexpr const char* kSearches[] = {"tent", "rain jacket", "hiking boots size 42",
                                     "stove", "sleeping bag -10C"};
constexpr const char* kSignupMethods[] = {"email", "google", "apple", "github"};

constexpr std::string_view kSite = "https://acme.example";

struct Page {
  const char* path;
  const char* title;
  const char* name;
  const char* category;
};
constexpr Page kPages[] = {
    {"/", "Acme – Outdoor gear", "Home", "Landing"},
    {"/p/trail-tent", "Trail Tent 2P", "Product", "Shop"},
    {"/p/storm-jacket", "Storm Jacket", "Product", "Shop"},
    {"/c/camping?page=2", "Camping", "Collection", "Shop"},
    {"/search?q=tent", "Search", "Search", "Shop"},
    {"/cart", "Cart", "Cart", "Checkout"},
    {"/checkout", "Checkout", "Payment", "Checkout"},
    {"/blog/day-hikes", "10 day hikes", "Article", "Blog"}};

constexpr const char* kAdjectives[] = {"Trail", "Storm", "Summit", "Ridge", "Canyon", "Alpine"};
constexpr const char* kNouns[] = {"Tent 2P", "Jacket", "Backpack 40L", "Boots", "Stove",
                                  "Sleeping Bag", "Headlamp", "Trekking Poles"};
constexpr uint64_t kProducts = std::size(kAdjectives) * std::size(kNouns);

// Prices end in .99, from 4.99 to 299.99, fixed per product.
int64_t product_price_cents(uint64_t product) {
  return static_cast<int64_t>(5 + mix(product) % 295) * 100 - 1;
}

std::string product_sku(uint64_t product) { return "ACM-" + std::to_string(10000 + product); }

std::string product_name(uint64_t product) {
  return std::string(kAdjectives[product / std::size(kNouns)]) + " " +
         kNouns[product % std::size(kNouns)];
}

// Writes one message for a given generator state. Kept out of the header so
// that RapidJSON stays an implementation detail.
class MessageWriter {
 public:
  MessageWriter(Writer& w, std::mt19937_64& rng, const EventGenerator& gen,
                const GeneratorOptions& opts)
      : w_(w), rng_(rng), gen_(gen), opts_(opts) {}

  void write(uint64_t n, int64_t when);

 private:
  uint64_t below(uint64_t n) { return rng_() % n; }
  double unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
  uint64_t hash(uint64_t salt) const { return person_hash(opts_.seed, user_, salt); }

  void str(const char* key, std::string_view v) {
    w_.Key(key);
    w_.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  }
  void money(const char* key, int64_t cents) {
    w_.Key(key);
    w_.Double(static_cast<double>(cents) / 100.0);  // exact and identical everywhere
  }
  void integer(const char* key, int64_t v) {
    w_.Key(key);
    w_.Int64(v);
  }

  void choose_visit();
  void context();
  void page_fields(const char* key);
  void track(uint64_t n);
  void identify();
  void page();
  int64_t product(uint64_t id, int64_t quantity);
  void order_properties(uint64_t n, bool completed);

  Writer& w_;
  std::mt19937_64& rng_;
  const EventGenerator& gen_;
  const GeneratorOptions& opts_;
  uint64_t user_ = 0;
  const Page* page_ = nullptr;
  const char* referrer_ = "";
};

// Who, and on which page. The person is the lesser of two uniform draws, so
// low-numbered people are the regulars.
void MessageWriter::choose_visit() {
  uint64_t users = opts_.users ? opts_.users : 1;
  uint64_t a = below(users), b = below(users);
  user_ = a < b ? a : b;
  page_ = &kPages[below(std::size(kPages))];
  referrer_ = pick(kReferrers, below(std::size(kReferrers)));
}

void MessageWriter::write(uint64_t n, int64_t when) {
  choose_visit();
  bool anonymous = gen_.is_anonymous(user_);
  unsigned device = below(4) == 0 ? 1 : 0;  // a quarter of visits from a second device
  double r = unit();
  std::string_view type = r < opts_.identify_share ? (anonymous ? "page" : "identify")
                         : r < opts_.identify_share + opts_.page_share ? "page"
                                                                       : "track";
  w_.StartObject();
  str("type", type);
  str("messageId", std::to_string(opts_.seed) + "-" + std::to_string(n));
  if (!anonymous) str("userId", gen_.user_id(user_));
  str("anonymousId", gen_.anonymous_id(user_, device));
  str("timestamp", format_iso8601(when));
  if (type == "identify") identify();
  else if (type == "page") page();
  else track(n);
  context();
  w_.EndObject();
}

void MessageWriter::page_fields(const char* key) {
  w_.Key(key);
  w_.StartObject();
  str("path", page_->path);
  str("url", std::string(kSite) + page_->path);
  str("referrer", referrer_);
  str("title", page_->title);
  w_.EndObject();
}

void MessageWriter::context() {
  uint64_t web = hash(kWeb);
  w_.Key("context");
  w_.StartObject();
  w_.Key("library");
  w_.StartObject();
  str("name", "analytics.js");
  str("version", pick(kLibraryVersions, web));
  w_.EndObject();
  char ip[16];
  std::snprintf(ip, sizeof ip, "%u.%u.%u.%u", static_cast<unsigned>(1 + web % 223),
                static_cast<unsigned>(web >> 8 & 255), static_cast<unsigned>(web >> 16 & 255),
                static_cast<unsigned>(1 + (web >> 24) % 254));
  str("ip", ip);
  str("userAgent", pick(kUserAgents, web >> 32));
  str("locale", pick(kLocales, web >> 40));
  page_fields("page");
  w_.EndObject();
}

void MessageWriter::identify() {
  uint64_t name = hash(kName), account = hash(kAccount);
  w_.Key("traits");
  w_.StartObject();
  str("email", gen_.email(user_));
  str("name", std::string(pick(kFirstNames, name).display) + " " +
                  pick(kLastNames, name >> 16).display);
  str("plan", pick(kPlans, account));
  // Signed up some time in the three years before the generator's start.
  int64_t age_seconds = static_cast<int64_t>((account >> 8) % (3 * 365 * 86400));
  str("created_at", format_iso8601(opts_.start_micros - age_seconds * 1000000));
  w_.Key("company");
  w_.StartObject();
  str("name", std::string(pick(kCompanyWords, account >> 40)) + " " +
                  pick(kCompanySuffixes, account >> 48));
  integer("employees", static_cast<int64_t>(1 + (account >> 20) % 5000));
  w_.EndObject();
  w_.EndObject();
}

void MessageWriter::page() {
  str("name", page_->name);
  str("category", page_->category);
  page_fields("properties");
}

// One product object; returns its line total in cents.
int64_t MessageWriter::product(uint64_t id, int64_t quantity) {
  int64_t price = product_price_cents(id);
  w_.StartObject();
  str("sku", product_sku(id));
  str("name", product_name(id));
  money("price", price);
  integer("quantity", quantity);
  w_.EndObject();
  return price * quantity;
}

// Checkout Started / Order Completed: 1-3 products, revenue, maybe a coupon.
void MessageWriter::order_properties(uint64_t n, bool completed) {
  str("order_id", "ord-" + std::to_string(opts_.seed) + "-" + std::to_string(n));
  w_.Key("products");
  w_.StartArray();
  int64_t total = 0;
  static constexpr uint64_t kItems[] = {1, 1, 1, 1, 1, 2, 2, 2, 3, 3};  // most carts hold one
  for (uint64_t i = 0, k = pick(kItems, below(std::size(kItems))); i < k; i++) {
    // Separate statements: the order of argument evaluation is unspecified, and
    // the draws must come in the same order under every compiler.
    uint64_t id = below(kProducts);
    int64_t quantity = 1 + static_cast<int64_t>(below(4) / 3);
    total += product(id, quantity);
  }
  w_.EndArray();
  money(completed ? "revenue" : "value", total);
  str("currency", pick(kCurrencies, hash(kWeb) >> 40));
  if (below(10) < 3) str("coupon", pick(kCoupons, below(std::size(kCoupons))));
}

void MessageWriter::track(uint64_t n) {
  static constexpr const char* kEvents[] = {
      "Product Viewed", "Product Viewed", "Product Viewed", "Product Added",
      "Product Added",  "Products Searched", "Checkout Started", "Order Completed",
      "Order Completed", "Signed Up"};
  std::string_view e = pick(kEvents, below(std::size(kEvents)));
  if (e == "Signed Up" && gen_.is_anonymous(user_)) e = "Product Viewed";  // needs a userId
  str("event", e);
  w_.Key("properties");
  w_.StartObject();
  if (e == "Order Completed" || e == "Checkout Started") {
    order_properties(n, e == "Order Completed");
  } else if (e == "Product Viewed" || e == "Product Added") {
    uint64_t id = below(kProducts);
    str("product_id", product_sku(id));
    str("name", product_name(id));
    money("price", product_price_cents(id));
    str("currency", pick(kCurrencies, hash(kWeb) >> 40));
    integer("quantity", 1);
  } else if (e == "Products Searched") {
    str("query", pick(kSearches, below(std::size(kSearches))));
  } else {
    str("method", pick(kSignupMethods, below(std::size(kSignupMethods))));
    str("plan", pick(kPlans, hash(kAccount)));
  }
  w_.EndObject();
}

}  // namespace

EventGenerator::EventGenerator(GeneratorOptions options)
    : opts_(options), rng_(options.seed), clock_(options.start_micros) {}

int64_t EventGenerator::advance_clock() {
  uint64_t spread = opts_.mean_gap_micros > 0 ? 2 * opts_.mean_gap_micros : 1;
  clock_ += 1 + static_cast<int64_t>(rng_() % spread);  // strictly advancing
  return clock_;
}

std::string EventGenerator::next() {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  int64_t when = advance_clock();
  MessageWriter(w, rng_, *this, opts_).write(count_++, when);
  return std::string(buf.GetString(), buf.GetSize());
}

std::string EventGenerator::batch(size_t n) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("batch");
  w.StartArray();
  for (size_t i = 0; i < n; i++) {
    int64_t when = advance_clock();
    MessageWriter(w, rng_, *this, opts_).write(count_++, when);
  }
  w.EndArray();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

std::string EventGenerator::user_id(uint64_t user) const {
  return "usr_" + std::to_string(100000000 + user);
}

// A version-4 UUID drawn from the person's hash.
std::string EventGenerator::anonymous_id(uint64_t user, unsigned device) const {
  uint64_t a = person_hash(opts_.seed, user, kDevice + 16 * device);
  uint64_t b = mix(a);
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-%04x-%012llx",
                static_cast<unsigned>(a >> 32), static_cast<unsigned>(a >> 16 & 0xffff),
                static_cast<unsigned>(a & 0xfff),
                static_cast<unsigned>(0x8000 | (b >> 48 & 0x3fff)),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

// The person's name in ASCII; the user number keeps it unique.
std::string EventGenerator::email(uint64_t user) const {
  uint64_t name = person_hash(opts_.seed, user, kName);
  return std::string(pick(kFirstNames, name).ascii) + "." + pick(kLastNames, name >> 16).ascii +
         std::to_string(user) + "@" + pick(kEmailDomains, name >> 32);
}

bool EventGenerator::is_anonymous(uint64_t user) const {
  return static_cast<double>(person_hash(opts_.seed, user, kAnonymous) % 1000000) <
         opts_.anonymous_share * 1000000.0;
}

}  // namespace cdp
