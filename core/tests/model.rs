//! Property tests: random operations against a `BTreeMap` model, with thresholds so small that
//! consolidations, splits and merges happen constantly. Snapshots are held across later writes
//! and checked against a copy of the model taken at the same moment.

use std::ops::Bound;

use helio_core::{Error, Snapshot, Tree, TreeConfig};
use proptest::prelude::*;

mod common;

use common::{expected_range, Model};

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>, bool),
    TakeSnapshot,
    CheckSnapshot(usize),
    DropSnapshot(usize),
    Compact,
}

/// Keys from a small space so that overwrites and deletes of live keys are common; varying lengths
/// and shared prefixes exercise the key-prefix search.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..48).prop_map(|k| vec![b'k', k]),
        (0u8..16).prop_map(|k| vec![b'k', k, b'x', b'y', b'z', b'w', b'v', b'u', k]),
        Just(Vec::new()),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![key().prop_map(Bound::Included), key().prop_map(Bound::Excluded), Just(Bound::Unbounded),]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (key(), proptest::collection::vec(any::<u8>(), 0..24)).prop_map(|(k, v)| Op::Put(k, v)),
        5 => key().prop_map(Op::Delete),
        3 => key().prop_map(Op::Get),
        2 => (bound(), bound(), any::<bool>()).prop_map(|(lo, hi, rev)| Op::Range(lo, hi, rev)),
        1 => Just(Op::TakeSnapshot),
        2 => (0usize..8).prop_map(Op::CheckSnapshot),
        1 => (0usize..8).prop_map(Op::DropSnapshot),
        1 => Just(Op::Compact),
    ]
}

fn config() -> impl Strategy<Value = TreeConfig> {
    (1u32..8, 1u32..6, 4u32..12).prop_map(|(chain, read_chain, split)| {
        TreeConfig::default()
            .consolidate_chain(chain)
            .read_consolidate_chain(read_chain)
            .split_items(split)
            .merge_items(split / 4)
            .page_bytes_max(256)
    })
}

fn actual_range(
    tree: &Tree,
    snap: &Snapshot,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    rev: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let guard = tree.pin();
    let iter = tree.range::<Vec<u8>, _>(snap, (lo.clone(), hi.clone()), &guard);
    let own = |(k, v): (&[u8], &[u8])| (k.to_vec(), v.to_vec());
    if rev {
        iter.rev().map(own).collect()
    } else {
        iter.map(own).collect()
    }
}

fn check_everything(tree: &Tree, snap: &Snapshot, model: &Model) {
    let guard = tree.pin();
    assert_eq!(
        actual_range(tree, snap, &Bound::Unbounded, &Bound::Unbounded, false),
        expected_range(model, &Bound::Unbounded, &Bound::Unbounded, false)
    );
    assert_eq!(
        actual_range(tree, snap, &Bound::Unbounded, &Bound::Unbounded, true),
        expected_range(model, &Bound::Unbounded, &Bound::Unbounded, true)
    );
    for (k, v) in model {
        assert_eq!(tree.get_at(snap, k, &guard).unwrap(), Some(&v[..]));
    }
}

fn run(config: TreeConfig, ops: Vec<Op>) {
    let tree = Tree::new(config).unwrap();
    let mut model = Model::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    for op in ops {
        let guard = tree.pin();
        match op {
            Op::Put(k, v) => {
                tree.put(&k, &v, &guard).unwrap();
                model.insert(k, v);
            }
            Op::Delete(k) => {
                tree.delete(&k, &guard).unwrap();
                model.remove(&k);
            }
            Op::Get(k) => assert_eq!(tree.get(&k, &guard).unwrap(), model.get(&k).map(|v| &v[..])),
            Op::Range(lo, hi, rev) => {
                let snap = tree.snapshot();
                assert_eq!(actual_range(&tree, &snap, &lo, &hi, rev), expected_range(&model, &lo, &hi, rev));
            }
            Op::TakeSnapshot => snapshots.push((tree.snapshot(), model.clone())),
            Op::CheckSnapshot(i) => {
                if let Some((snap, then)) = snapshots.get(i) {
                    check_everything(&tree, snap, then);
                }
            }
            Op::DropSnapshot(i) => {
                if i < snapshots.len() {
                    snapshots.swap_remove(i);
                }
            }
            Op::Compact => tree.compact(&guard),
        }
    }
    let guard = tree.pin();
    tree.check_invariants(&guard).unwrap();
    for (snap, then) in &snapshots {
        check_everything(&tree, snap, then);
    }
    check_everything(&tree, &tree.snapshot(), &model);
    tree.compact(&guard);
    tree.check_invariants(&guard).unwrap();
    check_everything(&tree, &tree.snapshot(), &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn matches_btreemap(config in config(), ops in proptest::collection::vec(op(), 1..400)) {
        run(config, ops);
    }
}

#[test]
fn splits_and_merges_happen_under_small_thresholds() {
    let config = TreeConfig::default().consolidate_chain(2).split_items(8).merge_items(2);
    let tree = Tree::new(config).unwrap();
    let guard = tree.pin();
    for i in 0u32..2000 {
        tree.put(&i.to_be_bytes(), b"v", &guard).unwrap();
    }
    for i in 0u32..2000 {
        tree.delete(&i.to_be_bytes(), &guard).unwrap();
    }
    tree.compact(&guard);
    let stats = tree.stats();
    assert!(stats.splits > 100, "{stats:?}");
    assert!(stats.merges > 100, "{stats:?}");
    assert!(stats.pages < 10, "{stats:?}");
    tree.check_invariants(&guard).unwrap();
    assert_eq!(tree.range::<[u8], _>(&tree.snapshot(), .., &guard).count(), 0);
}

#[test]
fn oversized_input_is_refused_and_changes_nothing() {
    let tree = Tree::new(TreeConfig::default().key_bytes_max(8).value_bytes_max(4)).unwrap();
    let guard = tree.pin();
    tree.put(b"k", b"v", &guard).unwrap();
    assert_eq!(tree.put(&[0; 9], b"v", &guard), Err(Error::KeyTooLarge { len: 9, max: 8 }));
    assert_eq!(tree.put(b"k", b"12345", &guard), Err(Error::ValueTooLarge { len: 5, max: 4 }));
    assert_eq!(tree.delete(&[0; 9], &guard), Err(Error::KeyTooLarge { len: 9, max: 8 }));
    assert_eq!(tree.get(&[0; 9], &guard), Err(Error::KeyTooLarge { len: 9, max: 8 }));
    assert_eq!(tree.get(b"k", &guard).unwrap(), Some(&b"v"[..]));
    let snap = tree.snapshot();
    let all: Vec<_> = tree.range::<[u8], _>(&snap, .., &guard).collect();
    assert_eq!(all, [(&b"k"[..], &b"v"[..])]);
    assert!(Error::KeyTooLarge { len: 9, max: 8 }.to_string().contains("9 bytes"));
}

#[test]
fn shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tree>();
    assert_send_sync::<Snapshot>();
    assert_send_sync::<helio_core::Mvcc>();
}
