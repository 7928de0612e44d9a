//! Schedule exploration of the cache core under shuttle (`cargo test --features shuttle --test
//! shuttle_core`): the real `ServiceCache` (slots, flights, name locks, group commit) with its
//! locks, condition variables and channels taken from shuttle, readers and writers on shuttle
//! threads, and a provider that lets shuttle switch threads before and after every call. Each
//! scenario runs under the random and the PCT scheduler. Checked in every schedule: at most one
//! fetch of a name at a time and one update of a name at a time, one fetch for any number of
//! readers, every waiter gets that fetch's outcome, no write is undone by an older fetch or lost
//! by a concurrent writer, and no deadlock or lost wake-up (shuttle's timed waits never time
//! out, so a missed notification is a deadlock it reports with the schedule to replay it).
//! `SHUTTLE_SCHEDULES` sets the schedules per scheduler and scenario (default 2,000: 24,000 schedules in all).
#![cfg(feature = "shuttle")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secretfs::cache::changes::ChangeStream;
use secretfs::cache::clock::FakeClock;
use secretfs::cache::spawn::{Job, Spawner};
use secretfs::cache::{CacheSettings, Runtime, ServiceCache};
use secretfs::error::{Error, Result};
use secretfs::provider::memory::{MemoryProvider, FETCH_ACTION, UPDATE_ACTION};
use secretfs::provider::{
    CallCounts, FetchResult, Fetched, Listed, OutcomeCounts, Provider, SecretBytes, Service, ValueKind,
};

fn schedules() -> usize {
    std::env::var("SHUTTLE_SCHEDULES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000)
}

/// Run `scenario` under both of shuttle's randomised schedulers.
fn explore(scenario: fn()) {
    shuttle::check_random(scenario, schedules());
    shuttle::check_pct(scenario, schedules(), 3);
}

/// Background jobs on shuttle threads, kept so a scenario can wait for them.
#[derive(Default)]
struct ShuttleThreads {
    running: Mutex<Vec<shuttle::thread::JoinHandle<()>>>,
}

impl ShuttleThreads {
    /// Wait for every background job, and the jobs they started.
    fn settle(&self) {
        loop {
            let running = std::mem::take(&mut *self.running.lock().unwrap());
            if running.is_empty() {
                return;
            }
            running.into_iter().for_each(|job| job.join().unwrap());
        }
    }
}

impl Spawner for ShuttleThreads {
    fn spawn(&self, job: Job) {
        self.running.lock().unwrap().push(shuttle::thread::spawn(job));
    }

    fn spawn_now(&self, job: Job) {
        self.spawn(job);
    }
}

/// A memory provider whose fetches and updates give shuttle a chance to switch threads before
/// and after reaching the store (so an answer may be old when it lands), and which checks that
/// no name is fetched, or updated, by two calls at once.
struct Yielding {
    store: MemoryProvider,
    busy: Mutex<HashMap<(&'static str, String), usize>>,
    fetches_of: Mutex<HashMap<String, usize>>,
}

impl Yielding {
    fn new() -> Arc<Yielding> {
        Arc::new(Yielding {
            store: MemoryProvider::for_service(Service::ParameterStore),
            busy: Mutex::default(),
            fetches_of: Mutex::default(),
        })
    }

    /// Run `call` for `names` under `action`, switching before and after.
    fn call<T>(&self, action: &'static str, names: &[String], call: impl FnOnce() -> T) -> T {
        for name in names {
            let mut busy = self.busy.lock().unwrap();
            let count = busy.entry((action, name.clone())).or_default();
            *count += 1;
            assert_eq!(*count, 1, "two {action} calls of {name} at once");
        }
        shuttle::thread::yield_now();
        let answer = call();
        shuttle::thread::yield_now();
        for name in names {
            *self.busy.lock().unwrap().get_mut(&(action, name.clone())).unwrap() -= 1;
        }
        answer
    }

    fn fetches_of(&self, name: &str) -> usize {
        self.fetches_of.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    fn stored(&self, name: &str) -> Vec<u8> {
        self.store.get(name).unwrap().bytes.as_slice().to_vec()
    }
}

impl Provider for Yielding {
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.store.list(prefix)
    }

    fn versions(&self, names: &[String]) -> Result<HashMap<String, String>> {
        self.call("versions", names, || self.store.versions(names))
    }

    fn fetch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        for name in names {
            *self.fetches_of.lock().unwrap().entry(name.clone()).or_default() += 1;
        }
        self.call("fetch", names, || self.store.fetch(names))
    }

    fn update(&self, name: &str, current: &Fetched, bytes: SecretBytes) -> Result<Fetched> {
        self.call("update", &[name.to_string()], || self.store.update(name, current, bytes))
    }

    fn create(&self, name: &str, kind: ValueKind, bytes: SecretBytes) -> Result<Fetched> {
        self.store.create(name, kind, bytes)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.store.delete(name)
    }

    fn batch_limit(&self) -> usize {
        self.store.batch_limit()
    }

    fn call_counts(&self) -> CallCounts {
        self.store.call_counts()
    }

    fn call_outcomes(&self) -> OutcomeCounts {
        self.store.call_outcomes()
    }
}

/// A cache over `provider`, on a clock that moves only when told, with its background threads.
struct Cache {
    cache: ServiceCache,
    clock: Arc<FakeClock>,
    background: Arc<ShuttleThreads>,
}

fn cache_over(provider: &Arc<Yielding>) -> Cache {
    let clock = Arc::new(FakeClock::default());
    let background = Arc::new(ShuttleThreads::default());
    let runtime = Runtime { clock: clock.clone(), spawner: background.clone(), changes: ChangeStream::default() };
    let cache = ServiceCache::with_runtime(
        Service::ParameterStore,
        provider.clone(),
        "/".into(),
        CacheSettings::default(),
        runtime,
    );
    Cache { cache, clock, background }
}

impl std::ops::Deref for Cache {
    type Target = ServiceCache;

    fn deref(&self) -> &ServiceCache {
        &self.cache
    }
}

/// Read `name` (with its sibling `/app/y` as a batch-mate) on a new shuttle thread.
fn reader(cache: &Cache, name: &'static str) -> shuttle::thread::JoinHandle<Result<Vec<u8>>> {
    let cache = cache.cache.clone();
    shuttle::thread::spawn(move || cache.value(name, ["/app/y"]).map(|v| v.fetched.bytes.as_slice().to_vec()))
}

/// Append `suffix` to the value of `name` on a new shuttle thread.
fn appender(cache: &Cache, name: &'static str, suffix: &'static str) -> shuttle::thread::JoinHandle<Result<bool>> {
    let cache = cache.cache.clone();
    shuttle::thread::spawn(move || {
        cache.edit(name, Box::new(move |current: &Fetched| Ok([current.bytes.as_slice(), suffix.as_bytes()].concat())))
    })
}

/// Once every background job is done: `/app/x` holds `expected` in the store and in the cache.
fn settled_on(cache: &Cache, provider: &Yielding, expected: &[u8], why: &str) {
    cache.background.settle();
    assert_eq!(provider.stored("/app/x"), expected, "{why}");
    assert_eq!(cache.value("/app/x", []).unwrap().fetched.bytes.as_slice(), expected, "{why}");
}

fn store_with_x(value: &str) -> Arc<Yielding> {
    let provider = Yielding::new();
    provider.store.insert("/app/x", ValueKind::SecureString, value);
    provider.store.insert("/app/y", ValueKind::SecureString, "y");
    provider
}

#[test]
fn readers_of_a_cold_value_share_one_fetch() {
    explore(|| {
        let provider = store_with_x("x1");
        let cache = cache_over(&provider);
        let readers: Vec<_> = (0..3).map(|_| reader(&cache, "/app/x")).collect();
        for reader in readers {
            assert_eq!(reader.join().unwrap().unwrap(), b"x1");
        }
        cache.background.settle();
        assert_eq!(provider.fetches_of("/app/x"), 1, "one fetch for every reader");
    });
}

#[test]
fn a_failed_fetch_reaches_every_waiter_and_is_not_repeated_at_once() {
    explore(|| {
        let provider = store_with_x("x1");
        provider.store.fail(FETCH_ACTION, Some(Error::Transient("outage".into())));
        let cache = cache_over(&provider);
        let readers: Vec<_> = (0..3).map(|_| reader(&cache, "/app/x")).collect();
        for reader in readers {
            assert!(matches!(reader.join().unwrap(), Err(Error::Transient(_))));
        }
        cache.background.settle();
        assert_eq!(provider.fetches_of("/app/x"), 1, "a failure is remembered until its backoff ends");
    });
}

#[test]
fn a_write_is_never_undone_by_an_older_fetch() {
    explore(|| {
        let provider = store_with_x("v");
        let cache = cache_over(&provider);
        let readers: Vec<_> = (0..2).map(|_| reader(&cache, "/app/x")).collect();
        let writer = appender(&cache, "/app/x", "+w");
        assert!(writer.join().unwrap().unwrap(), "the write is stored");
        for reader in readers {
            let seen = reader.join().unwrap().unwrap();
            assert!(seen == b"v" || seen == b"v+w", "{seen:?}");
        }
        settled_on(&cache, &provider, b"v+w", "the cache went back to a value older than the write");
    });
}

#[test]
fn a_write_is_never_undone_by_a_refresh_that_started_before_it() {
    explore(|| {
        let provider = store_with_x("v");
        let cache = cache_over(&provider);
        assert_eq!(cache.value("/app/x", []).unwrap().fetched.bytes.as_slice(), b"v");
        // Past its TTL: the next read serves it and refreshes it in the background, while a
        // writer stores a new value.
        cache.clock.advance(CacheSettings::default().policy().ttl + Duration::from_secs(1));
        let reader = reader(&cache, "/app/x");
        let writer = appender(&cache, "/app/x", "+w");
        assert!(writer.join().unwrap().unwrap());
        let seen = reader.join().unwrap().unwrap();
        assert!(seen == b"v" || seen == b"v+w", "{seen:?}");
        settled_on(&cache, &provider, b"v+w", "an older refresh landed over the write");
    });
}

#[test]
fn concurrent_writers_lose_no_edit_and_all_hear_the_outcome() {
    explore(|| {
        let provider = store_with_x("v");
        let cache = cache_over(&provider);
        let reader = reader(&cache, "/app/x");
        let writers: Vec<_> = ["a", "b", "c"].into_iter().map(|suffix| appender(&cache, "/app/x", suffix)).collect();
        for writer in writers {
            assert!(writer.join().unwrap().unwrap());
        }
        let _ = reader.join().unwrap().unwrap();
        cache.background.settle();
        let stored = String::from_utf8(provider.stored("/app/x")).unwrap();
        assert_eq!(stored.len(), 4, "{stored}");
        assert!(
            stored.starts_with('v') && ["a", "b", "c"].iter().all(|s| stored.contains(s)),
            "an edit was lost: {stored}"
        );
        assert!(provider.call_counts().get(UPDATE_ACTION).copied().unwrap_or(0) <= 3);
        assert_eq!(cache.value("/app/x", []).unwrap().fetched.bytes.as_slice(), stored.as_bytes());
    });
}

#[test]
fn a_failed_update_reaches_every_joined_writer_and_stores_nothing() {
    explore(|| {
        let provider = store_with_x("v");
        provider.store.fail(UPDATE_ACTION, Some(Error::Service("refused".into())));
        let cache = cache_over(&provider);
        let writers: Vec<_> = ["a", "b"].into_iter().map(|suffix| appender(&cache, "/app/x", suffix)).collect();
        for writer in writers {
            assert!(writer.join().unwrap().is_err(), "a writer was told a failed update succeeded");
        }
        settled_on(&cache, &provider, b"v", "a failed update changed the value");
    });
}
