#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for benchmarks, configured for a write-heavy load the way
# docs/operations.md ("Acks are slow") advises: WAL and checkpoints sized so that checkpoints
# are minutes apart, not seconds. `fsync` and `synchronous_commit` stay on.
#   scripts/private-pg.sh start DIR PORT     # initdb + start; prints nothing on success
#   scripts/private-pg.sh stop DIR           # stop and remove DIR
# As root it runs the server as the `postgres` user (initdb refuses root).
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-}" in
  start)
    dir="$2"; port="$3"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$bin/initdb" -D "$dir" -U postgres -A trust > /dev/null
    cat >> "$dir/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_buffers = 512MB
max_wal_size = 16GB
checkpoint_timeout = 30min
wal_init_zero = off
CONF
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w start > /dev/null
    ;;
  stop)
    dir="$2"
    as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop > /dev/null || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
