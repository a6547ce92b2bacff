#!/usr/bin/env bash
# Load benchmark: pgrest against PostgreSQL answering the same SQL through pgbench.
#   bash bench/run.sh            (env: CONC=10 connections, DURATION=10 seconds)
# Starts a throwaway PostgreSQL, loads bench/schema.sql, starts a release build of pgrest
# with a pool of CONC connections, then for each scenario runs pgbench with the exact SQL
# pgrest sends (prepared, CONC clients) and wrk against pgrest (CONC connections), and prints
#   scenario: pgrest N req/s, p50/p99 ms, PostgreSQL alone M tps, ratio N/M
# The load tool, pgrest and PostgreSQL share this machine's cores.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
CONC="${CONC:-10}"
DURATION="${DURATION:-10}"
PGPORT="${BENCH_PG_PORT:-55499}"
HTTP_PORT="${BENCH_HTTP_PORT:-3999}"
WORK="$(mktemp -d /tmp/pgrest-bench.XXXXXX)"

command -v wrk >/dev/null || { echo "bench: installing wrk"; apt-get install -y -qq wrk >/dev/null; }
source "$HERE/lib.sh"
start_cluster "-c max_connections=200 -c shared_buffers=256MB"
"${PSQL[@]}" -f "$HERE/schema.sql" >/dev/null

PGRST_DB_URI="postgresql://bench_authenticator@127.0.0.1:$PGPORT/postgres" \
PGRST_DB_SCHEMAS=api PGRST_DB_ANON_ROLE=bench_anon PGRST_DB_POOL="$CONC" \
PGRST_SERVER_HOST=127.0.0.1 PGRST_SERVER_PORT="$HTTP_PORT" PGRST_LOG_LEVEL=error \
  "$ROOT/target/release/pgrest" &
PGREST_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/" >/dev/null && break; sleep 0.1; done
echo "pgrest idle RSS: $(awk '/VmRSS/{print $2, $3}' /proc/$PGREST_PID/status)"

# The statement pgrest renders for GET /items?id=eq.<n> (src/sql.rs, read_statement).
cat > "$WORK/by_pk.sql" <<'SQL'
\set id random(1, 100000)
WITH pgrst_source AS (SELECT "api"."items".* FROM "api"."items" WHERE "api"."items"."id" = :id) SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t), '[]'))::text, nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t;
SQL
# The same inside the per-request envelope, one statement per round trip.
cat > "$WORK/by_pk_envelope.sql" <<'SQL'
\set id random(1, 100000)
BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY;
select set_config('search_path', '"api", "public"', true), set_config('role', 'bench_anon', true), set_config('request.jwt.claims', '{}', true), set_config('request.method', 'GET', true), set_config('request.path', '/items', true), set_config('request.headers', '{}', true), set_config('request.cookies', '{}', true);
WITH pgrst_source AS (SELECT "api"."items".* FROM "api"."items" WHERE "api"."items"."id" = :id) SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t), '[]'))::text, nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t;
COMMIT;
SQL
cat > "$WORK/by_pk.lua" <<'LUA'
request = function()
  return wrk.format("GET", "/items?id=eq." .. math.random(1, 100000))
end
LUA

pgbench_tps() {
  as_pg "$PGBIN/pgbench" -n -M prepared -c "$CONC" -j 2 -T "$DURATION" \
    -h 127.0.0.1 -p "$PGPORT" -U postgres -f "$1" postgres 2>/dev/null \
    | awk '/^tps/{printf "%d", $3}'
}

scenario() {
  local name="$1" sql="$2" lua="$3"
  local tps out rps p50 p99 rss
  tps="$(pgbench_tps "$sql")"
  out="$(wrk -t2 -c "$CONC" -d "${DURATION}s" --latency -s "$lua" "http://127.0.0.1:$HTTP_PORT" 2>&1)"
  rss="$(awk '/VmRSS/{print $2}' /proc/$PGREST_PID/status)"
  rps="$(awk '/Requests\/sec/{printf "%d", $2}' <<<"$out")"
  p50="$(awk '$1=="50%"{print $2}' <<<"$out")"
  p99="$(awk '$1=="99%"{print $2}' <<<"$out")"
  non2xx="$(awk '/Non-2xx/{print $5}' <<<"$out")"
  echo "$name: pgrest $rps req/s, p50/p99 $p50/$p99, PostgreSQL alone $tps tps, ratio $(awk -v a="$rps" -v b="$tps" 'BEGIN{printf "%.2f", a/b}')${non2xx:+ (NON-2XX: $non2xx)} [pgrest RSS ${rss} kB]"
}

# GET /parents?select=id,name,children(id,name)&id=eq.<n>: a parent with its 5 children.
cat > "$WORK/embed.sql" <<'SQL'
\set id random(1, 10000)
WITH pgrst_source AS (SELECT "api"."parents"."id" AS "id", "api"."parents"."name" AS "name", COALESCE("parents_children_1"."parents_children_1", '[]') AS "children" FROM "api"."parents" LEFT JOIN LATERAL (SELECT json_agg("parents_children_1_rows")::jsonb AS "parents_children_1" FROM (SELECT "children_1"."id" AS "id", "children_1"."name" AS "name" FROM "api"."children" AS "children_1" WHERE "children_1"."parent_id" = "api"."parents"."id") AS "parents_children_1_rows") AS "parents_children_1" ON TRUE WHERE "api"."parents"."id" = :id) SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t), '[]'))::text, nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t;
SQL
cat > "$WORK/embed.lua" <<'LUA'
request = function()
  return wrk.format("GET", "/parents?select=id,name,children(id,name)&id=eq." .. math.random(1, 10000))
end
LUA

scenario "by-pk" "$WORK/by_pk.sql" "$WORK/by_pk.lua"
scenario "parent-with-children" "$WORK/embed.sql" "$WORK/embed.lua"
# One POST of 10,000 rows (a single INSERT ... SELECT FROM json_to_recordset).
python3 -c 'import json; print(json.dumps([{"id": i, "name": "row %d" % i, "price": i / 100} for i in range(1, 10001)]))' > "$WORK/bulk.json"
bulk_ms="$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -X POST "http://127.0.0.1:$HTTP_PORT/bulk" \
  -H 'Content-Type: application/json' --data-binary @"$WORK/bulk.json" | awk '{printf "%s %.0f", $1, $2 * 1000}')"
echo "bulk-insert-10000: status ${bulk_ms% *}, ${bulk_ms#* } ms"
echo "by-pk, envelope one statement per round trip: PostgreSQL $(pgbench_tps "$WORK/by_pk_envelope.sql") tps"
