//! YCSB's workloads A–F on the runner's key space.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::ops::PROGRESS_STEP;
use super::{Context, ThreadResult};
use crate::runner::engine::Write;
use crate::runner::keys::{unit, Zipfian};
use crate::runner::spec::Workload;
use crate::runner::Result;
use crate::Rng;

impl Context<'_> {
    /// One thread's share of a YCSB workload.
    pub(super) fn ycsb(
        &self,
        w: Workload,
        zipf: Option<&Zipfian>,
        seed: u64,
        count: u64,
        r: &mut ThreadResult,
        stop: &AtomicBool,
    ) -> Result<()> {
        let space = self.space();
        let n = self.spec.keys;
        let generation = self.generation.load(Ordering::Relaxed);
        let mut rng = Rng::new(seed);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        let (read_percent, write_kind) = match w {
            Workload::YcsbA => (50, "update"),
            Workload::YcsbB => (95, "update"),
            Workload::YcsbC => (100, "update"),
            Workload::YcsbD | Workload::YcsbE => (95, "insert"),
            _ => (50, "read-modify-write"),
        };
        for done in 0..count {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let u = unit(rng.next_u64());
            // YCSB D skews by recency: its Zipfian rank (0 = newest) is not scrambled.
            let pick = match zipf {
                Some(z) if w == Workload::YcsbD => z.rank(u),
                Some(z) => z.index(u),
                None => (u * n as f64) as u64 % n,
            };
            let reading = rng.below(100) < read_percent;
            if reading && w == Workload::YcsbE {
                let len = 1 + rng.below(self.spec.scan_len as u64) as usize;
                self.scan_from(pick, len, r, w.name())?;
                continue;
            }
            if reading {
                let i = if w == Workload::YcsbD { self.latest(pick) } else { pick };
                self.read_one(i, &mut key, &mut value, r, w.name())?;
            } else {
                let i = match write_kind {
                    "insert" => match self.presence.claim_insert() {
                        Some(i) => i,
                        None => pick,
                    },
                    "read-modify-write" => {
                        self.read_one(pick, &mut key, &mut value, r, w.name())?;
                        pick
                    }
                    _ => pick,
                };
                if !self.presence.is_present(i) && i < self.presence.inserted_base() {
                    continue;
                }
                space.key(i, &mut key);
                space.value(i, generation, &mut value);
                let started = Instant::now();
                self.engine.write(&[Write::Put(&key, &value)], self.spec.durability)?;
                r.record(started, 1);
                self.presence.set(i, true);
                r.user_write_bytes += self.spec.entry_bytes();
            }
            if done % PROGRESS_STEP == PROGRESS_STEP - 1 {
                self.progress.inc(PROGRESS_STEP);
            }
        }
        Ok(())
    }

    /// YCSB D's "latest" choice: the `rank`-th newest key (inserted keys first, then the loaded
    /// ones from the top; with the Zipfian distribution, low ranks are the likely ones).
    pub(super) fn latest(&self, rank: u64) -> u64 {
        let end = self.presence.insert_end();
        end - 1 - rank % end
    }
}
