# Shared by the bench scripts: a throwaway PostgreSQL cluster and a release build.
# Set WORK, PGPORT (and ROOT) first, then: source lib.sh; start_cluster "<postgres -c options>".
# Gives PGBIN, as_pg, PSQL (an array: psql as postgres on that cluster) and a cleanup trap
# that also kills $PGREST_PID when set.

PGBIN="$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")")"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$WORK"

cleanup() {
  [ -n "${PGREST_PID:-}" ] && kill "$PGREST_PID" 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_cluster() {
  # PGREST_BIN names another build to measure (an older commit's, a debug build).
  [ -n "${PGREST_BIN:-}" ] || (cd "$ROOT" && cargo build --release --quiet)
  as_pg "$PGBIN/initdb" -A trust -U postgres --no-sync -D "$WORK/data" >/dev/null
  as_pg "$PGBIN/pg_ctl" -w -D "$WORK/data" -l "$WORK/pg.log" \
    -o "-p $PGPORT -k $WORK -c listen_addresses=127.0.0.1 $1" start >/dev/null
  PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres)
  command -v psql >/dev/null || PSQL[0]="$PGBIN/psql"
}

# CPU time, in clock ticks, for CPU per request (what bench-kit measures: steadier than
# req/s on a machine whose cores the load tool, pgrest and PostgreSQL share).
CLK_TCK="$(getconf CLK_TCK)"
# pid_ticks PID: the process's user + system time.
pid_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# pg_ticks: PostgreSQL's CPU so far: the postmaster with its exited children (reaped
# backends, e.g. pgbench's) and every live child.
pg_ticks() {
  local pm total child
  pm="$(head -1 "$WORK/data/postmaster.pid")"
  total="$(awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$pm/stat")"
  for child in $(pgrep -P "$pm"); do total=$((total + $(pid_ticks "$child"))); done
  echo "$total"
}
# us_per DELTA_TICKS REQUESTS: microseconds of CPU per request.
us_per() { awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN{printf "%d", (n > 0 ? t * 1e6 / hz / n : 0)}'; }
# timed_ticks OUTFILE CMD...: runs CMD with its stdout in OUTFILE and prints the CPU it
# used itself (its children included), in clock ticks.
timed_ticks() {
  local out="$1" t
  shift
  t="$( { TIMEFORMAT='%U %S'; time "$@" >"$out" 2>/dev/null; } 2>&1 )"
  awk -v hz="$CLK_TCK" '{printf "%d", ($1 + $2) * hz}' <<<"$t"
}

# bench_user_token SECRET: an HS256 token for bench_user (no library: header.payload.signature,
# base64url).
bench_user_token() {
  python3 - "$1" <<'PY'
import base64, hashlib, hmac, json, sys
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"role": "bench_user", "exp": 4102444800}).encode())
sig = hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64(sig)}")
PY
}
