//! What the integration tests share: the addresses of the test servers `ci/remote-servers.sh`
//! started (a test without them fails, saying how to start them), bucket creation on the S3
//! server, and servers of a test's own that it can kill and restart.

#![allow(dead_code, reason = "each test binary uses its own part of these helpers")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOW_TO_START: &str = "start the test servers and export their addresses with\n    \
     eval \"$(bash ci/remote-servers.sh start)\"\n\
     from the workspace root (`bash ci/remote-servers.sh stop` stops them); `bash ci/test.sh` does \
     both itself. These tests never pass without having run against the servers.";

/// The value of `var`, or a panic that says how to set it.
fn required(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{var} is not set, so the {what} tests cannot run: {HOW_TO_START}"),
    }
}

/// `host:port` of a URL such as `redis://127.0.0.1:6379/0` or `http://127.0.0.1:5000`.
fn authority(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    authority.parse().unwrap_or_else(|e| panic!("{url}: the address {authority} does not parse: {e}"))
}

/// Panics unless something listens at `url`, within 2 s.
fn reachable(url: &str, var: &str) {
    let address = authority(url);
    if let Err(e) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
        panic!("{var} = {url}, but nothing answers there ({e}): {HOW_TO_START}");
    }
}

/// The URL of the shared Redis server (`HELIO_TEST_REDIS_URL`), checked to answer.
pub fn redis_url() -> String {
    let url = required("HELIO_TEST_REDIS_URL", "Redis");
    reachable(&url, "HELIO_TEST_REDIS_URL");
    url
}

/// The endpoint of the shared S3 server (`HELIO_TEST_S3_ENDPOINT`), checked to answer.
pub fn s3_endpoint() -> String {
    let url = required("HELIO_TEST_S3_ENDPOINT", "S3");
    reachable(&url, "HELIO_TEST_S3_ENDPOINT");
    url
}

/// A bucket name no other test uses.
pub fn fresh_bucket(what: &str) -> String {
    format!("helio-{what}-{:08x}", fastrand::u32(..))
}

/// Creates `bucket` on the S3 server at `endpoint` (moto takes unsigned requests).
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let mut stream = TcpStream::connect_timeout(&authority(endpoint), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("create bucket {bucket}: connect to {endpoint}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("set a read timeout");
    let host = authority(endpoint);
    let request =
        format!("PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send the create-bucket request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.lines().next().unwrap_or_default();
    assert!(status.contains(" 200"), "create bucket {bucket} on {endpoint}: {status:?}");
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// Which server a [`Server`] runs.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `redis-server`, with `args` added.
    Redis(&'static [&'static str]),
    /// `moto_server`, an S3 (and more) server in Python.
    Moto,
}

/// A server process of one test's own, on its own port and data directory, killed on drop.
pub struct Server {
    kind: Kind,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    /// Starts a server of `kind` and waits until it accepts connections.
    pub fn start(kind: Kind) -> Self {
        let dir = tempfile::tempdir().expect("a data directory");
        let mut server = Self { kind, port: free_port(), dir, child: None };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT` or `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis(_) => format!("redis://127.0.0.1:{}", self.port),
            Kind::Moto => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let (program, mut command) = self.command();
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("a log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log again"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program} ({e}): install it (ci/remote-servers.sh install), or set its path")
            });
        self.child = Some(child);
        self.wait_ready(&program);
    }

    fn command(&self) -> (String, Command) {
        let port = self.port.to_string();
        match self.kind {
            Kind::Redis(args) => {
                let program =
                    std::env::var("HELIO_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
                let mut command = Command::new(&program);
                command.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
                command.arg("--dir").arg(self.dir.path()).args(args);
                (program, command)
            }
            Kind::Moto => {
                let program =
                    std::env::var("HELIO_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
                let mut command = Command::new(&program);
                command.args(["-H", "127.0.0.1", "-p", &port]).current_dir(self.dir.path());
                (program, command)
            }
        }
    }

    /// Waits up to 60 s for the port to accept connections; panics with the server's log if not.
    fn wait_ready(&mut self, program: &str) {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                panic!("{program} exited with {status} before listening:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{program} did not listen on {address} within 60 s:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
