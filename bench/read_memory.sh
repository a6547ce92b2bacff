#!/usr/bin/env bash
# Peak memory of pgrest for big reads (not a timed test; prints figures):
#   bash bench/read_memory.sh          (env: ROWS=1000000, CLIENTS=4, PGREST_BIN=another build)
# CLIENTS concurrent GETs of a ROWS-row table (about 75 bytes of JSON a row) on a fresh
# pgrest process: its peak RSS (VmHWM) and RSS before, each client's time to the first
# body byte and to the last, the bytes and whether each body parses as a JSON array of
# ROWS items.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
ROWS="${ROWS:-1000000}"
CLIENTS="${CLIENTS:-4}"
PGPORT="${BENCH_PG_PORT:-25497}"
HTTP_PORT="${BENCH_HTTP_PORT:-25496}"
WORK="$(mktemp -d /tmp/pgrest-readmem.XXXXXX)"
source "$HERE/lib.sh"
start_cluster "-c max_connections=50"
"${PSQL[@]}" <<SQL
CREATE ROLE bench_anon NOLOGIN;
CREATE ROLE bench_authenticator LOGIN NOINHERIT;
GRANT bench_anon TO bench_authenticator;
CREATE SCHEMA api;
GRANT USAGE ON SCHEMA api TO bench_anon;
CREATE TABLE api.big AS
  SELECT g AS id, 'item number ' || g || ' of the big table' AS name, g % 1000 + 0.25 AS price
  FROM generate_series(1, $ROWS) g;
ALTER TABLE api.big ADD PRIMARY KEY (id);
GRANT SELECT ON api.big TO bench_anon;
SQL
BIN="${PGREST_BIN:-$ROOT/target/release/pgrest}"
kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$PGREST_PID/status"; }

env PGRST_DB_URI="postgresql://bench_authenticator@127.0.0.1:$PGPORT/postgres" \
  PGRST_DB_SCHEMAS=api PGRST_DB_ANON_ROLE=bench_anon PGRST_SERVER_HOST=127.0.0.1 \
  PGRST_SERVER_PORT="$HTTP_PORT" "$BIN" >/dev/null 2>"$WORK/pgrest.log" &
PGREST_PID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$HTTP_PORT/big?id=eq.1" >/dev/null && break; sleep 0.05; done
before="$(kb VmRSS)"
started="$(date +%s.%N)"
for i in $(seq "$CLIENTS"); do
  curl -s -o "$WORK/body.$i" -w "client $i: status %{http_code}, first byte %{time_starttransfer} s, last %{time_total} s, %{size_download} bytes\n" \
    "http://127.0.0.1:$HTTP_PORT/big?order=id" &
done
wait $(jobs -p | grep -v "^$PGREST_PID$") 2>/dev/null || true
took="$(echo "$(date +%s.%N) - $started" | bc)"
peak="$(kb VmHWM)"
for i in $(seq "$CLIENTS"); do
  python3 -c "import json,sys; n=len(json.load(open(sys.argv[1]))); print('client', sys.argv[2], 'items:', n, 'ok' if n == int(sys.argv[3]) else 'WRONG')" \
    "$WORK/body.$i" "$i" "$ROWS"
done
echo "$CLIENTS concurrent reads of $ROWS rows: pgrest peak RSS $((peak / 1024)) MB (before: $((before / 1024)) MB), ${took%???????} s"
