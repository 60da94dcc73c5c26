//! Apply benches: one op on a loaded 1,000-card space, a 1,000-card + 1,000-connection space
//! built from scratch in order, and the same ops in reverse (every dependent op held, then
//! released), which is the cost of reordering.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use spacesync_benches::{card_ids, drag_batch, thousand_card_ops, thousand_card_space};
use spacesync_core::{Space, SpaceConfig};
use spacesync_protocol::Operation;

fn apply(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("apply");
    let loaded = thousand_card_space();
    let ids = card_ids(&loaded);
    let drags = drag_batch(&ids, 1_000);
    group.throughput(Throughput::Elements(1));
    group.bench_function("updateCard on 1000-card space", |b| {
        let mut space = loaded.clone();
        let mut next = 0usize;
        b.iter(|| {
            let mut op = drags[next % drags.len()].clone();
            // A fresh id each time, so the op applies instead of being recognised as a replay.
            op.operation_id = Some(format!("bench-{next}"));
            next += 1;
            space.submit(op, 0)
        })
    });
    group.bench_function("createCard on 1000-card space", |b| {
        let mut space = loaded.clone();
        let mut next = 0usize;
        b.iter(|| {
            next += 1;
            let op = Operation::new(
                "createCard",
                json!({"operationId": format!("create-{next}"), "id": format!("new-{next}"), "x": 1, "y": 2, "name": "new"}),
            );
            space.submit(op, 0)
        })
    });
    let ops = thousand_card_ops();
    group.throughput(Throughput::Elements(ops.len() as u64));
    group.bench_function("build 1000 cards + 1000 connections in order", |b| {
        b.iter_batched(
            || ops.clone(),
            |ops| Space::new("bench-space", SpaceConfig::default()).submit_all(ops, 0),
            BatchSize::LargeInput,
        )
    });
    let reversed: Vec<Operation> = ops.iter().rev().cloned().collect();
    group.bench_function("build 1000 cards + 1000 connections in reverse", |b| {
        b.iter_batched(
            || reversed.clone(),
            |ops| Space::new("bench-space", SpaceConfig::default()).submit_all(ops, 0),
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("export 1000-card space to Kinopio JSON value", |b| {
        b.iter(|| loaded.state().to_kinopio())
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
