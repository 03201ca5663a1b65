//! Replay: `replay::Replay::apply` of records built from the input (ops, relocated batches,
//! pads, payloads of any kind that do not parse, keys and values over the tree's limits) into a
//! tree with small pages (so that replay splits and consolidates them).
//!
//! Checks against a map: each record is applied in order, a malformed one is `Malformed` of
//! its kind (a relocated batch's entries before the damage are applied), one over the limits is
//! `Refused`; the counts match, the tree holds exactly the map at the end, and its invariants
//! hold.
//!
//! Input: records until it runs out, each a `u8` choice and its values.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use helio_core::log::batch::BatchWriter;
use helio_core::log::frame::{Kind, Op};
use helio_core::log::replay::{Replay, ReplayError, ReplayStats};
use helio_core::{Collector, Mvcc, Tree, TreeConfig};
use helio_core_fuzz::{reference_entries, reference_op, Input};
use libfuzzer_sys::fuzz_target;

const KEY_MAX: usize = 24;
const VALUE_MAX: usize = 64;

fn op_payload(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let op = Op { sn: 0, key, value };
    let mut out = vec![0; op.payload_len()];
    op.write_payload(&mut out);
    out
}

fn refused(tree: &Tree, key: &[u8], value: Option<&[u8]>) -> Option<ReplayError> {
    tree.check_write(key, value).err().map(ReplayError::Refused)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let config = TreeConfig::default()
        .split_items(4)
        .merge_items(1)
        .consolidate_chain(2)
        .read_consolidate_chain(2)
        .key_bytes_max(KEY_MAX as u32)
        .value_bytes_max(VALUE_MAX as u32);
    // A collector of its own, dropped with the tree at the end of the input, so that what the
    // tree's consolidations left to reclaim is freed then (with one guard per input, the global
    // collector reclaims more slowly than the inputs make garbage, and memory grows run-long).
    let tree =
        Tree::with_parts(config, Collector::new(), Arc::new(Mvcc::new())).expect("a valid configuration");
    let guard = tree.pin();
    let mut replay = Replay::new(&tree);
    let mut map: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut stats = ReplayStats::default();
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let choice = input.u8();
        let (kind, payload) = match choice % 6 {
            0 | 1 => (Kind::Put, op_payload(&input.vec(KEY_MAX + 2), Some(&input.vec(VALUE_MAX + 4)))),
            2 => (Kind::Delete, op_payload(&input.vec(KEY_MAX + 2), None)),
            3 => {
                let mut batch = BatchWriter::new();
                for _ in 0..1 + input.u8() % 5 {
                    batch.push(&input.vec(KEY_MAX + 2), &input.vec(VALUE_MAX + 4));
                }
                let mut payload = batch.payload().to_vec();
                if choice & 0x80 != 0 {
                    // Cut short: the entries before the cut apply, then it is malformed.
                    payload.truncate(usize::from(input.u16()) % (payload.len() + 1));
                }
                (Kind::Relocated, payload)
            }
            4 => (Kind::Pad, input.vec(40)),
            _ => (
                [Kind::Put, Kind::Delete, Kind::Relocated, Kind::Fragment][usize::from(choice >> 3) % 4],
                input.vec(120),
            ),
        };

        // What replay must do.
        let malformed = ReplayError::Malformed { kind };
        let want = match kind {
            Kind::Put | Kind::Delete => match reference_op(kind, &payload) {
                None => Err(malformed),
                Some(op) => match refused(&tree, op.key, op.value) {
                    Some(err) => Err(err),
                    None => {
                        match op.value {
                            Some(value) => map.insert(op.key.to_vec(), value.to_vec()),
                            None => map.remove(op.key),
                        };
                        stats.ops += 1;
                        Ok(())
                    }
                },
            },
            Kind::Relocated => {
                let (entries, whole) = match reference_entries(&payload) {
                    Ok(all) => (all, true),
                    Err(before) => (before, false),
                };
                let mut result = if whole { Ok(()) } else { Err(malformed) };
                for (key, value) in entries {
                    if let Some(err) = refused(&tree, key, Some(value)) {
                        result = Err(err);
                        break;
                    }
                    map.insert(key.to_vec(), value.to_vec());
                    stats.relocated += 1;
                }
                result
            }
            Kind::Pad | Kind::Fragment => Ok(()),
            other => panic!("a kind the fuzz targets do not know yet: {other:?}"),
        };
        let got = replay.apply(kind, &payload, &guard);
        assert_eq!(got, want, "replay of a {kind:?} record");
        assert_eq!(replay.stats(), stats);
    }
    let snapshot = tree.snapshot();
    let held: BTreeMap<Vec<u8>, Vec<u8>> =
        tree.range::<[u8], _>(&snapshot, .., &guard).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    assert_eq!(held, map, "the tree after replay");
    for (key, value) in &map {
        assert_eq!(tree.get(key, &guard).unwrap(), Some(&value[..]));
    }
    tree.check_invariants(&guard).expect("tree invariants after replay");
});
