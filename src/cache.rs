//! The per-service cache: a TTL'd namespace snapshot and a TTL'd, size-bounded value cache
//! whose misses are batched with their siblings and single-flight per name.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::provider::{Fetched, Listed, Provider};

/// Cache settings (defaults from s1crets: 900 s, 1000 entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a value or a listing is served before it is fetched again.
    pub ttl: Duration,
    /// How many values are kept at most.
    pub capacity: u64,
}

/// Default TTL of cached values and listings.
pub const DEFAULT_TTL: Duration = Duration::from_secs(900);
/// Default number of cached values.
pub const DEFAULT_CAPACITY: u64 = 1000;

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings { ttl: DEFAULT_TTL, capacity: DEFAULT_CAPACITY }
    }
}

/// A fetched value and, computed once on demand, its JSON object form. `Debug` never shows
/// the value or its members.
pub struct CachedValue {
    /// The value as fetched.
    pub fetched: Fetched,
    json: OnceLock<Option<serde_json::Map<String, serde_json::Value>>>,
}

impl std::fmt::Debug for CachedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedValue").field("fetched", &self.fetched).finish_non_exhaustive()
    }
}

impl CachedValue {
    /// Wrap a fetched value.
    pub fn new(fetched: Fetched) -> Self {
        CachedValue { fetched, json: OnceLock::new() }
    }

    /// The value as a JSON object, if it is text that parses as one.
    pub fn json_object(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.json
            .get_or_init(|| {
                if !self.fetched.kind.is_text() {
                    return None;
                }
                match serde_json::from_slice(self.fetched.bytes.as_slice()) {
                    Ok(serde_json::Value::Object(map)) => Some(map),
                    _ => None,
                }
            })
            .as_ref()
    }
}

type Answers = HashMap<String, Result<Arc<CachedValue>>>;

/// One fetch in progress; every name it carries waits on it.
#[derive(Default)]
struct Flight {
    answers: Mutex<Option<Arc<Answers>>>,
    done: Condvar,
}

impl Flight {
    fn finish(&self, answers: Arc<Answers>) {
        *lock(&self.answers) = Some(answers);
        self.done.notify_all();
    }

    fn wait(&self, name: &str) -> Result<Arc<CachedValue>> {
        let mut guard = lock(&self.answers);
        loop {
            if let Some(answers) = guard.as_ref() {
                return answers.get(name).cloned().unwrap_or(Err(Error::NotFound));
            }
            guard = self.done.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

struct Snapshot {
    taken: Instant,
    namespace: Arc<Namespace>,
}

/// The cache in front of one provider.
pub struct ServiceCache {
    provider: Arc<dyn Provider>,
    prefix: String,
    ttl: Duration,
    values: moka::sync::Cache<String, Arc<CachedValue>>,
    in_flight: Mutex<HashMap<String, Arc<Flight>>>,
    snapshot: Mutex<Option<Snapshot>>,
    writes: Mutex<()>,
}

impl ServiceCache {
    /// A cache over `provider`, showing names below `prefix`.
    pub fn new(provider: Arc<dyn Provider>, prefix: String, settings: CacheSettings) -> Self {
        ServiceCache {
            provider,
            prefix,
            ttl: settings.ttl,
            values: moka::sync::Cache::builder().max_capacity(settings.capacity).time_to_live(settings.ttl).build(),
            in_flight: Mutex::new(HashMap::new()),
            snapshot: Mutex::new(None),
            writes: Mutex::new(()),
        }
    }

    /// The provider behind this cache.
    pub fn provider(&self) -> &dyn Provider {
        self.provider.as_ref()
    }

    /// The current namespace, listed again once the TTL has passed. One listing at a time;
    /// if a refresh fails and an older snapshot exists, the older one is served.
    pub fn namespace(&self) -> Result<Arc<Namespace>> {
        let mut snapshot = lock(&self.snapshot);
        if let Some(s) = snapshot.as_ref().filter(|s| s.taken.elapsed() < self.ttl) {
            return Ok(s.namespace.clone());
        }
        match self.provider.list(&self.prefix) {
            Ok(listed) => {
                let namespace = Arc::new(Namespace::build(&self.prefix, listed));
                if !namespace.hidden().is_empty() {
                    log::warn!(
                        "{} names have an empty, `.` or `..` path part and are not shown: {:?}",
                        namespace.hidden().len(),
                        namespace.hidden()
                    );
                }
                *snapshot = Some(Snapshot { taken: Instant::now(), namespace: namespace.clone() });
                Ok(namespace)
            }
            Err(err) => match snapshot.as_ref() {
                Some(old) => {
                    log::warn!("listing failed, serving the previous listing: {err}");
                    Ok(old.namespace.clone())
                }
                None => Err(err),
            },
        }
    }

    /// The value of `name`. On a miss, up to a batch of not-yet-cached `siblings` is fetched in
    /// the same call; concurrent callers wanting a name already being fetched wait for that call.
    pub fn value<'a>(&self, name: &str, siblings: impl IntoIterator<Item = &'a str>) -> Result<Arc<CachedValue>> {
        if let Some(hit) = self.values.get(name) {
            return Ok(hit);
        }
        let (flight, batch) = {
            let mut in_flight = lock(&self.in_flight);
            if let Some(flight) = in_flight.get(name).cloned() {
                drop(in_flight);
                return flight.wait(name);
            }
            if let Some(hit) = self.values.get(name) {
                return Ok(hit);
            }
            let mut batch = vec![name.to_string()];
            let limit = self.provider.batch_limit();
            for sibling in siblings {
                if batch.len() >= limit {
                    break;
                }
                if sibling != name && !in_flight.contains_key(sibling) && !self.values.contains_key(sibling) {
                    batch.push(sibling.to_string());
                }
            }
            let flight = Arc::new(Flight::default());
            for member in &batch {
                in_flight.insert(member.clone(), flight.clone());
            }
            (flight, batch)
        };
        let landing = Landing { cache: self, flight: &flight, batch: &batch };
        let answers = landing.fetch();
        answers.get(name).cloned().unwrap_or(Err(Error::NotFound))
    }

    /// The service name prefix this cache shows.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Serialises writes to this service, so a read-modify-write of a JSON value never loses
    /// a concurrent writer's key.
    pub fn write_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.writes)
    }

    /// Replace the cached value of `name` after a successful write.
    pub fn store(&self, name: &str, fetched: Fetched) {
        self.values.insert(name.to_string(), Arc::new(CachedValue::new(fetched)));
    }

    /// Record a name just created: the listing shows it at once, and its value is cached.
    pub fn created(&self, name: &str, fetched: Fetched) {
        let listed = Listed { name: name.to_string(), last_modified: fetched.last_modified };
        self.edit_namespace(|namespace, prefix| {
            namespace.insert(prefix, listed);
        });
        self.store(name, fetched);
    }

    /// Forget a name just deleted, in the listing and the value cache.
    pub fn deleted(&self, name: &str) {
        self.edit_namespace(|namespace, prefix| namespace.remove(prefix, name));
        self.values.invalidate(name);
    }

    fn edit_namespace(&self, edit: impl FnOnce(&mut Namespace, &str)) {
        if let Some(snapshot) = lock(&self.snapshot).as_mut() {
            edit(Arc::make_mut(&mut snapshot.namespace), &self.prefix);
        }
    }
}

/// Runs one batch fetch and always releases its waiters, even if the fetch panics.
struct Landing<'a> {
    cache: &'a ServiceCache,
    flight: &'a Flight,
    batch: &'a [String],
}

impl Landing<'_> {
    fn fetch(&self) -> Arc<Answers> {
        let mut answers: Answers = HashMap::with_capacity(self.batch.len());
        match self.cache.provider.fetch(self.batch) {
            Ok(results) => {
                for (name, result) in results {
                    let result = result.map(|fetched| Arc::new(CachedValue::new(fetched)));
                    if let Ok(value) = &result {
                        self.cache.values.insert(name.clone(), value.clone());
                    }
                    answers.insert(name, result);
                }
            }
            Err(err) => {
                log::warn!("fetching {} value(s) failed: {err}", self.batch.len());
                for name in self.batch {
                    answers.insert(name.clone(), Err(err.clone()));
                }
            }
        }
        let answers = Arc::new(answers);
        self.finish(answers.clone());
        answers
    }

    fn finish(&self, answers: Arc<Answers>) {
        self.flight.finish(answers);
        let mut in_flight = lock(&self.cache.in_flight);
        for name in self.batch {
            in_flight.remove(name);
        }
    }
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        if lock(&self.flight.answers).is_none() {
            let failed = self.batch.iter().map(|n| (n.clone(), Err(Error::Transient("fetch aborted".into()))));
            self.finish(Arc::new(failed.collect()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::memory::{MemoryProvider, FETCH_ACTION};
    use crate::provider::{Service, ValueKind};

    fn cache_over(provider: Arc<MemoryProvider>) -> ServiceCache {
        ServiceCache::new(provider, "/".into(), CacheSettings::default())
    }

    #[test]
    fn a_miss_fetches_siblings_in_the_same_call() {
        let store = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
        let names: Vec<String> = (0..25).map(|i| format!("/d/p{i:02}")).collect();
        for n in &names {
            store.insert(n, ValueKind::String, "v");
        }
        let cache = cache_over(store.clone());
        for n in &names {
            cache.value(n, names.iter().map(String::as_str)).unwrap();
        }
        assert_eq!(store.call_counts()[FETCH_ACTION], 3);
    }

    #[test]
    fn json_object_is_detected_only_for_text_objects() {
        let value = |kind, text: &str| {
            CachedValue::new(Fetched { bytes: text.into(), kind, version: None, last_modified: None })
        };
        assert!(value(ValueKind::SecretString, r#"{"a":1}"#).json_object().is_some());
        assert!(value(ValueKind::SecretString, "[1]").json_object().is_none());
        assert!(value(ValueKind::SecretBinary, r#"{"a":1}"#).json_object().is_none());
        let secret = value(ValueKind::SecretString, r#"{"password":"hunter2"}"#);
        assert!(secret.json_object().is_some());
        assert!(!format!("{secret:?}").contains("hunter2"), "Debug must not show parsed members");
    }
}
