//! Template views (minijinja): `ps(NAME)` and `sm(NAME)` give a value by its full name (a JSON
//! object as a map, anything else as text), with selectors; undefined names are errors, so a
//! view is either whole or unreadable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior, Value};

use super::ValueSource;
use crate::cache::CachedValue;
use crate::error::{Error, Result};
use crate::provider::Service;

/// Whether `text` parses as a template; the error says where it does not.
pub fn check(text: &str) -> std::result::Result<(), String> {
    environment().template_from_str(text).map(|_| ()).map_err(|e| e.to_string())
}

/// Render `text` with `values` behind `ps()` and `sm()`. A failure names what failed (the call
/// and its reason, or the template error and its line); a read that would wait fails the render
/// with [`Error::WouldBlock`], so it is retried where it may wait.
pub fn render(text: &str, values: Arc<dyn ValueSource>) -> Result<Vec<u8>> {
    let would_block = Arc::new(AtomicBool::new(false));
    let mut env = environment();
    for service in Service::ALL {
        let (would_block, values) = (would_block.clone(), values.clone());
        let lookup = move |name: String| -> std::result::Result<Value, minijinja::Error> {
            values.named(service, &name).map(|value| template_value(&value)).map_err(|err| {
                if err == Error::WouldBlock {
                    would_block.store(true, Ordering::SeqCst);
                }
                let message = format!("{}('{name}'): {err}", service.dir_name());
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message)
            })
        };
        env.add_function(service.dir_name(), lookup);
    }
    match env.render_str(text, ()) {
        Ok(text) => Ok(text.into_bytes()),
        Err(_) if would_block.load(Ordering::SeqCst) => Err(Error::WouldBlock),
        Err(err) => Err(Error::InvalidInput(err.to_string())),
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_filter("urlencode", urlencode);
    env
}

/// Every byte percent-encoded except RFC 3986's unreserved characters, so a value fits any part
/// of a URL (Jinja's own `urlencode` keeps `/`, which would split a password in user info).
fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A value as templates see it: a JSON object as a map (so `sm('prod/db').password` works),
/// anything else as its text.
fn template_value(value: &CachedValue) -> Value {
    match value.json_object() {
        Some(object) => json_map(object),
        None => Value::from(String::from_utf8_lossy(value.fetched.bytes.as_slice()).into_owned()),
    }
}

/// A JSON member as a template value. A number keeps its exact text when printed (it is an
/// integer or float where it fits one, so arithmetic works).
fn json_value(value: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match value {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (None, Some(u), _) => Value::from(u),
            (None, None, Some(f)) if f.to_string() == n.to_string() => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        Json::String(s) => Value::from(s.clone()),
        Json::Array(items) => Value::from(items.iter().map(json_value).collect::<Vec<_>>()),
        Json::Object(map) => json_map(map),
    }
}

/// A JSON object as a template map of its members.
fn json_map(map: &serde_json::Map<String, serde_json::Value>) -> Value {
    Value::from_object(map.iter().map(|(k, v)| (k.clone(), json_value(v))).collect::<BTreeMap<_, _>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Fetched, Metadata, SecretBytes, ValueKind};

    struct Fixed;

    impl ValueSource for Fixed {
        fn named(&self, service: Service, name: &str) -> Result<Arc<CachedValue>> {
            let text = match (service, name) {
                (Service::SecretsManager, "prod/db") => {
                    r#"{"username":"app","password":"p@ss/w:rd","port":5432,"ratio":1.10}"#
                }
                (Service::ParameterStore, "/prod/db/host") => "db.internal",
                _ => return Err(Error::NotFound),
            };
            Ok(Arc::new(CachedValue::new(Fetched {
                bytes: SecretBytes::from(text),
                kind: ValueKind::SecretString,
                version: None,
                last_modified: None,
                meta: Metadata::default(),
            })))
        }

        fn at_path(&self, _: &str) -> Result<Arc<CachedValue>> {
            Err(Error::NotFound)
        }
    }

    #[test]
    fn templates_read_values_and_fail_whole() {
        let text = "postgres://{{ sm('prod/db').username }}:{{ sm('prod/db').password | urlencode }}@{{ ps('/prod/db/host') }}/app\n";
        assert_eq!(render(text, Arc::new(Fixed)).unwrap(), b"postgres://app:p%40ss%2Fw%3Ard@db.internal/app\n");
        let Err(Error::InvalidInput(missing)) = render("{{ sm('nope') }}", Arc::new(Fixed)) else { panic!() };
        assert!(missing.contains("sm('nope'): not found"), "{missing}");
        assert!(matches!(render("{{ sm('prod/db').nokey }}", Arc::new(Fixed)), Err(Error::InvalidInput(_))));
        assert_eq!(
            render("{{ sm('prod/db').port + 1 }} {{ sm('prod/db').ratio }}", Arc::new(Fixed)).unwrap(),
            b"5433 1.10"
        );
        assert!(check("{{ unclosed").is_err() && check("{{ ps('/x') }}").is_ok());
    }
}
