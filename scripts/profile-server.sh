#!/usr/bin/env bash
# Where the server's CPU goes during a load run, by component, from a call-graph profile.
# Builds `spacesync` with frame pointers (its own target dir, so the normal build stays as it
# is), serves a scratch PostgreSQL database, drives it with `spacesync load`, records the
# server with `perf record --call-graph fp` for a few seconds mid-run and prints a table of
# inclusive CPU shares for the parts that matter (scripts/profile_table.py). Needs `perf`.
#   scripts/profile-server.sh [spacesync load arguments…]
#   (default: --spaces 400 --clients-per-space 1 --duration 10s --warmup 2s)
set -euo pipefail
cd "$(dirname "$0")/.."
target=target/profiling
echo "building with frame pointers into $target (a few minutes the first time)…" >&2
CARGO_TARGET_DIR="$target" RUSTFLAGS="-C force-frame-pointers=yes" \
  cargo build --release --bin spacesync -p spacesync-server >&2
bin="$target/release/spacesync"
[ $# -gt 0 ] || set -- --spaces 400 --clients-per-space 1 --duration 10s --warmup 2s
db="spacesync_profile_$$"
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
log=$(mktemp); data=$(mktemp -d)
RUST_LOG=warn "$bin" serve --listen 127.0.0.1:0 --migrate --database-url "host=127.0.0.1 user=postgres dbname=$db" 2> "$log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; rm -rf "$data" "$log"' EXIT
for _ in $(seq 1 100); do grep -q "serving on" "$log" && break; sleep 0.1; done
ws=$(grep -o 'ws://[^ ]*' "$log" | head -1)
"$bin" load --server "$ws" --json "$@" > "$data/load.json" &
load=$!
sleep 4
echo "recording the server for 5 s…" >&2
perf record -q -F 1999 --call-graph fp -o "$data/perf.data" -p "$server" -- sleep 5 2> /dev/null
wait "$load"
tail -1 "$data/load.json"
perf script -i "$data/perf.data" 2> /dev/null | python3 scripts/profile_table.py
