// One index of one table, open for reads from C: the Profile API's lookups
// and the audience's profile scans read this way instead of planning and
// running a statement. Postgres code only: call these inside pg::call.
#pragma once

extern "C" {
#include "postgres.h"

#include "access/genam.h"
#include "executor/tuptable.h"
#include "utils/rel.h"
#include "utils/snapshot.h"
}

namespace cdp::pg {

struct IndexScan {
  Relation heap = nullptr, index = nullptr;
  IndexScanDesc scan = nullptr;
  TupleTableSlot* slot = nullptr;
  AttrNumber column = InvalidAttrNumber;  // the column its reader reads most
};

// Opens cdp.<table> and its index <index> for `keys` scan keys, under
// `snapshot`; errors name what is missing.
void open_index_scan(IndexScan& s, Oid ns, Snapshot snapshot, const char* table, const char* index, int keys,
                     const char* column);
void close_index_scan(IndexScan& s);
// The column's number in `table`, or an error naming it.
AttrNumber column_of(Oid table, const char* name);

}  // namespace cdp::pg
