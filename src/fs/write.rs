//! Write buffers of open files, and how a buffer becomes a new stored value: the whole value,
//! one JSON member (keeping its type where the new text allows), a new member, or a nested
//! object; and how a member is removed.

use serde_json::{Map, Value};

use super::resolve::Part;
use crate::error::{Error, Result};
use crate::inodes::NodePath;
use crate::provider::{wipe_json, wipe_json_object, Service};
use zeroize::Zeroize;

/// The most bytes a memory-only file holds (a bound on the daemon's memory, not a service limit;
/// renaming it onto a real name checks the service's limit).
pub const MEMORY_FILE_LIMIT: usize = 4 * 1024 * 1024;

/// Where a file's content goes when it is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A part of a stored value (`part` may be a member not yet in the object).
    Stored {
        /// The value's service name.
        name: String,
        /// Which part of the value the file shows.
        part: Part,
    },
    /// A name not yet in the service: the first commit with content creates it.
    NewName(String),
    /// Nowhere: a temp file, kept in memory until it is renamed onto a real name.
    Memory,
}

/// What a file open for writing will replace, and the bytes written so far. `Debug` shows the
/// length of the data, never the bytes.
pub struct WriteBuffer {
    /// The service the file is in.
    pub service: Service,
    /// Where the content goes.
    pub target: Target,
    /// The file's path in the mount.
    pub path: NodePath,
    /// The file's new content.
    pub data: Vec<u8>,
    /// Whether `data` differs from what was committed last.
    pub dirty: bool,
    /// Whether a write or truncate came in through this handle (not only O_TRUNC at open).
    pub touched: bool,
    /// A write that failed: the buffer is no longer the user's whole value and is never stored.
    pub failed: Option<Error>,
}

impl std::fmt::Debug for WriteBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBuffer")
            .field("service", &self.service)
            .field("target", &self.target)
            .field("path", &self.path)
            .field("data", &format_args!("<{} bytes redacted>", self.data.len()))
            .field("dirty", &self.dirty)
            .field("touched", &self.touched)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Drop for WriteBuffer {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

impl WriteBuffer {
    /// A buffer of the file at `path` for `target`, holding `data`; `dirty` says whether `data`
    /// is new content. A buffer bound by a service limit gets its whole room at once, so it is
    /// never reallocated (which would leave copies of the value behind, unwiped).
    pub fn new(service: Service, target: Target, path: NodePath, mut data: Vec<u8>, dirty: bool) -> Self {
        if target != Target::Memory {
            data.reserve_exact(service.max_value_len().saturating_sub(data.len()));
        }
        WriteBuffer { service, target, path, data, dirty, touched: false, failed: None }
    }

    /// The most bytes the file may hold: what the service stores, or, for a memory-only file
    /// (an editor's swap file, a temp file), [`MEMORY_FILE_LIMIT`].
    pub fn limit(&self) -> usize {
        match self.target {
            Target::Memory => MEMORY_FILE_LIMIT,
            _ => self.service.max_value_len(),
        }
    }

    /// Write `bytes` at `offset`, zero-filling any gap; refuses to grow past [`Self::limit`].
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let end = usize::try_from(offset).ok().and_then(|start| start.checked_add(bytes.len()));
        let end = match end {
            Some(end) if end <= self.limit() => end,
            _ => return Err(self.fail(Error::TooLarge)),
        };
        let start = end - bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(bytes);
        self.dirty = true;
        self.touched = true;
        Ok(())
    }

    /// Cut or extend (with zeros) the content to `size` bytes.
    pub fn truncate(&mut self, size: u64) -> Result<()> {
        let size = match usize::try_from(size) {
            Ok(size) if size <= self.limit() => size,
            _ => return Err(self.fail(Error::TooLarge)),
        };
        self.data.resize(size, 0);
        self.dirty = true;
        self.touched = true;
        Ok(())
    }

    /// Poison the buffer: it is never stored, and the next `close()` reports `err` (the handle
    /// counts as written to, so the failure is not skipped at flush).
    fn fail(&mut self, err: Error) -> Error {
        self.failed = Some(err.clone());
        self.touched = true;
        err
    }
}

/// The whole new value: `data` placed into `current` at `part`.
pub fn new_value(current: &[u8], part: &Part, data: &[u8]) -> Result<Vec<u8>> {
    let keys = match part {
        Part::Whole => return Ok(data.to_vec()),
        Part::Member(keys) | Part::NewMember(keys) | Part::NestedObject(keys) => keys,
    };
    let mut object = json_object(current)?;
    let merged = merge(&mut object, part, keys, data);
    let rendered = merged.map(|()| serde_json::to_vec(&object).unwrap_or_default());
    wipe_json_object(object);
    rendered
}

/// Put `data` into `object` at `keys` as `part` says.
fn merge(object: &mut Map<String, Value>, part: &Part, keys: &[String], data: &[u8]) -> Result<()> {
    let text = std::str::from_utf8(data).map_err(|_| Error::InvalidInput("JSON members must be UTF-8".into()))?;
    if let Part::NewMember(keys) = part {
        let (key, parent) = keys.split_last().ok_or(Error::NotFound)?;
        let parent = match parent.is_empty() {
            true => object,
            false => member_mut(object, parent).and_then(Value::as_object_mut).ok_or(Error::NotFound)?,
        };
        parent.insert(key.clone(), Value::String(text.to_string()));
        return Ok(());
    }
    let slot = member_mut(object, keys).ok_or(Error::NotFound)?;
    let new = match part {
        Part::NestedObject(_) => match serde_json::from_str(text) {
            Ok(Value::Object(nested)) => Value::Object(nested),
            _ => return Err(Error::InvalidInput("a nested .value must hold a JSON object".into())),
        },
        _ => typed_member(slot, text),
    };
    wipe_json(std::mem::replace(slot, new));
    Ok(())
}

/// `current` without the member at `keys` (the other members keep their order and types).
pub fn without_member(current: &[u8], keys: &[String]) -> Result<Vec<u8>> {
    let mut object = json_object(current)?;
    let (key, parent) = keys.split_last().ok_or(Error::NotFound)?;
    let parent = match parent.is_empty() {
        true => &mut object,
        false => member_mut(&mut object, parent).and_then(Value::as_object_mut).ok_or(Error::NotFound)?,
    };
    let removed = parent.shift_remove(key).ok_or(Error::NotFound);
    let rendered = removed.map(|member| {
        wipe_json(member);
        serde_json::to_vec(&object).unwrap_or_default()
    });
    wipe_json_object(object);
    rendered
}

/// The JSON object a member write edits. A value with a duplicate key anywhere is refused:
/// parsing it would silently drop a member, and writing it back would lose it for good.
fn json_object(current: &[u8]) -> Result<Map<String, Value>> {
    let object = match serde_json::from_slice(current) {
        Ok(Value::Object(object)) => object,
        _ => return Err(Error::InvalidInput("the value is no longer a JSON object".into())),
    };
    if serde_json::from_slice::<UniqueKeys>(current).is_err() {
        wipe_json_object(object);
        return Err(Error::InvalidInput(
            "its JSON has duplicate keys, which a key write would collapse; write the whole value through .value"
                .into(),
        ));
    }
    Ok(object)
}

/// Deserializes any JSON, failing on an object with a repeated key (at any depth).
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON without duplicate keys")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom("duplicate key"));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> std::result::Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
}

/// The new member for `text`: a string stays a string; a number, boolean, null or array keeps
/// its type when the text parses as that type, and becomes a string otherwise.
pub fn typed_member(old: &Value, text: &str) -> Value {
    if old.is_string() {
        return Value::String(text.to_string());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(new) if std::mem::discriminant(&new) == std::mem::discriminant(old) => new,
        _ => Value::String(text.to_string()),
    }
}

fn member_mut<'a>(object: &'a mut Map<String, Value>, keys: &[String]) -> Option<&'a mut Value> {
    let (first, rest) = keys.split_first()?;
    rest.iter().try_fold(object.get_mut(first)?, |value, key| value.as_object_mut()?.get_mut(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn buffer() -> WriteBuffer {
        let target = Target::Stored { name: "n".into(), part: Part::Whole };
        WriteBuffer::new(Service::SecretsManager, target, NodePath::root(), b"hello".to_vec(), false)
    }

    #[test]
    fn writes_at_offsets_append_and_truncate() {
        let mut b = buffer();
        b.write_at(5, b" world").unwrap();
        assert_eq!(b.data, b"hello world");
        b.write_at(0, b"J").unwrap();
        assert_eq!(b.data, b"Jello world");
        b.truncate(5).unwrap();
        assert_eq!(b.data, b"Jello");
        b.write_at(7, b"!").unwrap();
        assert_eq!(b.data, b"Jello\0\0!");
        assert!(b.dirty);
        assert_eq!(b.write_at(0, &[0; 65_537]).unwrap_err(), Error::TooLarge);
        assert_eq!(b.truncate(65_537).unwrap_err(), Error::TooLarge);
        assert_eq!(b.failed, Some(Error::TooLarge), "a failed write poisons the buffer");
        let mut swap = WriteBuffer::new(Service::ParameterStore, Target::Memory, NodePath::root(), Vec::new(), false);
        swap.write_at(8192, &[1; 8192]).unwrap();
        assert_eq!(swap.data.len(), 16_384, "memory-only files are not bound by the service limit");
    }

    #[test]
    fn member_writes_keep_order_other_keys_and_types() {
        let current = br#"{"user":"admin","port":5432,"on":true,"pass":"old","opts":{"a":1}}"#;
        let new = new_value(current, &Part::Member(vec!["pass".into()]), b"new").unwrap();
        assert_eq!(new, br#"{"user":"admin","port":5432,"on":true,"pass":"new","opts":{"a":1}}"#);
        let new = new_value(current, &Part::Member(vec!["port".into()]), b"6543").unwrap();
        assert_eq!(new, br#"{"user":"admin","port":6543,"on":true,"pass":"old","opts":{"a":1}}"#);
        let new = new_value(current, &Part::Member(vec!["port".into()]), b"not-a-number").unwrap();
        assert!(String::from_utf8(new).unwrap().contains(r#""port":"not-a-number""#));
        let new = new_value(current, &Part::Member(vec!["opts".into(), "a".into()]), b"2").unwrap();
        assert!(String::from_utf8(new).unwrap().ends_with(r#""opts":{"a":2}}"#));
        let new = new_value(current, &Part::NestedObject(vec!["opts".into()]), br#"{"b":3}"#).unwrap();
        assert!(String::from_utf8(new).unwrap().ends_with(r#""opts":{"b":3}}"#));
        assert!(new_value(current, &Part::NestedObject(vec!["opts".into()]), b"[1]").is_err());
        assert!(new_value(current, &Part::Member(vec!["pass".into()]), &[0xff]).is_err());
    }

    #[test]
    fn members_are_added_as_strings_and_removed_keeping_the_rest() {
        let current = br#"{"user":"admin","port":5432,"opts":{"a":1}}"#;
        let new = new_value(current, &Part::NewMember(vec!["token".into()]), b"42").unwrap();
        assert_eq!(new, br#"{"user":"admin","port":5432,"opts":{"a":1},"token":"42"}"#);
        let new = new_value(current, &Part::NewMember(vec!["opts".into(), "b".into()]), b"x").unwrap();
        assert_eq!(new, br#"{"user":"admin","port":5432,"opts":{"a":1,"b":"x"}}"#);
        assert_eq!(without_member(current, &["user".into()]).unwrap(), br#"{"port":5432,"opts":{"a":1}}"#);
        assert_eq!(
            without_member(current, &["opts".into(), "a".into()]).unwrap(),
            br#"{"user":"admin","port":5432,"opts":{}}"#
        );
        assert_eq!(without_member(current, &["nope".into()]).unwrap_err(), Error::NotFound);
    }

    #[test]
    fn key_writes_into_json_with_duplicate_keys_are_refused() {
        let current = br#"{"a":"first","a":"second","b":"x"}"#;
        let refused = new_value(current, &Part::Member(vec!["b".into()]), b"y").unwrap_err();
        assert!(matches!(refused, Error::InvalidInput(m) if m.contains("duplicate keys")));
        let nested = br#"{"b":"x","o":{"k":1,"k":2},"n":1.50}"#;
        assert!(new_value(nested, &Part::Member(vec!["b".into()]), b"y").is_err());
        assert!(without_member(nested, &["b".into()]).is_err());
        assert_eq!(new_value(current, &Part::Whole, b"{}").unwrap(), b"{}", ".value writes stay allowed");
        let fine = br#"{"a":[{"k":1},{"k":2}],"n":1.50,"s":"x"}"#;
        assert!(new_value(fine, &Part::NewMember(vec!["t".into()]), b"y").is_ok());
    }

    #[test]
    fn a_service_bound_buffer_is_never_reallocated_so_no_stale_copy_is_left_unwiped() {
        let mut b = buffer();
        let start = b.data.as_ptr();
        for offset in (0..65_536).step_by(4096) {
            b.write_at(offset, &[b'x'; 4096]).unwrap();
        }
        assert_eq!(b.data.as_ptr(), start, "the value grew in place");
        b.truncate(1).unwrap();
        assert_eq!(b.data.as_ptr(), start);
    }

    #[test]
    fn debug_never_shows_the_buffer() {
        let mut b = buffer();
        b.data = b"hunter2".to_vec();
        assert!(!format!("{b:?}").contains("hunter2"));
    }

    #[test]
    fn typed_members() {
        assert_eq!(typed_member(&json!("x"), "5"), json!("5"));
        assert_eq!(typed_member(&json!(1), "2.50"), serde_json::from_str::<Value>("2.50").unwrap());
        assert_eq!(typed_member(&json!(true), "false"), json!(false));
        assert_eq!(typed_member(&json!(true), "yes"), json!("yes"));
        assert_eq!(typed_member(&json!([1]), "[2,3]"), json!([2, 3]));
    }
}
