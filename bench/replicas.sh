#!/usr/bin/env bash
# Read replicas: by-pk reads with 0, 1 and 2 streaming standbys, and inserts with and
# without db-replica-uris (the commit LSN's cost).
#   bash bench/replicas.sh       (env: CONC=10 connections, DURATION=8 seconds,
#                                 STANDBYS="0 1 2" the configurations to run,
#                                 PGREST_BIN=path another build, e.g. main's for 0)
# Starts a primary with bench/schema.sql and two standbys of it (pg_basebackup -R), all on
# this machine, and a release build of pgrest per configuration; wrk against pgrest.
# Prints, per run, req/s and CPU us per request: pgrest's own / the primary's / the
# standbys' / wrk's (user + system time from /proc around the run, divided by requests).
# On one machine standbys do not add cores: what the figures show is where the work goes
# (the primary's share moves to the standbys) and what routing costs pgrest, not the
# throughput of separate servers.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
CONC="${CONC:-10}"
DURATION="${DURATION:-8}"
PGPORT="${BENCH_PG_PORT:-55489}"
HTTP_PORT="${BENCH_HTTP_PORT:-3989}"
WORK="$(mktemp -d /tmp/pgrest-bench-replicas.XXXXXX)"

command -v wrk >/dev/null || { echo "bench: installing wrk"; apt-get install -y -qq wrk >/dev/null; }
source "$HERE/lib.sh"
# A standby needs max_connections at least the primary's.
PG_OPTS="-c max_connections=200 -c shared_buffers=256MB"
start_cluster "$PG_OPTS"
"${PSQL[@]}" -f "$HERE/schema.sql" >/dev/null

# Two standbys, stopped with the primary.
for i in 1 2; do
  as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" -U postgres -X stream -R --no-sync \
    -c fast -D "$WORK/standby$i" >/dev/null
  as_pg "$PGBIN/pg_ctl" -w -D "$WORK/standby$i" -l "$WORK/standby$i.log" \
    -o "-p $((PGPORT + i)) -k $WORK -c listen_addresses=127.0.0.1 $PG_OPTS" start >/dev/null
done
trap 'for i in 1 2; do as_pg "$PGBIN/pg_ctl" -D "$WORK/standby$i" -m immediate stop >/dev/null 2>&1 || true; done; cleanup' EXIT

# dir_ticks DATA_DIR: a cluster's CPU so far (postmaster, exited and live children).
dir_ticks() {
  local pm total child
  pm="$(head -1 "$1/postmaster.pid")"
  total="$(awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$pm/stat")"
  for child in $(pgrep -P "$pm"); do total=$((total + $(pid_ticks "$child"))); done
  echo "$total"
}
standby_ticks() { echo $(($(dir_ticks "$WORK/standby1") + $(dir_ticks "$WORK/standby2"))); }

uri() { echo "postgresql://bench_authenticator@127.0.0.1:$1/postgres"; }

# serve REPLICAS: a pgrest on HTTP_PORT with that many standbys as replicas.
serve() {
  local replicas=""
  for i in $(seq 1 "$1"); do replicas="${replicas:+$replicas,}$(uri $((PGPORT + i)))"; done
  env PGRST_DB_URI="$(uri "$PGPORT")" PGRST_DB_SCHEMAS=api PGRST_DB_ANON_ROLE=bench_anon \
    PGRST_DB_POOL="$CONC" PGRST_SERVER_HOST=127.0.0.1 PGRST_SERVER_PORT="$HTTP_PORT" \
    PGRST_DB_REPLICA_URIS="$replicas" PGRST_LOG_LEVEL=error \
    "${PGREST_BIN:-$ROOT/target/release/pgrest}" 2>>"$WORK/pgrest.log" &
  PGREST_PID=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$HTTP_PORT/" >/dev/null && break; sleep 0.05; done
  sleep 2 # the probes put the standbys in the rotation (first probe, then every 1 s)
}
stop() { kill "$PGREST_PID"; wait "$PGREST_PID" 2>/dev/null || true; PGREST_PID=; }

# run NAME LUA: one wrk run, with CPU per request of each party.
run() {
  local own0 own1 pg0 pg1 sb0 sb1 tool n out
  own0="$(pid_ticks "$PGREST_PID")"; pg0="$(dir_ticks "$WORK/data")"; sb0="$(standby_ticks)"
  tool="$(timed_ticks "$WORK/wrk.out" wrk -t2 -c "$CONC" -d "${DURATION}s" -s "$2" "http://127.0.0.1:$HTTP_PORT")"
  own1="$(pid_ticks "$PGREST_PID")"; pg1="$(dir_ticks "$WORK/data")"; sb1="$(standby_ticks)"
  out="$(cat "$WORK/wrk.out")"
  n="$(awk '/requests in/{print $1}' <<<"$out")"
  echo "$1: $(awk '/Requests\/sec/{printf "%d", $2}' <<<"$out") req/s$(awk '/Non-2xx/{print " (NON-2XX: " $5 ")"}' <<<"$out"); CPU us/request: pgrest $(us_per $((own1 - own0)) "$n") / primary $(us_per $((pg1 - pg0)) "$n") / standbys $(us_per $((sb1 - sb0)) "$n") / wrk $(us_per "$tool" "$n")"
}

cat >"$WORK/by-pk.lua" <<'LUA'
request = function()
  return wrk.format("GET", "/items?id=eq." .. math.random(1, 100000))
end
LUA
cat >"$WORK/insert.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"title":"bench","score":1}'
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, "/posts")
end
LUA

echo "pgrest replicas bench: $CONC connections, ${DURATION}s per run, primary + 2 standbys on $(nproc) shared cores"
for n in ${STANDBYS:-0 1 2}; do
  serve "$n"
  run "by-pk, $n standby(s)" "$WORK/by-pk.lua"
  [ "$n" != 2 ] && run "insert, $n standby(s) configured" "$WORK/insert.lua"
  stop
done
