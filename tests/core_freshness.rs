//! The freshness engine against the in-memory provider on a fake clock, with background jobs
//! run by hand: TTL, stale-on-transient, AccessDenied/NotFound ending a value, backoff, shared
//! failures, refresh-ahead by versions, lazy listings, exact-name discovery, capacity.

#[path = "common/core.rs"]
mod core;

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use core::{config, names, read, stat};
use secretfs::cache::changes::{Change, ChangeKind, ChangeStream, Origin};
use secretfs::cache::clock::FakeClock;
use secretfs::cache::spawn::QueuedJobs;
use secretfs::cache::{CacheSettings, Runtime, ServiceCache};
use secretfs::error::Error;
use secretfs::fs::SecretFs;
use secretfs::provider::memory::{MemoryProvider, FETCH_ACTION, LIST_ACTION, VERSIONS_ACTION};
use secretfs::provider::{Provider, Service, ValueKind};

const TTL: Duration = Duration::from_secs(60);

struct Harness {
    ps: Arc<MemoryProvider>,
    clock: Arc<FakeClock>,
    jobs: Arc<QueuedJobs>,
    cache: ServiceCache,
    fs: SecretFs,
    changes: Receiver<Change>,
}

impl Harness {
    fn new(capacity: u64) -> Harness {
        let ps = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
        ps.insert("/app/db/password", ValueKind::SecureString, "hunter2");
        ps.insert("/app/db/user", ValueKind::String, "admin");
        ps.insert("/app/token", ValueKind::SecureString, "tok-1");
        let clock = Arc::new(FakeClock::default());
        let jobs = Arc::new(QueuedJobs::default());
        let settings = CacheSettings { ttl: TTL, capacity, ..CacheSettings::default() };
        let runtime = Runtime { clock: clock.clone(), spawner: jobs.clone(), changes: ChangeStream::default() };
        let (sender, changes) = std::sync::mpsc::channel();
        runtime.changes.subscribe(sender, |change| change);
        let cache = ServiceCache::with_runtime(Service::ParameterStore, ps.clone(), "/".into(), settings, runtime);
        let fs = SecretFs::new(config(true), vec![(Service::ParameterStore, cache.clone())]);
        Harness { ps, clock, jobs, cache, fs, changes }
    }

    fn calls(&self, action: &str) -> u64 {
        self.ps.call_counts().get(action).copied().unwrap_or(0)
    }

    fn read(&self, path: &str) -> Result<String, Error> {
        read(&self.fs, path).map(|bytes| String::from_utf8(bytes).unwrap())
    }

    /// Store `names` (value "v") and read each once, background work included.
    fn seed_and_read(&self, names: &[String]) {
        for name in names {
            self.ps.insert(name, ValueKind::String, "v");
        }
        self.read_names(names);
        self.jobs.run_all();
    }

    /// Read each of `names`.
    fn read_names(&self, names: &[String]) {
        names.iter().for_each(|name| drop(self.cache.value(name, []).unwrap()));
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// For `seconds`, read `names` every 20 s (so they stay due for refresh-ahead) while the
    /// refresher ticks each second; the metadata calls (50 names each) made in each second.
    fn revalidations_each_second(&self, names: &[String], seconds: u64) -> Vec<u64> {
        (1..=seconds)
            .map(|second| {
                self.advance(Duration::from_secs(1));
                if second % 20 == 0 {
                    self.read_names(names);
                }
                let before = self.calls(VERSIONS_ACTION);
                self.cache.refresh_due();
                self.jobs.run_all();
                self.calls(VERSIONS_ACTION) - before
            })
            .collect()
    }

    /// The changes announced since the last call.
    fn changes(&self) -> Vec<Change> {
        self.changes.try_iter().collect()
    }
}

#[test]
fn mounting_lists_nothing_and_an_exact_path_costs_one_listing_and_one_fetch() {
    let h = Harness::new(1000);
    stat(&h.fs, "ps").unwrap();
    assert_eq!(h.calls(LIST_ACTION), 0, "the service directory needs no listing");
    assert_eq!(h.read("ps/app/db/password").unwrap(), "hunter2");
    assert_eq!((h.calls(LIST_ACTION), h.calls(FETCH_ACTION)), (1, 1));
    assert_eq!(h.read("ps/app/db/user").unwrap(), "admin", "a sibling rode along");
    assert_eq!((h.calls(LIST_ACTION), h.calls(FETCH_ACTION)), (1, 1));
    assert_eq!(stat(&h.fs, "ps/nope").unwrap_err(), Error::NotFound);
    assert_eq!(stat(&h.fs, "ps/nope").unwrap_err(), Error::NotFound);
    assert_eq!(h.calls(LIST_ACTION), 2, "a missing name is asked once per negative-cache period");
    stat(&h.fs, "ps/.nope.swp").unwrap_err();
    assert_eq!(h.calls(LIST_ACTION), 2, "scratch-looking names never cause a call");
    // In a cache with nothing else to refresh: a missing name is not asked about again in the
    // background.
    let h = Harness::new(1000);
    assert_eq!(stat(&h.fs, "ps/nope").unwrap_err(), Error::NotFound);
    for _ in 0..3 {
        h.advance(Duration::from_secs(10));
        h.cache.refresh_due();
        h.jobs.run_all();
    }
    assert_eq!(h.calls(LIST_ACTION), 1, "a missing name is not asked about again in the background");
    assert_eq!(stat(&h.fs, "ps/nope").unwrap_err(), Error::NotFound);
    assert_eq!(h.calls(LIST_ACTION), 2, "but again by the next lookup past the negative-cache period");
}

#[test]
fn an_exact_path_is_found_while_listing_calls_fail() {
    let h = Harness::new(1000);
    h.ps.insert("/flag", ValueKind::String, "on");
    h.ps.fail(LIST_ACTION, Some(Error::Transient("ThrottlingException".into())));
    assert_eq!(h.read("ps/flag").unwrap(), "on", "its value read directly");
    assert!(matches!(stat(&h.fs, "ps/nope").unwrap_err(), Error::Transient(_)), "unknown, not ENOENT");
    h.ps.fail(LIST_ACTION, None);
    assert_eq!(stat(&h.fs, "ps/nope").unwrap_err(), Error::NotFound);
}

#[test]
fn a_known_value_is_served_through_an_outage_until_max_stale() {
    let h = Harness::new(1000);
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
    h.ps.fail(FETCH_ACTION, Some(Error::Transient("503".into())));
    h.ps.fail(VERSIONS_ACTION, Some(Error::Transient("503".into())));
    h.ps.fail(LIST_ACTION, Some(Error::Transient("503".into())));
    h.advance(TTL * 5);
    let before = h.calls(FETCH_ACTION);
    for _ in 0..50 {
        assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
    }
    assert_eq!(h.calls(FETCH_ACTION) - before, 1, "one attempt, then the failure is remembered");
    for step in 1..=5 {
        h.advance(Duration::from_secs(1 << step));
        assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
        assert_eq!(h.jobs.len(), 1, "past the backoff, the retry is queued: the reader does not wait for it");
        h.jobs.run_all();
    }
    assert_eq!(h.calls(FETCH_ACTION) - before, 6, "one attempt per backoff step, in the background");
    h.advance(CacheSettings::default().max_stale);
    assert!(matches!(h.read("ps/app/token"), Err(Error::Transient(_))), "past max-stale the outage shows");
}

#[test]
fn access_denied_and_not_found_are_never_covered_by_stale() {
    let h = Harness::new(1000);
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
    h.ps.fail(FETCH_ACTION, Some(Error::AccessDenied("kms".into())));
    h.advance(TTL * 3);
    assert!(matches!(h.read("ps/app/token"), Err(Error::AccessDenied(_))));
    h.ps.fail(FETCH_ACTION, None);
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
    h.ps.remove("/app/token");
    h.advance(TTL * 3);
    assert_eq!(h.read("ps/app/token").unwrap_err(), Error::NotFound);
    assert_eq!(names(&h.fs, "ps/app"), ["db"], "a name found missing leaves its directory");
}

#[test]
fn backoff_grows_and_readers_share_one_attempt() {
    let h = Harness::new(1000);
    stat(&h.fs, "ps/app").unwrap();
    h.ps.fail(FETCH_ACTION, Some(Error::Transient("throttled".into())));
    let attempts = |h: &Harness| h.calls(FETCH_ACTION);
    for _ in 0..100 {
        assert!(matches!(h.read("ps/app/token"), Err(Error::Transient(_))));
    }
    assert_eq!(attempts(&h), 1);
    // Delays are jittered into [d/2, d] for d = 1, 2, 4, 8 s: after d/2 nothing, after d one more.
    for delay in [1u64, 2, 4, 8] {
        let before = attempts(&h);
        h.advance(Duration::from_millis(delay * 500 - 10));
        let _ = h.read("ps/app/token");
        assert!(attempts(&h) - before <= 1);
        h.advance(Duration::from_millis(delay * 500 + 20));
        let _ = h.read("ps/app/token");
        assert_eq!(attempts(&h) - before, 1, "exactly one attempt per backoff step of {delay}s");
    }
    h.ps.fail(FETCH_ACTION, None);
    h.advance(Duration::from_secs(20));
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
}

#[test]
fn many_threads_reading_a_failing_cold_key_make_one_call() {
    let h = Harness::new(1000);
    stat(&h.fs, "ps/app").unwrap();
    h.ps.fail(FETCH_ACTION, Some(Error::Transient("timeout".into())));
    let fs = Arc::new(h.fs);
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let fs = fs.clone();
            std::thread::spawn(move || read(&fs, "ps/app/token").unwrap_err())
        })
        .collect();
    for thread in threads {
        assert!(matches!(thread.join().unwrap(), Error::Transient(_)));
    }
    assert_eq!(h.ps.call_counts()[FETCH_ACTION], 1);
}

#[test]
fn refresh_ahead_asks_versions_and_fetches_only_what_moved() {
    let h = Harness::new(1000);
    assert_eq!(h.read("ps/app/db/password").unwrap(), "hunter2");
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
    let fetches = h.calls(FETCH_ACTION);
    h.advance(TTL * 96 / 100);
    h.cache.refresh_due();
    assert!(h.jobs.run_all() > 0);
    assert_eq!(h.calls(VERSIONS_ACTION), 1, "one metadata call for every due value");
    assert_eq!(h.calls(FETCH_ACTION), fetches, "nothing changed: no value call");
    assert_eq!(h.changes(), [], "nothing changed: nothing announced");
    h.ps.insert("/app/token", ValueKind::SecureString, "tok-2");
    h.advance(TTL / 2);
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1", "still fresh: served from memory");
    h.advance(TTL * 46 / 100);
    h.cache.refresh_due();
    h.jobs.run_all();
    assert_eq!(h.calls(FETCH_ACTION), fetches + 1, "only the value whose version moved is fetched");
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-2");
    let token = Change {
        service: Service::ParameterStore,
        name: "/app/token".into(),
        kind: ChangeKind::Updated,
        origin: Origin::Service,
    };
    assert_eq!(h.changes(), [token], "the change is announced once");
    // Values nobody reads stop being refreshed.
    h.advance(TTL * 2);
    h.cache.refresh_due();
    h.jobs.run_all();
    let versions = h.calls(VERSIONS_ACTION);
    h.advance(TTL * 96 / 100);
    h.cache.refresh_due();
    h.jobs.run_all();
    assert_eq!(h.calls(VERSIONS_ACTION), versions);
}

#[test]
fn a_stale_value_is_served_at_once_while_its_refresh_runs_in_the_background() {
    let h = Harness::new(1000);
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
    assert_eq!(h.read("ps/app/db/user").unwrap(), "admin");
    h.ps.insert("/app/token", ValueKind::SecureString, "tok-2");
    h.advance(TTL + TTL / 2);
    let fetches = h.calls(FETCH_ACTION);
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1", "served without waiting");
    assert_eq!(h.calls(FETCH_ACTION), fetches, "the refresh is queued, not run by the reader");
    h.jobs.run_all();
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-2");
}

#[test]
fn names_created_out_of_band_are_readable_at_once_and_listings_refresh_in_the_background() {
    let h = Harness::new(1000);
    assert_eq!(names(&h.fs, "ps/app"), ["db", "token"]);
    h.ps.insert("/app/new", ValueKind::String, "fresh");
    assert_eq!(h.read("ps/app/new").unwrap(), "fresh", "an exact path is asked for directly");
    h.ps.insert("/app/other", ValueKind::String, "x");
    h.advance(TTL + TTL / 2);
    let lists = h.calls(LIST_ACTION);
    assert_eq!(names(&h.fs, "ps/app"), ["db", "new", "token"], "the stale listing is served");
    h.jobs.run_all();
    assert_eq!(h.calls(LIST_ACTION), lists + 1);
    assert_eq!(names(&h.fs, "ps/app"), ["db", "new", "other", "token"]);
}

#[test]
fn a_denied_listing_still_serves_exact_names() {
    let h = Harness::new(1000);
    h.ps.fail(LIST_ACTION, Some(Error::AccessDenied("ssm:DescribeParameters".into())));
    assert_eq!(h.read("ps/app/db/password").unwrap(), "hunter2");
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
    assert!(names(&h.fs, "ps/app").contains(&"token".to_string()), "directories show what is known");
    h.ps.fail(VERSIONS_ACTION, Some(Error::AccessDenied("ssm:DescribeParameters".into())));
    h.ps.insert("/app/token", ValueKind::SecureString, "tok-2");
    h.advance(TTL * 96 / 100);
    h.cache.refresh_due();
    h.jobs.run_all();
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-2", "a denied metadata call falls back to reading values");
    // A name that does not exist may be walked through (it could be a directory of names not
    // read yet), but it cannot be opened, and it never shows in a listing.
    assert!(stat(&h.fs, "ps/app/nope").is_ok_and(|attr| attr.kind == secretfs::fs::NodeKind::Dir));
    assert_eq!(core::list(&h.fs, "ps/app/nope").unwrap_err(), Error::NotFound);
    assert!(!names(&h.fs, "ps/app").contains(&"nope".to_string()), "{:?}", names(&h.fs, "ps/app"));
    assert_eq!(core::list(&h.fs, "ps/app/deeper/new").unwrap_err(), Error::NotFound);
    h.ps.insert("/app/deeper/new", ValueKind::String, "found");
    h.advance(Duration::from_secs(11));
    assert_eq!(h.read("ps/app/deeper/new").unwrap(), "found", "a walked-through path finds names below it");
    assert!(names(&h.fs, "ps/app").contains(&"deeper".to_string()), "and is listed once it holds one");
}

#[test]
fn a_small_capacity_never_evicts_a_batch_before_it_is_read() {
    let h = Harness::new(20);
    for i in 0..100 {
        h.ps.insert(&format!("/many/p{i:03}"), ValueKind::String, format!("v{i}"));
    }
    for i in 0..100 {
        assert_eq!(h.read(&format!("ps/many/p{i:03}")).unwrap(), format!("v{i}"));
        h.jobs.run_all();
    }
    assert_eq!(h.calls(FETCH_ACTION), 10, "10 names a call, none fetched twice");
}

#[test]
fn large_values_are_bounded_by_bytes_not_only_by_entries() {
    let ps = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
    for i in 0..100 {
        ps.insert(&format!("/big/p{i:03}"), ValueKind::String, "x".repeat(4000));
    }
    let entry = secretfs::cache::ENTRY_OVERHEAD + "/big/p000".len() + 4000;
    let settings =
        CacheSettings { ttl: TTL, capacity: 1000, byte_capacity: 20 * entry as u64, ..CacheSettings::default() };
    let runtime = Runtime {
        clock: Arc::new(FakeClock::default()),
        spawner: Arc::new(QueuedJobs::default()),
        changes: ChangeStream::default(),
    };
    let cache = ServiceCache::with_runtime(Service::ParameterStore, ps.clone(), "/".into(), settings, runtime);
    for i in 0..100 {
        assert_eq!(cache.value(&format!("/big/p{i:03}"), []).unwrap().fetched.bytes.len(), 4000);
    }
    let stats = cache.stats();
    assert!(stats.values <= 20 && stats.values >= 10, "held {} values of 4 KB within 20 entries' bytes", stats.values);
    assert!(stats.evictions >= 80, "{stats:?}");
    assert!(cache.cached("/big/p099").is_some(), "the newest stay");
}

#[test]
fn a_scan_larger_than_the_byte_capacity_never_evicts_a_batch_before_it_is_read() {
    let ps = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
    let names: Vec<String> = (0..100).map(|i| format!("/big/p{i:03}")).collect();
    for name in &names {
        ps.insert(name, ValueKind::String, "x".repeat(4000));
    }
    let entry = secretfs::cache::ENTRY_OVERHEAD + "/big/p000".len() + 4000;
    let settings =
        CacheSettings { ttl: TTL, capacity: 1000, byte_capacity: 30 * entry as u64, ..CacheSettings::default() };
    let (clock, jobs) = (Arc::new(FakeClock::default()), Arc::new(QueuedJobs::default()));
    let runtime = Runtime { clock: clock.clone(), spawner: jobs.clone(), changes: ChangeStream::default() };
    let cache = ServiceCache::with_runtime(Service::ParameterStore, ps.clone(), "/".into(), settings, runtime);
    cache.list_dir("/big/").unwrap();
    for name in &names {
        let siblings = names.iter().map(String::as_str);
        assert_eq!(cache.value(name, siblings).unwrap().fetched.bytes.len(), 4000);
        jobs.run_all();
        clock.advance(Duration::from_millis(1));
    }
    let fetches = ps.call_counts().get(FETCH_ACTION).copied().unwrap_or(0);
    // Prefetching stays within half the bytes at the size of the values held (400 calls when
    // it counted entries only: every batch evicted the next one). The first read knows no size
    // yet and prefetches 50 values, of which 27 stay: about 10 calls more.
    assert!(fetches <= 20, "{fetches} calls for 100 values at 10 a call");
}

#[test]
fn a_cold_directory_is_fetched_in_parallel_batches() {
    let h = Harness::new(1000);
    for i in 0..50 {
        h.ps.insert(&format!("/many/p{i:03}"), ValueKind::String, format!("v{i}"));
    }
    assert_eq!(names(&h.fs, "ps/many").len(), 50, "a reader lists the directory (`ls -l`, `cat dir/*`)");
    assert_eq!(h.read("ps/many/p000").unwrap(), "v0");
    assert_eq!(h.calls(FETCH_ACTION), 1, "the reader waits for its own batch only");
    assert_eq!(h.jobs.run_all(), 4, "four more batches prefetched off the reader's thread");
    for i in 0..50 {
        assert_eq!(h.read(&format!("ps/many/p{i:03}")).unwrap(), format!("v{i}"));
    }
    assert_eq!(h.calls(FETCH_ACTION), 5);
}

#[test]
fn reading_a_whole_path_prefetches_as_a_walk_does() {
    let h = Harness::new(1000);
    let names: Vec<String> = (0..60).map(|i| format!("/many/p{i:03}")).collect();
    for (i, name) in names.iter().enumerate() {
        h.ps.insert(name, ValueKind::String, format!("v{i}"));
    }
    // `secretfs get-by-path` lists through the provider, then reads every value.
    h.cache.walking(names.iter().map(String::as_str));
    assert_eq!(h.cache.value(&names[0], names.iter().map(String::as_str)).unwrap().fetched.bytes.as_slice(), b"v0");
    assert_eq!(h.jobs.run_all(), 4, "four batches prefetched in parallel");
}

#[test]
fn a_lone_cold_read_fetches_one_batch_of_siblings_and_no_more() {
    let h = Harness::new(1000);
    for i in 0..60 {
        h.ps.insert(&format!("/many/p{i:03}"), ValueKind::String, format!("v{i}"));
        h.ps.insert(&format!("/other/p{i:03}"), ValueKind::String, format!("o{i}"));
    }
    // `cat ps/many/p020`: looked up and read, the directory never listed.
    assert_eq!(h.read("ps/many/p020").unwrap(), "v20");
    assert_eq!(h.jobs.run_all(), 0, "nothing prefetched");
    assert_eq!(h.calls(FETCH_ACTION), 1);
    assert_eq!(h.cache.stats().values, 10, "its batch: itself and the nine names after it");
    // Once a reader lists the directory, a cold read there is a walk.
    assert_eq!(names(&h.fs, "ps/many").len(), 60);
    assert_eq!(h.read("ps/many/p040").unwrap(), "v40");
    assert_eq!(h.jobs.run_all(), 4, "a walk prefetches four more batches");
    // A listing longer than a TTL ago is not a walk any more.
    assert_eq!(names(&h.fs, "ps/other").len(), 60);
    h.advance(TTL * 2);
    let fetches = h.calls(FETCH_ACTION);
    assert_eq!(h.read("ps/other/p000").unwrap(), "o0");
    h.jobs.run_all();
    assert_eq!(h.calls(FETCH_ACTION), fetches + 1, "its own batch only");
}

/// A provider whose fetches read the store, then wait for the test to let them answer.
struct Gated {
    inner: Arc<MemoryProvider>,
    gate: std::sync::Mutex<(bool, bool)>,
    moved: std::sync::Condvar,
}

impl Gated {
    fn set(&self, entered: Option<bool>, open: Option<bool>) {
        let mut gate = self.gate.lock().unwrap();
        gate.0 = entered.unwrap_or(gate.0);
        gate.1 = open.unwrap_or(gate.1);
        self.moved.notify_all();
    }

    fn wait_until(&self, done: impl Fn(&(bool, bool)) -> bool) {
        let mut gate = self.gate.lock().unwrap();
        while !done(&gate) {
            gate = self.moved.wait(gate).unwrap();
        }
    }
}

impl Provider for Gated {
    fn list(&self, prefix: &str) -> secretfs::error::Result<Vec<secretfs::provider::Listed>> {
        self.inner.list(prefix)
    }
    fn versions(&self, names: &[String]) -> secretfs::error::Result<std::collections::HashMap<String, String>> {
        self.inner.versions(names)
    }
    fn fetch(&self, names: &[String]) -> secretfs::error::Result<Vec<secretfs::provider::FetchResult>> {
        let answer = self.inner.fetch(names);
        self.set(Some(true), None);
        self.wait_until(|gate| gate.1);
        answer
    }
    fn update(
        &self,
        name: &str,
        current: &secretfs::provider::Fetched,
        bytes: secretfs::provider::SecretBytes,
    ) -> secretfs::error::Result<secretfs::provider::Fetched> {
        self.inner.update(name, current, bytes)
    }
    fn create(
        &self,
        name: &str,
        kind: ValueKind,
        bytes: secretfs::provider::SecretBytes,
    ) -> secretfs::error::Result<secretfs::provider::Fetched> {
        self.inner.create(name, kind, bytes)
    }
    fn delete(&self, name: &str) -> secretfs::error::Result<()> {
        self.inner.delete(name)
    }
    fn batch_limit(&self) -> usize {
        self.inner.batch_limit()
    }
    fn call_counts(&self) -> secretfs::provider::CallCounts {
        self.inner.call_counts()
    }

    fn call_outcomes(&self) -> secretfs::provider::OutcomeCounts {
        self.inner.call_outcomes()
    }
}

#[test]
fn a_refresh_that_started_before_a_write_never_lands_over_it() {
    let store = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
    store.insert("/app/token", ValueKind::SecureString, "tok-1");
    let gated = Arc::new(Gated { inner: store.clone(), gate: Default::default(), moved: Default::default() });
    gated.set(None, Some(true));
    let clock = Arc::new(FakeClock::default());
    let jobs = Arc::new(QueuedJobs::default());
    let settings = CacheSettings { ttl: TTL, ..CacheSettings::default() };
    let runtime = Runtime { clock: clock.clone(), spawner: jobs.clone(), changes: ChangeStream::default() };
    let cache = ServiceCache::with_runtime(Service::ParameterStore, gated.clone(), "/".into(), settings, runtime);
    let fs = Arc::new(SecretFs::new(config(true), vec![(Service::ParameterStore, cache)]));
    assert_eq!(read(&fs, "ps/app/token").unwrap(), b"tok-1");
    clock.advance(TTL + TTL / 2);
    gated.set(Some(false), Some(false));
    assert_eq!(read(&fs, "ps/app/token").unwrap(), b"tok-1", "served stale; the refresh is queued");
    let refresh = std::thread::spawn(move || jobs.run_all());
    gated.wait_until(|gate| gate.0);
    // The refresh has read "tok-1" and not landed yet; a write goes through meanwhile.
    core::write(&fs, "ps/app/token", b"written").unwrap();
    gated.set(None, Some(true));
    refresh.join().unwrap();
    assert_eq!(read(&fs, "ps/app/token").unwrap(), b"written", "the older answer did not land");
    assert_eq!(store.get("/app/token").unwrap().bytes.as_slice(), b"written");
}

#[test]
fn refresh_all_revalidates_everything_at_once_and_keeps_values_through_failures() {
    let h = Harness::new(1000);
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
    assert_eq!(h.read("ps/app/db/user").unwrap(), "admin");
    h.ps.insert("/app/token", ValueKind::SecureString, "tok-2");
    h.cache.refresh_all();
    h.jobs.run_all();
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-2", "fresh values are refreshed too");
    h.ps.fail(VERSIONS_ACTION, Some(Error::Transient("503".into())));
    h.ps.fail(LIST_ACTION, Some(Error::Transient("503".into())));
    h.cache.refresh_all();
    h.jobs.run_all();
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-2", "a failed refresh keeps the known value");
}

#[test]
fn a_denied_batch_is_read_name_by_name_so_the_others_are_still_served() {
    let h = Harness::new(1000);
    h.ps.deny("/app/db/password");
    assert_eq!(h.read("ps/app/db/user").unwrap(), "admin", "served although its batch-mate is denied");
    assert!(matches!(h.read("ps/app/db/password"), Err(Error::AccessDenied(_))));
    assert_eq!(h.calls(FETCH_ACTION), 3, "the batch, then each name alone");
}

#[test]
fn names_whose_cold_read_failed_ride_along_with_the_next_fetch() {
    let h = Harness::new(20_000);
    for name in ["/a/x", "/b/x", "/c/x", "/d/x"] {
        h.ps.insert(name, ValueKind::String, "v");
    }
    h.ps.fail(FETCH_ACTION, Some(Error::Transient("ThrottlingException".into())));
    for name in ["/a/x", "/b/x", "/c/x"] {
        assert!(h.cache.value(name, []).is_err());
    }
    assert_eq!(h.calls(FETCH_ACTION), 3);
    h.ps.fail(FETCH_ACTION, None);
    // Another name's read makes a call anyway: the three missed names go in it.
    assert_eq!(h.cache.value("/d/x", []).unwrap().fetched.bytes.as_slice(), b"v");
    assert_eq!(h.calls(FETCH_ACTION), 4);
    for name in ["/a/x", "/b/x", "/c/x"] {
        assert_eq!(h.cache.value(name, []).unwrap().fetched.bytes.as_slice(), b"v", "{name} rode along");
    }
    assert_eq!(h.calls(FETCH_ACTION), 4, "no call of their own");
}

#[test]
fn a_host_holding_a_hundred_values_revalidates_them_in_a_few_full_calls_per_ttl() {
    let h = Harness::new(20_000);
    let names: Vec<String> = (0..100).map(|i| format!("/d{:02}/p{i:03}", i / 2)).collect();
    h.seed_and_read(&names);
    // Reads every 20 s spread the values' fetch times (each read is a point for its refresh).
    let per_second = h.revalidations_each_second(&names, TTL.as_secs() * 6);
    let per_ttl = per_second[2 * TTL.as_secs() as usize..].iter().sum::<u64>() as f64 / 4.0;
    println!("100 values: {per_ttl} metadata calls per TTL");
    // 100 names fit in 2 calls; a due value fills its call with those due soonest after it.
    assert!(per_ttl <= 4.0, "{per_ttl} metadata calls per TTL for 100 values");
}

#[test]
fn refreshes_of_values_read_together_spread_over_the_ttl() {
    let h = Harness::new(20_000);
    let names: Vec<String> = (0..5000).map(|i| format!("/big/p{i:04}")).collect();
    h.seed_and_read(&names);
    let per_second = h.revalidations_each_second(&names, TTL.as_secs() * 6);
    assert_eq!(h.calls(FETCH_ACTION), 5000, "nothing changed: no value fetched again");
    let first_wave = &per_second[..2 * TTL.as_secs() as usize];
    let first_peak = *first_wave.iter().max().unwrap();
    let steady = &per_second[2 * TTL.as_secs() as usize..];
    let mean = steady.iter().sum::<u64>() as f64 / steady.len() as f64;
    let peak = *steady.iter().max().unwrap() as f64;
    println!("metadata calls per second: first refresh wave peak {first_peak}; then mean {mean:.2}, peak {peak}");
    assert!(peak <= 3.0 * mean, "refreshes come in bursts: peak {peak} vs mean {mean:.2} per second");
    assert!(first_peak <= 8, "the first wave is spread too: {first_peak} calls in its busiest second");
    let per_ttl = steady.iter().sum::<u64>() as f64 / 4.0;
    assert!(per_ttl <= 5000.0 / 50.0 * 2.0, "about one revalidation per value per TTL: {per_ttl} calls per TTL");
}

#[test]
fn values_read_together_cold_spread_their_first_refreshes_over_the_whole_ttl() {
    // A fleet deployed together reads its values cold within a minute: refreshes drawn only
    // from the last third of the TTL would keep it refreshing together for many TTLs.
    let h = Harness::new(20_000);
    let names: Vec<String> = (0..5000).map(|i| format!("/big/p{i:04}")).collect();
    h.seed_and_read(&names);
    let per_second = h.revalidations_each_second(&names, TTL.as_secs());
    let calls = per_second.iter().sum::<u64>();
    // Seconds 1 to TTL/2 - 1.
    let first_half = per_second[..TTL.as_secs() as usize / 2 - 1].iter().sum::<u64>();
    println!("first refreshes: {calls} calls within the TTL, {first_half} in its first half");
    assert!(calls >= 90, "every value is refreshed once within the TTL: {calls} calls");
    assert!(first_half >= calls / 3, "{first_half} of {calls} calls in the first half");
    // Those refreshed early come round once more within the TTL (once: then the lead is narrow).
    assert!(calls <= 130, "{calls} calls");
}

#[test]
fn a_change_found_by_a_refresh_brings_its_siblings_changes_along() {
    let h = Harness::new(1000);
    h.ps.insert("/app/tls/cert", ValueKind::String, "cert-1");
    assert_eq!(h.read("ps/app/tls/cert").unwrap(), "cert-1");
    h.advance(TTL / 2);
    h.ps.insert("/app/tls/key", ValueKind::String, "key-1");
    assert_eq!(h.read("ps/app/tls/key").unwrap(), "key-1", "fetched half a TTL after the cert");
    h.changes();
    // Both rotate together; only the cert is due for its refresh.
    h.ps.insert("/app/tls/cert", ValueKind::String, "cert-2");
    h.ps.insert("/app/tls/key", ValueKind::String, "key-2");
    h.advance(TTL * 46 / 100);
    h.cache.refresh_due();
    h.jobs.run_all();
    let mut changed: Vec<String> = h.changes().into_iter().map(|change| change.name).collect();
    changed.sort();
    assert_eq!(changed, ["/app/tls/cert", "/app/tls/key"], "found in the same refresh");
    assert_eq!(h.read("ps/app/tls/key").unwrap(), "key-2");
}

#[test]
fn a_refresh_on_demand_fetches_at_once_lists_a_subtree_and_respects_backoff() {
    let h = Harness::new(1000);
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1");
    assert_eq!(h.read("ps/app/db/user").unwrap(), "admin");
    h.ps.insert("/app/token", ValueKind::SecureString, "tok-2");
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-1", "within the TTL");
    let fetches = h.calls(FETCH_ACTION);
    h.cache.refresh_now(&["/app/token".to_string()], None).unwrap();
    assert_eq!(h.calls(FETCH_ACTION), fetches + 1, "one fetch, landed before the call returned");
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-2");

    // A directory: listed again (a name created out of band appears) and its values fetched.
    h.ps.insert("/app/created", ValueKind::String, "new");
    h.ps.insert("/app/db/user", ValueKind::String, "root");
    assert_eq!(h.read("ps/app/db/user").unwrap(), "admin", "within the TTL");
    h.cache.refresh_now(&[], Some("/app/")).unwrap();
    assert!(names(&h.fs, "ps/app").contains(&"created".to_string()));
    assert_eq!(h.read("ps/app/db/user").unwrap(), "root");

    // A failing service: the failure is the answer, and a second refresh within the backoff
    // makes no call.
    h.ps.fail(FETCH_ACTION, Some(Error::Transient("down".into())));
    let fetches = h.calls(FETCH_ACTION);
    assert!(matches!(h.cache.refresh_now(&["/app/token".to_string()], None), Err(Error::Transient(_))));
    assert!(matches!(h.cache.refresh_now(&["/app/token".to_string()], None), Err(Error::Transient(_))));
    assert_eq!(h.calls(FETCH_ACTION), fetches + 1, "the second refresh waited out the backoff");
    assert_eq!(h.read("ps/app/token").unwrap(), "tok-2", "the known value is still served");
    assert_eq!(h.cache.stats().refresh_requests, 1 + 3 + 2);
}

#[test]
fn a_lone_value_expired_long_ago_costs_one_call() {
    let h = Harness::new(1000);
    for i in 0..60 {
        h.ps.insert(&format!("/many/p{i:03}"), ValueKind::String, format!("v{i}"));
    }
    assert_eq!(names(&h.fs, "ps/many").len(), 60);
    assert_eq!(h.read("ps/many/p000").unwrap(), "v0");
    h.jobs.run_all();
    let fetches = h.calls(FETCH_ACTION);
    assert_eq!(fetches, 5, "a cold directory being walked: its batch and four prefetched");
    h.advance(TTL * 3);
    assert_eq!(h.read("ps/many/p030").unwrap(), "v30");
    h.jobs.run_all();
    assert_eq!(h.calls(FETCH_ACTION), fetches + 1, "one batch (its expired siblings ride along), no prefetch");
}

#[test]
fn a_first_listing_that_adds_to_names_read_by_exact_name_tells_the_kernel_once_per_directory() {
    let h = Harness::new(1000);
    h.ps.insert("/app/db/host", ValueKind::String, "db");
    h.cache.discover_exact("/app/db/password", false).unwrap();
    h.changes();
    h.cache.list_dir("/app/db/").unwrap();
    let changes = h.changes();
    assert!(changes.iter().all(|c| c.kind == ChangeKind::Listed), "a first listing discovers nothing: {changes:?}");
    let directories: Vec<&str> = changes.iter().map(|c| c.name.rsplit_once('/').unwrap().0).collect();
    assert_eq!(directories, ["/app/db"], "one per directory a kept listing may miss names of: {changes:?}");
}

#[test]
fn a_listing_soon_after_a_lookup_goes_on_from_the_lookups_page() {
    let h = Harness::new(1000);
    h.ps.page_probes(2);
    for dir in ["dir", "other"] {
        for name in ["a", "b", "c", "d"] {
            h.ps.insert(&format!("/{dir}/{name}"), ValueKind::String, "v");
        }
    }
    // The lookup asks for one page (a, b); the listing goes on from it: one more call, and a
    // name created in between on the first page's range waits for the next listing.
    let before = h.calls(LIST_ACTION);
    assert!(stat(&h.fs, "ps/dir").is_ok());
    h.ps.insert("/dir/0", ValueKind::String, "v");
    assert_eq!(names(&h.fs, "ps/dir"), ["a", "b", "c", "d"]);
    assert_eq!(h.calls(LIST_ACTION) - before, 2, "the lookup's page, then the pages after it");
    // Past the negative-cache period the page is too old to go on from: listed from the start.
    let before = h.calls(LIST_ACTION);
    assert!(stat(&h.fs, "ps/other").is_ok());
    h.ps.insert("/other/0", ValueKind::String, "v");
    h.advance(secretfs::cache::NEGATIVE_TTL);
    assert_eq!(names(&h.fs, "ps/other"), ["0", "a", "b", "c", "d"]);
    assert_eq!(h.calls(LIST_ACTION) - before, 2, "the lookup's page, then the whole listing");
}
