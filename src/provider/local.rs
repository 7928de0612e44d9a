//! The local store: a JSON file of parameters and secrets, loaded into two in-memory providers.
//!
//! Format (documented in the README):
//! ```json
//! { "parameters": { "/prod/db/root": {"type": "SecureString", "value": "pw"}, "/a": "text" },
//!   "secrets":    { "prod/db": {"json": {"username": "u"}}, "prod/t": {"string": "x"},
//!                   "prod/bin": {"binary": "<base64>"}, "prod/s": "text" } }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use super::memory::MemoryProvider;
use super::ValueKind;
use crate::error::{Error, Result};

/// Batch size the local store pretends to have, matching GetParameters.
const PARAMETER_BATCH: usize = 10;
/// Batch size the local store pretends to have, matching BatchGetSecretValue.
const SECRET_BATCH: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default)]
    parameters: BTreeMap<String, ParameterEntry>,
    #[serde(default)]
    secrets: BTreeMap<String, SecretEntry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ParameterEntry {
    Plain(String),
    Typed {
        #[serde(rename = "type", default = "default_parameter_type")]
        kind: String,
        value: String,
    },
}

fn default_parameter_type() -> String {
    "String".to_string()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SecretEntry {
    Plain(String),
    Typed(TypedSecret),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum TypedSecret {
    String(String),
    Json(serde_json::Value),
    Binary(String),
}

/// The two providers a local store file yields: (Parameter Store, Secrets Manager).
pub fn load(path: &Path) -> Result<(MemoryProvider, MemoryProvider)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read local store {}: {e}", path.display())))?;
    parse(&text).map_err(|e| Error::Config(format!("local store {}: {e}", path.display())))
}

/// Parse the text of a local store file. Errors name the entry, never its value.
pub fn parse(text: &str) -> std::result::Result<(MemoryProvider, MemoryProvider), String> {
    let file: StoreFile = serde_json::from_str(text).map_err(|e| format!("not a valid store file: {e}"))?;
    let parameters = MemoryProvider::new(PARAMETER_BATCH);
    for (name, entry) in file.parameters {
        let (kind, value) = match entry {
            ParameterEntry::Plain(value) => (ValueKind::String, value),
            ParameterEntry::Typed { kind, value } => (
                parameter_kind(&kind).ok_or_else(|| {
                    format!("parameter {name}: type must be String, SecureString or StringList, not {kind:?}")
                })?,
                value,
            ),
        };
        parameters.insert(&name, kind, value);
    }
    let secrets = MemoryProvider::new(SECRET_BATCH);
    for (name, entry) in file.secrets {
        let (kind, bytes) = match entry {
            SecretEntry::Plain(value) | SecretEntry::Typed(TypedSecret::String(value)) => {
                (ValueKind::SecretString, value.into_bytes())
            }
            SecretEntry::Typed(TypedSecret::Json(value)) => (ValueKind::SecretString, value.to_string().into_bytes()),
            SecretEntry::Typed(TypedSecret::Binary(b64)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| format!("secret {name}: \"binary\" must be base64"))?;
                (ValueKind::SecretBinary, bytes)
            }
        };
        secrets.insert(&name, kind, bytes);
    }
    Ok((parameters, secrets))
}

fn parameter_kind(name: &str) -> Option<ValueKind> {
    match name {
        "String" => Some(ValueKind::String),
        "SecureString" => Some(ValueKind::SecureString),
        "StringList" => Some(ValueKind::StringList),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Provider;

    #[test]
    fn parses_every_entry_form() {
        let (ps, sm) = parse(
            r#"{"parameters": {"/a": "x", "/b": {"type": "StringList", "value": "1,2"}},
                "secrets": {"s": "plain", "j": {"json": {"k": 1}}, "bin": {"binary": "AAEC"}}}"#,
        )
        .unwrap();
        let got = ps.fetch(&["/b".into()]).unwrap();
        let b = got[0].1.as_ref().unwrap();
        assert_eq!((b.kind, b.bytes.as_slice()), (ValueKind::StringList, &b"1,2"[..]));
        let got = sm.fetch(&["j".into(), "bin".into()]).unwrap();
        assert_eq!(got[0].1.as_ref().unwrap().bytes.as_slice(), br#"{"k":1}"#);
        assert_eq!(got[1].1.as_ref().unwrap().bytes.as_slice(), &[0, 1, 2]);
        assert_eq!(got[1].1.as_ref().unwrap().kind, ValueKind::SecretBinary);
    }

    #[test]
    fn errors_name_the_entry_but_not_the_value() {
        let err = parse(r#"{"parameters": {"/a": {"type": "Bogus", "value": "topsecret"}}}"#).err().unwrap();
        assert!(err.contains("/a") && !err.contains("topsecret"), "{err}");
        let err = parse(r#"{"secrets": {"b": {"binary": "topsecret!!"}}}"#).err().unwrap();
        assert!(err.contains("b") && !err.contains("topsecret"), "{err}");
    }
}
