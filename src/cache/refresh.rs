//! Refresh-ahead: values and listings read within the last TTL (and values watched by
//! on-change commands) are refreshed shortly before they expire (at a point drawn anew at each
//! fetch, so refreshes spread over the TTL), in the background. Values are revalidated by metadata
//! first (versions), and only those whose version moved are fetched again, in parallel
//! batches; an unchanged world costs metadata calls only. Entries nobody read for longer than
//! they could be served are dropped.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::slot::{ends_stale, Flight, Slot};
use super::stats::Counters;
use super::{lock, Inner, ServiceCache};
use crate::error::Error;
use crate::provider::same_version;

/// Most values revalidated by one background job.
pub const REVALIDATE_CHUNK: usize = 50;

/// How often the refresher looks for due work: a hundredth of the TTL, between 100 ms and
/// 5 s, so refreshes spread over the TTL instead of bunching at a few ticks.
pub fn tick(ttl: Duration) -> Duration {
    (ttl / 100).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Earliest refresh before expiry, as a share of the TTL.
const LEAD_MIN: f64 = 0.05;
/// Width of the window before expiry that refreshes are spread over, as a share of the TTL.
const LEAD_SPREAD: f64 = 0.30;
/// Width of that window for the first refresh after a cold read: nearly the whole TTL, so
/// hosts that started together (a fleet deployment) spread their refreshes over the TTL once,
/// and the narrow window keeps them spread.
const COLD_LEAD_SPREAD: f64 = 0.90;
/// How much sooner than its own point a value may be refreshed to fill a revalidation call
/// that is made anyway, as a share of the TTL.
pub const FILL_AHEAD: f64 = 0.30;

impl Inner {
    /// How long before expiry `key`, held in `slot` and fresh for `ttl`, is refreshed: between
    /// 5 % and 35 % of its TTL (5 % and 95 % after a cold read), drawn again at each fetch, so
    /// values fetched together (a directory read, a fleet's cold start) drift apart with every
    /// refresh instead of refreshing together forever.
    fn lead<T>(&self, key: &str, slot: &Slot<T>, ttl: Duration) -> Duration {
        let spread = if slot.cold { COLD_LEAD_SPREAD } else { LEAD_SPREAD };
        ttl.mul_f64(LEAD_MIN + spread * self.jitter((key, slot.fetched_at)))
    }

    /// How long until a slot read within the last TTL (or watched), known and free to refresh,
    /// is due (zero: due now); `None` for a slot that is not to be refreshed.
    fn until_due<T>(&self, key: &str, slot: &Slot<T>, ttl: Duration, now: Instant) -> Option<Duration> {
        let read_recently = now.saturating_duration_since(slot.last_read) < self.policy.ttl || self.is_watched(key);
        if !read_recently || slot.flight.is_some() || slot.in_backoff(now) {
            return None;
        }
        let age = slot.age(now)?;
        Some(ttl.saturating_sub(self.lead(key, slot, ttl)).saturating_sub(age))
    }

    /// Whether a slot is idle beyond what could still be served, and may go.
    fn idle<T>(&self, key: &str, slot: &Slot<T>, now: Instant) -> bool {
        slot.flight.is_none()
            && !self.is_watched(key)
            && now.saturating_duration_since(slot.last_read) >= self.policy.ttl + self.policy.max_stale
    }

    /// Start refreshes of what is due (with `everything`, of every known value and listing:
    /// SIGHUP), and drop idle entries.
    pub(super) fn refresh_due(self: &Arc<Self>, everything: bool) {
        let now = self.runtime.clock.now();
        let due_values = self.claim_due(&mut lock(&self.values), now, everything, REVALIDATE_CHUNK, |name, _| {
            Some(self.value_ttl(name))
        });
        // A listing that found nothing (a lookup of a missing name) is not kept up to date: it
        // is asked again when a lookup needs it after the negative-cache period.
        let due_listings = self.claim_due(&mut lock(&self.listings), now, everything, 1, |_, s| {
            s.value.as_ref().is_some_and(|listing| !listing.names.is_empty()).then(|| self.listing_ttl(s))
        });
        let cache = ServiceCache { inner: self.clone() };
        for chunk in due_values.chunks(REVALIDATE_CHUNK) {
            let (inner, chunk) = (self.clone(), chunk.to_vec());
            self.runtime.spawner.spawn(Box::new(move || inner.revalidate(&chunk)));
        }
        for prefix in due_listings {
            cache.list_in_background(prefix);
        }
    }

    /// Drop the idle entries of `table`, and give the due ones (every known one with
    /// `everything`) a flight, so readers and other refreshes leave them to this one. `ttl_of`
    /// is an entry's freshness period (`None`: not refreshed ahead). Refreshes go in chunks of
    /// `chunk` entries per call: when some are due, the last chunk is filled with the entries
    /// due soonest within [`FILL_AHEAD`] of their TTL, so a host holding many values makes a
    /// few full calls per TTL rather than one call per tick for the one or two values due at
    /// that tick.
    fn claim_due<T>(
        &self,
        table: &mut HashMap<String, Slot<T>>,
        now: Instant,
        everything: bool,
        chunk: usize,
        ttl_of: impl Fn(&str, &Slot<T>) -> Option<Duration>,
    ) -> Vec<String> {
        table.retain(|key, slot| !self.idle(key, slot, now));
        let mut due = Vec::new();
        let mut soon = Vec::new();
        for (key, slot) in table.iter() {
            if slot.value.is_none() {
                continue;
            }
            let Some(ttl) = ttl_of(key, slot) else { continue };
            match self.until_due(key, slot, ttl, now) {
                Some(wait) if wait.is_zero() => due.push(key.clone()),
                _ if everything && slot.flight.is_none() => due.push(key.clone()),
                Some(wait) if wait <= ttl.mul_f64(FILL_AHEAD) => soon.push((wait, key.clone())),
                _ => {}
            }
        }
        let room = (chunk - due.len() % chunk) % chunk;
        if !due.is_empty() && room > 0 {
            soon.sort_unstable();
            due.extend(soon.into_iter().take(room).map(|(_, key)| key));
        }
        for key in &due {
            if let Some(slot) = table.get_mut(key) {
                slot.flight = Some(Arc::new(Flight::default()));
            }
        }
        due
    }

    /// Ask which of `names` (flights set) changed; confirm the unchanged ones, fetch the rest
    /// in parallel batches. If the metadata call is refused, fetch them all instead (a role may
    /// read values without describing them); if it fails transiently, keep the values and back
    /// off.
    fn revalidate(self: &Arc<Self>, names: &[String]) {
        let asked = catch_unwind(AssertUnwindSafe(|| self.provider.versions(names)))
            .unwrap_or_else(|_| Err(Error::Transient("version check aborted".into())));
        self.counters.outcome(&asked);
        Counters::add(&self.counters.version_checks, 1);
        let versions = match asked {
            Ok(versions) => versions,
            Err(err) if ends_stale(&err) => {
                self.fetch_in_parallel(names.to_vec());
                return;
            }
            Err(err) => {
                let limit = self.provider.batch_limit().max(1);
                for batch in names.chunks(limit) {
                    self.land_error(batch, &err);
                }
                return;
            }
        };
        let mut moved = self.confirm_unchanged(names, &versions);
        if !moved.is_empty() {
            moved.extend(self.moved_siblings(&moved, names));
        }
        self.fetch_in_parallel(moved);
    }

    /// The known values beside `moved` (same directory) whose version moved too, asked now
    /// rather than at their own refresh: values rotated together (a certificate and its key)
    /// are found together, so their changes reach the kernel and on-change commands as one
    /// batch. Costs one metadata call per refresh that found a change. The siblings returned
    /// have their flights set; those unchanged are renewed.
    fn moved_siblings(&self, moved: &[String], checked: &[String]) -> Vec<String> {
        let checked: HashSet<&str> = checked.iter().map(String::as_str).collect();
        let directories: HashSet<&str> = moved.iter().map(|name| directory_of(name)).collect();
        let siblings: Vec<String> = {
            let mut values = lock(&self.values);
            values
                .iter_mut()
                .filter(|(name, slot)| {
                    slot.value.is_some()
                        && slot.flight.is_none()
                        && !checked.contains(name.as_str())
                        && directories.contains(directory_of(name))
                })
                .map(|(name, slot)| {
                    slot.flight = Some(Arc::new(Flight::default()));
                    name.clone()
                })
                .collect()
        };
        if siblings.is_empty() {
            return siblings;
        }
        let asked = catch_unwind(AssertUnwindSafe(|| self.provider.versions(&siblings)));
        match asked.unwrap_or_else(|_| Err(Error::Transient("version check aborted".into()))) {
            Ok(versions) => self.confirm_unchanged(&siblings, &versions),
            // Cannot tell: read them again (a failure lands as any failed fetch).
            Err(_) => siblings,
        }
    }

    /// Renew the values whose version is unchanged; returns the others.
    fn confirm_unchanged(&self, names: &[String], versions: &HashMap<String, String>) -> Vec<String> {
        let now = self.runtime.clock.now();
        let mut values = lock(&self.values);
        let mut moved = Vec::new();
        for name in names {
            let Some(slot) = values.get_mut(name) else { continue };
            let same = match (&slot.value, versions.get(name)) {
                (Some(value), Some(version)) => same_version(value.fetched.version.as_deref(), version),
                _ => false,
            };
            if !same {
                moved.push(name.clone());
                continue;
            }
            if let Some(value) = slot.value.clone() {
                slot.record(&Ok(value.clone()), now, &self.policy, 0.0);
                if let Some(flight) = slot.flight.take() {
                    flight.finish(Ok(value));
                }
            }
        }
        moved
    }

    /// Fetch `names` (flights set) in batches: all but the first on other threads, at once.
    fn fetch_in_parallel(self: &Arc<Self>, names: Vec<String>) {
        let limit = self.provider.batch_limit().max(1);
        let mut batches = names.chunks(limit).map(<[String]>::to_vec);
        let Some(first) = batches.next() else { return };
        let cache = ServiceCache { inner: self.clone() };
        batches.for_each(|batch| cache.fetch_in_background(batch));
        self.run_batch(&first);
    }

    fn land_error(&self, batch: &[String], err: &Error) {
        self.land_batch(&self.members(batch), Err(err.clone()));
    }
}

/// The directory part of a service name (`/prod/tls/` of `/prod/tls/key`; empty for a name
/// without `/`).
pub(super) fn directory_of(name: &str) -> &str {
    name.rfind('/').map_or("", |slash| &name[..=slash])
}
