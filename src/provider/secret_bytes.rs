//! A shared, immutable byte buffer for secret values: redacted in `Debug`, zeroed when dropped.

use std::fmt;
use std::sync::Arc;

/// Secret bytes. Cloning shares the buffer; the last owner overwrites it with zeros.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Arc<Zeroing>);

#[derive(PartialEq, Eq)]
struct Zeroing(Vec<u8>);

impl Drop for Zeroing {
    fn drop(&mut self) {
        for byte in self.0.iter_mut() {
            // Volatile so the compiler cannot drop the store as dead.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
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
