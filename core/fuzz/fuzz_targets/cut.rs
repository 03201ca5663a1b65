//! Recovery's one cut across shards (`log::cut`): `History::decode` and `Commit::decode` of
//! arbitrary bytes and of valid encodings damaged as the input says, `ShardScan::push` over
//! records of every kind, and `plan` over small histories and shard scans, recovery after
//! recovery (each plan's history the next one's input).
//!
//! Checks:
//! - `History::decode` agrees with a reference decoder written from the byte table in
//!   `cut.rs` (magic, version, checksum, the store's shard count, exact length, void ranges
//!   nonempty and in ascending order), for every shard count; whatever decodes encodes back to
//!   the same bytes; a valid history encodes to bytes that decode to it.
//! - `Commit::decode` agrees with a reference decoder, and whatever decodes encodes back to
//!   the same bytes.
//! - `ShardScan::push` takes the largest write or commit number and the commits in order, and
//!   refuses exactly the records that do not parse as far as their number.
//! - `plan` never panics; a commit naming another number of shards is `ShardCount`; otherwise
//!   the cut is at least the history's, and it is the history's cut or the number of a commit
//!   every shard's log reaches (each end at or below the scan's end) that no void range holds,
//!   and no such commit lies beyond it; the next number is above every scan's largest, above
//!   the cut and not below the history's; `keeps` is "at or below the cut, outside the void
//!   ranges". From a history a recovery can leave (every void range at or below the cut but
//!   the last, which may start at it; none past the next number), the new history is one too,
//!   it round-trips through its file, every number above the cut that a log holds is void in
//!   it, every number an earlier recovery dropped stays void until every head has passed the
//!   ends recorded with it, and every range in it is either one of those or the range recorded
//!   now.
//!
//! Input: `u8 mode`, then that mode's values.
#![no_main]

use helio_core::log::batch::BatchWriter;
use helio_core::log::crc32c_of;
use helio_core::log::cut::{plan, Commit, CutError, History, Malformed, ShardScan, Void};
use helio_core::log::frame::Kind;
use helio_core_fuzz::{
    commit_checked, op_payload, page_payload, reference_commit, reference_write_sn, Input, KINDS,
};
use libfuzzer_sys::fuzz_target;

/// The most shards a generated store has.
const SHARDS_MAX: usize = 4;

const MAGIC: &[u8; 8] = b"HELIOCUT";

fn le32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().unwrap())
}

fn le64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// `History::decode` written plainly from the byte table: `"HELIOCUT", u32 version (1), u32
/// crc32c of what follows, u64 cut, u64 next_sn, u32 shards, u32 voids, voids × (u64 after,
/// u64 before, shards × u64 end)`, the ranges nonempty and in ascending order.
fn reference_history(bytes: &[u8], shards: usize) -> Result<History, CutError> {
    let corrupt = Err(CutError::Corrupt);
    if bytes.len() < 16 || &bytes[..8] != MAGIC || le32(&bytes[8..]) != 1 {
        return corrupt;
    }
    let body = &bytes[16..];
    if crc32c_of(body) != le32(&bytes[12..]) || body.len() < 20 {
        return corrupt;
    }
    let found = le32(&body[16..]) as usize;
    if found != shards {
        return Err(CutError::ShardCount { found, expected: shards });
    }
    if body.len() < 24 {
        return corrupt;
    }
    let count = u64::from(le32(&body[20..]));
    let each = 16 + 8 * shards as u64;
    if (body.len() - 24) as u64 != count * each {
        return corrupt;
    }
    let voids: Vec<Void> = body[24..]
        .chunks(each as usize)
        .map(|v| Void { after: le64(v), before: le64(&v[8..]), ends: v[16..].chunks(8).map(le64).collect() })
        .collect();
    if !well_ordered(&voids) {
        return corrupt;
    }
    Ok(History { cut: le64(body), next_sn: le64(&body[8..]), voids })
}

/// Void ranges as a history file may hold them: each nonempty, each after the one before.
fn well_ordered(voids: &[Void]) -> bool {
    voids.iter().all(|v| v.after < v.before) && voids.windows(2).all(|w| w[0].before <= w[1].after)
}

/// A history as a recovery leaves it: its void ranges in order, all at or below its cut but
/// the last, which may start at the cut; none past its next number.
fn reachable(history: &History) -> bool {
    well_ordered(&history.voids)
        && history.voids.iter().all(|v| {
            v.before <= history.next_sn
                && (v.after == history.cut || v.after < history.cut && v.before <= history.cut)
        })
}

/// Whether `sn` is in one of the history's void ranges, written plainly.
fn void_in(history: &History, sn: u64) -> bool {
    history.voids.iter().any(|v| v.after < sn && sn < v.before)
}

/// `History::decode` of `bytes` for every shard count, checked against the reference; a
/// history that decodes encodes back to the same bytes. Returns the answer for `shards`.
fn history_checked(bytes: &[u8], shards: usize) -> Result<History, CutError> {
    for other in 0..=SHARDS_MAX + 1 {
        let got = History::decode(bytes, other);
        assert_eq!(got, reference_history(bytes, other), "History::decode disagrees for {other} shards");
        if let Ok(history) = &got {
            assert_eq!(history.encode(other), bytes, "a history re-encodes to other bytes");
        }
    }
    History::decode(bytes, shards)
}

/// A write number for `plan`'s inputs (`u64::MAX` included: `plan` refuses it).
fn number(input: &mut Input<'_>) -> u64 {
    input.sn()
}

/// A log position from the input: small, so that heads, ends and the ends commits and void
/// ranges name meet.
fn position(input: &mut Input<'_>) -> u64 {
    u64::from(input.u8()) * 16
}

/// A history of `shards` shards from the input: void ranges in ascending order (anywhere, when
/// `loose`: then it may not decode), a cut and a next number near them or anywhere.
fn history_from(input: &mut Input<'_>, shards: usize, loose: bool) -> History {
    let mut voids = Vec::new();
    let mut at = u64::from(input.u8() % 8);
    for _ in 0..input.u8() % 4 {
        let (after, before) = if loose {
            (input.sn(), input.sn())
        } else {
            let after = at.saturating_add(u64::from(input.u8() % 8));
            (after, after.saturating_add(1 + u64::from(input.u8() % 12)))
        };
        if after >= before && !loose {
            break;
        }
        voids.push(Void { after, before, ends: (0..shards).map(|_| position(input)).collect() });
        at = before;
    }
    let shape = input.u8();
    let cut = match shape % 4 {
        // As a recovery leaves it: the last range starts at the cut, or all lie below it.
        0 => voids.last().map_or(at, |v: &Void| v.after),
        1 => at.saturating_add(u64::from(input.u8() % 8)),
        _ => number(input),
    };
    let next_sn = match (shape >> 2) % 3 {
        0 => at.max(cut.saturating_add(1)),
        1 => at.max(cut.saturating_add(1)).saturating_add(u64::from(input.u8() % 8)),
        _ => input.sn(),
    };
    History { cut, next_sn, voids }
}

/// The file bytes of a valid history from the input (or an invalid one, loose), damaged as the
/// input says.
fn damaged_history(input: &mut Input<'_>, shards: usize, how: u8) -> (History, Vec<u8>, bool) {
    let history = history_from(input, shards, how & 1 != 0);
    let mut bytes = history.encode(shards);
    let mut damaged = false;
    for _ in 0..(how >> 1) % 4 {
        damaged = true;
        let at = usize::from(input.u16()) % bytes.len();
        bytes[at] ^= input.u8().max(1);
    }
    if how & 0x10 != 0 {
        // A field overwritten: the version, the shard or void count, a number.
        damaged = true;
        let at = [8, 16, 24, 32, 36, 40, 48][usize::from(input.u8()) % 7];
        let word = input.u32().to_le_bytes();
        let at = at.min(bytes.len());
        let n = word.len().min(bytes.len() - at);
        bytes[at..at + n].copy_from_slice(&word[..n]);
    }
    if how & 0x20 != 0 {
        // Cut short or with bytes after it.
        damaged = true;
        let len = usize::from(input.u16()) % (bytes.len() + 24);
        bytes.resize(len, input.u8());
    }
    if how & 0x40 != 0 && bytes.len() >= 16 {
        // The checksum made right again after the damage: only the field checks are left.
        let crc = crc32c_of(&bytes[16..]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    }
    (history, bytes, damaged)
}

/// A few numbers near the interesting ones, to probe `keeps` and void ranges with.
fn probes(history: &History, scans: &[ShardScan], cut: u64, next_sn: u64) -> Vec<u64> {
    let mut out: Vec<u64> = (0..=16).collect();
    let mut near = |n: u64| out.extend([n.saturating_sub(1), n, n.saturating_add(1)]);
    for n in [history.cut, history.next_sn, cut, next_sn, u64::MAX] {
        near(n);
    }
    for v in &history.voids {
        near(v.after);
        near(v.before);
    }
    for scan in scans {
        near(scan.max_sn);
        for commit in &scan.commits {
            near(commit.sn);
        }
    }
    out
}

/// Numbers of `lo..=hi`, the first and last few of them.
fn sample(lo: u64, hi: u64) -> impl Iterator<Item = u64> {
    let first = (lo <= hi).then(|| lo..=hi.min(lo.saturating_add(24))).into_iter().flatten();
    let last = (lo <= hi).then(|| hi.saturating_sub(24).max(lo)..=hi).into_iter().flatten();
    first.chain(last)
}

/// `plan(history, scans)`, checked; the plan's history, if it planned.
fn plan_checked(history: &History, scans: &[ShardScan]) -> Option<History> {
    let shards = scans.len();
    let result = plan(history, scans);
    // What the failure message names.
    let case = || format!("(history {history:?}, scans {scans:?})");
    let commits: Vec<&Commit> = scans.iter().flat_map(|s| &s.commits).collect();
    if let Some(c) = commits.iter().find(|c| c.ends.len() != shards) {
        assert_eq!(result, Err(CutError::ShardCount { found: c.ends.len(), expected: shards }), "{}", case());
        return None;
    }
    let spent = [history.cut, history.next_sn].into_iter().chain(scans.iter().map(|s| s.max_sn));
    if spent.chain(commits.iter().map(|c| c.sn)).any(|sn| sn == u64::MAX) {
        assert_eq!(result, Err(CutError::Exhausted), "{}", case());
        return None;
    }
    let plan =
        result.unwrap_or_else(|e| panic!("no plan ({e:?}) though every commit names every shard {}", case()));
    let (cut, next_sn) = (plan.cut, plan.next_sn);
    let reached = |c: &Commit| c.ends.iter().zip(scans).all(|(&end, scan)| end <= scan.end);
    let valid = |c: &Commit| reached(c) && !void_in(history, c.sn);
    assert!(cut >= history.cut, "the cut {cut} is below the history's {} {}", history.cut, case());
    assert!(
        cut == history.cut || commits.iter().any(|c| valid(c) && c.sn == cut),
        "the cut {cut} is neither the history's nor a valid commit's {}",
        case()
    );
    if let Some(c) = commits.iter().find(|c| valid(c) && c.sn > cut) {
        panic!("the commit {c:?} is valid, beyond the cut {cut} {}", case());
    }
    let newest = scans.iter().map(|s| s.max_sn).max().unwrap_or(0);
    assert!(next_sn > newest, "the next number {next_sn} is not above the logs' largest {newest} {}", case());
    assert!(next_sn > cut, "the next number {next_sn} is not above the cut {cut} {}", case());
    assert!(next_sn >= history.next_sn, "the next number {next_sn} is below the history's {}", case());
    assert_eq!((plan.history.cut, plan.history.next_sn), (cut, next_sn), "{}", case());
    if well_ordered(&plan.history.voids) {
        for sn in probes(&plan.history, scans, cut, next_sn) {
            assert_eq!(plan.keeps(sn), sn <= cut && !void_in(&plan.history, sn), "keeps({sn}) {}", case());
        }
    }
    if !reachable(history) {
        return Some(plan.history);
    }

    // From a history a recovery can leave.
    let new = &plan.history;
    assert!(reachable(new), "a recovery left {new:?} {}", case());
    assert_eq!(
        History::decode(&new.encode(shards), shards).as_ref(),
        Ok(new),
        "the new history's file {}",
        case()
    );
    for sn in sample(cut.saturating_add(1), newest) {
        assert!(void_in(new, sn), "{sn}, beyond the cut {cut} and in a log, is not void {}", case());
    }
    let passed = |v: &Void| v.ends.iter().zip(scans).all(|(&end, scan)| end <= scan.head);
    for v in history.voids.iter().filter(|v| !passed(v)) {
        for sn in sample(v.after.saturating_add(1), v.before.saturating_sub(1)) {
            assert!(
                void_in(new, sn),
                "{sn} was dropped, the heads have not passed it, and it came back {}",
                case()
            );
        }
    }
    let ends: Vec<u64> = scans.iter().map(|s| s.end).collect();
    for v in &new.voids {
        let now = v.after == cut && v.before == next_sn && v.ends == ends;
        assert!(
            now || history.voids.contains(v) && !passed(v),
            "the void range {v:?} came from nowhere {}",
            case()
        );
    }
    if newest <= cut {
        let kept: Vec<&Void> = history.voids.iter().filter(|v| !passed(v)).collect();
        assert_eq!(
            new.voids.iter().collect::<Vec<_>>(),
            kept,
            "nothing was dropped, yet the ranges changed {}",
            case()
        );
    }
    Some(plan.history)
}

/// The scans of `shards` shards' logs from the input: heads and ends, commits naming ends at,
/// below or beyond the logs' ends (now and then another number of shards), the largest number.
fn scans_from(input: &mut Input<'_>, shards: usize) -> Vec<ShardScan> {
    let mut scans: Vec<ShardScan> = (0..shards)
        .map(|_| {
            let head = position(input);
            ShardScan { head, end: head + position(input), ..ShardScan::default() }
        })
        .collect();
    let ends: Vec<u64> = scans.iter().map(|s| s.end).collect();
    for scan in &mut scans {
        for _ in 0..input.u8() % 4 {
            let how = input.u8();
            let count = match how >> 6 {
                0 if how & 0x20 != 0 => shards + 1,
                0 if how & 0x10 != 0 => shards.saturating_sub(1),
                _ => shards,
            };
            let sn = number(input);
            let commit_ends = (0..count)
                .map(|i| {
                    let end = ends.get(i).copied().unwrap_or(0);
                    match input.u8() % 4 {
                        0 | 1 => end,
                        2 => end.saturating_sub(16 * u64::from(input.u8() % 4)),
                        _ => end + 16 * u64::from(1 + input.u8() % 4),
                    }
                })
                .collect();
            scan.commits.push(Commit { sn, ends: commit_ends });
        }
        let sn = number(input);
        // As a scan finds it (at least every commit's number), or anything.
        let highest = scan.commits.iter().map(|c| c.sn).max().unwrap_or(0);
        scan.max_sn = if sn & 1 == 0 { sn.max(highest) } else { sn };
    }
    scans
}

/// A record of `kind` from the input: valid as its kind, or any bytes.
fn record(input: &mut Input<'_>, kind: Kind, raw: bool) -> Vec<u8> {
    if raw {
        return input.vec(60);
    }
    match kind {
        Kind::Put => op_payload(input.sn(), &input.vec(8), Some(&input.vec(16))),
        Kind::Delete => op_payload(input.sn(), &input.vec(8), None),
        Kind::Relocated | Kind::Batch => {
            let mut batch = BatchWriter::new();
            batch.set_sn(input.sn());
            for _ in 0..input.u8() % 3 {
                batch.push(&input.vec(8), &input.vec(16));
            }
            batch.payload().to_vec()
        }
        Kind::Commit => {
            let sn = input.sn();
            Commit { sn, ends: (0..input.u8() % 4).map(|_| input.u64()).collect() }.encode()
        }
        Kind::PageImage | Kind::PageDelta => page_payload(input, kind == Kind::PageDelta),
        _ => input.vec(40),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    match input.u8() % 4 {
        0 => {
            // Raw bytes as a history file (as they are, or behind a valid header so that the
            // fuzzer need not find the checksum) and as a commit.
            let flags = input.u8();
            let shards = usize::from(flags) % (SHARDS_MAX + 1);
            let rest = input.rest();
            let bytes = if flags & 0x80 != 0 {
                [&MAGIC[..], &1u32.to_le_bytes(), &crc32c_of(rest).to_le_bytes(), rest].concat()
            } else {
                rest.to_vec()
            };
            let _ = history_checked(&bytes, shards);
            commit_checked(rest);
        }
        1 => {
            // A history's file and a commit, written and then damaged.
            let shards = usize::from(input.u8()) % (SHARDS_MAX + 1);
            let how = input.u8();
            let (history, bytes, damaged) = damaged_history(&mut input, shards, how);
            let got = history_checked(&bytes, shards);
            if !damaged {
                match got {
                    Ok(back) => assert_eq!(back, history, "a history's file decodes to another"),
                    Err(e) => {
                        assert!(!well_ordered(&history.voids), "a valid history's file is refused: {e:?}")
                    }
                }
            }
            let sn = input.sn();
            let commit = Commit { sn, ends: (0..input.u8() % 6).map(|_| input.u64()).collect() };
            let mut payload = commit.encode();
            assert_eq!(commit_checked(&payload), Some(commit));
            for _ in 0..input.u8() % 3 {
                let at = usize::from(input.u8()) % payload.len();
                payload[at] ^= input.u8().max(1);
            }
            payload.truncate(payload.len() - usize::from(input.u8() % 2) * 8);
            commit_checked(&payload);
        }
        2 => {
            // Recovery after recovery: each plan's history, read back from its file, is the
            // next one's (a history that does not read back, from a history no recovery leaves,
            // ends the run as it would end the store's next open).
            let shards = usize::from(input.u8()) % (SHARDS_MAX + 1);
            let mut history = if input.u8() & 1 == 0 {
                History::default()
            } else {
                history_from(&mut input, shards, false)
            };
            for _ in 0..1 + input.u8() % 4 {
                let scans = scans_from(&mut input, shards);
                let Some(next) = plan_checked(&history, &scans) else { break };
                match History::decode(&next.encode(shards), shards) {
                    Ok(next) => history = next,
                    Err(_) => break,
                }
                if input.is_empty() {
                    break;
                }
            }
        }
        _ => {
            // Recovery's first pass over one log.
            let head = input.u64();
            let mut scan = ShardScan::new(head);
            assert_eq!(scan, ShardScan { head, end: head, ..ShardScan::default() });
            let (mut max_sn, mut commits) = (0u64, Vec::new());
            for _ in 0..32 {
                if input.is_empty() {
                    break;
                }
                let choice = input.u8();
                let kind = KINDS[usize::from(choice) % KINDS.len()];
                let payload = record(&mut input, kind, choice & 0x80 != 0);
                let want = match reference_write_sn(kind, &payload) {
                    None => Err(Malformed { kind }),
                    Some(sn) => {
                        if let Some(commit) = reference_commit(&payload).filter(|_| kind == Kind::Commit) {
                            max_sn = max_sn.max(commit.sn);
                            commits.push(commit);
                        }
                        max_sn = max_sn.max(sn.unwrap_or(0));
                        // A page record's snapshot counts too: the next life numbers past it.
                        if matches!(kind, Kind::PageImage | Kind::PageDelta) {
                            max_sn =
                                max_sn.max(helio_core_fuzz::reference_page(&payload).expect("checked").sn);
                        }
                        Ok(())
                    }
                };
                assert_eq!(scan.push(kind, &payload), want, "ShardScan::push of a {kind:?}");
                assert_eq!((scan.head, scan.end, scan.max_sn), (head, head, max_sn));
                assert_eq!(scan.commits, commits);
            }
        }
    }
});
