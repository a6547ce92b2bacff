#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind: a deterministic yardstick for
# pgrest's own CPU where CPU time per request moves ±20 % between rounds on a shared VM.
#   bash bench/instructions.sh        (env: SECONDS_PER=6, PGREST_BIN, LEAN_BIN, PROFILE_DIR,
#                                      SCENARIOS="by-pk embed" for a subset)
# Starts a throwaway PostgreSQL with bench/schema.sql, then for each scenario runs pgrest
# under `valgrind --tool=callgrind` with instrumentation off, warms it up with 3 s of wrk,
# switches instrumentation on (callgrind_control -i on) for SECONDS_PER seconds of
# `wrk -c2` and divides the instructions counted by the requests served. With LEAN_BIN
# (../shared/bench-kit's lean server) it measures that too, on the same SQL pgrest sends.
# callgrind counts `rep stosb` / `rep movsb` one byte at a time, so memset and memcpy
# weigh more here than in time; read the figure next to CPU per request, not instead of it.
# PROFILE_DIR=dir keeps each run's callgrind output as dir/NAME.SCENARIO (read it with
# `callgrind_annotate --inclusive=yes`).
# CACHE_SIM=1 also simulates the L1 caches and prints, per request, instruction-cache
# misses, data-cache read and write misses, and an estimate of cycles (instructions + 10
# per L1 miss, callgrind's own weighting): pgrest runs fewer instructions than the lean
# server but misses the caches more, and this is where that shows.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
PGPORT="${BENCH_PG_PORT:-55497}"
HTTP_PORT="${BENCH_HTTP_PORT:-3997}"
SECONDS_PER="${SECONDS_PER:-6}"
WORK="$(mktemp -d /tmp/pgrest-instr.XXXXXX)"

command -v wrk >/dev/null || { echo "bench: installing wrk"; apt-get install -y -qq wrk >/dev/null; }
command -v valgrind >/dev/null || { echo "bench: installing valgrind"; apt-get install -y -qq valgrind >/dev/null; }
source "$HERE/lib.sh"
start_cluster "-c max_connections=200"
"${PSQL[@]}" -f "$HERE/schema.sql" >/dev/null
DB_URI="postgresql://bench_authenticator@127.0.0.1:$PGPORT/postgres"

# wrk_lua FILE PATH(with {id}) LO HI [METHOD BODY TOKEN]: requests PATH with {id} random in
# [LO, HI], with TOKEN as a bearer token when given.
wrk_lua() {
  {
    echo "wrk.method = \"${5:-GET}\""
    if [ -n "${6:-}" ]; then
      echo "wrk.body = '$6'"
      echo 'wrk.headers["Content-Type"] = "application/json"'
      echo 'wrk.headers["Prefer"] = "return=representation"'
    fi
    if [ -n "${7:-}" ]; then
      echo "wrk.headers[\"Authorization\"] = \"Bearer $7\""
    fi
    echo "request = function()"
    echo "  return wrk.format(nil, (string.gsub(\"$2\", \"{id}\", tostring(math.random($3, $4)))))"
    echo "end"
  } >"$1"
}
wrk_lua "$WORK/by-pk.lua" '/items?id=eq.{id}' 1 100000
wrk_lua "$WORK/page-100.lua" '/items?id=gt.{id}&order=id&limit=100' 1 99900
wrk_lua "$WORK/embed.lua" '/parents?select=id,name,children(id,name)&id=eq.{id}' 1 10000
wrk_lua "$WORK/insert.lua" '/posts' 1 1 POST '{"title":"bench","score":1}'
# Calls (pgrest only: the lean server has no route for them): a stable SETOF function with
# a JSON body, and the same with its arguments in the query string.
wrk_lua "$WORK/rpc-post.lua" '/rpc/items_between' 1 1 POST '{"lo":500,"hi":504}'
wrk_lua "$WORK/rpc-get.lua" '/rpc/items_between?lo={id}&hi={id}' 1 100000
# by-pk with an HS256 token for bench_user, as most clients send one (pgrest only).
SECRET="bench-secret-bench-secret-bench-secret-0123"
TOKEN="$(bench_user_token "$SECRET")"
wrk_lua "$WORK/jwt-by-pk.lua" '/items?id=eq.{id}' 1 100000 GET '' "$TOKEN"
SCENARIOS="${SCENARIOS:-by-pk page-100 embed insert rpc-post rpc-get jwt-by-pk}"

# count NAME CMD...: starts CMD (a server on HTTP_PORT) under callgrind and prints NAME's
# instructions per request for each scenario.
count() {
  local name="$1" out="$WORK/cg.$1" scenario n total
  shift
  # The environment goes on valgrind itself: under `valgrind env ...`, callgrind would
  # count env and lose the server it execs.
  env "${COUNT_ENV[@]}" valgrind --tool=callgrind --instr-atstart=no ${CACHE_SIM:+--cache-sim=yes} \
    --callgrind-out-file="$out.%p" "$@" >"$WORK/$name.log" 2>&1 &
  PGREST_PID=$!
  for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/items?id=eq.1" && break; sleep 0.2; done
  for scenario in $SCENARIOS; do
    wrk -t1 -c2 -d3s -s "$WORK/$scenario.lua" "http://127.0.0.1:$HTTP_PORT" >/dev/null
    rm -f "$out".*.[0-9]*
    callgrind_control -z "$PGREST_PID" >/dev/null 2>&1
    callgrind_control -i on "$PGREST_PID" >/dev/null 2>&1
    wrk -t1 -c2 -d"${SECONDS_PER}s" -s "$WORK/$scenario.lua" "http://127.0.0.1:$HTTP_PORT" >"$WORK/wrk.out"
    callgrind_control -i off "$PGREST_PID" >/dev/null 2>&1
    callgrind_control -d "$PGREST_PID" >/dev/null 2>&1
    sleep 0.5
    n="$(awk '/requests in/{print $1}' "$WORK/wrk.out")"
    # Ir, then with the cache simulation Dr Dw I1mr D1mr D1mw (summed over the threads).
    read -r total _ _ i1 d1r d1w < <(cat "$out".*.[0-9]* 2>/dev/null |
      awk '/^totals:/{for (i = 2; i <= 7; i++) t[i] += $i} END{for (i = 2; i <= 7; i++) printf "%d ", t[i] + 0; print ""}')
    if [ -n "${PROFILE_DIR:-}" ]; then
      mkdir -p "$PROFILE_DIR"
      cat "$out".*.[0-9]* >"$PROFILE_DIR/$name.$scenario" 2>/dev/null || true
    fi
    grep -q 'Non-2xx' "$WORK/wrk.out" && echo "  ($name $scenario: some answers were not 2xx)"
    printf '%-8s %-9s %8d instructions/request (%d requests)\n' "$name" "$scenario" \
      "$((total / (n > 0 ? n : 1)))" "$n"
    if [ -n "${CACHE_SIM:-}" ]; then
      printf '%-8s %-9s %8d I1 misses, %d D1 read and %d D1 write misses; est. %d cycles/request\n' \
        "$name" "$scenario" "$((i1 / (n > 0 ? n : 1)))" "$((d1r / (n > 0 ? n : 1)))" \
        "$((d1w / (n > 0 ? n : 1)))" "$(((total + 10 * (i1 + d1r + d1w)) / (n > 0 ? n : 1)))"
    fi
  done
  kill "$PGREST_PID"
  wait "$PGREST_PID" 2>/dev/null || true
}

COUNT_ENV=(PGRST_DB_URI="$DB_URI" PGRST_DB_SCHEMAS=api PGRST_DB_ANON_ROLE=bench_anon
  PGRST_DB_POOL=2 PGRST_SERVER_HOST=127.0.0.1 PGRST_SERVER_PORT="$HTTP_PORT" PGRST_LOG_LEVEL=error
  PGRST_JWT_SECRET="$SECRET")
count pgrest "${PGREST_BIN:-$ROOT/target/release/pgrest}"

if [ -n "${LEAN_BIN:-}" ]; then
  # The lean server's routes: pgrest's own statements, logged by a probe with log-query.
  env PGRST_DB_URI="$DB_URI" PGRST_DB_SCHEMAS=api PGRST_DB_ANON_ROLE=bench_anon \
    PGRST_SERVER_HOST=127.0.0.1 PGRST_SERVER_PORT="$HTTP_PORT" PGRST_LOG_LEVEL=info PGRST_LOG_QUERY=true \
    "${PGREST_BIN:-$ROOT/target/release/pgrest}" >"$WORK/probe.log" 2>&1 &
  PGREST_PID=$!
  for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/" && break; sleep 0.05; done
  statement() {
    local before
    before="$(wc -l <"$WORK/probe.log")"
    curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT$1" "${@:2}"
    sleep 0.1
    tail -n +"$((before + 1))" "$WORK/probe.log" | grep -av '^select set_config' | grep -a -m1 -E '^(WITH|SELECT|INSERT)'
  }
  {
    printf 'GET\t/items\tid=eq.\tnums\t%s\n' "$(statement '/items?id=eq.1')"
    printf 'GET\t/items\tid=gt.\tnums\t%s\n' "$(statement '/items?id=gt.1&order=id&limit=100')"
    printf 'GET\t/parents\t-\tnums\t%s\n' "$(statement '/parents?select=id,name,children(id,name)&id=eq.1')"
    printf 'POST\t/posts\t-\tbody\t%s\n' "$(statement '/posts' -X POST -H 'Content-Type: application/json' \
      -H 'Prefer: return=representation' -d '{"title":"bench","score":1}')"
  } >"$WORK/routes.tsv"
  kill "$PGREST_PID"
  wait "$PGREST_PID" 2>/dev/null || true
  COUNT_ENV=(LEAN=1)
  SCENARIOS="by-pk page-100 embed insert"
  count lean "$LEAN_BIN" "$HTTP_PORT" "postgresql://postgres@127.0.0.1:$PGPORT/postgres" 2 "$WORK/routes.tsv"
fi
