//! Per-API-action call counters kept by each provider: calls sent, and how they ended.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// The action under which renewals of the daemon's AWS credentials are counted (after AWS
/// refused them): shown in the status and metrics like the calls.
pub const RENEW_CREDENTIALS: &str = "RenewCredentials";

/// A snapshot of calls made, keyed by API action name (`GetParameters`, `ListSecrets`, ...).
pub type CallCounts = BTreeMap<&'static str, u64>;

/// A snapshot of calls that ended, keyed by (action, outcome); outcomes are those of
/// [`outcome_of`] and `timeout` (no answer before the deadline).
pub type OutcomeCounts = BTreeMap<(&'static str, &'static str), u64>;

/// Thread-safe counters of API calls, one per action name, and of their outcomes.
#[derive(Debug, Default)]
pub struct ApiCounters {
    counts: Mutex<CallCounts>,
    outcomes: Mutex<OutcomeCounts>,
}

impl ApiCounters {
    /// Record one call of `action`, as it is sent.
    pub fn record(&self, action: &'static str) {
        *lock(&self.counts).entry(action).or_insert(0) += 1;
    }

    /// Record how one call of `action` ended.
    pub fn record_outcome(&self, action: &'static str, outcome: &'static str) {
        *lock(&self.outcomes).entry((action, outcome)).or_insert(0) += 1;
    }

    /// A copy of the counts so far.
    pub fn snapshot(&self) -> CallCounts {
        lock(&self.counts).clone()
    }

    /// A copy of the outcomes so far.
    pub fn outcomes(&self) -> OutcomeCounts {
        lock(&self.outcomes).clone()
    }
}

/// How a call ended, as the metrics name it: `ok`, `throttled`, `denied`, `not_found`,
/// `credentials` (the daemon's own credentials refused) or `error`.
pub fn outcome_of<T>(result: &Result<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(Error::Transient(reason)) if is_throttling(reason) => "throttled",
        Err(Error::AccessDenied(_)) => "denied",
        Err(Error::NotFound) => "not_found",
        Err(Error::Credentials(_)) => "credentials",
        Err(_) => "error",
    }
}

/// Whether a transient failure's text is a throttling answer (AWS's codes for it).
fn is_throttling(reason: &str) -> bool {
    ["Throttl", "TooManyRequests", "RequestLimitExceeded", "Rate exceeded"].iter().any(|code| reason.contains(code))
}

/// Lock `mutex`, taking it over from a thread that panicked while holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_action_separately() {
        let counters = ApiCounters::default();
        counters.record("GetParameters");
        counters.record("GetParameters");
        counters.record("ListSecrets");
        let snap = counters.snapshot();
        assert_eq!(snap["GetParameters"], 2);
        assert_eq!(snap["ListSecrets"], 1);
    }

    #[test]
    fn outcomes_tell_throttling_denial_and_absence_apart() {
        let throttled: Result<()> = Err(Error::Transient("ThrottlingException: Rate exceeded".into()));
        let outage: Result<()> = Err(Error::Transient("connection refused".into()));
        assert_eq!(outcome_of(&throttled), "throttled");
        assert_eq!(outcome_of(&outage), "error");
        assert_eq!(outcome_of::<()>(&Err(Error::AccessDenied("no".into()))), "denied");
        assert_eq!(outcome_of::<()>(&Err(Error::NotFound)), "not_found");
        assert_eq!(outcome_of(&Ok(())), "ok");
        let counters = ApiCounters::default();
        counters.record_outcome("GetParameters", "throttled");
        counters.record_outcome("GetParameters", "throttled");
        assert_eq!(counters.outcomes()[&("GetParameters", "throttled")], 2);
    }
}
