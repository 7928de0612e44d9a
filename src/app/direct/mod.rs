//! The commands that work without FUSE (`get`, `get-by-path`, `exists`, `update`, `exec`): a
//! short-lived process asks the same providers through the same cache as a mount does.

pub mod exec;
pub mod read;
pub mod update;

use std::fmt;
use std::sync::Arc;

use crate::cache::{CacheSettings, CachedValue, ServiceCache, PATIENCE_MARGIN};
use crate::error::{Error, Result};
use crate::provider::aws::{Bridge, DEFAULT_TIMEOUT};
use crate::provider::{names, selector, Service};

use super::Source;

/// A failed command: what it was about (a service and name, a variable) and why. Never holds
/// a value.
#[derive(Debug)]
pub struct Failure {
    /// The service and name (and key) or the variable the failure concerns; empty for the
    /// command as a whole.
    pub subject: String,
    /// Why.
    pub error: Error,
}

impl Failure {
    /// A failure of the command as a whole.
    pub fn whole(error: Error) -> Failure {
        Failure { subject: String::new(), error }
    }

    /// The exit code (the one table of [`Error::exit_code`]).
    pub fn exit_code(&self) -> i32 {
        self.error.exit_code()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subject.is_empty() {
            true => write!(f, "{}", self.error),
            false => write!(f, "{}: {}", self.subject, self.error),
        }
    }
}

/// One value, or one member of a JSON value, as a command names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The service holding it.
    pub service: Service,
    /// The full name in the service, with a version selector if any (`/prod/db/root:3`).
    pub name: String,
    /// The key path into its JSON object; empty for the whole value.
    pub keys: Vec<String>,
}

impl Target {
    /// The value `name` of `service`, or its member at the dotted key path `key`.
    pub fn new(service: Service, name: &str, key: Option<&str>) -> Result<Target> {
        let plain = selector::split(name).map_or(name, |(base, _)| base);
        names::check_name(service, plain)?;
        let keys = match key {
            Some(key) => key_path(key)?,
            None => Vec::new(),
        };
        Ok(Target { service, name: name.to_string(), keys })
    }

    /// A target written as `ps:/prod/db/root` or `sm:prod/db#password` (a dotted key path
    /// after `#`), as `exec --env` takes it.
    pub fn parse(spec: &str) -> Result<Target> {
        let (service, rest) = spec.split_once(':').ok_or_else(|| {
            Error::InvalidInput(format!("{spec:?} is not SERVICE:NAME[#KEY] (ps:/prod/db/root, sm:prod/db#password)"))
        })?;
        let service = match service {
            "ps" => Service::ParameterStore,
            "sm" => Service::SecretsManager,
            other => return Err(Error::InvalidInput(format!("unknown service {other:?}: use ps or sm"))),
        };
        let (name, key) = match rest.split_once('#') {
            Some((name, key)) => (name, Some(key)),
            None => (rest, None),
        };
        Target::new(service, name, key)
    }

    /// How messages name it: `sm prod/db`, `sm prod/db key options.sslmode`.
    pub fn subject(&self) -> String {
        let shown = format!("{} {}", self.service.dir_name(), self.name);
        match self.keys.is_empty() {
            true => shown,
            false => {
                let escaped: Vec<String> = self.keys.iter().map(|k| k.replace('.', "\\.")).collect();
                format!("{shown} key {}", escaped.join("."))
            }
        }
    }

    /// A failure concerning this target.
    pub fn failure(&self, error: Error) -> Failure {
        Failure { subject: self.subject(), error }
    }
}

/// A dotted key path (`options.sslmode`) split into keys; `\.` is a dot inside a key and `\\`
/// a backslash.
pub fn key_path(text: &str) -> Result<Vec<String>> {
    let mut keys = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('.' | '\\')) => keys.last_mut().expect("never empty").push(escaped),
                _ => return Err(Error::InvalidInput(format!("key path {text:?}: `\\` escapes only `.` and `\\`"))),
            },
            '.' => keys.push(String::new()),
            c => keys.last_mut().expect("never empty").push(c),
        }
    }
    if keys.iter().any(String::is_empty) {
        return Err(Error::InvalidInput(format!("key path {text:?} has an empty key")));
    }
    Ok(keys)
}

/// Providers and caches for one command, on a small runtime of its own.
pub struct Session {
    parameters: ServiceCache,
    secrets: ServiceCache,
    // Declared last: dropped after the caches and providers that hold its handle.
    _runtime: tokio::runtime::Runtime,
}

impl Session {
    /// Reach `source` (AWS credentials are resolved, not checked with STS: the command's own
    /// call tells whether they work).
    pub fn open(source: &Source) -> Result<Session> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("secretfs-aws")
            .build()
            .map_err(|e| Error::Config(format!("cannot start the async runtime: {e}")))?;
        let (parameters, secrets) = super::providers(source, &Bridge::new(runtime.handle().clone()))?;
        let timeout = match source {
            Source::Aws(settings) => settings.timeout,
            Source::Local(_) => DEFAULT_TIMEOUT,
        };
        let settings = CacheSettings { patience: timeout + PATIENCE_MARGIN, ..CacheSettings::default() };
        Ok(Session {
            parameters: ServiceCache::new(Service::ParameterStore, parameters, "/".into(), settings),
            secrets: ServiceCache::new(Service::SecretsManager, secrets, String::new(), settings),
            _runtime: runtime,
        })
    }

    /// The cache of `service`.
    pub fn cache(&self, service: Service) -> &ServiceCache {
        match service {
            Service::ParameterStore => &self.parameters,
            Service::SecretsManager => &self.secrets,
        }
    }

    /// The value `target` names, fetched together with `batch_mates` (other names of the same
    /// service this command will read: one call carries them all).
    pub fn value<'a>(
        &self,
        target: &Target,
        batch_mates: impl IntoIterator<Item = &'a str>,
    ) -> Result<Arc<CachedValue>> {
        self.cache(target.service).value(&target.name, batch_mates)
    }
}
