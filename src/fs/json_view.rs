//! How a JSON object's members are shown as files: which keys are listed and what bytes a key holds.

use serde_json::{Map, Value};

use crate::namespace::is_valid_file_name;

/// The name of the file that holds a directory node's own raw value.
pub const RAW_VALUE_FILE: &str = ".value";

/// The bytes of a key file: a string unquoted, anything else as compact JSON text.
pub fn render(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// The keys of `map` that can be file names, in stored order. Other keys stay reachable
/// through the parent's `.value`.
pub fn listed_keys(map: &Map<String, Value>) -> impl Iterator<Item = (&str, &Value)> {
    map.iter().filter(|(k, _)| is_valid_file_name(k) && k.as_str() != RAW_VALUE_FILE).map(|(k, v)| (k.as_str(), v))
}

/// The member at `keys` below `map`, descending through nested objects.
pub fn member<'a>(map: &'a Map<String, Value>, keys: &[String]) -> Option<&'a Value> {
    let (first, rest) = keys.split_first()?;
    rest.iter().try_fold(map.get(first)?, |value, key| value.as_object()?.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_unquoted_everything_else_compact_json() {
        assert_eq!(render(&json!("p@ss \"w\"")), b"p@ss \"w\"");
        assert_eq!(render(&json!(5432)), b"5432");
        assert_eq!(render(&json!(true)), b"true");
        assert_eq!(render(&json!(null)), b"null");
        assert_eq!(render(&json!([1, "a"])), br#"[1,"a"]"#);
        assert_eq!(render(&json!({"a": {"b": 1}})), br#"{"a":{"b":1}}"#);
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let value: Value = serde_json::from_str(r#"{"n": 1.10, "big": 123456789012345678901234567890}"#).unwrap();
        assert_eq!(render(&value["n"]), b"1.10");
        assert_eq!(render(&value["big"]), b"123456789012345678901234567890");
    }

    #[test]
    fn unshowable_keys_are_not_listed() {
        let value = json!({"ok": 1, "": 2, ".": 3, "..": 4, "a/b": 5, "nul\u{0}": 6, ".value": 7, "Z": 8});
        let keys: Vec<&str> = listed_keys(value.as_object().unwrap()).map(|(k, _)| k).collect();
        assert_eq!(keys, ["ok", "Z"]);
    }

    #[test]
    fn member_descends_nested_objects() {
        let value = json!({"a": {"b": {"c": "deep"}}});
        let map = value.as_object().unwrap();
        assert_eq!(member(map, &["a".into(), "b".into(), "c".into()]), Some(&json!("deep")));
        assert_eq!(member(map, &["a".into(), "x".into()]), None);
    }
}
