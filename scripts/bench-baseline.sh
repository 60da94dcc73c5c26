#!/usr/bin/env bash
# The physical baseline (BRIEF §7): what raw PostgreSQL on this machine does for the same rows.
# pgbench, a custom script: one transaction inserting a 100-row batch into the real op_log table
# (migrations/postgres/V1__init.sql: same columns, keys and check), payloads of a drag op's size. Prints one JSON line per run
# and a final one with the median: {"baseline_rows_per_s": …}.
#
#   scripts/bench-baseline.sh [runs=3] [seconds=10] [clients=8]
set -euo pipefail
runs="${1:-3}"; seconds="${2:-10}"; clients="${3:-8}"
host="${PGHOST:-127.0.0.1}"; user="${PGUSER:-postgres}"
db="spacesync_baseline_$$"
psql -h "$host" -U "$user" -qc "CREATE DATABASE $db"
trap 'psql -h "$host" -U "$user" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
# The real schema: the same op_log table, keys and check the server writes to.
psql -h "$host" -U "$user" -d "$db" -q -f "$(dirname "$0")/../migrations/postgres/V1__init.sql"
script="$(mktemp)"
# Each transaction's rows get a random 63-bit batch number in their keys: with 31 bits, a run of
# ~30,000 transactions drew the same number twice for one client about once in 40 runs, and the
# duplicate key stopped pgbench (and the bench with it).
cat > "$script" <<'PGB'
\set batch random(1, 9000000000000000000)
INSERT INTO op_log (space_id, seq, operation_id, client_id, name, payload)
SELECT 'space-' || :client_id || '-' || :batch, g, 'op-' || :batch || '-' || g, 'bench-client-0001', 'updateCard',
       jsonb_build_object('operationId', 'op-' || :batch || '-' || g, 'spaceId', 'space-' || :client_id,
                          'userId', 'user-0001', 'clientCreatedAt', 1764806400000 + g,
                          'id', 'card-000000000000001', 'x', g, 'y', 200, 'z', 3)
FROM generate_series(1, 100) AS g;
PGB
# CPU of PostgreSQL (clock ticks), to put each run's PostgreSQL and pgbench CPU per row beside
# the CPU per op of a load run (scripts/cpu-split.sh): every postgres process's own time, plus
# the time of the children it reaped (pgbench's backends end with the run, and their CPU then
# counts in the postmaster's).
pg_ticks() {
  local sum=0 pid
  for pid in $(pgrep -x postgres); do
    sum=$((sum + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$sum"
}
hz=$(getconf CLK_TCK)
results=()
for run in $(seq 1 "$runs"); do
  echo "baseline run $run/$runs: pgbench -c $clients -j 2 -T $seconds (100 rows per transaction)" >&2
  errors="$(mktemp)"; times="$(mktemp)"
  before=$(pg_ticks)
  if ! output=$(/usr/bin/time -f "%U %S" -o "$times" pgbench -h "$host" -U "$user" -n -c "$clients" -j 2 -T "$seconds" -f "$script" "$db" 2> "$errors"); then
    echo "pgbench failed:" >&2
    tail -5 "$errors" >&2
    rm -f "$errors"
    exit 1
  fi
  after=$(pg_ticks)
  rm -f "$errors"
  tps=$(awk '/^tps = /{print $3; exit}' <<< "$output")
  rows=$(awk -v tps="$tps" 'BEGIN{printf "%.0f", tps * 100}')
  # CPU per row over the run's rows: PostgreSQL (all its processes) and the pgbench client.
  cpu=$(awk -v hz="$hz" -v b="$before" -v a="$after" -v rows="$rows" -v s="$seconds" \
    '{printf "\"postgres_us_per_row\":%.1f,\"pgbench_us_per_row\":%.1f", (a - b) / hz / (rows * s) * 1e6, ($1 + $2) / (rows * s) * 1e6}' "$times")
  rm -f "$times"
  echo "{\"run\":$run,\"baseline_tps\":$tps,\"baseline_rows_per_s\":$rows,$cpu}"
  results+=("$rows")
done
rm -f "$script"
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
echo "{\"baseline_rows_per_s\":$median,\"runs\":$runs,\"seconds\":$seconds,\"clients\":$clients}"
