//! Codec benches: MessagePack vs JSON for the two messages that dominate traffic, a submit
//! batch of drags and the join answer that carries a whole 1,000-card space.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spacesync_benches::{submit_message, thousand_card_space};
use spacesync_core::Snapshot;
use spacesync_protocol::{Format, ServerMessage};

const LIMIT: usize = 64 << 20;

fn codecs(criterion: &mut Criterion) {
    let submit = submit_message(50);
    let space = thousand_card_space();
    let joined = ServerMessage::Joined {
        space_id: "bench-space".into(),
        seq: space.seq(),
        snapshot: Some(space.state().to_kinopio()),
        ops: Vec::new(),
    };
    let mut group = criterion.benchmark_group("codec");
    for format in [Format::MessagePack, Format::Json] {
        let name = format!("{format:?}");
        let bytes = format.encode(&submit).expect("encodes");
        group.throughput(Throughput::Elements(50));
        group.bench_with_input(
            BenchmarkId::new("encode submit 50 ops", &name),
            &submit,
            |b, message| b.iter(|| format.encode(message).expect("encodes")),
        );
        group.bench_with_input(
            BenchmarkId::new("decode submit 50 ops", &name),
            &bytes,
            |b, bytes| b.iter(|| format.decode_client(bytes, LIMIT).expect("decodes")),
        );
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::new("encode joined 1000 cards", &name),
            &joined,
            |b, message| b.iter(|| format.encode(message).expect("encodes")),
        );
    }
    group.bench_function("snapshot encode 1000 cards", |b| {
        b.iter(|| Snapshot::of(&space).encode().expect("encodes"))
    });
    let snapshot = Snapshot::of(&space).encode().expect("encodes");
    group.bench_function("snapshot decode 1000 cards", |b| {
        b.iter(|| Snapshot::decode(&snapshot).expect("decodes"))
    });
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
