//! Refreshes a user asks for (the control directory's `refresh` file): fetch named values again
//! now, and list a directory again, returning once the answers have landed. Readers and other
//! refreshes of the same name share one call; a name backing off after failures answers its
//! last failure without a call (a name remembered as missing is asked again), and every call
//! goes through the service's rate limit.

use std::sync::Arc;

use super::slot::{Flight, Slot};
use super::stats::Counters;
use super::{lock, ServiceCache};
use crate::deadline;
use crate::error::{Error, Result};
use crate::provider::under_prefix;

impl ServiceCache {
    /// Fetch `names` again now and, with `subtree` (a directory's name prefix, `/prod/db/`),
    /// list that directory again and fetch every known value below it too. Returns when every
    /// answer has landed: the first failure of a named value (a subtree's values that are gone
    /// are simply gone), or a transient failure past the reader's patience.
    pub fn refresh_now(&self, names: &[String], subtree: Option<&str>) -> Result<()> {
        let inner = &self.inner;
        let mut first_error = None;
        if let Some(prefix) = subtree {
            match self.relist(prefix) {
                Ok(()) | Err(Error::AccessDenied(_)) => {}
                Err(err) => first_error = Some(err),
            }
        }
        let below: Vec<String> = match subtree {
            Some(prefix) => lock(&inner.values)
                .iter()
                .filter(|(name, slot)| slot.value.is_some() && under_prefix(prefix, name))
                .map(|(name, _)| name.clone())
                .collect(),
            None => Vec::new(),
        };
        Counters::add(&inner.counters.refresh_requests, (names.len() + below.len()) as u64);
        let waits = self.claim(names.iter().chain(&below));
        for (name, wait) in waits {
            let outcome = match wait {
                Claimed::Failed(err) => Err(err),
                Claimed::Flight(flight) => flight.wait(deadline::bound(inner.patience)).map(drop),
            };
            let named = names.contains(&name);
            match outcome {
                Err(Error::NotFound) if !named => {}
                Err(err) if first_error.is_none() => first_error = Some(err),
                _ => {}
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Give each of `names` a flight (joining one already in flight; a name backing off answers
    /// its failure), start the new ones in batches, and return what to wait for.
    fn claim<'a>(&self, names: impl Iterator<Item = &'a String>) -> Vec<(String, Claimed)> {
        let inner = &self.inner;
        let now = inner.runtime.clock.now();
        let mut claimed = Vec::new();
        let mut batch = Vec::new();
        {
            let mut values = lock(&inner.values);
            for name in names {
                let slot = values.entry(name.clone()).or_insert_with(|| Slot::new(now));
                slot.last_read = now;
                let wait = match (&slot.flight, slot.in_backoff(now), &slot.error) {
                    (Some(flight), _, _) => Claimed::Flight(flight.clone()),
                    // A name backing off after failures answers its failure; one remembered as
                    // missing is asked again (it may have been created: that is why one asks).
                    (None, true, Some(err)) if *err != Error::NotFound => Claimed::Failed(err.clone()),
                    _ => {
                        let flight = Arc::new(Flight::default());
                        slot.flight = Some(flight.clone());
                        batch.push(name.clone());
                        Claimed::Flight(flight)
                    }
                };
                claimed.push((name.clone(), wait));
            }
        }
        for chunk in batch.chunks(inner.provider.batch_limit().max(1)) {
            let (job, chunk) = (inner.clone(), chunk.to_vec());
            inner.runtime.spawner.spawn_now(Box::new(move || job.run_batch(&chunk)));
        }
        claimed
    }

    /// List the names starting with `prefix` again now (sharing a listing already running),
    /// waiting at most the reader's patience.
    fn relist(&self, prefix: &str) -> Result<()> {
        let inner = &self.inner;
        let now = inner.runtime.clock.now();
        let (flight, start) = {
            let mut listings = lock(&inner.listings);
            let slot = listings.entry(prefix.to_string()).or_insert_with(|| Slot::new(now));
            slot.last_read = now;
            match &slot.flight {
                Some(flight) => (flight.clone(), false),
                None => {
                    let flight = Arc::new(Flight::default());
                    slot.flight = Some(flight.clone());
                    (flight, true)
                }
            }
        };
        if start {
            let (job, prefix) = (inner.clone(), prefix.to_string());
            inner.runtime.spawner.spawn_now(Box::new(move || job.run_listing(&prefix)));
        }
        flight.wait(deadline::bound(inner.patience)).map(drop)
    }
}

/// What a refresh of one name waits for.
enum Claimed {
    /// The fetch that answers it.
    Flight(Arc<Flight<super::CachedValue>>),
    /// Its remembered failure (the name is backing off).
    Failed(Error),
}
