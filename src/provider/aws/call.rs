//! Every AWS request goes through here: counted per action, admitted by a per-service rate
//! limit (a burst, then a steady rate: a burst of cold reads queues instead of being
//! throttled), and bounded by the request deadline, retries included.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::Mutex;

use super::classify;
use crate::error::{Error, Result};
use crate::provider::{ApiCounters, CallCounts};

/// A token bucket: `rate` requests a second on average, at most `rate` at once after a pause.
/// Each request reserves the next slot, so waiters are served in order.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter of `rate` requests a second (at least 1).
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        RateLimiter { rate, state: Mutex::new(Bucket { tokens: rate, at: Instant::now() }) }
    }

    /// Wait for a slot.
    pub async fn acquire(&self) {
        let wait = {
            let mut bucket = self.state.lock().await;
            let now = Instant::now();
            let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate;
            bucket.tokens = (bucket.tokens + refill).min(self.rate) - 1.0;
            bucket.at = now;
            match bucket.tokens < 0.0 {
                true => Duration::from_secs_f64(-bucket.tokens / self.rate),
                false => Duration::ZERO,
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// How one service's requests are sent.
#[derive(Debug)]
pub struct Caller {
    counters: ApiCounters,
    limiter: RateLimiter,
    deadline: Duration,
}

impl Caller {
    /// Requests of at most `max_tps` a second, each answered within `deadline` or failed.
    pub fn new(max_tps: u32, deadline: Duration) -> Self {
        Caller { counters: ApiCounters::default(), limiter: RateLimiter::new(max_tps), deadline }
    }

    /// Send one request of `action`: wait for a rate slot, count it, and give up (a transient
    /// failure) when the deadline passes; SDK errors are classified.
    pub async fn send<T, E, F>(&self, action: &'static str, request: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let attempt = async {
            self.limiter.acquire().await;
            self.counters.record(action);
            request.await.map_err(classify)
        };
        match tokio::time::timeout(self.deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::Transient(format!("{action}: no answer within {}s", self.deadline.as_secs_f64()))),
        }
    }

    /// Calls made so far, per action.
    pub fn call_counts(&self) -> CallCounts {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_beyond_the_rate_queues() {
        let limiter = RateLimiter::new(10);
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(50), "the first `rate` requests pass at once");
        for _ in 0..10 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(900), "then 10 a second: {:?}", start.elapsed());
    }
}
