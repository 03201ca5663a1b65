//! [`RedisStore`]: objects in a Redis server through the `redis` crate; an object larger than one
//! chunk is stored as chunks plus a manifest that a put publishes last, so readers see it whole.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{Client, Connection, ErrorKind, RedisError, Value};
use bytes::{Bytes, BytesMut};

use crate::args::{check_get, check_key, cut};
use crate::retry::RetryingHandle;
use crate::{ExternalStore, ExternalStoreHandle, RemoteError, RetryPolicy};

/// Bytes of a chunked object's manifest: `C`, then its version, length and chunk size (u64 LE).
const MANIFEST_BYTES: usize = 25;
const _: () = assert!(MANIFEST_BYTES == 1 + 3 * 8, "a tag and three u64 words");
/// How long written chunks live until a published manifest makes them permanent: a put that
/// takes longer fails, and the chunks of a put that died before publishing go away by themselves.
const CHUNK_TTL_MS: u64 = 3_600_000;
/// Chunks per pipelined write, so that one round trip carries at most this many chunks.
const CHUNKS_PER_WRITE: usize = 8;
/// Keys per `DEL` of old chunks.
const KEYS_PER_DEL: usize = 512;
/// Reads of one object that may find its chunks replaced under them before giving up.
const READS_MAX: u32 = 8;

/// Where a [`RedisStore`] keeps its objects and how it talks to the server.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    url: String,
    prefix: String,
    chunk_bytes: u64,
    connect_timeout: Duration,
    io_timeout: Duration,
    retry: RetryPolicy,
}

impl RedisConfig {
    /// The server at `url` (`redis://[user:password@]host:port[/db]`); every other knob at its
    /// default.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "helio:".into(),
            chunk_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }

    /// What every Redis key of the store starts with. Default `helio:`; any string.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The largest object kept in one Redis value, and the size of the chunks of larger ones.
    /// Default 1 MiB, range 1 KiB..=64 MiB. Objects written before a change stay readable.
    #[must_use]
    pub fn chunk_bytes(mut self, bytes: u64) -> Self {
        self.chunk_bytes = bytes;
        self
    }

    /// The longest connecting may take. Default 2 s, range 10 ms..=60 s.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest one read or write on the socket may take. Default 10 s, range 10 ms..=600 s.
    #[must_use]
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// How handles retry [`RemoteError::Unavailable`]. Default [`RetryPolicy::default`].
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Checks every knob; the error names the setter, the value and its limits.
    pub fn validate(&self) -> Result<(), RemoteError> {
        let out = |knob: &str, value: String, range: &str| {
            Err(RemoteError::Invalid(format!("RedisConfig::{knob} = {value} is out of {range}")))
        };
        if !(1 << 10..=64 << 20).contains(&self.chunk_bytes) {
            return out("chunk_bytes", self.chunk_bytes.to_string(), "1KiB..=64MiB");
        }
        let ms = Duration::from_millis;
        if !(ms(10)..=Duration::from_secs(60)).contains(&self.connect_timeout) {
            return out("connect_timeout", format!("{:?}", self.connect_timeout), "10ms..=60s");
        }
        if !(ms(10)..=Duration::from_secs(600)).contains(&self.io_timeout) {
            return out("io_timeout", format!("{:?}", self.io_timeout), "10ms..=600s");
        }
        self.retry.validate()
    }
}

/// An [`ExternalStore`] on a Redis server (or anything speaking its protocol: Valkey, KeyDB).
///
/// An object of at most `chunk_bytes` is one Redis string, `<prefix>m:<key>`, holding `I` and the
/// bytes. A larger one is written as chunks `<prefix>c:<key>:<version>:<index>` (with a one-hour
/// expiry), then published by one `MULTI` that sets the manifest `<prefix>m:<key>` and makes the
/// chunks permanent; the chunks of the object it replaced are deleted after. A get reads the
/// manifest and inline bytes in one `MULTI`, and chunks by version, which never change: if an
/// overwrite deleted them meanwhile, the get starts again from the new manifest. Keys are binary
/// safe, so any key is stored as it is.
pub struct RedisStore {
    client: Client,
    layout: Arc<Layout>,
    config: RedisConfig,
}

/// How keys and chunks are laid out, shared by the handles.
struct Layout {
    prefix: Vec<u8>,
    chunk_bytes: u64,
}

impl RedisStore {
    /// The store `config` describes; [`RemoteError::Invalid`] if it does not validate or the URL
    /// does not parse. It does not connect: handles do.
    pub fn new(config: RedisConfig) -> Result<Self, RemoteError> {
        config.validate()?;
        let client = Client::open(config.url.as_str())
            .map_err(|e| RemoteError::Invalid(format!("RedisConfig::new: the URL does not parse: {e}")))?;
        let layout =
            Arc::new(Layout { prefix: config.prefix.clone().into_bytes(), chunk_bytes: config.chunk_bytes });
        Ok(Self { client, layout, config })
    }
}

impl ExternalStore for RedisStore {
    /// Connects now (with retries), so that a server that is down or refuses the credentials
    /// answers here.
    fn connect(&self) -> Result<Box<dyn ExternalStoreHandle>, RemoteError> {
        let mut handle = RedisHandle {
            client: self.client.clone(),
            connection: None,
            layout: Arc::clone(&self.layout),
            connect_timeout: self.config.connect_timeout,
            io_timeout: self.config.io_timeout,
        };
        self.config.retry.run(|| handle.connection().map(|_| ()))?;
        Ok(Box::new(RetryingHandle { policy: self.config.retry.clone(), inner: Box::new(handle) }))
    }
}

/// One handle: one connection, opened again after any error.
struct RedisHandle {
    client: Client,
    connection: Option<Connection>,
    layout: Arc<Layout>,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl RedisHandle {
    fn connection(&mut self) -> Result<&mut Connection, RemoteError> {
        if self.connection.is_none() {
            let connection = self.open().map_err(classify)?;
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("just opened"))
    }

    fn open(&self) -> Result<Connection, RedisError> {
        let connection = self.client.get_connection_with_timeout(self.connect_timeout)?;
        connection.set_read_timeout(Some(self.io_timeout))?;
        connection.set_write_timeout(Some(self.io_timeout))?;
        Ok(connection)
    }

    /// Runs `work` on the connection; after an error the connection is dropped, since replies
    /// may be left unread on it.
    fn with<T>(
        &mut self,
        work: impl FnOnce(&mut Connection, &Layout) -> Result<T, Fail>,
    ) -> Result<T, RemoteError> {
        let layout = Arc::clone(&self.layout);
        let connection = self.connection()?;
        match work(connection, &layout) {
            Ok(value) => Ok(value),
            Err(fail) => {
                if matches!(fail, Fail::Redis(_)) {
                    self.connection = None;
                }
                Err(fail.into_error())
            }
        }
    }
}

impl ExternalStoreHandle for RedisHandle {
    fn put(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        check_key(key)?;
        self.with(|connection, layout| layout.put(connection, key, &bytes, false))
    }

    fn get(&mut self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, RemoteError> {
        check_get(key, &range)?;
        self.with(|connection, layout| layout.get(connection, key, &range))
    }

    fn delete(&mut self, key: &str) -> Result<(), RemoteError> {
        check_key(key)?;
        self.with(|connection, layout| layout.delete(connection, key))
    }

    fn put_if_absent(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        check_key(key)?;
        self.with(|connection, layout| layout.put(connection, key, &bytes, true))
    }
}

/// Why a step of a call failed: the server or connection, or what was stored.
enum Fail {
    Redis(RedisError),
    Remote(RemoteError),
}

impl From<RedisError> for Fail {
    fn from(error: RedisError) -> Self {
        Self::Redis(error)
    }
}

impl Fail {
    fn into_error(self) -> RemoteError {
        match self {
            Self::Redis(error) => classify(error),
            Self::Remote(error) => error,
        }
    }
}

/// A chunked object's manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Manifest {
    version: u64,
    len: u64,
    chunk_bytes: u64,
}

impl Manifest {
    fn encode(&self) -> [u8; MANIFEST_BYTES] {
        let mut out = [0; MANIFEST_BYTES];
        out[0] = b'C';
        out[1..9].copy_from_slice(&self.version.to_le_bytes());
        out[9..17].copy_from_slice(&self.len.to_le_bytes());
        out[17..25].copy_from_slice(&self.chunk_bytes.to_le_bytes());
        out
    }

    /// The manifest at the start of a stored value; None for an inline object or nothing.
    fn decode(head: &[u8]) -> Result<Option<Self>, Fail> {
        match head.first() {
            None | Some(b'I') => Ok(None),
            Some(b'C') if head.len() >= MANIFEST_BYTES => {
                let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().expect("8 bytes"));
                let manifest = Self { version: word(1), len: word(9), chunk_bytes: word(17) };
                if manifest.chunk_bytes == 0 {
                    return Err(corrupt("a manifest with chunks of 0 bytes"));
                }
                Ok(Some(manifest))
            }
            Some(_) => Err(corrupt("a value that is neither an inline object nor a manifest")),
        }
    }

    fn chunks(&self) -> u64 {
        self.len.div_ceil(self.chunk_bytes)
    }
}

fn corrupt(what: &str) -> Fail {
    Fail::Remote(RemoteError::Other(format!("the Redis store holds {what}")))
}

/// A position for `GETRANGE`, which takes signed offsets.
fn offset(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

impl Layout {
    fn manifest_key(&self, key: &str) -> Vec<u8> {
        [&self.prefix[..], b"m:", key.as_bytes()].concat()
    }

    /// The key of chunk `index` of `version`; the fixed-width tail keeps it one to one with keys.
    fn chunk_key(&self, key: &str, version: u64, index: u64) -> Vec<u8> {
        let tail = format!(":{version:016x}:{index:08x}");
        [&self.prefix[..], b"c:", key.as_bytes(), tail.as_bytes()].concat()
    }

    fn chunk_keys(&self, key: &str, manifest: &Manifest) -> Vec<Vec<u8>> {
        (0..manifest.chunks()).map(|index| self.chunk_key(key, manifest.version, index)).collect()
    }

    fn put(
        &self,
        connection: &mut Connection,
        key: &str,
        bytes: &Bytes,
        if_absent: bool,
    ) -> Result<(), Fail> {
        let manifest_key = self.manifest_key(key);
        if bytes.len() as u64 <= self.chunk_bytes {
            let value = [b"I", &bytes[..]].concat();
            return self.publish(connection, key, &manifest_key, &value, &[], if_absent);
        }
        let manifest =
            Manifest { version: fastrand::u64(..), len: bytes.len() as u64, chunk_bytes: self.chunk_bytes };
        let chunks = self.chunk_keys(key, &manifest);
        self.write_chunks(connection, &chunks, bytes)?;
        let published = self.publish(connection, key, &manifest_key, &manifest.encode(), &chunks, if_absent);
        if published.is_err() {
            // Best effort: chunks nobody will read; they would expire anyway.
            let _ = self.delete_chunks(connection, &chunks);
        }
        published
    }

    /// Writes `bytes` as the chunks `keys`, expiring unless published.
    fn write_chunks(&self, connection: &mut Connection, keys: &[Vec<u8>], bytes: &Bytes) -> Result<(), Fail> {
        let step = usize::try_from(self.chunk_bytes).expect("at most 64 MiB");
        let pieces: Vec<&[u8]> = bytes.chunks(step).collect();
        for (batch_keys, batch) in keys.chunks(CHUNKS_PER_WRITE).zip(pieces.chunks(CHUNKS_PER_WRITE)) {
            let mut pipe = ::redis::pipe();
            for (chunk_key, piece) in batch_keys.iter().zip(batch) {
                pipe.cmd("SET").arg(chunk_key).arg(*piece).arg("PX").arg(CHUNK_TTL_MS).ignore();
            }
            pipe.query::<()>(connection)?;
        }
        Ok(())
    }

    /// Sets the manifest `value` and makes `chunks` permanent in one step, then deletes the chunks
    /// of the object it replaced. With `if_absent`, only if there is no object yet (under `WATCH`).
    fn publish(
        &self,
        connection: &mut Connection,
        key: &str,
        manifest_key: &[u8],
        value: &[u8],
        chunks: &[Vec<u8>],
        if_absent: bool,
    ) -> Result<(), Fail> {
        if if_absent {
            return self.publish_if_absent(connection, manifest_key, value, chunks);
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic().cmd("GETRANGE").arg(manifest_key).arg(0).arg(MANIFEST_BYTES - 1);
        pipe.cmd("SET").arg(manifest_key).arg(value).ignore();
        for chunk in chunks {
            pipe.cmd("PERSIST").arg(chunk);
        }
        let replies: Vec<Value> = pipe.query(connection)?;
        let old = head_of(replies.first())?;
        check_persisted(&replies[1..])?;
        match Manifest::decode(&old)? {
            Some(replaced) => self.delete_chunks(connection, &self.chunk_keys(key, &replaced)),
            None => Ok(()),
        }
    }

    fn publish_if_absent(
        &self,
        connection: &mut Connection,
        manifest_key: &[u8],
        value: &[u8],
        chunks: &[Vec<u8>],
    ) -> Result<(), Fail> {
        ::redis::cmd("WATCH").arg(manifest_key).query::<()>(connection)?;
        let exists: bool = ::redis::cmd("EXISTS").arg(manifest_key).query(connection)?;
        if exists {
            ::redis::cmd("UNWATCH").query::<()>(connection)?;
            return Err(Fail::Remote(RemoteError::AlreadyExists));
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic().cmd("SET").arg(manifest_key).arg(value).ignore();
        for chunk in chunks {
            pipe.cmd("PERSIST").arg(chunk);
        }
        // EXEC answers nil when the watched key changed: another put got there first.
        let replies: Option<Vec<Value>> = pipe.query(connection)?;
        match replies {
            None => Err(Fail::Remote(RemoteError::AlreadyExists)),
            Some(replies) => check_persisted(&replies),
        }
    }

    fn delete_chunks(&self, connection: &mut Connection, keys: &[Vec<u8>]) -> Result<(), Fail> {
        for batch in keys.chunks(KEYS_PER_DEL) {
            ::redis::cmd("DEL").arg(batch).query::<()>(connection)?;
        }
        Ok(())
    }

    fn delete(&self, connection: &mut Connection, key: &str) -> Result<(), Fail> {
        let manifest_key = self.manifest_key(key);
        let mut pipe = ::redis::pipe();
        pipe.atomic().cmd("GETRANGE").arg(&manifest_key).arg(0).arg(MANIFEST_BYTES - 1);
        pipe.cmd("DEL").arg(&manifest_key).ignore();
        let (old,): (Vec<u8>,) = pipe.query(connection)?;
        match Manifest::decode(&old)? {
            Some(removed) => self.delete_chunks(connection, &self.chunk_keys(key, &removed)),
            None => Ok(()),
        }
    }

    fn get(&self, connection: &mut Connection, key: &str, range: &Range<u64>) -> Result<Option<Bytes>, Fail> {
        let manifest_key = self.manifest_key(key);
        for _ in 0..READS_MAX {
            // Inline byte `i` is at `i + 1`, after the `I`.
            let mut pipe = ::redis::pipe();
            pipe.atomic().cmd("GETRANGE").arg(&manifest_key).arg(0).arg(MANIFEST_BYTES - 1);
            let end = offset(range.end);
            pipe.cmd("GETRANGE").arg(&manifest_key).arg(offset(range.start).saturating_add(1)).arg(end);
            let (head, inline): (Vec<u8>, Vec<u8>) = pipe.query(connection)?;
            if head.is_empty() {
                return Ok(None);
            }
            let Some(manifest) = Manifest::decode(&head)? else {
                return Ok(Some(Bytes::from(inline)));
            };
            if let Some(bytes) = self.read_chunks(connection, key, &manifest, range)? {
                return Ok(Some(bytes));
            }
        }
        Err(Fail::Remote(RemoteError::Unavailable(format!(
            "the chunks of {key} were replaced under {READS_MAX} reads in a row"
        ))))
    }

    /// The bytes of `range` from the chunks of `manifest`; None if some chunk is gone (the object
    /// was replaced or deleted meanwhile).
    fn read_chunks(
        &self,
        connection: &mut Connection,
        key: &str,
        manifest: &Manifest,
        range: &Range<u64>,
    ) -> Result<Option<Bytes>, Fail> {
        let want = cut(range, manifest.len);
        if want.is_empty() {
            return Ok(Some(Bytes::new()));
        }
        let size = manifest.chunk_bytes;
        let mut pipe = ::redis::pipe();
        for index in want.start / size..=(want.end - 1) / size {
            let base = index * size;
            let (lo, hi) = (want.start.max(base) - base, want.end.min(base + size) - base - 1);
            pipe.cmd("GETRANGE").arg(self.chunk_key(key, manifest.version, index)).arg(lo).arg(hi);
        }
        let pieces: Vec<Vec<u8>> = pipe.query(connection)?;
        // Every range asked for is non-empty, so an empty answer is a missing chunk.
        if pieces.iter().any(Vec::is_empty) {
            return Ok(None);
        }
        let mut out = BytesMut::with_capacity(usize::try_from(want.end - want.start).unwrap_or(0));
        pieces.iter().for_each(|piece| out.extend_from_slice(piece));
        Ok(Some(out.freeze()))
    }
}

/// The bytes of a `GETRANGE` reply inside a transaction's replies.
fn head_of(reply: Option<&Value>) -> Result<Vec<u8>, Fail> {
    match reply {
        Some(Value::BulkString(bytes)) => Ok(bytes.clone()),
        Some(Value::Nil) => Ok(Vec::new()),
        other => Err(corrupt(&format!("an unexpected reply to GETRANGE: {other:?}"))),
    }
}

/// Checks that every `PERSIST` found its chunk (1); a 0 means a chunk expired before publishing.
fn check_persisted(replies: &[Value]) -> Result<(), Fail> {
    if replies.iter().all(|reply| matches!(reply, Value::Int(1))) {
        return Ok(());
    }
    Err(Fail::Remote(RemoteError::Other(format!(
        "a chunk of the put was gone when its manifest was published (a put slower than the chunks' \
         {} s expiry, or a chunk deleted by hand); put it again",
        CHUNK_TTL_MS / 1000
    ))))
}

/// Sorts a `redis` error by what the caller can do about it.
fn classify(error: RedisError) -> RemoteError {
    let text = error.to_string();
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
    {
        return RemoteError::Unavailable(text);
    }
    match (error.kind(), error.code()) {
        (ErrorKind::AuthenticationFailed, _) | (_, Some("NOAUTH" | "WRONGPASS" | "NOPERM")) => {
            RemoteError::Denied(text)
        }
        (
            ErrorKind::BusyLoadingError
            | ErrorKind::TryAgain
            | ErrorKind::ClusterDown
            | ErrorKind::MasterDown,
            _,
        )
        | (_, Some("OOM" | "LOADING" | "MISCONF")) => RemoteError::Unavailable(text),
        (ErrorKind::ReadOnly, _) => RemoteError::Denied(text),
        (ErrorKind::InvalidClientConfig, _) => RemoteError::Invalid(text),
        _ => RemoteError::Other(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip() {
        let manifest = Manifest { version: 0xdead_beef, len: 5 << 20, chunk_bytes: 1 << 20 };
        assert_eq!(Manifest::decode(&manifest.encode()).ok().flatten(), Some(manifest));
        assert_eq!(manifest.chunks(), 5);
        assert!(matches!(Manifest::decode(b"Ixyz"), Ok(None)));
        assert!(Manifest::decode(b"Zxyz").is_err());
    }

    #[test]
    fn chunk_keys_cannot_collide() {
        let layout = Layout { prefix: b"p:".to_vec(), chunk_bytes: 1024 };
        assert_ne!(layout.chunk_key("a:1", 5, 0), layout.chunk_key("a", 1, 0));
        assert_ne!(layout.manifest_key("c:x"), layout.chunk_key("x", 0, 0));
    }
}
