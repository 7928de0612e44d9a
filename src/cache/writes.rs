//! The write protocol, owned by the cache: under the name's own lock, the value stored now
//! (version check, fetched again if it moved), the edit, the update call, the landing in the
//! cache, and one [`Change`](super::changes::Change) on the stream. Writers of other names and
//! every reader go on meanwhile; no cache table lock is held across a provider call.

use std::sync::Arc;

use super::changes::{ChangeKind, Origin};
use super::group_commit::{self, Batch, Edit, Joined};
use super::memory_only;
use super::{lock, CachedValue, ServiceCache};
use crate::error::{Error, Result};
use crate::provider::{same_version, selector, Fetched, SecretBytes, Service, ValueKind};

impl ServiceCache {
    /// Replace the value of `name` with `edit(current)`, where `current` is the value stored now,
    /// not a cached copy. One update of `name` at a time, so two writers of different keys of
    /// one JSON value never lose each other's key; writers arriving during an update join the
    /// next one (group commit: their edits applied in order, one call, every writer told its
    /// outcome). A new value equal to the stored one makes no update call. Returns whether the
    /// value was updated.
    pub fn edit(&self, name: &str, edit: Edit) -> Result<bool> {
        read_only_if_selected(name)?;
        memory_only::may_wait()?;
        let (batch, receiver) = match self.inner.batches.join(name, edit) {
            Joined::Follower(receiver) => return group_commit::outcome(&receiver),
            Joined::Leader(batch, receiver) => (batch, receiver),
        };
        let writer = self.inner.writers.acquire(name);
        let edits = self.inner.batches.close(name, &batch);
        self.run_batch_of_edits(name, edits);
        drop(writer);
        group_commit::outcome(&receiver)
    }

    /// Apply `edits` in order to the value of `name` stored now and store the result with one
    /// update call; each writer gets the outcome: its own refusal (a bad edit is left out), or
    /// the update's.
    fn run_batch_of_edits(&self, name: &str, edits: Batch) {
        let service = self.service();
        let current = match self.stored_now(name) {
            Ok(current) => current,
            Err(err) => return edits.into_iter().for_each(|(_, writer)| drop(writer.send(Err(err.clone())))),
        };
        let mut value = current.fetched.clone();
        let mut applied = Vec::with_capacity(edits.len());
        for (edit, writer) in edits {
            match checked(service, name, &value, edit(&value)) {
                Ok(new) => {
                    value.bytes = SecretBytes::new(new);
                    applied.push(writer);
                }
                Err(err) => drop(writer.send(Err(err))),
            }
        }
        let outcome = match value.bytes.as_slice() == current.fetched.bytes.as_slice() {
            true => Ok(false),
            false => self.inner.provider.update(name, &current.fetched, value.bytes.clone()).map(|stored| {
                self.inner.store(name, stored);
                tracing::info!("updated {} {name} ({} write(s) in one update)", service.dir_name(), applied.len());
                self.inner.announce(ChangeKind::Updated, Origin::Mount, [name.to_string()]);
                true
            }),
        };
        for writer in applied {
            let _ = writer.send(outcome.clone());
        }
    }

    /// Create `name`, which must not exist, holding `bytes` stored as `kind`: the tree shows it
    /// at once and its value is cached.
    pub fn create(&self, name: &str, kind: ValueKind, bytes: SecretBytes) -> Result<()> {
        read_only_if_selected(name)?;
        memory_only::may_wait()?;
        if bytes.len() > self.service().max_value_len() {
            return Err(Error::TooLarge);
        }
        let _writer = self.inner.writers.acquire(name);
        let stored = self.inner.provider.create(name, kind, bytes)?;
        self.inner.add_name(name, &stored);
        self.inner.store(name, stored);
        tracing::info!("created {} {name}", self.service().dir_name());
        self.inner.announce(ChangeKind::Discovered, Origin::Mount, [name.to_string()]);
        Ok(())
    }

    /// Delete `name` in the service, then forget it in the tree and the value cache.
    pub fn delete(&self, name: &str) -> Result<()> {
        read_only_if_selected(name)?;
        memory_only::may_wait()?;
        let _writer = self.inner.writers.acquire(name);
        self.inner.provider.delete(name)?;
        self.inner.remove_names(&[name.to_string()]);
        self.inner.forget_value(&mut lock(&self.inner.values), name);
        tracing::info!("deleted {} {name}", self.service().dir_name());
        self.inner.announce(ChangeKind::Deleted, Origin::Mount, [name.to_string()]);
        Ok(())
    }

    /// The value of `name` as stored now: the cached value if its version is still the current
    /// one (one metadata call), else fetched again (also when the metadata call is refused). A
    /// value found moved is announced as a change made out of band.
    pub fn stored_now(&self, name: &str) -> Result<Arc<CachedValue>> {
        memory_only::may_wait()?;
        let cached = self.value(name, [])?;
        let names = [name.to_string()];
        let unchanged = match self.inner.provider.versions(&names) {
            Ok(versions) => versions.get(name).is_some_and(|v| same_version(cached.fetched.version.as_deref(), v)),
            Err(Error::AccessDenied(_)) => false,
            Err(err) => return Err(err),
        };
        if unchanged {
            return Ok(cached);
        }
        let mut answers = self.inner.provider.fetch(&names)?;
        let fetched = match answers.iter().position(|(n, _)| n == name) {
            Some(index) => answers.swap_remove(index).1?,
            None => return Err(Error::NotFound),
        };
        let moved = !cached.same_as(&fetched);
        self.inner.store(name, fetched);
        if moved {
            self.inner.announce(ChangeKind::Updated, Origin::Service, names);
        }
        self.value(name, [])
    }
}

/// `new` if the service would take it in place of `current` (size, text stays text); a refusal
/// is logged with the name, never the value.
fn checked(service: Service, name: &str, current: &Fetched, new: Result<Vec<u8>>) -> Result<Vec<u8>> {
    let new = new.map_err(|err| match err {
        Error::InvalidInput(reason) => {
            tracing::warn!("{} {name}: write refused: {reason}", service.dir_name());
            Error::InvalidInput(format!("{name}: {reason}"))
        }
        other => other,
    })?;
    if new.len() > service.max_value_len() {
        return Err(Error::TooLarge);
    }
    if current.kind.is_text() && std::str::from_utf8(&new).is_err() {
        return Err(Error::InvalidInput(format!("{name} holds text; the new value is not UTF-8")));
    }
    Ok(new)
}

/// A name with a version selector (`NAME:3`, `NAME:AWSPREVIOUS`) shows a past or staged
/// version: it is never written.
fn read_only_if_selected(name: &str) -> Result<()> {
    match selector::has_selector(name) {
        true => Err(Error::ReadOnly),
        false => Ok(()),
    }
}
