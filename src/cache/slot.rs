//! One cache entry as a small state machine: the last good value, when it was fetched, the last
//! error, the failure count and when the next attempt may run; plus the shared in-flight fetch.
//! Pure decisions over an instant passed in, so they are tested without a clock or a provider.

use std::sync::Arc;

use super::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Freshness rules of one cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How long a value is served as fresh.
    pub ttl: Duration,
    /// How long past its TTL a value is still served while refreshes fail transiently.
    pub max_stale: Duration,
    /// First delay after a failure; doubles with each further failure.
    pub backoff_base: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// How long a name found missing is not asked for again.
    pub negative_ttl: Duration,
}

impl Policy {
    /// The delay before attempt `failures + 1`: base × 2^(failures−1), at most `max_backoff`,
    /// scaled by `jitter` (0..1) into its upper half, so it lies in [delay/2, delay].
    pub fn backoff(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let delay = self.backoff_base.saturating_mul(1u32 << doublings).min(self.max_backoff);
        delay.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// Whether an error ends the serving of a stale value (the name is gone, or we may not see it)
/// rather than being an outage to ride out.
pub fn ends_stale(err: &Error) -> bool {
    matches!(err, Error::NotFound | Error::AccessDenied(_))
}

/// A fetch in progress; every reader of the key waits on the same one.
pub struct Flight<T> {
    outcome: Mutex<Option<Result<Arc<T>>>>,
    done: Condvar,
}

impl<T> Default for Flight<T> {
    fn default() -> Self {
        Flight { outcome: Mutex::new(None), done: Condvar::new() }
    }
}

impl<T> Flight<T> {
    /// Publish the outcome and wake every waiter.
    pub fn finish(&self, outcome: Result<Arc<T>>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        self.done.notify_all();
    }

    /// Whether the outcome is published.
    pub fn is_finished(&self) -> bool {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Wait for the outcome, at most `patience`: past it, a transient failure (the fetch goes
    /// on, and lands for the next reader).
    pub fn wait(&self, patience: Duration) -> Result<Arc<T>> {
        let guard = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .done
            .wait_timeout_while(guard, patience, |outcome| outcome.is_none())
            .unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(outcome) => outcome.clone(),
            None => Err(Error::Transient(format!("no answer within {}s", patience.as_secs_f64()))),
        }
    }
}

/// What a reader does with an entry.
pub enum Decision<T> {
    /// Serve this value; nothing else to do.
    Serve(Arc<T>),
    /// Serve this value, and start a background refresh.
    ServeAndRefresh(Arc<T>),
    /// Wait for the fetch already in flight.
    Wait(Arc<Flight<T>>),
    /// Start a fetch and wait for it.
    Fetch,
    /// Answer this remembered error at once, with no call.
    Fail(Error),
}

/// One cached key.
pub struct Slot<T> {
    /// The last good value.
    pub value: Option<Arc<T>>,
    /// When `value` was fetched (or last confirmed unchanged).
    pub fetched_at: Option<Instant>,
    /// The last failure, until a fetch succeeds.
    pub error: Option<Error>,
    /// Failures in a row.
    pub failures: u32,
    /// No attempt before this instant.
    pub next_retry: Option<Instant>,
    /// When a reader last asked for this key (or when it was prefetched).
    pub last_read: Instant,
    /// The fetch in progress, if any.
    pub flight: Option<Arc<Flight<T>>>,
    /// Whether `value` is the first this entry held (a cold read), not a refresh of one.
    pub cold: bool,
}

impl<T> Slot<T> {
    /// An entry that knows nothing yet.
    pub fn new(now: Instant) -> Self {
        Slot {
            value: None,
            fetched_at: None,
            error: None,
            failures: 0,
            next_retry: None,
            last_read: now,
            flight: None,
            cold: false,
        }
    }

    /// How old the value is.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.fetched_at.map(|at| now.saturating_duration_since(at))
    }

    /// Whether attempts are paused after a failure.
    pub fn in_backoff(&self, now: Instant) -> bool {
        self.next_retry.is_some_and(|at| now < at)
    }

    /// Whether the value may still be served: within `ttl + max_stale` of its fetch.
    pub fn servable(&self, now: Instant, ttl: Duration, policy: &Policy) -> Option<Arc<T>> {
        let value = self.value.as_ref()?;
        (self.age(now)? < ttl + policy.max_stale).then(|| value.clone())
    }

    /// What a reader arriving at `now` does. `ttl` is this entry's freshness period.
    pub fn decide(&self, now: Instant, ttl: Duration, policy: &Policy) -> Decision<T> {
        if let (Some(value), Some(age)) = (&self.value, self.age(now)) {
            if age < ttl {
                return Decision::Serve(value.clone());
            }
            let servable = self.servable(now, ttl, policy);
            return match (&self.flight, servable) {
                (_, Some(value)) if self.flight.is_some() || self.in_backoff(now) => Decision::Serve(value),
                (Some(flight), None) => Decision::Wait(flight.clone()),
                (None, None) if self.in_backoff(now) => {
                    Decision::Fail(self.error.clone().unwrap_or(Error::Transient("value too stale".into())))
                }
                // Expired within the last TTL (the refresh-ahead missed it: the value was idle),
                // or its last refresh failed transiently (an outage: the value's age keeps
                // growing, but readers must not wait on AWS at each retry).
                (None, Some(value)) if age < ttl * 2 || self.failures > 0 => Decision::ServeAndRefresh(value),
                _ => Decision::Fetch,
            };
        }
        if let Some(flight) = &self.flight {
            return Decision::Wait(flight.clone());
        }
        match &self.error {
            Some(err) if self.in_backoff(now) => Decision::Fail(err.clone()),
            _ => Decision::Fetch,
        }
    }

    /// Record a fetch's outcome at `now`. Success resets failures. A transient failure keeps the
    /// value (stale) and waits a jittered, growing backoff; NotFound and AccessDenied drop it
    /// (NotFound is asked again after `negative_ttl`). Returns the failure count.
    pub fn record(&mut self, outcome: &Result<Arc<T>>, now: Instant, policy: &Policy, jitter: f64) -> u32 {
        match outcome {
            Ok(value) => {
                self.cold = self.value.is_none();
                self.value = Some(value.clone());
                self.fetched_at = Some(now);
                self.error = None;
                self.failures = 0;
                self.next_retry = None;
            }
            Err(err) => {
                self.failures = self.failures.saturating_add(1);
                let delay = match err {
                    Error::NotFound => policy.negative_ttl,
                    _ => policy.backoff(self.failures, jitter),
                };
                self.next_retry = Some(now + delay);
                if ends_stale(err) {
                    self.value = None;
                    self.fetched_at = None;
                }
                self.error = Some(err.clone());
            }
        }
        self.failures
    }

    /// The value a reader gets from a finished fetch: its value, or on a transient failure the
    /// stale value while it is servable.
    pub fn answer(&self, outcome: Result<Arc<T>>, now: Instant, ttl: Duration, policy: &Policy) -> Result<Arc<T>> {
        match outcome {
            Err(err) if !ends_stale(&err) => self.servable(now, ttl, policy).ok_or(err),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn policy() -> Policy {
        Policy {
            ttl: TTL,
            max_stale: Duration::from_secs(100),
            backoff_base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
        }
    }

    fn slot_with(value: u32, at: Instant) -> Slot<u32> {
        let mut slot = Slot::new(at);
        slot.record(&Ok(Arc::new(value)), at, &policy(), 0.0);
        slot
    }

    fn served(decision: Decision<u32>) -> Option<(u32, bool)> {
        match decision {
            Decision::Serve(v) => Some((*v, false)),
            Decision::ServeAndRefresh(v) => Some((*v, true)),
            _ => None,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let p = policy();
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff(5, 1.0), Duration::from_secs(16));
        assert_eq!(p.backoff(30, 1.0), Duration::from_secs(60));
        assert_eq!(p.backoff(u32::MAX, 0.0), Duration::from_secs(30));
        for jitter in [0.0, 0.3, 0.99] {
            let d = p.backoff(4, jitter);
            assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(8), "{d:?}");
        }
    }

    #[test]
    fn fresh_then_stale_while_revalidate_then_fetch() {
        let t0 = Instant::now();
        let slot = slot_with(7, t0);
        assert_eq!(served(slot.decide(t0 + TTL / 2, TTL, &policy())), Some((7, false)));
        assert_eq!(served(slot.decide(t0 + TTL + TTL / 2, TTL, &policy())), Some((7, true)));
        assert!(matches!(slot.decide(t0 + TTL * 3, TTL, &policy()), Decision::Fetch));
    }

    #[test]
    fn a_transient_failure_keeps_the_value_until_max_stale() {
        let t0 = Instant::now();
        let mut slot = slot_with(7, t0);
        let later = t0 + TTL * 3;
        slot.record(&Err(Error::Transient("503".into())), later, &policy(), 0.5);
        assert_eq!(served(slot.decide(later, TTL, &policy())), Some((7, false)), "in backoff: stale, no call");
        assert_eq!(slot.answer(Err(Error::Transient("x".into())), later, TTL, &policy()).map(|v| *v), Ok(7));
        let past = t0 + TTL + policy().max_stale + Duration::from_secs(1);
        assert!(slot.answer(Err(Error::Transient("x".into())), past, TTL, &policy()).is_err());
    }

    #[test]
    fn not_found_and_access_denied_end_the_value() {
        let t0 = Instant::now();
        for err in [Error::NotFound, Error::AccessDenied("kms".into())] {
            let mut slot = slot_with(7, t0);
            let later = t0 + TTL * 3;
            slot.record(&Err(err.clone()), later, &policy(), 0.0);
            assert!(slot.value.is_none());
            assert!(matches!(slot.decide(later, TTL, &policy()), Decision::Fail(e) if e == err));
            assert_eq!(slot.answer(Err(err.clone()), later, TTL, &policy()).unwrap_err(), err);
        }
    }

    #[test]
    fn refused_credentials_and_outages_keep_the_value_servable() {
        assert!(!ends_stale(&Error::Credentials("ExpiredTokenException".into())));
        assert!(!ends_stale(&Error::Transient("503".into())));
        assert!(!ends_stale(&Error::Service("unknown".into())));
    }

    #[test]
    fn failures_are_remembered_until_the_backoff_ends() {
        let t0 = Instant::now();
        let mut slot: Slot<u32> = Slot::new(t0);
        slot.record(&Err(Error::Transient("timeout".into())), t0, &policy(), 1.0);
        assert!(matches!(slot.decide(t0 + Duration::from_millis(900), TTL, &policy()), Decision::Fail(_)));
        assert!(matches!(slot.decide(t0 + Duration::from_millis(1001), TTL, &policy()), Decision::Fetch));
        slot.record(&Err(Error::Transient("timeout".into())), t0, &policy(), 1.0);
        assert_eq!(slot.next_retry, Some(t0 + Duration::from_secs(2)));
        slot.record(&Err(Error::NotFound), t0, &policy(), 1.0);
        assert_eq!(slot.next_retry, Some(t0 + policy().negative_ttl));
    }

    #[test]
    fn during_an_outage_a_known_value_is_served_and_refreshed_in_the_background_at_any_age() {
        let t0 = Instant::now();
        let mut slot = slot_with(7, t0);
        assert!(matches!(slot.decide(t0 + TTL * 3, TTL, &policy()), Decision::Fetch), "idle and old: fetched");
        slot.record(&Err(Error::Transient("503".into())), t0 + TTL * 3, &policy(), 0.0);
        for age in [TTL * 4, TTL * 8, policy().max_stale] {
            assert_eq!(served(slot.decide(t0 + age, TTL, &policy())), Some((7, true)), "at {age:?}: no wait");
        }
    }

    #[test]
    fn readers_of_a_value_in_flight_are_served_not_made_to_wait() {
        let t0 = Instant::now();
        let mut slot = slot_with(7, t0);
        slot.flight = Some(Arc::new(Flight::default()));
        assert_eq!(served(slot.decide(t0 + TTL * 3, TTL, &policy())), Some((7, false)));
        let mut cold: Slot<u32> = Slot::new(t0);
        cold.flight = Some(Arc::new(Flight::default()));
        assert!(matches!(cold.decide(t0, TTL, &policy()), Decision::Wait(_)));
    }
}
