//! The FUSE-free filesystem core: lookup, getattr, readdir, open, read, write and release on
//! paths; name changes live in `changes`, commits in `commit`.

mod changes;
mod commit;
pub mod control;
pub mod handles;
pub mod json_view;
pub mod ownership;
pub mod pending;
mod pins;
pub mod resolve;
mod views;
pub mod write;
pub mod xattrs;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use crate::cache::ServiceCache;
use crate::error::{Error, Result};
use crate::inodes::{Ino, InodeTable, NodePath};
use crate::namespace::{Namespace, NsNode};
use crate::provider::{SecretBytes, Service, ValueKind};
use crate::request_stats::RequestStats;
use control::{ControlNode, RefreshRequest, Requester};
use handles::HandleTable;
use json_view::{listed_keys, RAW_VALUE_FILE};
use pending::{PendingNode, PendingTable};
use pins::Pins;
use resolve::{resolve_in_service, value_is_dir, Resolved};
use write::{Target, WriteBuffer};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Default mode of files: owner read.
pub const DEFAULT_FILE_MODE: u16 = 0o400;
/// Default mode of directories: owner read and search.
pub const DEFAULT_DIR_MODE: u16 = 0o500;

/// How nodes are presented; fixed for the life of a mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsConfig {
    /// Owner of every node.
    pub uid: u32,
    /// Group of every node.
    pub gid: u32,
    /// Permission bits of files.
    pub file_mode: u16,
    /// Permission bits of directories.
    pub dir_mode: u16,
    /// Whether JSON object values are shown as directories.
    pub json_keys: bool,
    /// Whether every write is refused.
    pub read_only: bool,
    /// Whether unlink may delete parameters, secrets and JSON keys.
    pub allow_delete: bool,
    /// The type of parameters created through the mount.
    pub new_parameter_kind: ValueKind,
    /// Per-path owner, group and modes (first match wins); the fields above are the default.
    pub rules: Vec<ownership::OwnerRule>,
    /// Rendered views (`[[view]]` in the config file), checked.
    pub views: Vec<crate::views::ViewSpec>,
}

impl FsConfig {
    /// The defaults (modes 0400/0500, JSON keys on, writable, no deletes, new parameters
    /// SecureString) for nodes owned by `uid`:`gid`.
    pub fn for_owner(uid: u32, gid: u32) -> Self {
        FsConfig {
            uid,
            gid,
            file_mode: DEFAULT_FILE_MODE,
            dir_mode: DEFAULT_DIR_MODE,
            json_keys: true,
            read_only: false,
            allow_delete: false,
            new_parameter_kind: ValueKind::SecureString,
            rules: Vec::new(),
            views: Vec::new(),
        }
    }
}

/// File or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// The attributes of a node, in plain terms (the FUSE adapter converts them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File or directory.
    pub kind: NodeKind,
    /// Length in bytes of what `read` returns (0 for directories).
    pub size: u64,
    /// Last modification, from the service where it says.
    pub mtime: SystemTime,
    /// Permission bits.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Made when read (a control file's text): the kernel must not keep the entry or the
    /// attributes.
    pub volatile: bool,
    /// A file inode pinned to one value (see [`SecretFs::open`]): its attributes never change,
    /// so the kernel may keep them long.
    pub fixed: bool,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode of the entry.
    pub ino: Ino,
    /// File or directory.
    pub kind: NodeKind,
    /// Exact name.
    pub name: String,
}

#[derive(Clone)]
struct OpenFile {
    ino: Ino,
    bytes: SecretBytes,
    writer: Option<Arc<Mutex<WriteBuffer>>>,
    /// Opened with O_APPEND: every write goes to the end of the buffer, wherever the kernel
    /// (which computes the offset from a size it may have cached before an outside change)
    /// says it goes.
    append: bool,
    /// The paths written to the control directory's refresh file through this handle.
    refresh: Option<Arc<Mutex<RefreshRequest>>>,
    /// A reader of a pinned inode whose pages the kernel keeps (counted in [`Pins`]).
    pages_kept: bool,
}

impl OpenFile {
    /// The size `read` on this handle sees.
    fn size(&self) -> u64 {
        match &self.writer {
            Some(writer) => lock(writer).data.len() as u64,
            None => self.bytes.len() as u64,
        }
    }
}

/// What the kernel must forget after a change (see [`SecretFs::invalidation_for`]): the
/// cached attributes and pages of `inodes`, the directory entries `entries` (parent, name),
/// whose node may now be of another kind (a value that became or stopped being a JSON object),
/// and the entries `replaced` (parent, old child, name) whose node was replaced by a new inode:
/// those are told as deleted, so inotify watchers of the file or its directory see an event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invalidation {
    /// Inodes whose attributes and pages are stale.
    pub inodes: Vec<Ino>,
    /// Entries to look up again.
    pub entries: Vec<(Ino, String)>,
    /// Entries whose node got a new inode: (parent, old child, name).
    pub replaced: Vec<(Ino, Ino, String)>,
}

/// A file handle just opened, and what the kernel may cache of what it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The handle.
    pub fh: u64,
    /// The handle reads its inode's pinned bytes: the kernel may keep and reuse the inode's
    /// pages. Otherwise every read must come to the handle.
    pub keep_pages: bool,
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenMode {
    /// Opened for writing (write-only or read-write).
    pub write: bool,
    /// Opened with O_TRUNC: the new content starts empty.
    pub truncate: bool,
    /// Opened with O_APPEND: writes go to the end of the content.
    pub append: bool,
    /// Who opens it.
    pub by: Requester,
}

/// A stored directory as listed when it was asked for: what its entries are made from.
struct StoredDir {
    resolved: Resolved,
    /// The service's name tree after the directory's listing, for a directory of names.
    listed: Option<(Arc<Namespace>, Service)>,
}

/// What a directory lists.
enum DirListing {
    /// Entries made already (control, view and pending directories).
    Made(Vec<DirEntry>),
    /// A stored directory, whose entries are made when they are read.
    Stored(StoredDir),
}

/// An open directory: its entries, or its listing as of the open, made into entries at the
/// first read.
enum OpenDir {
    Made(Arc<[DirEntry]>),
    Stored { ino: Ino, path: Arc<NodePath>, stored: StoredDir, entries: OnceLock<Arc<[DirEntry]>> },
}

/// The filesystem: paths over the per-service caches.
pub struct SecretFs {
    config: FsConfig,
    services: Vec<(Service, ServiceCache)>,
    inodes: Arc<InodeTable>,
    files: HandleTable<OpenFile>,
    dirs: HandleTable<Arc<OpenDir>>,
    pending: PendingTable,
    /// The pinned file inodes (see [`pins`]): a lookup hands one out showing the value's bytes
    /// then, and a value that moves on gets a new inode, so the kernel may keep a pinned inode's
    /// pages and attributes, and a read-only mount needs no open.
    pins: Pins,
    started: SystemTime,
    requests: Arc<RequestStats>,
    views: crate::views::Views,
    /// The last status or metrics text rendered, and when (see [`control::TEXT_REUSE`]).
    control_text: Mutex<Option<(ControlNode, std::time::Instant, SecretBytes)>>,
}

impl SecretFs {
    /// A filesystem over one cache per service. What the kernel must forget after a change the
    /// caches announce is [`SecretFs::invalidation_for`] that change.
    pub fn new(config: FsConfig, services: Vec<(Service, ServiceCache)>) -> Self {
        SecretFs {
            pins: Pins::default(),
            views: crate::views::Views::new(config.views.clone()),
            config,
            services,
            inodes: Arc::new(InodeTable::default()),
            files: HandleTable::default(),
            dirs: HandleTable::default(),
            pending: PendingTable::default(),
            started: SystemTime::now(),
            requests: Arc::default(),
            control_text: Mutex::default(),
        }
    }

    /// The kernel's requests, counted and timed by the FUSE adapter, shown by the status and
    /// metrics files.
    pub fn request_stats(&self) -> Arc<RequestStats> {
        self.requests.clone()
    }

    /// The mount paths of files written to but not stored (never closed, or their last commit
    /// failed and nothing was written since): what is lost if the daemon stops now.
    pub fn unsaved_writes(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .files
            .all()
            .into_iter()
            .filter_map(|open| {
                let writer = open.writer?;
                let buffer = lock(&writer);
                let unsaved = buffer.dirty && buffer.target != write::Target::Memory;
                unsaved.then(|| buffer.path.mount_path())
            })
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// The mount path of `ino` (and of its child `name`), for log lines: names only.
    pub fn describe(&self, ino: Ino, name: Option<&str>) -> String {
        let Some(path) = self.inodes.path(ino) else { return format!("inode {}", ino.0) };
        match name {
            Some(name) => path.child(name).map_or_else(|| name.to_string(), |child| child.mount_path()),
            None => path.mount_path(),
        }
    }

    /// The presentation settings.
    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// The cache of `service`, if that service is mounted.
    pub fn cache(&self, service: Service) -> Option<&ServiceCache> {
        self.services.iter().find(|(s, _)| *s == service).map(|(_, c)| c)
    }

    /// Attributes of child `name` of directory `parent`; its inode is held for the kernel until
    /// [`SecretFs::forget`].
    pub fn lookup(&self, parent: Ino, name: &str) -> Result<Attr> {
        let path = self.child_path(parent, name)?;
        if path.service.is_some_and(|s| self.cache(s).is_none()) {
            return Err(Error::NotFound);
        }
        if let Some(node) = self.pending.get(&path) {
            return Ok(self.pending_attr(self.inodes.lookup(path), &node));
        }
        if let Some(node) = ControlNode::at(&path) {
            return Ok(self.control_lookup(path, node));
        }
        if let Some(node) = self.views.at(&path) {
            return self.view_lookup(path, node);
        }
        let resolved = self.resolve(&path)?;
        if resolved.is_dir() {
            return self.attr(self.inodes.lookup(path), &resolved);
        }
        let bytes = resolved.bytes()?;
        let has_open_files = |ino| self.files.find(|open| open.ino == ino).is_some();
        match self.pins.hand_out(&self.inodes, path, bytes, || self.mtime(&resolved), has_open_files) {
            (ino, Some((bytes, mtime))) => Ok(self.pinned_attr(ino, bytes.len() as u64, mtime)),
            (ino, None) => self.attr(ino, &resolved),
        }
    }

    /// Read up to `size` bytes at `offset` of the file inode `ino` of a read-only mount, with no
    /// open handle (the kernel opens nothing there), passing them to `reply`.
    pub fn read_inode<R>(&self, ino: Ino, offset: u64, size: u32, reply: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let (bytes, _) = self.pins.get(ino).ok_or(Error::BadHandle)?;
        Ok(reply(&bytes.as_slice()[window(bytes.len(), offset, size)]))
    }

    /// Whether the kernel needs to open nothing (a read-only mount): every file inode is
    /// pinned, and reads are answered from the inode's bytes.
    pub fn opens_nothing(&self) -> bool {
        self.config.read_only
    }

    /// The kernel forgot `count` lookups of `ino`.
    pub fn forget(&self, ino: Ino, count: u64) {
        if self.inodes.forget(ino, count) {
            self.pins.forget(ino);
        }
    }

    /// One line of counts for operators (SIGUSR1 and the status file): inodes the kernel
    /// holds, open handles, the allocator's bytes in use, and per service the values and
    /// listings cached. Names and values never appear in it.
    pub fn status_line(&self) -> String {
        let mut line = self.process_line();
        for (service, cache) in &self.services {
            let stats = cache.stats();
            line.push_str(&format!("; {}: {} values, {} listings", service.dir_name(), stats.values, stats.listings));
        }
        line
    }

    /// The process part of [`SecretFs::status_line`]: inodes, open handles, heap and resident
    /// memory.
    fn process_line(&self) -> String {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let heap = unsafe { libc::mallinfo2() };
        // SAFETY: sysconf only reads a constant of the system.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let resident = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or_else(|| "unknown".to_string(), |pages| format!("{} KiB", pages * page / 1024));
        format!(
            "inodes {}, open files {}, open directories {}, heap allocated {} KiB (the kernel request buffers included, mostly untouched), resident {resident}",
            self.inodes.len(),
            self.files.len(),
            self.dirs.len(),
            (heap.uordblks + heap.hblkhd) / 1024,
        )
    }

    /// Attributes of `ino`; with an open handle, the size is that of the handle's snapshot. The
    /// kernel sends no handle for `fstat`, so an inode retired by a change answers from a file
    /// still open on it: what that file reads, not the new value.
    pub fn getattr(&self, ino: Ino, fh: Option<u64>) -> Result<Attr> {
        let path = self.path(ino)?;
        if let Some((bytes, mtime)) = self.pins.get(ino) {
            return Ok(self.pinned_attr(ino, bytes.len() as u64, mtime));
        }
        if let Some(node) = ControlNode::at(&path) {
            let size = match fh.and_then(|fh| self.files.get(fh)) {
                Some(open) => open.size(),
                None => self.control_bytes(node).len() as u64,
            };
            return Ok(self.control_attr(ino, node, size));
        }
        if let Some(node) = self.views.at(&path) {
            return self.view_getattr(ino, &path, node, fh);
        }
        let fh = fh.or_else(|| self.inodes.is_retired(ino).then(|| self.files.find(|f| f.ino == ino)).flatten());
        if let Some(node) = self.pending.get(&path) {
            return Ok(self.pending_attr(ino, &node));
        }
        let resolved = self.resolve(&path);
        match (fh.and_then(|fh| self.files.get(fh)), resolved) {
            (Some(open), Ok(resolved)) => Ok(Attr { size: open.size(), ..self.attr(ino, &resolved)? }),
            (Some(open), Err(_)) => Ok(self.file_attr(ino, open.size(), self.started)),
            (None, resolved) => self.attr(ino, &resolved?),
        }
    }

    /// Open a file. The value read is fixed for this handle until release; a handle opened for
    /// writing buffers the new content, which [`SecretFs::flush`] commits. A pinned inode opened
    /// for reading gives its own bytes, and the kernel may keep its pages, unless it was
    /// retired (its path holds a value written through the mount, or a change the kernel has
    /// not heard of yet): then, like a live inode, it reads what the path holds now, every read
    /// coming to the handle. A pinned inode is written through only once no reader keeps its
    /// pages: it becomes live; otherwise the writer is answered [`Error::Replaced`] and finds a
    /// live inode when it looks the path up again.
    pub fn open(&self, ino: Ino, mode: OpenMode) -> Result<Opened> {
        let opened = |fh, keep_pages| Opened { fh, keep_pages };
        let path = self.path(ino)?;
        if let Some(node) = self.pending.get(&path) {
            let PendingNode::File(buffer, _) = node else { return Err(Error::IsADirectory) };
            if mode.write && mode.truncate {
                lock(&buffer).truncate(0)?;
            }
            let append = mode.append;
            let bytes = SecretBytes::new(Vec::new());
            let fh = self.files.insert(OpenFile {
                ino,
                bytes,
                writer: Some(buffer),
                append,
                refresh: None,
                pages_kept: false,
            });
            return Ok(opened(fh, false));
        }
        if let Some(node) = ControlNode::at(&path) {
            return Ok(opened(self.control_open(ino, node, mode)?, false));
        }
        if let Some(node) = self.views.at(&path) {
            return Ok(opened(self.view_open(ino, &path, node, mode)?, false));
        }
        if mode.write {
            self.writable()?;
            self.pins.writer_reached(&self.inodes, ino, &path)?;
        } else if self.opens_nothing() || !self.inodes.is_retired(ino) {
            if let Some(bytes) = self.pins.keep_pages(ino) {
                let kept = OpenFile { ino, bytes, writer: None, append: false, refresh: None, pages_kept: true };
                return Ok(opened(self.files.insert(kept), true));
            }
        }
        let resolved = self.resolve(&path)?;
        let bytes = resolved.bytes()?;
        let writer = match mode.write {
            false => None,
            true => Some(Arc::new(Mutex::new(self.write_buffer(&path, &resolved, mode.truncate)?))),
        };
        let fh =
            self.files.insert(OpenFile { ino, bytes, writer, append: mode.append, refresh: None, pages_kept: false });
        Ok(opened(fh, false))
    }

    /// The buffer of a file opened for writing. Without O_TRUNC it starts from the value stored
    /// now (its version checked, fetched again if it moved), not from a cached copy: an append
    /// or a write at an offset must not undo a change made out of band within the TTL.
    fn write_buffer(&self, path: &NodePath, resolved: &Resolved, truncate: bool) -> Result<WriteBuffer> {
        self.writable()?;
        let service = path.service.ok_or(Error::IsADirectory)?;
        let (name, part) = resolved.write_target()?;
        let data = match truncate {
            true => Vec::new(),
            false => {
                let cache = self.cache(service).ok_or(Error::NotFound)?;
                resolve::part_bytes(&*cache.stored_now(&name)?, &part)?.as_slice().to_vec()
            }
        };
        Ok(WriteBuffer::new(service, Target::Stored { name, part }, path.clone(), data, truncate))
    }

    /// Read up to `size` bytes at `offset` of an open handle, passing them to `reply`. A handle
    /// open for writing reads its own buffer.
    pub fn read<R>(&self, fh: u64, offset: u64, size: u32, reply: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let open = self.files.get(fh).ok_or(Error::BadHandle)?;
        match &open.writer {
            Some(writer) => {
                let buffer = lock(writer);
                Ok(reply(&buffer.data[window(buffer.data.len(), offset, size)]))
            }
            None => Ok(reply(&open.bytes.as_slice()[window(open.bytes.len(), offset, size)])),
        }
    }

    /// Write `data` at `offset` into an open handle's buffer (at its end for O_APPEND).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let open = self.files.get(fh).ok_or(Error::BadHandle)?;
        if let Some(request) = &open.refresh {
            self.refresh_written(request, data)?;
            return u32::try_from(data.len()).map_err(|_| Error::TooLarge);
        }
        let writer = open.writer.ok_or(Error::BadHandle)?;
        let mut buffer = lock(&writer);
        let offset = if open.append { buffer.data.len() as u64 } else { offset };
        buffer.write_at(offset, data)?;
        u32::try_from(data.len()).map_err(|_| Error::TooLarge)
    }

    /// Change a file's size. With a handle open for writing, the buffer changes and is committed
    /// on flush; without one, the new value is committed at once.
    pub fn truncate(&self, ino: Ino, fh: Option<u64>, size: u64) -> Result<()> {
        let path = self.path(ino)?;
        let writer = fh.and_then(|fh| self.files.get(fh)).and_then(|open| open.writer).or_else(|| {
            match self.pending.get(&path) {
                Some(PendingNode::File(buffer, _)) => Some(buffer),
                _ => None,
            }
        });
        if let Some(writer) = writer {
            return lock(&writer).truncate(size);
        }
        self.writable()?;
        self.pins.writer_reached(&self.inodes, ino, &path)?;
        let resolved = self.resolve(&path)?;
        let mut buffer = self.write_buffer(&path, &resolved, false)?;
        buffer.truncate(size)?;
        self.commit(&mut buffer)
    }

    /// Commit a handle's buffered content if it was written to and changed (`close()` and
    /// `fsync`). An error leaves the stored value untouched and is what `close()` reports. A handle only truncated by O_TRUNC
    /// is not committed here: a shell's `>` flushes its first descriptor before writing.
    pub fn flush(&self, fh: u64) -> Result<()> {
        self.commit_handle(fh, true)
    }

    /// Whether `fh` is open on the refresh file for writing: its writes wait for refreshes.
    pub fn is_refresh(&self, fh: u64) -> bool {
        self.files.get(fh).is_some_and(|open| open.refresh.is_some())
    }

    /// Whether `fh` is a file handle open for writing (its flush or release may commit).
    pub fn is_writer(&self, fh: u64) -> bool {
        self.files.get(fh).is_some_and(|open| open.writer.is_some() || open.refresh.is_some())
    }

    /// Close a file handle, committing anything still uncommitted (an O_TRUNC open with no
    /// writes stores the empty value here).
    pub fn release(&self, fh: u64) -> Result<()> {
        let result = self.commit_handle(fh, false);
        if let Some(open) = self.files.remove(fh) {
            if open.pages_kept {
                self.pins.reader_left(open.ino);
            }
        }
        result
    }

    fn commit_handle(&self, fh: u64, only_if_touched: bool) -> Result<()> {
        let open = self.files.get(fh).ok_or(Error::BadHandle)?;
        if let Some(request) = &open.refresh {
            return self.refresh_rest(request);
        }
        let Some(writer) = open.writer else { return Ok(()) };
        let mut buffer = lock(&writer);
        if only_if_touched && !buffer.touched {
            return Ok(());
        }
        self.commit(&mut buffer)
    }

    /// chmod, chown and the like: accepted (and ignored) on memory-only files, which `sed -i`
    /// and editors adjust before renaming them; refused on everything else.
    pub fn change_metadata(&self, ino: Ino) -> Result<()> {
        self.writable()?;
        match self.pending.get(&*self.path(ino)?) {
            Some(PendingNode::File(..)) => Ok(()),
            _ => Err(Error::NotPermitted),
        }
    }

    /// Open a directory: it is listed now (fetched if it must be), and its entries are made from
    /// that listing at the first read of the handle. The kernel keeps the entries it read, so
    /// most opens are never read and cost no entries.
    pub fn opendir(&self, ino: Ino) -> Result<u64> {
        let path = self.path(ino)?;
        let open = match self.dir_listing(ino, &path)? {
            DirListing::Made(entries) => OpenDir::Made(Arc::from(entries)),
            DirListing::Stored(stored) => OpenDir::Stored { ino, path, stored, entries: OnceLock::new() },
        };
        Ok(self.dirs.insert(Arc::new(open)))
    }

    /// The entries of an open directory, as listed when it was opened (`.` and `..` first).
    pub fn readdir(&self, fh: u64) -> Result<Arc<[DirEntry]>> {
        Ok(match &*self.dirs.get(fh).ok_or(Error::BadHandle)? {
            OpenDir::Made(entries) => entries.clone(),
            OpenDir::Stored { ino, path, stored, entries } => {
                entries.get_or_init(|| Arc::from(self.stored_entries(*ino, path, stored))).clone()
            }
        })
    }

    /// Close a directory handle.
    pub fn releasedir(&self, fh: u64) {
        self.dirs.remove(fh);
    }

    /// The entries of directory `ino`, with `.` and `..` first. Listing fetches no value (see
    /// `child_kind`).
    pub fn entries(&self, ino: Ino) -> Result<Vec<DirEntry>> {
        let path = self.path(ino)?;
        Ok(match self.dir_listing(ino, &path)? {
            DirListing::Made(entries) => entries,
            DirListing::Stored(stored) => self.stored_entries(ino, &path, &stored),
        })
    }

    /// What directory `ino` at `path` lists: the entries of a control, view or pending
    /// directory, or a stored directory as listed now.
    fn dir_listing(&self, ino: Ino, path: &NodePath) -> Result<DirListing> {
        if let Some(node) = ControlNode::at(path) {
            return self.control_entries(ino, path, node).map(DirListing::Made);
        }
        if let Some(node) = self.views.at(path) {
            return self.view_entries(ino, path, node).map(DirListing::Made);
        }
        match self.pending.get(path) {
            Some(PendingNode::Dir(_)) => Ok(DirListing::Made(self.with_pending(path, self.dot_entries(ino, path)))),
            Some(PendingNode::File(..)) => Err(Error::NotADirectory),
            None => self.stored_dir(path).map(DirListing::Stored),
        }
    }

    /// `entries` and the names being created in `path` that it does not hold.
    fn with_pending(&self, path: &NodePath, mut entries: Vec<DirEntry>) -> Vec<DirEntry> {
        for (name, kind) in self.pending.children(path) {
            if let Some(child) = path.child(&name).filter(|_| !entries.iter().any(|e| e.name == name)) {
                entries.push(DirEntry { ino: self.inodes.listed(&child), kind, name });
            }
        }
        entries
    }

    fn dot_entries(&self, ino: Ino, path: &NodePath) -> Vec<DirEntry> {
        let parent_ino = self.inodes.listed(&path.parent());
        vec![
            DirEntry { ino, kind: NodeKind::Dir, name: ".".into() },
            DirEntry { ino: parent_ino, kind: NodeKind::Dir, name: "..".into() },
        ]
    }

    /// Stored directory `path` as listed now (its listing fetched if it must be).
    fn stored_dir(&self, path: &NodePath) -> Result<StoredDir> {
        let resolved = self.resolve(path)?;
        if !resolved.is_dir() {
            return Err(Error::NotADirectory);
        }
        let listed = match &resolved {
            Resolved::Tree { tree_path, namespace, .. } => {
                let known = namespace.root().descend(tree_path);
                if !tree_path.is_empty() && known.is_none_or(NsNode::is_unconfirmed) {
                    // Nothing is known below this path and it cannot be listed (listing is
                    // denied, or it is the reference bridge): it may be a directory of unread
                    // names, or nothing at all. It can be walked through, not opened.
                    return Err(Error::NotFound);
                }
                let service = path.service.ok_or(Error::NotFound)?;
                let cache = self.cache(service).ok_or(Error::NotFound)?;
                let namespace = cache.list_dir(&resolve::dir_prefix(cache.prefix(), tree_path))?;
                namespace.root().descend(tree_path).ok_or(Error::NotFound)?;
                Some((namespace, service))
            }
            Resolved::Json { .. } | Resolved::Selected { .. } => {
                resolved_object(&resolved).ok_or(Error::NotADirectory)?;
                None
            }
            Resolved::Raw { .. } => return Err(Error::NotADirectory),
            Resolved::Root => None,
        };
        Ok(StoredDir { resolved, listed })
    }

    /// The entries of stored directory `ino` at `path`, from its listing `stored`, with the
    /// names being created in it. Memory only.
    fn stored_entries(&self, ino: Ino, path: &NodePath, stored: &StoredDir) -> Vec<DirEntry> {
        let mut entries = self.dot_entries(ino, path);
        let mut push = |name: &str, kind: NodeKind| {
            if let Some(child) = path.child(name) {
                entries.push(DirEntry { ino: self.inodes.listed(&child), kind, name: name.to_string() });
            }
        };
        match (&stored.resolved, &stored.listed) {
            (Resolved::Root, _) => {
                for (service, _) in &self.services {
                    push(service.dir_name(), NodeKind::Dir);
                }
                push(crate::inodes::CONTROL_DIR, NodeKind::Dir);
                entries.extend(self.view_children(path));
            }
            (Resolved::Tree { tree_path, value, .. }, Some((namespace, service))) => {
                let (Some(node), Some(cache)) = (namespace.root().descend(tree_path), self.cache(*service)) else {
                    return entries;
                };
                for (name, child) in node.children.iter().filter(|(_, child)| !child.is_unconfirmed()) {
                    push(name, self.child_kind(cache, child));
                }
                if let Some(value) = value {
                    if self.config.json_keys {
                        for (key, member) in value.json_object().into_iter().flat_map(listed_keys) {
                            if !node.children.contains_key(key) {
                                push(key, kind_of_member(member));
                            }
                        }
                    }
                    push(RAW_VALUE_FILE, NodeKind::File);
                }
            }
            // A JSON object (`stored_dir` lists every directory of the name tree).
            (resolved, _) => {
                for (key, member) in resolved_object(resolved).into_iter().flat_map(listed_keys) {
                    push(key, kind_of_member(member));
                }
                push(RAW_VALUE_FILE, NodeKind::File);
            }
        }
        self.with_pending(path, entries)
    }

    /// The kind a listing shows for `child` without fetching its value: a directory when it has
    /// children or its value, already cached, is a JSON object; otherwise a file (a JSON value
    /// nobody has read yet shows as a file here; its lookup says what it is).
    fn child_kind(&self, cache: &ServiceCache, child: &NsNode) -> NodeKind {
        if !child.children.is_empty() {
            return NodeKind::Dir;
        }
        if !self.config.json_keys {
            return NodeKind::File;
        }
        match child.value.as_ref().and_then(|listed| cache.cached(&listed.name)) {
            Some(value) if value_is_dir(child, &value, true) => NodeKind::Dir,
            _ => NodeKind::File,
        }
    }

    fn path(&self, ino: Ino) -> Result<Arc<NodePath>> {
        self.inodes.path(ino).ok_or(Error::NotFound)
    }

    /// The path of child `name` of directory `parent` (at the mount root, only `ps` and `sm`).
    fn child_path(&self, parent: Ino, name: &str) -> Result<NodePath> {
        self.path(parent)?.child(name).ok_or(Error::NotFound)
    }

    /// `ReadOnly` on a `--read-only` mount: the one check every change makes first.
    fn writable(&self) -> Result<()> {
        match self.config.read_only {
            true => Err(Error::ReadOnly),
            false => Ok(()),
        }
    }

    fn resolve(&self, path: &NodePath) -> Result<Resolved> {
        match path.service {
            None if path.parts.is_empty() => Ok(Resolved::Root),
            // A control file or a view exists, but holds no stored value to change or remove.
            None if ControlNode::at(path).is_some() || self.views.at(path).is_some() => Err(Error::NotPermitted),
            None => Err(Error::NotFound),
            Some(service) => {
                let cache = self.cache(service).ok_or(Error::NotFound)?;
                resolve_in_service(cache, &path.parts, self.config.json_keys)
            }
        }
    }

    /// When the node `resolved` names last changed: the service's date where it says, else the
    /// mount time.
    fn mtime(&self, resolved: &Resolved) -> SystemTime {
        resolved
            .value()
            .and_then(|v| v.fetched.last_modified)
            .or_else(|| match resolved {
                Resolved::Tree { namespace, tree_path, .. } => {
                    namespace.root().descend(tree_path).and_then(|n| n.value.as_ref()?.last_modified)
                }
                _ => None,
            })
            .unwrap_or(self.started)
    }

    fn attr(&self, ino: Ino, resolved: &Resolved) -> Result<Attr> {
        let mtime = self.mtime(resolved);
        if resolved.is_dir() {
            return Ok(self.dir_attr(ino, mtime));
        }
        Ok(self.file_attr(ino, resolved.bytes()?.len() as u64, mtime))
    }

    fn pending_attr(&self, ino: Ino, node: &PendingNode) -> Attr {
        match node {
            PendingNode::Dir(made) => self.dir_attr(ino, *made),
            PendingNode::File(buffer, made) => self.file_attr(ino, lock(buffer).data.len() as u64, *made),
        }
    }

    fn dir_attr(&self, ino: Ino, mtime: SystemTime) -> Attr {
        self.owned_attr(ino, NodeKind::Dir, 0, mtime)
    }

    fn file_attr(&self, ino: Ino, size: u64, mtime: SystemTime) -> Attr {
        self.owned_attr(ino, NodeKind::File, size, mtime)
    }

    fn pinned_attr(&self, ino: Ino, size: u64, mtime: SystemTime) -> Attr {
        Attr { fixed: true, ..self.file_attr(ino, size, mtime) }
    }

    fn owned_attr(&self, ino: Ino, kind: NodeKind, size: u64, mtime: SystemTime) -> Attr {
        let (perm, uid, gid) = match self.config.rules.is_empty() {
            true => self.ownership_at("", kind),
            false => self.ownership_at(&self.describe(ino, None), kind),
        };
        Attr { ino, kind, size, mtime, perm, uid, gid, volatile: false, fixed: false }
    }

    /// The permission bits, owner and group of a node of `kind` at `mount_path`: the first
    /// owner rule matching the path, else the mount's defaults.
    fn ownership_at(&self, mount_path: &str, kind: NodeKind) -> (u16, u32, u32) {
        let rule = ownership::rule_for(&self.config.rules, mount_path);
        let perm = match kind {
            NodeKind::File => rule.and_then(|r| r.file_mode).unwrap_or(self.config.file_mode),
            NodeKind::Dir => rule.and_then(|r| r.dir_mode).unwrap_or(self.config.dir_mode),
        };
        (perm, rule.and_then(|r| r.uid).unwrap_or(self.config.uid), rule.and_then(|r| r.gid).unwrap_or(self.config.gid))
    }
}

/// The range of a `len`-byte content that a read of `size` bytes at `offset` returns.
fn window(len: usize, offset: u64, size: u32) -> std::ops::Range<usize> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
    start..start.saturating_add(size as usize).min(len)
}

fn kind_of_member(member: &serde_json::Value) -> NodeKind {
    if member.is_object() {
        NodeKind::Dir
    } else {
        NodeKind::File
    }
}

fn resolved_object(resolved: &Resolved) -> Option<&serde_json::Map<String, serde_json::Value>> {
    match resolved {
        Resolved::Json { value, keys, .. } => json_view::member(value.json_object()?, keys)?.as_object(),
        Resolved::Selected { value, is_dir: true, .. } => value.json_object(),
        _ => None,
    }
}
