#!/usr/bin/env bash
# Where the CPU goes during a load run: the spacesync server, the load harness and PostgreSQL,
# as CPU seconds over the run (2 cores = 2 CPU seconds per second of wall time).
#   scripts/cpu-split.sh [spacesync load arguments…]
#   (STEADY="FROM SECONDS": the steady-state window, default "4 6"; see below)
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
# PostgreSQL: every postgres process's own time plus what the postmaster reaped from backends
# that ended during the run (as scripts/bench-baseline.sh counts it).
pg_ticks() { local sum=0; for pid in $(pgrep -x postgres); do sum=$((sum + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo 0))); done; echo "$sum"; }
hz=$(getconf CLK_TCK)
# The steady state: a window inside the measured part of the run (STEADY="FROM SECONDS", from
# the start of the load; default 4 s after it for 6 s), CPU per op acknowledged in it. The
# whole-run figures also count connecting, the warmup's ramp and the checker.
read -r steady_from steady_for <<< "${STEADY:-4 6}"
http=${ws/ws:/http:}; http=${http%/ws}
accepted() { curl -s "$http/metrics" | awk '/^spacesync_ops_accepted_total /{print $2}'; }
s0=$(ticks "$server"); p0=$(pg_ticks); start=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o /tmp/load-time "$bin" load --server "$ws" --json "$@" > /tmp/load-line &
timer=$!
steady=""
sleep "$steady_from"
harness=$(pgrep -P "$timer" || true)
if [ -n "$harness" ]; then
  a0=$(accepted); ss0=$(ticks "$server"); sp0=$(pg_ticks); sh0=$(ticks "$harness"); t0=$(date +%s.%N)
  sleep "$steady_for"
  a1=$(accepted); ss1=$(ticks "$server"); sp1=$(pg_ticks); sh1=$(ticks "$harness"); t1=$(date +%s.%N)
  # Only if the load was still running at the window's end.
  kill -0 "$harness" 2>/dev/null && steady="$a0 $a1 $ss0 $ss1 $sp0 $sp1 $sh0 $sh1 $t0 $t1"
fi
wait "$timer"
end=$(date +%s.%N); s1=$(ticks "$server"); p1=$(pg_ticks)
# The server's peak resident memory over its life (VmHWM), in MiB.
rss=$(awk '/^VmHWM:/{printf "%.0f", $2 / 1024}' "/proc/$server/status")
read -r lu ls < /tmp/load-time
python3 - "$hz" "$s0" "$s1" "$p0" "$p1" "$lu" "$ls" "$start" "$end" "$rss" "$steady" <<'PY'
import json, sys
hz, s0, s1, p0, p1 = map(float, sys.argv[1:6]); lu, ls, start, end = map(float, sys.argv[6:10])
rss = int(sys.argv[10])
wall = end - start
line = json.loads(open("/tmp/load-line").read().splitlines()[-1])
split = {"wall_s": round(wall, 2), "server_cpu_s": round((s1 - s0) / hz, 2),
         "postgres_cpu_s": round((p1 - p0) / hz, 2), "harness_cpu_s": round(lu + ls, 2),
         "cpu_available_s": round(2 * wall, 2), "acked_ops_per_s": line["acked_ops_per_s"],
         "p99_ms": line["p99_ms"], "server_peak_rss_mib": rss}
# CPU per op over everything the run wrote (warmup included): it does not swing with
# scheduling noise the way ops/s does on two shared cores.
ops = max(line.get("ops_in_logs", 0), 1)
split["server_us_per_op"] = round((s1 - s0) / hz / ops * 1e6, 1)
split["postgres_us_per_op"] = round((p1 - p0) / hz / ops * 1e6, 1)
split["harness_us_per_op"] = round((lu + ls) / ops * 1e6, 1)
# The steady state (null when the run ended before the window did).
steady = sys.argv[11].split()
if len(steady) == 10:
    a0, a1, ss0, ss1, sp0, sp1, sh0, sh1, t0, t1 = map(float, steady)
    ops, window = max(a1 - a0, 1), t1 - t0
    split["steady_ops_per_s"] = round(ops / window)
    split["steady_server_us_per_op"] = round((ss1 - ss0) / hz / ops * 1e6, 1)
    split["steady_postgres_us_per_op"] = round((sp1 - sp0) / hz / ops * 1e6, 1)
    split["steady_harness_us_per_op"] = round((sh1 - sh0) / hz / ops * 1e6, 1)
    split["steady_busy_cores"] = round((ss1 - ss0 + sp1 - sp0 + sh1 - sh0) / hz / window, 2)
else:
    split["steady_ops_per_s"] = None
print(json.dumps(split))
PY
