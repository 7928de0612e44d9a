//! Per-API-action call counters kept by each provider.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A snapshot of calls made, keyed by API action name (`GetParameters`, `ListSecrets`, ...).
pub type CallCounts = BTreeMap<&'static str, u64>;

/// Thread-safe counters of API calls, one per action name.
#[derive(Debug, Default)]
pub struct ApiCounters {
    counts: Mutex<CallCounts>,
}

impl ApiCounters {
    /// Record one call of `action`.
    pub fn record(&self, action: &'static str) {
        *self.lock().entry(action).or_insert(0) += 1;
    }

    /// A copy of the counts so far.
    pub fn snapshot(&self) -> CallCounts {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CallCounts> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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
}
