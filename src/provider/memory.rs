//! An in-memory provider: the base of the local store and the fast provider of core tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use super::{
    outcome_of, under_prefix, ApiCounters, CallCounts, FetchResult, Fetched, Listed, Metadata, OutcomeCounts, Page,
    PageRest, Provider, SecretBytes, Service, ValueKind,
};
use crate::error::{Error, Result};

/// Action names this provider counts.
pub const LIST_ACTION: &str = "List";
/// Action name of a (batch) value fetch.
pub const FETCH_ACTION: &str = "Fetch";
/// Action name of a metadata (version) lookup.
pub const VERSIONS_ACTION: &str = "Versions";
/// Action name of a value update.
pub const UPDATE_ACTION: &str = "Update";
/// Action name of a create.
pub const CREATE_ACTION: &str = "Create";
/// Action name of a delete.
pub const DELETE_ACTION: &str = "Delete";

/// Values kept in a map, keyed by full name. Thread-safe.
#[derive(Debug)]
pub struct MemoryProvider {
    values: RwLock<BTreeMap<String, Fetched>>,
    batch_limit: usize,
    value_limit: usize,
    counters: ApiCounters,
    faults: Mutex<HashMap<&'static str, Error>>,
    denied: Mutex<Vec<String>>,
    /// The last version of each name deleted, so a name created again goes on from it.
    removed: Mutex<HashMap<String, u64>>,
    /// How many names a probe's page holds (0: a probe answers with the whole listing).
    page_size: AtomicUsize,
}

impl MemoryProvider {
    /// An empty store whose fetches carry at most `batch_limit` names and whose values hold at
    /// most `value_limit` bytes.
    pub fn new(batch_limit: usize, value_limit: usize) -> Self {
        MemoryProvider {
            values: RwLock::new(BTreeMap::new()),
            batch_limit: batch_limit.max(1),
            value_limit,
            counters: ApiCounters::default(),
            faults: Mutex::new(HashMap::new()),
            denied: Mutex::new(Vec::new()),
            removed: Mutex::default(),
            page_size: AtomicUsize::new(0),
        }
    }

    /// An empty store with the batch size and value limit of `service`.
    pub fn for_service(service: Service) -> Self {
        MemoryProvider::new(service.batch_limit(), service.max_value_len())
    }

    /// Store (or replace, as a new version) a value.
    pub fn insert(&self, name: &str, kind: ValueKind, bytes: impl Into<Vec<u8>>) {
        // A name deleted and created again never gets a version it had before (as a Secrets
        // Manager VersionId, or a Parameter Store version with its instant).
        let previous = self
            .get(name)
            .and_then(|old| old.version?.parse::<u64>().ok())
            .unwrap_or_else(|| self.removed_version(name));
        let fetched = Fetched {
            bytes: SecretBytes::new(bytes.into()),
            kind,
            version: Some((previous + 1).to_string()),
            last_modified: Some(SystemTime::now()),
            meta: Metadata::default(),
        };
        self.put(name, fetched);
    }

    /// Store (or replace) a value with all of its metadata.
    pub fn put(&self, name: &str, fetched: Fetched) {
        self.values.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), fetched);
    }

    /// Remove a value, returning it if it was there.
    pub fn remove(&self, name: &str) -> Option<Fetched> {
        let removed = self.values.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        if let Some(version) = removed.as_ref().and_then(|old| old.version.as_deref()?.parse::<u64>().ok()) {
            self.removed.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), version);
        }
        removed
    }

    /// The last version `name` had before it was deleted (0 if it never was).
    fn removed_version(&self, name: &str) -> u64 {
        self.removed.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied().unwrap_or(0)
    }

    /// The stored value of `name`, if any, without counting a call.
    pub fn get(&self, name: &str) -> Option<Fetched> {
        self.values.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Answer every later call of `action` (e.g. [`FETCH_ACTION`]) with `error` (tests of
    /// outages and refusals); `None` heals it.
    pub fn fail(&self, action: &'static str, error: Option<Error>) {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            Some(error) => faults.insert(action, error),
            None => faults.remove(action),
        };
    }

    /// Refuse every fetch that includes `name`, as an IAM deny on one name refuses a whole
    /// GetParameters or BatchGetSecretValue call.
    pub fn deny(&self, name: &str) {
        self.denied.lock().unwrap_or_else(|p| p.into_inner()).push(name.to_string());
    }

    /// Count a call of `action`, failing it if a fault is set.
    fn call(&self, action: &'static str) -> Result<()> {
        self.counters.record(action);
        let answer = match self.faults.lock().unwrap_or_else(|p| p.into_inner()).get(action) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        };
        self.counters.record_outcome(action, outcome_of(&answer));
        answer
    }

    /// Answer probes with pages of `size` names, as a paging service does (each page a call; a
    /// page's token is the position of the next name).
    pub fn page_probes(&self, size: usize) {
        self.page_size.store(size, Ordering::Relaxed);
    }

    /// Every stored value, by name (for saving a local store).
    pub fn snapshot(&self) -> BTreeMap<String, Fetched> {
        self.values.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Provider for MemoryProvider {
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.call(LIST_ACTION)?;
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        Ok(values
            .iter()
            .filter(|(name, _)| under_prefix(prefix, name))
            .map(|(name, fetched)| Listed { name: name.clone(), last_modified: fetched.last_modified })
            .collect())
    }

    fn probe(&self, prefix: &str) -> Result<Page> {
        let mut names = self.list(prefix)?;
        let size = self.page_size.load(Ordering::Relaxed);
        if size == 0 || names.len() <= size {
            return Ok(Page { names, rest: None });
        }
        names.truncate(size);
        Ok(Page { names, rest: Some(PageRest { prefix: prefix.to_string(), token: size.to_string() }) })
    }

    fn list_rest(&self, rest: &PageRest) -> Result<Vec<Listed>> {
        let from: usize = rest.token.parse().map_err(|_| Error::Service(format!("no such page: {}", rest.token)))?;
        Ok(self.list(&rest.prefix)?.into_iter().skip(from).collect())
    }

    fn fetch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        self.call(FETCH_ACTION)?;
        if let Some(name) = names.iter().find(|n| self.denied.lock().unwrap_or_else(|p| p.into_inner()).contains(n)) {
            return Err(Error::AccessDenied(format!("not allowed to read {name}")));
        }
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        Ok(names.iter().map(|name| (name.clone(), values.get(name).cloned().ok_or(Error::NotFound))).collect())
    }

    fn versions(&self, names: &[String]) -> Result<HashMap<String, String>> {
        self.call(VERSIONS_ACTION)?;
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        Ok(names.iter().filter_map(|name| Some((name.clone(), values.get(name)?.version.clone()?))).collect())
    }

    fn update(&self, name: &str, current: &Fetched, bytes: SecretBytes) -> Result<Fetched> {
        self.call(UPDATE_ACTION)?;
        if bytes.len() > self.value_limit {
            return Err(Error::TooLarge);
        }
        let mut values = self.values.write().unwrap_or_else(|p| p.into_inner());
        let old = values.get(name).ok_or(Error::NotFound)?;
        let next = old.version.as_deref().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
        let fetched = Fetched {
            bytes,
            kind: current.kind,
            version: Some(next.to_string()),
            last_modified: Some(SystemTime::now()),
            meta: old.meta.clone(),
        };
        values.insert(name.to_string(), fetched.clone());
        Ok(fetched)
    }

    fn create(&self, name: &str, kind: ValueKind, bytes: SecretBytes) -> Result<Fetched> {
        self.call(CREATE_ACTION)?;
        if bytes.len() > self.value_limit {
            return Err(Error::TooLarge);
        }
        let mut values = self.values.write().unwrap_or_else(|p| p.into_inner());
        if values.contains_key(name) {
            return Err(Error::AlreadyExists);
        }
        let (version, last_modified) = (Some((self.removed_version(name) + 1).to_string()), Some(SystemTime::now()));
        let fetched = Fetched { bytes, kind, version, last_modified, meta: Metadata::default() };
        values.insert(name.to_string(), fetched.clone());
        Ok(fetched)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.call(DELETE_ACTION)?;
        self.remove(name).map(drop).ok_or(Error::NotFound)
    }

    fn batch_limit(&self) -> usize {
        self.batch_limit
    }

    fn call_counts(&self) -> CallCounts {
        self.counters.snapshot()
    }

    fn call_outcomes(&self) -> OutcomeCounts {
        self.counters.outcomes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_by_prefix_and_fetches_missing_as_not_found() {
        let store = MemoryProvider::new(10, 4096);
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
