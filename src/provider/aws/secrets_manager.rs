//! The Secrets Manager provider: ListSecrets to list, DescribeSecret (concurrently) to ask
//! versions, GetSecretValue or BatchGetSecretValue to read.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_sdk_secretsmanager::Client;

use super::call::Caller;
use super::{classify_code, to_system_time, Bridge};
use crate::error::{Error, Result};
use crate::provider::{
    selector, under_prefix, CallCounts, FetchResult, Fetched, Listed, Metadata, OutcomeCounts, Page, PageRest,
    Provider, SecretBytes, Service, ValueKind,
};

/// The version stage that names a secret's current value.
pub const CURRENT_STAGE: &str = "AWSCURRENT";

/// Largest page ListSecrets returns.
pub const LIST_PAGE_SIZE: i32 = 100;

/// Secrets Manager through the AWS SDK.
#[derive(Debug)]
pub struct SecretsManager {
    client: Client,
    bridge: Bridge,
    caller: Arc<Caller>,
    /// The version stage plain names show (`--version-stage`; AWSCURRENT by default).
    stage: String,
}

impl SecretsManager {
    /// A provider using `client`, blocking through `bridge`, sending through `caller`, showing
    /// current versions.
    pub fn new(client: Client, bridge: Bridge, caller: Caller) -> Self {
        SecretsManager::with_stage(client, bridge, caller, CURRENT_STAGE.to_string())
    }

    /// A provider whose plain names show (and whose writes give) the version stage `stage`.
    pub fn with_stage(client: Client, bridge: Bridge, caller: Caller, stage: String) -> Self {
        SecretsManager { client, bridge, caller: Arc::new(caller), stage }
    }

    /// Whether plain names show the current version (BatchGetSecretValue reads only those).
    fn shows_current(&self) -> bool {
        self.stage == CURRENT_STAGE
    }

    /// The secrets whose names start with `prefix`, page by page (a page that fails is tried
    /// again on its own; the pages before it are kept); with `first_only`, up to the first page
    /// that holds one; with `from` (a next-page token), from that page on.
    async fn list_pages(&self, prefix: &str, first_only: bool, from: Option<String>) -> Result<Page> {
        let mut listed = Vec::new();
        let mut next_token = from;
        loop {
            let mut request = self.client.list_secrets().max_results(LIST_PAGE_SIZE).set_next_token(next_token);
            if !prefix.is_empty() {
                request = request.filters(Filter::builder().key(FilterNameStringType::Name).values(prefix).build());
            }
            let page = self.caller.send_page("ListSecrets", || request.clone().send()).await?;
            listed.extend(page.secret_list().iter().filter_map(|s| {
                let name = s.name()?;
                under_prefix(prefix, name).then(|| Listed {
                    name: name.to_string(),
                    last_modified: to_system_time(s.last_changed_date().or(s.created_date())),
                })
            }));
            next_token = page.next_token().map(str::to_string);
            if next_token.is_none() || (first_only && !listed.is_empty()) {
                let rest = next_token.map(|token| PageRest { prefix: prefix.to_string(), token });
                return Ok(Page { names: listed, rest });
            }
        }
    }

    /// One secret's value; `name` may carry a selector (`NAME:STAGE`, `NAME:VERSIONID`).
    async fn get_one(&self, name: &str) -> Result<Fetched> {
        let request = match selector::split(name) {
            None if self.shows_current() => self.client.get_secret_value().secret_id(name),
            None => self.client.get_secret_value().secret_id(name).version_stage(&self.stage),
            Some((base, id)) if selector::is_version_id(id) => {
                self.client.get_secret_value().secret_id(base).version_id(id)
            }
            Some((base, stage)) => self.client.get_secret_value().secret_id(base).version_stage(stage),
        };
        let out = self.caller.send("GetSecretValue", || request.clone().send()).await?;
        Ok(to_fetched(
            out.secret_string(),
            out.secret_binary().map(|b| b.as_ref()),
            out.version_id(),
            out.created_date(),
            Metadata { arn: out.arn().map(str::to_string), stages: out.version_stages().to_vec() },
        ))
    }

    async fn get_batch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        let mut results = Vec::with_capacity(names.len());
        let mut next_token = None;
        loop {
            let request = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(names.to_vec()))
                .set_next_token(next_token);
            let out = self.caller.send("BatchGetSecretValue", || request.clone().send()).await?;
            for entry in out.secret_values() {
                let Some(name) = entry.name() else { continue };
                let fetched = to_fetched(
                    entry.secret_string(),
                    entry.secret_binary().map(|b| b.as_ref()),
                    entry.version_id(),
                    entry.created_date(),
                    Metadata { arn: entry.arn().map(str::to_string), stages: entry.version_stages().to_vec() },
                );
                results.push((name.to_string(), Ok(fetched)));
            }
            for error in out.errors() {
                let Some(id) = error.secret_id() else { continue };
                let code = error.error_code().unwrap_or("Unknown");
                let message = format!("{code}: {}", error.message().unwrap_or("no message"));
                results.push((id.to_string(), Err(classify_code(code, 400, message))));
            }
            next_token = out.next_token().map(str::to_string);
            if next_token.is_none() {
                return Ok(results);
            }
        }
    }
}

fn to_fetched(
    string: Option<&str>,
    binary: Option<&[u8]>,
    version: Option<&str>,
    created: Option<&aws_sdk_secretsmanager::primitives::DateTime>,
    meta: Metadata,
) -> Fetched {
    let (kind, bytes) = match (string, binary) {
        (Some(s), _) => (ValueKind::SecretString, s.as_bytes().to_vec()),
        (None, Some(b)) => (ValueKind::SecretBinary, b.to_vec()),
        (None, None) => (ValueKind::SecretString, Vec::new()),
    };
    Fetched {
        bytes: SecretBytes::new(bytes),
        kind,
        version: version.map(str::to_string),
        last_modified: to_system_time(created),
        meta,
    }
}

/// The text of a string secret; a string secret must stay UTF-8.
fn secret_text(bytes: &SecretBytes) -> Result<&str> {
    std::str::from_utf8(bytes.as_slice()).map_err(|_| Error::InvalidInput("a string secret must be UTF-8 text".into()))
}

/// The value just written, as the cache should now hold it.
fn stored(bytes: SecretBytes, kind: ValueKind, version: Option<&str>) -> Fetched {
    let last_modified = Some(std::time::SystemTime::now());
    Fetched { bytes, kind, version: version.map(str::to_string), last_modified, meta: Metadata::default() }
}

impl Provider for SecretsManager {
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        Ok(self.bridge.run(self.list_pages(prefix, false, None))?.names)
    }

    fn list_rest(&self, rest: &PageRest) -> Result<Vec<Listed>> {
        Ok(self.bridge.run(self.list_pages(&rest.prefix, false, Some(rest.token.clone())))?.names)
    }

    fn probe(&self, prefix: &str) -> Result<Page> {
        self.bridge.run(self.list_pages(prefix, true, None))
    }

    fn fetch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        self.bridge.run(async {
            // BatchGetSecretValue reads current versions only: selected versions (and every
            // name when plain names show another stage) one by one.
            let (selected, plain): (Vec<String>, Vec<String>) =
                names.iter().cloned().partition(|name| selector::has_selector(name) || !self.shows_current());
            let mut results = match plain.as_slice() {
                [] => Vec::new(),
                [one] => vec![(one.clone(), self.get_one(one).await)],
                _ => self.get_batch(&plain).await?,
            };
            for name in selected {
                let answer = self.get_one(&name).await;
                results.push((name, answer));
            }
            Ok(results)
        })
    }

    fn versions(&self, names: &[String]) -> Result<HashMap<String, String>> {
        self.bridge.run(async {
            let mut describes = tokio::task::JoinSet::new();
            for name in names {
                let (client, caller, name) = (self.client.clone(), self.caller.clone(), name.clone());
                describes.spawn(async move {
                    let id = selector::split(&name).map_or(name.as_str(), |(base, _)| base).to_string();
                    let out = caller.send("DescribeSecret", || client.describe_secret().secret_id(&id).send()).await;
                    (name, out)
                });
            }
            let mut versions = HashMap::with_capacity(names.len());
            while let Some(joined) = describes.join_next().await {
                let (name, out) = joined.map_err(|e| Error::Transient(format!("DescribeSecret task: {e}")))?;
                let out = match out {
                    Err(Error::NotFound) => continue,
                    other => other?,
                };
                // The version the name shows: its stage's (`--version-stage` for a plain name).
                let shown = selector::split(&name).map_or(self.stage.as_str(), |(_, stage)| stage);
                let current = out.version_ids_to_stages().and_then(|stages| {
                    stages.iter().find(|(_, s)| s.iter().any(|stage| stage == shown)).map(|(id, _)| id.clone())
                });
                if let Some(version) = current {
                    versions.insert(name, version);
                }
            }
            Ok(versions)
        })
    }

    fn update(&self, name: &str, current: &Fetched, bytes: SecretBytes) -> Result<Fetched> {
        // Writing a plain name stores the version it shows: with another stage than
        // AWSCURRENT, the new version gets that stage (a pending value, say) and AWSCURRENT
        // stays where it was.
        let stages = (!self.shows_current()).then(|| vec![self.stage.clone()]);
        let request = self.client.put_secret_value().secret_id(name).set_version_stages(stages);
        let request = match current.kind {
            ValueKind::SecretBinary => request.secret_binary(Blob::new(bytes.as_slice())),
            _ => request.secret_string(secret_text(&bytes)?),
        };
        self.bridge.run(async {
            let out = self.caller.send("PutSecretValue", || request.clone().send()).await?;
            Ok(stored(bytes.clone(), current.kind, out.version_id()))
        })
    }

    fn create(&self, name: &str, kind: ValueKind, bytes: SecretBytes) -> Result<Fetched> {
        let request = self.client.create_secret().name(name);
        let request = match kind {
            ValueKind::SecretBinary => request.secret_binary(Blob::new(bytes.as_slice())),
            _ => request.secret_string(secret_text(&bytes)?),
        };
        self.bridge.run(async {
            let out = self.caller.send("CreateSecret", || request.clone().send()).await?;
            Ok(stored(bytes.clone(), kind, out.version_id()))
        })
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.bridge.run(async {
            self.caller.send("DeleteSecret", || self.client.delete_secret().secret_id(name).send()).await?;
            Ok(())
        })
    }

    fn batch_limit(&self) -> usize {
        Service::SecretsManager.batch_limit()
    }

    fn call_counts(&self) -> CallCounts {
        self.caller.call_counts()
    }

    fn call_outcomes(&self) -> OutcomeCounts {
        self.caller.call_outcomes()
    }
}
