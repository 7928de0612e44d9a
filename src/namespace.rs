//! The path tree of one service: the listed names, split on `/`, below the mount prefix.

use std::collections::{BTreeMap, BTreeSet};

use crate::provider::Listed;

/// One level of the tree. A node may hold a value (a name exists here), children, or both.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NsNode {
    /// Child nodes by exact name.
    pub children: BTreeMap<String, NsNode>,
    /// The listed name whose path ends here, if any.
    pub value: Option<Listed>,
}

impl NsNode {
    /// The node at `path` below this one.
    pub fn descend<'a>(&'a self, path: &[String]) -> Option<&'a NsNode> {
        path.iter().try_fold(self, |node, part| node.children.get(part))
    }

    /// Whether nothing is known at this node: no value and no children (a path walked through
    /// while listing is denied, which may or may not be a directory).
    pub fn is_unconfirmed(&self) -> bool {
        self.value.is_none() && self.children.is_empty()
    }

    /// Full service names of the children that hold a value, in listing order.
    pub fn child_value_names(&self) -> impl Iterator<Item = &str> {
        self.children.values().filter_map(|c| c.value.as_ref().map(|l| l.name.as_str()))
    }
}

/// Whether `part` can be a file name: not empty, not `.` or `..`, no `/` or NUL.
pub fn is_valid_file_name(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && !part.contains(['/', '\0'])
}

/// A snapshot of a service's names, as a tree rooted at the mount prefix.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Namespace {
    root: NsNode,
    hidden: BTreeSet<String>,
}

impl Namespace {
    /// Build the tree of `listed` names below `prefix`. Names outside the prefix are dropped;
    /// names with a path part that cannot be a file name (`a//b`, `a/./b`) are kept aside in
    /// [`Namespace::hidden`].
    pub fn build(prefix: &str, listed: Vec<Listed>) -> Namespace {
        let mut namespace = Namespace::default();
        for entry in listed {
            namespace.insert(prefix, entry);
        }
        namespace
    }

    /// Add one listed name (a name just created); returns whether it is shown.
    pub fn insert(&mut self, prefix: &str, entry: Listed) -> bool {
        let Some(relative) = relative_name(prefix, &entry.name) else { return false };
        let parts: Vec<&str> = relative.split('/').collect();
        if !parts.iter().all(|p| is_valid_file_name(p)) {
            self.hidden.insert(entry.name);
            return false;
        }
        let node =
            parts.into_iter().fold(&mut self.root, |node, part| node.children.entry(part.to_string()).or_default());
        node.value = Some(entry);
        true
    }

    /// Make the directory `name` exist (with no value), if its parts can be file names.
    pub fn insert_directory(&mut self, prefix: &str, name: &str) {
        let Some(relative) = relative_name(prefix, name) else { return };
        if relative.split('/').all(is_valid_file_name) {
            relative.split('/').fold(&mut self.root, |node, part| node.children.entry(part.to_string()).or_default());
        }
    }

    /// Drop one name (a name just deleted), and the directories it alone kept alive.
    pub fn remove(&mut self, prefix: &str, name: &str) {
        let Some(relative) = relative_name(prefix, name) else { return };
        let parts: Vec<String> = relative.split('/').map(str::to_string).collect();
        remove_below(&mut self.root, &parts);
    }

    /// The tree's root (the service directory).
    pub fn root(&self) -> &NsNode {
        &self.root
    }

    /// Names that exist but cannot be shown as a path.
    pub fn hidden(&self) -> &BTreeSet<String> {
        &self.hidden
    }
}

/// Clear the value at `parts` below `node`, pruning the nodes left with neither value nor children.
fn remove_below(node: &mut NsNode, parts: &[String]) {
    let Some((first, rest)) = parts.split_first() else {
        node.value = None;
        return;
    };
    let Some(child) = node.children.get_mut(first) else { return };
    remove_below(child, rest);
    if child.value.is_none() && child.children.is_empty() {
        node.children.remove(first);
    }
}

/// The part of `name` below `prefix`. With the root prefix `/`, names without a leading `/`
/// (SSM allows flat names) are shown at the top level as they are.
pub fn relative_name<'a>(prefix: &str, name: &'a str) -> Option<&'a str> {
    if prefix == "/" && !name.starts_with('/') {
        return Some(name);
    }
    name.strip_prefix(prefix).filter(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(names: &[&str]) -> Vec<Listed> {
        names.iter().map(|n| Listed { name: n.to_string(), last_modified: None }).collect()
    }

    #[test]
    fn builds_directories_and_keeps_exact_names() {
        let ns = Namespace::build("/", listed(&["/prod/db/root", "/prod/db", "/Prod/A.b-c_d@e+f=g", "flat"]));
        let prod = &ns.root().children["prod"];
        let db = &prod.children["db"];
        assert_eq!(db.value.as_ref().unwrap().name, "/prod/db");
        assert_eq!(db.children["root"].value.as_ref().unwrap().name, "/prod/db/root");
        assert!(ns.root().children["Prod"].children.contains_key("A.b-c_d@e+f=g"));
        assert!(ns.root().children.contains_key("flat"));
    }

    #[test]
    fn applies_prefix_and_sets_aside_unshowable_names() {
        let ns = Namespace::build("prod/", listed(&["prod/a", "dev/b", "prod/x//y", "prod/../z", "prod/"]));
        assert_eq!(ns.root().children.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(ns.hidden().iter().collect::<Vec<_>>(), ["prod/../z", "prod/x//y"]);
    }

    #[test]
    fn names_are_added_and_removed_with_their_empty_directories() {
        let mut ns = Namespace::build("/", listed(&["/prod/db/root", "/prod/db"]));
        assert!(ns.insert("/", listed(&["/new/deep/name"]).remove(0)));
        assert!(ns.root().descend(&["new".into(), "deep".into(), "name".into()]).is_some());
        ns.remove("/", "/new/deep/name");
        assert!(!ns.root().children.contains_key("new"));
        ns.remove("/", "/prod/db");
        let db = &ns.root().children["prod"].children["db"];
        assert!(db.value.is_none() && db.children.contains_key("root"), "a prefix stays while it has children");
    }
}
