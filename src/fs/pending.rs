//! Nodes that exist only in the daemon's memory: directories made with `mkdir` until something
//! is stored inside them, new files until their first commit, and temp files (the scratch
//! files of `sed -i` and editors) until they are renamed onto a real name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::write::WriteBuffer;
use super::NodeKind;
use crate::error::{Error, Result};
use crate::inodes::NodePath;

/// A memory-only node.
#[derive(Clone)]
pub enum PendingNode {
    /// A directory with nothing stored inside yet.
    Dir(SystemTime),
    /// A file; every handle open on it shares this buffer.
    File(Arc<Mutex<WriteBuffer>>, SystemTime),
}

impl PendingNode {
    /// File or directory.
    pub fn kind(&self) -> NodeKind {
        match self {
            PendingNode::Dir(_) => NodeKind::Dir,
            PendingNode::File(..) => NodeKind::File,
        }
    }
}

/// Whether a new file named `name` is scratch that must never reach the service on its own:
/// hidden names (`.file.swp`, `.#file`), backups (`file~`), `*.swp`, `*.swx`, `*.tmp`, vim's
/// `4913` probe, and the names `sed -i` (`sedXXXXXX`) and Python's `tempfile` (`tmpXXXXXXXX`)
/// make. Such a file becomes a stored value only by being renamed onto a real name.
pub fn is_temp_name(name: &str) -> bool {
    let random_tail = |prefix: &str, len: usize| {
        name.strip_prefix(prefix)
            .is_some_and(|tail| tail.len() == len && tail.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    };
    name.starts_with('.')
        || name.ends_with('~')
        || [".swp", ".swx", ".tmp"].iter().any(|ext| name.ends_with(ext))
        || name == "4913"
        || random_tail("sed", 6)
        || random_tail("tmp", 8)
}

/// The memory-only nodes of a mount, by path.
#[derive(Default)]
pub struct PendingTable {
    nodes: Mutex<HashMap<NodePath, PendingNode>>,
}

impl PendingTable {
    fn nodes(&self) -> MutexGuard<'_, HashMap<NodePath, PendingNode>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node at `path`, if it is memory-only.
    pub fn get(&self, path: &NodePath) -> Option<PendingNode> {
        self.nodes().get(path).cloned()
    }

    /// Add a node; fails if one is already there.
    pub fn insert(&self, path: NodePath, node: PendingNode) -> Result<()> {
        let mut nodes = self.nodes();
        if nodes.contains_key(&path) {
            return Err(Error::AlreadyExists);
        }
        nodes.insert(path, node);
        Ok(())
    }

    /// Drop the node at `path`, returning it.
    pub fn remove(&self, path: &NodePath) -> Option<PendingNode> {
        self.nodes().remove(path)
    }

    /// A value was stored at `path`: it and the memory-only directories above it are real now.
    pub fn stored(&self, path: &NodePath) {
        let mut nodes = self.nodes();
        nodes.remove(path);
        let mut ancestor = path.parent();
        while !ancestor.parts.is_empty() {
            nodes.remove(&ancestor);
            ancestor = ancestor.parent();
        }
    }

    /// Move the node at `from` to `to`, replacing what was there.
    pub fn rename(&self, from: &NodePath, to: NodePath) -> Result<()> {
        let mut nodes = self.nodes();
        let node = nodes.remove(from).ok_or(Error::NotFound)?;
        nodes.insert(to, node);
        Ok(())
    }

    /// The memory-only children of directory `dir`: name and kind.
    pub fn children(&self, dir: &NodePath) -> Vec<(String, NodeKind)> {
        let nodes = self.nodes();
        let mut children: Vec<(String, NodeKind)> = nodes
            .iter()
            .filter(|(path, _)| path.service == dir.service && path.parts.len() == dir.parts.len() + 1)
            .filter(|(path, _)| path.parts.starts_with(&dir.parts))
            .filter_map(|(path, node)| Some((path.parts.last()?.clone(), node.kind())))
            .collect();
        children.sort();
        children
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        for name in [".db.swp", ".#root", "root~", "x.swp", "x.tmp", "4913", "sedAb12_z", "tmpa1b2c3d4"] {
            assert!(is_temp_name(name), "{name}");
        }
        for name in ["root", "password", "sed", "sedimentary", "tmp", "tmp-credentials", "49130", "tls-cert"] {
            assert!(!is_temp_name(name), "{name}");
        }
    }

    #[test]
    fn storing_a_value_makes_its_directories_real() {
        let table = PendingTable::default();
        let ps = NodePath::root().child("ps").unwrap();
        let a = ps.child("a").unwrap();
        let b = a.child("b").unwrap();
        table.insert(a.clone(), PendingNode::Dir(SystemTime::now())).unwrap();
        table.insert(b.clone(), PendingNode::Dir(SystemTime::now())).unwrap();
        assert!(table.insert(a.clone(), PendingNode::Dir(SystemTime::now())).is_err());
        assert_eq!(table.children(&a), [("b".to_string(), NodeKind::Dir)]);
        table.stored(&b.child("file").unwrap());
        assert!(table.get(&a).is_none() && table.get(&b).is_none());
    }
}
