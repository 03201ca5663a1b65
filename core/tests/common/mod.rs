//! What the model tests share: the model and what a range of it holds.

use std::collections::BTreeMap;
use std::ops::Bound;

/// The model of a tree's latest state (or of a snapshot's).
pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// The entries of `lo..hi` in the model, in key order or (`rev`) backwards; none for a range
/// whose bounds cross, as the tree's iterators give.
pub fn expected_range(
    model: &Model,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    rev: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let valid = match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a < b,
        _ => true,
    };
    if !valid {
        return Vec::new();
    }
    let items = model.range::<Vec<u8>, _>((lo.clone(), hi.clone())).map(|(k, v)| (k.clone(), v.clone()));
    if rev {
        items.rev().collect()
    } else {
        items.collect()
    }
}
