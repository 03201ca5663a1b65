//! Replay: `replay::Replay::apply` of records built from the input (ops, relocated and batch
//! records, commits, pads, payloads of any kind that do not parse, keys and values over the
//! tree's limits) into a tree with small pages (so that replay splits and consolidates them),
//! applying everything (`Replay::new`) or only what a recovery's plan keeps
//! (`Replay::with_plan`, a cut and void ranges from the input).
//!
//! Checks against a map: each record is applied in order; with a plan, a record whose write
//! number the plan refuses (above the cut, or in a void range) is dropped and counted, whatever
//! follows its number, and one that does not parse as far as its number is `Malformed`;
//! otherwise a malformed record is `Malformed` of its kind (a relocated or batch record's
//! entries before the damage are applied, a batch's removals delete), one over the limits is
//! `Refused`, a commit or a page record changes nothing; the counts match, the tree holds exactly the map at the
//! end, and its invariants hold.
//!
//! Input: `u8 mode` (bit 0: with a plan, then its cut and void ranges), then records until it
//! runs out, each a `u8` choice and its values.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use helio_core::log::batch::BatchWriter;
use helio_core::log::cut::{Commit, History, Plan, Void};
use helio_core::log::frame::Kind;
use helio_core::log::replay::{Replay, ReplayError, ReplayStats};
use helio_core::{Collector, Mvcc, Tree, TreeConfig};
use helio_core_fuzz::{
    op_payload, page_payload, reference_commit, reference_entries, reference_op, reference_ops,
    reference_page, reference_write_sn, Entry, Input,
};
use libfuzzer_sys::fuzz_target;

const KEY_MAX: usize = 24;
const VALUE_MAX: usize = 64;

fn refused(tree: &Tree, key: &[u8], value: Option<&[u8]>) -> Option<ReplayError> {
    tree.check_write(key, value).err().map(ReplayError::Refused)
}

/// A recovery's plan from the input: a cut, and void ranges in ascending order.
fn plan_from(input: &mut Input<'_>) -> Plan {
    let cut = input.sn();
    let mut voids = Vec::new();
    let mut at = u64::from(input.u8() % 8);
    for _ in 0..input.u8() % 4 {
        let after = at.saturating_add(u64::from(input.u8() % 8));
        let before = after.saturating_add(1 + u64::from(input.u8() % 12));
        if before == after {
            break;
        }
        voids.push(Void { after, before, ends: Vec::new() });
        at = before;
    }
    let next_sn = cut.saturating_add(1);
    Plan { cut, next_sn, history: History { cut, next_sn, voids } }
}

/// The plan's rule, written plainly.
fn keeps(plan: &Plan, sn: u64) -> bool {
    sn <= plan.cut && !plan.history.voids.iter().any(|v| v.after < sn && sn < v.before)
}

/// Relocated entries as batch entries.
fn puts<'a>(entries: Vec<(&'a [u8], &'a [u8])>) -> Vec<Entry<'a>> {
    entries.into_iter().map(|(k, v)| (k, Some(v))).collect()
}

/// A batch or relocated record's payload from the input (removals only in batches), cut short
/// when `cut`.
fn batch_payload(input: &mut Input<'_>, removals: bool, cut: bool) -> Vec<u8> {
    let mut batch = BatchWriter::new();
    batch.set_sn(input.sn());
    for _ in 0..1 + input.u8() % 5 {
        let key = input.vec(KEY_MAX + 2);
        if removals && input.u8().is_multiple_of(3) {
            batch.push_op(&key, None);
        } else {
            batch.push(&key, &input.vec(VALUE_MAX + 4));
        }
    }
    let mut payload = batch.payload().to_vec();
    if cut {
        // Cut short: the entries before the cut apply, then it is malformed.
        payload.truncate(usize::from(input.u16()) % (payload.len() + 1));
    }
    payload
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
    let plan = (input.u8() & 1 != 0).then(|| plan_from(&mut input));
    let mut replay = match &plan {
        Some(plan) => Replay::with_plan(&tree, plan),
        None => Replay::new(&tree),
    };
    let mut map: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut stats = ReplayStats::default();
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let choice = input.u8();
        let (kind, payload) = match choice % 8 {
            0 | 1 => {
                (Kind::Put, op_payload(input.sn(), &input.vec(KEY_MAX + 2), Some(&input.vec(VALUE_MAX + 4))))
            }
            2 => (Kind::Delete, op_payload(input.sn(), &input.vec(KEY_MAX + 2), None)),
            3 => (Kind::Relocated, batch_payload(&mut input, false, choice & 0x80 != 0)),
            4 => (Kind::Pad, input.vec(40)),
            5 => (Kind::Batch, batch_payload(&mut input, true, choice & 0x80 != 0)),
            6 => {
                let sn = input.sn();
                let mut payload =
                    Commit { sn, ends: (0..input.u8() % 4).map(|_| input.u64()).collect() }.encode();
                if choice & 0x80 != 0 {
                    payload.truncate(usize::from(input.u8()) % (payload.len() + 1));
                }
                (Kind::Commit, payload)
            }
            _ if choice & 0x40 != 0 => {
                let kind = if choice & 0x80 != 0 { Kind::PageDelta } else { Kind::PageImage };
                (kind, page_payload(&mut input, kind == Kind::PageDelta))
            }
            _ => (
                [
                    Kind::Put,
                    Kind::Delete,
                    Kind::Relocated,
                    Kind::Fragment,
                    Kind::Batch,
                    Kind::Commit,
                    Kind::PageImage,
                    Kind::PageDelta,
                ][usize::from(choice >> 3) % 8],
                input.vec(120),
            ),
        };

        // What replay must do. With a plan, the record's number decides first: dropped (counted,
        // whatever follows the number), or malformed if it does not parse as far as its number.
        let malformed = ReplayError::Malformed { kind };
        let decided = match &plan {
            Some(plan) => match reference_write_sn(kind, &payload) {
                None => Some(Err(malformed.clone())),
                Some(Some(sn)) if !keeps(plan, sn) => {
                    stats.dropped += 1;
                    Some(Ok(()))
                }
                Some(_) => None,
            },
            None => None,
        };
        let want = match decided {
            Some(answer) => answer,
            None => match kind {
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
                Kind::Relocated | Kind::Batch => {
                    let (entries, whole) = if kind == Kind::Batch {
                        match reference_ops(&payload) {
                            Ok(all) => (all, true),
                            Err(before) => (before, false),
                        }
                    } else {
                        match reference_entries(&payload) {
                            Ok(all) => (puts(all), true),
                            Err(before) => (puts(before), false),
                        }
                    };
                    let mut result = if whole { Ok(()) } else { Err(malformed) };
                    for (key, value) in entries {
                        if let Some(err) = refused(&tree, key, value) {
                            result = Err(err);
                            break;
                        }
                        match value {
                            Some(value) => map.insert(key.to_vec(), value.to_vec()),
                            None => map.remove(key),
                        };
                        if kind == Kind::Batch {
                            stats.batched += 1;
                        } else {
                            stats.relocated += 1;
                        }
                    }
                    result
                }
                Kind::Commit => reference_commit(&payload).map(|_| ()).ok_or(malformed),
                Kind::PageImage | Kind::PageDelta => reference_page(&payload).map(|_| ()).ok_or(malformed),
                Kind::Pad | Kind::Fragment => Ok(()),
                other => panic!("a kind the fuzz targets do not know yet: {other:?}"),
            },
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
