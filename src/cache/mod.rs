//! The freshness engine of one service: values and directory listings as state machines
//! (fresh, stale-but-servable, failed, unknown) over an injectable clock. Known values are
//! served from memory; refreshes run in the background, ask what changed first, share one
//! attempt per key among all readers, remember failures with a jittered backoff, and never hold
//! a table lock across a provider call (a write holds only its name's lock: `writes`). Every
//! change is announced on the change stream (`changes`).

pub mod changes;
pub mod clock;
pub mod group_commit;
mod listings;
pub mod memory_only;
pub mod name_locks;
mod on_demand;
mod refresh;
pub mod slot;
pub mod spawn;
pub mod stats;
mod sync;
mod values;
pub mod warm;
mod writes;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, OnceLock, Weak};

use std::time::{Duration, Instant};
use sync::{Mutex, MutexGuard};

use crate::namespace::Namespace;
use crate::provider::{Listed, Provider, Service};
use changes::{Change, ChangeKind, ChangeStream, Origin};
use clock::{Clock, SystemClock};
use name_locks::NameLocks;
use slot::{Policy, Slot};
use spawn::{Spawner, ThreadPerJob};

pub use refresh::tick as refresh_tick;
pub use stats::CacheStats;
pub use values::CachedValue;

/// Default time a value or listing is served as fresh (s1crets: 900 s).
pub const DEFAULT_TTL: Duration = Duration::from_secs(900);
/// Default most entries kept: room for 100,000 values and their listings.
pub const DEFAULT_CAPACITY: u64 = 120_000;
/// Default most bytes the values held count for ([`ENTRY_OVERHEAD`] each, their names and
/// their bytes): 100,000 typical values (up to about 200 bytes) fit; as many large ones as fit.
pub const DEFAULT_BYTE_CAPACITY: u64 = 128 * 1024 * 1024;
/// What one value held costs in memory beyond its name and bytes, as counted against the byte
/// capacity: its slot, its inode and its place in the tree (measured: about 1.1 KB a value for
/// 100,000 values read through a mount).
pub const ENTRY_OVERHEAD: usize = 1024;
/// Default time past its TTL a value is served while AWS fails transiently.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// Default longest wait between attempts after failures (aws-secretsmanager-caching: 1 h).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// First wait after a failure (aws-secretsmanager-caching: 1 s), doubled per failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// How much longer than the request deadline (`--timeout`) a reader waits for a fetch.
pub const PATIENCE_MARGIN: Duration = Duration::from_secs(1);
/// Default longest wait of a reader for a fetch: the default request deadline (5 s) and the
/// margin.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(6);
/// Longest time a name found missing is not asked for again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// Cache settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a value or a listing is served before it is refreshed.
    pub ttl: Duration,
    /// How many entries (values and listings) are kept at most.
    pub capacity: u64,
    /// How many bytes the values held may count for (see [`ENTRY_OVERHEAD`]).
    pub byte_capacity: u64,
    /// How long past its TTL a value is served while refreshes fail transiently.
    pub max_stale: Duration,
    /// Longest wait between attempts after failures.
    pub max_backoff: Duration,
    /// Longest time a reader waits for a fetch or a listing (its own or one it shares) before
    /// it is answered with a transient failure; the fetch goes on in the background.
    pub patience: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: DEFAULT_TTL,
            capacity: DEFAULT_CAPACITY,
            byte_capacity: DEFAULT_BYTE_CAPACITY,
            max_stale: DEFAULT_MAX_STALE,
            max_backoff: DEFAULT_MAX_BACKOFF,
            patience: DEFAULT_PATIENCE,
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

/// The clock, the background executor and the change stream a cache uses.
#[derive(Clone)]
pub struct Runtime {
    /// What "now" is.
    pub clock: Arc<dyn Clock>,
    /// Where background refreshes and prefetches run.
    pub spawner: Arc<dyn Spawner>,
    /// Where every change to a stored value is announced.
    pub changes: ChangeStream,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime { clock: Arc::new(SystemClock), spawner: Arc::new(ThreadPerJob), changes: ChangeStream::default() }
    }
}

/// A listing of the names that start with one prefix.
pub struct Listing {
    /// The names found.
    pub names: Vec<Listed>,
}

/// The names known so far, and the tree they form.
#[derive(Default)]
struct Tree {
    names: BTreeMap<String, Listed>,
    namespace: Arc<Namespace>,
    /// Names learned outside a listing, and when: a listing that started before must not drop
    /// them (it could not have seen them). Cleared by the next listing's merge.
    learned: HashMap<String, std::time::Instant>,
}

struct Inner {
    service: Service,
    provider: Arc<dyn Provider>,
    prefix: String,
    policy: Policy,
    capacity: usize,
    byte_capacity: usize,
    /// What the values held counted for at the last count, and what was added since (an upper
    /// bound: replaced values are not subtracted until the next count).
    bytes_counted: AtomicUsize,
    bytes_added: AtomicUsize,
    patience: Duration,
    runtime: Runtime,
    values: Mutex<HashMap<String, Slot<CachedValue>>>,
    listings: Mutex<HashMap<String, Slot<Listing>>>,
    /// Partial first pages of probes, by the directory prefix they began to list (`/prod/`).
    probed_pages: Mutex<HashMap<String, listings::ProbedPage>>,
    /// Directories a reader listed (`readdir`), by prefix, and when: a cold read in one listed
    /// within the TTL is a walk, and prefetches more batches of its values.
    walked: Mutex<HashMap<String, Instant>>,
    tree: Mutex<Tree>,
    listing_denied: AtomicBool,
    writers: NameLocks,
    batches: group_commit::Batches,
    /// Names a reader asked for whose fetch failed transiently and that hold no value: they
    /// ride along in the next fetch that has room (taken under the values lock).
    missed: Mutex<std::collections::BTreeSet<String>>,
    jitter_seed: RandomState,
    watched: OnceLock<Watched>,
    ttl_rules: OnceLock<TtlRules>,
    shortest_ttl: OnceLock<Duration>,
    counters: stats::Counters,
}

/// The freshness period of the names that have their own (`ttl` of a config-file rule).
pub type TtlRules = Box<dyn Fn(&str) -> Option<Duration> + Send + Sync>;

/// Names kept refreshed whether or not they were read lately (on-change commands watch them).
pub type Watched = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// The cache in front of one provider. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ServiceCache {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServiceCache {
    /// A cache over `provider` (a store of `service`), showing names below `prefix`, on the real
    /// clock with a thread per background job and a change stream of its own.
    pub fn new(service: Service, provider: Arc<dyn Provider>, prefix: String, settings: CacheSettings) -> Self {
        ServiceCache::with_runtime(service, provider, prefix, settings, Runtime::default())
    }

    /// A cache with the given clock, executor and change stream.
    pub fn with_runtime(
        service: Service,
        provider: Arc<dyn Provider>,
        prefix: String,
        settings: CacheSettings,
        runtime: Runtime,
    ) -> Self {
        ServiceCache {
            inner: Arc::new(Inner {
                service,
                provider,
                prefix,
                policy: settings.policy(),
                patience: settings.patience,
                capacity: usize::try_from(settings.capacity).unwrap_or(usize::MAX).max(1),
                byte_capacity: usize::try_from(settings.byte_capacity).unwrap_or(usize::MAX).max(1),
                bytes_counted: AtomicUsize::new(0),
                bytes_added: AtomicUsize::new(0),
                runtime,
                values: Mutex::new(HashMap::new()),
                listings: Mutex::new(HashMap::new()),
                probed_pages: Mutex::default(),
                walked: Mutex::default(),
                tree: Mutex::new(Tree::default()),
                listing_denied: AtomicBool::new(false),
                writers: NameLocks::default(),
                batches: group_commit::Batches::default(),
                missed: Mutex::default(),
                jitter_seed: RandomState::new(),
                watched: OnceLock::new(),
                ttl_rules: OnceLock::new(),
                shortest_ttl: OnceLock::new(),
                counters: stats::Counters::default(),
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

    /// The service this cache stores.
    pub fn service(&self) -> Service {
        self.inner.service
    }

    /// Keep the known values whose names `watched` accepts refreshed even when nobody reads
    /// them (set once, before the refresher starts): their changes must reach on-change
    /// commands.
    pub fn keep_refreshed(&self, watched: Watched) {
        let _ = self.inner.watched.set(watched);
    }

    /// Give the names `rules` answers for their own freshness period instead of the TTL (set
    /// once, before the refresher starts). `shortest` is the shortest of them: the refresher
    /// ticks often enough for it.
    pub fn set_ttl_rules(&self, rules: TtlRules, shortest: Duration) {
        if self.inner.ttl_rules.set(rules).is_ok() {
            let _ = self.inner.shortest_ttl.set(shortest.min(self.inner.policy.ttl));
        }
    }

    /// The stream this cache announces its changes on.
    pub fn changes(&self) -> &ChangeStream {
        &self.inner.runtime.changes
    }

    /// Start the refresh-ahead loop on its own thread; it ends when the cache is dropped.
    pub fn start_refresher(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let tick = refresh::tick(self.inner.shortest_ttl.get().copied().unwrap_or(self.inner.policy.ttl));
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
    /// A number in 0..1 that is stable for `key` (a name and a round, say) within this cache
    /// and differs between keys, so 10,000 values do not expire or retry in the same second.
    fn jitter(&self, key: impl std::hash::Hash) -> f64 {
        (self.jitter_seed.hash_one(key) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether `name` is kept refreshed without being read.
    fn is_watched(&self, name: &str) -> bool {
        self.watched.get().is_some_and(|watched| watched(name))
    }

    /// Announce that `names` changed in the way `kind` says. Call with no lock held.
    fn announce(&self, kind: ChangeKind, origin: Origin, names: impl IntoIterator<Item = String>) {
        let service = self.service;
        self.runtime.changes.emit(names.into_iter().map(|name| Change { service, name, kind, origin }));
    }
}
