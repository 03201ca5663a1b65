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
//!   round that covers them. Rounds are one at a time; writers that arrive during one wait for
//!   it and share the next (group commit across shards). A shard with nothing unflushed is not
//!   touched: an idle shard costs a round nothing and never holds the cut back.
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
    state: Mutex<State>,
    turn: Condvar,
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

struct State {
    /// A round is running.
    leading: bool,
}

impl Committer {
    /// A committer over the logs of a store's shards, numbered as `mvcc` numbers writes.
    /// `real`: the logs are on the real disk, so a ticker thread runs buffered rounds every
    /// `interval`.
    pub fn new(mvcc: Arc<Mvcc>, logs: Vec<Arc<Log>>, real: bool, interval: Duration) -> Arc<Self> {
        let committer = Arc::new(Self {
            mvcc,
            state: Mutex::new(State { leading: false }),
            logs,
            committed: AtomicU64::new(0),
            turn: Condvar::new(),
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

    /// Returns once every write numbered at or below `through` is recoverable: runs a round
    /// (with `home` holding its commit record) or waits for one that covers it. `user`: a
    /// writer or `sync` waits (which turns on the logs' zero-filling ahead), not upkeep.
    pub fn commit(&self, home: usize, through: u64, user: bool) -> Result<(), LogError> {
        loop {
            if self.committed.load(Ordering::Acquire) >= through {
                return Ok(());
            }
            self.check_poison()?;
            let mut state = self.state.lock().unwrap();
            while state.leading && self.committed.load(Ordering::Acquire) < through {
                state = self.turn.wait(state).unwrap();
            }
            if self.committed.load(Ordering::Acquire) >= through {
                return Ok(());
            }
            state.leading = true;
            drop(state);
            let round = self.round(home, Some(user));
            let mut state = self.state.lock().unwrap();
            state.leading = false;
            if let Ok(sealed) = &round {
                self.committed.fetch_max(*sealed, Ordering::AcqRel);
            }
            self.turn.notify_all();
            drop(state);
            round?;
        }
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

    /// A round that waits for nothing, unless one is running already (which covers as much).
    fn buffered_round(&self) -> Result<(), LogError> {
        let mut state = self.state.lock().unwrap();
        if state.leading {
            return Ok(());
        }
        state.leading = true;
        drop(state);
        let home = self.busiest();
        let round = self.round(home, None);
        self.state.lock().unwrap().leading = false;
        self.turn.notify_all();
        round.map(drop)
    }

    /// One round: seal, read the ends, append the commit at `home`, then flush (waiting, as a
    /// `user` or for upkeep, if `wait` is given; otherwise asking the shards for their next
    /// interval flush). Returns the sealed number.
    fn round(&self, home: usize, wait: Option<bool>) -> Result<u64, LogError> {
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
        match wait {
            Some(user) => {
                let behind: Vec<usize> =
                    (0..self.logs.len()).filter(|&i| self.logs[i].durable_lsn() < ends[i]).collect();
                // Ask every shard first, so that their flushes run at once.
                for &i in &behind {
                    self.logs[i].request_durable(ends[i]);
                }
                for &i in &behind {
                    self.logs[i].wait_durable(ends[i], user)?;
                }
            }
            None => {
                for (log, &end) in self.logs.iter().zip(&ends) {
                    if log.durable_lsn() < end {
                        log.settle(end, Durability::Buffered)?;
                    }
                }
            }
        }
        Ok(sealed)
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

    fn check_poison(&self) -> Result<(), LogError> {
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
