//! Bounded, jittered retries of [`RemoteError::Unavailable`]: the [`RetryPolicy`] and its limits,
//! the loop every network and file-system handle runs its calls in, and [`Retrying`], which adds
//! the same loop to any store.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{ExternalStore, ExternalStoreHandle, RemoteError};

/// How a handle retries calls that failed with [`RemoteError::Unavailable`]; no other error is
/// retried, and nothing retries forever.
///
/// Attempt `n` (from 1) that fails waits a pause drawn uniformly from `[b/2, b]`, where
/// `b = min(backoff_initial * 2^(n-1), backoff_max)`, then tries again, until `attempts_max`
/// attempts have been made or the next pause would end past `deadline` after the first attempt
/// began. So a call returns within `deadline` plus the time of its last attempt (whose own bound
/// is the backend's request timeout). The defaults allow 6 attempts within 5 s:
/// pauses of about 25, 50, 100, 200 and 400 ms, under 1 s in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    attempts_max: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
    deadline: Duration,
}

/// The limits [`RetryPolicy::validate`] enforces.
const ATTEMPTS: Range<u32> = 1..101;
const BACKOFF_INITIAL_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX_MAX: Duration = Duration::from_secs(60);
const DEADLINE_MAX: Duration = Duration::from_secs(600);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts_max: 6,
            backoff_initial: Duration::from_millis(25),
            backoff_max: Duration::from_millis(1000),
            deadline: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt per call.
    #[must_use]
    pub fn none() -> Self {
        Self::default().attempts_max(1)
    }

    /// Attempts per call, the first included. Default 6, range 1..=100.
    #[must_use]
    pub fn attempts_max(mut self, attempts: u32) -> Self {
        self.attempts_max = attempts;
        self
    }

    /// The pause after the first failed attempt, before jitter; it doubles after each further one.
    /// Default 25 ms, range 1 ms..=`backoff_max`.
    #[must_use]
    pub fn backoff_initial(mut self, pause: Duration) -> Self {
        self.backoff_initial = pause;
        self
    }

    /// The longest pause, before jitter. Default 1 s, range `backoff_initial`..=60 s.
    #[must_use]
    pub fn backoff_max(mut self, pause: Duration) -> Self {
        self.backoff_max = pause;
        self
    }

    /// No pause ends later than this after the first attempt began. Default 5 s, range 0..=600 s.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Checks every knob against its range; the error names the setter, the value and the range.
    pub fn validate(&self) -> Result<(), RemoteError> {
        let bad = |knob: &str, value: String, range: String| {
            Err(RemoteError::Invalid(format!("RetryPolicy::{knob} = {value} is out of its range {range}")))
        };
        if !ATTEMPTS.contains(&self.attempts_max) {
            return bad("attempts_max", self.attempts_max.to_string(), "1..=100".into());
        }
        if self.backoff_initial < BACKOFF_INITIAL_MIN || self.backoff_initial > self.backoff_max {
            let range = format!("1ms..=backoff_max ({:?})", self.backoff_max);
            return bad("backoff_initial", format!("{:?}", self.backoff_initial), range);
        }
        if self.backoff_max > BACKOFF_MAX_MAX {
            return bad("backoff_max", format!("{:?}", self.backoff_max), "backoff_initial..=60s".into());
        }
        if self.deadline > DEADLINE_MAX {
            return bad("deadline", format!("{:?}", self.deadline), "0s..=600s".into());
        }
        Ok(())
    }

    /// The pause before attempt `attempt + 1`, or None when the call must give up.
    fn pause(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if attempt >= self.attempts_max {
            return None;
        }
        let doublings = (attempt - 1).min(30);
        let base = self.backoff_initial.saturating_mul(1 << doublings).min(self.backoff_max);
        let half = base / 2;
        let pause = half + half.mul_f64(fastrand::f64());
        (elapsed + pause <= self.deadline).then_some(pause)
    }

    /// Runs `call` until it returns anything but `Unavailable`, or the policy gives up; the last
    /// `Unavailable` then says how many attempts were made over how long.
    pub(crate) fn run<T>(&self, mut call: impl FnMut() -> Result<T, RemoteError>) -> Result<T, RemoteError> {
        let start = Instant::now();
        let mut attempt = 1;
        loop {
            let why = match call() {
                Err(RemoteError::Unavailable(why)) => why,
                other => return other,
            };
            match self.pause(attempt, start.elapsed()) {
                Some(pause) => std::thread::sleep(pause),
                None => {
                    let spent = start.elapsed();
                    return Err(RemoteError::Unavailable(format!(
                        "{why} (gave up after {attempt} attempts in {spent:.1?})"
                    )));
                }
            }
            attempt += 1;
        }
    }
}

/// Any [`ExternalStore`] whose `connect` and handle calls retry `Unavailable` by a [`RetryPolicy`].
///
/// The S3, Redis and file-system backends retry by themselves; this is for the others (a
/// [`FaultyStore`](crate::FaultyStore), a backend written elsewhere).
pub struct Retrying {
    inner: Arc<dyn ExternalStore>,
    policy: RetryPolicy,
}

impl Retrying {
    /// `inner` with retries by `policy`; [`RemoteError::Invalid`] if the policy is out of range.
    pub fn new(inner: Arc<dyn ExternalStore>, policy: RetryPolicy) -> Result<Self, RemoteError> {
        policy.validate()?;
        Ok(Self { inner, policy })
    }
}

impl ExternalStore for Retrying {
    fn connect(&self) -> Result<Box<dyn ExternalStoreHandle>, RemoteError> {
        let inner = self.policy.run(|| self.inner.connect())?;
        Ok(Box::new(RetryingHandle { inner, policy: self.policy.clone() }))
    }
}

/// A handle whose calls run in [`RetryPolicy::run`].
pub(crate) struct RetryingHandle<H: ?Sized> {
    pub(crate) policy: RetryPolicy,
    pub(crate) inner: Box<H>,
}

impl<H: ExternalStoreHandle + ?Sized> ExternalStoreHandle for RetryingHandle<H> {
    fn put(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        self.policy.run(|| self.inner.put(key, bytes.clone()))
    }

    fn get(&mut self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, RemoteError> {
        self.policy.run(|| self.inner.get(key, range.clone()))
    }

    fn delete(&mut self, key: &str) -> Result<(), RemoteError> {
        self.policy.run(|| self.inner.delete(key))
    }

    fn put_if_absent(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        self.policy.run(|| self.inner.put_if_absent(key, bytes.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_within_jitter_and_stop_at_the_limits() {
        let policy = RetryPolicy::default();
        for attempt in 1..6 {
            let base = Duration::from_millis(25 << (attempt - 1));
            let pause = policy.pause(attempt, Duration::ZERO).expect("within the attempts");
            assert!(pause >= base / 2 && pause <= base, "attempt {attempt}: {pause:?} vs {base:?}");
        }
        assert_eq!(policy.pause(6, Duration::ZERO), None, "6 attempts at most");
        assert_eq!(policy.pause(1, Duration::from_secs(5)), None, "nothing past the deadline");
        let capped = RetryPolicy::default().attempts_max(40).pause(39, Duration::ZERO).unwrap();
        assert!(capped <= Duration::from_secs(1), "{capped:?}");
    }

    #[test]
    fn validate_names_the_knob() {
        let err = RetryPolicy::default().attempts_max(0).validate().unwrap_err();
        assert!(err.to_string().contains("RetryPolicy::attempts_max = 0"), "{err}");
        let err = RetryPolicy::default().backoff_initial(Duration::from_secs(2)).validate().unwrap_err();
        assert!(err.to_string().contains("backoff_initial"), "{err}");
        assert!(RetryPolicy::default().validate().is_ok());
        assert!(RetryPolicy::none().validate().is_ok());
    }

    #[test]
    fn only_unavailable_is_retried() {
        let policy = RetryPolicy::default().backoff_initial(Duration::from_millis(1));
        let mut calls = 0;
        let denied: Result<(), _> = policy.run(|| {
            calls += 1;
            Err(RemoteError::Denied("no".into()))
        });
        assert_eq!((denied, calls), (Err(RemoteError::Denied("no".into())), 1));
        calls = 0;
        let down: Result<(), _> = policy.run(|| {
            calls += 1;
            Err(RemoteError::Unavailable("down".into()))
        });
        assert_eq!(calls, 6);
        assert!(matches!(down, Err(RemoteError::Unavailable(why)) if why.contains("after 6 attempts")));
    }
}
