//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

pub mod cycles;

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

/// When [`kill_child`] kills its child.
#[derive(Clone, Copy, Debug)]
pub enum KillAt {
    /// This long after the child was started, whatever it is doing then: starting up, opening
    /// or recovering its shard, or writing.
    AfterSpawn(Duration),
    /// This long after the child's first acknowledgement (or after a minute without one), as
    /// [`kill_child_after`] does.
    AfterFirstAck(Duration),
}

/// What a child that [`kill_child`] killed had done.
#[derive(Debug)]
pub struct Killed {
    /// What it printed after `ACK ` on each whole line, in order.
    pub acks: Vec<String>,
    /// How long after its start its first acknowledgement came, if one did.
    pub first_ack: Option<Duration>,
}

/// Runs the test `test` of this test binary again as a child process with `env` set, kills it
/// with SIGKILL at `at`, and returns what it acknowledged: what it printed after `ACK ` on each
/// line that it finished (a line cut short by the kill is not counted). A child that died
/// before the kill (a panic, say) is an `Err` with its exit status and the end of its stderr.
pub fn kill_child(test: &str, env: &[(&str, String)], at: KillAt) -> Result<Killed, String> {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::time::Instant;

    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (first_ack, acked) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut first = None;
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdout.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let Some(whole) = line.strip_suffix(b"\n") else { break };
            let Some(ack) = whole.strip_prefix(b"ACK ") else { continue };
            if first.is_none() {
                first = Some(started.elapsed());
                let _ = first_ack.send(());
            }
            acks.push(String::from_utf8_lossy(ack).into_owned());
        }
        (acks, first)
    });
    let errors = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        let tail = all.len().saturating_sub(4096);
        String::from_utf8_lossy(&all[tail..]).into_owned()
    });
    match at {
        KillAt::AfterSpawn(delay) => std::thread::sleep(delay.saturating_sub(started.elapsed())),
        KillAt::AfterFirstAck(run) => {
            // A child that acknowledges nothing within a minute is killed anyway.
            let _ = acked.recv_timeout(Duration::from_secs(60));
            std::thread::sleep(run);
        }
    }
    // SAFETY: plain syscall on our own child's pid (not yet waited for, so not reused).
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    let (acks, first_ack) = reader.join().unwrap();
    let stderr = errors.join().unwrap();
    if status.signal() != Some(libc::SIGKILL) {
        return Err(format!("the child died before the kill ({status}); its stderr ended with:\n{stderr}"));
    }
    Ok(Killed { acks, first_ack })
}

/// Bytes of every file in `dir` (a file the cleaner deletes meanwhile counts as gone).
pub fn disk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).unwrap().filter_map(|e| e.unwrap().metadata().ok()).map(|m| m.len()).sum()
}
