#!/usr/bin/env bash
# The peer on the same workload: ShareDB with sharedb-postgres on the same PostgreSQL, driven by
# a small Node client (peer/sharedb/load.js) with the same spaces x clients closed loop, next
# to `spacesync load` with the same parameters, 3 runs each, alternating. Not part of CI.
#   scripts/bench-peer.sh [spaces=400] [clients_per_space=1] [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
spaces="${1:-400}"; per="${2:-1}"; seconds="${3:-10}"
(cd peer/sharedb && npm install --no-audit --no-fund --silent)
cargo build --release --bin spacesync -p spacesync-server >&2
db="spacesync_peer_$$"
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
psql -h 127.0.0.1 -U postgres -d "$db" -qf peer/sharedb/node_modules/sharedb-postgres/structure.sql
url="postgres://postgres@127.0.0.1:5432/$db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
node peer/sharedb/server.js "$port" "$url" > /tmp/sharedb-server.log 2>&1 &
peer=$!
trap 'kill $peer 2>/dev/null; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
for _ in $(seq 1 100); do grep -q listening /tmp/sharedb-server.log && break; sleep 0.1; done
ours="spacesync_peer_ours_$$"
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $ours"
trap 'kill $peer 2>/dev/null; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $ours WITH (FORCE)"' EXIT
for run in 1 2 3; do
  echo "== run $run: ShareDB" >&2
  node peer/sharedb/load.js "$port" "$spaces" "$per" "$seconds" 2
  echo "== run $run: spacesync" >&2
  target/release/spacesync load --json --migrate --database-url "host=127.0.0.1 user=postgres dbname=$ours" \
    --spaces "$spaces" --clients-per-space "$per" --duration "${seconds}s" --warmup 2s --seed "$run"
done
