//! The committer: what makes a point of the store's one order of writes recoverable across its
//! shards (the decisions and the record formats are in `helio_core::log::cut`).
//!
//! A **round** seals the open write number (every write numbered at or below it is then in
//! its shard's log), reads every shard's log end, appends a commit record naming those ends to
//! one shard (its *home*: the writer's shard, or the one with the most unflushed bytes), and
//! has every shard with unflushed bytes below its end flushed. Once all of that is durable,
//! recovery's cut reaches the sealed number: the round's writes and every write before them
//! survive any crash, on every shard.
//!
//! - A `Sync` write, [`Committer::commit`], and the cleaner before it moves a head wait for a
//!   round that covers them: the last one begun, if it sealed their number, or one they begin.
//!   Beginning a round (seal, ends, record) is short and one at a time; its flushes are not:
//!   rounds overlap, and each shard's log merges the flushes that rounds ask of it into one
//!   group commit. A shard with nothing unflushed is not touched: an idle shard costs a round
//!   nothing and never holds the cut back.
//! - `Buffered` writes are covered by a round that waits for nothing, at most one per flush
//!   interval (on the real disk a ticker thread runs it; on a simulated disk, every
//!   [`INLINE_ROUND_EVERY`]th buffered write does, so that a seeded run repeats). The shards'
//!   own interval flushes make it durable.
//! - A batch whose parts were not all appended (a shard failed between two of them) must never
//!   be covered: the committer is poisoned then and takes no more rounds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use helio_core::log::cut::Commit;
use helio_core::log::frame::Kind;
use helio_core::Mvcc;

use crate::log::{Durability, IoFailure, Log, LogError};

/// On a simulated disk, a buffered round after this many buffered writes.
pub const INLINE_ROUND_EVERY: u64 = 16;

/// Makes points of the order of writes recoverable (see the module doc).
pub struct Committer {
    mvcc: Arc<Mvcc>,
    logs: Vec<Arc<Log>>,
    /// Every write numbered at or below this is recoverable.
    committed: AtomicU64,
    /// The newest round known to hold, as a commit: at or above `committed` whenever that is
    /// read (it is raised first).
    completed: Mutex<Commit>,
    /// The last round begun; rounds begin one at a time under this lock.
    latest: Mutex<Option<Arc<Round>>>,
    /// A buffered write since the last buffered round.
    buffered: AtomicBool,
    /// Buffered writes seen (on a simulated disk, where they pace the rounds).
    buffered_writes: AtomicU64,
    inline: bool,
    poison: OnceLock<Arc<IoFailure>>,
    ticker: Mutex<Option<Ticker>>,
}

/// The ticker thread and the flag (with its wake-up) that stops it.
type Ticker = (JoinHandle<()>, Arc<(Mutex<bool>, Condvar)>);

/// A round begun: its commit record is appended; it holds once every log is durable up to
/// its end.
struct Round {
    /// The sealed number it covers.
    sealed: u64,
    /// Each shard's log end it needs durable (the home's past the record).
    ends: Vec<u64>,
}

impl Committer {
    /// A committer over the logs of a store's shards, numbered as `mvcc` numbers writes.
    /// `real`: the logs are on the real disk, so a ticker thread runs buffered rounds every
    /// `interval`.
    pub fn new(mvcc: Arc<Mvcc>, logs: Vec<Arc<Log>>, real: bool, interval: Duration) -> Arc<Self> {
        let committer = Arc::new(Self {
            mvcc,
            latest: Mutex::new(None),
            logs,
            committed: AtomicU64::new(0),
            completed: Mutex::new(Commit::default()),
            buffered: AtomicBool::new(false),
            buffered_writes: AtomicU64::new(0),
            inline: !real,
            poison: OnceLock::new(),
            ticker: Mutex::new(None),
        });
        if real {
            committer.start_ticker(interval);
        }
        committer
    }

    fn start_ticker(self: &Arc<Self>, interval: Duration) {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (weak, stopping) = (Arc::downgrade(self), stop.clone());
        let spawned = std::thread::Builder::new().name("helio-commit".into()).spawn(move || loop {
            {
                let (lock, wake) = &*stopping;
                let stopped = wake.wait_timeout(lock.lock().unwrap(), interval).unwrap().0;
                if *stopped {
                    return;
                }
            }
            let Some(committer) = weak.upgrade() else { return };
            if committer.buffered.swap(false, Ordering::AcqRel) {
                // A failure poisons a shard, which its writers see; the next Sync round reports it.
                let _ = committer.buffered_round();
            }
        });
        // Without the thread, buffered writes wait for the next Sync round or close.
        if let Ok(handle) = spawned {
            *self.ticker.lock().unwrap() = Some((handle, stop));
        }
    }

    /// Returns once every write numbered at or below `through` is recoverable: waits for the
    /// last round begun if it covers `through`, or begins one (with `home` holding its commit
    /// record). `user`: a writer or `sync` waits (which turns on the logs' zero-filling ahead),
    /// not upkeep.
    pub fn commit(&self, home: usize, through: u64, user: bool) -> Result<(), LogError> {
        if self.committed.load(Ordering::Acquire) >= through {
            return Ok(());
        }
        self.check_poison()?;
        let round = {
            let mut latest = self.latest.lock().unwrap();
            match &*latest {
                Some(round) if round.sealed >= through => round.clone(),
                _ => {
                    let round = Arc::new(self.begin(home)?);
                    *latest = Some(round.clone());
                    round
                }
            }
        };
        // The home first: this thread may flush it itself (a log's leader); the others are
        // asked first, so that their flushes run meanwhile.
        let mut behind: Vec<usize> =
            (0..self.logs.len()).filter(|&i| self.logs[i].durable_lsn() < round.ends[i]).collect();
        behind.sort_by_key(|&i| i != home);
        for &i in behind.iter().skip(1) {
            self.logs[i].request_durable(round.ends[i]);
        }
        for &i in &behind {
            self.logs[i].wait_durable(round.ends[i], user)?;
        }
        {
            let mut completed = self.completed.lock().unwrap();
            if round.sealed > completed.sn {
                *completed = Commit { sn: round.sealed, ends: round.ends.clone() };
            }
        }
        self.committed.fetch_max(round.sealed, Ordering::AcqRel);
        Ok(())
    }

    /// The newest round known to hold, as a commit (every shard durable to its ends, which a
    /// recovery can take for granted): numbered at or above every write that a `commit` that
    /// returned before this call covered. No ends before the first.
    pub fn completed(&self) -> Commit {
        self.completed.lock().unwrap().clone()
    }

    /// Every write that returned before the call (or is in the tree: a reader may have seen
    /// it) is recoverable when this returns.
    pub fn commit_all(&self, home: usize, user: bool) -> Result<(), LogError> {
        // Such a write carries the open number at most: a round must seal that number.
        self.commit(home, self.mvcc.open_sn(), user)
    }

    /// Notes a `Buffered` write: a buffered round within the flush interval covers it.
    pub fn buffered(&self) {
        if !self.buffered.load(Ordering::Relaxed) {
            self.buffered.store(true, Ordering::Release);
        }
        if self.inline && self.buffered_writes.fetch_add(1, Ordering::Relaxed) % INLINE_ROUND_EVERY == 0 {
            let _ = self.buffered_round();
        }
    }

    /// Begins a round and asks each shard that needs it for its next interval flush, without
    /// waiting.
    fn buffered_round(&self) -> Result<(), LogError> {
        let round = {
            let mut latest = self.latest.lock().unwrap();
            let round = Arc::new(self.begin(self.busiest())?);
            *latest = Some(round.clone());
            round
        };
        for (log, &end) in self.logs.iter().zip(&round.ends) {
            if log.durable_lsn() < end {
                log.settle(end, Durability::Buffered)?;
            }
        }
        Ok(())
    }

    /// Begins a round (the caller holds `latest`): seals the open number, reads the ends and
    /// appends the commit record at `home`.
    fn begin(&self, home: usize) -> Result<Round, LogError> {
        let sealed = self.mvcc.seal();
        // A shard that failed may have lost part of a batch: cover nothing from here on.
        self.check_poison()?;
        for log in &self.logs {
            if let Some(failure) = log.poisoned() {
                return Err(LogError::Poisoned(failure));
            }
        }
        let mut ends: Vec<u64> = self.logs.iter().map(|log| log.appended()).collect();
        // Always a record, even when no log grew since the last round: writes numbered above
        // the last commit may lie below the ends it named (they may append between its seal
        // and its reading of the ends), and only a commit with a larger number covers them.
        let commit = Commit { sn: sealed, ends: ends.clone() };
        ends[home] = self.logs[home].append(Kind::Commit, &commit.encode(), Durability::None)?;
        Ok(Round { sealed, ends })
    }

    /// The shard with the most bytes not yet durable (the first if none has any).
    fn busiest(&self) -> usize {
        let pending = |log: &Arc<Log>| log.appended().saturating_sub(log.durable_lsn());
        (0..self.logs.len()).max_by_key(|&i| (pending(&self.logs[i]), std::cmp::Reverse(i))).unwrap_or(0)
    }

    /// Takes no more rounds: a batch was left half appended (`failure` says why).
    pub fn poison(&self, failure: IoFailure) {
        let _ = self.poison.set(Arc::new(failure));
    }

    /// Fails once a batch was left half appended: the store takes no more writes then.
    pub fn check_poison(&self) -> Result<(), LogError> {
        match self.poison.get() {
            Some(failure) => Err(LogError::Poisoned(failure.clone())),
            None => Ok(()),
        }
    }

    /// Stops the ticker thread (the store is closing).
    pub fn stop(&self) {
        if let Some((handle, stop)) = self.ticker.lock().unwrap().take() {
            *stop.0.lock().unwrap() = true;
            stop.1.notify_all();
            // The ticker itself may hold the last reference, and so run this: it is stopping.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop();
    }
}
