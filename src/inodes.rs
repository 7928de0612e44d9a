//! Inode numbers for paths in the mount: one number per path while the kernel holds it, freed
//! when the kernel forgets it, a new one when the path's value is replaced.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::provider::Service;

/// An inode number as the kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ino(pub u64);

impl Ino {
    /// The mount root.
    pub const ROOT: Ino = Ino(1);
}

/// The control directory at the mount root (refresh, status, metrics). No secret can have this
/// path: secrets live under the service directories only.
pub const CONTROL_DIR: &str = ".secretfs";
/// The files of the control directory.
pub const CONTROL_FILES: [&str; 3] = ["refresh", "status", "metrics"];

/// Where a node sits: the mount root (no service), or a path of names inside one service's tree.
/// The path mixes listed name parts, JSON keys and the `.value` file; resolution tells them apart.
/// With no service, a non-empty path is in the control directory (`[".secretfs", "status"]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodePath {
    /// The service directory the node is in; `None` for the mount root.
    pub service: Option<Service>,
    /// Names below the service directory.
    pub parts: Vec<String>,
}

impl NodePath {
    /// The mount root.
    pub fn root() -> Self {
        NodePath { service: None, parts: Vec::new() }
    }

    /// The path showing the name `name` of `service`, whose directory shows the names below
    /// `prefix`; `None` if `name` is not shown there.
    pub fn of_name(service: Service, prefix: &str, name: &str) -> Option<NodePath> {
        let relative = crate::namespace::relative_name(prefix, name)?;
        Some(NodePath { service: Some(service), parts: relative.split('/').map(str::to_string).collect() })
    }

    /// Whether this is the control directory or a file in it.
    pub fn is_control(&self) -> bool {
        self.service.is_none() && self.parts.first().is_some_and(|first| first == CONTROL_DIR)
    }

    /// The path of child `name` of this node. Below the root, outside the service and control
    /// directories, any name makes a path (views may be there; the filesystem decides).
    pub fn child(&self, name: &str) -> Option<NodePath> {
        if self.service.is_none() && self.parts.is_empty() {
            if let Some(service) = Service::ALL.into_iter().find(|s| s.dir_name() == name) {
                return Some(NodePath { service: Some(service), parts: Vec::new() });
            }
        }
        if self.is_control() && (self.parts.len() > 1 || !CONTROL_FILES.contains(&name)) {
            return None;
        }
        let mut parts = self.parts.clone();
        parts.push(name.to_string());
        Some(NodePath { service: self.service, parts })
    }

    /// The path inside the mount (`ps/prod/db/root`; empty for the root), for log lines and
    /// owner rules.
    pub fn mount_path(&self) -> String {
        let mut parts: Vec<&str> = self.service.map(|s| s.dir_name()).into_iter().collect();
        parts.extend(self.parts.iter().map(String::as_str));
        parts.join("/")
    }

    /// The parent path (the root is its own parent).
    pub fn parent(&self) -> NodePath {
        match self.parts.split_last() {
            Some((_, rest)) if self.service.is_some() || !rest.is_empty() => {
                NodePath { service: self.service, parts: rest.to_vec() }
            }
            _ => NodePath::root(),
        }
    }
}

/// One inode the kernel may hold: the path it names and how many lookups the kernel has not
/// yet forgotten.
struct Entry {
    path: Arc<NodePath>,
    lookups: u64,
}

#[derive(Default)]
struct Table {
    /// The current inode of each path.
    by_path: HashMap<Arc<NodePath>, Ino>,
    /// Every inode the kernel may still use: current ones and retired ones (a path whose value
    /// changed got a new inode; files opened before keep the old one until the kernel forgets it).
    entries: HashMap<Ino, Entry>,
    /// The last inode number handed out (numbers are never reused).
    last: u64,
}

impl Table {
    /// The inode of `path`, handing out the next number the first time.
    fn intern(&mut self, path: NodePath) -> Ino {
        if let Some(ino) = self.by_path.get(&path) {
            return *ino;
        }
        self.last += 1;
        let ino = Ino(self.last);
        let path = Arc::new(path);
        self.entries.insert(ino, Entry { path: path.clone(), lookups: 0 });
        self.by_path.insert(path, ino);
        ino
    }
}

/// The two-way map between inode numbers and paths. An inode lives from the lookup that hands
/// it to the kernel until the kernel forgets it (FORGET), so the table holds what the kernel
/// holds, not every path ever seen.
pub struct InodeTable {
    table: RwLock<Table>,
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut table = Table::default();
        let root = table.intern(NodePath::root());
        debug_assert_eq!(root, Ino::ROOT);
        InodeTable { table: RwLock::new(table) }
    }
}

/// The top bit marks inode numbers shown in directory listings for paths the kernel has not
/// looked up: never handed out by a lookup, so they name nothing in the table.
const LISTED_ONLY: u64 = 1 << 63;

impl InodeTable {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The inode of `path` for a reply that hands it to the kernel (lookup, create, mkdir):
    /// assigned the first time, and counted until the kernel forgets it.
    pub fn lookup(&self, path: NodePath) -> Ino {
        let mut table = self.write();
        let ino = table.intern(path);
        if let Some(entry) = table.entries.get_mut(&ino) {
            entry.lookups += 1;
        }
        ino
    }

    /// The kernel forgot `count` lookups of `ino`; at none left, the inode is freed (the root
    /// never is). Returns whether it was freed.
    pub fn forget(&self, ino: Ino, count: u64) -> bool {
        if ino == Ino::ROOT {
            return false;
        }
        let mut table = self.write();
        let Some(entry) = table.entries.get_mut(&ino) else { return false };
        entry.lookups = entry.lookups.saturating_sub(count);
        if entry.lookups > 0 {
            return false;
        }
        if let Some(entry) = table.entries.remove(&ino) {
            if table.by_path.get(&entry.path) == Some(&ino) {
                table.by_path.remove(&entry.path);
            }
        }
        true
    }

    /// Retire the current inode of `path` alone (its content moved on): the next lookup gets a
    /// new one.
    pub fn retire(&self, path: &NodePath) {
        self.write().by_path.remove(path);
    }

    /// How many inodes the kernel may hold now (current and retired), for status reports.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether only the root is held.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }

    /// The inode number a directory listing shows for `path`: its inode if the kernel holds
    /// one, else a number derived from the path that names no inode (a listing hands the
    /// kernel nothing to forget, so it must not make the table grow).
    pub fn listed(&self, path: &NodePath) -> Ino {
        if let Some(ino) = self.find(path) {
            return ino;
        }
        Ino(LISTED_ONLY | (stable_hash(path) & (LISTED_ONLY - 1)) | 1)
    }

    /// The current inode of `path`, if the kernel holds one (never assigns one).
    pub fn find(&self, path: &NodePath) -> Option<Ino> {
        self.read().by_path.get(path).copied()
    }

    /// Every current inode at or below `parts` in `service` (retired ones excluded).
    pub fn under(&self, service: Service, parts: &[String]) -> Vec<Ino> {
        let table = self.read();
        table
            .by_path
            .iter()
            .filter(|(path, _)| path.service == Some(service) && path.parts.starts_with(parts))
            .map(|(_, ino)| *ino)
            .collect()
    }

    /// Retire every inode at or below `parts` in `service` (their value changed): the next
    /// lookup of those paths gets new inodes, while files opened before keep the old ones,
    /// whose attributes then describe what those open files hold (like a file replaced by a
    /// rename). Returns the retired inodes.
    pub fn retire_under(&self, service: Service, parts: &[String]) -> Vec<Ino> {
        let mut table = self.write();
        let paths: Vec<Arc<NodePath>> = table
            .by_path
            .keys()
            .filter(|path| path.service == Some(service) && path.parts.starts_with(parts))
            .cloned()
            .collect();
        paths.iter().filter_map(|path| table.by_path.remove(path)).collect()
    }

    /// Whether `ino` was retired by [`InodeTable::retire_under`] (or replaced by a rename).
    pub fn is_retired(&self, ino: Ino) -> bool {
        let table = self.read();
        table.entries.get(&ino).is_some_and(|entry| table.by_path.get(&entry.path) != Some(&ino))
    }

    /// A rename: the inode of `from` now names `to` (the kernel keeps using it for the new name).
    /// Inodes below `from` are not moved; only files are renamed in place.
    pub fn rename(&self, from: &NodePath, to: NodePath) {
        let mut table = self.write();
        let Some(ino) = table.by_path.remove(from) else { return };
        let to = Arc::new(to);
        if let Some(entry) = table.entries.get_mut(&ino) {
            entry.path = to.clone();
        }
        table.by_path.insert(to, ino);
    }

    /// The path of `ino`, if the kernel may hold it.
    pub fn path(&self, ino: Ino) -> Option<Arc<NodePath>> {
        self.read().entries.get(&ino).map(|entry| entry.path.clone())
    }
}

/// A hash of `path` that is the same in every run (listing inode numbers stay put).
fn stable_hash(path: &NodePath) -> u64 {
    // FNV-1a over the service and the parts, each part ended by a 0 byte.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let service = path.service.map_or(0u8, |s| s as u8 + 1);
    for byte in std::iter::once(service).chain(path.parts.iter().flat_map(|p| p.bytes().chain([0]))) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_path_same_inode_and_root_is_one() {
        let table = InodeTable::default();
        assert_eq!(table.path(Ino::ROOT).unwrap().as_ref(), &NodePath::root());
        let ps = NodePath::root().child("ps").unwrap();
        let a = table.lookup(ps.child("a").unwrap());
        assert_eq!(table.lookup(ps.child("a").unwrap()), a);
        assert_ne!(table.lookup(ps.clone()), a);
        assert_eq!(table.path(a).unwrap().parent(), ps);
        let view = NodePath::root().child("views").unwrap();
        assert_eq!((view.service, view.is_control()), (None, false), "outside services: views decide");
        let control = NodePath::root().child(CONTROL_DIR).unwrap();
        assert!(control.is_control() && control.child("status").is_some() && control.child("nope").is_none());
        assert!(table.path(Ino(999)).is_none());
    }

    #[test]
    fn retired_inodes_keep_their_path_and_the_path_gets_a_new_inode() {
        let table = InodeTable::default();
        let ps = NodePath::root().child("ps").unwrap();
        let dir = table.lookup(ps.child("db").unwrap());
        let key = table.lookup(ps.child("db").unwrap().child("password").unwrap());
        let other = table.lookup(ps.child("other").unwrap());
        let retired = table.retire_under(Service::ParameterStore, &["db".to_string()]);
        assert_eq!(retired.len(), 2);
        assert!(table.is_retired(dir) && table.is_retired(key) && !table.is_retired(other));
        assert_eq!(table.path(key).unwrap().parts, ["db", "password"]);
        assert_ne!(table.lookup(ps.child("db").unwrap().child("password").unwrap()), key);
    }

    #[test]
    fn an_inode_lives_until_the_kernel_forgets_every_lookup_of_it() {
        let table = InodeTable::default();
        let ps = NodePath::root().child("ps").unwrap();
        let a = table.lookup(ps.child("a").unwrap());
        assert_eq!(table.lookup(ps.child("a").unwrap()), a);
        table.forget(a, 1);
        assert_eq!(table.path(a).unwrap().parts, ["a"], "one lookup is still held");
        table.forget(a, 1);
        assert!(table.path(a).is_none() && table.find(&ps.child("a").unwrap()).is_none(), "freed");
        assert_ne!(table.lookup(ps.child("a").unwrap()), a, "numbers are never reused");
        table.forget(Ino::ROOT, 5);
        assert!(table.path(Ino::ROOT).is_some(), "the root is never forgotten");
        // A retired inode is freed by its own forget, and never takes its path's new inode along.
        let b = table.lookup(ps.child("b").unwrap());
        table.retire_under(Service::ParameterStore, &["b".to_string()]);
        let b2 = table.lookup(ps.child("b").unwrap());
        table.forget(b, 1);
        assert!(table.path(b).is_none());
        assert_eq!(table.find(&ps.child("b").unwrap()), Some(b2));
    }

    #[test]
    fn listings_show_numbers_without_growing_the_table() {
        let table = InodeTable::default();
        let ps = NodePath::root().child("ps").unwrap();
        let before = table.len();
        let listed = table.listed(&ps.child("x").unwrap());
        assert_eq!(listed, table.listed(&ps.child("x").unwrap()), "stable");
        assert_ne!(listed, table.listed(&ps.child("y").unwrap()));
        assert!(table.path(listed).is_none() && table.len() == before, "nothing to forget");
        let looked_up = table.lookup(ps.child("x").unwrap());
        assert_eq!(table.listed(&ps.child("x").unwrap()), looked_up, "a held inode is shown as it is");
    }

    #[test]
    fn a_renamed_inode_names_its_new_path() {
        let table = InodeTable::default();
        let ps = NodePath::root().child("ps").unwrap();
        let temp = table.lookup(ps.child("sedAAAAAA").unwrap());
        let old_target = table.lookup(ps.child("root").unwrap());
        table.rename(&ps.child("sedAAAAAA").unwrap(), ps.child("root").unwrap());
        assert_eq!(table.path(temp).unwrap().as_ref(), &ps.child("root").unwrap());
        assert_eq!(table.lookup(ps.child("root").unwrap()), temp);
        assert_ne!(temp, old_target);
        assert_ne!(table.lookup(ps.child("sedAAAAAA").unwrap()), temp, "the old name is free again");
    }
}
