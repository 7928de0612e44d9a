//! The local store: a JSON file of parameters and secrets, loaded into two in-memory providers
//! and kept in step with the file: an outside edit is read again at the next provider call (a
//! refresh, a listing, a read of an unknown name), and a write through the mount is applied to
//! the file as it is now, so it never erases an outside edit. A malformed edit keeps the last
//! good content served, with one error logged.
//!
//! Format (documented in the README):
//! ```json
//! { "parameters": { "/prod/db/root": {"type": "SecureString", "value": "pw"}, "/a": "text" },
//!   "secrets":    { "prod/db": {"json": {"username": "u"}}, "prod/t": {"string": "x"},
//!                   "prod/bin": {"binary": "<base64>"}, "prod/s": "text" } }
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde::Deserialize;

use super::memory::MemoryProvider;
use super::{CallCounts, FetchResult, Fetched, Listed, OutcomeCounts, Provider, SecretBytes, Service, ValueKind};
use crate::error::{Error, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default)]
    parameters: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    secrets: BTreeMap<String, serde_json::Value>,
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

/// A local store file and its contents, shared by its two providers.
pub struct LocalStore {
    path: PathBuf,
    parameters: MemoryProvider,
    secrets: MemoryProvider,
    save_lock: Mutex<()>,
    /// The file as last read or written (a different stamp means an outside edit).
    seen: Mutex<Option<Stamp>>,
}

/// What tells one version of the file from another without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp { modified: meta.modified().ok(), len: meta.len(), inode: meta.ino() })
    }
}

/// One service's view of a local store; updates are saved to the file atomically.
pub struct LocalProvider {
    store: Arc<LocalStore>,
    service: Service,
}

/// The two providers a local store file yields: (Parameter Store, Secrets Manager).
pub fn load(path: &Path) -> Result<(LocalProvider, LocalProvider)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read local store {}: {e}", path.display())))?;
    let (parameters, secrets) =
        parse(&text).map_err(|e| Error::Config(format!("local store {}: {e}", path.display())))?;
    let seen = Mutex::new(Stamp::of(path));
    let store = Arc::new(LocalStore { path: path.to_path_buf(), parameters, secrets, save_lock: Mutex::new(()), seen });
    Ok((
        LocalProvider { store: store.clone(), service: Service::ParameterStore },
        LocalProvider { store, service: Service::SecretsManager },
    ))
}

impl LocalStore {
    fn memory(&self, service: Service) -> &MemoryProvider {
        match service {
            Service::ParameterStore => &self.parameters,
            Service::SecretsManager => &self.secrets,
        }
    }

    /// Read the file again if it changed since it was last read or written, and bring both
    /// providers in step with it (a value that changed gets a new version, so refreshes see
    /// it). A file that no longer parses is logged once and the last good content kept.
    fn sync(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Stamp::of(&self.path);
        if now == *seen {
            return;
        }
        *seen = now;
        let read = std::fs::read_to_string(&self.path).map_err(|e| e.to_string()).and_then(|text| parse(&text));
        match read {
            Ok((parameters, secrets)) => {
                tracing::info!("local store {} changed on disk; read again", self.path.display());
                merge(&self.parameters, &parameters);
                merge(&self.secrets, &secrets);
            }
            Err(err) => {
                tracing::error!("local store {}: {err}; serving its last good content", self.path.display())
            }
        }
    }

    /// Write the whole store to a temp file (mode 0600) beside the store and rename it over.
    fn save(&self) -> Result<()> {
        let text = zeroize::Zeroizing::new(self.render()?);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let file_name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = dir.join(format!(".{file_name}.secretfs-tmp"));
        let failed =
            |e: std::io::Error| Error::Service(format!("cannot save local store {}: {e}", self.path.display()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(failed)?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)?;
        std::fs::rename(&temp, &self.path).map_err(failed)?;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Stamp::of(&self.path);
        Ok(())
    }

    fn render(&self) -> Result<String> {
        let mut parameters = serde_json::Map::new();
        for (name, fetched) in self.parameters.snapshot() {
            let kind = match fetched.kind {
                ValueKind::SecureString => "SecureString",
                ValueKind::StringList => "StringList",
                _ => "String",
            };
            let value = String::from_utf8(fetched.bytes.as_slice().to_vec())
                .map_err(|_| Error::InvalidInput(format!("parameter {name} is not UTF-8")))?;
            parameters.insert(name, serde_json::json!({ "type": kind, "value": value }));
        }
        let mut secrets = serde_json::Map::new();
        for (name, fetched) in self.secrets.snapshot() {
            let entry = match (fetched.kind, std::str::from_utf8(fetched.bytes.as_slice())) {
                (ValueKind::SecretBinary, _) | (_, Err(_)) => {
                    serde_json::json!({ "binary": base64::engine::general_purpose::STANDARD.encode(fetched.bytes.as_slice()) })
                }
                (_, Ok(text)) => serde_json::json!({ "string": text }),
            };
            secrets.insert(name, entry);
        }
        let whole = serde_json::json!({ "parameters": parameters, "secrets": secrets });
        let rendered = serde_json::to_string_pretty(&whole).map_err(|e| Error::Service(e.to_string()));
        super::wipe_json(whole);
        rendered
    }
}

impl LocalProvider {
    /// Apply `change` to `name` in memory and save the file; if saving fails, `name` is put
    /// back as it was and the error returned, so memory and file never disagree.
    fn saved<T>(&self, name: &str, change: impl FnOnce(&MemoryProvider) -> Result<T>) -> Result<T> {
        let _saving = self.store.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.store.sync();
        let memory = self.store.memory(self.service);
        let old = memory.get(name);
        let changed = change(memory)?;
        if let Err(err) = self.store.save() {
            match old {
                Some(old) => memory.put(name, old),
                None => drop(memory.remove(name)),
            }
            return Err(err);
        }
        Ok(changed)
    }
}

impl Provider for LocalProvider {
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.store.sync();
        self.store.memory(self.service).list(prefix)
    }

    fn fetch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        self.store.sync();
        self.store.memory(self.service).fetch(names)
    }

    fn versions(&self, names: &[String]) -> Result<std::collections::HashMap<String, String>> {
        self.store.sync();
        self.store.memory(self.service).versions(names)
    }

    fn update(&self, name: &str, current: &Fetched, bytes: SecretBytes) -> Result<Fetched> {
        self.saved(name, |memory| memory.update(name, current, bytes))
    }

    fn create(&self, name: &str, kind: ValueKind, bytes: SecretBytes) -> Result<Fetched> {
        self.saved(name, |memory| memory.create(name, kind, bytes))
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.saved(name, |memory| memory.delete(name))
    }

    fn batch_limit(&self) -> usize {
        self.store.memory(self.service).batch_limit()
    }

    fn call_counts(&self) -> CallCounts {
        self.store.memory(self.service).call_counts()
    }

    fn call_outcomes(&self) -> OutcomeCounts {
        self.store.memory(self.service).call_outcomes()
    }
}

/// Make `live` hold what `read` holds: changed and new values stored (as new versions),
/// values gone removed.
fn merge(live: &MemoryProvider, read: &MemoryProvider) {
    let (now, before) = (read.snapshot(), live.snapshot());
    for (name, fetched) in &now {
        let same = before.get(name).is_some_and(|old| old.kind == fetched.kind && old.bytes == fetched.bytes);
        if !same {
            live.insert(name, fetched.kind, fetched.bytes.as_slice().to_vec());
        }
    }
    for name in before.keys().filter(|name| !now.contains_key(*name)) {
        live.remove(name);
    }
}

/// Parse the text of a local store file. Errors name the entry or the line, never a value.
pub fn parse(text: &str) -> std::result::Result<(MemoryProvider, MemoryProvider), String> {
    let file: StoreFile = serde_json::from_str(text).map_err(|e| format!("not a valid store file: {e}"))?;
    let parameters = MemoryProvider::for_service(Service::ParameterStore);
    for (name, entry) in file.parameters {
        let entry: ParameterEntry = serde_json::from_value(entry).map_err(|_| {
            format!(
                r#"parameter {name}: expected a string or {{"type": "String|SecureString|StringList", "value": "..."}}"#
            )
        })?;
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
    let secrets = MemoryProvider::for_service(Service::SecretsManager);
    for (name, entry) in file.secrets {
        let entry: SecretEntry = serde_json::from_value(entry).map_err(|_| {
            format!(
                r#"secret {name}: expected a string, {{"string": "..."}}, {{"json": ...}} or {{"binary": "<base64>"}}"#
            )
        })?;
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
