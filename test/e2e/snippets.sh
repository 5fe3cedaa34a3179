#!/usr/bin/env bash
# End-to-end: every snippet of README.md and docs/*.md marked runnable (a fence
# info string "sh runnable", "sql runnable" or "js runnable", see
# docs/testing.md) is extracted and run, in document order, against a local
# cluster made by `./dev up --no-build` with the demo dataset loaded, as a new
# user would run them. A snippet fails on a non-zero exit (sql: the first
# error), or when the HTTP collector answered an error status or rejected an
# event while it ran; the failure names the file and line. Runs its own
# cluster (CDP_DEV_DIR); CLUSTER_DIR is not touched.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"

say "$E2E_NAME: the runnable snippets of README.md and docs/*.md"
section "a local cluster with the demo dataset (./dev up --no-build)"
ensure_segment_sdk
chmod 755 "$E2E_TMP"  # as root, the cluster belongs to postgres, who must reach it
export CDP_DEV_DIR="$E2E_TMP/dev"
E2E_CLEANUP+=("stop_cluster '$CDP_DEV_DIR'")
CDP_HTTP_PORT=$(free_port 18965) "$ROOT/dev" up --no-build >"$E2E_TMP/up.log" 2>&1 ||
  die "./dev up --no-build failed: $(tail -20 "$E2E_TMP/up.log")"
pass "./dev up made a cluster with the demo dataset"
PORT=$(cat "$CDP_DEV_DIR/port")
ADDR="127.0.0.1:$(cat "$CDP_DEV_DIR/http_port")"
BASE="http://$ADDR"
dev_sql() { cluster_psql "$CDP_DEV_DIR" cdp -tAc "$1"; }

# Every runnable snippet, in order: FILE, LINE (of its first line of code),
# LANG, in index.tsv; the code in NNN.LANG. The docs give the HTTP collector's
# default address, 127.0.0.1:8765; this cluster's is put in its place.
mkdir -p "$E2E_TMP/snippets"
(cd "$ROOT" && awk -v out="$E2E_TMP/snippets" -v addr="$ADDR" '
  FNR == 1 && inb { printf "%s:%d: a runnable snippet is not closed\n", prev, start > "/dev/stderr"; inb = 0 }
  { prev = FILENAME }
  # A fence of four backticks or more shows markdown as it is (testing.md does): skip it.
  !inb && /^````/ { verbatim = !verbatim; next }
  verbatim { next }
  !inb && /^```[a-z]+ +runnable *$/ {
    n++; lang = $0; sub(/^```/, "", lang); sub(/ .*/, "", lang)
    file = sprintf("%s/%03d.%s", out, n, lang); start = FNR + 1; inb = 1
    printf "%s\t%d\t%s\t%s\n", FILENAME, start, lang, file > (out "/index.tsv")
    printf "" > file
    next
  }
  inb && /^```/ { inb = 0; close(file); next }
  inb { line = $0; gsub(/127\.0\.0\.1:8765/, addr, line); print line > file }
  END { if (inb) printf "%s:%d: a runnable snippet is not closed\n", prev, start > "/dev/stderr" }
' README.md docs/*.md) || die "could not extract the snippets"
[ -s "$E2E_TMP/snippets/index.tsv" ] || die "no runnable snippet found"
check_ge "runnable snippets found" "$(wc -l <"$E2E_TMP/snippets/index.tsv")" 10

# The collector's answers with an error status plus the events it rejected.
http_errors() {
  curl -s -m 5 "$BASE/metrics" | awk '
    /^cdp_http_requests_total\{code="[45]/ { n += $2 }
    /^cdp_http_requests_total\{code="other"/ { n += $2 }
    /^cdp_http_events_total\{status="rejected"/ { n += $2 }
    END { print n + 0 }'
}

# A folder to run shell snippets in, as if it were the project folder (./dev
# works there; files they write stay out of the checkout), with psql's
# environment pointing at the cluster.
WORK="$E2E_TMP/work"
mkdir -p "$WORK"
printf '#!/usr/bin/env bash\nexec "%s/dev" "$@"\n' "$ROOT" >"$WORK/dev"
chmod +x "$WORK/dev"
ln -s "$ROOT/test/e2e/sdk/node_modules" "$WORK/node_modules"  # what `npm install @segment/analytics-node` gives
export PGHOST=$CDP_DEV_DIR PGPORT=$PORT PGUSER=$(cluster_user)

section "the snippets"
while IFS=$'\t' read -r -u 3 file line lang code; do
  where="$file:$line ($lang)"
  before=$(http_errors)
  out="$E2E_TMP/out"
  rc=0
  t0=$(now_ms)
  case "$lang" in
    sql) psql -X -q -v ON_ERROR_STOP=1 -d cdp -f "$code" >"$out" 2>&1 || rc=$? ;;
    sh) (cd "$WORK" && timeout 60 bash -e -o pipefail "$code") >"$out" 2>&1 </dev/null || rc=$? ;;
    js)
      cp "$code" "$WORK/snippet.mjs"
      (cd "$WORK" && WRITE_KEY=$(./dev key) timeout 10 node snippet.mjs) >"$out" 2>&1 || rc=$?
      ;;
    *) echo "unknown snippet language $lang" >"$out"; rc=2 ;;
  esac
  took=$(($(now_ms) - t0))
  after=$(http_errors)
  if [ "$rc" != 0 ]; then
    # psql names the line of the failing statement in the extracted file.
    at=$(sed -nE "s|^psql:$code:([0-9]+):.*|\\1|p" "$out" | head -1)
    [ -n "$at" ] && where="$file:$((line + at - 1)) ($lang)"
    why=$(grep -E 'ERROR|FATAL|rror:' "$out" | head -3)
    fail "$where: exit $rc$([ "$rc" = 124 ] && echo ' (timed out)'): $(sed "s|$code|snippet|g" <<<"${why:-$(tail -8 "$out")}")"
  elif [ "$after" != "$before" ]; then
    fail "$where: the collector answered $((after - before)) error status(es) or rejected events: $(tail -5 "$out")"
  else
    pass "$where (${took} ms)"
  fi
done 3<"$E2E_TMP/snippets/index.tsv"
finish
