//! The six real Kinopio spaces in `../shared/kinopio-spaces/`: each imports, exports with every
//! field intact, survives a snapshot, and builds the same space from its ops in any order.
//! Without the folder the tests say so and pass, except under `CI=true`, where they fail.

use proptest::prelude::*;
use spacesync_core::kinopio::{creation_ops, import, normalized};
use spacesync_core::{Outcome, Snapshot, Space, SpaceConfig};

use spacesync_testkit::samples;

#[test]
fn every_sample_round_trips_with_every_field_intact() {
    let Some(samples) = samples() else { return };
    assert_eq!(samples.len(), 6);
    for (path, file) in samples {
        let space =
            import(&file, SpaceConfig::default()).unwrap_or_else(|error| panic!("{path}: {error}"));
        assert_eq!(space.state().to_kinopio(), file, "{path}");
        assert_eq!(space.seq(), 1);
    }
}

#[test]
fn every_sample_survives_a_snapshot() {
    let Some(samples) = samples() else { return };
    for (path, file) in samples {
        let space =
            import(&file, SpaceConfig::default()).unwrap_or_else(|error| panic!("{path}: {error}"));
        let bytes = Snapshot::of(&space).encode().expect("encodes");
        let restored = Snapshot::decode(&bytes)
            .expect("decodes")
            .into_space(SpaceConfig::default());
        assert_eq!(restored.state(), space.state(), "{path}");
        assert_eq!(restored.seq(), space.seq());
        assert_eq!(restored.state().to_kinopio(), file, "{path}");
    }
}

#[test]
fn every_sample_built_from_ops_in_reverse_equals_the_file() {
    let Some(samples) = samples() else { return };
    for (path, file) in samples {
        let ops = creation_ops(&file);
        let mut space = Space::new(
            file["id"].as_str().unwrap_or_default(),
            SpaceConfig::default(),
        );
        let outcomes = space.submit_all(ops.iter().rev().cloned(), 0);
        assert_eq!(rejections(&outcomes), Vec::<String>::new(), "{path}");
        assert_eq!(space.held_count(), 0, "{path}");
        assert_eq!(space.seq(), ops.len() as u64, "{path}");
        assert_eq!(
            normalized(&space.state().to_kinopio()),
            normalized(&file),
            "{path}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any arrival order of a real space's creates ends in the state of the in-order
    /// application, with nothing rejected and nothing left held.
    #[test]
    fn any_order_of_a_samples_creates_gives_the_same_space(index in 0usize..6, seed in any::<u64>()) {
        let Some(samples) = samples() else { return Ok(()) };
        let (path, file) = &samples[index];
        let ops = creation_ops(file);
        let id = file["id"].as_str().unwrap_or_default();
        let mut in_order = Space::new(id, SpaceConfig::default());
        in_order.submit_all(ops.clone(), 0);
        let mut shuffled_ops = ops.clone();
        shuffle(&mut shuffled_ops, seed);
        let mut shuffled = Space::new(id, SpaceConfig::default());
        let outcomes = shuffled.submit_all(shuffled_ops, 0);
        prop_assert_eq!(rejections(&outcomes), Vec::<String>::new(), "{}", path);
        prop_assert_eq!(shuffled.held_count(), 0);
        prop_assert_eq!(shuffled.state(), in_order.state(), "{}", path);
    }
}

fn rejections(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Rejected(rejection) => Some(format!(
                "{} {}: {}",
                rejection.operation_id, rejection.code, rejection.message
            )),
            _ => None,
        })
        .collect()
}

/// Fisher–Yates with a splitmix64 stream, so a failing seed replays exactly.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for index in (1..items.len()).rev() {
        let other = (next() % (index as u64 + 1)) as usize;
        items.swap(index, other);
    }
}
