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
