//! Every AWS request goes through here: counted per attempt and action, each attempt admitted
//! by a per-service rate limit (a burst, then a steady rate: a burst of cold reads queues
//! instead of being throttled; cut when AWS throttles, see [`AdaptiveRate`]), transient
//! failures retried with jittered backoff, and the whole bounded by the request deadline,
//! retries included. The SDK's own retries are off
//! (see [`super::service_config`]): a retry the limiter does not see would bypass it.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};

use super::classify;
use super::credentials::Renewable;
use crate::deadline;
use crate::error::{Error, Result};
use crate::provider::adaptive_rate::AdaptiveRate;
use crate::provider::counters::{lock, RENEW_CREDENTIALS};
use crate::provider::{outcome_of, ApiCounters, CallCounts, OutcomeCounts};

/// First wait before a retry, doubled per failure up to [`RETRY_DELAY_CAP`].
pub const RETRY_DELAY_BASE: Duration = Duration::from_millis(100);
/// Longest wait before a retry.
pub const RETRY_DELAY_CAP: Duration = Duration::from_secs(2);
/// Times one page of a listing is sent (each with its own retries) before the listing fails.
pub const PAGE_TRIES: u32 = 8;

/// How one service's requests are sent.
#[derive(Debug)]
pub struct Caller {
    counters: ApiCounters,
    rate: Mutex<AdaptiveRate>,
    deadline: Duration,
    attempts: u32,
    jitter: RandomState,
    credentials: Option<Arc<Renewable>>,
}

impl Caller {
    /// Requests of at most `max_tps` attempts a second, each tried up to `attempts` times and
    /// answered within `deadline` or failed.
    pub fn new(max_tps: u32, deadline: Duration, attempts: u32) -> Self {
        Caller {
            counters: ApiCounters::default(),
            rate: Mutex::new(AdaptiveRate::new(max_tps, Instant::now().into_std())),
            deadline,
            attempts: attempts.max(1),
            jitter: RandomState::new(),
            credentials: None,
        }
    }

    /// The same, renewing `credentials` when AWS refuses them.
    pub fn renewing(self, credentials: Arc<Renewable>) -> Self {
        Caller { credentials: Some(credentials), ..self }
    }

    /// Tell the credentials how AWS took them: a refusal renews them (once per backoff step,
    /// counted as a [`RENEW_CREDENTIALS`] call); any answer resets their backoff. Returns
    /// whether they were renewed.
    fn credentials_answered<T>(&self, answer: &Result<T>) -> bool {
        let Some(credentials) = &self.credentials else { return false };
        match answer {
            Err(Error::Credentials(reason)) => {
                let renewed = credentials.renew(reason);
                if renewed {
                    self.counters.record(RENEW_CREDENTIALS);
                }
                renewed
            }
            Err(Error::Transient(_)) => false,
            _ => {
                credentials.accepted();
                false
            }
        }
    }

    /// Send one request of `action` (`request` builds and sends one attempt): every attempt
    /// waits for a rate slot and is counted; SDK errors are classified; the whole gives up (a
    /// transient failure) when the deadline passes.
    pub async fn send<T, E, F, Fut>(&self, action: &'static str, request: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.attempts(action, || async { request().await.map_err(classify) }).await
    }

    /// Send one page of a listing: as [`Caller::send`], and when the page still fails
    /// transiently, try it again after a pause, up to [`PAGE_TRIES`] times in all, so one
    /// throttled page does not throw away a listing of thousands of names.
    pub async fn send_page<T, E, F, Fut>(&self, action: &'static str, request: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut failures = 0;
        loop {
            match self.send(action, &request).await {
                Err(Error::Transient(reason)) if failures + 1 < PAGE_TRIES => {
                    failures += 1;
                    tracing::debug!("{action}: page failed ({reason}); trying it again ({failures} of {PAGE_TRIES})");
                    tokio::time::sleep(self.retry_delay(failures + 1)).await;
                }
                other => return other,
            }
        }
    }

    /// Run `attempt` until it succeeds, fails for good, or runs out of attempts or time. A
    /// transient failure is tried again after a jittered, doubling delay; a throttling answer
    /// and Secrets Manager's TooManyUpdatesException (another write of the same secret in
    /// progress) are tried again until the deadline, whatever the number of attempts.
    pub async fn attempts<T, F, Fut>(&self, action: &'static str, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        // A request's deadline (the FUSE request this call is made for) may end it sooner.
        let budget = deadline::bound(self.deadline);
        let deadline = Instant::now() + budget;
        let tries = async {
            let mut failures = 0u32;
            let mut renewed = false;
            loop {
                if !self.acquire(deadline).await {
                    self.counters.record_outcome(action, "no_slot");
                    let rate = self.rate();
                    return Err(Error::Transient(format!(
                        "{action}: no request slot before the deadline ({rate:.2} a second now)"
                    )));
                }
                self.counters.record(action);
                let answer = attempt().await;
                let outcome = outcome_of(&answer);
                self.counters.record_outcome(action, outcome);
                self.adapt_rate(outcome);
                // Credentials just renewed after a refusal (rotated, expired early): the attempt
                // is made once more with them, so a rotation does not fail the request.
                if self.credentials_answered(&answer) && !renewed {
                    renewed = true;
                    continue;
                }
                let err = match answer {
                    Err(err @ Error::Transient(_)) => err,
                    other => return other,
                };
                failures += 1;
                let delay = self.retry_delay(failures);
                // Throttling asks for slower requests, not fewer: with the rate cut, the
                // request waits its turn again, until its deadline.
                let more = failures < self.attempts || is_write_conflict(&err) || outcome == "throttled";
                if !more || Instant::now() + delay >= deadline {
                    return Err(err);
                }
                tokio::time::sleep(delay).await;
            }
        };
        match tokio::time::timeout_at(deadline, tries).await {
            Ok(result) => result,
            Err(_) => {
                self.counters.record_outcome(action, "timeout");
                Err(Error::Transient(format!("{action}: no answer within {:.1}s", budget.as_secs_f64())))
            }
        }
    }

    /// Wait for a slot of the service's rate; `false` (nothing taken, no wait) when the next
    /// slot comes after `deadline`.
    async fn acquire(&self, deadline: Instant) -> bool {
        let now = Instant::now();
        let patience = deadline.saturating_duration_since(now);
        let reserved = lock(&self.rate).reserve_within(now.into_std(), patience);
        match reserved {
            None => false,
            Some(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                true
            }
        }
    }

    /// Adapt the rate to how AWS answered (`outcome`, see [`outcome_of`]): cut on throttling,
    /// grow on an answer.
    fn adapt_rate(&self, outcome: &str) {
        let now = Instant::now().into_std();
        match outcome {
            "throttled" => lock(&self.rate).throttled(now, self.unit_jitter(0)),
            "ok" | "not_found" | "denied" => lock(&self.rate).accepted(now),
            _ => {}
        }
    }

    /// A number in 0..1, different at each call.
    fn unit_jitter(&self, salt: u32) -> f64 {
        (self.jitter.hash_one((salt, std::time::Instant::now())) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The requests a second this service is allowed now (`--ps-max-tps` or
    /// `--sm-max-tps`, lower after throttling).
    pub fn rate(&self) -> f64 {
        lock(&self.rate).rate()
    }

    /// The wait before attempt `failures + 1`: base × 2^(failures−1), capped, in its upper half
    /// at random (so clients that failed together do not retry together).
    fn retry_delay(&self, failures: u32) -> Duration {
        let delay = RETRY_DELAY_BASE.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(RETRY_DELAY_CAP);
        delay.mul_f64(0.5 + 0.5 * self.unit_jitter(failures))
    }

    /// Calls made so far, per action (every attempt counts).
    pub fn call_counts(&self) -> CallCounts {
        self.counters.snapshot()
    }

    /// Calls ended so far, per action and outcome.
    pub fn call_outcomes(&self) -> OutcomeCounts {
        self.counters.outcomes()
    }
}

/// Whether `err` is Secrets Manager's refusal of a write while another write of the same
/// secret is in progress.
fn is_write_conflict(err: &Error) -> bool {
    matches!(err, Error::Transient(message) if message.starts_with("TooManyUpdatesException"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_beyond_the_rate_queues_and_throttling_slows_it() {
        let caller = Caller::new(10, Duration::from_secs(600), 1);
        let ok = || async { Ok::<(), Error>(()) };
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            caller.attempts("GetParameters", ok).await.unwrap();
        }
        assert!(start.elapsed() < Duration::from_millis(50), "the first `rate` requests pass at once");
        for _ in 0..10 {
            caller.attempts("GetParameters", ok).await.unwrap();
        }
        assert!(start.elapsed() >= Duration::from_millis(900), "then 10 a second: {:?}", start.elapsed());
        let throttled = || async { Err::<(), _>(Error::Transient("ThrottlingException: slow down".into())) };
        assert!(caller.attempts("GetParameters", throttled).await.is_err());
        assert!(caller.rate() <= 7.0, "AWS throttled: the rate is cut ({})", caller.rate());
    }

    #[tokio::test(start_paused = true)]
    async fn every_retry_takes_a_rate_slot_and_is_counted() {
        let caller = Caller::new(5, Duration::from_secs(600), 3);
        let start = tokio::time::Instant::now();
        let unavailable = || async { Err::<(), _>(Error::Transient("ServiceUnavailable: try later".into())) };
        for _ in 0..10 {
            assert!(caller.attempts("GetParameters", unavailable).await.is_err());
        }
        assert_eq!(caller.call_counts()["GetParameters"], 30, "3 attempts each, all counted");
        // 30 attempts at 5 a second after a burst of 5: at least 5 seconds.
        assert!(start.elapsed() >= Duration::from_secs(5), "retries waited for rate slots: {:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_request_waits_its_turn_again_until_its_deadline_and_then_takes_no_slot() {
        let caller = Caller::new(5, Duration::from_secs(10), 3);
        let throttled = || async { Err::<(), _>(Error::Transient("ThrottlingException: slow down".into())) };
        let start = tokio::time::Instant::now();
        caller.attempts("GetParameters", throttled).await.unwrap_err();
        let tries = caller.call_counts()["GetParameters"];
        assert!(tries > 3, "tried again past the attempt count: {tries}");
        assert!(start.elapsed() <= Duration::from_secs(10), "within the deadline: {:?}", start.elapsed());
        assert!(caller.rate() < 1.0, "each second of throttling cut the rate: {}", caller.rate());
        // The next slot comes later than a short deadline allows: refused at once, nothing taken.
        let short = Caller::new(1, Duration::from_millis(100), 1);
        let ok = || async { Ok::<(), Error>(()) };
        short.attempts("GetParameters", ok).await.unwrap();
        let refused = short.attempts("GetParameters", ok).await.unwrap_err();
        assert!(refused.to_string().contains("no request slot"), "{refused}");
        assert_eq!(short.call_counts()["GetParameters"], 1);
    }

    #[tokio::test]
    async fn a_request_refused_for_its_credentials_is_sent_again_once_with_renewed_ones() {
        use crate::provider::aws::credentials::{ChainBuilder, Renewable};
        use aws_credential_types::provider::SharedCredentialsProvider;
        use aws_credential_types::Credentials;
        let build: ChainBuilder = Box::new(|| {
            Box::pin(async { SharedCredentialsProvider::new(Credentials::new("key", "secret", None, None, "test")) })
        });
        let caller = Caller::new(100, Duration::from_secs(5), 1).renewing(Arc::new(Renewable::new(build)));
        let tries = std::sync::atomic::AtomicU32::new(0);
        let rotated = || async {
            match tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Err(Error::Credentials("ExpiredTokenException".into())),
                _ => Ok(()),
            }
        };
        caller.attempts("GetParameters", rotated).await.unwrap();
        assert_eq!(caller.call_counts()["GetParameters"], 2);
        assert_eq!(caller.call_counts()[RENEW_CREDENTIALS], 1);
        let refused = || async { Err::<(), _>(Error::Credentials("InvalidClientTokenId".into())) };
        let err = caller.attempts("GetParameters", refused).await.unwrap_err();
        assert!(matches!(err, Error::Credentials(_)), "refused again: not retried past one renewal");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried_and_write_conflicts_are_retried_until_the_deadline() {
        let caller = Caller::new(1000, Duration::from_secs(3), 2);
        let denied = || async { Err::<(), _>(Error::AccessDenied("no".into())) };
        assert!(caller.attempts("GetParameters", denied).await.is_err());
        assert_eq!(caller.call_counts()["GetParameters"], 1);
        let conflict = || async { Err::<(), _>(Error::Transient("TooManyUpdatesException: busy".into())) };
        let start = tokio::time::Instant::now();
        assert!(caller.attempts("PutSecretValue", conflict).await.is_err());
        let tries = caller.call_counts()["PutSecretValue"];
        assert!(tries > 2, "retried past the attempt count: {tries}");
        assert!(start.elapsed() <= Duration::from_secs(3), "within the deadline: {:?}", start.elapsed());
        let calls = std::sync::atomic::AtomicU32::new(0);
        let flaky = || async {
            match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Err(Error::Transient("ThrottlingException".into())),
                _ => Ok(7),
            }
        };
        assert_eq!(caller.attempts("GetSecretValue", flaky).await, Ok(7));
    }
}
