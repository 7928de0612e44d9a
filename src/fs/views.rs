//! Rendered views in the mount: their directories and read-only files, rendered from the cache
//! at each lookup and open (the kernel keeps no entry or attributes of them; on a read-only
//! mount a changed text gets a new inode), owned and moded by the owner rules.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Attr, DirEntry, NodeKind, OpenFile, OpenMode, SecretFs};
use crate::cache::{CachedValue, ServiceCache};
use crate::error::{Error, Result};
use crate::inodes::{Ino, NodePath};
use crate::provider::{selector, under_prefix, SecretBytes, Service};
use crate::views::{self, ValueSource, ViewNode};

/// The values views read: the mount's own caches, names shown by the mount only.
struct MountValues {
    services: Vec<(Service, ServiceCache)>,
}

impl MountValues {
    fn cache(&self, service: Service) -> Result<&ServiceCache> {
        self.services.iter().find(|(s, _)| *s == service).map(|(_, cache)| cache).ok_or(Error::NotFound)
    }
}

impl ValueSource for MountValues {
    fn named(&self, service: Service, name: &str) -> Result<Arc<CachedValue>> {
        let cache = self.cache(service)?;
        let base = selector::split(name).map_or(name, |(base, _)| base);
        if !under_prefix(cache.prefix(), base) {
            return Err(Error::NotFound);
        }
        cache.value(name, [])
    }

    fn at_path(&self, path: &str) -> Result<Arc<CachedValue>> {
        let (dir, rest) = path.split_once('/').ok_or(Error::NotFound)?;
        let service = Service::ALL.into_iter().find(|s| s.dir_name() == dir).ok_or(Error::NotFound)?;
        let cache = self.cache(service)?;
        cache.value(&format!("{}{rest}", cache.prefix()), [])
    }
}

impl SecretFs {
    /// Attributes of the view node at `path`, its inode held for the kernel.
    pub(super) fn view_lookup(&self, path: NodePath, node: ViewNode) -> Result<Attr> {
        match node {
            ViewNode::Dir => Ok(self.view_attr(self.inodes.lookup(path.clone()), &path, NodeKind::Dir, 0)),
            ViewNode::File(index) => {
                let bytes = self.view_bytes(&path, index)?;
                let size = bytes.len() as u64;
                let ino = self.generated_ino(path.clone(), bytes);
                Ok(self.view_attr(ino, &path, NodeKind::File, size))
            }
        }
    }

    /// Attributes of the view node at `path` (inode `ino`); a file open through `fh` shows the
    /// size of what that handle reads.
    pub(super) fn view_getattr(&self, ino: Ino, path: &NodePath, node: ViewNode, fh: Option<u64>) -> Result<Attr> {
        let size = match (node, fh.and_then(|fh| self.files.get(fh))) {
            (ViewNode::Dir, _) => return Ok(self.view_attr(ino, path, NodeKind::Dir, 0)),
            (ViewNode::File(_), Some(open)) => open.size(),
            (ViewNode::File(index), None) => self.view_bytes(path, index)?.len() as u64,
        };
        Ok(self.view_attr(ino, path, NodeKind::File, size))
    }

    /// Open a view: read-only, showing what it renders now.
    pub(super) fn view_open(&self, ino: Ino, path: &NodePath, node: ViewNode, mode: OpenMode) -> Result<u64> {
        let ViewNode::File(index) = node else { return Err(Error::IsADirectory) };
        if mode.write {
            return Err(Error::ReadOnly);
        }
        let bytes = self.view_bytes(path, index)?;
        Ok(self.files.insert(OpenFile { ino, bytes, writer: None, append: false, refresh: None, pages_kept: false }))
    }

    /// The entries of the view directory at `path`.
    pub(super) fn view_entries(&self, ino: Ino, path: &NodePath, node: ViewNode) -> Result<Vec<DirEntry>> {
        if node != ViewNode::Dir {
            return Err(Error::NotADirectory);
        }
        let mut entries = self.dot_entries(ino, path);
        entries.extend(self.view_children(path));
        Ok(entries)
    }

    /// The views and view directories directly in the directory at `path`.
    pub(super) fn view_children(&self, path: &NodePath) -> Vec<DirEntry> {
        let children = self.views.children(&path.parts);
        children
            .into_iter()
            .filter_map(|(name, dir)| {
                let child = path.child(&name)?;
                let kind = if dir { NodeKind::Dir } else { NodeKind::File };
                Some(DirEntry { ino: self.inodes.listed(&child), kind, name })
            })
            .collect()
    }

    /// What view `index` (at `path`) renders now. A failure (a source missing or unreadable, a
    /// template error) is logged with the view's path and answered `EIO`; a read that must wait
    /// is retried where it may.
    fn view_bytes(&self, path: &NodePath, index: usize) -> Result<SecretBytes> {
        let spec = self.views.spec(index).ok_or(Error::NotFound)?;
        let values = Arc::new(MountValues { services: self.services.clone() });
        match views::render(spec, values) {
            Ok(bytes) => Ok(SecretBytes::new(bytes)),
            Err(Error::WouldBlock) => Err(Error::WouldBlock),
            Err(err) => {
                let reason = match err {
                    Error::InvalidInput(reason) => reason,
                    other => other.to_string(),
                };
                tracing::warn!("view {}: {reason}", path.mount_path());
                Err(Error::Service(format!("view {} cannot be rendered", path.mount_path())))
            }
        }
    }

    fn view_attr(&self, ino: Ino, path: &NodePath, kind: NodeKind, size: u64) -> Attr {
        let (perm, uid, gid) = self.ownership_at(&path.mount_path(), kind);
        Attr { ino, kind, size, mtime: SystemTime::now(), perm, uid, gid, volatile: true, fixed: false }
    }
}
