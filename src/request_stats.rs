//! The kernel's requests counted by operation, with how long each took to answer: for the
//! status line, the metrics file and benchmarks (how many round trips a read costs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// The operations counted, in the order the status line shows them.
pub const OPERATIONS: [&str; 14] = [
    "lookup",
    "getattr",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "opendir",
    "readdir",
    "forget",
    "setattr",
    "getxattr",
    "listxattr",
    "other",
];

/// One counter and one latency histogram per operation.
#[derive(Debug)]
pub struct RequestStats {
    counts: [AtomicU64; OPERATIONS.len()],
    latency: [Histogram; OPERATIONS.len()],
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats {
            counts: Default::default(),
            // 10 µs to 40 s, ×4 a bucket.
            latency: std::array::from_fn(|_| Histogram::new(exponential_buckets(1e-5, 4.0, 12))),
        }
    }
}

/// One request being answered: its time is recorded when this is dropped (when the reply has
/// been sent, whichever thread sent it).
#[derive(Debug)]
pub struct Timing {
    stats: Arc<RequestStats>,
    index: usize,
    started: Instant,
}

impl Drop for Timing {
    fn drop(&mut self) {
        self.stats.latency[self.index].observe(self.started.elapsed().as_secs_f64());
    }
}

impl RequestStats {
    /// Count one request of `operation` (one of [`OPERATIONS`]; anything else counts as
    /// other), timed until the returned guard is dropped.
    pub fn start(self: &Arc<Self>, operation: &str) -> Timing {
        Timing { stats: self.clone(), index: self.count(operation), started: Instant::now() }
    }

    /// Count one request of `operation` that is not timed (FORGET has no reply); returns its
    /// index in [`OPERATIONS`].
    pub fn count(&self, operation: &str) -> usize {
        let index = OPERATIONS.iter().position(|op| *op == operation).unwrap_or(OPERATIONS.len() - 1);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        index
    }

    /// The requests seen so far: (operation, count), in [`OPERATIONS`] order.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        OPERATIONS.iter().copied().zip(self.counts.iter().map(|count| count.load(Ordering::Relaxed)))
    }

    /// The latency histogram of each operation, in [`OPERATIONS`] order.
    pub fn latencies(&self) -> impl Iterator<Item = (&'static str, &Histogram)> + '_ {
        OPERATIONS.iter().copied().zip(self.latency.iter())
    }

    /// `lookup 3, getattr 1, ...` for the operations seen so far.
    pub fn summary(&self) -> String {
        let seen: Vec<String> =
            self.counts().filter(|(_, count)| *count > 0).map(|(op, count)| format!("{op} {count}")).collect();
        seen.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_operation_times_replies_and_lists_what_was_seen() {
        let stats = Arc::new(RequestStats::default());
        drop(stats.start("open"));
        drop(stats.start("open"));
        let reading = stats.start("read");
        stats.count("mknod");
        assert_eq!(stats.summary(), "open 2, read 1, other 1");
        let timed = |op: &str| {
            let mut registry = prometheus_client::registry::Registry::default();
            let (_, histogram) = stats.latencies().find(|(name, _)| *name == op).unwrap();
            registry.register("latency", "", histogram.clone());
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text.lines().find_map(|line| line.strip_prefix("latency_count ")).unwrap().to_string()
        };
        assert_eq!((timed("open"), timed("read")), ("2".into(), "0".into()), "read is timed when its reply is done");
        drop(reading);
        assert_eq!(timed("read"), "1");
    }
}
