//! `secretfs get`, `exists` and `get-by-path`: one value (or JSON member), whether one exists,
//! and every value below a path, printed as s1crets returns them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use base64::Engine;

use super::{Failure, Session, Target};
use crate::error::{Error, Result};
use crate::fs::json_view;
use crate::provider::{SecretBytes, Service};

/// The bytes `target` names: the whole value, or its member at the key path (a string
/// unquoted, anything else as compact JSON, as the mount's key files show them). `batch_mates`
/// are other names of the same service the command reads next (one call carries them all).
pub fn value<'a>(
    session: &Session,
    target: &Target,
    batch_mates: impl IntoIterator<Item = &'a str>,
) -> Result<SecretBytes> {
    let value = session.value(target, batch_mates)?;
    if target.keys.is_empty() {
        return Ok(value.fetched.bytes.clone());
    }
    let object = value.json_object().ok_or_else(|| Error::InvalidInput("the value is not a JSON object".into()))?;
    json_view::member(object, &target.keys)
        .map(|member| SecretBytes::new(json_view::render(member)))
        .ok_or(Error::NotFound)
}

/// How `get` prints.
#[derive(Clone, Copy, Debug, Default)]
pub struct Printing {
    /// Add a newline after the value.
    pub newline: bool,
    /// Print a value that is not text to a terminal too.
    pub binary: bool,
}

/// `secretfs get`: print the value byte for byte (no newline unless asked). A value that is
/// not UTF-8 text goes to a terminal only with `binary`.
pub fn get(session: &Session, target: &Target, printing: Printing) -> std::result::Result<(), Failure> {
    let bytes = value(session, target, []).map_err(|err| target.failure(err))?;
    let stdout = std::io::stdout();
    if !printing.binary && stdout.is_terminal() && std::str::from_utf8(bytes.as_slice()).is_err() {
        return Err(target.failure(Error::InvalidInput(
            "the value is binary; pass --binary to print it to a terminal, or redirect the output".into(),
        )));
    }
    let mut out = stdout.lock();
    let printed = out
        .write_all(bytes.as_slice())
        .and_then(|()| if printing.newline { out.write_all(b"\n") } else { Ok(()) })
        .and_then(|()| out.flush());
    printed.map_err(|e| Failure::whole(Error::Config(format!("cannot write to stdout: {e}"))))
}

/// `secretfs exists`: whether `target` names a value (or a key of it), or, for a name without
/// a key, a path with values below it (s1crets' `path_exists`). `Ok(false)` only when it does
/// not exist; every other failure is an error.
pub fn exists(session: &Session, target: &Target) -> Result<bool> {
    match value(session, target, []) {
        Ok(_) => Ok(true),
        Err(Error::NotFound) if target.keys.is_empty() => {
            let prefix = format!("{}/", target.name.trim_end_matches('/'));
            Ok(!session.cache(target.service).provider().probe(&prefix)?.names.is_empty())
        }
        Err(Error::NotFound) => Ok(false),
        Err(Error::InvalidInput(_)) if !target.keys.is_empty() => Ok(false),
        Err(err) => Err(err),
    }
}

/// What `get-by-path` lists.
#[derive(Clone, Debug)]
pub struct PathQuery {
    /// The service.
    pub service: Service,
    /// A parameter path (`/prod/db`) or a secret name prefix (`prod/`).
    pub path: String,
    /// Names at any depth below the path; without it, only those directly below.
    pub recursive: bool,
}

impl PathQuery {
    /// The listing prefix: a parameter path always ends in `/`; a secret prefix is taken as is.
    fn prefix(&self) -> String {
        match self.service {
            Service::ParameterStore => format!("{}/", self.path.trim_end_matches('/')),
            Service::SecretsManager => self.path.clone(),
        }
    }

    /// Whether `name` (listed under the prefix) is wanted.
    fn wants(&self, prefix: &str, name: &str) -> bool {
        let rest = name.strip_prefix(prefix).unwrap_or(name);
        self.recursive || !rest.trim_start_matches('/').contains('/')
    }
}

/// Every value below `query`'s path, by full name: listed once, then read in batches (the
/// cache runs several batches at once, each call within the rate limit). A name listed but
/// gone by the time it is read is left out; any other failure fails the whole.
pub fn by_path(session: &Session, query: &PathQuery) -> std::result::Result<BTreeMap<String, SecretBytes>, Failure> {
    let cache = session.cache(query.service);
    let prefix = query.prefix();
    let subject = || format!("{} {}", query.service.dir_name(), query.path);
    let listed = cache.provider().list(&prefix).map_err(|error| Failure { subject: subject(), error })?;
    let names: Vec<String> = listed.into_iter().map(|l| l.name).filter(|name| query.wants(&prefix, name)).collect();
    cache.walking(names.iter().map(String::as_str));
    let mut values = BTreeMap::new();
    for name in &names {
        match cache.value(name, names.iter().map(String::as_str)) {
            Ok(value) => drop(values.insert(name.clone(), value.fetched.bytes.clone())),
            Err(Error::NotFound) => {}
            Err(error) => return Err(Failure { subject: format!("{} {name}", query.service.dir_name()), error }),
        }
    }
    Ok(values)
}

/// `secretfs get-by-path`: print the values below the path as one JSON object of full name →
/// value. A value that is not UTF-8 (a binary secret) is given base64-encoded, and named on
/// stderr.
pub fn print_by_path(session: &Session, query: &PathQuery) -> std::result::Result<(), Failure> {
    let values = by_path(session, query)?;
    let mut object = serde_json::Map::new();
    for (name, bytes) in values {
        let text = match std::str::from_utf8(bytes.as_slice()) {
            Ok(text) => text.to_string(),
            Err(_) => {
                eprintln!("secretfs: {} {name}: binary, given base64-encoded", query.service.dir_name());
                base64::engine::general_purpose::STANDARD.encode(bytes.as_slice())
            }
        };
        object.insert(name, serde_json::Value::String(text));
    }
    let rendered = serde_json::to_vec_pretty(&object).unwrap_or_default();
    crate::provider::wipe_json_object(object);
    let mut out = std::io::stdout().lock();
    let printed = out.write_all(&rendered).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    drop(SecretBytes::new(rendered));
    printed.map_err(|e| Failure::whole(Error::Config(format!("cannot write to stdout: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_prefixes() {
        let query = |service, path: &str, recursive| PathQuery { service, path: path.into(), recursive };
        let ps = query(Service::ParameterStore, "/prod/db", false);
        assert_eq!(ps.prefix(), "/prod/db/");
        assert!(ps.wants("/prod/db/", "/prod/db/root") && !ps.wants("/prod/db/", "/prod/db/x/y"));
        assert_eq!(query(Service::ParameterStore, "/", true).prefix(), "/");
        let sm = query(Service::SecretsManager, "prod/", false);
        assert_eq!(sm.prefix(), "prod/");
        assert!(sm.wants("prod/", "prod/db") && !sm.wants("prod/", "prod/db/replica"));
        assert!(query(Service::SecretsManager, "prod/", true).wants("prod/", "prod/db/replica"));
    }
}
