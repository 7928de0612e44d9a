//! The only module that touches fuser: each callback calls the core and turns its result
//! into a reply or an errno.
//!
//! The threading contract:
//! - fuser's threads read kernel requests. `read`, `write`, `readdir` of an open directory,
//!   `releasedir` and `forget` are answered on them at once, from memory (an open handle's
//!   snapshot or buffer, a pinned inode's bytes), and so are flush, fsync and release of
//!   handles that write nothing. A read-only mount opens nothing (OPEN and OPENDIR answered
//!   ENOSYS once): readdir is then tried from memory like lookup. `lookup`, `getattr`,
//!   `open`, `opendir`, `getxattr` and `listxattr` are tried on them with every provider wait
//!   refused
//!   (`cache::memory_only`): what memory can answer is answered there; what would wait on AWS
//!   (a fetch, a listing, a version check) is handed to the runtime's blocking pool and
//!   replied from there, as are commits, writes to the control directory's refresh file (they
//!   return once the refresh has landed) and every change (setattr, create, mkdir, unlink,
//!   rmdir, rename). Requests for known values never queue behind slow calls.
//! - A reader waits for a shared fetch or listing at most `--timeout` plus a margin
//!   (`CacheSettings::patience`); a lookup waits for a listing at most a second before it asks
//!   for the name directly.
//! - No cache table lock (values, listings, tree, inodes) is held across a provider call. A
//!   write holds its name's write lock (and its handle's buffer lock) across the update call;
//!   readers never take either, and writers of other names never wait on it.
//! - Only the notifier thread ([`notifier`]) calls the kernel's notifier. Request handlers and
//!   the caches put what the kernel must forget on its queue (the caches through their change
//!   stream) and never wait for it, so no request ever waits for an invalidation that waits for
//!   a directory lock the request holds.

pub mod notifier;

use std::ffi::OsStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::time::Duration;
use tokio::runtime::Handle;
use tracing::Span;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyWrite, Request, TimeOrNow,
};

use crate::cache::memory_only;
use crate::deadline;
use crate::error::Error;
use crate::fs::control::Requester;
use crate::fs::xattrs::XATTR_PREFIX;
use crate::fs::{Attr, Invalidation, NodeKind, OpenMode, SecretFs};
use crate::inodes::Ino;
use crate::request_stats::{RequestStats, Timing};
use notifier::Notices;

/// How long the kernel may keep entries and attributes: short, but never zero (zero TTLs
/// cause cascades of lookups).
pub const KERNEL_TTL: Duration = Duration::from_secs(1);
/// How long the kernel may keep the attributes of a pinned file inode: such an inode never
/// changes (a new value gets a new inode), so only its entry needs a short TTL.
pub const PINNED_ATTR_TTL: Duration = Duration::from_secs(60);

/// The `fuser::Filesystem` over the core, under the threading contract above.
pub struct FuseAdapter {
    shared: Arc<Shared>,
    pool: Option<Handle>,
    patience: Duration,
}

struct Shared {
    fs: Arc<SecretFs>,
    notices: Notices,
    busy: Arc<AtomicUsize>,
    requests: Arc<RequestStats>,
}

/// One request's debug span and its timing (recorded when the reply is sent and this dropped).
struct Traced {
    span: Span,
    _timing: Timing,
}

impl FuseAdapter {
    /// An adapter serving `fs`, queueing its corrections on `notices`. Requests that may wait
    /// run on `pool` (inline without one), and are answered within `patience` of their arrival
    /// (`--timeout` plus a margin), time spent queued included.
    pub fn new(fs: Arc<SecretFs>, notices: Notices, pool: Option<Handle>, patience: Duration) -> Self {
        let busy = Arc::new(AtomicUsize::new(0));
        let requests = fs.request_stats();
        FuseAdapter { shared: Arc::new(Shared { fs, notices, busy, requests }), pool, patience }
    }

    /// How many requests are being answered on the blocking pool right now (commits among
    /// them); a stopping daemon waits a little for them.
    pub fn busy(&self) -> Arc<AtomicUsize> {
        self.shared.busy.clone()
    }

    /// A debug span for one request (the operation, the path, the caller's uid and pid), and
    /// the request counted and timed.
    fn span(&self, req: &Request, op: &'static str, ino: INodeNo, name: Option<&OsStr>) -> Traced {
        let timing = self.shared.requests.start(op);
        let span = tracing::debug_span!("fuse", op, path = tracing::field::Empty, uid = req.uid(), pid = req.pid());
        if !span.is_disabled() {
            let path = self.shared.fs.describe(Ino(ino.0), name.map(|n| n.to_string_lossy()).as_deref());
            span.record("path", path.as_str());
        }
        Traced { span, _timing: timing }
    }

    /// Answer with `op` at once, on this FUSE thread, if it needs nothing but memory; if it
    /// would wait on a provider (a fetch, a listing, a write), run it again on the blocking pool
    /// and answer from there. `reply` gets the outcome either way.
    fn memory_first<T: 'static>(
        &self,
        traced: Traced,
        op: impl Fn(&Shared) -> crate::error::Result<T> + Send + 'static,
        reply: impl FnOnce(&Shared, crate::error::Result<T>) + Send + 'static,
    ) {
        match traced.span.in_scope(|| memory_only::from_memory(|| op(&self.shared))) {
            Err(Error::WouldBlock) => self.offload(traced, move |s| reply(s, op(s))),
            answered => traced.span.in_scope(|| reply(&self.shared, answered)),
        }
    }

    /// Remove entry `name` of `parent` with `remove` (unlink or rmdir), on the pool.
    fn remove(
        &self,
        req: &Request,
        op: &'static str,
        parent: INodeNo,
        name: &OsStr,
        reply: ReplyEmpty,
        remove: fn(&SecretFs, Ino, &str) -> crate::error::Result<()>,
    ) {
        let span = self.span(req, op, parent, Some(name));
        let name = utf8(name);
        self.offload(span, move |s| {
            match name.and_then(|name| remove(&s.fs, Ino(parent.0), &name).map_err(|e| errno(&e))) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    /// Run `job` on the blocking pool (or here, without one), inside `span`, under the request
    /// deadline (`patience` from now).
    fn offload(&self, traced: Traced, job: impl FnOnce(&Shared) + Send + 'static) {
        let shared = self.shared.clone();
        shared.busy.fetch_add(1, Ordering::SeqCst);
        let ends = std::time::Instant::now() + self.patience;
        let run = move || {
            traced.span.in_scope(|| deadline::within(ends, || job(&shared)));
            drop(traced);
            shared.busy.fetch_sub(1, Ordering::SeqCst);
        };
        match &self.pool {
            Some(pool) => drop(pool.spawn_blocking(run)),
            None => run(),
        }
    }
}

impl Shared {
    /// Have the notifier thread make the kernel forget the attributes of `ino`.
    fn forget_attributes(&self, ino: Ino) {
        self.notices.forget(Invalidation { inodes: vec![ino], ..Invalidation::default() });
    }

    /// Answer a flush, fsync or release. On failure the file's own cached attributes are
    /// dropped too: the kernel set its size to 0 on O_TRUNC, but the stored value is unchanged.
    fn reply_commit(&self, ino: INodeNo, result: crate::error::Result<()>, reply: ReplyEmpty) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => {
                tracing::warn!("write not stored: {e}");
                self.forget_attributes(Ino(ino.0));
                reply.error(errno(&e));
            }
        }
    }
}

/// Answer a getxattr or listxattr: the size asked for with `size` 0, the bytes if they fit.
fn reply_xattr(bytes: &[u8], size: u32, reply: fuser::ReplyXattr) {
    match size {
        0 => reply.size(u32::try_from(bytes.len()).unwrap_or(u32::MAX)),
        size if (size as usize) < bytes.len() => reply.error(Errno::ERANGE),
        _ => reply.data(bytes),
    }
}

/// Answer a write with the bytes taken or the failure.
fn reply_written(result: crate::error::Result<u32>, reply: ReplyWrite) {
    match result {
        Ok(written) => reply.written(written),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Answer a readdir from `offset` of `entries`, or with the failure to list them.
fn reply_entries(
    entries: &crate::error::Result<impl AsRef<[crate::fs::DirEntry]>>,
    offset: u64,
    mut reply: ReplyDirectory,
) {
    let entries = match entries {
        Ok(entries) => entries.as_ref(),
        Err(e) => return reply.error(errno(e)),
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    for (index, entry) in entries.iter().enumerate().skip(start) {
        if reply.add(INodeNo(entry.ino.0), index as u64 + 1, file_type(entry.kind), &entry.name) {
            break;
        }
    }
    reply.ok();
}

/// How long the kernel may keep `attr`: long for a pinned file inode (its content never
/// changes), none for a control file, [`KERNEL_TTL`] otherwise.
fn attr_ttl(attr: &Attr) -> Duration {
    match (attr.volatile, attr.fixed) {
        (true, _) => Duration::ZERO,
        (false, true) => PINNED_ATTR_TTL,
        (false, false) => KERNEL_TTL,
    }
}

/// How long the kernel may keep an entry: [`KERNEL_TTL`], none for a control file (each open
/// looks it up again, so a read-only mount hands out the inode of the current text).
fn entry_ttl(attr: &Attr) -> Duration {
    match attr.volatile {
        true => Duration::ZERO,
        false => KERNEL_TTL,
    }
}

fn errno(err: &Error) -> Errno {
    Errno::from_i32(err.errno())
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
    }
}

fn to_file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino.0),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.mtime,
        crtime: attr.mtime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: if attr.kind == NodeKind::Dir { 2 } else { 1 },
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn utf8(name: &OsStr) -> Result<String, Errno> {
    name.to_str().map(str::to_string).ok_or(Errno::ENOENT)
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Receive O_TRUNC with open instead of a separate truncate; let the kernel send lookups
        // in one directory in parallel (otherwise one slow lookup queues every other); let it
        // keep each inode's ACL (none: `ENODATA`) once asked, where without POSIX ACLs it asks
        // at every `ls -l` of every file. Setting an ACL fails with `ENOTSUP` like any xattr.
        let _ = config.add_capabilities(
            InitFlags::FUSE_ATOMIC_O_TRUNC | InitFlags::FUSE_PARALLEL_DIROPS | InitFlags::FUSE_POSIX_ACL,
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let span = self.span(req, "lookup", parent, Some(name));
        let Ok(name) = utf8(name) else { return reply.error(Errno::ENOENT) };
        self.memory_first(
            span,
            move |s| s.fs.lookup(Ino(parent.0), &name),
            |_, result| match result {
                Ok(attr) => reply.entry(&entry_ttl(&attr), &to_file_attr(&attr), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.shared.requests.count("forget");
        self.shared.fs.forget(Ino(ino.0), nlookup);
    }

    // BATCH_FORGET: fuser's default calls `forget` for each node.

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.memory_first(
            self.span(req, "getattr", ino, None),
            move |s| s.fs.getattr(Ino(ino.0), fh.map(|fh| fh.0)),
            |_, result| match result {
                Ok(attr) => reply.attr(&attr_ttl(&attr), &to_file_attr(&attr)),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let ino = Ino(ino.0);
        let fh = fh.map(|fh| fh.0);
        self.offload(self.span(req, "setattr", INodeNo(ino.0), None), move |s| {
            if mode.is_some() || uid.is_some() || gid.is_some() {
                if let Err(e) = s.fs.change_metadata(ino) {
                    return reply.error(errno(&e));
                }
            }
            if let Some(size) = size {
                if let Err(e) = s.fs.truncate(ino, fh, size) {
                    return reply.error(errno(&e));
                }
            }
            // Timestamps come from the service; touch succeeds and changes nothing.
            match s.fs.getattr(ino, fh) {
                Ok(attr) => reply.attr(&KERNEL_TTL, &to_file_attr(&attr)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.shared.fs.opens_nothing() {
            // A read-only mount: ENOSYS tells the kernel to open nothing from now on (no OPEN,
            // no RELEASE) and to keep each inode's pages; reads come with no handle and are
            // answered from the inode's own fixed bytes.
            let _counted = self.span(req, "open", ino, None);
            return reply.error(Errno::ENOSYS);
        }
        let mode = OpenMode {
            write: flags.acc_mode() != OpenAccMode::O_RDONLY,
            truncate: flags.0 & libc::O_TRUNC != 0,
            append: flags.0 & libc::O_APPEND != 0,
            by: Requester { uid: req.uid(), gid: req.gid() },
        };
        self.memory_first(
            self.span(req, "open", ino, None),
            move |s| s.fs.open(Ino(ino.0), mode),
            move |_, result| match result {
                // A handle that reads its pinned inode's bytes keeps the inode's pages: they
                // only ever hold those bytes. Any other handle reads with direct I/O, from its
                // own snapshot, so a changed value never mixes with kept pages or a kept size.
                // A handle that cannot write needs no FLUSH at close.
                Ok(opened) => {
                    let caching = match opened.keep_pages {
                        true => FopenFlags::FOPEN_KEEP_CACHE,
                        false => FopenFlags::FOPEN_DIRECT_IO,
                    };
                    let flush = match mode.write {
                        true => FopenFlags::empty(),
                        false => FopenFlags::FOPEN_NOFLUSH,
                    };
                    reply.opened(FileHandle(opened.fh), caching | flush)
                }
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let traced = self.span(req, "read", ino, None);
        let _entered = traced.span.enter();
        let mut reply = Some(reply);
        let answer = |bytes: &[u8]| {
            if let Some(reply) = reply.take() {
                reply.data(bytes);
            }
        };
        let result = match fh.0 {
            // No handle: a read-only mount opens nothing; the inode's fixed bytes answer.
            0 => self.shared.fs.read_inode(Ino(ino.0), offset, size, answer),
            fh => self.shared.fs.read(fh, offset, size, answer),
        };
        if let (Err(e), Some(reply)) = (result, reply) {
            reply.error(errno(&e));
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let traced = self.span(req, "write", ino, None);
        if self.shared.fs.is_refresh(fh.0) {
            // Paths written to the refresh file: the write returns once they are refreshed.
            let data = data.to_vec();
            return self.offload(traced, move |s| reply_written(s.fs.write(fh.0, offset, &data), reply));
        }
        let _entered = traced.span.enter();
        reply_written(self.shared.fs.write(fh.0, offset, data), reply);
    }

    fn flush(&self, req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: fuser::LockOwner, reply: ReplyEmpty) {
        let span = self.span(req, "flush", ino, None);
        match self.shared.fs.is_writer(fh.0) {
            true => self.offload(span, move |s| s.reply_commit(ino, s.fs.flush(fh.0), reply)),
            // Nothing is ever written on a read-only mount: the kernel may stop sending flushes.
            false if self.shared.fs.opens_nothing() => reply.error(Errno::ENOSYS),
            false => reply.ok(),
        }
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let span = self.span(req, "release", ino, None);
        match self.shared.fs.is_writer(fh.0) {
            true => self.offload(span, move |s| s.reply_commit(ino, s.fs.release(fh.0), reply)),
            false => span.span.in_scope(|| self.shared.reply_commit(ino, self.shared.fs.release(fh.0), reply)),
        }
    }

    fn fsync(&self, req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let span = self.span(req, "fsync", ino, None);
        match self.shared.fs.is_writer(fh.0) {
            true => self.offload(span, move |s| s.reply_commit(ino, s.fs.flush(fh.0), reply)),
            false => reply.ok(),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.shared.fs.opens_nothing() {
            // A read-only mount: ENOSYS tells the kernel to open no directory from now on and
            // to keep listings (dropped when a change is told for the directory); readdir then
            // comes with no handle.
            let _counted = self.span(req, "opendir", ino, None);
            return reply.error(Errno::ENOSYS);
        }
        self.memory_first(
            self.span(req, "opendir", ino, None),
            move |s| s.fs.opendir(Ino(ino.0)),
            |_, result| match result {
                // The kernel keeps the listing it read (dropped when the directory changes,
                // through the mount or as told by the notifier), so an open reads none.
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn readdir(&self, req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        let span = self.span(req, "readdir", ino, None);
        if fh.0 != 0 {
            let _entered = span.span.enter();
            return reply_entries(&self.shared.fs.readdir(fh.0), offset, reply);
        }
        // No handle: a read-only mount opens no directory; the listing is made for this read.
        self.memory_first(
            span,
            move |s| s.fs.entries(Ino(ino.0)),
            move |_, entries| reply_entries(&entries, offset, reply),
        );
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.shared.fs.releasedir(fh.0);
        reply.ok();
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Regular files come through `create`; devices, FIFOs and sockets have no place here.
        reply.error(errno(&Error::NotPermitted));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        let span = self.span(req, "mkdir", parent, Some(name));
        let name = utf8(name);
        self.offload(span, move |s| {
            match name.and_then(|name| s.fs.mkdir(Ino(parent.0), &name).map_err(|e| errno(&e))) {
                Ok(attr) => reply.entry(&KERNEL_TTL, &to_file_attr(&attr), Generation(0)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        // mkstemp's signature: read-write and exclusive. Such a file is scratch until renamed.
        let scratch = flags & libc::O_ACCMODE == libc::O_RDWR && flags & libc::O_EXCL != 0;
        let span = self.span(req, "create", parent, Some(name));
        let name = utf8(name);
        self.offload(span, move |s| {
            match name.and_then(|name| s.fs.create(Ino(parent.0), &name, scratch).map_err(|e| errno(&e))) {
                Ok((attr, fh)) => reply.created(
                    &KERNEL_TTL,
                    &to_file_attr(&attr),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::FOPEN_DIRECT_IO,
                ),
                Err(e) => reply.error(e),
            }
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(req, "unlink", parent, name, reply, SecretFs::unlink);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(req, "rmdir", parent, name, reply, SecretFs::rmdir);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(fuser::RenameFlags::RENAME_EXCHANGE | fuser::RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(fuser::RenameFlags::RENAME_NOREPLACE);
        let (Ok(name), Ok(newname)) = (utf8(name), utf8(newname)) else { return reply.error(Errno::ENOENT) };
        self.offload(self.span(req, "rename", parent, Some(OsStr::new(&name))), move |s| {
            match s.fs.rename(Ino(parent.0), &name, Ino(newparent.0), &newname, no_replace) {
                Ok(renamed) => {
                    renamed.into_iter().for_each(|ino| s.forget_attributes(ino));
                    reply.ok();
                }
                Err(e) => {
                    if e != Error::CrossDevice {
                        tracing::warn!("rename of {name} onto {newname} not stored: {e}");
                    }
                    reply.error(errno(&e));
                }
            }
        });
    }

    // Extended attributes: a value's metadata, read-only (see `fs::xattrs`).

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: fuser::ReplyXattr) {
        let traced = self.span(req, "getxattr", ino, None);
        let name = name.to_string_lossy().into_owned();
        if !name.starts_with(XATTR_PREFIX) {
            // Answered without a look. No ACL (the kernel keeps that answer); attributes outside
            // the `user.` namespace (security labels above all) are not supported: `ls -l`
            // stops asking a filesystem that says so, where `ENODATA` made it ask every file.
            let supported = name.starts_with("user.") || name.starts_with("system.posix_acl_");
            return reply.error(if supported { Errno::NO_XATTR } else { Errno::ENOTSUP });
        }
        self.memory_first(
            traced,
            move |s| s.fs.xattrs(Ino(ino.0)),
            move |_, result| match result.map(|all| all.into_iter().find(|(n, _)| *n == name)) {
                Ok(Some((_, value))) => reply_xattr(&value, size, reply),
                Ok(None) => reply.error(Errno::NO_XATTR),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        self.memory_first(
            self.span(req, "listxattr", ino, None),
            move |s| s.fs.xattrs(Ino(ino.0)),
            move |_, result| match result {
                Ok(all) => {
                    let names: Vec<u8> = all.iter().flat_map(|(name, _)| name.bytes().chain([0])).collect();
                    reply_xattr(&names, size, reply);
                }
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOTSUP);
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }
}
