//! A cache's snapshot taken back by a new cache (the warm-restart cache's engine side), on a
//! fake clock: values and listings come back with the age they had, fresh ones are served as
//! fresh, older ones are served at once during an outage and refreshed when it ends, and
//! `--max-stale` counts from the original fetch, across the restart.

#[path = "common/core.rs"]
mod core;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use core::{config, names, read};
use secretfs::cache::changes::ChangeStream;
use secretfs::cache::clock::FakeClock;
use secretfs::cache::spawn::QueuedJobs;
use secretfs::cache::{CacheSettings, Runtime, ServiceCache};
use secretfs::error::Error;
use secretfs::fs::SecretFs;
use secretfs::provider::memory::{MemoryProvider, FETCH_ACTION, LIST_ACTION};
use secretfs::provider::{Provider, Service, ValueKind};

const TTL: Duration = Duration::from_secs(60);
const MAX_STALE: Duration = Duration::from_secs(600);

struct Daemon {
    clock: Arc<FakeClock>,
    jobs: Arc<QueuedJobs>,
    cache: ServiceCache,
    fs: SecretFs,
}

fn daemon(ps: &Arc<MemoryProvider>) -> Daemon {
    let clock = Arc::new(FakeClock::default());
    let jobs = Arc::new(QueuedJobs::default());
    let settings = CacheSettings { ttl: TTL, max_stale: MAX_STALE, ..CacheSettings::default() };
    let runtime = Runtime { clock: clock.clone(), spawner: jobs.clone(), changes: ChangeStream::default() };
    let cache = ServiceCache::with_runtime(Service::ParameterStore, ps.clone(), "/".into(), settings, runtime);
    let fs = SecretFs::new(config(true), vec![(Service::ParameterStore, cache.clone())]);
    Daemon { clock, jobs, cache, fs }
}

fn text(fs: &SecretFs, path: &str) -> Result<String, Error> {
    read(fs, path).map(|bytes| String::from_utf8(bytes).unwrap())
}

fn store() -> Arc<MemoryProvider> {
    let ps = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
    ps.insert("/app/db/password", ValueKind::SecureString, "hunter2");
    ps.insert("/app/db/user", ValueKind::String, "admin");
    ps
}

#[test]
fn restored_values_are_served_through_an_outage_within_max_stale_of_their_fetch() {
    let ps = store();
    let first = daemon(&ps);
    assert_eq!(text(&first.fs, "ps/app/db/password").unwrap(), "hunter2");
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    first.clock.advance(Duration::from_secs(10));
    let kept = first.cache.snapshot(wall);
    assert_eq!(kept.values.len(), 2, "the value read and its batch-mate");
    assert!(!kept.listings.is_empty());

    // Restarted 30 s later, AWS down: the value (40 s old) is fresh; no call is made.
    ps.fail(FETCH_ACTION, Some(Error::Transient("down".into())));
    ps.fail(LIST_ACTION, Some(Error::Transient("down".into())));
    let second = daemon(&ps);
    assert_eq!(second.cache.restore(kept.clone(), wall + Duration::from_secs(30)), 2);
    let calls_before: u64 = ps.call_counts().values().sum();
    assert_eq!(text(&second.fs, "ps/app/db/password").unwrap(), "hunter2");
    assert_eq!(names(&second.fs, "ps/app/db"), ["password", "user"]);
    assert_eq!(ps.call_counts().values().sum::<u64>(), calls_before, "fresh restored entries cost nothing");

    // Past its TTL it is served at once and refreshed in the background, which fails.
    second.clock.advance(TTL);
    assert_eq!(text(&second.fs, "ps/app/db/password").unwrap(), "hunter2");
    second.jobs.run_all();
    assert_eq!(text(&second.fs, "ps/app/db/password").unwrap(), "hunter2", "served through the outage");

    // max-stale counts from the fetch before the restart: restored 40 s after it, the value
    // reaches TTL + max-stale at 60 + 600 - 40 s after the restart.
    second.clock.advance(TTL + MAX_STALE - Duration::from_secs(40) - TTL + Duration::from_secs(1));
    second.jobs.run_all();
    assert!(text(&second.fs, "ps/app/db/password").is_err(), "past max-stale since its fetch");

    // A snapshot already past max-stale is not taken at all.
    let third = daemon(&ps);
    assert_eq!(third.cache.restore(kept.clone(), wall + TTL + MAX_STALE), 0);

    // When AWS answers again, a restored stale value is refreshed in the background.
    ps.fail(FETCH_ACTION, None);
    ps.fail(LIST_ACTION, None);
    ps.insert("/app/db/password", ValueKind::SecureString, "rotated");
    let fourth = daemon(&ps);
    fourth.cache.restore(kept, wall + Duration::from_secs(120));
    assert_eq!(text(&fourth.fs, "ps/app/db/password").unwrap(), "hunter2", "served at once");
    fourth.jobs.run_all();
    assert_eq!(text(&fourth.fs, "ps/app/db/password").unwrap(), "rotated");
}

#[test]
fn a_value_deleted_in_the_service_leaves_the_next_snapshot() {
    let ps = store();
    let first = daemon(&ps);
    assert_eq!(text(&first.fs, "ps/app/db/password").unwrap(), "hunter2");
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let kept = first.cache.snapshot(wall);
    assert!(kept.values.iter().any(|(name, _)| name == "/app/db/password"));

    let second = daemon(&ps);
    second.cache.restore(kept, wall + TTL * 2);
    ps.remove("/app/db/password");
    assert_eq!(text(&second.fs, "ps/app/db/password").unwrap(), "hunter2", "served at once, refresh queued");
    second.jobs.run_all();
    let after = second.cache.snapshot(wall + TTL * 2);
    assert!(!after.values.iter().any(|(name, _)| name == "/app/db/password"), "gone from the next write");
    assert!(after.values.iter().any(|(name, _)| name == "/app/db/user"));
}
