#!/usr/bin/env bash
# Load benchmark: pgrest against PostgreSQL answering the same SQL through pgbench.
#   bash bench/run.sh            (env: CONC=10 connections, DURATION=10 seconds)
# Starts a throwaway PostgreSQL, loads bench/schema.sql, starts a release build of pgrest
# with a pool of CONC connections and, for each scenario, runs pgbench with the exact SQL
# pgrest sends for that request (-M prepared, CONC clients) and wrk against pgrest (CONC
# connections), and prints
#   scenario: pgrest N req/s, p50/p99 ms, PostgreSQL alone M tps, ratio N/M
#     CPU us/request: pgrest (own / PostgreSQL's / wrk's) | the statement alone in pgbench
#     (PostgreSQL's / pgbench's) | the same envelope pipelined under one Sync in pgbench, flat out
#     and paced to pgrest's req/s (pgbench -R): PostgreSQL's figure under pgrest compares
#     with the paced one
# and the peak RSS of pgrest under by-pk load from 64 connections (pool of CONC, and of 64).
# CPU per request (user + system time from /proc around each run, divided by the requests
# served) is the figure to quote; req/s ratios only from the same round.
# The SQL is not copied by hand: a probe instance of pgrest with log-query on answers each
# request once and the statement it logs becomes the pgbench script, its $n parameters bound
# to the scenario's values. The load tool, pgrest and PostgreSQL share this machine's cores.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
CONC="${CONC:-10}"
DURATION="${DURATION:-10}"
PGPORT="${BENCH_PG_PORT:-55499}"
HTTP_PORT="${BENCH_HTTP_PORT:-3999}"
PROBE_PORT=$((HTTP_PORT - 1))
WORK="$(mktemp -d /tmp/pgrest-bench.XXXXXX)"
SECRET="bench-secret-bench-secret-bench-secret-0123"

command -v wrk >/dev/null || { echo "bench: installing wrk"; apt-get install -y -qq wrk >/dev/null; }
source "$HERE/lib.sh"
start_cluster "-c max_connections=200 -c shared_buffers=256MB"
"${PSQL[@]}" -f "$HERE/schema.sql" >/dev/null
"${PSQL[@]}" -c "CREATE DATABASE demo" >/dev/null
psql_demo=("${PSQL[@]}")
psql_demo[-1]=demo
"${psql_demo[@]}" -f "$ROOT/src/demo.sql" >/dev/null

DB_URI="postgresql://bench_authenticator@127.0.0.1:$PGPORT/postgres"
pgrest_env=(PGRST_DB_URI="$DB_URI" PGRST_DB_SCHEMAS=api PGRST_DB_ANON_ROLE=bench_anon
  PGRST_DB_POOL="$CONC" PGRST_SERVER_HOST=127.0.0.1 PGRST_JWT_SECRET="$SECRET")
# wait_http PORT: until the pgrest just started ($PGREST_PID) answers there.
wait_http() {
  for _ in $(seq 200); do
    kill -0 "$PGREST_PID" 2>/dev/null || break
    curl -sf "http://127.0.0.1:$1/" >/dev/null && return
    sleep 0.05
  done
  echo "bench: pgrest did not start on port $1" >&2
  exit 1
}

TOKEN="$(bench_user_token "$SECRET")"

# --- The probe: what SQL does each request send? ---
env "${pgrest_env[@]}" PGRST_SERVER_PORT="$PROBE_PORT" PGRST_LOG_LEVEL=info PGRST_LOG_QUERY=true \
  "${PGREST_BIN:-$ROOT/target/release/pgrest}" 2>"$WORK/probe.log" >/dev/null &
PGREST_PID=$!
wait_http "$PROBE_PORT"

# probe NAME PATH(with {id}) SET_LINES PARAMS [curl args...]: writes $WORK/NAME.sql, the
# statement pgrest logged for the request (with id=1), its $n bound to PARAMS (pgbench
# variables, comma-separated, in parameter order).
probe() {
  local name="$1" path="$2" sets="$3" params="$4"
  shift 4
  local before
  before="$(wc -l <"$WORK/probe.log")"
  curl -sf -o /dev/null "http://127.0.0.1:$PROBE_PORT${path//\{id\}/1}" "$@" \
    || { echo "bench: probe of $name failed" >&2; exit 1; }
  sleep 0.1
  tail -n +"$((before + 1))" "$WORK/probe.log" | grep -av '^select set_config' | grep -a -m1 -E '^(WITH|SELECT|INSERT)' \
    | python3 -c '
import re, sys
sql, params = sys.stdin.read().strip(), [p for p in sys.argv[1].split(",") if p]
used = sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})
if used != list(range(1, len(params) + 1)):
    sys.exit(f"bench: {sys.argv[2]}: the statement has parameters {used}, the scenario gives {params}")
print(sys.argv[3].replace(";", "\n"))
print(re.sub(r"\$(\d+)", lambda m: ":" + params[int(m.group(1)) - 1], sql) + ";")
' "$params" "$name" "$sets" >"$WORK/$name.sql"
}

ITEM='\set id random(1, 100000)'
probe by-pk '/items?id=eq.{id}' "$ITEM" id
probe page-100 '/items?id=gt.{id}&order=id&limit=100' '\set id random(1, 99900);\set lim 100' id,lim
probe count-exact '/items?id=lt.{id}&limit=10' '\set id random(1, 1000);\set lim 10' id,lim,id -H 'Prefer: count=exact'
probe embed '/parents?select=id,name,children(id,name)&id=eq.{id}' '\set id random(1, 10000)' id
probe insert-return '/posts' '' post -X POST -H 'Content-Type: application/json' \
  -H 'Prefer: return=representation' -d '{"title":"bench","score":1}'
probe rpc-stable '/rpc/items_between' '' args -X POST -H 'Content-Type: application/json' -d '{"lo":500,"hi":504}'
kill "$PGREST_PID"; wait "$PGREST_PID" 2>/dev/null || true

# The by-pk read inside the envelope pgrest sends for a JWT (role bench_user), one
# statement per round trip: what the pipelining is measured against.
{
  echo "$ITEM"
  echo "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY;"
  echo "select set_config('search_path', '\"api\", \"public\"', true), set_config('role', 'bench_user', true), set_config('request.jwt.claims', '{\"role\":\"bench_user\",\"exp\":4102444800}', true), set_config('request.method', 'GET', true), set_config('request.path', '/items', true), set_config('request.headers', '{\"host\":\"127.0.0.1\"}', true), set_config('request.cookies', '{}', true);"
  tail -1 "$WORK/by-pk.sql"
  echo "COMMIT;"
} >"$WORK/envelope.sql"

# --- The load runs ---
env "${pgrest_env[@]}" PGRST_SERVER_PORT="$HTTP_PORT" PGRST_LOG_LEVEL=error \
  "${PGREST_BIN:-$ROOT/target/release/pgrest}" &
PGREST_PID=$!
wait_http "$HTTP_PORT"
sleep 0.5
idle_rss="$(awk '/VmRSS/{print $2}' /proc/$PGREST_PID/status)"

# pgbench_run CONC ARGS...: sets tps and cpu ("PostgreSQL's / pgbench's" us per transaction).
pgbench_run() {
  local conc="$1" pg0 pg1 own n
  shift
  pg0="$(pg_ticks)"
  own="$(timed_ticks "$WORK/pgbench.out" as_pg "$PGBIN/pgbench" -n -M prepared -c "$conc" -j 2 \
    -T "$DURATION" -h 127.0.0.1 -p "$PGPORT" -U postgres "$@" postgres)"
  pg1="$(pg_ticks)"
  tps="$(awk '/^tps/{printf "%d", $3}' "$WORK/pgbench.out")"
  n="$(awk '/actually processed/{print $NF}' "$WORK/pgbench.out" | cut -d/ -f1)"
  cpu="$(us_per $((pg1 - pg0)) "$n") / $(us_per "$own" "$n")"
}
pgbench_tps() {
  pgbench_run "$@"
  echo "$tps"
}

# pipelined NAME [READ WRITE]: $WORK/NAME.pipe.sql, the scenario's statement inside the
# anonymous envelope (BEGIN, set_config, statement, COMMIT) pipelined under one Sync.
pipelined() {
  local mode="${2:-READ ONLY}"
  {
    grep -a '^\\set' "$WORK/$1.sql" || true
    echo '\startpipeline'
    echo "BEGIN ISOLATION LEVEL READ COMMITTED $mode;"
    echo "select set_config('search_path', '\"api\", \"public\"', true), set_config('role', 'bench_anon', true), set_config('request.jwt.claims', '{\"role\":\"bench_anon\"}', true), set_config('request.method', 'GET', true), set_config('request.path', '/items', true), set_config('request.headers', '{\"host\":\"127.0.0.1\"}', true), set_config('request.cookies', '{}', true);"
    grep -av '^\\set' "$WORK/$1.sql" | tail -1
    echo "COMMIT;"
    echo '\endpipeline'
  } >"$WORK/$1.pipe.sql"
}

# wrk_lua FILE METHOD PATH LO HI BODY [HEADER...]: a wrk script requesting PATH with {id}
# replaced by a random integer in [LO, HI].
wrk_lua() {
  local file="$1" method="$2" path="$3" lo="$4" hi="$5" body="$6"
  shift 6
  {
    echo "wrk.method = \"$method\""
    [ -n "$body" ] && echo "wrk.body = '$body'"
    for h in "$@"; do echo "wrk.headers[\"${h%%: *}\"] = \"${h#*: }\""; done
    echo "request = function()"
    echo "  return wrk.format(nil, (string.gsub(\"$path\", \"{id}\", tostring(math.random($lo, $hi)))))"
    echo "end"
  } >"$file"
}

# run_wrk CONNECTIONS LUA: sets rps, p50, p99, non2xx, and wrk_cpu ("pgrest's own /
# PostgreSQL's / wrk's" CPU us per request).
run_wrk() {
  local out own0 own1 pg0 pg1 tool n
  own0="$(pid_ticks "$PGREST_PID")"
  pg0="$(pg_ticks)"
  tool="$(timed_ticks "$WORK/wrk.out" wrk -t2 -c "$1" -d "${DURATION}s" --latency -s "$2" "http://127.0.0.1:$HTTP_PORT")"
  own1="$(pid_ticks "$PGREST_PID")"
  pg1="$(pg_ticks)"
  out="$(cat "$WORK/wrk.out")"
  n="$(awk '/requests in/{print $1}' <<<"$out")"
  wrk_cpu="$(us_per $((own1 - own0)) "$n") / $(us_per $((pg1 - pg0)) "$n") / $(us_per "$tool" "$n")"
  rps="$(awk '/Requests\/sec/{printf "%d", $2}' <<<"$out")"
  p50="$(awk '$1=="50%"{print $2}' <<<"$out")"
  p99="$(awk '$1=="99%"{print $2}' <<<"$out")"
  non2xx="$(awk '/Non-2xx/{print $5}' <<<"$out")"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}'; }

# scenario NAME METHOD PATH LO HI BODY [HEADER...]
scenario() {
  local name="$1" alone_cpu mode="READ ONLY"
  local vars=(-D "post={\"title\":\"bench\",\"score\":1}" -D 'args={"lo":500,"hi":504}')
  wrk_lua "$WORK/$name.lua" "$2" "$3" "$4" "$5" "$6" "${@:7}"
  [ "$2" = POST ] && mode="READ WRITE"
  pipelined "$name" "$mode"
  pgbench_run "$CONC" -f "$WORK/$name.pipe.sql" "${vars[@]}"
  local pipe_tps="$tps" pipe_cpu="$cpu"
  pgbench_run "$CONC" -f "$WORK/$name.sql" "${vars[@]}"
  alone_cpu="$cpu"
  local alone_tps="$tps"
  run_wrk "$CONC" "$WORK/$name.lua"
  # The same one-Sync envelope throttled to pgrest's rate: a backend's CPU per transaction
  # grows as it idles between requests (wake-ups, cold caches), so PostgreSQL's figure
  # under pgrest compares with this one, not with the unthrottled run. At 10 connections
  # on 2 cores, by-pk: 87 us unthrottled at 19,600 tps, 138-146 us at 5,500 tps, where
  # pgrest's PostgreSQL figure was 135-138 us at 6,800 req/s.
  pgbench_run "$CONC" -R "$rps" -f "$WORK/$name.pipe.sql" "${vars[@]}"
  local paced_cpu="$cpu"
  echo "$name: pgrest $rps req/s, p50/p99 $p50/$p99, PostgreSQL alone $alone_tps tps, ratio $(ratio "$rps" "$alone_tps")${non2xx:+ (NON-2XX: $non2xx)}"
  echo "  CPU us/request: pgrest $wrk_cpu (own / PostgreSQL / wrk) | statement alone $alone_cpu (PostgreSQL / pgbench) | one-Sync envelope $pipe_cpu, $pipe_tps tps; at pgrest's rate $paced_cpu"
}

echo "pgrest idle RSS: $idle_rss kB; $CONC connections, ${DURATION}s per run, $(nproc) cores shared"
scenario by-pk GET '/items?id=eq.{id}' 1 100000 ''
scenario page-100 GET '/items?id=gt.{id}&order=id&limit=100' 1 99900 ''
scenario count-exact GET '/items?id=lt.{id}&limit=10' 1 1000 '' 'Prefer: count=exact'
scenario embed GET '/parents?select=id,name,children(id,name)&id=eq.{id}' 1 10000 ''
scenario insert-return POST '/posts' 1 1 '{"title":"bench","score":1}' \
  'Content-Type: application/json' 'Prefer: return=representation'
scenario rpc-stable POST '/rpc/items_between' 1 1 '{"lo":500,"hi":504}' 'Content-Type: application/json'

# The JWT read: HS256 verification (cached) and the switch to bench_user, against the same
# statements sent one round trip each.
wrk_lua "$WORK/jwt.lua" GET '/items?id=eq.{id}' 1 100000 '' "Authorization: Bearer $TOKEN"
run_wrk "$CONC" "$WORK/jwt.lua"
tps="$(pgbench_tps "$CONC" -f "$WORK/envelope.sql")"
echo "jwt-by-pk: pgrest $rps req/s, p50/p99 $p50/$p99, the envelope one statement per round trip $tps tps, ratio $(ratio "$rps" "$tps")${non2xx:+ (NON-2XX: $non2xx)}"
echo "  CPU us/request: pgrest $wrk_cpu (own / PostgreSQL / wrk)"

# Latency at 32 connections (pool still CONC).
run_wrk 32 "$WORK/by-pk.lua"
echo "by-pk at 32 connections: pgrest $rps req/s, p50/p99 $p50/$p99${non2xx:+ (NON-2XX: $non2xx)}"
echo "pgrest peak RSS under load: $(awk '/VmHWM/{print $2}' /proc/$PGREST_PID/status) kB"

# One POST of 10,000 rows (a single INSERT ... SELECT FROM json_to_recordset).
python3 -c 'import json; print(json.dumps([{"id": i, "name": "row %d" % i, "price": i / 100} for i in range(1, 10001)]))' >"$WORK/bulk.json"
bulk_ms="$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -X POST "http://127.0.0.1:$HTTP_PORT/bulk" \
  -H 'Content-Type: application/json' --data-binary @"$WORK/bulk.json" | awk '{printf "%s %.0f", $1, $2 * 1000}')"
echo "bulk-insert-10000: status ${bulk_ms% *}, ${bulk_ms#* } ms"
kill "$PGREST_PID"; wait "$PGREST_PID" 2>/dev/null || true

# peak_rss_at_64 POOL: VmHWM of a fresh pgrest with a pool of POOL under DURATION seconds of
# by-pk load from 64 connections (beyond POOL, requests wait for a database connection).
peak_rss_at_64() {
  env "${pgrest_env[@]}" PGRST_DB_POOL="$1" PGRST_SERVER_PORT="$HTTP_PORT" PGRST_LOG_LEVEL=error \
    "${PGREST_BIN:-$ROOT/target/release/pgrest}" >/dev/null &
  PGREST_PID=$!
  wait_http "$HTTP_PORT"
  run_wrk 64 "$WORK/by-pk.lua"
  awk '/VmHWM/{print $2}' "/proc/$PGREST_PID/status"
  kill "$PGREST_PID"; wait "$PGREST_PID" 2>/dev/null || true
}
echo "pgrest peak RSS at 64 connections: $(peak_rss_at_64 "$CONC") kB (pool of $CONC), $(peak_rss_at_64 64) kB (pool of 64)"

# Startup to ready on the demo schema: from exec to the first answered request.
python3 - "${PGREST_BIN:-$ROOT/target/release/pgrest}" "postgresql://postgres@127.0.0.1:$PGPORT/demo" "$HTTP_PORT" <<'PY'
import http.client, os, subprocess, sys, time
binary, uri, port = sys.argv[1:]
env = dict(os.environ, PGRST_DB_URI=uri, PGRST_DB_SCHEMAS="api", PGRST_DB_ANON_ROLE="web_anon",
           PGRST_SERVER_HOST="127.0.0.1", PGRST_SERVER_PORT=port, PGRST_LOG_LEVEL="error")
times = []
for _ in range(5):
    start = time.monotonic()
    p = subprocess.Popen([binary], env=env, stderr=subprocess.DEVNULL)
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=1)
            c.request("GET", "/books?limit=1")
            if c.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.001)
    times.append((time.monotonic() - start) * 1000)
    p.terminate()
    p.wait()
print("startup to first answered request (demo schema): best %.0f ms, median %.0f ms of 5"
      % (min(times), sorted(times)[2]))
PY
