//! The freshness engine of one service: values and directory listings as state machines
//! (fresh, stale-but-servable, failed, unknown) over an injectable clock. Known values are
//! served from memory; refreshes run in the background, ask what changed first, share one
//! attempt per key among all readers, remember failures with a jittered backoff, and never hold
//! a lock across a provider call.

pub mod clock;
mod listings;
mod refresh;
pub mod slot;
pub mod spawn;
mod values;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use crate::namespace::Namespace;
use crate::provider::{Fetched, Listed, Provider};
use clock::{Clock, SystemClock};
use slot::{Policy, Slot};
use spawn::{Spawner, ThreadPerJob};

pub use values::CachedValue;

/// Default time a value or listing is served as fresh (s1crets: 900 s).
pub const DEFAULT_TTL: Duration = Duration::from_secs(900);
/// Default most entries kept: room for 10,000 values and their listings.
pub const DEFAULT_CAPACITY: u64 = 20_000;
/// Default time past its TTL a value is served while AWS fails transiently.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// Default longest wait between attempts after failures (aws-secretsmanager-caching: 1 h).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// First wait after a failure (aws-secretsmanager-caching: 1 s), doubled per failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest time a name found missing is not asked for again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// Cache settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a value or a listing is served before it is refreshed.
    pub ttl: Duration,
    /// How many entries (values and listings) are kept at most.
    pub capacity: u64,
    /// How long past its TTL a value is served while refreshes fail transiently.
    pub max_stale: Duration,
    /// Longest wait between attempts after failures.
    pub max_backoff: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: DEFAULT_TTL,
            capacity: DEFAULT_CAPACITY,
            max_stale: DEFAULT_MAX_STALE,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl CacheSettings {
    /// The freshness policy these settings give.
    pub fn policy(&self) -> Policy {
        Policy {
            ttl: self.ttl,
            max_stale: self.max_stale,
            backoff_base: BACKOFF_BASE.min(self.max_backoff),
            max_backoff: self.max_backoff,
            negative_ttl: NEGATIVE_TTL.min(self.ttl),
        }
    }
}

/// The clock and the background executor a cache uses.
#[derive(Clone)]
pub struct Runtime {
    /// What "now" is.
    pub clock: Arc<dyn Clock>,
    /// Where background refreshes and prefetches run.
    pub spawner: Arc<dyn Spawner>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime { clock: Arc::new(SystemClock), spawner: Arc::new(ThreadPerJob) }
    }
}

/// A listing of the names that start with one prefix.
pub struct Listing {
    /// The names found.
    pub names: Vec<Listed>,
}

/// Called with a service name whose value or existence changed in a refresh.
pub type ChangeHook = Box<dyn Fn(&str) + Send + Sync>;

/// The names known so far, and the tree they form.
#[derive(Default)]
struct Tree {
    names: BTreeMap<String, Listed>,
    namespace: Arc<Namespace>,
}

struct Inner {
    provider: Arc<dyn Provider>,
    prefix: String,
    policy: Policy,
    capacity: usize,
    runtime: Runtime,
    values: Mutex<HashMap<String, Slot<CachedValue>>>,
    listings: Mutex<HashMap<String, Slot<Listing>>>,
    tree: Mutex<Tree>,
    listing_denied: AtomicBool,
    writes: Mutex<()>,
    jitter_seed: RandomState,
    on_change: OnceLock<ChangeHook>,
}

/// The cache in front of one provider. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ServiceCache {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServiceCache {
    /// A cache over `provider`, showing names below `prefix`, on the real clock with a thread
    /// per background job.
    pub fn new(provider: Arc<dyn Provider>, prefix: String, settings: CacheSettings) -> Self {
        ServiceCache::with_runtime(provider, prefix, settings, Runtime::default())
    }

    /// A cache with the given clock and executor.
    pub fn with_runtime(
        provider: Arc<dyn Provider>,
        prefix: String,
        settings: CacheSettings,
        runtime: Runtime,
    ) -> Self {
        ServiceCache {
            inner: Arc::new(Inner {
                provider,
                prefix,
                policy: settings.policy(),
                capacity: usize::try_from(settings.capacity).unwrap_or(usize::MAX).max(1),
                runtime,
                values: Mutex::new(HashMap::new()),
                listings: Mutex::new(HashMap::new()),
                tree: Mutex::new(Tree::default()),
                listing_denied: AtomicBool::new(false),
                writes: Mutex::new(()),
                jitter_seed: RandomState::new(),
                on_change: OnceLock::new(),
            }),
        }
    }

    /// The provider behind this cache.
    pub fn provider(&self) -> &dyn Provider {
        self.inner.provider.as_ref()
    }

    /// The service name prefix this cache shows.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Call `hook` with every name whose value changes or disappears in a refresh.
    pub fn on_change(&self, hook: ChangeHook) {
        let _ = self.inner.on_change.set(hook);
    }

    /// Serialises writes to this service, so a read-modify-write of a JSON value never loses
    /// a concurrent writer's key.
    pub fn write_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.inner.writes)
    }

    /// Replace the cached value of `name` after a successful write.
    pub fn store(&self, name: &str, fetched: Fetched) {
        self.inner.store(name, fetched);
    }

    /// Record a name just created: the tree shows it at once, and its value is cached.
    pub fn created(&self, name: &str, fetched: Fetched) {
        let listed = Listed { name: name.to_string(), last_modified: fetched.last_modified };
        self.inner.add_names(vec![listed]);
        self.store(name, fetched);
    }

    /// Forget a name just deleted, in the tree and the value cache.
    pub fn deleted(&self, name: &str) {
        self.inner.remove_names(&[name.to_string()]);
        lock(&self.inner.values).remove(name);
    }

    /// Start the refresh-ahead loop on its own thread; it ends when the cache is dropped.
    pub fn start_refresher(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let tick = refresh::tick(self.inner.policy.ttl);
        let name = format!("secretfs-refresh{}", self.inner.prefix);
        let spawned = std::thread::Builder::new().name(name).spawn(move || loop {
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(inner) => inner.refresh_due(false),
                None => return,
            }
        });
        if let Err(err) = spawned {
            tracing::error!("cannot start the refresh thread ({err}); values refresh when read after their TTL");
        }
    }

    /// Refresh what is due now: values and listings read recently and near their expiry, in the
    /// background; drop entries nobody read for longer than they could be served.
    pub fn refresh_due(&self) {
        self.inner.refresh_due(false);
    }

    /// Refresh every known value and listing now, in the background (SIGHUP). Like any refresh,
    /// a transient failure keeps the values known.
    pub fn refresh_all(&self) {
        tracing::info!("refreshing every cached value and listing under {:?}", self.inner.prefix);
        self.inner.refresh_due(true);
    }
}

impl Inner {
    /// A number in 0..1 that is stable for (`key`, `round`) within this cache and differs
    /// between keys, so 10,000 values do not expire or retry in the same second.
    fn jitter(&self, key: &str, round: u32) -> f64 {
        (self.jitter_seed.hash_one((key, round)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn notify_changed(&self, names: &[String]) {
        if let Some(hook) = self.on_change.get() {
            for name in names {
                hook(name);
            }
        }
    }
}
