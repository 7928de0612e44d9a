//! A reference model of the documented freshness rules, checked against the real core (the
//! filesystem over the cache over the in-memory provider) on a fake clock, with background jobs
//! run when the model says: random sequences of reads, reads of files held open, writes,
//! out-of-band rotations and deletions, outages and the passing of time. After every step, what
//! the filesystem shows must be allowed by the rules:
//!
//! - a value read was stored in the service at some instant of the last two TTLs (served fresh
//!   up to one TTL, then served while a background refresh runs, up to one more), or, when an
//!   outage happened since, of the last TTL + max-stale;
//! - `ENOENT` only if the name was absent at some instant of that window (plus the negative
//!   cache period);
//! - `EIO` only if an outage happened within the longest backoff;
//! - a file held open reads the bytes it read first, whatever happens;
//! - a write that succeeded is read back at once.
//!
//! Shrinking gives the shortest failing sequence; proptest prints it and its seed.

#[path = "common/core.rs"]
mod core;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use secretfs::cache::changes::ChangeStream;
use secretfs::cache::clock::FakeClock;
use secretfs::cache::spawn::QueuedJobs;
use secretfs::cache::{CacheSettings, Runtime, ServiceCache, NEGATIVE_TTL};
use secretfs::error::Error;
use secretfs::fs::{OpenMode, SecretFs};
use secretfs::provider::memory::{MemoryProvider, FETCH_ACTION, LIST_ACTION, UPDATE_ACTION, VERSIONS_ACTION};
use secretfs::provider::{Service, ValueKind};

const TTL: Duration = Duration::from_secs(60);
const MAX_STALE: Duration = Duration::from_secs(300);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
const NAMES: [&str; 3] = ["/m/a", "/m/b", "/m/c"];

#[derive(Clone, Debug)]
enum Step {
    Read(usize),
    OpenAndHold(usize),
    ReadHeld(usize),
    Write(usize, u8),
    PutOutOfBand(usize, u8),
    DeleteOutOfBand(usize),
    Outage(bool),
    /// Let tenths of a second pass (the refresher ticks and its work runs).
    Advance(u16),
    /// Run the background work started by reads (refreshes of stale values, prefetches).
    RunBackground,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..NAMES.len()).prop_map(Step::Read),
        1 => (0..NAMES.len()).prop_map(Step::OpenAndHold),
        2 => (0..8usize).prop_map(Step::ReadHeld),
        2 => (0..NAMES.len(), any::<u8>()).prop_map(|(n, v)| Step::Write(n, v)),
        2 => (0..NAMES.len(), any::<u8>()).prop_map(|(n, v)| Step::PutOutOfBand(n, v)),
        1 => (0..NAMES.len()).prop_map(Step::DeleteOutOfBand),
        1 => any::<bool>().prop_map(Step::Outage),
        3 => (1..600u16).prop_map(Step::Advance),
        2 => Just(Step::RunBackground),
    ]
}

/// The service's history of one name: (model time in ms, value or absent), oldest first.
type History = Vec<(u64, Option<String>)>;

struct Model {
    now: u64,
    histories: BTreeMap<&'static str, History>,
    /// When the last outage ended (or `u64::MAX` while one lasts); none yet: `None`.
    outage: Option<(u64, Option<u64>)>,
}

impl Model {
    fn current(&self, name: &str) -> Option<String> {
        self.histories[name].last().and_then(|(_, value)| value.clone())
    }

    fn record(&mut self, name: &'static str, value: Option<String>) {
        self.histories.get_mut(name).unwrap().push((self.now, value));
    }

    /// Whether an outage overlapped the last `span`.
    fn outage_within(&self, span: Duration) -> bool {
        match self.outage {
            Some((_, None)) => true,
            Some((_, Some(ended))) => self.now.saturating_sub(ended) <= span.as_millis() as u64,
            None => false,
        }
    }

    /// How far back what the filesystem shows may lag: two TTLs (served fresh, then served
    /// while a refresh runs) and the negative-cache period; after an outage, TTL + max-stale.
    fn window(&self) -> Duration {
        match self.outage_within(TTL + MAX_STALE) {
            true => TTL + MAX_STALE + NEGATIVE_TTL,
            false => TTL * 2 + NEGATIVE_TTL,
        }
    }

    /// The states `name` held at any instant of the last `span`.
    fn held_within(&self, name: &str, span: Duration) -> Vec<Option<String>> {
        let since = self.now.saturating_sub(span.as_millis() as u64);
        let history = &self.histories[name];
        // The state at the window's start, and every later one (states stored at one instant were all
        // readable at that instant).
        let first = history.iter().rposition(|(at, _)| *at < since).unwrap_or(0);
        history[first..].iter().map(|(_, value)| value.clone()).collect()
    }
}

struct Real {
    provider: Arc<MemoryProvider>,
    clock: Arc<FakeClock>,
    jobs: Arc<QueuedJobs>,
    cache: ServiceCache,
    fs: SecretFs,
    /// Files held open: (handle, the bytes read at open).
    held: Vec<(u64, Vec<u8>)>,
}

fn real() -> Real {
    let provider = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
    for name in NAMES {
        provider.insert(name, ValueKind::String, "initial");
    }
    let clock = Arc::new(FakeClock::default());
    let jobs = Arc::new(QueuedJobs::default());
    // A reader that waits at all waits for nothing here (every fetch runs inline or was run):
    // a short patience turns a wrong wait into a failure instead of a 6-second stall.
    let patience = Duration::from_millis(50);
    let settings = CacheSettings {
        ttl: TTL,
        max_stale: MAX_STALE,
        max_backoff: MAX_BACKOFF,
        patience,
        ..CacheSettings::default()
    };
    let runtime = Runtime { clock: clock.clone(), spawner: jobs.clone(), changes: ChangeStream::default() };
    let cache = ServiceCache::with_runtime(Service::ParameterStore, provider.clone(), "/".into(), settings, runtime);
    let fs = SecretFs::new(core::config(true), vec![(Service::ParameterStore, cache.clone())]);
    Real { provider, clock, jobs, cache, fs, held: Vec::new() }
}

fn path(name: &str) -> String {
    format!("ps{name}")
}

/// Run `steps` on the real core and the model; the first disagreement is the error.
fn check(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut real = real();
    let mut model = Model {
        now: 0,
        histories: NAMES.iter().map(|name| (*name, vec![(0, Some("initial".to_string()))])).collect(),
        outage: None,
    };
    for (index, step) in steps.iter().enumerate() {
        let fail = |why: String| TestCaseError::fail(format!("step {index} ({step:?}) at {} ms: {why}", model.now));
        if matches!(step, Step::Read(_) | Step::OpenAndHold(_) | Step::Write(..)) {
            // Background fetches started earlier have landed by the time a program reads again
            // (they take milliseconds in the daemon); a reader never waits for a queued one.
            real.jobs.run_all();
        }
        match step {
            Step::Read(n) => {
                let read = core::read(&real.fs, &path(NAMES[*n])).map(|b| String::from_utf8(b).unwrap());
                allowed(&model, NAMES[*n], &read).map_err(fail)?;
            }
            Step::OpenAndHold(n) => {
                let opened = core::stat(&real.fs, &path(NAMES[*n]))
                    .and_then(|attr| real.fs.open(attr.ino, OpenMode::default()).map(|o| o.fh));
                if let Ok(fh) = opened {
                    let bytes = real.fs.read(fh, 0, 1 << 16, |b| b.to_vec()).map_err(|e| fail(format!("{e:?}")))?;
                    let read = Ok(String::from_utf8(bytes.clone()).unwrap());
                    allowed(&model, NAMES[*n], &read).map_err(fail)?;
                    real.held.push((fh, bytes));
                }
            }
            Step::ReadHeld(k) => {
                if let Some((fh, first)) = real.held.get(*k % real.held.len().max(1)).filter(|_| !real.held.is_empty())
                {
                    let again = real.fs.read(*fh, 0, 1 << 16, |b| b.to_vec()).map_err(|e| fail(format!("{e:?}")))?;
                    prop_assert_eq!(&again, first, "an open file changed content at step {}", index);
                }
            }
            Step::Write(n, v) => {
                let value = format!("w{v}");
                match core::write(&real.fs, &path(NAMES[*n]), value.as_bytes()) {
                    Ok(()) => {
                        model.record(NAMES[*n], Some(value.clone()));
                        let back = core::read(&real.fs, &path(NAMES[*n])).map(|b| String::from_utf8(b).unwrap());
                        prop_assert_eq!(back, Ok(value), "a write was not read back at step {}", index);
                    }
                    // A failed write leaves the service as it was.
                    Err(Error::Transient(_)) if model.outage_within(MAX_BACKOFF * 2) => {}
                    // Absent within the window the rules allow stale knowledge for (an absence
                    // is served through an outage like a value).
                    Err(Error::NotFound) if model.held_within(NAMES[*n], model.window()).contains(&None) => {}
                    Err(err) => return Err(fail(format!("write failed: {err:?}"))),
                }
                prop_assert_eq!(
                    real.provider.get(NAMES[*n]).map(|f| String::from_utf8(f.bytes.as_slice().to_vec()).unwrap()),
                    model.current(NAMES[*n]),
                    "the service holds what the model says at step {}",
                    index
                );
            }
            Step::PutOutOfBand(n, v) => {
                let value = format!("o{v}");
                real.provider.insert(NAMES[*n], ValueKind::String, value.as_bytes());
                model.record(NAMES[*n], Some(value));
            }
            Step::DeleteOutOfBand(n) => {
                real.provider.remove(NAMES[*n]);
                model.record(NAMES[*n], None);
            }
            Step::Outage(on) => {
                let fault = on.then(|| Error::Transient("outage".into()));
                for action in [FETCH_ACTION, LIST_ACTION, VERSIONS_ACTION, UPDATE_ACTION] {
                    real.provider.fail(action, fault.clone());
                }
                model.outage = match (on, model.outage) {
                    (true, Some((start, None))) => Some((start, None)),
                    (true, _) => Some((model.now, None)),
                    (false, Some((start, None))) => Some((start, Some(model.now))),
                    (false, other) => other,
                };
            }
            Step::Advance(seconds) => {
                let by = Duration::from_millis(u64::from(*seconds) * 100);
                real.clock.advance(by);
                model.now += by.as_millis() as u64;
                // The refresher's tick, and the background work it starts (which runs promptly
                // in the daemon).
                real.cache.refresh_due();
                real.jobs.run_all();
            }
            Step::RunBackground => {
                real.jobs.run_all();
            }
        }
    }
    Ok(())
}

/// Whether a read of `name` answering `read` is allowed now.
fn allowed(model: &Model, name: &str, read: &Result<String, Error>) -> Result<(), String> {
    let span = model.window();
    let held = model.held_within(name, span);
    match read {
        Ok(value) if held.contains(&Some(value.clone())) => Ok(()),
        Ok(value) => Err(format!("read {value:?}, but {name} held only {held:?} in the last {span:?}")),
        Err(Error::NotFound) if held.contains(&None) => Ok(()),
        Err(Error::Transient(_)) if model.outage_within(MAX_BACKOFF * 2) => Ok(()),
        Err(err) => Err(format!("read failed with {err:?}; {name} held {held:?} (current {:?})", model.current(name))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_core_shows_what_the_freshness_rules_allow(steps in proptest::collection::vec(step(), 1..40)) {
        check(&steps)?;
    }
}
