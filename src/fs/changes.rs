//! Operations that change which names exist: create, mkdir, unlink, rmdir and rename.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::json_view::RAW_VALUE_FILE;
use super::pending::{is_temp_name, PendingNode};
use super::resolve::Part;
use super::write::{self, Target, WriteBuffer};
use super::{lock, Attr, OpenFile, SecretFs};
use crate::error::{Error, Result};
use crate::inodes::{Ino, NodePath};
use crate::namespace::is_valid_file_name;
use crate::provider::names::check_new_name;
use crate::provider::SecretBytes;

impl SecretFs {
    /// Create file `name` in directory `parent` and open it. The file lives in memory until it
    /// is closed holding content: then it becomes a parameter, a secret or a JSON key. A
    /// scratch file stays in memory until it is renamed onto a real name: one made the way
    /// `mkstemp` makes them (`scratch`: opened read-write and exclusive, as `sed -i`, `perl -i`
    /// and temp-file libraries do), or one with a temp-looking name ([`is_temp_name`]).
    pub fn create(&self, parent: Ino, name: &str, scratch: bool) -> Result<(Attr, u64)> {
        let path = self.new_path(parent, name)?;
        let service = path.service.ok_or(Error::NotPermitted)?;
        let target = self.new_file_target(&path, scratch)?;
        let made = SystemTime::now();
        let buffer = Arc::new(Mutex::new(WriteBuffer::new(service, target, path.clone(), Vec::new(), false)));
        self.pending.insert(path.clone(), PendingNode::File(buffer.clone(), made))?;
        let ino = self.inodes.lookup(path);
        let fh = self.files.insert(OpenFile {
            ino,
            bytes: SecretBytes::new(Vec::new()),
            writer: Some(buffer),
            append: false,
            refresh: None,
            pages_kept: false,
        });
        Ok((self.file_attr(ino, 0, made), fh))
    }

    /// Make directory `name` in `parent`; it lives in memory until something is stored inside.
    /// Not inside a JSON object.
    pub fn mkdir(&self, parent: Ino, name: &str) -> Result<Attr> {
        let path = self.new_path(parent, name)?;
        let service = path.service.ok_or(Error::NotPermitted)?;
        if self.json_parent(&path)?.is_some() {
            return Err(Error::NotPermitted);
        }
        check_new_name(service, &self.full_name(&path)?)?;
        let made = SystemTime::now();
        self.pending.insert(path.clone(), PendingNode::Dir(made))?;
        Ok(self.dir_attr(self.inodes.lookup(path), made))
    }

    /// Remove file `name` from `parent`. A memory-only file just goes. With `allow_delete`, a
    /// value file deletes the parameter or secret (`.value` deletes the value it shows) and a
    /// JSON key file removes the key; otherwise `NotPermitted`.
    pub fn unlink(&self, parent: Ino, name: &str) -> Result<()> {
        self.writable()?;
        let path = self.child_path(parent, name)?;
        match self.pending.get(&path) {
            Some(PendingNode::File(..)) => {
                self.pending.remove(&path);
                return Ok(());
            }
            Some(PendingNode::Dir(_)) => return Err(Error::IsADirectory),
            None => {}
        }
        let resolved = self.resolve(&path)?;
        if resolved.is_dir() {
            return Err(Error::IsADirectory);
        }
        if !self.config.allow_delete {
            return Err(Error::NotPermitted);
        }
        let service = path.service.ok_or(Error::NotPermitted)?;
        match resolved.write_target()? {
            (name, Part::Whole) => self.delete_value(service, &name)?,
            (name, Part::Member(keys) | Part::NewMember(keys) | Part::NestedObject(keys)) => {
                self.edit_value(service, &name, move |current| write::without_member(current, &keys))?
            }
        }
        self.keep_emptied_directories(&path);
        Ok(())
    }

    /// Remove directory `name` from `parent`: only a memory-only directory with nothing inside.
    pub fn rmdir(&self, parent: Ino, name: &str) -> Result<()> {
        self.writable()?;
        let path = self.child_path(parent, name)?;
        match self.pending.get(&path) {
            Some(PendingNode::Dir(_)) => {
                if !self.pending.children(&path).is_empty() || self.resolve(&path).is_ok() {
                    return Err(Error::NotEmpty);
                }
                self.pending.remove(&path);
                Ok(())
            }
            Some(PendingNode::File(..)) => Err(Error::NotADirectory),
            None if self.resolve(&path)?.is_dir() => Err(Error::NotEmpty),
            None => Err(Error::NotADirectory),
        }
    }

    /// Rename a memory-only file onto `new_name` in `new_parent`: onto an existing file it is an
    /// atomic update of that file's value, onto a new name a create, onto another memory-only
    /// name a move in memory. Stored names and directories are not renamed in place
    /// (`CrossDevice`: `mv` then copies and deletes). Returns the inode that now names
    /// `new_name`, whose attributes the kernel must ask again.
    pub fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        no_replace: bool,
    ) -> Result<Option<Ino>> {
        self.writable()?;
        let from = self.child_path(parent, name)?;
        let source = match self.pending.get(&from) {
            Some(PendingNode::File(buffer, _)) => buffer,
            Some(PendingNode::Dir(_)) => return Err(Error::CrossDevice),
            None => {
                self.resolve(&from)?;
                return Err(Error::CrossDevice);
            }
        };
        let to = self.path(new_parent)?.child(new_name).ok_or(Error::NotPermitted)?;
        if from.service != to.service {
            return Err(Error::CrossDevice);
        }
        if from == to {
            return Ok(None);
        }
        let target = self.rename_target(&to, no_replace)?;
        let mut source = lock(&source);
        if let Some(err) = &source.failed {
            return Err(err.clone());
        }
        let mut moved = WriteBuffer::new(source.service, target, to.clone(), source.data.clone(), true);
        self.commit(&mut moved)?;
        let stored = matches!(moved.target, Target::Stored { .. });
        *source = moved;
        drop(source);
        match stored {
            true => drop(self.pending.remove(&from)),
            false => self.pending.rename(&from, to.clone())?,
        }
        self.inodes.rename(&from, to.clone());
        Ok(self.inodes.find(&to))
    }

    /// Where content renamed onto `to` goes.
    fn rename_target(&self, to: &NodePath, no_replace: bool) -> Result<Target> {
        let exists = || if no_replace { Err(Error::AlreadyExists) } else { Ok(()) };
        match self.pending.get(to) {
            Some(PendingNode::Dir(_)) => Err(Error::IsADirectory),
            Some(PendingNode::File(existing, _)) => exists().map(|()| lock(&existing).target.clone()),
            None => match self.resolve(to) {
                Ok(resolved) if resolved.is_dir() => Err(Error::IsADirectory),
                Ok(resolved) => {
                    exists()?;
                    let (name, part) = resolved.write_target()?;
                    Ok(Target::Stored { name, part })
                }
                Err(Error::NotFound) => self.new_file_target(to, false),
                Err(err) => Err(err),
            },
        }
    }

    /// The path of a new node `name` in `parent`, which must not exist yet.
    fn new_path(&self, parent: Ino, name: &str) -> Result<NodePath> {
        self.writable()?;
        let parent_path = self.path(parent)?;
        if parent_path.service.is_none() {
            return Err(Error::NotPermitted);
        }
        if !is_valid_file_name(name) {
            return Err(Error::InvalidInput(format!("{name:?} cannot be a name")));
        }
        let path = parent_path.child(name).ok_or(Error::NotPermitted)?;
        if self.pending.get(&path).is_some() {
            return Err(Error::AlreadyExists);
        }
        match self.resolve(&path) {
            Ok(_) => Err(Error::AlreadyExists),
            Err(Error::NotFound) => Ok(path),
            Err(err) => Err(err),
        }
    }

    /// Where a new file at `path` is stored: nowhere (a `scratch` open or a temp name), as a new
    /// key of the JSON object its directory shows, or as a new parameter or secret (its name
    /// checked now, so a name the service would refuse fails before any call).
    fn new_file_target(&self, path: &NodePath, scratch: bool) -> Result<Target> {
        let service = path.service.ok_or(Error::NotPermitted)?;
        let name = path.parts.last().ok_or(Error::NotPermitted)?;
        let json = self.json_parent(path)?;
        if name == RAW_VALUE_FILE && json.is_none() {
            // A directory without a value gets one: `/a/b` beside `/a/b/c` (both services allow
            // it), so nothing writable is ever a silent memory-only file.
            if path.parts.len() < 2 {
                return Err(Error::InvalidInput(format!("{}/ itself cannot hold a value", service.dir_name())));
            }
            let full = self.full_name(&path.parent())?;
            check_new_name(service, &full)?;
            return Ok(Target::NewName(full));
        }
        if scratch || is_temp_name(name) {
            return Ok(Target::Memory);
        }
        if name == RAW_VALUE_FILE {
            return Err(Error::InvalidInput(format!("{RAW_VALUE_FILE} is reserved for a value's raw bytes")));
        }
        match json {
            Some((value_name, mut keys)) => {
                keys.push(name.clone());
                Ok(Target::Stored { name: value_name, part: Part::NewMember(keys) })
            }
            None => {
                let full = self.full_name(path)?;
                check_new_name(service, &full)?;
                Ok(Target::NewName(full))
            }
        }
    }

    /// The JSON object (value name, keys) shown by the directory holding `path`, if it shows
    /// one; `NotADirectory` if the parent is a file.
    fn json_parent(&self, path: &NodePath) -> Result<Option<(String, Vec<String>)>> {
        let parent = path.parent();
        match self.pending.get(&parent) {
            Some(PendingNode::Dir(_)) => Ok(None),
            Some(PendingNode::File(..)) => Err(Error::NotADirectory),
            None => {
                let resolved = self.resolve(&parent)?;
                if !resolved.is_dir() {
                    return Err(Error::NotADirectory);
                }
                Ok(resolved.json_directory(self.config.json_keys))
            }
        }
    }

    /// The service name a tree path stands for (the prefix, then the parts joined by `/`).
    fn full_name(&self, path: &NodePath) -> Result<String> {
        let service = path.service.ok_or(Error::NotPermitted)?;
        let cache = self.cache(service).ok_or(Error::NotFound)?;
        Ok(format!("{}{}", cache.prefix(), path.parts.join("/")))
    }

    /// After a delete, directories above `path` that no longer hold anything stay as
    /// memory-only directories, so `rm -r` can remove them and `ls` does not jump.
    fn keep_emptied_directories(&self, path: &NodePath) {
        let mut dir = path.parent();
        while !dir.parts.is_empty() && matches!(self.resolve(&dir), Err(Error::NotFound)) {
            let _ = self.pending.insert(dir.clone(), PendingNode::Dir(SystemTime::now()));
            dir = dir.parent();
        }
    }
}
