//! The Parameter Store provider: DescribeParameters to list, GetParameters (10 at a time) to read.
//!
//! Values are never read with GetParametersByPath: a recursive path read can return parameters
//! that an IAM deny on GetParameter(s) is meant to hide.

use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType};
use aws_sdk_ssm::Client;

use super::{classify, to_system_time, Bridge};
use crate::error::{Error, Result};
use crate::provider::{
    under_prefix, ApiCounters, CallCounts, FetchResult, Fetched, Listed, Provider, SecretBytes, ValueKind,
};

/// Most names GetParameters accepts in one call.
pub const GET_PARAMETERS_LIMIT: usize = 10;
/// Largest page DescribeParameters returns.
pub const DESCRIBE_PAGE_SIZE: i32 = 50;

/// Parameter Store through the AWS SDK.
#[derive(Debug)]
pub struct ParameterStore {
    client: Client,
    bridge: Bridge,
    counters: ApiCounters,
}

impl ParameterStore {
    /// A provider using `client`, blocking through `bridge`.
    pub fn new(client: Client, bridge: Bridge) -> Self {
        ParameterStore { client, bridge, counters: ApiCounters::default() }
    }
}

impl Provider for ParameterStore {
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.bridge.run(async {
            let mut listed = Vec::new();
            let mut next_token = None;
            loop {
                let mut request =
                    self.client.describe_parameters().max_results(DESCRIBE_PAGE_SIZE).set_next_token(next_token);
                if prefix != "/" && !prefix.is_empty() {
                    let path = prefix.trim_end_matches('/');
                    let filter = ParameterStringFilter::builder()
                        .key("Path")
                        .option("Recursive")
                        .values(path)
                        .build()
                        .map_err(|e| Error::Service(e.to_string()))?;
                    request = request.parameter_filters(filter);
                }
                self.counters.record("DescribeParameters");
                let page = request.send().await.map_err(classify)?;
                listed.extend(page.parameters().iter().filter_map(|p| {
                    let name = p.name()?;
                    under_prefix(prefix, name).then(|| Listed {
                        name: name.to_string(),
                        last_modified: to_system_time(p.last_modified_date()),
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
            self.counters.record("GetParameters");
            let out = self
                .client
                .get_parameters()
                .set_names(Some(names.to_vec()))
                .with_decryption(true)
                .send()
                .await
                .map_err(classify)?;
            let mut results: Vec<FetchResult> = Vec::with_capacity(names.len());
            for parameter in out.parameters() {
                let Some(name) = parameter.name() else { continue };
                let kind = match parameter.r#type() {
                    Some(ParameterType::SecureString) => ValueKind::SecureString,
                    Some(ParameterType::StringList) => ValueKind::StringList,
                    _ => ValueKind::String,
                };
                let fetched = Fetched {
                    bytes: SecretBytes::new(parameter.value().unwrap_or_default().as_bytes().to_vec()),
                    kind,
                    version: Some(parameter.version().to_string()),
                    last_modified: to_system_time(parameter.last_modified_date()),
                };
                results.push((name.to_string(), Ok(fetched)));
            }
            for invalid in out.invalid_parameters() {
                results.push((invalid.clone(), Err(Error::NotFound)));
            }
            Ok(results)
        })
    }

    fn batch_limit(&self) -> usize {
        GET_PARAMETERS_LIMIT
    }

    fn call_counts(&self) -> CallCounts {
        self.counters.snapshot()
    }
}
