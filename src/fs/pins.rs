//! Pinned file inodes: each shows one fixed version of a value, so the kernel may keep its
//! pages and attributes; the readers keeping those pages; and the paths whose next inode is
//! left live for a writer.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::inodes::{Ino, InodeTable, NodePath};
use crate::provider::{SecretBytes, Service};

/// The bytes and mtime a pinned inode shows.
pub type Shown = (SecretBytes, SystemTime);

/// The pinned inodes of a filesystem. An inode that is not pinned is *live*: it shows what its
/// path holds now, and only live inodes are written through (the kernel changes an inode's
/// size and pages as it writes, which a reader whose pages it keeps must never see).
#[derive(Default)]
pub struct Pins {
    table: Mutex<PinTable>,
}

#[derive(Default)]
struct PinTable {
    /// What each pinned inode shows, from the lookup that handed it out until it is forgotten
    /// or a writer makes it live.
    shown: HashMap<Ino, Shown>,
    /// How many open handles read each pinned inode with the kernel keeping its pages.
    readers: HashMap<Ino, usize>,
    /// Paths whose writer was sent back to look them up (ESTALE): their inode is live, and
    /// kept, until a writer opens it.
    for_writers: HashSet<NodePath>,
}

impl Pins {
    fn lock(&self) -> MutexGuard<'_, PinTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `ino` shows, if it is pinned.
    pub fn get(&self, ino: Ino) -> Option<Shown> {
        self.lock().shown.get(&ino).cloned()
    }

    /// The inode a lookup hands out for the file at `path`, which holds `bytes` now, and what
    /// it shows if pinned (`None`: live). A pinned inode showing other bytes is retired and the
    /// path gets a new one; a live inode is kept while `has_open_files` or a writer is on its
    /// way to it, and otherwise replaced by a pinned one.
    pub fn hand_out(
        &self,
        inodes: &InodeTable,
        path: NodePath,
        bytes: SecretBytes,
        mtime: impl FnOnce() -> SystemTime,
        has_open_files: impl FnOnce(Ino) -> bool,
    ) -> (Ino, Option<Shown>) {
        let mut table = self.lock();
        let mut live = table.for_writers.contains(&path);
        if let Some(held) = inodes.find(&path) {
            let keep = match table.shown.get(&held) {
                Some((shown, _)) => *shown == bytes && !live,
                None => {
                    live = live || has_open_files(held);
                    live
                }
            };
            if !keep {
                inodes.retire(&path);
            }
        }
        let ino = inodes.lookup(path);
        if live {
            return (ino, None);
        }
        let shown = table.shown.entry(ino).or_insert_with(|| (bytes, mtime())).clone();
        (ino, Some(shown))
    }

    /// The bytes of pinned `ino` for a new handle whose pages the kernel keeps, counted until
    /// [`Pins::reader_left`]; `None` if `ino` is live.
    pub fn keep_pages(&self, ino: Ino) -> Option<SecretBytes> {
        let mut table = self.lock();
        let (bytes, _) = table.shown.get(&ino)?.clone();
        *table.readers.entry(ino).or_default() += 1;
        Some(bytes)
    }

    /// A handle counted by [`Pins::keep_pages`] was released.
    pub fn reader_left(&self, ino: Ino) {
        let mut table = self.lock();
        if let Some(count) = table.readers.get_mut(&ino) {
            *count -= 1;
            if *count == 0 {
                table.readers.remove(&ino);
            }
        }
    }

    /// A writer (an open for writing, a truncate) reached `ino` at `path`. A live inode takes
    /// it, and so does a pinned one that no reader keeps pages of, which becomes live (the
    /// same inode, so an editor comparing inode numbers sees its file). A pinned inode with
    /// such readers is retired and the writer answered [`Error::Replaced`]: the kernel looks
    /// the path up again and finds a live inode, left for it.
    pub fn writer_reached(&self, inodes: &InodeTable, ino: Ino, path: &NodePath) -> Result<()> {
        let mut table = self.lock();
        table.for_writers.remove(path);
        if table.readers.contains_key(&ino) {
            table.for_writers.insert(path.clone());
            inodes.retire(path);
            return Err(Error::Replaced);
        }
        table.shown.remove(&ino);
        Ok(())
    }

    /// Retire the pinned inodes at or below `parts` in `service`: their paths hold a value
    /// written through the mount, and opening them reads that value.
    pub fn retire_under(&self, inodes: &InodeTable, service: Service, parts: &[String]) {
        let table = self.lock();
        for ino in inodes.under(service, parts) {
            if table.shown.contains_key(&ino) {
                if let Some(path) = inodes.path(ino) {
                    inodes.retire(&path);
                }
            }
        }
    }

    /// The kernel forgot `ino`.
    pub fn forget(&self, ino: Ino) {
        let mut table = self.lock();
        table.shown.remove(&ino);
        table.readers.remove(&ino);
    }
}
