//! What the cache knows, as a snapshot a warm-restart file can keep, and a snapshot taken back
//! by a new cache: each value and listing with the wall-clock time it was fetched, so the
//! `--max-stale` rule measures from the fetch, not from the restart.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::slot::Slot;
use super::{lock, CachedValue, Listing, ServiceCache};
use crate::error::Error;
use crate::provider::{Fetched, Listed};

/// A value or listing as kept across a restart.
#[derive(Clone, Debug)]
pub struct Kept<T> {
    /// The value (or the names of a listing).
    pub item: T,
    /// When it was fetched (or last confirmed unchanged), by the wall clock.
    pub fetched: SystemTime,
}

/// The values and listings of one service's cache. `Debug` never shows a value.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Each value by its full name.
    pub values: Vec<(String, Kept<Fetched>)>,
    /// Each listing by its prefix.
    pub listings: Vec<(String, Kept<Vec<Listed>>)>,
}

/// The reason a restored entry is not served as confirmed: until AWS answers again, it is
/// served (within `--max-stale` of its fetch) and refreshed in the background, as through an
/// outage.
const UNCONFIRMED: &str = "restored after a restart; not confirmed by the service yet";

impl ServiceCache {
    /// The values and listings held now that may still be served, with their fetch times
    /// (`wall_now` is the wall clock's now, to turn the cache's clock into dates).
    pub fn snapshot(&self, wall_now: SystemTime) -> Snapshot {
        let inner = &self.inner;
        let now = inner.runtime.clock.now();
        let date = |age: Duration| wall_now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        let values = lock(&inner.values)
            .iter()
            .filter_map(|(name, slot)| {
                let value = slot.servable(now, inner.value_ttl(name), &inner.policy)?;
                Some((name.clone(), Kept { item: value.fetched.clone(), fetched: date(slot.age(now)?) }))
            })
            .collect();
        let listings = lock(&inner.listings)
            .iter()
            .filter_map(|(prefix, slot)| {
                let listing = slot.servable(now, inner.policy.ttl, &inner.policy)?;
                Some((prefix.clone(), Kept { item: listing.names.clone(), fetched: date(slot.age(now)?) }))
            })
            .collect();
        Snapshot { values, listings }
    }

    /// Take `snapshot` back (into a cache that has fetched nothing yet): entries within their
    /// TTL are served as fresh; older ones, up to `--max-stale` past their TTL from their fetch,
    /// are served at once and refreshed in the background (as through an outage); older still
    /// are dropped. Returns how many values were taken.
    pub fn restore(&self, snapshot: Snapshot, wall_now: SystemTime) -> usize {
        let inner = &self.inner;
        let now = inner.runtime.clock.now();
        let fetched_at = |fetched: SystemTime| now.checked_sub(wall_now.duration_since(fetched).unwrap_or_default());
        let (mut taken, mut added) = (0, 0);
        {
            let mut values = lock(&inner.values);
            for (name, kept) in snapshot.values {
                let Some(at) = fetched_at(kept.fetched) else { continue };
                let bytes = super::values::entry_bytes(&name, kept.item.bytes.len());
                let slot = restored(Arc::new(CachedValue::new(kept.item)), at, now);
                if slot.servable(now, inner.value_ttl(&name), &inner.policy).is_some() {
                    values.insert(name, slot);
                    (taken, added) = (taken + 1, added + bytes);
                }
            }
            inner.evict_over_capacity(&mut values, added);
        }
        for (prefix, kept) in snapshot.listings {
            let Some(at) = fetched_at(kept.fetched) else { continue };
            let slot = restored(Arc::new(Listing { names: kept.item.clone() }), at, now);
            if slot.servable(now, inner.policy.ttl, &inner.policy).is_none() {
                continue;
            }
            lock(&inner.listings).insert(prefix, slot);
            let mut tree = lock(&inner.tree);
            for listed in kept.item {
                tree.insert(&inner.prefix, listed);
            }
        }
        taken
    }
}

/// A slot holding `value` fetched at `at`, marked as not confirmed since (a failure on record
/// with no backoff: past its TTL it is served and refreshed in the background).
fn restored<T>(value: Arc<T>, at: std::time::Instant, now: std::time::Instant) -> Slot<T> {
    let mut slot = Slot::new(now);
    slot.value = Some(value);
    slot.fetched_at = Some(at);
    slot.failures = 1;
    slot.error = Some(Error::Transient(UNCONFIRMED.into()));
    slot
}
