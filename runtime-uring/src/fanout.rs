//! Work on every shard at once: one thread per shard on the real disk, one shard after another
//! on a simulated disk (whose seeded runs must repeat, so nothing there may race).

/// `work(i, &items[i])` for every item, in parallel if `parallel`; the results in order.
pub fn each<I: Sync, T: Send>(parallel: bool, items: &[I], work: impl Fn(usize, &I) -> T + Sync) -> Vec<T> {
    if !parallel {
        return items.iter().enumerate().map(|(i, item)| work(i, item)).collect();
    }
    std::thread::scope(|s| {
        let work = &work;
        let handles: Vec<_> =
            items.iter().enumerate().map(|(i, item)| s.spawn(move || work(i, item))).collect();
        handles.into_iter().map(|h| h.join().expect("a shard's thread panicked")).collect()
    })
}
