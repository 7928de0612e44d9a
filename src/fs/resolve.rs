//! Path resolution: which node a mount path names, by the layout rules of DESIGN.md section 1.

use std::sync::Arc;

use serde_json::Value;

use super::json_view::{member, render, RAW_VALUE_FILE};
use super::pending::is_temp_name;
use crate::cache::{CachedValue, ServiceCache};
use crate::error::{Error, Result};
use crate::namespace::{is_valid_file_name, Namespace, NsNode};
use crate::provider::ps_options::REFERENCE_PREFIX;
use crate::provider::{selector, Fetched, SecretBytes, Service, ValueKind};

/// What a path names.
#[derive(Debug)]
pub enum Resolved {
    /// The mount root, holding one directory per service.
    Root,
    /// A node of a service's name tree: a plain directory, a value shown as a file, or a value
    /// that is also a directory (JSON object, or a name that is also a prefix).
    Tree {
        /// The service's name tree.
        namespace: Arc<Namespace>,
        /// The node's path in it.
        tree_path: Vec<String>,
        /// The value stored at this node, if a name ends here.
        value: Option<Arc<CachedValue>>,
        /// Whether the value is shown as a directory.
        value_is_dir: bool,
    },
    /// A member of a JSON object value, at `keys`.
    Json {
        /// The service name of the value.
        name: String,
        /// The value holding the object.
        value: Arc<CachedValue>,
        /// The keys from the top-level object down to this member.
        keys: Vec<String>,
    },
    /// A version chosen by a selector (`NAME:3`, `NAME:AWSPREVIOUS`): read-only, never listed.
    Selected {
        /// The service name with its selector.
        name: String,
        /// The selected version.
        value: Arc<CachedValue>,
        /// Whether it is shown as a directory (a JSON object).
        is_dir: bool,
    },
    /// The `.value` file of a directory node: the stored value (no keys) or a nested object.
    Raw {
        /// The service name of the value.
        name: String,
        /// The value holding it.
        value: Arc<CachedValue>,
        /// The keys of the nested object, empty for the stored value itself.
        keys: Vec<String>,
    },
}

impl Resolved {
    /// Whether the node is shown as a directory.
    pub fn is_dir(&self) -> bool {
        match self {
            Resolved::Root => true,
            Resolved::Tree { value, value_is_dir, .. } => value.is_none() || *value_is_dir,
            Resolved::Json { value, keys, .. } => json_member(value, keys).is_some_and(Value::is_object),
            Resolved::Raw { .. } => false,
            Resolved::Selected { is_dir, .. } => *is_dir,
        }
    }

    /// The bytes of a file node (`IsADirectory` for directories).
    pub fn bytes(&self) -> Result<SecretBytes> {
        match self {
            Resolved::Tree { value: Some(value), value_is_dir: false, .. } => Ok(value.fetched.bytes.clone()),
            Resolved::Selected { value, is_dir: false, .. } => Ok(value.fetched.bytes.clone()),
            Resolved::Raw { value, keys, .. } if keys.is_empty() => Ok(value.fetched.bytes.clone()),
            Resolved::Raw { value, keys, .. } => part_bytes(value, &Part::NestedObject(keys.clone())),
            Resolved::Json { value, keys, .. } => part_bytes(value, &Part::Member(keys.clone())),
            Resolved::Selected { .. } => Err(Error::IsADirectory),
            Resolved::Root | Resolved::Tree { .. } => Err(Error::IsADirectory),
        }
    }

    /// What a write to this file replaces: the service name and which part of its value. A
    /// selected version (and everything shown inside it) is read-only.
    pub fn write_target(&self) -> Result<(String, Part)> {
        match self {
            Resolved::Selected { .. } => Err(Error::ReadOnly),
            Resolved::Raw { name, .. } | Resolved::Json { name, .. } if selector::has_selector(name) => {
                Err(Error::ReadOnly)
            }
            Resolved::Tree { value: Some(_), value_is_dir: false, .. } => {
                self.tree_name().map(|name| (name.to_string(), Part::Whole)).ok_or(Error::NotFound)
            }
            Resolved::Raw { name, keys, .. } if keys.is_empty() => Ok((name.clone(), Part::Whole)),
            Resolved::Raw { name, keys, .. } => Ok((name.clone(), Part::NestedObject(keys.clone()))),
            Resolved::Json { name, keys, .. } if !self.is_dir() => Ok((name.clone(), Part::Member(keys.clone()))),
            _ => Err(Error::IsADirectory),
        }
    }

    /// The service name stored at a tree node, if a name ends there.
    pub fn tree_name(&self) -> Option<&str> {
        match self {
            Resolved::Tree { namespace, tree_path, .. } => {
                namespace.root().descend(tree_path)?.value.as_ref().map(|listed| listed.name.as_str())
            }
            _ => None,
        }
    }

    /// The JSON object shown as this directory, if it is one: the value's service name and the
    /// keys of the object (empty for the value itself).
    pub fn json_directory(&self, json_keys: bool) -> Option<(String, Vec<String>)> {
        match self {
            Resolved::Tree { value: Some(value), .. } if json_keys && value.json_object().is_some() => {
                self.tree_name().map(|name| (name.to_string(), Vec::new()))
            }
            Resolved::Json { name, keys, .. } if self.is_dir() => Some((name.clone(), keys.clone())),
            Resolved::Selected { name, is_dir: true, .. } => Some((name.clone(), Vec::new())),
            _ => None,
        }
    }

    /// The value this node shows or belongs to, if any.
    pub fn value(&self) -> Option<&Arc<CachedValue>> {
        match self {
            Resolved::Root => None,
            Resolved::Tree { value, .. } => value.as_ref(),
            Resolved::Json { value, .. } | Resolved::Raw { value, .. } | Resolved::Selected { value, .. } => {
                Some(value)
            }
        }
    }
}

/// Which part of a stored value a file shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole value (a value file or a top-level `.value`).
    Whole,
    /// One member of the JSON object, at these keys.
    Member(Vec<String>),
    /// A member not in the object yet: a new file in a JSON directory, stored as a string.
    NewMember(Vec<String>),
    /// A nested object's `.value`, at these keys.
    NestedObject(Vec<String>),
}

/// The bytes `part` of `value` shows: the value itself, a member rendered as its file shows
/// it, or a nested object as compact JSON (a member not yet in the object is empty).
pub fn part_bytes(value: &CachedValue, part: &Part) -> Result<SecretBytes> {
    match part {
        Part::Whole => Ok(value.fetched.bytes.clone()),
        Part::NewMember(_) => Ok(SecretBytes::new(Vec::new())),
        Part::NestedObject(keys) => json_member(value, keys)
            .map(|object| SecretBytes::new(object.to_string().into_bytes()))
            .ok_or(Error::NotFound),
        Part::Member(keys) => match json_member(value, keys) {
            Some(member) if !member.is_object() => Ok(SecretBytes::new(render(member))),
            Some(_) => Err(Error::IsADirectory),
            None => Err(Error::NotFound),
        },
    }
}

fn json_member<'a>(value: &'a CachedValue, keys: &[String]) -> Option<&'a Value> {
    member(value.json_object()?, keys)
}

/// Fetch the value of `node` (a child of `parent`), batching with the parent's other values.
pub fn node_value(cache: &ServiceCache, node: &NsNode, parent: Option<&NsNode>) -> Result<Option<Arc<CachedValue>>> {
    let Some(listed) = &node.value else { return Ok(None) };
    let siblings = parent.into_iter().flat_map(NsNode::child_value_names);
    cache.value(&listed.name, siblings).map(Some)
}

/// Whether a tree node holding `value` is shown as a directory.
pub fn value_is_dir(node: &NsNode, value: &CachedValue, json_keys: bool) -> bool {
    !node.children.is_empty() || (json_keys && value.json_object().is_some())
}

/// The service name prefix of the directory at `tree_path` (`/prod/db/`; the mount prefix for
/// the service directory).
pub fn dir_prefix(prefix: &str, tree_path: &[String]) -> String {
    match tree_path.is_empty() {
        true => prefix.to_string(),
        false => format!("{prefix}{}/", tree_path.join("/")),
    }
}

/// The tree of `cache`, after asking the service about each part of `parts` the tree does not
/// know yet (a name created out of band, or a directory not listed yet). Parts below a value
/// (JSON keys, `.value`) and scratch-looking names never cause a call.
fn discovered(cache: &ServiceCache, parts: &[String]) -> Result<Arc<Namespace>> {
    let mut namespace = cache.namespace();
    for depth in 0..parts.len() {
        let Some(node) = namespace.root().descend(&parts[..depth]) else { break };
        let part = &parts[depth];
        // A path only walked through while listing is denied is asked about again (within the
        // negative-cache period the answer is remembered): a name may have been created there.
        if node.children.get(part).is_some_and(|child| !child.is_unconfirmed()) {
            continue;
        }
        if node.value.is_some() || is_temp_name(part) || !is_valid_file_name(part) {
            break;
        }
        namespace = cache.discover(&format!("{}{}", cache.prefix(), parts[..=depth].join("/")))?;
        if depth == 0 && cache.prefix() == "/" && !namespace.root().children.contains_key(part) {
            // SSM's flat names (no leading `/`) sit at the top of ps/ too.
            namespace = cache.discover_exact(part, false)?;
        }
        if namespace.root().descend(&parts[..=depth]).is_none() {
            break;
        }
    }
    Ok(namespace)
}

/// Resolve `parts` below the service directory served by `cache`.
pub fn resolve_in_service(cache: &ServiceCache, parts: &[String], json_keys: bool) -> Result<Resolved> {
    match reference_depth(cache, parts) {
        Some(depth) if parts.len() > depth => return resolve_reference(cache, parts, depth, json_keys),
        // `aws/reference/secretsmanager` itself: a directory whether or not names exist there
        // (asking would cost a listing; names listed there already are shown).
        Some(_) if cache.namespace().root().descend(parts).is_none() => return Ok(unconfirmed_directory(parts)),
        Some(_) => {}
        None => {}
    }
    if let Some(at) = parts.iter().position(|part| selector::has_selector(part)) {
        return resolve_selected(cache, &parts[..=at], &parts[at + 1..], json_keys);
    }
    let namespace = discovered(cache, parts)?;
    let mut node = namespace.root();
    let mut parent = None;
    let mut depth = 0;
    for part in parts {
        let Some(child) = node.children.get(part) else { break };
        parent = Some(node);
        node = child;
        depth += 1;
    }
    let value = node_value(cache, node, parent)?;
    let value_is_dir = value.as_ref().is_some_and(|v| value_is_dir(node, v, json_keys));
    let rest = &parts[depth..];
    if rest.is_empty() {
        let tree_path = parts.to_vec();
        return Ok(Resolved::Tree { namespace, tree_path, value, value_is_dir });
    }
    match (value, &node.value) {
        (Some(value), Some(listed)) if value_is_dir => resolve_in_value(listed.name.clone(), value, rest, json_keys),
        _ => Err(Error::NotFound),
    }
}

/// How many parts of `parts` the reference prefix (`aws/reference/secretsmanager`) takes, if
/// `parts` lies in it or below it in a Parameter Store directory showing every parameter.
fn reference_depth(cache: &ServiceCache, parts: &[String]) -> Option<usize> {
    if cache.service() != Service::ParameterStore || cache.prefix() != "/" {
        return None;
    }
    let prefix: Vec<&str> = REFERENCE_PREFIX.trim_matches('/').split('/').collect();
    let shared = parts.iter().zip(&prefix).take_while(|(part, expected)| part == *expected).count();
    (shared == parts.len().min(prefix.len()) && !parts.is_empty()).then_some(prefix.len())
}

/// Resolve a path through the reference bridge: the directories of the prefix, then a secret
/// read by its exact name (`/aws/reference/secretsmanager/NAME`, never listed, read-only) and
/// its JSON view. A part that names no secret is a directory that may hold some, as with a
/// denied listing: walked through, never opened.
fn resolve_reference(cache: &ServiceCache, parts: &[String], depth: usize, json_keys: bool) -> Result<Resolved> {
    for end in depth + 1..=parts.len() {
        let name = format!("/{}", parts[..end].join("/"));
        match cache.value(&name, []) {
            Ok(value) => {
                let is_dir = json_keys && value.json_object().is_some();
                return match (&parts[end..], is_dir) {
                    ([], _) => Ok(Resolved::Selected { name, value, is_dir }),
                    (rest, true) => resolve_in_value(name, value, rest, json_keys),
                    (_, false) => Err(Error::NotFound),
                };
            }
            Err(Error::NotFound) => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(unconfirmed_directory(parts))
}

/// A directory that may hold names nobody can list: walked through, not opened (its tree holds
/// nothing).
fn unconfirmed_directory(parts: &[String]) -> Resolved {
    Resolved::Tree {
        namespace: Arc::new(Namespace::default()),
        tree_path: parts.to_vec(),
        value: None,
        value_is_dir: false,
    }
}

/// Resolve a path whose last part of `named` carries a version selector: that version is read
/// by its exact name (never listed, no listing call), and `rest` inside it as JSON keys.
fn resolve_selected(cache: &ServiceCache, named: &[String], rest: &[String], json_keys: bool) -> Result<Resolved> {
    let name = format!("{}{}", cache.prefix(), named.join("/"));
    let value = match selector::split(&name) {
        Some((base, ITEMS_SELECTOR)) if cache.service() == Service::ParameterStore => {
            string_list_items(&*cache.value(base, [])?)?
        }
        _ => cache.value(&name, [])?,
    };
    let is_dir = json_keys && value.json_object().is_some();
    match (rest.is_empty(), is_dir) {
        (true, _) => Ok(Resolved::Selected { name, value, is_dir }),
        (false, true) => resolve_in_value(name, value, rest, json_keys),
        (false, false) => Err(Error::NotFound),
    }
}

/// The selector that shows a StringList parameter's items, one file each (`NAME:items/0`).
pub const ITEMS_SELECTOR: &str = "items";

/// A StringList value's items as a JSON object `{"0": first, "1": second, ...}`, so the JSON
/// view shows them as files `0`, `1`, ... (`.value` is that object). Not a StringList: none.
fn string_list_items(list: &CachedValue) -> Result<Arc<CachedValue>> {
    if list.fetched.kind != ValueKind::StringList {
        return Err(Error::NotFound);
    }
    let text = std::str::from_utf8(list.fetched.bytes.as_slice()).map_err(|_| Error::NotFound)?;
    let items: serde_json::Map<String, Value> =
        text.split(',').enumerate().map(|(index, item)| (index.to_string(), Value::String(item.to_string()))).collect();
    let object = Value::Object(items);
    let bytes = SecretBytes::new(object.to_string().into_bytes());
    crate::provider::wipe_json(object);
    Ok(Arc::new(CachedValue::new(Fetched { bytes, kind: ValueKind::String, ..list.fetched.clone() })))
}

/// Resolve `rest` inside a value shown as a directory: JSON keys, then possibly `.value`.
fn resolve_in_value(name: String, value: Arc<CachedValue>, rest: &[String], json_keys: bool) -> Result<Resolved> {
    let mut keys = Vec::with_capacity(rest.len());
    for (index, part) in rest.iter().enumerate() {
        let object = if json_keys {
            match keys.is_empty() {
                true => value.json_object(),
                false => json_member(&value, &keys).and_then(Value::as_object),
            }
        } else {
            None
        };
        let at_directory = keys.is_empty() || object.is_some();
        if part == RAW_VALUE_FILE && at_directory && index + 1 == rest.len() {
            return Ok(Resolved::Raw { name, value, keys });
        }
        let object = object.ok_or(Error::NotFound)?;
        if !is_valid_file_name(part) || !object.contains_key(part) {
            return Err(Error::NotFound);
        }
        keys.push(part.clone());
    }
    Ok(Resolved::Json { name, value, keys })
}
