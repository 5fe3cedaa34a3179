#include "pg/runtime/index_scan.hpp"

extern "C" {
#include "access/table.h"
#include "access/tableam.h"
#include "executor/executor.h"
#include "utils/lsyscache.h"
}

namespace cdp::pg {

AttrNumber column_of(Oid table, const char* name) {
  AttrNumber a = get_attnum(table, name);
  if (a == InvalidAttrNumber) elog(ERROR, "cdp: cdp.%s has no column %s", get_rel_name(table), name);
  return a;
}

void open_index_scan(IndexScan& s, Oid ns, Snapshot snapshot, const char* table, const char* index, int keys,
                     const char* column) {
  Oid heap_id = get_relname_relid(table, ns), index_id = get_relname_relid(index, ns);
  if (!OidIsValid(heap_id) || !OidIsValid(index_id)) elog(ERROR, "cdp: cdp.%s or its index %s is missing", table, index);
  s.heap = table_open(heap_id, AccessShareLock);
  s.index = index_open(index_id, AccessShareLock);
  s.scan = index_beginscan(s.heap, s.index, snapshot, keys, 0);
  s.slot = table_slot_create(s.heap, nullptr);
  s.column = column_of(heap_id, column);
}

void close_index_scan(IndexScan& s) {
  ExecDropSingleTupleTableSlot(s.slot);
  index_endscan(s.scan);
  index_close(s.index, NoLock);
  table_close(s.heap, NoLock);
}

}  // namespace cdp::pg
