# spacesync: the commands people run. `just` lists them.

default:
    @just --list

# What CI runs: format check, clippy with warnings denied, the whole test suite.
ready: fmt-check clippy test

# The whole test suite (the README's test command).
test:
    cargo test --workspace

fmt:
    cargo fmt --all

fmt-check:
    cargo fmt --all -- --check

clippy:
    cargo clippy --workspace --all-targets -- -D warnings

# Criterion benches of the codecs and apply (release build); see docs/benchmarks.md.
bench:
    cargo bench -p spacesync-benches

# The physical baseline: raw PostgreSQL inserting 100-row batches with pgbench (docs/benchmarks.md).
bench-baseline:
    scripts/bench-baseline.sh 3 10 8

# End-to-end targets with the load harness: baseline, peak, rate sweep + plot, half-peak p99,
# poison flood, embedded store. Writes docs/bench/results.jsonl and throughput-vs-p99.svg.
bench-load:
    scripts/bench-load.sh

# The same on a throwaway PostgreSQL sized for the write rate (baseline included).
bench-load-private-pg:
    scripts/bench-load.sh --private-pg

# Space download hot and cold (1,000 cards + 1,000 connections).
bench-download:
    cargo run --release -p spacesync-benches --bin download

# Reading a 999-op log tail (the part of a cold load that grows with the ops since a snapshot).
bench-tail:
    cargo run --release -p spacesync-benches --bin tail

# 10,000 idle connections and server memory per connection.
bench-idle:
    cargo build --release --bin spacesync -p spacesync-server
    cargo run --release -p spacesync-benches --bin idle -- 10000

# Boot time with 10,000 stored spaces, 50 restarts, index count before/after.
bench-boot:
    cargo build --release --bin spacesync -p spacesync-server
    cargo run --release -p spacesync-benches --bin boot -- 50

# unnest vs binary COPY for log appends.
bench-append:
    cargo run --release -p spacesync-benches --bin append-methods

# Where the CPU goes in a closed-loop run (server, harness, PostgreSQL).
bench-cpu:
    cargo build --release --bin spacesync -p spacesync-server
    scripts/cpu-split.sh --spaces 400 --clients-per-space 1 --duration 10s --warmup 2s

# A short load run with every fault on, against a server it starts (embedded store).
smoke-load:
    cargo run --bin spacesync -- load --spaces 4 --clients-per-space 2 --duration 3s --warmup 500ms --misorder 0.2 --duplicates 0.05 --poison 0.05 --reconnects 0.02

# The peer on the same workload: ShareDB + sharedb-postgres (Node), then spacesync, 3 runs each.
bench-peer:
    scripts/bench-peer.sh 400 1 10

# The disk under PostgreSQL: 8 KiB durable flushes for 20 s, their p50/p99/max and how often
# they stall (the floor under any durable ack's p99; docs/benchmarks.md).
bench-disk:
    python3 scripts/fsync-probe.py --dir "$(dirname "$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW data_directory')")" --seconds 20

# Slow acks, commit waits and commits of a running server, per quarter second, for a minute
# (which side a latency spike is on; docs/operations.md, "Acks are slow").
ack-watch url="http://127.0.0.1:8080/metrics":
    python3 scripts/ack-watch.py {{url}} --seconds 60
