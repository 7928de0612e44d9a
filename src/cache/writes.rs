//! The write protocol, owned by the cache: under the name's own lock, the value stored now
//! (version check, fetched again if it moved), the edit, the update call, the landing in the
//! cache, and one [`Change`](super::changes::Change) on the stream. Writers of other names and
//! every reader go on meanwhile; no cache table lock is held across a provider call.

use std::sync::Arc;

use super::changes::{ChangeKind, Origin};
use super::memory_only;
use super::{lock, CachedValue, ServiceCache};
use crate::error::{Error, Result};
use crate::provider::{selector, Fetched, Listed, SecretBytes, ValueKind};

impl ServiceCache {
    /// Replace the value of `name` with `edit(current)`, where `current` is the value stored now,
    /// not a cached copy. One writer of `name` at a time, so two writers of different keys of
    /// one JSON value never lose each other's key. A new value equal to the stored one makes no
    /// update call. Returns whether the value was updated.
    pub fn edit(&self, name: &str, edit: impl FnOnce(&Fetched) -> Result<Vec<u8>>) -> Result<bool> {
        read_only_if_selected(name)?;
        memory_only::may_wait()?;
        let service = self.service();
        let _writer = self.inner.writers.acquire(name);
        let current = self.stored_now(name)?;
        let new = edit(&current.fetched).map_err(|err| match err {
            Error::InvalidInput(reason) => {
                tracing::warn!("{} {name}: write refused: {reason}", service.dir_name());
                Error::InvalidInput(format!("{name}: {reason}"))
            }
            other => other,
        })?;
        if new.len() > service.max_value_len() {
            return Err(Error::TooLarge);
        }
        if current.fetched.kind.is_text() && std::str::from_utf8(&new).is_err() {
            return Err(Error::InvalidInput(format!("{name} holds text; the new value is not UTF-8")));
        }
        if new == current.fetched.bytes.as_slice() {
            return Ok(false);
        }
        let stored = self.inner.provider.update(name, &current.fetched, SecretBytes::new(new))?;
        self.inner.store(name, stored);
        tracing::info!("updated {} {name}", service.dir_name());
        self.inner.announce(ChangeKind::Updated, Origin::Mount, [name.to_string()]);
        Ok(true)
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
        let listed = Listed { name: name.to_string(), last_modified: stored.last_modified };
        self.inner.add_names(vec![listed]);
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
        lock(&self.inner.values).remove(name);
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
            Ok(versions) => versions.get(name).is_some_and(|v| cached.fetched.version.as_ref() == Some(v)),
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

/// A name with a version selector (`NAME:3`, `NAME:AWSPREVIOUS`) shows a past or staged
/// version: it is never written.
fn read_only_if_selected(name: &str) -> Result<()> {
    match selector::has_selector(name) {
        true => Err(Error::ReadOnly),
        false => Ok(()),
    }
}
