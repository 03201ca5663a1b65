//! [`S3Store`]: any S3-compatible service (AWS, MinIO, Ceph, moto, …) through `object_store`,
//! driven by a small tokio runtime of the store's own, with [`S3Config`] for where and how.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::{Path, PathPart};
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use tokio::runtime::Runtime;

use crate::args::{check_get, check_key};
use crate::retry::RetryingHandle;
use crate::{ExternalStore, ExternalStoreHandle, RemoteError, RetryPolicy};

/// The largest object one S3 `PUT` may carry.
const PUT_BYTES_MAX: u64 = 5 << 30;
/// Threads of each store's runtime: they only drive sockets and timers, the callers wait.
const RUNTIME_THREADS: usize = 2;

/// Where an [`S3Store`] keeps its objects and how it talks to the service.
///
/// What is not set here comes from the environment as the AWS tools read it (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or `AWS_DEFAULT_REGION`,
/// `AWS_ENDPOINT`), and otherwise from the instance's metadata service. `AWS_ALLOW_HTTP` is not
/// read: plain HTTP to an endpoint that is not loopback, or that comes from the environment,
/// needs [`allow_http`](Self::allow_http).
#[derive(Clone, Debug)]
pub struct S3Config {
    bucket: String,
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Option<(String, String)>,
    prefix: Option<String>,
    allow_http: bool,
    conditional_create: bool,
    request_timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
}

impl S3Config {
    /// Objects in `bucket`, which must exist; every other knob at its default.
    #[must_use]
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            endpoint: None,
            region: None,
            credentials: None,
            prefix: None,
            allow_http: false,
            conditional_create: true,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy::default(),
        }
    }

    /// The service's URL, as `http://127.0.0.1:9000`; default AWS's for the region. Requests
    /// address the bucket in the path, as S3-compatible services expect.
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The region; default from the environment, else `us-east-1`.
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Static credentials; default from the environment.
    #[must_use]
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some((access_key_id.into(), secret_access_key.into()));
        self
    }

    /// A folder in the bucket under which every object is kept; default none.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Allows plain HTTP to any endpoint. Default false: plain HTTP only to a loopback endpoint
    /// (`127.0.0.0/8`, `localhost`, `[::1]`), HTTPS elsewhere.
    #[must_use]
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Whether [`put_if_absent`](ExternalStoreHandle::put_if_absent) sends `If-None-Match: *`
    /// (AWS since 2024, MinIO, moto, R2). Default true; false makes it
    /// [`RemoteError::Unsupported`], for services that would ignore the header.
    #[must_use]
    pub fn conditional_create(mut self, enabled: bool) -> Self {
        self.conditional_create = enabled;
        self
    }

    /// The longest one request may take, body included. Default 30 s, range 100 ms..=1 h.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The longest connecting may take. Default 2 s, range 10 ms..=`request_timeout`.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
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
        if self.bucket.is_empty() {
            return Err(RemoteError::Invalid("S3Config::new: the bucket name is empty".into()));
        }
        let request = Duration::from_millis(100)..=Duration::from_secs(3600);
        if !request.contains(&self.request_timeout) {
            let value = self.request_timeout;
            return Err(RemoteError::Invalid(format!(
                "S3Config::request_timeout = {value:?} is out of 100ms..=1h"
            )));
        }
        if self.connect_timeout < Duration::from_millis(10) || self.connect_timeout > self.request_timeout {
            let value = self.connect_timeout;
            return Err(RemoteError::Invalid(format!(
                "S3Config::connect_timeout = {value:?} is out of 10ms..=request_timeout"
            )));
        }
        if let Some(url) = self.endpoint.as_deref().filter(|url| url.starts_with("http://")) {
            if !self.allow_http && !is_loopback(url) {
                return Err(RemoteError::Invalid(format!(
                    "S3Config::endpoint = {url} is plain HTTP to a host that is not loopback; \
                     use https, or S3Config::allow_http(true)"
                )));
            }
        }
        self.retry.validate()
    }

    /// The `object_store` client this configuration describes.
    fn build(&self) -> Result<Arc<dyn ObjectStore>, RemoteError> {
        let http = self.allow_http || self.endpoint.as_deref().is_some_and(is_loopback);
        let options = ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(self.connect_timeout)
            .with_allow_http(http);
        let conditional =
            if self.conditional_create { S3ConditionalPut::ETagMatch } else { S3ConditionalPut::Disabled };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_client_options(options)
            // Retries are the handle's, by `RetryPolicy`, so that one policy bounds them.
            .with_retry(RetryConfig { max_retries: 0, ..RetryConfig::default() })
            .with_conditional_put(conditional);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if let Some((id, secret)) = &self.credentials {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| RemoteError::Invalid(format!("S3 configuration: {e}")))?;
        Ok(Arc::new(store))
    }
}

/// Whether `url`'s host is a loopback address.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An [`ExternalStore`] on an S3-compatible service.
///
/// A key becomes one object name: the prefix's folders, then the key as a single path segment,
/// with `/`, `%`, control characters and the others AWS advises against written as `%XX` (so
/// `a/b` is stored as `a%2Fb`, and no two keys share an object). Gets are ranged gets; an object
/// is put in one `PUT` (up to 5 GiB). Calls block the calling thread while the store's runtime
/// does the I/O, so handles may be used from any thread, async ones included.
pub struct S3Store {
    shared: Arc<S3Shared>,
    retry: RetryPolicy,
}

/// What every handle of one store shares: the client, its runtime and the naming.
struct S3Shared {
    client: Arc<dyn ObjectStore>,
    runtime: Option<Runtime>,
    bucket: String,
    prefix: Path,
}

impl S3Store {
    /// The store `config` describes; [`RemoteError::Invalid`] if it does not validate. It makes no
    /// request: a missing bucket shows as [`RemoteError::Denied`] on the first call.
    pub fn new(config: S3Config) -> Result<Self, RemoteError> {
        config.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("helio-s3")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Other(format!("start the S3 runtime: {e}")))?;
        let prefix = Path::from(config.prefix.clone().unwrap_or_default());
        let client = config.build()?;
        let shared = S3Shared { client, runtime: Some(runtime), bucket: config.bucket.clone(), prefix };
        Ok(Self { shared: Arc::new(shared), retry: config.retry })
    }
}

impl ExternalStore for S3Store {
    fn connect(&self) -> Result<Box<dyn ExternalStoreHandle>, RemoteError> {
        let inner = Box::new(S3Handle { shared: Arc::clone(&self.shared) });
        Ok(Box::new(RetryingHandle { policy: self.retry.clone(), inner }))
    }
}

impl Drop for S3Shared {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which panics inside another runtime; nothing
        // of ours is left running once the last handle is gone.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl S3Shared {
    fn path(&self, key: &str) -> Result<Path, RemoteError> {
        check_key(key)?;
        Ok(self.prefix.clone().join(PathPart::from(key)))
    }

    /// Runs `work` on the runtime and waits for it on this thread.
    fn block_on<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, RemoteError> {
        let (done, outcome) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.as_ref().expect("the runtime lives as long as the store");
        runtime.spawn(async move {
            let _ = done.send(work.await);
        });
        outcome.recv().map_err(|_| RemoteError::Other("the S3 runtime stopped during the call".into()))
    }

    fn failure(&self, error: &object_store::Error) -> Failure {
        classify(error, &self.bucket)
    }
}

/// One handle: the shared client (HTTP connections are pooled by it).
struct S3Handle {
    shared: Arc<S3Shared>,
}

impl S3Handle {
    fn put_mode(&mut self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), RemoteError> {
        let path = self.shared.path(key)?;
        if bytes.len() as u64 > PUT_BYTES_MAX {
            return Err(RemoteError::Invalid(format!(
                "{} bytes is over S3's 5 GiB for one PUT",
                bytes.len()
            )));
        }
        let client = Arc::clone(&self.shared.client);
        let options = PutOptions::from(mode);
        let put = async move { client.put_opts(&path, PutPayload::from_bytes(bytes), options).await };
        match self.shared.block_on(put)? {
            Ok(_) => Ok(()),
            Err(e) => Err(self.shared.failure(&e).into_error()),
        }
    }

    /// Whether the object exists, for a get whose range the service found past the end.
    fn exists(&mut self, path: Path) -> Result<bool, RemoteError> {
        let client = Arc::clone(&self.shared.client);
        match self.shared.block_on(async move { client.head(&path).await })? {
            Ok(_) => Ok(true),
            Err(e) => match self.shared.failure(&e) {
                Failure::Missing => Ok(false),
                other => Err(other.into_error()),
            },
        }
    }
}

impl ExternalStoreHandle for S3Handle {
    fn put(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        self.put_mode(key, bytes, PutMode::Overwrite)
    }

    fn get(&mut self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, RemoteError> {
        check_get(key, &range)?;
        let path = self.shared.path(key)?;
        // An empty range still asks for one byte, so that a missing bucket answers as for any get.
        let asked = range.start..range.end.max(range.start.saturating_add(1));
        let client = Arc::clone(&self.shared.client);
        let target = path.clone();
        let get = async move {
            let options = GetOptions::new().with_range(Some(GetRange::Bounded(asked)));
            client.get_opts(&target, options).await?.bytes().await
        };
        match self.shared.block_on(get)? {
            Ok(bytes) if range.is_empty() => Ok(Some(bytes.slice(0..0))),
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) => match self.shared.failure(&e) {
                Failure::Missing => Ok(None),
                Failure::PastEnd => Ok(self.exists(path)?.then(Bytes::new)),
                Failure::Error(error) => Err(error),
            },
        }
    }

    fn delete(&mut self, key: &str) -> Result<(), RemoteError> {
        let path = self.shared.path(key)?;
        let client = Arc::clone(&self.shared.client);
        match self.shared.block_on(async move { client.delete(&path).await })? {
            Ok(()) => Ok(()),
            Err(e) => match self.shared.failure(&e) {
                Failure::Missing => Ok(()),
                other => Err(other.into_error()),
            },
        }
    }

    fn put_if_absent(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        self.put_mode(key, bytes, PutMode::Create)
    }
}

/// An `object_store` error, sorted for the handle.
enum Failure {
    /// No such object (`404 NoSuchKey`).
    Missing,
    /// The range starts at or past the object's end (`416`).
    PastEnd,
    Error(RemoteError),
}

impl Failure {
    fn into_error(self) -> RemoteError {
        match self {
            Self::Missing => RemoteError::NotFound,
            Self::PastEnd => RemoteError::Other("the range starts past the object's end".into()),
            Self::Error(error) => error,
        }
    }
}

/// Sorts an `object_store` error by what the caller can do about it.
///
/// `object_store` keeps the HTTP status private, so it is read from the message it formats,
/// "status code: NNN …"; transport failures are found as its public `HttpError` in the chain.
fn classify(error: &object_store::Error, bucket: &str) -> Failure {
    use object_store::Error as E;
    let text = error.to_string();
    if text.contains("NoSuchBucket") {
        return Failure::Error(RemoteError::Denied(format!("bucket {bucket} does not exist: {text}")));
    }
    let remote = match error {
        E::NotFound { .. } => return Failure::Missing,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => RemoteError::Denied(text),
        E::AlreadyExists { .. } | E::Precondition { .. } => RemoteError::AlreadyExists,
        E::NotImplemented { .. } | E::NotSupported { .. } => RemoteError::Unsupported(text),
        E::InvalidPath { .. } => RemoteError::Invalid(text),
        _ => match status_in(&text) {
            Some(416) => return Failure::PastEnd,
            Some(401 | 403) => RemoteError::Denied(text),
            Some(408 | 429 | 500..=599) => RemoteError::Unavailable(text),
            Some(_) => RemoteError::Other(text),
            None if is_transport(error) => RemoteError::Unavailable(text),
            None => RemoteError::Other(text),
        },
    };
    Failure::Error(remote)
}

/// The HTTP status in an `object_store` message, if it has one.
fn status_in(text: &str) -> Option<u16> {
    let (_, after) = text.split_once("status code: ")?;
    after.get(..3)?.parse().ok()
}

/// Whether the error chain holds a transport failure (connect, request, timeout, dropped body).
fn is_transport(error: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(http) = current.downcast_ref::<HttpError>() {
            return !matches!(http.kind(), HttpErrorKind::Unknown);
        }
        next = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:9000"));
        assert!(is_loopback("http://127.3.4.5/x"));
        assert!(is_loopback("http://localhost:9000"));
        assert!(is_loopback("http://[::1]:9000"));
        assert!(!is_loopback("http://10.0.0.1:9000"));
        assert!(!is_loopback("http://example.com"));
    }

    #[test]
    fn plain_http_elsewhere_needs_allow_http() {
        let config = S3Config::new("b").endpoint("http://10.1.2.3:9000");
        assert!(matches!(config.validate(), Err(RemoteError::Invalid(_))));
        assert!(config.allow_http(true).validate().is_ok());
        assert!(S3Config::new("b").endpoint("http://127.0.0.1:9").validate().is_ok());
    }

    #[test]
    fn status_is_read_from_the_message() {
        assert_eq!(status_in("Server returned non-2xx status code: 503 Service Unavailable: x"), Some(503));
        assert_eq!(status_in("no status here"), None);
    }
}
