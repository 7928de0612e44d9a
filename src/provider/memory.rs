//! An in-memory provider: the base of the local store and the fast provider of core tests.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::SystemTime;

use super::{under_prefix, ApiCounters, CallCounts, FetchResult, Fetched, Listed, Provider, SecretBytes, ValueKind};
use crate::error::{Error, Result};

/// Action names this provider counts.
pub const LIST_ACTION: &str = "List";
/// Action name of a (batch) value fetch.
pub const FETCH_ACTION: &str = "Fetch";

/// Values kept in a map, keyed by full name. Thread-safe.
#[derive(Debug)]
pub struct MemoryProvider {
    values: RwLock<BTreeMap<String, Fetched>>,
    batch_limit: usize,
    counters: ApiCounters,
}

impl MemoryProvider {
    /// An empty store whose fetches carry at most `batch_limit` names.
    pub fn new(batch_limit: usize) -> Self {
        MemoryProvider {
            values: RwLock::new(BTreeMap::new()),
            batch_limit: batch_limit.max(1),
            counters: ApiCounters::default(),
        }
    }

    /// Store (or replace) a value.
    pub fn insert(&self, name: &str, kind: ValueKind, bytes: impl Into<Vec<u8>>) {
        let fetched = Fetched {
            bytes: SecretBytes::new(bytes.into()),
            kind,
            version: Some("1".to_string()),
            last_modified: Some(SystemTime::now()),
        };
        self.put(name, fetched);
    }

    /// Store (or replace) a value with all of its metadata; the version is bumped if one exists.
    pub fn put(&self, name: &str, mut fetched: Fetched) {
        let mut values = self.values.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = values.get(name) {
            let next = old.version.as_deref().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            fetched.version = Some(next.to_string());
        }
        values.insert(name.to_string(), fetched);
    }
}

impl Provider for MemoryProvider {
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.counters.record(LIST_ACTION);
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        Ok(values
            .iter()
            .filter(|(name, _)| under_prefix(prefix, name))
            .map(|(name, fetched)| Listed { name: name.clone(), last_modified: fetched.last_modified })
            .collect())
    }

    fn fetch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        self.counters.record(FETCH_ACTION);
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        Ok(names.iter().map(|name| (name.clone(), values.get(name).cloned().ok_or(Error::NotFound))).collect())
    }

    fn batch_limit(&self) -> usize {
        self.batch_limit
    }

    fn call_counts(&self) -> CallCounts {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_by_prefix_and_fetches_missing_as_not_found() {
        let store = MemoryProvider::new(10);
        store.insert("/prod/a", ValueKind::String, "1");
        store.insert("/dev/b", ValueKind::String, "2");
        let listed = store.list("/prod/").unwrap();
        assert_eq!(listed.len(), 1);
        let got = store.fetch(&["/prod/a".into(), "/nope".into()]).unwrap();
        assert_eq!(got[0].1.as_ref().unwrap().bytes.as_slice(), b"1");
        assert_eq!(got[1].1.as_ref().unwrap_err(), &Error::NotFound);
        assert_eq!(store.call_counts()[FETCH_ACTION], 1);
    }
}
