// cdp-ingest-bench: loads the same generated Segment-spec events twice in one
// run, by plain multi-row INSERT into a bare table shaped like cdp.events (the
// baseline) and through cdp.ingest, and prints both rates and their ratio.
// Built and run by bench/ingest.sh; see there for usage.
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <rapidjson/document.h>

#include "testing/event_generator.hpp"
#include "core/json_util.hpp"

namespace {

struct Options {
  std::string dsn;  // empty: libpq takes PGHOST, PGPORT, PGDATABASE, PGUSER...
  size_t count = 200000, batch = 100, clients = 1, rounds = 1;
  uint64_t seed = 42, users = 100000;
  std::string ingest_sql = "select count(*) from cdp.ingest($1::jsonb)";
  bool plain_only = false;
  // Named prepared statements (the default, as the brief's baseline: an
  // application's prepared multi-row INSERT); --unprepared sends one-shot
  // PQexecParams statements, parsed and planned per call.
  bool prepared = true;
};

// The baseline's parameters: cdp.events' columns but id and received_at
// (now()), with the cast each text parameter gets. Order matches row_of().
struct Column {
  const char* name;
  const char* cast;
};
constexpr Column kColumns[] = {
    {"message_id", ""},           {"source_id", "::int"},   {"type", ""},
    {"event", ""},                {"name", ""},             {"category", ""},
    {"user_id", ""},              {"anonymous_id", ""},     {"group_id", ""},
    {"previous_id", ""},          {"\"timestamp\"", "::timestamptz"},
    {"original_timestamp", "::timestamptz"},                {"sent_at", "::timestamptz"},
    {"properties", "::jsonb"},    {"traits", "::jsonb"},    {"context", "::jsonb"},
    {"integrations", "::jsonb"}};
constexpr size_t kParams = std::size(kColumns);

// One statement's worth of work, prepared before the clock starts.
struct Batch {
  std::string envelope;                   // {"batch":[...]} for cdp.ingest
  std::string insert;                     // the multi-row INSERT
  std::string insert_name;                // its name with --prepared
  std::vector<std::string> values;        // kParams per row, for the INSERT
  std::vector<const char*> params;        // into values; nullptr is SQL NULL
  size_t rows = 0;
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: cdp-ingest-bench [--dsn CONNINFO] [--count N] [--batch B] "
               "[--clients C] [--rounds R]\n"
               "                        [--seed S] [--users U] [--ingest-sql SQL] "
               "[--plain-only]\n"
               "                        [--prepared | --unprepared]\n");
  std::exit(2);
}

size_t positive(const char* text) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (end == text || *end || v == 0 || text[0] == '-') usage();
  return v;
}

Options parse_args(int argc, char** argv) {
  Options o;
  if (const char* env = std::getenv("CDP_BENCH_DSN")) o.dsn = env;
  for (int i = 1; i < argc; i++) {
    std::string flag = argv[i];
    if (flag == "--plain-only") { o.plain_only = true; continue; }
    if (flag == "--prepared") { o.prepared = true; continue; }
    if (flag == "--unprepared") { o.prepared = false; continue; }
    if (i + 1 >= argc) usage();
    const char* v = argv[++i];
    if (flag == "--dsn") o.dsn = v;
    else if (flag == "--ingest-sql") o.ingest_sql = v;
    else if (flag == "--count") o.count = positive(v);
    else if (flag == "--batch") o.batch = positive(v);
    else if (flag == "--clients") o.clients = positive(v);
    else if (flag == "--rounds") o.rounds = positive(v);
    else if (flag == "--seed") o.seed = positive(v);
    else if (flag == "--users") o.users = positive(v);
    else usage();
  }
  return o;
}

[[noreturn]] void die(const std::string& what, PGconn* conn) {
  std::fprintf(stderr, "cdp-ingest-bench: %s: %s", what.c_str(),
               conn ? PQerrorMessage(conn) : "\n");
  std::exit(1);
}

PGconn* connect(const Options& o) {
  const char* keys[] = {"dbname", "application_name", nullptr};
  const char* vals[] = {o.dsn.c_str(), "cdp-ingest-bench", nullptr};
  PGconn* conn = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(conn) != CONNECTION_OK) die("connect", conn);
  return conn;
}

// Runs a statement; returns the first value of the first row, if any.
std::optional<std::string> exec(PGconn* conn, const std::string& sql, bool must = true) {
  PGresult* r = PQexec(conn, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  if (!ok && must) die(sql, conn);
  std::optional<std::string> v;
  if (ok && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) v = PQgetvalue(r, 0, 0);
  PQclear(r);
  return v;
}

// --- Preparing the rows ---------------------------------------------------

std::optional<std::string> text_field(const rapidjson::Value& m, const char* key) {
  auto it = m.FindMember(key);
  if (it == m.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

std::optional<std::string> json_field(const rapidjson::Value& m, const char* key) {
  auto it = m.FindMember(key);
  if (it == m.MemberEnd()) return std::nullopt;
  return cdp::to_json(it->value);
}

// The row an application would insert for one message: what cdp.events holds
// (no clock-skew correction is needed: the generator sends no sentAt).
std::vector<std::optional<std::string>> row_of(const rapidjson::Value& m) {
  auto ts = text_field(m, "timestamp");
  return {text_field(m, "messageId"),  std::string("1"),
          text_field(m, "type"),       text_field(m, "event"),
          text_field(m, "name"),       text_field(m, "category"),
          text_field(m, "userId"),     text_field(m, "anonymousId"),
          text_field(m, "groupId"),    text_field(m, "previousId"),
          ts,                          ts,
          std::nullopt,                json_field(m, "properties"),
          json_field(m, "traits"),     json_field(m, "context"),
          json_field(m, "integrations")};
}

std::string insert_sql(size_t rows);

Batch make_batch(cdp::EventGenerator& gen, size_t rows) {
  Batch b;
  b.envelope = gen.batch(rows);
  b.insert = insert_sql(rows);
  b.insert_name = "insert" + std::to_string(rows);
  b.rows = rows;
  rapidjson::Document doc;
  doc.Parse(b.envelope.c_str());
  std::vector<bool> present;
  for (const auto& m : doc["batch"].GetArray())
    for (auto& v : row_of(m)) {
      present.push_back(v.has_value());
      b.values.push_back(v.value_or(""));
    }
  // Pointers only once values stops growing.
  for (size_t i = 0; i < b.values.size(); i++)
    b.params.push_back(present[i] ? b.values[i].c_str() : nullptr);
  return b;
}

std::vector<Batch> make_batches(const Options& o, size_t& bytes) {
  cdp::GeneratorOptions g;
  g.seed = o.seed;
  g.users = o.users;
  cdp::EventGenerator gen(g);
  std::vector<Batch> batches;
  bytes = 0;
  for (size_t left = o.count; left > 0; left -= batches.back().rows) {
    batches.push_back(make_batch(gen, std::min(left, o.batch)));
    bytes += batches.back().envelope.size();
  }
  return batches;
}

// insert into bench_plain (...) values ($1, ..., now()), (...) for n rows.
std::string insert_sql(size_t rows) {
  std::string sql = "insert into bench_plain (";
  for (const Column& c : kColumns) sql += std::string(c.name) + ", ";
  sql += "received_at) values ";
  for (size_t r = 0, p = 1; r < rows; r++) {
    sql += r ? ", (" : "(";
    for (const Column& c : kColumns) sql += "$" + std::to_string(p++) + c.cast + ", ";
    sql += "now())";
  }
  return sql;
}

// --- Running a phase --------------------------------------------------------

enum class Method { Plain, Ingest };

const char* method_name(Method m) { return m == Method::Plain ? "plain INSERT" : "cdp.ingest"; }

struct Phase {
  Phase(const Options& o, const std::vector<Batch>& b, Method m)
      : opts(o), batches(b), method(m) {}
  const Options& opts;
  const std::vector<Batch>& batches;
  Method method;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string error;
};

constexpr const char* kIngestName = "ingest";

PGresult* run_prepared(PGconn* conn, Phase& ph, const Batch& b) {
  if (ph.method == Method::Ingest) {
    const char* p[] = {b.envelope.c_str()};
    return PQexecPrepared(conn, kIngestName, 1, p, nullptr, nullptr, 0);
  }
  return PQexecPrepared(conn, b.insert_name.c_str(), static_cast<int>(b.params.size()),
                        b.params.data(), nullptr, nullptr, 0);
}

bool run_one(PGconn* conn, Phase& ph, const Batch& b) {
  PGresult* r;
  if (ph.opts.prepared) {
    r = run_prepared(conn, ph, b);
  } else if (ph.method == Method::Plain) {
    r = PQexecParams(conn, b.insert.c_str(), static_cast<int>(b.params.size()), nullptr,
                     b.params.data(), nullptr, nullptr, 0);
  } else {
    const char* p[] = {b.envelope.c_str()};
    r = PQexecParams(conn, ph.opts.ingest_sql.c_str(), 1, nullptr, p, nullptr, nullptr, 0);
  }
  ExecStatusType st = PQresultStatus(r);
  PQclear(r);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

// One client: takes batches from the shared counter until none are left.
void client(PGconn* conn, Phase& ph, std::latch& ready, std::latch& go) {
  ready.count_down();
  go.wait();
  while (!ph.failed) {
    size_t i = ph.next++;
    if (i >= ph.batches.size()) break;
    if (run_one(conn, ph, ph.batches[i])) continue;
    std::lock_guard lock(ph.error_mutex);
    if (!ph.failed.exchange(true)) ph.error = PQerrorMessage(conn);
  }
}

void prepare(PGconn* conn, const char* name, const std::string& sql) {
  PGresult* r = PQprepare(conn, name, sql.c_str(), 0, nullptr);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die(std::string("prepare ") + name, conn);
  PQclear(r);
}

// The statements a phase uses: the full batch and the shorter last one.
void prepare_phase(PGconn* conn, const Phase& ph) {
  if (ph.method == Method::Ingest) return prepare(conn, kIngestName, ph.opts.ingest_sql);
  const Batch& first = ph.batches.front();
  const Batch& last = ph.batches.back();
  prepare(conn, first.insert_name.c_str(), first.insert);
  if (last.rows != first.rows) prepare(conn, last.insert_name.c_str(), last.insert);
}

// Seconds to load every batch with the phase's method over opts.clients connections.
double run_phase(Phase& ph) {
  std::vector<PGconn*> conns;
  for (size_t c = 0; c < ph.opts.clients; c++) {
    conns.push_back(connect(ph.opts));
    if (ph.opts.prepared) prepare_phase(conns.back(), ph);
  }
  std::latch ready(static_cast<std::ptrdiff_t>(conns.size())), go(1);
  std::vector<std::thread> threads;
  for (PGconn* conn : conns)
    threads.emplace_back(client, conn, std::ref(ph), std::ref(ready), std::ref(go));
  ready.wait();  // connections are made outside the timed part
  auto t0 = std::chrono::steady_clock::now();
  go.count_down();
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (PGconn* conn : conns) PQfinish(conn);
  if (ph.failed) {
    std::fprintf(stderr, "cdp-ingest-bench: %s failed: %s", method_name(ph.method),
                 ph.error.c_str());
    std::exit(1);
  }
  return secs;
}

// --- Setup and cleaning -----------------------------------------------------

void create_plain_table(PGconn* conn) {
  exec(conn, "set client_min_messages = warning");  // no "does not exist, skipping"
  exec(conn, "drop table if exists bench_plain");
  exec(conn,
       "create table bench_plain (message_id text primary key, source_id int not null, "
       "type text not null, event text, name text, category text, user_id text, "
       "anonymous_id text, group_id text, previous_id text, "
       "\"timestamp\" timestamptz not null, original_timestamp timestamptz, "
       "sent_at timestamptz, received_at timestamptz not null, properties jsonb, "
       "traits jsonb, context jsonb, integrations jsonb)");
}

bool cdp_available(PGconn* conn) {
  return exec(conn,
              "select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
              "where n.nspname = 'cdp' and p.proname = 'ingest'")
      .has_value();
}

// The tables cdp.ingest writes to; truncated so each phase starts equal.
const char* kCdpTables =
    "select string_agg(format('%I.%I', schemaname, tablename), ', ') from pg_tables "
    "where schemaname = 'cdp' and tablename in ('events', 'message_ids', 'quarantine')";

const char* table_of(Method m) { return m == Method::Plain ? "bench_plain" : "cdp.events"; }

void clean(PGconn* conn, Method m) {
  if (m == Method::Plain) exec(conn, "truncate bench_plain");
  else if (auto tables = exec(conn, kCdpTables)) exec(conn, "truncate " + *tables);
  // Both start without pending dirty pages or full-page-write debt; needs
  // superuser or pg_checkpoint, and is skipped without.
  exec(conn, "checkpoint", false);
}

// The rows the phase stored; a count other than the rows sent stops the
// benchmark: a rate over rows that were not all stored would flatter.
size_t check_rows(PGconn* conn, Method m, size_t expected) {
  std::string n = exec(conn, std::string("select count(*) from ") + table_of(m)).value_or("0");
  size_t stored = std::stoull(n);
  if (stored != expected) {
    std::fprintf(stderr, "cdp-ingest-bench: %s: %s stored %zu rows, expected %zu\n", method_name(m),
                 table_of(m), stored, expected);
    std::exit(1);
  }
  return stored;
}

// Seconds for one phase; adds the rows it stored to `rows`.
double measure(PGconn* admin, const Options& o, const std::vector<Batch>& batches, Method m, size_t& rows) {
  clean(admin, m);
  Phase ph(o, batches, m);
  double secs = run_phase(ph);
  rows += check_rows(admin, m, o.count);
  return secs;
}

void print_rate(const char* label, size_t rows, double secs) {
  std::printf("%-19s %8.0f rows/s  (%.2f s)\n", label, static_cast<double>(rows) / secs, secs);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  PGconn* admin = connect(o);
  bool with_cdp = !o.plain_only && cdp_available(admin);
  create_plain_table(admin);
  size_t bytes = 0;
  std::vector<Batch> batches = make_batches(o, bytes);
  std::printf("ingest benchmark: %zu events (%zu bytes each on average), batches of %zu, "
              "%zu connection%s, %s statements\n",
              o.count, bytes / o.count, o.batch, o.clients, o.clients == 1 ? "" : "s",
              o.prepared ? "prepared" : "unprepared");
  double plain = 0, ingest = 0;
  size_t plain_rows = 0, ingest_rows = 0;  // counted in the tables after each phase
  for (size_t round = 0; round < o.rounds; round++) {
    // Alternate which goes first, so neither always gets the warmer cache.
    bool plain_first = round % 2 == 0 || !with_cdp;
    if (plain_first) plain += measure(admin, o, batches, Method::Plain, plain_rows);
    if (with_cdp) ingest += measure(admin, o, batches, Method::Ingest, ingest_rows);
    if (!plain_first) plain += measure(admin, o, batches, Method::Plain, plain_rows);
  }
  print_rate("plain INSERT", plain_rows, plain);
  if (!with_cdp) {
    std::printf("cdp.ingest          not measured (%s)\n",
                o.plain_only ? "--plain-only" : "no cdp.ingest in this database");
  } else {
    print_rate("cdp.ingest", ingest_rows, ingest);
    std::printf("ratio               %.2f  (target >= 0.70)\n",
                (static_cast<double>(ingest_rows) / ingest) / (static_cast<double>(plain_rows) / plain));
  }
  PQfinish(admin);
  return 0;
}
