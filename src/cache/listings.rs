//! Lazy listings: a directory is listed when first visited (the names starting with its
//! prefix), a name not known yet is asked for with one page of the names starting with it
//! (never a whole subtree; a listing of the directory it finds soon after goes on from that
//! page), and a stale listing is served while a background refresh replaces it. The tree of
//! known names is swapped whole, so readers never wait for a listing in progress.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::changes::{ChangeKind, Origin};
use super::memory_only;
use super::refresh::directory_of;
use super::slot::{Decision, Flight, Slot};
use super::{lock, Inner, Listing, ServiceCache, Tree};
use crate::deadline;
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::provider::{under_prefix, Fetched, Listed, Page, PageRest, Service};

/// How many walked directories are remembered before those listed more than a TTL ago are
/// dropped.
const MAX_WALKED: usize = 1024;

/// A probe's partial first page, kept so that a listing of the directory it began to list can
/// go on from it for the negative-cache period instead of asking for that page again.
pub(super) struct ProbedPage {
    at: Instant,
    names: Vec<Listed>,
    rest: PageRest,
}

impl ProbedPage {
    /// Whether the page was asked for less than `period` before `now`.
    fn within(&self, period: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < period
    }
}

impl ServiceCache {
    /// The tree of the names known now; no provider call.
    pub fn namespace(&self) -> Arc<Namespace> {
        lock(&self.inner.tree).namespace.clone()
    }

    /// The tree, with the directory whose names start with `dir_prefix` (`/prod/db/`, or the
    /// mount prefix for the service directory) listed: listed now if no listing covers it yet,
    /// refreshed in the background if the covering listing is stale. If listing is denied, the
    /// names known so far are shown.
    pub fn list_dir(&self, dir_prefix: &str) -> Result<Arc<Namespace>> {
        self.inner.mark_walked(dir_prefix);
        let covering = self.inner.covering_listing(dir_prefix);
        let key = covering.unwrap_or_else(|| dir_prefix.to_string());
        match self.listing(&key, self.inner.patience) {
            Ok(()) => Ok(self.namespace()),
            Err(Error::AccessDenied(reason)) => {
                self.inner.listing_was_denied(&reason);
                Ok(self.namespace())
            }
            Err(err) => Err(err),
        }
    }

    /// Tell the cache that a reader is about to read all of `names` (`get-by-path`, `exec`):
    /// their directories count as listed now, so cold reads there prefetch as in a walk.
    pub fn walking<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let dirs: HashSet<&str> = names.into_iter().map(|name| self.inner.dir_of(name)).collect();
        dirs.into_iter().for_each(|dir| self.inner.mark_walked(dir));
    }

    /// The tree, after asking the service for `name` (a name not in the tree yet): the first
    /// page of the names starting with `name` (one call). A page that is the whole listing is
    /// kept as the listing of `name` (a name missing there is not asked about again for the
    /// negative-cache period); a partial one (a large subtree) adds its names, and when it does
    /// not tell what `name` is, `name` is read by its exact name while a page of the names below
    /// `name/` is asked (a second round trip). A subtree is never listed whole for a lookup.
    /// When listing is denied, the value is read by its exact name, and a missing one is
    /// treated as a possible directory, so deeper exact paths stay reachable.
    pub fn discover(&self, name: &str) -> Result<Arc<Namespace>> {
        if !self.inner.listing_denied.load(Ordering::Relaxed) {
            match self.first_page(name) {
                Err(Error::AccessDenied(reason)) => self.inner.listing_was_denied(&reason),
                answer => return answer,
            }
        }
        if let Some(flat) = self.flat_twin(name) {
            // Listing is denied and `/x` may as well be SSM's flat name `x`: both are asked in
            // one batch; the flat one is shown when `/x` does not exist (as with a listing).
            let flat = flat.to_string();
            let flat_value = self.value(&flat, [name]);
            if let (Err(Error::NotFound), Ok(value)) = (self.value(name, []), flat_value) {
                self.inner.add_name(&flat, &value.fetched);
                return Ok(self.namespace());
            }
        }
        self.discover_exact(name, true)
    }

    /// See [`ServiceCache::discover`]: the first page of the names starting with `name`.
    fn first_page(&self, name: &str) -> Result<Arc<Namespace>> {
        let now = self.inner.runtime.clock.now();
        if self.inner.listed_lately(name, now) {
            return Ok(self.namespace());
        }
        memory_only::may_wait()?;
        let below = format!("{name}/");
        let probe = self.probe_in_background(name, now);
        let page = match probe.wait(deadline::bound(self.inner.patience)) {
            Ok(page) => page,
            // A page that failed with time left (throttled, refused by a service error): the
            // name is asked for directly, so an exact path never depends on listing calls.
            Err(Error::Transient(_) | Error::Service(_)) if probe.is_finished() => {
                return self.read_and_probe(name, &below);
            }
            Err(err) => return Err(err),
        };
        if page.is_complete() {
            return Ok(self.namespace());
        }
        let tells = page.names.iter().any(|listed| listed.name == name || under_prefix(&below, &listed.name));
        self.inner.add_names(page.names.clone());
        match tells {
            true => Ok(self.namespace()),
            false => self.read_and_probe(name, &below),
        }
    }

    /// `name` read by its exact name while the first page of the names below it (`below`) is
    /// asked on another thread; what either finds joins the tree (a value found answers at
    /// once: a page still on its way is kept only if it is the whole listing). An
    /// `AccessDenied` probe is returned as such (the value read is kept).
    fn read_and_probe(&self, name: &str, below: &str) -> Result<Arc<Namespace>> {
        let now = self.inner.runtime.clock.now();
        if self.inner.listed_lately(below, now) && matches!(self.value(name, []), Err(Error::NotFound)) {
            return Ok(self.namespace());
        }
        let probe = self.probe_in_background(below, now);
        let value = self.value(name, []);
        if let Ok(value) = &value {
            self.inner.add_name(name, &value.fetched);
            if !probe.is_finished() {
                return Ok(self.namespace());
            }
        }
        let page = probe.wait(deadline::bound(self.inner.patience));
        match (value, page) {
            (_, Err(denied @ Error::AccessDenied(_))) => Err(denied),
            (_, Ok(page)) if !page.names.is_empty() => {
                self.inner.add_names(page.names.clone());
                Ok(self.namespace())
            }
            (Ok(_), _) | (Err(Error::NotFound), Ok(_)) => Ok(self.namespace()),
            (Err(Error::NotFound), Err(probe_error)) => Err(probe_error),
            (Err(err), _) => Err(err),
        }
    }

    /// Ask for the first page of the names starting with `prefix`, on another thread (its
    /// caller waits a bounded time). A page that is the whole listing is kept there as the
    /// listing of `prefix`, also when nobody waits for it any more.
    fn probe_in_background(&self, prefix: &str, started: Instant) -> Arc<Flight<Page>> {
        let flight = Arc::new(Flight::default());
        let (inner, job, prefix) = (self.inner.clone(), flight.clone(), prefix.to_string());
        self.inner.runtime.spawner.spawn_now(Box::new(move || {
            let page = inner.listing_call(|| inner.provider.probe(&prefix)).map(Arc::new);
            if let Ok(page) = &page {
                match &page.rest {
                    None => inner.settle_listing(&prefix, started, Ok(Arc::new(Listing { names: page.names.clone() }))),
                    Some(rest) => inner.keep_probed_page(&prefix, started, &page.names, rest),
                }
            }
            job.finish(page);
        }));
        flight
    }

    /// SSM's flat name (`x`) shown at the same path as the top-level name `name` (`/x`), when
    /// this cache shows every parameter (prefix `/`).
    fn flat_twin<'a>(&self, name: &'a str) -> Option<&'a str> {
        let rest =
            name.strip_prefix('/').filter(|_| self.inner.prefix == "/" && self.service() == Service::ParameterStore)?;
        (!rest.is_empty() && !rest.contains('/')).then_some(rest)
    }

    /// The tree, after reading `name` by its exact name: added if found; if not and
    /// `maybe_directory`, shown as a directory (listing is denied, so it may hold names).
    pub fn discover_exact(&self, name: &str, maybe_directory: bool) -> Result<Arc<Namespace>> {
        match self.value(name, []) {
            Ok(value) => self.inner.add_name(name, &value.fetched),
            Err(Error::NotFound) if maybe_directory => self.inner.add_directory(name),
            Err(Error::NotFound) => {}
            Err(err) => return Err(err),
        }
        Ok(self.namespace())
    }

    /// Make sure the listing of `prefix` is known (waiting, at most `patience`, only when
    /// nothing is known yet). The listing runs on a thread of its own and goes on past the
    /// wait.
    fn listing(&self, prefix: &str, patience: Duration) -> Result<()> {
        let inner = &self.inner;
        let now = inner.runtime.clock.now();
        let (decision, flight) = {
            let mut listings = lock(&inner.listings);
            let slot = listings.entry(prefix.to_string()).or_insert_with(|| Slot::new(now));
            slot.last_read = now;
            let decision = slot.decide(now, inner.listing_ttl(slot), &inner.policy);
            if matches!(decision, Decision::Wait(_) | Decision::Fetch) {
                memory_only::may_wait()?;
            }
            let flight = match decision {
                Decision::Fetch | Decision::ServeAndRefresh(_) => {
                    let flight = Arc::new(Flight::default());
                    slot.flight = Some(flight.clone());
                    Some(flight)
                }
                _ => None,
            };
            (decision, flight)
        };
        match decision {
            Decision::Serve(_) => Ok(()),
            Decision::Fail(err) => Err(err),
            Decision::ServeAndRefresh(_) => {
                self.list_in_background(prefix.to_string());
                Ok(())
            }
            Decision::Wait(flight) => inner.listing_answer(prefix, flight.wait(deadline::bound(patience))),
            Decision::Fetch => {
                let (job, prefix_owned) = (inner.clone(), prefix.to_string());
                inner.runtime.spawner.spawn_now(Box::new(move || job.run_listing(&prefix_owned)));
                let outcome = flight
                    .map_or(Err(Error::Transient("listing aborted".into())), |f| f.wait(deadline::bound(patience)));
                inner.listing_answer(prefix, outcome)
            }
        }
    }

    pub(super) fn list_in_background(&self, prefix: String) {
        let inner = self.inner.clone();
        self.inner.runtime.spawner.spawn(Box::new(move || inner.run_listing(&prefix)));
    }
}

impl Inner {
    /// A listing that found nothing is asked again after the negative-cache period.
    pub(super) fn listing_ttl(&self, slot: &Slot<Listing>) -> Duration {
        match &slot.value {
            Some(listing) if listing.names.is_empty() => self.policy.negative_ttl,
            _ => self.policy.ttl,
        }
    }

    /// The key of a listing that has succeeded and covers `dir_prefix` (its prefix starts it).
    fn covering_listing(&self, dir_prefix: &str) -> Option<String> {
        let listings = lock(&self.listings);
        listings
            .iter()
            .filter(|(prefix, slot)| slot.value.is_some() && covers(prefix, dir_prefix, &self.prefix))
            .map(|(prefix, _)| prefix.clone())
            .max_by_key(String::len)
    }

    /// Remember that a reader lists the directory `dir_prefix` now (see
    /// [`Inner::walked_lately`]).
    fn mark_walked(&self, dir_prefix: &str) {
        let now = self.runtime.clock.now();
        let mut walked = lock(&self.walked);
        if let Some(at) = walked.get_mut(dir_prefix) {
            *at = now;
            return;
        }
        if walked.len() >= MAX_WALKED {
            walked.retain(|_, at| now.saturating_duration_since(*at) < self.policy.ttl);
        }
        walked.insert(dir_prefix.to_string(), now);
    }

    /// Whether a reader listed the directory holding `name` within the TTL before `now`: a
    /// cold read there is part of a walk (`ls -l`, `cat dir/*`, `grep -r`), not a lone read.
    pub(super) fn walked_lately(&self, name: &str, now: Instant) -> bool {
        let walked = lock(&self.walked);
        walked.get(self.dir_of(name)).is_some_and(|at| now.saturating_duration_since(*at) < self.policy.ttl)
    }

    /// The prefix of the directory shown holding `name` (`/prod/db/` for `/prod/db/root`; the
    /// mount prefix for a name at the top).
    fn dir_of<'a>(&'a self, name: &'a str) -> &'a str {
        match directory_of(name) {
            "" => &self.prefix,
            dir => dir,
        }
    }

    /// Whether `prefix` was listed within its listing's freshness period (marked read now).
    fn listed_lately(&self, prefix: &str, now: Instant) -> bool {
        let mut listings = lock(&self.listings);
        let Some(slot) = listings.get_mut(prefix) else { return false };
        slot.last_read = now;
        slot.value.is_some() && slot.age(now).is_some_and(|age| age < self.listing_ttl(slot))
    }

    fn listing_was_denied(&self, reason: &str) {
        if !self.listing_denied.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "listing under {:?} is denied ({reason}); showing names read by exact path only",
                self.prefix
            );
        }
    }

    fn listing_answer(&self, prefix: &str, outcome: Result<Arc<Listing>>) -> Result<()> {
        let now = self.runtime.clock.now();
        let listings = lock(&self.listings);
        let outcome = match listings.get(prefix) {
            Some(slot) => slot.answer(outcome, now, self.listing_ttl(slot), &self.policy),
            None => outcome,
        };
        outcome.map(drop)
    }

    /// A listing call to the provider (a whole listing or its first page): a panic in it is a
    /// transient failure; its outcome is counted.
    fn listing_call<T>(&self, call: impl FnOnce() -> Result<T>) -> Result<T> {
        let result =
            catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|_| Err(Error::Transient("listing aborted".into())));
        self.counters.outcome(&result);
        result
    }

    /// Keep the partial first page (`names`, followed by `rest`) of a probe of `probed`
    /// (`/prod`, or `/prod/`) asked at `at` for a listing of the directory it began to list
    /// (`/prod/`); pages kept longer than the negative-cache period are dropped.
    fn keep_probed_page(&self, probed: &str, at: Instant, names: &[Listed], rest: &PageRest) {
        let dir_prefix = match probed.ends_with('/') {
            true => probed.to_string(),
            false => format!("{probed}/"),
        };
        let now = self.runtime.clock.now();
        let mut kept = lock(&self.probed_pages);
        kept.retain(|_, probe| probe.within(self.policy.negative_ttl, now));
        kept.insert(dir_prefix, ProbedPage { at, names: names.to_vec(), rest: rest.clone() });
    }

    /// List the names starting with `prefix` (its slot's flight is set), merge them into the
    /// tree, and finish the flight. A probe's first page of these names asked within the
    /// negative-cache period is not asked again: the listing goes on from it (as of the probe).
    pub(super) fn run_listing(&self, prefix: &str) {
        let now = self.runtime.clock.now();
        let probed =
            lock(&self.probed_pages).remove(prefix).filter(|probe| probe.within(self.policy.negative_ttl, now));
        let (started, result) = match probed {
            Some(probe) => (probe.at, self.listing_call(|| self.list_after(prefix, &probe))),
            None => (now, self.listing_call(|| self.provider.list(prefix))),
        };
        self.settle_listing(prefix, started, result.map(|names| Arc::new(Listing { names })));
    }

    /// The names starting with `prefix`: those on `probe`'s page (of names starting with
    /// `prefix` or a part of it) and on the pages after it. When the service refuses to go on
    /// from it (a token it no longer takes), the names are listed from the start.
    fn list_after(&self, prefix: &str, probe: &ProbedPage) -> Result<Vec<Listed>> {
        let after = match self.provider.list_rest(&probe.rest) {
            Err(Error::Service(_) | Error::InvalidInput(_)) => return self.provider.list(prefix),
            after => after?,
        };
        Ok(probe.names.iter().chain(&after).filter(|listed| under_prefix(prefix, &listed.name)).cloned().collect())
    }

    /// Merge what a listing of `prefix` started at `started` found into the tree, record it in
    /// the prefix's slot, announce what changed, and finish the slot's flight, if any.
    fn settle_listing(&self, prefix: &str, started: Instant, result: Result<Arc<Listing>>) {
        let now = self.runtime.clock.now();
        let (mut added, mut removed, mut first_listed) = (Vec::new(), Vec::new(), Vec::new());
        // Names read by exact name before a first listing: their directories may have been
        // shown from them alone.
        let first = lock(&self.listings).get(prefix).is_none_or(|slot| slot.value.is_none());
        let known_before = first && lock(&self.tree).names.keys().any(|name| under_prefix(prefix, name));
        if let Ok(listing) = &result {
            (added, removed) = self.merge(prefix, &listing.names, started);
        }
        let flight = {
            let mut listings = lock(&self.listings);
            let slot = listings.entry(prefix.to_string()).or_insert_with(|| Slot::new(now));
            if slot.value.is_none() {
                // A first listing discovers nothing: it only learns what was already there. If
                // names were known before it, one new name per directory tells the kernel to
                // drop what it kept of those directories.
                let mut directories = HashSet::new();
                first_listed = std::mem::take(&mut added);
                first_listed.retain(|name| {
                    known_before && directories.insert(name.rsplit_once('/').map_or("", |(dir, _)| dir).to_string())
                });
            }
            let jitter = self.jitter((prefix, slot.failures));
            let failures = slot.record(&result, now, &self.policy, jitter);
            if let Err(err) = &result {
                if !matches!(err, Error::AccessDenied(_)) {
                    tracing::warn!(
                        "listing {prefix:?} failed (failure {failures} in a row; next attempt within {}s): {err}",
                        self.policy.backoff(failures, 1.0).as_secs_f64().ceil()
                    );
                }
            }
            slot.flight.take()
        };
        if !removed.is_empty() {
            let mut values = lock(&self.values);
            for name in &removed {
                self.forget_value(&mut values, name);
            }
        }
        self.announce(ChangeKind::Deleted, Origin::Service, removed);
        self.announce(ChangeKind::Discovered, Origin::Service, added);
        self.announce(ChangeKind::Listed, Origin::Service, first_listed);
        // Waiters wake once the changes are announced: what they see next is announced.
        if let Some(flight) = flight {
            flight.finish(result);
        }
    }

    /// Replace the known names starting with `prefix` by `listed`; returns the names that came
    /// and the names that left.
    fn merge(&self, prefix: &str, listed: &[Listed], started: Instant) -> (Vec<String>, Vec<String>) {
        let now_listed: HashSet<&str> = listed.iter().map(|l| l.name.as_str()).collect();
        let mut tree = lock(&self.tree);
        // A name learned while this listing ran (created through the mount, read by exact name)
        // may be missing from it without being gone.
        let learned_since: HashSet<String> =
            tree.learned.iter().filter(|(_, at)| **at >= started).map(|(name, _)| name.clone()).collect();
        tree.learned.retain(|_, at| *at >= started);
        let removed: Vec<String> = tree
            .names
            .keys()
            .filter(|name| under_prefix(prefix, name) && !now_listed.contains(name.as_str()))
            .filter(|name| !learned_since.contains(*name))
            .cloned()
            .collect();
        for name in &removed {
            tree.remove(&self.prefix, name);
        }
        let hidden_before = tree.namespace.hidden().len();
        let mut added = Vec::new();
        for entry in listed {
            if !tree.names.contains_key(&entry.name) {
                added.push(entry.name.clone());
            }
            tree.insert(&self.prefix, entry.clone());
        }
        if tree.namespace.hidden().len() > hidden_before {
            tracing::warn!(
                "names with an empty, `.` or `..` path part are not shown: {:?}",
                tree.namespace.hidden().iter().collect::<Vec<_>>()
            );
        }
        (added, removed)
    }

    /// Add names learned outside a listing (created, or read by exact name).
    pub(super) fn add_names(&self, listed: Vec<Listed>) {
        let now = self.runtime.clock.now();
        let mut tree = lock(&self.tree);
        for entry in listed {
            tree.learned.insert(entry.name.clone(), now);
            tree.insert(&self.prefix, entry);
        }
    }

    /// Add `name`, learned outside a listing, with what was read or stored under it.
    pub(super) fn add_name(&self, name: &str, fetched: &Fetched) {
        self.add_names(vec![Listed { name: name.to_string(), last_modified: fetched.last_modified }]);
    }

    /// Drop names that no longer exist.
    pub(super) fn remove_names(&self, gone: &[String]) {
        if gone.is_empty() {
            return;
        }
        let mut tree = lock(&self.tree);
        for name in gone {
            tree.remove(&self.prefix, name);
        }
    }

    /// Show `name` as a directory (listing denied: it may hold names we cannot list).
    fn add_directory(&self, name: &str) {
        let mut tree = lock(&self.tree);
        Arc::make_mut(&mut tree.namespace).insert_directory(&self.prefix, name);
    }
}

impl Tree {
    /// Know `entry`, shown below the mount `prefix`.
    pub(super) fn insert(&mut self, prefix: &str, entry: Listed) {
        self.names.insert(entry.name.clone(), entry.clone());
        Arc::make_mut(&mut self.namespace).insert(prefix, entry);
    }

    /// Forget `name`.
    fn remove(&mut self, prefix: &str, name: &str) {
        self.names.remove(name);
        Arc::make_mut(&mut self.namespace).remove(prefix, name);
    }
}

/// Whether the listing of names starting with `listed` covers the directory `dir_prefix`. The
/// root Parameter Store prefix `/` also lists SSM's flat names, so it covers everything.
fn covers(listed: &str, dir_prefix: &str, root: &str) -> bool {
    (listed == root && root == "/") || dir_prefix.starts_with(listed)
}
