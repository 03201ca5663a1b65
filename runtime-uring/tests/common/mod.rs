//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use helio_core::log::frame::Op;

/// The payload of a put of `value` under key `i` (big-endian), with snapshot number `i`: what
/// replay hands back for it.
pub fn op_payload(i: u64, value: &[u8]) -> Vec<u8> {
    let key = i.to_be_bytes();
    let op = Op { sn: i, key: &key, value: Some(value) };
    let mut out = vec![0; op.payload_len()];
    op.write_payload(&mut out);
    out
}

/// xorshift64: a fixed, reproducible random sequence.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs the test `test` of this test binary again as a child process with `env` set, lets it
/// run for `run` after its first acknowledged write (so that a slow start on a loaded machine
/// still ends with a kill in the middle of writing), kills it with SIGKILL, and returns what it
/// printed after `ACK ` on each line: the writes it acknowledged before it died.
pub fn kill_child_after(test: &str, env: &[(&str, String)], run: Duration) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (first_ack, started) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(ack) = line.strip_prefix("ACK ") {
                if acks.is_empty() {
                    let _ = first_ack.send(());
                }
                acks.push(ack.to_string());
            }
        }
        acks
    });
    // A child that acknowledges nothing within a minute is killed anyway; the caller fails it.
    let _ = started.recv_timeout(Duration::from_secs(60));
    std::thread::sleep(run);
    // SAFETY: plain syscall on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    reader.join().unwrap()
}
