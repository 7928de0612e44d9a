//! A shared, immutable byte buffer for secret values: redacted in `Debug`, zeroed when dropped;
//! and the wiping of parsed JSON that held secret text.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroize;

/// Secret bytes. Cloning shares the buffer; the last owner overwrites it with zeros.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Arc<Zeroing>);

#[derive(PartialEq, Eq)]
struct Zeroing(Vec<u8>);

impl Drop for Zeroing {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Overwrite every string (keys included) of a parsed JSON value with zeros, then drop it.
/// Numbers are kept by serde_json in its own private form and cannot be wiped.
pub fn wipe_json(value: serde_json::Value) {
    match value {
        serde_json::Value::String(mut text) => text.zeroize(),
        serde_json::Value::Array(items) => items.into_iter().for_each(wipe_json),
        serde_json::Value::Object(members) => wipe_json_object(members),
        _ => {}
    }
}

/// [`wipe_json`] for an object.
pub fn wipe_json_object(members: serde_json::Map<String, serde_json::Value>) {
    for (mut key, member) in members {
        key.zeroize();
        wipe_json(member);
    }
}

impl SecretBytes {
    /// Take ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Arc::new(Zeroing(bytes)))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0 .0
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0 .0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0 .0.is_empty()
    }
}

impl From<&str> for SecretBytes {
    fn from(s: &str) -> Self {
        SecretBytes::new(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = SecretBytes::from("hunter2");
        let shown = format!("{secret:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("7 bytes"));
    }
}
