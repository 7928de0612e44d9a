//! Counts of the kernel's requests by operation, for the status line and benchmarks (how many
//! round trips a read costs).

use std::sync::atomic::{AtomicU64, Ordering};

/// The operations counted, in the order the status line shows them.
pub const OPERATIONS: [&str; 12] = [
    "lookup", "getattr", "open", "read", "write", "flush", "release", "opendir", "readdir", "forget", "setattr",
    "other",
];

/// One counter per operation.
#[derive(Debug, Default)]
pub struct RequestCounts {
    counts: [AtomicU64; OPERATIONS.len()],
}

impl RequestCounts {
    /// Count one request of `operation` (one of [`OPERATIONS`]; anything else counts as other).
    pub fn count(&self, operation: &str) {
        let index = OPERATIONS.iter().position(|op| *op == operation).unwrap_or(OPERATIONS.len() - 1);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
    }

    /// `lookup 3, getattr 1, ...` for the operations seen so far.
    pub fn summary(&self) -> String {
        let seen: Vec<String> = OPERATIONS
            .iter()
            .zip(&self.counts)
            .map(|(op, count)| (op, count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .map(|(op, count)| format!("{op} {count}"))
            .collect();
        seen.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_operation_and_lists_what_was_seen() {
        let counts = RequestCounts::default();
        counts.count("open");
        counts.count("open");
        counts.count("read");
        counts.count("mknod");
        assert_eq!(counts.summary(), "open 2, read 1, other 1");
    }
}
