// cdp.json_mentions(doc, exact, folded): does any string in a JSON document
// equal one of the identifiers being erased? Erasure asks this of every event,
// merge and delivery, so it must hold for any document the tables can hold.
// The walk uses Postgres' Jsonb iterator, which keeps its own stack on the heap:
// a document nested 14,000 levels deep (which SQL's `$.**` could not walk
// without "stack depth limit exceeded") is walked like a flat one.
//
// Plain C on purpose: no C++ object lives here, so an ereport (out of memory,
// cancel) can unwind through it safely.
extern "C" {
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(cdp_json_mentions);
}

namespace {

struct Needles {
  Datum* values = nullptr;
  int count = 0;
};

Needles needles(FunctionCallInfo fcinfo, int arg) {
  Needles n;
  if (PG_ARGISNULL(arg)) return n;
  bool* nulls;
  deconstruct_array(PG_GETARG_ARRAYTYPE_P(arg), TEXTOID, -1, false, TYPALIGN_INT, &n.values, &nulls, &n.count);
  int kept = 0;
  for (int i = 0; i < n.count; i++)
    if (!nulls[i]) n.values[kept++] = n.values[i];
  n.count = kept;
  return n;
}

bool among(const Needles& n, const char* s, int len) {
  for (int i = 0; i < n.count; i++) {
    text* t = DatumGetTextPP(n.values[i]);
    if (VARSIZE_ANY_EXHDR(t) == static_cast<size_t>(len) && memcmp(VARDATA_ANY(t), s, len) == 0) return true;
  }
  return false;
}

}  // namespace

// Strings are compared as btrim() leaves them (spaces cut at both ends): as
// identifiers are stored; `folded` values are compared lower-cased, as lower()
// does with the database's collation.
extern "C" Datum cdp_json_mentions(PG_FUNCTION_ARGS) {
  if (PG_ARGISNULL(0)) PG_RETURN_BOOL(false);
  Jsonb* doc = PG_GETARG_JSONB_P(0);
  Needles exact = needles(fcinfo, 1), folded = needles(fcinfo, 2);
  if (exact.count == 0 && folded.count == 0) PG_RETURN_BOOL(false);

  JsonbIterator* it = JsonbIteratorInit(&doc->root);
  JsonbValue v;
  JsonbIteratorToken token;
  while ((token = JsonbIteratorNext(&it, &v, false)) != WJB_DONE) {
    CHECK_FOR_INTERRUPTS();
    if ((token != WJB_VALUE && token != WJB_ELEM) || v.type != jbvString) continue;
    const char* s = v.val.string.val;
    int len = v.val.string.len;
    while (len > 0 && *s == ' ') s++, len--;
    while (len > 0 && s[len - 1] == ' ') len--;
    if (among(exact, s, len)) PG_RETURN_BOOL(true);
    if (folded.count > 0) {
      char* lower = str_tolower(s, len, DEFAULT_COLLATION_OID);
      bool hit = among(folded, lower, static_cast<int>(strlen(lower)));
      pfree(lower);
      if (hit) PG_RETURN_BOOL(true);
    }
  }
  PG_RETURN_BOOL(false);
}
