//! Per-name write locks in the cache's write protocol, against the in-memory provider slowed
//! down in `update`: two slow writes to different names overlap, two to the same name never
//! run at once, two writers of different keys of one JSON value both land, and a burst of
//! writers of one name shares a few updates (group commit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secretfs::cache::{CacheSettings, ServiceCache};
use secretfs::error::Result;
use secretfs::provider::memory::MemoryProvider;
use secretfs::provider::{CallCounts, FetchResult, Fetched, Listed, Provider, SecretBytes, Service, ValueKind};

const UPDATE_TAKES: Duration = Duration::from_millis(300);

/// The memory provider, with every update taking [`UPDATE_TAKES`] and the most updates in
/// progress at once recorded.
struct SlowUpdates {
    inner: MemoryProvider,
    in_progress: AtomicUsize,
    most: AtomicUsize,
}

impl Provider for SlowUpdates {
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.inner.list(prefix)
    }
    fn versions(&self, names: &[String]) -> Result<HashMap<String, String>> {
        self.inner.versions(names)
    }
    fn fetch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        self.inner.fetch(names)
    }
    fn update(&self, name: &str, current: &Fetched, bytes: SecretBytes) -> Result<Fetched> {
        let now = self.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(UPDATE_TAKES);
        let stored = self.inner.update(name, current, bytes);
        self.in_progress.fetch_sub(1, Ordering::SeqCst);
        stored
    }
    fn create(&self, name: &str, kind: ValueKind, bytes: SecretBytes) -> Result<Fetched> {
        self.inner.create(name, kind, bytes)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(name)
    }
    fn batch_limit(&self) -> usize {
        self.inner.batch_limit()
    }
    fn call_counts(&self) -> CallCounts {
        self.inner.call_counts()
    }

    fn call_outcomes(&self) -> secretfs::provider::OutcomeCounts {
        self.inner.call_outcomes()
    }
}

fn cache() -> (Arc<SlowUpdates>, ServiceCache) {
    let inner = MemoryProvider::for_service(Service::SecretsManager);
    inner.insert("a", ValueKind::SecretString, "a0");
    inner.insert("b", ValueKind::SecretString, "b0");
    inner.insert("j", ValueKind::SecretString, r#"{"user":"u0","pass":"p0"}"#);
    let provider = Arc::new(SlowUpdates { inner, in_progress: AtomicUsize::new(0), most: AtomicUsize::new(0) });
    let cache = ServiceCache::new(Service::SecretsManager, provider.clone(), String::new(), CacheSettings::default());
    (provider, cache)
}

/// A new value made from the current one.
type Edit = fn(&[u8]) -> Vec<u8>;

/// Run one edit per `(name, edit)` on its own thread at once; returns how long they all took.
fn edit_at_once(cache: &ServiceCache, edits: Vec<(&'static str, Edit)>) -> Duration {
    let started = Instant::now();
    let writers: Vec<_> = edits
        .into_iter()
        .map(|(name, edit)| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                cache.edit(name, Box::new(move |current: &Fetched| Ok(edit(current.bytes.as_slice())))).unwrap()
            })
        })
        .collect();
    writers.into_iter().for_each(|writer| assert!(writer.join().unwrap()));
    started.elapsed()
}

/// `current` (a JSON object) with `key` set to `value`, key order kept.
fn with_key(current: &[u8], key: &str, value: &str) -> Vec<u8> {
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(current).unwrap();
    object.insert(key.into(), value.into());
    serde_json::to_vec(&object).unwrap()
}

#[test]
fn slow_writes_to_different_names_overlap() {
    let (provider, cache) = cache();
    edit_at_once(&cache, vec![("a", |_| b"a1".to_vec()), ("b", |_| b"b1".to_vec())]);
    assert_eq!(provider.most.load(Ordering::SeqCst), 2, "the two updates never ran at once");
    assert_eq!(provider.inner.get("a").unwrap().bytes.as_slice(), b"a1");
    assert_eq!(provider.inner.get("b").unwrap().bytes.as_slice(), b"b1");
}

#[test]
fn slow_writes_to_one_name_never_overlap_and_json_keys_are_both_kept() {
    let (provider, cache) = cache();
    edit_at_once(
        &cache,
        vec![("j", |current| with_key(current, "user", "u1")), ("j", |current| with_key(current, "pass", "p1"))],
    );
    assert_eq!(provider.most.load(Ordering::SeqCst), 1, "two writers of one name ran at once");
    let updates = provider.call_counts()[secretfs::provider::memory::UPDATE_ACTION];
    assert!((1..=2).contains(&updates), "one update each, or both in one: {updates}");
    let stored = provider.inner.get("j").unwrap();
    assert_eq!(stored.bytes.as_slice(), br#"{"user":"u1","pass":"p1"}"#, "one writer's key was lost");
}

#[test]
fn a_burst_of_writers_of_one_name_shares_a_few_updates_and_each_learns_the_outcome() {
    let (provider, cache) = cache();
    let values: Vec<String> = (0..100).map(|i| format!("value-{i:03}")).collect();
    let writers: Vec<_> = values
        .iter()
        .cloned()
        .map(|value| {
            let cache = cache.clone();
            std::thread::spawn(move || cache.edit("a", Box::new(move |_: &Fetched| Ok(value.into_bytes()))))
        })
        .collect();
    let outcomes: Vec<Result<bool>> = writers.into_iter().map(|writer| writer.join().unwrap()).collect();
    assert!(outcomes.iter().all(|outcome| outcome.is_ok()), "every joined close() succeeded: {outcomes:?}");
    let updates = provider.call_counts()[secretfs::provider::memory::UPDATE_ACTION];
    assert!(updates <= 5, "100 writers, {updates} updates");
    let stored = String::from_utf8(provider.inner.get("a").unwrap().bytes.as_slice().to_vec()).unwrap();
    assert!(values.contains(&stored), "the value stored is one of those written, whole: {stored}");
    // Sequential writes are unchanged: one update each.
    for value in ["x", "y"] {
        assert!(cache.edit("b", Box::new(move |_: &Fetched| Ok(value.as_bytes().to_vec()))).unwrap());
    }
    assert_eq!(provider.call_counts()[secretfs::provider::memory::UPDATE_ACTION], updates + 2);
}

#[test]
fn a_bad_edit_in_a_batch_fails_alone() {
    let (provider, cache) = cache();
    let slow = {
        let cache = cache.clone();
        std::thread::spawn(move || cache.edit("a", Box::new(|_: &Fetched| Ok(b"first".to_vec()))))
    };
    std::thread::sleep(UPDATE_TAKES / 3);
    let bad = {
        let cache = cache.clone();
        std::thread::spawn(move || cache.edit("a", Box::new(|_: &Fetched| Ok(vec![0xff, 0xfe]))))
    };
    let good = {
        let cache = cache.clone();
        std::thread::spawn(move || cache.edit("a", Box::new(|_: &Fetched| Ok(b"second".to_vec()))))
    };
    assert_eq!(slow.join().unwrap(), Ok(true));
    assert!(matches!(bad.join().unwrap(), Err(secretfs::error::Error::InvalidInput(_))), "not UTF-8");
    assert_eq!(good.join().unwrap(), Ok(true));
    assert_eq!(provider.inner.get("a").unwrap().bytes.as_slice(), b"second");
    assert_eq!(provider.call_counts()[secretfs::provider::memory::UPDATE_ACTION], 2);
}
