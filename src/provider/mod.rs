//! The provider trait every backing store implements, and the value types it returns.

pub mod adaptive_rate;
pub mod aws;
pub mod counters;
pub mod local;
pub mod memory;
pub mod names;
pub mod ps_options;
pub mod secret_bytes;
pub mod selector;

use std::collections::HashMap;
use std::time::SystemTime;

use crate::error::Result;
pub use counters::{outcome_of, ApiCounters, CallCounts, OutcomeCounts};
pub use secret_bytes::{wipe_json, wipe_json_object, SecretBytes};

/// The two AWS services secretfs shows, each under its own top-level directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// AWS Systems Manager Parameter Store, shown under `ps/`.
    ParameterStore,
    /// AWS Secrets Manager, shown under `sm/`.
    SecretsManager,
}

impl Service {
    /// Both services, in the order they are listed at the mount root.
    pub const ALL: [Service; 2] = [Service::ParameterStore, Service::SecretsManager];

    /// The directory name of this service at the mount root.
    pub fn dir_name(self) -> &'static str {
        match self {
            Service::ParameterStore => "ps",
            Service::SecretsManager => "sm",
        }
    }

    /// Most names one batch read carries (GetParameters: 10, BatchGetSecretValue: 20).
    pub fn batch_limit(self) -> usize {
        match self {
            Service::ParameterStore => 10,
            Service::SecretsManager => 20,
        }
    }

    /// The largest value the service stores, in bytes (Advanced parameters for SSM).
    pub fn max_value_len(self) -> usize {
        match self {
            Service::ParameterStore => 8 * 1024,
            Service::SecretsManager => 65_536,
        }
    }
}

/// How a value is stored; decides whether it may be shown as JSON and how it is written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Parameter of type String.
    String,
    /// Parameter of type SecureString (already decrypted).
    SecureString,
    /// Parameter of type StringList (the stored comma-joined text).
    StringList,
    /// Secret stored as SecretString.
    SecretString,
    /// Secret stored as SecretBinary (raw bytes).
    SecretBinary,
}

impl ValueKind {
    /// How the service names it: the parameter type (`String`, `SecureString`, `StringList`),
    /// or a secret's `string` or `binary`.
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::String => "String",
            ValueKind::SecureString => "SecureString",
            ValueKind::StringList => "StringList",
            ValueKind::SecretString => "string",
            ValueKind::SecretBinary => "binary",
        }
    }

    /// Whether the value is text (and so may be expanded as a JSON object).
    pub fn is_text(self) -> bool {
        !matches!(self, ValueKind::SecretBinary)
    }
}

/// One name found by listing a service: metadata only, never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The full name in the service (`/prod/db/root`, `prod/db`).
    pub name: String,
    /// When the value last changed, if the service says.
    pub last_modified: Option<SystemTime>,
}

/// The first page of a listing that holds a name (the whole listing when it is the only page).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The names on it.
    pub names: Vec<Listed>,
    /// Where the listing goes on, when pages follow.
    pub rest: Option<PageRest>,
}

impl Page {
    /// Whether no page follows: the names are the whole listing.
    pub fn is_complete(&self) -> bool {
        self.rest.is_none()
    }
}

/// The pages after a first one: the prefix that listing was asked for and the service's token
/// for its next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRest {
    /// The prefix of the names listed.
    pub prefix: String,
    /// The service's token for the next page.
    pub token: String,
}

/// A fetched value with the metadata needed to show it. `Debug` never prints the bytes.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The value, byte for byte.
    pub bytes: SecretBytes,
    /// How the service stores it.
    pub kind: ValueKind,
    /// The service's version identifier (SSM version number and last-modified instant, see
    /// [`same_version`]; Secrets Manager VersionId).
    pub version: Option<String>,
    /// When this version was stored, if the service says.
    pub last_modified: Option<SystemTime>,
    /// What else the service says about it (shown as extended attributes).
    pub meta: Metadata,
}

/// A value's metadata beyond its version: never part of the value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The value's ARN.
    pub arn: Option<String>,
    /// The staging labels of a secret's version (AWSCURRENT, AWSPREVIOUS, ...).
    pub stages: Vec<String>,
}

/// Whether `current` (from [`Provider::versions`]) names the version `cached` was fetched at. A
/// Parameter Store version is its number and its last-modified instant (`3@1764700000123`: a
/// parameter deleted and created again starts at version 1 again); a version known only by its
/// number (as a write returns it) matches any instant of that number.
pub fn same_version(cached: Option<&str>, current: &str) -> bool {
    match cached {
        Some(cached) if cached.contains('@') => cached == current,
        Some(cached) => current.split('@').next() == Some(cached),
        None => false,
    }
}

/// A version as people read it: the number or id, without the instant that tells a recreated
/// parameter's version 1 from the first one.
pub fn shown_version(version: &str) -> &str {
    version.split('@').next().unwrap_or(version)
}

/// The answer for one name in a batch fetch.
pub type FetchResult = (String, Result<Fetched>);

/// Whether `name` is listed under `prefix`. The root prefix `/` also covers SSM's flat names
/// (those without a leading `/`).
pub fn under_prefix(prefix: &str, name: &str) -> bool {
    prefix == "/" || name.starts_with(prefix)
}

/// A backing store for one service. Implementations count their API calls.
///
/// Calls block the calling thread; AWS providers bridge to the async SDK internally.
pub trait Provider: Send + Sync {
    /// Every name that starts with `prefix` (`/prod/`, `prod/db`, or `/` for every parameter,
    /// flat names included). Metadata only, never values.
    fn list(&self, prefix: &str) -> Result<Vec<Listed>>;

    /// The first page of the names that start with `prefix` that holds one: what lies there,
    /// without listing it whole. Providers that do not page answer with the whole listing.
    fn probe(&self, prefix: &str) -> Result<Page> {
        Ok(Page { names: self.list(prefix)?, rest: None })
    }

    /// The names on the pages after a [`Provider::probe`]'s partial page, from its `rest` on.
    /// Providers that do not page list the prefix whole.
    fn list_rest(&self, rest: &PageRest) -> Result<Vec<Listed>> {
        self.list(&rest.prefix)
    }

    /// The current version of each of `names` that exists, asked as cheaply as the service
    /// allows (metadata calls, no values). A name missing from the answer may be gone.
    fn versions(&self, names: &[String]) -> Result<HashMap<String, String>>;

    /// The values of `names` (at most [`Provider::batch_limit`] of them), one answer per name.
    /// A whole-call failure is an `Err`; a per-name failure is an `Err` inside the answer.
    fn fetch(&self, names: &[String]) -> Result<Vec<FetchResult>>;

    /// Replace the value of the existing `name` with `bytes`, keeping how it is stored (parameter
    /// type, KMS key, description, tier, allowed pattern; secret string or binary). `current` is
    /// the value being replaced. Returns the value as now stored.
    fn update(&self, name: &str, current: &Fetched, bytes: SecretBytes) -> Result<Fetched>;

    /// Create `name`, which must not exist yet, holding `bytes` stored as `kind` (a parameter
    /// type, or a secret's string or binary form). Returns the value as now stored.
    fn create(&self, name: &str, kind: ValueKind, bytes: SecretBytes) -> Result<Fetched>;

    /// Delete `name`: a parameter at once, a secret with the service's default recovery window
    /// (never a forced deletion).
    fn delete(&self, name: &str) -> Result<()>;

    /// How many names one [`Provider::fetch`] call may carry.
    fn batch_limit(&self) -> usize;

    /// Calls made so far, per API action.
    fn call_counts(&self) -> CallCounts;

    /// Calls ended so far, per API action and outcome.
    fn call_outcomes(&self) -> OutcomeCounts;
}
