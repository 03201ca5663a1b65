//! The cycle plan of the SIGKILL crash tests (`crash.rs`, `crash_store.rs`): how many cycles a
//! test runs, its random kill times, and the lines it prints.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{KillAt, Rng};

/// The environment variable that tells a child its number (1, 2, ... over the test's cycles).
pub const CHILD_NUMBER_ENV: &str = "HELIO_CRASH_CHILD";

/// This child's number, from [`CHILD_NUMBER_ENV`].
pub fn child_number() -> u64 {
    std::env::var(CHILD_NUMBER_ENV).unwrap().parse().unwrap()
}

/// splitmix64: spreads a seed's bits.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The environment variable `name`, if it is set to something other than white space.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// How many cycles a test runs and with which kill times.
pub struct Plan {
    pub test: &'static str,
    pub seed: u64,
    rng: Rng,
    cycles: u64,
    seconds: Option<f64>,
    start: Instant,
    /// When a timed run last said how far it had come.
    reported: Instant,
}

impl Plan {
    /// The plan of `test`, which gets `share` percent of the cycles that the environment
    /// variable `cycles_env` names (`default_cycles` if it is not set); `HELIO_CRASH_SECONDS`
    /// makes it a timed run instead, `HELIO_CRASH_SEED` fixes the seed.
    pub fn new(test: &'static str, cycles_env: &str, default_cycles: u64, share: u64) -> Plan {
        let total = env_var(cycles_env).map_or(default_cycles, |v| {
            v.trim().parse().unwrap_or_else(|_| panic!("{cycles_env}={v}: not a number"))
        });
        let seconds = env_var("HELIO_CRASH_SECONDS").map(|v| {
            v.trim().parse::<f64>().unwrap_or_else(|_| panic!("HELIO_CRASH_SECONDS={v}: not a number"))
        });
        let seed = match env_var("HELIO_CRASH_SEED") {
            Some(v) => {
                let v = v.trim();
                match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => v.parse(),
                }
                .unwrap_or_else(|_| panic!("HELIO_CRASH_SEED={v}: not a number"))
            }
            None => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                mix(now.as_nanos() as u64 ^ u64::from(std::process::id()) << 40)
            }
        };
        // Each test draws from its own sequence, all from one seed.
        let salt = test.bytes().fold(0u64, |h, b| mix(h ^ u64::from(b)));
        let plan = Plan {
            test,
            seed,
            rng: Rng(mix(seed ^ salt) | 1),
            cycles: (total * share / 100).max(1),
            seconds,
            start: Instant::now(),
            reported: Instant::now(),
        };
        match seconds {
            // On a line of its own: the test harness's line may have no newline yet.
            Some(s) => println!("\n{test}: HELIO_CRASH_SEED={seed:#x}, cycles for {s} s"),
            None => println!("\n{test}: HELIO_CRASH_SEED={seed:#x}, {} cycles", plan.cycles),
        }
        plan
    }

    /// Whether to run another cycle after `done`. A timed run says how far it has come once a
    /// minute.
    pub fn more(&mut self, done: u64) -> bool {
        match self.seconds {
            Some(s) => {
                if self.reported.elapsed() >= Duration::from_secs(60) {
                    self.reported = Instant::now();
                    println!("{}: {done} cycles in {:.0} s", self.test, self.start.elapsed().as_secs_f64());
                }
                done == 0 || self.start.elapsed().as_secs_f64() < s
            }
            None => done < self.cycles,
        }
    }

    /// Names a cycle in a failure message.
    pub fn at(&self, cycle: u64) -> String {
        format!("{}, cycle {cycle}, HELIO_CRASH_SEED={:#x}", self.test, self.seed)
    }

    /// A random time from `low` to `high` milliseconds.
    pub fn ms(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.rng.next() % (high - low + 1))
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.rng.next() % n == 0
    }

    /// When to kill a child that takes about `first_ack` to its first acknowledgement: 50 to
    /// 300 ms after that acknowledgement if `long`; else half the time while it starts (1 ms to
    /// 1.5 times `first_ack` after its start), half within 60 ms after `first_ack`.
    pub fn kill_at(&mut self, long: bool, first_ack: Duration) -> KillAt {
        let start_ms = first_ack.as_millis() as u64;
        if long {
            KillAt::AfterFirstAck(self.ms(50, 300))
        } else if self.one_in(2) {
            KillAt::AfterSpawn(self.ms(1, (start_ms * 3 / 2).max(2)))
        } else {
            KillAt::AfterSpawn(self.ms(start_ms + 1, start_ms + 60))
        }
    }

    /// The line a test prints at its end (`ci/crash-soak.sh` collects them).
    pub fn done(&self, cycles: u64, what: &str) {
        let secs = self.start.elapsed().as_secs_f64();
        println!(
            "crash: {}: {cycles} cycles in {secs:.1} s ({what}), HELIO_CRASH_SEED={:#x}",
            self.test, self.seed
        );
    }
}

/// Prints one whole line with one write, so that a kill cannot leave a line that looks whole.
pub fn print_line(line: &str) {
    std::io::stdout().lock().write_all(line.as_bytes()).unwrap();
}
