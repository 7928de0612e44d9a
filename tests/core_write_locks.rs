//! Per-name write locks in the cache's write protocol, against the in-memory provider slowed
//! down in `update`: two slow writes to different names overlap, two to the same name take
//! turns, and two writers of different keys of one JSON value both land.

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
            std::thread::spawn(move || cache.edit(name, |current| Ok(edit(current.bytes.as_slice()))).unwrap())
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
fn slow_writes_to_one_name_take_turns_and_json_keys_are_both_kept() {
    let (provider, cache) = cache();
    let took = edit_at_once(
        &cache,
        vec![("j", |current| with_key(current, "user", "u1")), ("j", |current| with_key(current, "pass", "p1"))],
    );
    assert_eq!(provider.most.load(Ordering::SeqCst), 1, "two writers of one name ran at once");
    assert!(took >= UPDATE_TAKES * 2, "{took:?}");
    let stored = provider.inner.get("j").unwrap();
    assert_eq!(stored.bytes.as_slice(), br#"{"user":"u1","pass":"p1"}"#, "one writer's key was lost");
}
