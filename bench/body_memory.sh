#!/usr/bin/env bash
# Peak memory of pgrest for big write bodies (not a timed test; prints figures):
#   bash bench/body_memory.sh          (env: MB=50 body size, PGREST_BIN=another build)
# 1. one anonymous POST of an MB-sized JSON array into api.bulk (written);
# 2. eight such POSTs at once into api.items, which the anonymous role may not write.
# Each scenario runs on a fresh pgrest process and prints its peak RSS (VmHWM), the RSS
# before the requests, the statuses and the time taken.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
MB="${MB:-50}"
PGPORT="${BENCH_PG_PORT:-55498}"
HTTP_PORT="${BENCH_HTTP_PORT:-3989}"
WORK="$(mktemp -d /tmp/pgrest-bodymem.XXXXXX)"
source "$HERE/lib.sh"
start_cluster "-c max_connections=50"
"${PSQL[@]}" -f "$HERE/schema.sql" >/dev/null
BIN="${PGREST_BIN:-$ROOT/target/release/pgrest}"

python3 - "$WORK/body.json" "$MB" <<'PY'
import sys
path, mb = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("[")
    i, size = 0, 1
    while size < mb * 1_000_000:
        row = ('' if i == 0 else ',') + '{"id":%d,"name":"item number %d of the bulk load","price":%d.25}' % (i, i, i % 1000)
        f.write(row)
        size += len(row)
        i += 1
    f.write("]")
PY
echo "body: $(stat -c %s "$WORK/body.json") bytes"

kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$PGREST_PID/status"; }

run_scenario() {
  local name="$1" path="$2" n="$3"
  "${PSQL[@]}" -c "TRUNCATE api.bulk" >/dev/null
  env PGRST_DB_URI="postgresql://bench_authenticator@127.0.0.1:$PGPORT/postgres" \
    PGRST_DB_SCHEMAS=api PGRST_DB_ANON_ROLE=bench_anon PGRST_SERVER_HOST=127.0.0.1 \
    PGRST_SERVER_PORT="$HTTP_PORT" "$BIN" >/dev/null 2>"$WORK/pgrest.log" &
  PGREST_PID=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$HTTP_PORT/" >/dev/null && break; sleep 0.05; done
  local before started statuses
  before="$(kb VmRSS)"
  started="$(date +%s.%N)"
  statuses="$(for _ in $(seq "$n"); do
      curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' \
        -H 'Prefer: return=minimal' --data-binary @"$WORK/body.json" \
        "http://127.0.0.1:$HTTP_PORT$path" &
    done; wait)"
  local took peak
  took="$(echo "$(date +%s.%N) - $started" | bc)"
  peak="$(kb VmHWM)"
  echo "$name: peak RSS $((peak / 1024)) MB (before: $((before / 1024)) MB; $(echo "scale=1; ($peak - $before) / 1024 / $MB" | bc)x the body above it), statuses $(echo $statuses | tr '\n' ' '), ${took%???????} s"
  kill "$PGREST_PID"; wait "$PGREST_PID" 2>/dev/null || true
  PGREST_PID=
}

run_scenario "one ${MB} MB insert" /bulk 1
run_scenario "eight ${MB} MB bodies refused by PostgreSQL (401)" /items 8
