//! What a Parameter Store mount shows beyond names: ssm-cache's filters (`--ps-filter
//! Type=SecureString`, `--ps-filter KeyId=alias/x`, ANDed), its decryption switch
//! (`--no-decrypt`), and the reference bridge (`/aws/reference/secretsmanager/NAME`, a secret
//! read through Parameter Store).

use crate::provider::ValueKind;

/// The Parameter Store name prefix under which Secrets Manager secrets are read.
pub const REFERENCE_PREFIX: &str = "/aws/reference/secretsmanager/";

/// Whether `name` reads a secret through Parameter Store.
pub fn is_reference(name: &str) -> bool {
    name.strip_prefix(REFERENCE_PREFIX).is_some_and(|secret| !secret.is_empty())
}

/// What a DescribeParameters filter key may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKey {
    /// The parameter type: String, StringList or SecureString.
    Type,
    /// The KMS key of SecureString parameters (key id, ARN or alias).
    KeyId,
}

/// One filter: parameters whose `key` is one of `values`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsFilter {
    /// What is compared.
    pub key: FilterKey,
    /// The values accepted.
    pub values: Vec<String>,
}

impl PsFilter {
    /// Parse `Type=SecureString`, `Type=String,StringList` or `KeyId=alias/app`, checking the
    /// key and (for Type) the values as ssm-cache's filter classes do, before anything is sent.
    pub fn parse(text: &str) -> Result<PsFilter, String> {
        let (key, values) = text.split_once('=').ok_or_else(|| format!("{text:?}: expected KEY=VALUE[,VALUE]"))?;
        let key = match key {
            "Type" => FilterKey::Type,
            "KeyId" => FilterKey::KeyId,
            other => return Err(format!("{other:?}: a filter key is Type or KeyId")),
        };
        let values: Vec<String> = values.split(',').map(str::trim).map(str::to_string).collect();
        if values.iter().any(String::is_empty) {
            return Err(format!("{text:?}: empty filter value"));
        }
        if key == FilterKey::Type {
            if let Some(bad) = values.iter().find(|v| !["String", "StringList", "SecureString"].contains(&v.as_str())) {
                return Err(format!("{bad:?}: a Type filter takes String, StringList or SecureString"));
            }
        }
        Ok(PsFilter { key, values })
    }

    /// The key as DescribeParameters names it.
    pub fn key_name(&self) -> &'static str {
        match self.key {
            FilterKey::Type => "Type",
            FilterKey::KeyId => "KeyId",
        }
    }

    /// Whether a value of `kind` passes (a KeyId filter is only checked by the listing).
    pub fn accepts(&self, kind: ValueKind) -> bool {
        let secret = matches!(kind, ValueKind::SecretString | ValueKind::SecretBinary);
        secret || self.key != FilterKey::Type || self.values.iter().any(|value| value == kind.name())
    }
}

/// How a Parameter Store provider reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsOptions {
    /// Decrypt SecureString values (`--no-decrypt` turns it off; references are always
    /// decrypted, as AWS requires).
    pub decrypt: bool,
    /// Only parameters passing every filter are shown.
    pub filters: Vec<PsFilter>,
}

impl Default for PsOptions {
    fn default() -> Self {
        PsOptions { decrypt: true, filters: Vec::new() }
    }
}

impl PsOptions {
    /// Whether a value of `kind` passes every filter that can be checked on a value.
    pub fn accepts(&self, kind: ValueKind) -> bool {
        self.filters.iter().all(|filter| filter.accepts(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_before_anything_is_sent() {
        let types = PsFilter::parse("Type=String,StringList").unwrap();
        assert_eq!(types.values, ["String", "StringList"]);
        assert!(types.accepts(ValueKind::StringList) && !types.accepts(ValueKind::SecureString));
        assert_eq!(PsFilter::parse("KeyId=alias/app").unwrap().key, FilterKey::KeyId);
        assert!(PsFilter::parse("Type=Secret").unwrap_err().contains("String, StringList or SecureString"));
        assert!(PsFilter::parse("Tier=Standard").unwrap_err().contains("Type or KeyId"));
        assert!(PsFilter::parse("Type").is_err() && PsFilter::parse("KeyId=").is_err());
    }

    #[test]
    fn references_name_a_secret() {
        assert!(is_reference("/aws/reference/secretsmanager/app/db"));
        assert!(!is_reference("/aws/reference/secretsmanager/") && !is_reference("/app/db"));
    }
}
