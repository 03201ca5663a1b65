//! A real child process writes with `Sync` durability from several threads and reports every
//! acknowledged write; the parent kills it with SIGKILL at a random moment, reopens the log, and
//! checks that every acknowledged write is there with its value. Many cycles on one directory,
//! so recovery also runs over tails torn by earlier kills.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use helio::log::{Durability, Log, LogConfig};
use helio_core::log::frame::{Kind, Op};

const CHILD_ENV: &str = "HELIO_CRASH_CHILD_DIR";
const THREADS: u64 = 4;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 1 << 20, buffer_bytes: 64 << 10, ..LogConfig::default() }
}

fn value(key: u64) -> Vec<u8> {
    let len = (key as usize * 7919) % 900;
    (0..len).map(|i| (key as usize + i) as u8).collect()
}

/// The child: writes until killed, printing `ACK key` after each acknowledged write.
fn child(dir: &Path, cycle: u64) -> ! {
    let (log, _) = Log::open(dir, &config(), |_, _| {}).unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let log = &log;
            s.spawn(move || {
                for n in 0.. {
                    let key = cycle << 40 | t << 32 | n;
                    let value = value(key);
                    log.append_op(
                        &Op { sn: n, key: &key.to_be_bytes(), value: Some(&value) },
                        Durability::Sync,
                    )
                    .unwrap();
                    println!("ACK {key}");
                }
            });
        }
    });
    unreachable!()
}

#[test]
fn sigkill_never_loses_an_acknowledged_sync_write() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let cycle = std::env::var("HELIO_CRASH_CYCLE").unwrap().parse().unwrap();
        child(Path::new(&dir), cycle);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for cycle in 1..=25u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_never_loses_an_acknowledged_sync_write",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("HELIO_CRASH_CYCLE", cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| line.strip_prefix("ACK ").map(|k| k.parse::<u64>().unwrap()))
                .collect::<Vec<_>>()
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(30 + rng % 200));
        // SAFETY: plain syscall on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        let this_cycle = reader.join().unwrap();
        acked.extend(&this_cycle);

        let mut found = HashMap::new();
        Log::read(dir.path(), &config(), |kind, payload| {
            assert_eq!(kind, Kind::Put);
            let key = u64::from_be_bytes(payload[12..20].try_into().unwrap());
            found.insert(key, payload[20..].to_vec());
        })
        .unwrap_or_else(|e| panic!("cycle {cycle}: recovery failed: {e}"));
        for key in &acked {
            let got =
                found.get(key).unwrap_or_else(|| panic!("cycle {cycle}: acknowledged key {key:#x} lost"));
            assert_eq!(got, &value(*key), "cycle {cycle}: key {key:#x}");
        }
        assert!(!this_cycle.is_empty() || cycle > 1, "the child acknowledged nothing");
    }
    assert!(acked.len() > 1000, "only {} acknowledged writes in all", acked.len());
}
