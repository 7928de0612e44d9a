//! What one cache has done and how it stands, for the status and metrics files: counters of
//! reads answered (from memory, after a fetch, stale), evictions, version checks and changes;
//! the service's health (last success, last failure); and a snapshot of the entries.

use std::sync::atomic::{AtomicU64, Ordering};

use super::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::{lock, ServiceCache};
use crate::error::Error;

/// Counters one cache keeps.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale_serves: AtomicU64,
    pub evictions: AtomicU64,
    pub version_checks: AtomicU64,
    pub changes_found: AtomicU64,
    pub refresh_requests: AtomicU64,
    health: Mutex<Health>,
}

/// When the service last answered, and the last failure.
#[derive(Clone, Debug, Default)]
struct Health {
    last_success: Option<SystemTime>,
    last_failure: Option<(SystemTime, String)>,
}

impl Counters {
    pub fn add(counter: &AtomicU64, count: u64) {
        counter.fetch_add(count, Ordering::Relaxed);
    }

    /// Record how a call to the service ended: an answer (even "not found" or "denied" is one)
    /// or a failure to get one.
    pub fn outcome<T>(&self, result: &Result<T, Error>) {
        let mut health = lock(&self.health);
        match result {
            Err(err @ (Error::Transient(_) | Error::Credentials(_) | Error::Service(_))) => {
                health.last_failure = Some((SystemTime::now(), err.to_string()));
            }
            _ => health.last_success = Some(SystemTime::now()),
        }
    }
}

/// A snapshot of one cache, in plain numbers (no names, no values).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CacheStats {
    /// Values held.
    pub values: usize,
    /// Listings held.
    pub listings: usize,
    /// Values held past their TTL right now (served stale while refreshes fail, or due).
    pub stale_values: usize,
    /// Age of the oldest value held.
    pub oldest_value_age: Option<Duration>,
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that waited for a fetch.
    pub misses: u64,
    /// Reads answered with a value past its TTL.
    pub stale_serves: u64,
    /// Values dropped to stay within capacity.
    pub evictions: u64,
    /// Version checks made by refreshes (one per chunk of names).
    pub version_checks: u64,
    /// Values found changed by refreshes.
    pub changes_found: u64,
    /// Values refreshed on demand (the refresh file).
    pub refresh_requests: u64,
    /// When the service last answered.
    pub last_success: Option<SystemTime>,
    /// The last failure to get an answer, and when.
    pub last_failure: Option<(SystemTime, String)>,
}

impl CacheStats {
    /// Whether the service answers: it has never failed, or answered since its last failure.
    pub fn reachable(&self) -> bool {
        match (&self.last_failure, self.last_success) {
            (None, _) => true,
            (Some((failed, _)), Some(answered)) => answered >= *failed,
            (Some(_), None) => false,
        }
    }
}

impl ServiceCache {
    /// How this cache stands now.
    pub fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        let now = inner.runtime.clock.now();
        let (mut values, mut stale_values, mut oldest) = (0, 0, None::<Duration>);
        for (name, slot) in lock(&inner.values).iter() {
            let Some(age) = slot.value.as_ref().and(slot.age(now)) else { continue };
            values += 1;
            if age >= inner.value_ttl(name) {
                stale_values += 1;
            }
            oldest = Some(oldest.map_or(age, |o| o.max(age)));
        }
        let listings = lock(&inner.listings).values().filter(|slot| slot.value.is_some()).count();
        let counters = &inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let health = lock(&counters.health).clone();
        CacheStats {
            values,
            listings,
            stale_values,
            oldest_value_age: oldest,
            hits: load(&counters.hits),
            misses: load(&counters.misses),
            stale_serves: load(&counters.stale_serves),
            evictions: load(&counters.evictions),
            version_checks: load(&counters.version_checks),
            changes_found: load(&counters.changes_found),
            refresh_requests: load(&counters.refresh_requests),
            last_success: health.last_success,
            last_failure: health.last_failure,
        }
    }
}
