#!/usr/bin/env bash
# End-to-end figures for BRIEF §7 with the project's own harness, against a `spacesync serve`
# process on a scratch PostgreSQL database (and the embedded store for comparison):
#   peak durable acked ops/s (closed loop, many spaces), a sweep of offered rates (open loop)
#   for the throughput-vs-p99 plot, p99 at half of peak, and the poison flood.
# Every run prints the harness's JSON line; lines are collected in docs/bench/results.jsonl
# (tagged) and the plot is written to docs/bench/throughput-vs-p99.svg.
#
#   scripts/bench-load.sh               # ~7 minutes, progress on stderr; the machine's PostgreSQL
#   scripts/bench-load.sh --private-pg  # the same on a throwaway cluster sized for this write
#                                       # rate (scripts/private-pg.sh), baseline included;
#                                       # results in docs/bench/*-private-pg.*
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/spacesync
cargo build --release --bin spacesync -p spacesync-server >&2
suffix=""
pg_dir=""
if [ "${1:-}" = "--private-pg" ]; then
  suffix="-private-pg"
  pg_dir=$(mktemp -d /tmp/spacesync-bench-pg.XXXXXX)
  PGPORT=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  export PGPORT
  scripts/private-pg.sh start "$pg_dir" "$PGPORT"
  echo "private PostgreSQL on port $PGPORT ($pg_dir)" >&2
fi
export PGPORT="${PGPORT:-5432}"
final=docs/bench/results$suffix.jsonl
# Lines go to a scratch file that replaces the results only when the whole run succeeded: a run
# that fails halfway leaves the previous results as they were.
out="$final.partial"
mkdir -p docs/bench
: > "$out"
db="spacesync_bench_$$"
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
url="host=127.0.0.1 port=$PGPORT user=postgres dbname=$db"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  [ -n "$pg_dir" ] && scripts/private-pg.sh stop "$pg_dir" || true
}
trap cleanup EXIT
log=$(mktemp)
RUST_LOG=warn "$bin" serve --listen 127.0.0.1:0 --migrate --database-url "$url" 2> "$log" &
server_pid=$!
for _ in $(seq 1 100); do grep -q "serving on" "$log" && break; sleep 0.1; done
ws=$(grep -o 'ws://[^ ]*' "$log" | head -1)
echo "server: $ws (pid $server_pid)" >&2

run() { # tag, then spacesync load arguments
  local tag="$1"; shift
  # Each run starts on a settled server: the previous run's backlog drained, its commits and
  # checker reads done (an overload run otherwise spills into the next one's first seconds).
  sleep 3
  echo "== $tag: spacesync load $*" >&2
  local line
  line=$("$bin" load --json "$@" | tail -1)
  echo "{\"tag\":\"$tag\",\"result\":$line}" >> "$out"
  echo "$line"
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

# The physical baseline first, in the same run: raw PostgreSQL inserting 100-row batches.
baseline=$(scripts/bench-baseline.sh 3 10 8 | tail -1)
echo "{\"tag\":\"baseline\",\"result\":$baseline}" >> "$out"
echo "baseline: $baseline" >&2

many=(--spaces 400 --clients-per-space 1)
peaks=()
for i in 1 2 3; do
  line=$(run peak --server "$ws" "${many[@]}" --duration 10s --warmup 2s --seed "$i")
  peaks+=("$(field "$line" acked_ops_per_s)")
done
peak=$(median "${peaks[@]}")
echo "peak (median of 3): $peak acked ops/s" >&2

# The disk under the log, right before the p99 runs: how long one durable 8 KiB flush takes
# and how often it stalls, on PostgreSQL's own filesystem (no durable ack can beat it).
data_dir=$(psql -h 127.0.0.1 -p "$PGPORT" -U postgres -Atc "SHOW data_directory")
sleep 3
disk=$(python3 scripts/fsync-probe.py --dir "$(dirname "$data_dir")" --seconds 20 --json | tail -1)
echo "{\"tag\":\"fsync\",\"result\":$disk}" >> "$out"

# p99 at half of peak before the sweep, whose last steps overload the server on purpose.
half=$(python3 -c "print(round($peak * 0.5))")
for i in 1 2 3; do
  run half --server "$ws" "${many[@]}" --duration 10s --warmup 2s --rate "$half" --seed "$i" > /dev/null
done
for fraction in 0.1 0.25 0.5 0.75 0.9 1.0 1.2; do
  rate=$(python3 -c "print(round($peak * $fraction))")
  run "sweep-$fraction" --server "$ws" "${many[@]}" --duration 8s --warmup 2s --rate "$rate" > /dev/null
done

# Poison flood: 10% bad ops at 5,000 ops/s, against a clean run offering the same good ops
# (4,500/s). 100 spaces x 2 clients.
flood=(--spaces 100 --clients-per-space 2 --duration 10s --warmup 2s)
for i in 1 2 3; do
  run clean-4500 --server "$ws" "${flood[@]}" --rate 4500 --seed "$i" > /dev/null
  run poison-5000 --server "$ws" "${flood[@]}" --rate 5000 --poison 0.1 --seed "$i" > /dev/null
done
kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""

# The embedded store, same closed loop (the harness starts its own server on a temp dir).
for i in 1 2 3; do
  run peak-embedded "${many[@]}" --duration 10s --warmup 2s --seed "$i" > /dev/null
done

base=$(field "$baseline" baseline_rows_per_s)
python3 -c "print(f'peak / baseline = {$peak} / {$base} = {$peak / $base:.3f}')" >&2
mv "$out" "$final"
python3 scripts/plot.py "$final" "docs/bench/throughput-vs-p99$suffix.svg"
python3 scripts/summarize.py "$final"
