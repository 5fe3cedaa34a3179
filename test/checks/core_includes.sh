#!/bin/sh
# core_includes.sh [CORE_DIR]: fails if a file of the Postgres-free core
# (src/core) includes a Postgres header or one of the project's own Postgres
# wrappers (src/pg, "pg/..."). Also fails, with a message, when it cannot do
# its job: no such folder, no source in it, or grep failing.
#
# The Postgres names are every top-level entry of a PostgreSQL 15 server
# include folder (postgres.h, fmgr.h, miscadmin.h, nodes/, utils/, port/, ...),
# the client's (libpq-fe.h, ...) and, when pg_config is there, whatever its
# --includedir-server holds besides, so a newer Postgres is covered too.
set -u
core=${1:-$(dirname "$0")/../../src/core}
fail() { echo "core_includes: $*" >&2; exit 2; }

[ -d "$core" ] || fail "no folder $core"
files=$(find "$core" -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cc' -o -name '*.c' \) | sort)
[ -n "$files" ] || fail "no source file in $core"

dirs="access archive backup bootstrap catalog commands common datatype executor extension fe_utils
foreign jit lib libpq mb nodes optimizer parser partitioning port portability postmaster regex
replication rewrite snowball statistics storage tcop tsearch utils"
headers="c fmgr funcapi getaddrinfo getopt_long miscadmin pg_config pg_config_ext pg_config_manual
pg_config_os pg_getopt pg_trace pgstat pgtar pgtime plperl plperl_helpers plperl_system plpgsql
plpy_[a-z_]+ plpython plpython_system port postgres postgres_ext postgres_fe ppport rusagestub
windowapi libpq-fe libpq-events ecpg[a-z_]* pgtypes[a-z_]* sqlca sql3types sqlda[a-z_-]*"
if server=$(pg_config --includedir-server 2>/dev/null) && [ -d "$server" ]; then
  for e in "$server"/*; do
    n=$(basename "$e")
    if [ -d "$e" ]; then dirs="$dirs $n"; else headers="$headers ${n%.h}"; fi
  done
fi
alt() { echo "$*" | tr -s ' \n' '\n' | grep -v '^$' | sed 's/\./\\./g' | sort -u | paste -sd '|' -; }
d=$(alt "$dirs") h=$(alt "$headers")
[ -n "$d" ] && [ -n "$h" ] || fail "could not build the pattern"
# #include <x.h> / "x.h", #include <dir/...>, #include "pg/..." (also ../pg/...),
# with any spaces around # and include.
pattern="^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"](\\.\\./)*(($h)\\.h[>\"]|($d)/|pg/)"

# shellcheck disable=SC2086 # the file names have no spaces (checked below)
case "$files" in *' '*) fail "a file name in $core has a space" ;; esac
grep -nHE "$pattern" $files
rc=$?
case $rc in
  0) echo "core_includes: the lines above include Postgres headers; src/core must not (put such code in src/pg)" >&2; exit 1 ;;
  1) echo "core_includes: $(echo "$files" | wc -l) files, no Postgres include"; exit 0 ;;
  *) fail "grep failed (exit $rc)" ;;
esac
