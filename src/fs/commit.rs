//! Commits: turning a write buffer into an update, a create or nothing, and the store-side edits
//! (update, create, delete) that every change of a stored value goes through.

use super::resolve::Part;
use super::write::{self, Target, WriteBuffer};
use super::{Invalidation, SecretFs};
use crate::cache::changes::{Change, Origin};
use crate::error::{Error, Result};
use crate::inodes::{InodeTable, NodePath};
use crate::provider::names::check_new_name;
use crate::provider::{Fetched, SecretBytes, Service, ValueKind};

impl SecretFs {
    /// Store a buffer's content where its target says, if it changed since the last commit
    /// (the cache announces the change). An error leaves the stored value
    /// untouched. A memory-only file, and a new file still empty, stay in memory.
    ///
    /// A failed attempt is reported once: the buffer is then clean, so a later flush or the
    /// release stores nothing unless the program writes again (what `close()` called failed
    /// must never be stored behind its back).
    pub(super) fn commit(&self, buffer: &mut WriteBuffer) -> Result<()> {
        if let Some(err) = &buffer.failed {
            // A new file whose content was refused (too large, say) is never created: it
            // disappears as a failed create does.
            if matches!(buffer.target, Target::NewName(_)) {
                self.abandon(buffer);
            }
            return Err(err.clone());
        }
        if !buffer.dirty {
            return Ok(());
        }
        let attempt = self.store_buffer(buffer);
        if attempt.is_err() {
            buffer.dirty = false;
        }
        attempt
    }

    fn store_buffer(&self, buffer: &mut WriteBuffer) -> Result<()> {
        match buffer.target.clone() {
            Target::Memory => return Ok(()),
            Target::NewName(_) if buffer.data.is_empty() => return Ok(()),
            Target::NewName(name) => {
                let created = match self.create_value(buffer.service, &name, &buffer.data) {
                    // Created out of band since the mount last looked (it was answered as
                    // missing): the file existed, so the new content replaces its value, as a
                    // write to an existing file does.
                    Err(Error::AlreadyExists) => self.replace_value(buffer.service, &name, &buffer.data),
                    other => other,
                };
                created.inspect_err(|_| self.abandon(buffer))?;
                buffer.target = Target::Stored { name, part: Part::Whole };
            }
            Target::Stored { name, part } => {
                // The edit owns a copy of the content (wiped when dropped): it may be applied by
                // another writer's thread, in a group commit.
                let (data, edit_part) = (zeroize::Zeroizing::new(buffer.data.clone()), part.clone());
                let edit = move |current: &[u8]| write::new_value(current, &edit_part, &data);
                let edited = self.edit_value(buffer.service, &name, edit);
                edited.inspect_err(|_| self.abandon(buffer))?;
                if let Part::NewMember(keys) = part {
                    buffer.target = Target::Stored { name, part: Part::Member(keys) };
                }
            }
        }
        self.pending.stored(&buffer.path);
        buffer.dirty = false;
        Ok(())
    }

    /// A new file whose first commit failed (or whose content was refused) disappears: as before
    /// the write, the name does not exist. (A stored file is not in the pending table, so this
    /// changes nothing for it.)
    fn abandon(&self, buffer: &WriteBuffer) {
        self.pending.remove(&buffer.path);
    }

    /// Replace the value of `name` with `edit(current bytes)`: the cache's write protocol (the
    /// value stored now, one writer per name, the update call, the change announced). The
    /// pinned inodes showing the name are retired.
    pub(super) fn edit_value(
        &self,
        service: Service,
        name: &str,
        edit: impl FnOnce(&[u8]) -> Result<Vec<u8>> + Send + 'static,
    ) -> Result<()> {
        let cache = self.cache(service).ok_or(Error::NotFound)?;
        cache.edit(name, Box::new(move |current: &Fetched| edit(current.bytes.as_slice())))?;
        // Before the reply: the next open of any path showing the name reads the new value.
        self.retire_pinned(service, cache.prefix(), name);
        Ok(())
    }

    /// Retire the pinned inodes showing `name` of `service` (shown below `prefix`), its JSON
    /// keys and `.value` included: opening one reads what the name holds now, even through an
    /// inode the kernel has not yet been told to drop.
    pub(super) fn retire_pinned(&self, service: Service, prefix: &str, name: &str) {
        if let Some(node) = NodePath::of_name(service, prefix, name) {
            self.pins.retire_under(&self.inodes, service, &node.parts);
        }
    }

    /// Replace the whole value of the existing `name` with `data`, and show the name (it was
    /// not known to exist).
    fn replace_value(&self, service: Service, name: &str, data: &[u8]) -> Result<()> {
        let data = zeroize::Zeroizing::new(data.to_vec());
        self.edit_value(service, name, move |_| Ok(data.to_vec()))?;
        let cache = self.cache(service).ok_or(Error::NotFound)?;
        cache.discover_exact(name, false).map(drop)
    }

    /// Create `name` holding `data`: a parameter of the configured type, or a string secret
    /// (binary when the bytes are not UTF-8).
    fn create_value(&self, service: Service, name: &str, data: &[u8]) -> Result<()> {
        check_new_name(service, name)?;
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
        cache.create(name, kind, SecretBytes::new(data.to_vec()))
    }

    /// Delete `name` from the service.
    pub(super) fn delete_value(&self, service: Service, name: &str) -> Result<()> {
        self.cache(service).ok_or(Error::NotFound)?.delete(name)
    }

    /// What the kernel must forget after `change`: see [`invalidation_of`]. Changes found in the
    /// service retire the inodes; writes through the mount do not.
    pub fn invalidation_for(&self, change: &Change) -> Invalidation {
        match self.cache(change.service) {
            Some(cache) => invalidation_of(
                &self.inodes,
                change.service,
                cache.prefix(),
                &change.name,
                change.origin == Origin::Service,
            ),
            None => Invalidation::default(),
        }
    }
}

/// What the kernel must forget once `name` (shown below `prefix`) changed: every inode showing
/// it or a part of it (its JSON members, its `.value`), and its own entry, which may have
/// changed kind. With `retire` (a change found in the service) those inodes are retired: the
/// path gets new ones, and files opened before keep answering `fstat` with what they hold. A
/// write through the mount does not retire: its invalidation may reach the kernel after the
/// reply, and a `stat` racing it must not be answered from an old handle.
fn invalidation_of(inodes: &InodeTable, service: Service, prefix: &str, name: &str, retire: bool) -> Invalidation {
    let Some(node) = NodePath::of_name(service, prefix, name) else { return Invalidation::default() };
    let Some(last) = node.parts.last().cloned() else { return Invalidation::default() };
    // A parent the kernel does not hold has no cached entries to drop; the nearest directory
    // it holds above may list a new or vanished directory, so its cached listing goes.
    let Some(parent) = inodes.find(&node.parent()) else {
        return Invalidation {
            inodes: nearest_held_directory(inodes, &node).into_iter().collect(),
            ..Invalidation::default()
        };
    };
    let replaced_child = inodes.find(&node).filter(|_| retire);
    let mut stale = match retire {
        true => inodes.retire_under(service, &node.parts),
        false => inodes.under(service, &node.parts),
    };
    // The directory's cached listing (a read-only mount keeps it) shows the name's kind.
    stale.push(parent);
    match replaced_child {
        Some(child) => Invalidation { inodes: stale, entries: Vec::new(), replaced: vec![(parent, child, last)] },
        None => Invalidation { inodes: stale, entries: vec![(parent, last)], replaced: Vec::new() },
    }
}

/// The inode of the nearest directory above `node` that the kernel holds.
fn nearest_held_directory(inodes: &InodeTable, node: &NodePath) -> Option<crate::inodes::Ino> {
    let mut dir = node.parent();
    loop {
        if let Some(ino) = inodes.find(&dir) {
            return Some(ino);
        }
        dir.service?;
        dir = dir.parent();
    }
}
