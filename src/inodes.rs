//! Stable inode numbers for paths in the mount: one number per path for the daemon's lifetime.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::provider::Service;

/// An inode number as the kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ino(pub u64);

impl Ino {
    /// The mount root.
    pub const ROOT: Ino = Ino(1);
}

/// Where a node sits: the mount root (no service), or a path of names inside one service's tree.
/// The path mixes listed name parts, JSON keys and the `.value` file; resolution tells them apart.
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

    /// The path of child `name` of this node.
    pub fn child(&self, name: &str) -> Option<NodePath> {
        match self.service {
            None => Service::ALL
                .into_iter()
                .find(|s| s.dir_name() == name)
                .map(|service| NodePath { service: Some(service), parts: Vec::new() }),
            Some(service) => {
                let mut parts = self.parts.clone();
                parts.push(name.to_string());
                Some(NodePath { service: Some(service), parts })
            }
        }
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
        match (self.service, self.parts.split_last()) {
            (Some(service), Some((_, rest))) => NodePath { service: Some(service), parts: rest.to_vec() },
            _ => NodePath::root(),
        }
    }
}

#[derive(Default)]
struct Table {
    by_path: HashMap<Arc<NodePath>, Ino>,
    paths: Vec<Arc<NodePath>>,
    retired: HashSet<Ino>,
}

/// The two-way map between inode numbers and paths.
pub struct InodeTable {
    table: RwLock<Table>,
}

impl Default for InodeTable {
    fn default() -> Self {
        let table = InodeTable { table: RwLock::new(Table::default()) };
        table.intern(NodePath::root());
        table
    }
}

impl InodeTable {
    /// The inode of `path`, assigning the next number the first time a path is seen.
    pub fn intern(&self, path: NodePath) -> Ino {
        if let Some(ino) = self.table.read().unwrap_or_else(|p| p.into_inner()).by_path.get(&path) {
            return *ino;
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        if let Some(ino) = table.by_path.get(&path) {
            return *ino;
        }
        let path = Arc::new(path);
        table.paths.push(path.clone());
        let ino = Ino(table.paths.len() as u64);
        table.by_path.insert(path, ino);
        ino
    }

    /// The current inode of `path`, if one was handed out (never assigns one).
    pub fn find(&self, path: &NodePath) -> Option<Ino> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).by_path.get(path).copied()
    }

    /// Every inode handed out at or below `parts` in `service` (retired ones excluded).
    pub fn under(&self, service: Service, parts: &[String]) -> Vec<Ino> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
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
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        let paths: Vec<Arc<NodePath>> = table
            .by_path
            .keys()
            .filter(|path| path.service == Some(service) && path.parts.starts_with(parts))
            .cloned()
            .collect();
        let mut retired = Vec::with_capacity(paths.len());
        for path in paths {
            if let Some(ino) = table.by_path.remove(&path) {
                table.retired.insert(ino);
                retired.push(ino);
            }
        }
        retired
    }

    /// Whether `ino` was retired by [`InodeTable::retire_under`].
    pub fn is_retired(&self, ino: Ino) -> bool {
        self.table.read().unwrap_or_else(|p| p.into_inner()).retired.contains(&ino)
    }

    /// A rename: the inode of `from` now names `to` (the kernel keeps using it for the new name).
    /// Inodes below `from` are not moved; only files are renamed in place.
    pub fn rename(&self, from: &NodePath, to: NodePath) {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        let Some(ino) = table.by_path.remove(from) else { return };
        let to = Arc::new(to);
        if let Some(slot) = usize::try_from(ino.0).ok().and_then(|i| i.checked_sub(1)) {
            table.paths[slot] = to.clone();
        }
        table.by_path.insert(to, ino);
    }

    /// The path of `ino`, if it was ever handed out.
    pub fn path(&self, ino: Ino) -> Option<Arc<NodePath>> {
        let index = usize::try_from(ino.0).ok()?.checked_sub(1)?;
        self.table.read().unwrap_or_else(|p| p.into_inner()).paths.get(index).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_path_same_inode_and_root_is_one() {
        let table = InodeTable::default();
        assert_eq!(table.path(Ino::ROOT).unwrap().as_ref(), &NodePath::root());
        let ps = NodePath::root().child("ps").unwrap();
        let a = table.intern(ps.child("a").unwrap());
        assert_eq!(table.intern(ps.child("a").unwrap()), a);
        assert_ne!(table.intern(ps.clone()), a);
        assert_eq!(table.path(a).unwrap().parent(), ps);
        assert!(NodePath::root().child("nope").is_none());
        assert!(table.path(Ino(999)).is_none());
    }

    #[test]
    fn retired_inodes_keep_their_path_and_the_path_gets_a_new_inode() {
        let table = InodeTable::default();
        let ps = NodePath::root().child("ps").unwrap();
        let dir = table.intern(ps.child("db").unwrap());
        let key = table.intern(ps.child("db").unwrap().child("password").unwrap());
        let other = table.intern(ps.child("other").unwrap());
        let retired = table.retire_under(Service::ParameterStore, &["db".to_string()]);
        assert_eq!(retired.len(), 2);
        assert!(table.is_retired(dir) && table.is_retired(key) && !table.is_retired(other));
        assert_eq!(table.path(key).unwrap().parts, ["db", "password"]);
        assert_ne!(table.intern(ps.child("db").unwrap().child("password").unwrap()), key);
    }

    #[test]
    fn a_renamed_inode_names_its_new_path() {
        let table = InodeTable::default();
        let ps = NodePath::root().child("ps").unwrap();
        let temp = table.intern(ps.child("sedAAAAAA").unwrap());
        let old_target = table.intern(ps.child("root").unwrap());
        table.rename(&ps.child("sedAAAAAA").unwrap(), ps.child("root").unwrap());
        assert_eq!(table.path(temp).unwrap().as_ref(), &ps.child("root").unwrap());
        assert_eq!(table.intern(ps.child("root").unwrap()), temp);
        assert_ne!(temp, old_target);
        assert_ne!(table.intern(ps.child("sedAAAAAA").unwrap()), temp, "the old name is free again");
    }
}
