// Profile API lookups, answered by an HTTP worker's main thread: the tokens
// are checked against a snapshot of cdp.access_tokens (re-read when a second
// old, so a revoked token fails within a second, and when an unknown token
// arrives after the last read, so a new one works at once), then every lookup
// of the loop goes to Postgres in one statement and comes back as jsonb text.
#include "pg/profiles/profile_api.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

#include "core/http_metrics.hpp"
#include "core/http_protocol.hpp"
#include "core/http_server.hpp"
#include "core/profile_api.hpp"
#include "pg/profiles/profile_read.hpp"
#include "pg/runtime/spi.hpp"
#include "pg/runtime/worker.hpp"

namespace cdp::pg::profiles {
namespace {

using cdp::profiles::Grant;

struct Token {
  int64_t id = 0;
  std::string name;
  Grant grant;
};

struct Tokens {
  std::unordered_map<std::string, Token> by_digest;  // raw SHA-256 -> token
  std::chrono::steady_clock::time_point loaded_at{};
};

std::unique_ptr<Tokens> tokens;
constexpr auto kTokensMaxAge = std::chrono::seconds(1);

// Inside a transaction.
void load_tokens() {
  auto next = std::make_unique<Tokens>();
  next->loaded_at = std::chrono::steady_clock::now();
  sql::Rows rows = sql::select(
      "select token_id, name, token_hash, array_to_string(scopes, ',') from cdp.access_tokens"
      " where revoked_at is null");
  for (size_t r = 0; r < rows.size(); r++)
    next->by_digest.emplace(rows.str(r, 2),
                            Token{rows.int8(r, 0), rows.str(r, 1), cdp::profiles::grant_of(split_list(rows.text(r, 3)))});
  tokens = std::move(next);
}

// The token of a request, or null. Inside a transaction.
const Token* token_of(const PendingRequest* r, bool& reloaded) {
  auto find = [&]() -> const Token* {
    auto it = tokens->by_digest.find(r->token_digest);
    return it == tokens->by_digest.end() ? nullptr : &it->second;
  };
  const Token* t = find();
  if (!t && !reloaded && tokens->loaded_at < r->arrived) {  // made after the last read?
    load_tokens();
    reloaded = true;
    t = find();
  }
  return t;
}

void answer(PendingRequest* r, int status, std::string body) {
  r->http_status = status;
  r->body = std::move(body);
}

struct Batch {  // the arrays of cdp.profile_lookups, one row per lookup asked
  std::vector<std::string> types, values, fields;
  std::vector<int64_t> ids;
  std::vector<int> parts, pii;
  std::vector<PendingRequest*> requests;  // every lookup its token allows
  std::vector<PendingRequest*> in_sql;    // those the statement answers (row k: in_sql[k])
  std::vector<PendingRequest*> direct;    // those read directly (profile_read.cpp)
  std::vector<const cdp::profiles::Lookup*> direct_lookups;
  std::vector<bool> direct_omit_pii;
  // Counted once the group has its answers: lookups by token, unknown tokens.
  std::vector<std::pair<PendingRequest*, Token>> by_token;
  uint64_t unauthorized = 0;

  void add(PendingRequest* r, const Token* t) {
    const cdp::profiles::Lookup& l = r->lookup;
    requests.push_back(r);
    if (reads_directly(l, t->grant.pii)) {
      direct.push_back(r);
      direct_lookups.push_back(&l);
      direct_omit_pii.push_back(t->grant.pii == cdp::profiles::Pii::Omit);
      return;
    }
    types.push_back(l.type);
    values.push_back(l.value);
    ids.push_back(l.profile_id);
    parts.push_back(static_cast<int>(l.parts));
    std::string joined;
    for (auto& f : l.fields) joined += (joined.empty() ? "" : ",") + f;
    fields.push_back(std::move(joined));
    pii.push_back(static_cast<int>(t->grant.pii));
    in_sql.push_back(r);
  }
};

// The rarer parts (cdp.profile_extras) of the lookups that asked for them,
// in a second statement: the first one stays small for the common lookup.
struct Extras {
  std::vector<int64_t> ids, cursors;
  std::vector<int> parts, limits, pii;
  std::vector<PendingRequest*> requests;

  void add(PendingRequest* r, int64_t profile_id, int pii_mode) {
    ids.push_back(profile_id);
    parts.push_back(static_cast<int>(r->lookup.parts));
    limits.push_back(r->lookup.limit);
    cursors.push_back(r->lookup.cursor);
    pii.push_back(pii_mode);
    requests.push_back(r);
  }
  // Appends each object's members to its answer.
  void run() {
    sql::Rows rows = sql::select(
        "select ord, extra::text from cdp.profile_extras($1::int8[], $2::int4[], $3::int4[], $4::int8[], $5::int4[])",
        {sql::int8s(ids), sql::int4s(parts), sql::int4s(limits), sql::int8s(cursors), sql::int4s(pii)});
    for (size_t i = 0; i < rows.size(); i++) {
      size_t k = static_cast<size_t>(rows.int4(i, 0)) - 1;
      if (k < requests.size()) cdp::profiles::add_members(requests[k]->body, rows.text(i, 1));
    }
  }
};

// Checks every token and scope, then runs the lookups that may go on. Inside a transaction.
void run(const std::vector<PendingRequest*>& lookups, Batch& batch) {
  bool reloaded = !tokens || std::chrono::steady_clock::now() - tokens->loaded_at > kTokensMaxAge;
  if (reloaded) load_tokens();
  for (PendingRequest* r : lookups) {
    const Token* t = token_of(r, reloaded);
    if (!t) {
      batch.unauthorized++;
      answer(r, 401, error_response("is unknown or revoked", "Authorization"));
      continue;
    }
    batch.by_token.emplace_back(r, *t);
    std::string lacking = cdp::profiles::missing_scope(r->lookup.parts, t->grant);
    if (!lacking.empty()) {
      answer(r, 403, error_response("this token lacks the scope " + lacking, "Authorization"));
      continue;
    }
    batch.add(r, t);
  }
  std::vector<DirectAnswer> read = read_directly(batch.direct_lookups, batch.direct_omit_pii);
  for (size_t k = 0; k < read.size(); k++) {
    DirectAnswer& a = read[k];
    answer(batch.direct[k], a.status,
           a.status == 200 ? cdp::profiles::profile_document(a.profile_id, {a.traits, a.computed, a.segments})
                           : error_response(a.error, "identifier"));
  }
  if (batch.in_sql.empty()) return;
  sql::Rows rows = sql::select(
      "select ord, status, error, profile_id, traits::text, computed::text, segments::text"
      " from cdp.profile_lookups($1::text[], $2::text[], $3::int8[], $4::int4[], $5::text[], $6::int4[])",
      {sql::texts(batch.types), sql::texts(batch.values), sql::int8s(batch.ids), sql::int4s(batch.parts),
       sql::texts(batch.fields), sql::int4s(batch.pii)});
  Extras extras;
  for (size_t i = 0; i < rows.size(); i++) {
    size_t k = static_cast<size_t>(rows.int4(i, 0)) - 1;
    if (k >= batch.in_sql.size()) continue;
    PendingRequest* r = batch.in_sql[k];
    int status = rows.int4(i, 1);
    if (status != 200) {
      answer(r, status, error_response(rows.text(i, 2), "identifier"));
      continue;
    }
    answer(r, 200, cdp::profiles::profile_document(rows.int8(i, 3), {rows.text(i, 4), rows.text(i, 5), rows.text(i, 6)}));
    if (r->lookup.parts & ~cdp::profiles::kDefaultParts) extras.add(r, rows.int8(i, 3), batch.pii[k]);
  }
  if (!extras.requests.empty()) extras.run();
}

// One transaction for a group of lookups; false (answers of the database
// lookups unset) when it failed.
bool try_group(const std::vector<PendingRequest*>& lookups, Batch& batch, std::string& failure) {
  try {
    worker::begin("cdp http: profile lookups");
    run(lookups, batch);
    worker::commit();
    return true;
  } catch (const std::exception& e) {
    failure = e.what();
    worker::abort("cdp http: profile lookups", failure);
    return false;
  }
}

void count(const Batch& batch, HttpMetrics* metrics) {
  for (PendingRequest* r : batch.requests)
    if (r->http_status == 0) answer(r, 500, error_response("the lookup gave no answer"));
  for (auto& [r, t] : batch.by_token) metrics->count_lookup(t.id, t.name, r->http_status);
  metrics->lookups_unauthorized += batch.unauthorized;
}

}  // namespace

void answer_lookups(const std::vector<PendingRequest*>& lookups, HttpMetrics* metrics) {
  if (lookups.empty()) return;
  Batch batch;
  std::string failure;
  if (try_group(lookups, batch, failure)) return count(batch, metrics);
  // One lookup the statement cannot answer must not fail the others: each alone.
  for (PendingRequest* r : lookups) {
    r->http_status = 0;
    Batch one;
    if (lookups.size() > 1 && try_group({r}, one, failure)) {
      count(one, metrics);
    } else {
      answer(r, 503, error_response("could not read profiles, retry later"));
    }
  }
}

}  // namespace cdp::pg::profiles
