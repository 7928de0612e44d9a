//! Commits: turning a write buffer into an update, a create or nothing, and the store-side edits
//! (update, create, delete) that every change of a stored value goes through.

use super::resolve::Part;
use super::write::{self, Target, WriteBuffer};
use super::{Invalidation, SecretFs};
use crate::error::{Error, Result};
use crate::inodes::{InodeTable, NodePath};
use crate::provider::names::check_new_name;
use crate::provider::{SecretBytes, Service, ValueKind};

impl SecretFs {
    /// Store a buffer's content where its target says, if it changed since the last commit.
    /// Returns what the kernel must forget. An error leaves the stored value
    /// untouched. A memory-only file, and a new file still empty, stay in memory.
    ///
    /// A failed attempt is reported once: the buffer is then clean, so a later flush or the
    /// release stores nothing unless the program writes again (what `close()` called failed
    /// must never be stored behind its back).
    pub(super) fn commit(&self, buffer: &mut WriteBuffer) -> Result<Invalidation> {
        if let Some(err) = &buffer.failed {
            return Err(err.clone());
        }
        if !buffer.dirty {
            return Ok(Invalidation::default());
        }
        let attempt = self.store_buffer(buffer);
        if attempt.is_err() {
            buffer.dirty = false;
        }
        attempt
    }

    fn store_buffer(&self, buffer: &mut WriteBuffer) -> Result<Invalidation> {
        let invalidation = match buffer.target.clone() {
            Target::Memory => return Ok(Invalidation::default()),
            Target::NewName(_) if buffer.data.is_empty() => return Ok(Invalidation::default()),
            Target::NewName(name) => {
                let invalidation =
                    self.create_value(buffer.service, &name, &buffer.data).inspect_err(|_| self.abandon(buffer))?;
                buffer.target = Target::Stored { name, part: Part::Whole };
                invalidation
            }
            Target::Stored { name, part } => {
                let data = &buffer.data;
                let edited = self.edit_value(buffer.service, &name, |current| write::new_value(current, &part, data));
                let invalidation = edited.inspect_err(|_| self.abandon(buffer))?;
                if let Part::NewMember(keys) = part {
                    buffer.target = Target::Stored { name, part: Part::Member(keys) };
                }
                invalidation
            }
        };
        self.pending.stored(&buffer.path);
        buffer.dirty = false;
        Ok(invalidation)
    }

    /// A new file whose first commit failed disappears: as before the write, the name does not
    /// exist. (A stored file is not in the pending table, so this changes nothing for it.)
    fn abandon(&self, buffer: &WriteBuffer) {
        self.pending.remove(&buffer.path);
    }

    /// Replace the value of `name` with `edit(current bytes)`, one writer per service at a time
    /// so a read-modify-write never loses a concurrent writer's key. The edit applies to the
    /// value stored now, not to a cached copy: its version is checked first (a metadata call)
    /// and the value fetched again if it moved. An unchanged value makes no update call.
    pub(super) fn edit_value(
        &self,
        service: Service,
        name: &str,
        edit: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
    ) -> Result<Invalidation> {
        let cache = self.cache(service).ok_or(Error::NotFound)?;
        let _one_writer = cache.write_lock();
        let current = cache.current_value(name)?;
        let new = edit(current.fetched.bytes.as_slice()).map_err(|err| match err {
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
            return Ok(Invalidation::default());
        }
        let stored = cache.provider().update(name, &current.fetched, SecretBytes::new(new))?;
        cache.store(name, stored);
        tracing::info!("updated {} {name}", service.dir_name());
        Ok(self.invalidation_of(service, name))
    }

    /// Create `name` holding `data`: a parameter of the configured type, or a string secret
    /// (binary when the bytes are not UTF-8).
    fn create_value(&self, service: Service, name: &str, data: &[u8]) -> Result<Invalidation> {
        check_new_name(service, name)?;
        if data.len() > service.max_value_len() {
            return Err(Error::TooLarge);
        }
        let is_text = std::str::from_utf8(data).is_ok();
        let kind = match service {
            Service::ParameterStore if !is_text => {
                return Err(Error::InvalidInput(format!("{name}: parameter values must be UTF-8 text")))
            }
            Service::ParameterStore => self.config.new_parameter_kind,
            Service::SecretsManager if is_text => ValueKind::SecretString,
            Service::SecretsManager => ValueKind::SecretBinary,
        };
        let cache = self.cache(service).ok_or(Error::NotFound)?;
        let _one_writer = cache.write_lock();
        let stored = cache.provider().create(name, kind, SecretBytes::new(data.to_vec()))?;
        cache.created(name, stored);
        tracing::info!("created {} {name}", service.dir_name());
        Ok(self.invalidation_of(service, name))
    }

    /// Delete `name` from the service.
    pub(super) fn delete_value(&self, service: Service, name: &str) -> Result<Invalidation> {
        let cache = self.cache(service).ok_or(Error::NotFound)?;
        let _one_writer = cache.write_lock();
        cache.provider().delete(name)?;
        cache.deleted(name);
        tracing::info!("deleted {} {name}", service.dir_name());
        Ok(self.invalidation_of(service, name))
    }

    fn invalidation_of(&self, service: Service, name: &str) -> Invalidation {
        match self.cache(service) {
            Some(cache) => invalidation_of(&self.inodes, service, cache.prefix(), name, false),
            None => Invalidation::default(),
        }
    }
}

/// What the kernel must forget once `name` (shown below `prefix`) changed: every inode showing
/// it or a part of it (its JSON members, its `.value`), and its own entry, which may have
/// changed kind. With `retire` (a change found by a refresh, outside any request) those inodes
/// are retired: the path gets new ones, and files opened before keep answering `fstat` with
/// what they hold. A write through the mount does not retire: its invalidation reaches the
/// kernel after the reply, and a `stat` racing it must not be answered from an old handle.
pub(super) fn invalidation_of(
    inodes: &InodeTable,
    service: Service,
    prefix: &str,
    name: &str,
    retire: bool,
) -> Invalidation {
    let parts: Vec<String> = crate::namespace::relative_name(prefix, name)
        .map(|rel| rel.split('/').map(str::to_string).collect())
        .unwrap_or_default();
    let node = NodePath { service: Some(service), parts };
    let entries = match node.parts.last() {
        Some(last) => vec![(inodes.intern(node.parent()), last.clone())],
        None => Vec::new(),
    };
    let stale = match retire {
        true => inodes.retire_under(service, &node.parts),
        false => inodes.under(service, &node.parts),
    };
    Invalidation { inodes: stale, entries }
}
