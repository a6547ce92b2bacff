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
