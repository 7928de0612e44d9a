//! The Parameter Store provider: DescribeParameters to list and to ask versions (50 at a time),
//! GetParameters (10 at a time) to read.
//!
//! Values are never read with GetParametersByPath: a recursive path read can return parameters
//! that an IAM deny on GetParameter(s) is meant to hide.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_ssm::operation::put_parameter::builders::PutParameterFluentBuilder;
use aws_sdk_ssm::types::{ParameterMetadata, ParameterStringFilter, ParameterTier, ParameterType};
use aws_sdk_ssm::Client;

use super::call::Caller;
use super::{to_system_time, Bridge};
use crate::error::{Error, Result};
use crate::provider::ps_options::{is_reference, PsOptions};
use crate::provider::{
    selector, under_prefix, CallCounts, FetchResult, Fetched, Listed, Metadata, OutcomeCounts, Page, PageRest,
    Provider, SecretBytes, Service, ValueKind,
};

/// Largest value of a Standard-tier parameter (Advanced: 8 KB).
pub const STANDARD_VALUE_LIMIT: usize = 4096;
/// Largest page DescribeParameters returns.
pub const DESCRIBE_PAGE_SIZE: i32 = 50;

/// Parameter Store through the AWS SDK.
#[derive(Debug)]
pub struct ParameterStore {
    client: Client,
    bridge: Bridge,
    caller: Caller,
    /// The settings of names whose version was just asked alone (a write's version check),
    /// taken by the update that follows, so a write costs that check and `PutParameter` only.
    checked: Mutex<HashMap<String, ParameterMetadata>>,
    options: PsOptions,
}

impl ParameterStore {
    /// A provider using `client`, blocking through `bridge`, sending through `caller`,
    /// decrypting values and showing every parameter.
    pub fn new(client: Client, bridge: Bridge, caller: Caller) -> Self {
        ParameterStore::with_options(client, bridge, caller, PsOptions::default())
    }

    /// A provider reading as `options` say (filters, decryption).
    pub fn with_options(client: Client, bridge: Bridge, caller: Caller, options: PsOptions) -> Self {
        ParameterStore { client, bridge, caller, checked: Mutex::default(), options }
    }

    /// The settings found by the version check just made for `name`, if any (taken once).
    fn checked_settings(&self, name: &str) -> Option<ParameterMetadata> {
        self.checked.lock().unwrap_or_else(|p| p.into_inner()).remove(name)
    }
}

/// A DescribeParameters filter: `key` `option` `values` (e.g. Name BeginsWith /prod).
fn describe_filter(key: &str, option: &str, values: &[String]) -> Result<ParameterStringFilter> {
    ParameterStringFilter::builder()
        .key(key)
        .option(option)
        .set_values(Some(values.to_vec()))
        .build()
        .map_err(|e| Error::Service(e.to_string()))
}

/// A parameter's version as compared by refreshes: its number and its last-modified instant in
/// milliseconds (`3@1764700000123`), since a parameter deleted and created again starts at
/// version 1 again (see [`crate::provider::same_version`]).
fn version_token(version: i64, modified: Option<&aws_sdk_ssm::primitives::DateTime>) -> String {
    match modified.and_then(|at| at.to_millis().ok()) {
        Some(millis) => format!("{version}@{millis}"),
        None => version.to_string(),
    }
}

/// The text of a parameter value; parameters hold UTF-8 text only.
fn parameter_text(bytes: &SecretBytes) -> Result<&str> {
    std::str::from_utf8(bytes.as_slice()).map_err(|_| Error::InvalidInput("parameter values must be UTF-8 text".into()))
}

impl ParameterStore {
    /// Send a PutParameter `request` (its settings chosen by the caller) storing `bytes` as
    /// `name`; returns the value as now stored.
    async fn put(
        &self,
        request: PutParameterFluentBuilder,
        name: &str,
        bytes: &SecretBytes,
        kind: ValueKind,
    ) -> Result<Fetched> {
        let value = parameter_text(bytes)?;
        let out = self.caller.send("PutParameter", || request.clone().name(name).value(value).send()).await?;
        Ok(Fetched {
            bytes: bytes.clone(),
            kind,
            version: Some(out.version().to_string()),
            last_modified: Some(std::time::SystemTime::now()),
            meta: Metadata::default(),
        })
    }

    /// The parameters whose names start with `prefix`, page by page (a page that fails is
    /// tried again on its own; the pages before it are kept; pages may be empty and still carry
    /// a token); with `first_only`, up to the first page that holds one; with `from` (a next-page
    /// token), from that page on.
    async fn list_pages(&self, prefix: &str, first_only: bool, from: Option<String>) -> Result<Page> {
        let mut listed = Vec::new();
        let mut next_token = from;
        loop {
            let mut request =
                self.client.describe_parameters().max_results(DESCRIBE_PAGE_SIZE).set_next_token(next_token);
            if prefix != "/" && !prefix.is_empty() {
                request = request.parameter_filters(describe_filter("Name", "BeginsWith", &[prefix.to_string()])?);
            }
            for filter in &self.options.filters {
                request = request.parameter_filters(describe_filter(filter.key_name(), "Equals", &filter.values)?);
            }
            let page = self.caller.send_page("DescribeParameters", || request.clone().send()).await?;
            listed.extend(page.parameters().iter().filter_map(|p| {
                let name = p.name()?;
                under_prefix(prefix, name)
                    .then(|| Listed { name: name.to_string(), last_modified: to_system_time(p.last_modified_date()) })
            }));
            next_token = page.next_token().map(str::to_string);
            if next_token.is_none() || (first_only && !listed.is_empty()) {
                let rest = next_token.map(|token| PageRest { prefix: prefix.to_string(), token });
                return Ok(Page { names: listed, rest });
            }
        }
    }

    /// One GetParameters call for `names`, decrypted; with `answering`, every value returned
    /// answers that one (selected) name.
    async fn get_parameters(&self, names: &[String], answering: Option<&String>) -> Result<Vec<FetchResult>> {
        // A reference to a secret is only answered decrypted.
        let decrypt = self.options.decrypt || names.iter().any(|name| is_reference(name));
        let request = self.client.get_parameters().set_names(Some(names.to_vec())).with_decryption(decrypt);
        let out = self.caller.send("GetParameters", || request.clone().send()).await?;
        let mut results: Vec<FetchResult> = Vec::with_capacity(names.len());
        for parameter in out.parameters() {
            let Some(name) = answering.map(String::as_str).or(parameter.name()) else { continue };
            let kind = match parameter.r#type() {
                Some(ParameterType::SecureString) => ValueKind::SecureString,
                Some(ParameterType::StringList) => ValueKind::StringList,
                _ => ValueKind::String,
            };
            if !self.options.accepts(kind) {
                // Filtered out: not shown, as if it did not exist.
                results.push((name.to_string(), Err(Error::NotFound)));
                continue;
            }
            let fetched = Fetched {
                bytes: SecretBytes::new(parameter.value().unwrap_or_default().as_bytes().to_vec()),
                kind,
                version: Some(version_token(parameter.version(), parameter.last_modified_date())),
                last_modified: to_system_time(parameter.last_modified_date()),
                meta: Metadata { arn: parameter.arn().map(str::to_string), stages: Vec::new() },
            };
            results.push((name.to_string(), Ok(fetched)));
        }
        for invalid in out.invalid_parameters() {
            results.push((invalid.clone(), Err(Error::NotFound)));
        }
        Ok(results)
    }

    /// The stored settings of one parameter (type, key, description, tier, pattern).
    async fn metadata(&self, name: &str) -> Result<ParameterMetadata> {
        let filter = describe_filter("Name", "Equals", &[name.to_string()])?;
        let request = self.client.describe_parameters().parameter_filters(filter);
        let out = self.caller.send("DescribeParameters", || request.clone().send()).await?;
        out.parameters().iter().find(|p| p.name() == Some(name)).cloned().ok_or(Error::NotFound)
    }
}

impl Provider for ParameterStore {
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
        // A selected version (`NAME:3`, `NAME:label`) comes back under its base name (AWS adds
        // the selector beside it, moto does not): each is asked alone, so its answer is its own.
        // A reference comes back under the secret's name (moto) or its own (AWS): alone too.
        let (selected, plain): (Vec<String>, Vec<String>) =
            names.iter().cloned().partition(|name| selector::has_selector(name) || is_reference(name));
        self.bridge.run(async {
            let mut results = match plain.is_empty() {
                true => Vec::new(),
                false => self.get_parameters(&plain, None).await?,
            };
            for name in selected {
                match self.get_parameters(std::slice::from_ref(&name), Some(&name)).await {
                    Ok(answers) => results.extend(answers),
                    Err(err) => results.push((name, Err(err))),
                }
            }
            Ok(results)
        })
    }

    fn versions(&self, names: &[String]) -> Result<HashMap<String, String>> {
        // DescribeParameters knows no selectors and no references: those are left out (read
        // again).
        let plain: Vec<String> =
            names.iter().filter(|name| !selector::has_selector(name) && !is_reference(name)).cloned().collect();
        self.bridge.run(async {
            let mut versions = HashMap::with_capacity(plain.len());
            for chunk in plain.chunks(DESCRIBE_PAGE_SIZE as usize) {
                let mut next_token = None;
                loop {
                    let request = self
                        .client
                        .describe_parameters()
                        .parameter_filters(describe_filter("Name", "Equals", chunk)?)
                        .max_results(DESCRIBE_PAGE_SIZE)
                        .set_next_token(next_token);
                    let page = self.caller.send("DescribeParameters", || request.clone().send()).await?;
                    for parameter in page.parameters() {
                        if let Some(name) = parameter.name() {
                            let token = version_token(parameter.version(), parameter.last_modified_date());
                            versions.insert(name.to_string(), token);
                            if plain.len() == 1 {
                                let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
                                checked.insert(name.to_string(), parameter.clone());
                            }
                        }
                    }
                    next_token = page.next_token().map(str::to_string);
                    if next_token.is_none() {
                        break;
                    }
                }
            }
            Ok(versions)
        })
    }

    fn update(&self, name: &str, current: &Fetched, bytes: SecretBytes) -> Result<Fetched> {
        let value = parameter_text(&bytes)?;
        self.bridge.run(async {
            // The write's version check has just described this parameter; ask only without it.
            let metadata = match self.checked_settings(name) {
                Some(metadata) => metadata,
                None => self.metadata(name).await?,
            };
            let tier = metadata.tier().cloned().unwrap_or(ParameterTier::Standard);
            if tier == ParameterTier::Standard && value.len() > STANDARD_VALUE_LIMIT {
                return Err(Error::TooLarge);
            }
            let request = self
                .client
                .put_parameter()
                .overwrite(true)
                .set_type(metadata.r#type().cloned())
                .set_key_id(metadata.key_id().map(str::to_string))
                .set_description(metadata.description().map(str::to_string))
                .set_allowed_pattern(metadata.allowed_pattern().map(str::to_string))
                .tier(tier);
            self.put(request, name, &bytes, current.kind).await
        })
    }

    fn create(&self, name: &str, kind: ValueKind, bytes: SecretBytes) -> Result<Fetched> {
        let value = parameter_text(&bytes)?;
        if value.is_empty() {
            return Err(Error::InvalidInput(format!("{name}: a parameter cannot be empty")));
        }
        if value.len() > STANDARD_VALUE_LIMIT {
            return Err(Error::TooLarge);
        }
        let parameter_type = match kind {
            ValueKind::String => ParameterType::String,
            ValueKind::StringList => ParameterType::StringList,
            _ => ParameterType::SecureString,
        };
        let request = self.client.put_parameter().overwrite(false).r#type(parameter_type).tier(ParameterTier::Standard);
        self.bridge.run(self.put(request, name, &bytes, kind))
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.bridge.run(async {
            self.caller.send("DeleteParameter", || self.client.delete_parameter().name(name).send()).await?;
            Ok(())
        })
    }

    fn batch_limit(&self) -> usize {
        Service::ParameterStore.batch_limit()
    }

    fn call_counts(&self) -> CallCounts {
        self.caller.call_counts()
    }

    fn call_outcomes(&self) -> OutcomeCounts {
        self.caller.call_outcomes()
    }
}
