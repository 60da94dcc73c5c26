#!/usr/bin/env bash
# Where the CPU goes during a load run: the spacesync server, the load harness and PostgreSQL,
# as CPU seconds over the run (2 cores = 2 CPU seconds per second of wall time).
#   scripts/cpu-split.sh [spacesync load arguments…]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${SPACESYNC_BIN:-target/release/spacesync}"  # SPACESYNC_BIN: another build, for A/B runs
read -r -a server_args <<< "${SERVER_ARGS:-}"     # SERVER_ARGS: more `serve` flags, for A/B runs
db="spacesync_cpu_$$"
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
log=$(mktemp)
RUST_LOG=warn "$bin" serve --listen 127.0.0.1:0 --migrate --database-url "host=127.0.0.1 user=postgres dbname=$db" "${server_args[@]}" 2> "$log" &
server=$!
for _ in $(seq 1 100); do grep -q "serving on" "$log" && break; sleep 0.1; done
ws=$(grep -o 'ws://[^ ]*' "$log" | head -1)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { local sum=0; for pid in $(pgrep -x postgres); do sum=$((sum + $(ticks "$pid"))); done; echo "$sum"; }
hz=$(getconf CLK_TCK)
s0=$(ticks "$server"); p0=$(pg_ticks); start=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o /tmp/load-time "$bin" load --server "$ws" --json "$@" > /tmp/load-line
end=$(date +%s.%N); s1=$(ticks "$server"); p1=$(pg_ticks)
# The server's peak resident memory over its life (VmHWM), in MiB.
rss=$(awk '/^VmHWM:/{printf "%.0f", $2 / 1024}' "/proc/$server/status")
read -r lu ls < /tmp/load-time
python3 - "$hz" "$s0" "$s1" "$p0" "$p1" "$lu" "$ls" "$start" "$end" "$rss" <<'PY'
import json, sys
hz, s0, s1, p0, p1 = map(float, sys.argv[1:6]); lu, ls, start, end = map(float, sys.argv[6:10])
rss = int(sys.argv[10])
wall = end - start
line = json.loads(open("/tmp/load-line").read().splitlines()[-1])
split = {"wall_s": round(wall, 2), "server_cpu_s": round((s1 - s0) / hz, 2),
         "postgres_cpu_s": round((p1 - p0) / hz, 2), "harness_cpu_s": round(lu + ls, 2),
         "cpu_available_s": round(2 * wall, 2), "acked_ops_per_s": line["acked_ops_per_s"],
         "p99_ms": line["p99_ms"], "server_peak_rss_mib": rss}
# CPU per op over everything the run wrote (warmup included), the figure to iterate on: it
# does not swing with scheduling noise the way ops/s does on two shared cores.
ops = max(line.get("ops_in_logs", 0), 1)
split["server_us_per_op"] = round((s1 - s0) / hz / ops * 1e6, 1)
split["postgres_us_per_op"] = round((p1 - p0) / hz / ops * 1e6, 1)
split["harness_us_per_op"] = round((lu + ls) / ops * 1e6, 1)
print(json.dumps(split))
PY
