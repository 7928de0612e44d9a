//! The value table: reads that serve known values at once, batched cold fetches that carry
//! their siblings (more batches prefetched in parallel), one flight per key, and eviction of
//! the least recently read entries beyond capacity.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::changes::{ChangeKind, Origin};
use super::memory_only;
use super::slot::{ends_stale, Decision, Flight, Slot};
use super::stats::Counters;
use super::{lock, Inner, ServiceCache, ENTRY_OVERHEAD};
use crate::deadline;
use crate::error::{Error, Result};
use crate::provider::{selector, wipe_json_object, FetchResult, Fetched};

/// Extra batches of a directory's unread values fetched in parallel with a cold read in a
/// directory a reader listed lately.
pub const PREFETCH_BATCHES: usize = 4;
/// Most names kept waiting to ride along in another fetch after their own failed (see
/// `Inner::take_missed`); beyond it, a failed name waits for its own reader.
pub const MAX_MISSED: usize = 4096;

/// What a value held named `name` with `len` bytes counts for against the byte capacity.
pub(super) fn entry_bytes(name: &str, len: usize) -> usize {
    ENTRY_OVERHEAD + name.len() + len
}

/// What the slot of `name` counts for (a slot without a value: its overhead and name).
fn slot_bytes(name: &str, slot: &Slot<CachedValue>) -> usize {
    entry_bytes(name, slot.value.as_ref().map_or(0, |v| v.fetched.bytes.len()))
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

impl Drop for CachedValue {
    fn drop(&mut self) {
        if let Some(Some(object)) = self.json.take() {
            wipe_json_object(object);
        }
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

    /// Whether `other` is the same stored value (same version and bytes).
    pub(super) fn same_as(&self, other: &Fetched) -> bool {
        self.fetched.version == other.version
            && self.fetched.kind == other.kind
            && self.fetched.bytes.as_slice() == other.bytes.as_slice()
    }
}

type Values = HashMap<String, Slot<CachedValue>>;

/// The names of a batch with the flights their readers wait on.
pub(super) type Members = Vec<(String, Arc<Flight<CachedValue>>)>;

impl ServiceCache {
    /// The value of `name`. A known value is answered from memory (a stale one also starts a
    /// background refresh). On a miss, up to a batch of not-yet-known `siblings` rides along in
    /// the same call, and in a directory a reader listed lately a few more batches are
    /// prefetched in parallel; concurrent readers of a name being fetched wait for that one
    /// call; a failure is remembered until its backoff ends.
    pub fn value<'a>(&self, name: &str, siblings: impl IntoIterator<Item = &'a str>) -> Result<Arc<CachedValue>> {
        let inner = &self.inner;
        let now = inner.runtime.clock.now();
        let ttl = inner.value_ttl(name);
        let (decision, batches, own_flight, past_ttl) = {
            let mut values = lock(&inner.values);
            let slot = values.entry(name.to_string()).or_insert_with(|| Slot::new(now));
            slot.last_read = now;
            let decision = slot.decide(now, ttl, &inner.policy);
            let past_ttl = slot.age(now).is_some_and(|age| age >= ttl);
            if matches!(decision, Decision::Wait(_) | Decision::Fetch) {
                memory_only::may_wait()?;
            }
            let batches = match decision {
                Decision::Fetch | Decision::ServeAndRefresh(_) => {
                    // More batches only for a cold read in a directory being walked (listed
                    // lately): a lone read (`cat` of one path) costs its own batch, and so does
                    // a value that was known and expired long ago.
                    let known = values.get(name).is_some_and(|slot| slot.value.is_some());
                    let prefetch = matches!(decision, Decision::Fetch) && !known && inner.walked_lately(name, now);
                    inner.plan(&mut values, name, siblings, now, prefetch)
                }
                _ => Vec::new(),
            };
            let own_flight = values.get(name).and_then(|s| s.flight.clone());
            (decision, batches, own_flight, past_ttl)
        };
        let mut batches = batches.into_iter();
        let counters = &inner.counters;
        match &decision {
            // Served from memory; past its TTL (an outage, a refresh under way) it is stale.
            Decision::Serve(_) | Decision::ServeAndRefresh(_) => {
                Counters::add(&counters.hits, 1);
                if past_ttl {
                    Counters::add(&counters.stale_serves, 1);
                }
            }
            Decision::Wait(_) | Decision::Fetch => Counters::add(&counters.misses, 1),
            Decision::Fail(_) => {}
        }
        match decision {
            Decision::Serve(value) => Ok(value),
            Decision::Fail(err) => Err(err),
            Decision::ServeAndRefresh(value) => {
                batches.for_each(|batch| self.fetch_in_background(batch));
                Ok(value)
            }
            Decision::Wait(flight) => inner.answer(name, flight.wait(deadline::bound(inner.patience))),
            Decision::Fetch => {
                let first = batches.next().unwrap_or_else(|| vec![name.to_string()]);
                batches.for_each(|batch| self.fetch_in_background(batch));
                inner.run_batch(&first);
                let outcome = own_flight
                    .map_or(Err(Error::Transient("fetch aborted".into())), |f| f.wait(deadline::bound(inner.patience)));
                inner.answer(name, outcome)
            }
        }
    }

    /// The value of `name` if one is cached and may still be served; never calls the provider
    /// and changes nothing (a peek: directory listings use it to tell JSON objects apart).
    pub fn cached(&self, name: &str) -> Option<Arc<CachedValue>> {
        let now = self.inner.runtime.clock.now();
        let values = lock(&self.inner.values);
        values.get(name)?.servable(now, self.inner.value_ttl(name), &self.inner.policy)
    }

    pub(super) fn fetch_in_background(&self, batch: Vec<String>) {
        let inner = self.inner.clone();
        self.inner.runtime.spawner.spawn(Box::new(move || inner.run_batch(&batch)));
    }
}

/// How long a value that names one immutable version (`NAME:3`, `NAME:<VersionId>`) is served:
/// it never changes, so it is never revalidated (ten years, for arithmetic's sake).
pub const IMMUTABLE_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Inner {
    /// How long the value of `name` is served as fresh: the TTL, its own rule's, or for an
    /// immutable version [`IMMUTABLE_TTL`].
    pub(super) fn value_ttl(&self, name: &str) -> Duration {
        if selector::is_immutable(name) {
            return IMMUTABLE_TTL;
        }
        self.ttl_rules.get().and_then(|rules| rules(name)).unwrap_or(self.policy.ttl)
    }

    /// Which names to fetch with `name`, in batches (the first holds `name`): the siblings
    /// that are unknown or expired and not already being fetched or backing off; beyond the
    /// first batch, up to [`PREFETCH_BATCHES`] more when `prefetch`, within half the capacity,
    /// in entries and in bytes (at the size of the values held now, on average), so a batch
    /// never evicts its own members. Every planned name gets its flight here.
    fn plan<'a>(
        &self,
        values: &mut Values,
        name: &str,
        siblings: impl IntoIterator<Item = &'a str>,
        now: Instant,
        prefetch: bool,
    ) -> Vec<Vec<String>> {
        let limit = self.provider.batch_limit().max(1);
        let budget = (self.capacity / 2).min(self.byte_capacity / 2 / self.mean_entry_bytes(values)).max(1);
        let most = if prefetch { limit * (1 + PREFETCH_BATCHES) } else { limit };
        let most = most.min(budget).max(1);
        // Siblings after `name` first (readers walk a directory in order), then those before.
        let siblings: Vec<&str> = siblings.into_iter().collect();
        let position = siblings.iter().position(|s| *s == name).map_or(0, |p| p + 1);
        let (before, after) = siblings.split_at(position.min(siblings.len()));
        let mut planned = vec![name.to_string()];
        for &sibling in after.iter().chain(before) {
            if planned.len() >= most {
                break;
            }
            if sibling == name {
                continue;
            }
            let wanted = match values.get(sibling) {
                None => true,
                Some(slot) => {
                    slot.flight.is_none()
                        && !slot.in_backoff(now)
                        && slot.age(now).is_none_or(|age| age >= self.policy.ttl)
                }
            };
            if wanted {
                planned.push(sibling.to_string());
            }
        }
        for member in &planned {
            let slot = values.entry(member.clone()).or_insert_with(|| Slot::new(now));
            slot.flight = Some(Arc::new(Flight::default()));
            if member != name && slot.value.is_none() {
                slot.last_read = now;
            }
        }
        if planned.len() < limit {
            self.take_missed(values, &mut planned, limit, now);
        }
        planned.chunks(limit.min(budget).max(1)).map(<[String]>::to_vec).collect()
    }

    /// Add to `planned`, up to `limit` names, names whose reader's fetch failed transiently
    /// (read within the last TTL, still without a value, not being fetched): a call made anyway
    /// retries them at no cost, so a cold start under throttling needs fewer calls. Names no
    /// longer wanted leave the set.
    fn take_missed(&self, values: &mut Values, planned: &mut Vec<String>, limit: usize, now: Instant) {
        let mut missed = lock(&self.missed);
        missed.retain(|name| {
            let Some(slot) = values.get_mut(name) else { return false };
            if slot.value.is_some() || now.saturating_duration_since(slot.last_read) >= self.policy.ttl {
                return false;
            }
            if planned.len() >= limit || slot.flight.is_some() || planned.contains(name) {
                return true;
            }
            slot.flight = Some(Arc::new(Flight::default()));
            planned.push(name.clone());
            false
        });
    }

    /// The members of `batch` with the flights set for them.
    pub(super) fn members(&self, batch: &[String]) -> Members {
        let values = lock(&self.values);
        batch.iter().filter_map(|name| Some((name.clone(), values.get(name)?.flight.clone()?))).collect()
    }

    /// Fetch one batch whose members have their flights set, and land the outcome. The flights
    /// are finished even if the provider panics.
    pub(super) fn run_batch(&self, batch: &[String]) {
        let members = self.members(batch);
        if members.is_empty() {
            return;
        }
        let names: Vec<String> = members.iter().map(|(name, _)| name.clone()).collect();
        let result = match self.fetch_guarded(&names) {
            // A batch refused as a whole (BatchGetSecretValue not allowed, or an IAM deny on one
            // of its names): ask for each name alone, so the others are still served.
            Err(Error::AccessDenied(reason)) if names.len() > 1 => {
                tracing::debug!(
                    "a batch of {} under {:?} was denied ({reason}); reading them one by one",
                    names.len(),
                    self.prefix
                );
                Ok(names.iter().map(|name| self.fetch_one(name)).collect())
            }
            other => other,
        };
        self.land_batch(&members, result);
    }

    /// One provider fetch; a panic in it becomes a transient failure.
    fn fetch_guarded(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        catch_unwind(AssertUnwindSafe(|| self.provider.fetch(names)))
            .unwrap_or_else(|_| Err(Error::Transient("fetch aborted".into())))
    }

    /// The answer for `name` fetched alone.
    fn fetch_one(&self, name: &str) -> FetchResult {
        let answer = self.fetch_guarded(&[name.to_string()]).and_then(|answers| {
            answers.into_iter().find(|(n, _)| n == name).map(|(_, answer)| answer).unwrap_or(Err(Error::NotFound))
        });
        (name.to_string(), answer)
    }

    /// Record each member's outcome, finish its flight, and announce what changed. A member
    /// whose entry was replaced meanwhile (written, deleted) keeps the newer state; its waiters
    /// still get this fetch's outcome.
    pub(super) fn land_batch(&self, members: &Members, result: Result<Vec<FetchResult>>) {
        let now = self.runtime.clock.now();
        let mut answers: HashMap<String, Result<Fetched>> = match &result {
            Ok(results) => results.iter().cloned().collect(),
            Err(_) => HashMap::new(),
        };
        let mut changed = Vec::new();
        let mut gone = Vec::new();
        let mut failures = 0;
        let mut added = 0;
        {
            let mut values = lock(&self.values);
            let mut missed = lock(&self.missed);
            for (name, flight) in members {
                let answer = match &result {
                    Ok(_) => answers.remove(name).unwrap_or(Err(Error::NotFound)),
                    Err(err) => Err(err.clone()),
                };
                let Some(slot) =
                    values.get_mut(name).filter(|s| s.flight.as_ref().is_some_and(|f| Arc::ptr_eq(f, flight)))
                else {
                    flight.finish(answer.map(|fetched| Arc::new(CachedValue::new(fetched))));
                    continue;
                };
                let had_value = slot.value.is_some();
                let outcome = match answer {
                    Ok(fetched) => match &slot.value {
                        Some(old) if old.same_as(&fetched) => Ok(old.clone()),
                        _ => {
                            if had_value {
                                changed.push(name.clone());
                            }
                            added += entry_bytes(name, fetched.bytes.len());
                            Ok(Arc::new(CachedValue::new(fetched)))
                        }
                    },
                    Err(err) => {
                        if had_value && matches!(err, Error::NotFound | Error::AccessDenied(_)) {
                            gone.push((name.clone(), err.clone()));
                        }
                        if !matches!(err, Error::NotFound) && result.is_ok() {
                            tracing::warn!("{name}: {err} (failure {} in a row)", slot.failures + 1);
                        }
                        Err(err)
                    }
                };
                match &outcome {
                    Err(err) if slot.value.is_none() && !ends_stale(err) && missed.len() < MAX_MISSED => {
                        missed.insert(name.clone())
                    }
                    _ => missed.remove(name),
                };
                let jitter = self.jitter((name, slot.failures));
                failures = failures.max(slot.record(&outcome, now, &self.policy, jitter));
                slot.flight = None;
                flight.finish(outcome);
            }
            drop(missed);
            self.evict_over_capacity(&mut values, added);
        }
        self.counters.outcome(&result);
        Counters::add(&self.counters.changes_found, changed.len() as u64);
        if let Err(err) = &result {
            let wait = self.policy.backoff(failures, 1.0);
            tracing::warn!(
                "fetching {} value(s) under {:?} failed (failure {failures} in a row; next attempt within {}s): {err}",
                members.len(),
                self.prefix,
                wait.as_secs_f64().ceil()
            );
        }
        let (removed, revoked): (Vec<_>, Vec<_>) = gone.into_iter().partition(|(_, e)| *e == Error::NotFound);
        let removed: Vec<String> = removed.into_iter().map(|(name, _)| name).collect();
        self.remove_names(&removed);
        changed.extend(revoked.into_iter().map(|(name, _)| name));
        self.announce(ChangeKind::Updated, Origin::Service, changed);
        self.announce(ChangeKind::Deleted, Origin::Service, removed);
    }

    /// The answer for `name` from a finished fetch: the value, or the stale value on a
    /// transient failure while it is servable.
    fn answer(&self, name: &str, outcome: Result<Arc<CachedValue>>) -> Result<Arc<CachedValue>> {
        let now = self.runtime.clock.now();
        let failed = outcome.is_err();
        let answer = match lock(&self.values).get(name) {
            Some(slot) => slot.answer(outcome, now, self.value_ttl(name), &self.policy),
            None => outcome,
        };
        if failed && answer.is_ok() {
            Counters::add(&self.counters.stale_serves, 1);
        }
        answer
    }

    /// Forget the value of `name` (the name is gone). A fetch in flight for it is answered
    /// "not found" now: its waiters must not wait for a landing that finds no slot.
    pub(super) fn forget_value(&self, values: &mut Values, name: &str) {
        if let Some(flight) = values.remove(name).and_then(|slot| slot.flight) {
            flight.finish(Err(Error::NotFound));
        }
    }

    /// Store a value just written.
    pub(super) fn store(&self, name: &str, fetched: Fetched) {
        let now = self.runtime.clock.now();
        let mut values = lock(&self.values);
        let slot = values.entry(name.to_string()).or_insert_with(|| Slot::new(now));
        let added = entry_bytes(name, fetched.bytes.len());
        let value = Arc::new(CachedValue::new(fetched));
        slot.record(&Ok(value.clone()), now, &self.policy, 0.0);
        slot.last_read = now;
        // A fetch in flight started before this write: its (older) answer must not land.
        if let Some(flight) = slot.flight.take() {
            flight.finish(Ok(value));
        }
        self.evict_over_capacity(&mut values, added);
    }

    /// What a value held counts for on average (see [`entry_bytes`]); with none held, an
    /// entry's overhead.
    fn mean_entry_bytes(&self, values: &Values) -> usize {
        let held = self.bytes_counted.load(Ordering::Relaxed) + self.bytes_added.load(Ordering::Relaxed);
        (held / values.len().max(1)).max(ENTRY_OVERHEAD)
    }

    /// After values counting `added` bytes (see [`entry_bytes`]) came in: beyond the entry or
    /// the byte capacity, drop the least recently read values that are not being fetched, down
    /// to nine tenths of both (so eviction runs once per many inserts). Bytes are counted
    /// exactly (a scan) only when the running upper bound passes the byte capacity.
    pub(super) fn evict_over_capacity(&self, values: &mut Values, added: usize) {
        let added = self.bytes_added.fetch_add(added, Ordering::Relaxed) + added;
        let over_entries = values.len() > self.capacity;
        if !over_entries && self.bytes_counted.load(Ordering::Relaxed) + added <= self.byte_capacity {
            return;
        }
        let mut bytes: usize = values.iter().map(|(name, slot)| slot_bytes(name, slot)).sum();
        self.bytes_added.store(0, Ordering::Relaxed);
        if over_entries || bytes > self.byte_capacity {
            let keep = self.capacity - self.capacity / 10;
            let keep_bytes = self.byte_capacity - self.byte_capacity / 10;
            let mut idle: Vec<(Instant, String)> =
                values.iter().filter(|(_, s)| s.flight.is_none()).map(|(n, s)| (s.last_read, n.clone())).collect();
            idle.sort_unstable();
            for (_, name) in idle {
                if values.len() <= keep && bytes <= keep_bytes {
                    break;
                }
                if let Some(slot) = values.remove(&name) {
                    bytes = bytes.saturating_sub(slot_bytes(&name, &slot));
                    Counters::add(&self.counters.evictions, 1);
                }
            }
        }
        self.bytes_counted.store(bytes, Ordering::Relaxed);
    }
}
