//! A value's metadata as extended attributes (`user.secretfs.version`, `.type`, `.arn`,
//! `.last_modified`, `.stages`) on its file or directory and on the files shown inside it (JSON
//! keys, `.value`). Read-only; no attribute ever holds a value.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::SecretFs;
use crate::error::Result;
use crate::inodes::Ino;
use crate::provider::{shown_version, Fetched};

/// The namespace of every attribute secretfs shows.
pub const XATTR_PREFIX: &str = "user.secretfs.";

impl SecretFs {
    /// The extended attributes of `ino`, by name: the metadata of the value it shows or belongs
    /// to (none for plain directories, the root, control files and files not stored yet).
    pub fn xattrs(&self, ino: Ino) -> Result<Vec<(String, Vec<u8>)>> {
        let path = self.path(ino)?;
        if path.is_control() || path.service.is_none() || self.pending.get(&path).is_some() {
            return Ok(Vec::new());
        }
        let resolved = self.resolve(&path)?;
        Ok(resolved.value().map(|value| attributes(&value.fetched)).unwrap_or_default())
    }
}

/// The attributes of one fetched value.
fn attributes(fetched: &Fetched) -> Vec<(String, Vec<u8>)> {
    let mut attributes = vec![("type", fetched.kind.name().to_string())];
    if let Some(version) = &fetched.version {
        attributes.push(("version", shown_version(version).to_string()));
    }
    if let Some(arn) = &fetched.meta.arn {
        attributes.push(("arn", arn.clone()));
    }
    if let Some(at) = fetched.last_modified.and_then(|at| OffsetDateTime::from(at).format(&Rfc3339).ok()) {
        attributes.push(("last_modified", at));
    }
    if !fetched.meta.stages.is_empty() {
        attributes.push(("stages", fetched.meta.stages.join(",")));
    }
    attributes.into_iter().map(|(name, value)| (format!("{XATTR_PREFIX}{name}"), value.into_bytes())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Metadata, SecretBytes, ValueKind};

    #[test]
    fn attributes_name_the_metadata_and_never_the_value() {
        let fetched = Fetched {
            bytes: SecretBytes::new(b"hunter2".to_vec()),
            kind: ValueKind::SecretString,
            version: Some("v-1".into()),
            last_modified: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400)),
            meta: Metadata { arn: Some("arn:aws:secretsmanager:x".into()), stages: vec!["AWSCURRENT".into()] },
        };
        let shown: Vec<(String, String)> =
            attributes(&fetched).into_iter().map(|(n, v)| (n, String::from_utf8(v).unwrap())).collect();
        assert_eq!(
            shown,
            [
                ("user.secretfs.type", "string"),
                ("user.secretfs.version", "v-1"),
                ("user.secretfs.arn", "arn:aws:secretsmanager:x"),
                ("user.secretfs.last_modified", "1970-01-02T00:00:00Z"),
                ("user.secretfs.stages", "AWSCURRENT"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
    }
}
