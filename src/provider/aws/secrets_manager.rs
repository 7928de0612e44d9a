//! The Secrets Manager provider: ListSecrets to list, GetSecretValue or BatchGetSecretValue to read.

use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_sdk_secretsmanager::Client;

use super::{classify, classify_code, to_system_time, Bridge};
use crate::error::{Error, Result};
use crate::provider::{
    under_prefix, ApiCounters, CallCounts, FetchResult, Fetched, Listed, Provider, SecretBytes, Service, ValueKind,
};

/// Largest page ListSecrets returns.
pub const LIST_PAGE_SIZE: i32 = 100;

/// Secrets Manager through the AWS SDK.
#[derive(Debug)]
pub struct SecretsManager {
    client: Client,
    bridge: Bridge,
    counters: ApiCounters,
}

impl SecretsManager {
    /// A provider using `client`, blocking through `bridge`.
    pub fn new(client: Client, bridge: Bridge) -> Self {
        SecretsManager { client, bridge, counters: ApiCounters::default() }
    }

    async fn get_one(&self, name: &str) -> Result<Fetched> {
        self.counters.record("GetSecretValue");
        let out = self.client.get_secret_value().secret_id(name).send().await.map_err(classify)?;
        Ok(to_fetched(
            out.secret_string(),
            out.secret_binary().map(|b| b.as_ref()),
            out.version_id(),
            out.created_date(),
        ))
    }

    async fn get_batch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        let mut results = Vec::with_capacity(names.len());
        let mut next_token = None;
        loop {
            self.counters.record("BatchGetSecretValue");
            let out = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(names.to_vec()))
                .set_next_token(next_token)
                .send()
                .await
                .map_err(classify)?;
            for entry in out.secret_values() {
                let Some(name) = entry.name() else { continue };
                let fetched = to_fetched(
                    entry.secret_string(),
                    entry.secret_binary().map(|b| b.as_ref()),
                    entry.version_id(),
                    entry.created_date(),
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
    }
}

/// The text of a string secret; a string secret must stay UTF-8.
fn secret_text(bytes: &SecretBytes) -> Result<&str> {
    std::str::from_utf8(bytes.as_slice()).map_err(|_| Error::InvalidInput("a string secret must be UTF-8 text".into()))
}

/// The value just written, as the cache should now hold it.
fn stored(bytes: SecretBytes, kind: ValueKind, version: Option<&str>) -> Fetched {
    Fetched { bytes, kind, version: version.map(str::to_string), last_modified: Some(std::time::SystemTime::now()) }
}

impl Provider for SecretsManager {
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.bridge.run(async {
            let mut listed = Vec::new();
            let mut next_token = None;
            loop {
                let mut request = self.client.list_secrets().max_results(LIST_PAGE_SIZE).set_next_token(next_token);
                if !prefix.is_empty() {
                    request = request.filters(Filter::builder().key(FilterNameStringType::Name).values(prefix).build());
                }
                self.counters.record("ListSecrets");
                let page = request.send().await.map_err(classify)?;
                listed.extend(page.secret_list().iter().filter_map(|s| {
                    let name = s.name()?;
                    under_prefix(prefix, name).then(|| Listed {
                        name: name.to_string(),
                        last_modified: to_system_time(s.last_changed_date().or(s.created_date())),
                    })
                }));
                next_token = page.next_token().map(str::to_string);
                if next_token.is_none() {
                    return Ok(listed);
                }
            }
        })
    }

    fn fetch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        self.bridge.run(async {
            match names {
                [one] => Ok(vec![(one.clone(), self.get_one(one).await)]),
                _ => self.get_batch(names).await,
            }
        })
    }

    fn update(&self, name: &str, current: &Fetched, bytes: SecretBytes) -> Result<Fetched> {
        let request = self.client.put_secret_value().secret_id(name);
        let request = match current.kind {
            ValueKind::SecretBinary => request.secret_binary(Blob::new(bytes.as_slice())),
            _ => request.secret_string(secret_text(&bytes)?),
        };
        self.bridge.run(async {
            self.counters.record("PutSecretValue");
            let out = request.send().await.map_err(classify)?;
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
            self.counters.record("CreateSecret");
            let out = request.send().await.map_err(classify)?;
            Ok(stored(bytes.clone(), kind, out.version_id()))
        })
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.bridge.run(async {
            self.counters.record("DeleteSecret");
            self.client.delete_secret().secret_id(name).send().await.map_err(classify)?;
            Ok(())
        })
    }

    fn batch_limit(&self) -> usize {
        Service::SecretsManager.batch_limit()
    }

    fn call_counts(&self) -> CallCounts {
        self.counters.snapshot()
    }
}
