#!/bin/sh
# docs_suites.sh [ROOT]: fails if docs/testing.md does not name a suite that
# ./dev test runs: a unit test file (test/unit/*_test.cpp), a pg_regress suite
# or isolation spec (REGRESS and ISOLATION in the Makefile), a pgTAP file
# (test/pgtap/*.sql) or an end-to-end script (test/e2e/*.sh). Also fails, with
# a message, when it cannot read what it compares.
set -u
root=${1:-$(dirname "$0")/../..}
doc=$root/docs/testing.md
fail() { echo "docs_suites: $*" >&2; exit 2; }

[ -r "$doc" ] || fail "cannot read $doc"
[ -r "$root/Makefile" ] || fail "cannot read $root/Makefile"
names=""
for f in "$root"/test/unit/*_test.cpp "$root"/test/pgtap/*.sql "$root"/test/e2e/*.sh; do
  [ -e "$f" ] || fail "no file matches $f"
  n=$(basename "$f")
  case $n in *.cpp) n=${n%.cpp} ;; *.sql) n=${n%.sql} ;; esac
  names="$names $n"
done
suites=$(sed -nE 's/^(REGRESS|ISOLATION)[[:space:]]*=[[:space:]]*//p' "$root/Makefile")
[ -n "$suites" ] || fail "no REGRESS or ISOLATION line in $root/Makefile"
missing=""
for n in $names $suites; do
  grep -qF "$n" "$doc" || missing="$missing $n"
done
if [ -n "$missing" ]; then
  echo "docs_suites: docs/testing.md does not name these suites that run:$missing" >&2
  exit 1
fi
echo "docs_suites: docs/testing.md names all $(echo $names $suites | wc -w) suites"
