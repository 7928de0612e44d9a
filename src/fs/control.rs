//! The control directory `.secretfs/` at the mount root: `status` (health and counts, for
//! people), `metrics` (the same and more in Prometheus' text format) and `refresh` (write mount
//! paths to it, one per line, and `close()` returns once they are fetched again). None of them
//! ever shows a value.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::resolve::{dir_prefix, Resolved};
use super::{lock, Attr, DirEntry, NodeKind, OpenFile, OpenMode, SecretFs};
use crate::cache::CacheStats;
use crate::error::{Error, Result};
use crate::inodes::{Ino, NodePath, CONTROL_DIR, CONTROL_FILES};
use crate::provider::counters::RENEW_CREDENTIALS;
use crate::provider::{OutcomeCounts, SecretBytes, Service};
use crate::request_stats::RequestStats;

/// How long a rendered status or metrics text is shown again instead of rendered anew.
pub const TEXT_REUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// The most bytes one open of the refresh file takes (a few thousand paths).
pub const REFRESH_TEXT_LIMIT: usize = 64 * 1024;

/// Permission bits of the refresh file: anyone who may enter the mount may write it; each path
/// written is checked against what the writer may read.
pub const REFRESH_MODE: u16 = 0o222;
/// Permission bits of the status and metrics files (counts, no values) and of the directory.
pub const REPORT_MODE: u16 = 0o444;
/// Permission bits of the control directory.
pub const CONTROL_DIR_MODE: u16 = 0o555;

/// Who opened a file, as the kernel says (FUSE does not tell supplementary groups).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requester {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// The paths written to one open of the refresh file, run when it is flushed.
#[derive(Debug)]
pub struct RefreshRequest {
    /// The text written so far (paths, one per line).
    pub text: Vec<u8>,
    /// Who writes it.
    pub by: Requester,
}

/// A node of the control directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlNode {
    /// `.secretfs/` itself.
    Dir,
    /// `.secretfs/refresh`.
    Refresh,
    /// `.secretfs/status`.
    Status,
    /// `.secretfs/metrics`.
    Metrics,
}

impl ControlNode {
    /// The control node at `path`, if it is one.
    pub fn at(path: &NodePath) -> Option<ControlNode> {
        if !path.is_control() {
            return None;
        }
        match path.parts.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [CONTROL_DIR] => Some(ControlNode::Dir),
            [CONTROL_DIR, "refresh"] => Some(ControlNode::Refresh),
            [CONTROL_DIR, "status"] => Some(ControlNode::Status),
            [CONTROL_DIR, "metrics"] => Some(ControlNode::Metrics),
            _ => None,
        }
    }

    /// Its permission bits.
    pub fn perm(self) -> u16 {
        match self {
            ControlNode::Dir => CONTROL_DIR_MODE,
            ControlNode::Refresh => REFRESH_MODE,
            ControlNode::Status | ControlNode::Metrics => REPORT_MODE,
        }
    }

    /// File or directory.
    pub fn kind(self) -> NodeKind {
        match self {
            ControlNode::Dir => NodeKind::Dir,
            _ => NodeKind::File,
        }
    }
}

impl SecretFs {
    /// Attributes of the control node at `path`, its inode held for the kernel (see
    /// [`SecretFs::generated_ino`]); the refresh file gets a new inode at every lookup.
    pub(super) fn control_lookup(&self, path: NodePath, node: ControlNode) -> Attr {
        if node == ControlNode::Refresh {
            // Each open gets an inode of its own: the kernel serialises writes to one inode, and
            // writers of the refresh file must reach the daemon together to share fetches.
            self.inodes.retire(&path);
        }
        let bytes = self.control_bytes(node);
        let size = bytes.len() as u64;
        let ino = self.generated_ino(path, bytes);
        self.control_attr(ino, node, size)
    }

    /// The inode of the generated file (control file or view) at `path`, showing `bytes` now.
    /// On a read-only mount (which opens nothing, so every inode is pinned) a file whose text
    /// changed gets a new inode, so the kernel, which keeps a pinned inode's pages, reads the
    /// new text. A read-write mount opens generated files with every read coming to the handle.
    pub(super) fn generated_ino(&self, path: NodePath, bytes: SecretBytes) -> Ino {
        match self.opens_nothing() {
            true => self.pins.hand_out(&self.inodes, path, bytes, SystemTime::now, |_| false).0,
            false => self.inodes.lookup(path),
        }
    }

    /// The attributes of control node `node` at `ino`, showing `size` bytes.
    pub(super) fn control_attr(&self, ino: Ino, node: ControlNode, size: u64) -> Attr {
        let (uid, gid) = (self.config.uid, self.config.gid);
        let mtime = SystemTime::now();
        Attr { ino, kind: node.kind(), size, mtime, perm: node.perm(), uid, gid, volatile: true, fixed: false }
    }

    /// Open a control file: the refresh file for writing takes paths; status and metrics show
    /// their text as of this open.
    pub(super) fn control_open(&self, ino: Ino, node: ControlNode, mode: OpenMode) -> Result<u64> {
        let refresh = match (node, mode.write) {
            (ControlNode::Dir, _) => return Err(Error::IsADirectory),
            (ControlNode::Refresh, true) => {
                Some(Arc::new(Mutex::new(RefreshRequest { text: Vec::new(), by: mode.by })))
            }
            (_, true) => return Err(Error::NotPermitted),
            (_, false) => None,
        };
        let bytes = self.control_bytes(node);
        Ok(self.files.insert(OpenFile { ino, bytes, writer: None, append: false, refresh, pages_kept: false }))
    }

    /// The entries of the control directory.
    pub(super) fn control_entries(&self, ino: Ino, path: &NodePath, node: ControlNode) -> Result<Vec<DirEntry>> {
        if node != ControlNode::Dir {
            return Err(Error::NotADirectory);
        }
        let mut entries = self.dot_entries(ino, path);
        for name in CONTROL_FILES {
            if let Some(child) = path.child(name) {
                entries.push(DirEntry {
                    ino: self.inodes.listed(&child),
                    kind: NodeKind::File,
                    name: name.to_string(),
                });
            }
        }
        Ok(entries)
    }

    /// What the control file `node` shows now (the refresh file shows nothing). A `cat` asks
    /// three times (lookup, getattr, open), and each rendering scans every cached value, so a
    /// text is reused for [`TEXT_REUSE`].
    pub(super) fn control_bytes(&self, node: ControlNode) -> SecretBytes {
        let now = std::time::Instant::now();
        let mut last = lock(&self.control_text);
        if let Some((shown, at, bytes)) = last.as_ref() {
            if *shown == node && now.saturating_duration_since(*at) < TEXT_REUSE {
                return bytes.clone();
            }
        }
        let text = match node {
            ControlNode::Status => self.status_text(),
            ControlNode::Metrics => self.metrics_text(),
            ControlNode::Dir | ControlNode::Refresh => return SecretBytes::new(Vec::new()),
        };
        let bytes = SecretBytes::new(text.into_bytes());
        *last = Some((node, now, bytes.clone()));
        bytes
    }

    /// The human-readable status: per service whether it answers, its last failure, what is
    /// cached and how old, and the calls made.
    pub fn status_text(&self) -> String {
        let now = SystemTime::now();
        let mut text = format!(
            "secretfs {} (pid {}), up {}, {}\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            age(now.duration_since(self.started).unwrap_or_default()),
            match self.config.read_only {
                true => "read-only",
                false => "read-write",
            }
        );
        let _ = writeln!(text, "{}", self.process_line());
        for (service, cache) in &self.services {
            let stats = cache.stats();
            let outcomes = cache.provider().call_outcomes();
            let counts = cache.provider().call_counts();
            let calls: u64 = counts.values().sum();
            let throttled = count_outcome(&outcomes, "throttled");
            let _ = writeln!(
                text,
                "{}: {}; {} values, {} listings cached; {} past their TTL now; oldest value {}; {calls} calls, {throttled} throttled; {} reads from memory, {} waited for a fetch, {} served stale, {} evicted, {} refreshed on demand",
                service.dir_name(),
                reachability(&stats, now),
                stats.values,
                stats.listings,
                stats.stale_values,
                stats.oldest_value_age.map_or("none".to_string(), |a| format!("{} old", age(a))),
                stats.hits,
                stats.misses,
                stats.stale_serves,
                stats.evictions,
                stats.refresh_requests,
            );
            if let Some((at, error)) = &stats.last_failure {
                let _ = writeln!(text, "{}: last failure {} ago: {error}", service.dir_name(), since(now, *at));
            }
            if let Some(renewals) = counts.get(RENEW_CREDENTIALS) {
                let _ = writeln!(
                    text,
                    "{}: credentials asked for again {renewals} time(s) after AWS refused them",
                    service.dir_name()
                );
            }
        }
        text
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn metrics_text(&self) -> String {
        let snapshot = MetricsSnapshot {
            services: self
                .services
                .iter()
                .map(|(service, cache)| (*service, cache.stats(), cache.provider().call_outcomes()))
                .collect(),
            inodes: self.inodes.len(),
            open_files: self.files.len(),
            requests: self.requests.clone(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, &registry) {
            Ok(()) => text,
            Err(_) => String::new(),
        }
    }

    /// Take `data` written to the refresh file and refresh every path it completes (a line
    /// ending in a newline), so a shell's `echo PATH > refresh` sees the outcome as the result
    /// of its write (shells ignore what `close()` says). Returns the first failure.
    pub(super) fn refresh_written(&self, request: &Mutex<RefreshRequest>, data: &[u8]) -> Result<()> {
        let (lines, by) = {
            let mut request = lock(request);
            if request.text.len() + data.len() > REFRESH_TEXT_LIMIT {
                return Err(Error::TooLarge);
            }
            request.text.extend_from_slice(data);
            let complete = request.text.iter().rposition(|byte| *byte == b'\n').map_or(0, |at| at + 1);
            (request.text.drain(..complete).collect::<Vec<u8>>(), request.by)
        };
        self.run_refresh(lines, by)
    }

    /// Refresh the last path written to the refresh file without a newline (at flush).
    pub(super) fn refresh_rest(&self, request: &Mutex<RefreshRequest>) -> Result<()> {
        let (text, by) = {
            let mut request = lock(request);
            (std::mem::take(&mut request.text), request.by)
        };
        self.run_refresh(text, by)
    }

    /// Refresh each path of `text` (one per line): resolved, checked against what `by` may
    /// read, and fetched again; a directory is listed again with every known value below it.
    fn run_refresh(&self, text: Vec<u8>, by: Requester) -> Result<()> {
        let text = String::from_utf8(text).map_err(|_| Error::InvalidInput("the refresh file takes text".into()))?;
        let mut first_error = None;
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            if let Err(err) = self.refresh_path(line, by) {
                tracing::info!("refresh of {line:?} failed: {err}");
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Refresh one mount path (`sm/prod/db`, `ps/prod/`), if `by` may read it.
    fn refresh_path(&self, line: &str, by: Requester) -> Result<()> {
        let path = parse_mount_path(line)?;
        let Some(service) = path.service else {
            // The mount root: everything.
            return self.services.iter().try_for_each(|(service, _)| self.refresh_path(service.dir_name(), by));
        };
        let cache = self.cache(service).ok_or(Error::NotFound)?;
        let resolved = match self.resolve(&path) {
            // Not known to exist (it may have been created since the mount last looked): ask
            // for the name itself and list its directory again, then look once more.
            Err(Error::NotFound) if !path.parts.is_empty() => {
                self.readable(&path, NodeKind::File, by)?;
                let name = format!("{}{}", cache.prefix(), path.parts.join("/"));
                let parent = dir_prefix(cache.prefix(), &path.parts[..path.parts.len() - 1]);
                match cache.refresh_now(&[name], Some(&parent)) {
                    Ok(()) | Err(Error::NotFound) => {}
                    Err(err) => return Err(err),
                }
                self.resolve(&path)?
            }
            other => other?,
        };
        self.readable(&path, if resolved.is_dir() { NodeKind::Dir } else { NodeKind::File }, by)?;
        let (names, subtree) = match &resolved {
            Resolved::Root => (Vec::new(), None),
            Resolved::Tree { tree_path, value, value_is_dir, .. } => {
                let name = resolved.tree_name().map(str::to_string);
                let subtree = (value.is_none() || *value_is_dir).then(|| dir_prefix(cache.prefix(), tree_path));
                (name.into_iter().collect(), subtree)
            }
            Resolved::Json { name, .. } | Resolved::Raw { name, .. } | Resolved::Selected { name, .. } => {
                (vec![name.clone()], None)
            }
        };
        cache.refresh_now(&names, subtree.as_deref())?;
        // Before the write returns: the next open of what was refreshed reads what it found.
        for name in &names {
            self.retire_pinned(service, cache.prefix(), name);
        }
        self.pins.retire_under(&self.inodes, service, &path.parts);
        Ok(())
    }

    /// `AccessDenied` unless `by` may read the node of `kind` at `path` by its owner, group and
    /// mode (root may).
    fn readable(&self, path: &NodePath, kind: NodeKind, by: Requester) -> Result<()> {
        let mount_path = path.mount_path();
        let (perm, uid, gid) = self.ownership_at(&mount_path, kind);
        let bits = match (by.uid == uid, by.gid == gid) {
            (true, _) => perm >> 6,
            (false, true) => perm >> 3,
            (false, false) => perm,
        };
        match by.uid == 0 || bits & 0o4 != 0 {
            true => Ok(()),
            false => Err(Error::AccessDenied(format!("{mount_path}: not readable by uid {}", by.uid))),
        }
    }
}

/// The node a mount path written to the refresh file names: `ps/prod/db`, `sm/app/`, `ps` or
/// the mount root (empty, `.`).
fn parse_mount_path(line: &str) -> Result<NodePath> {
    let parts: Vec<&str> = line.split('/').filter(|part| !part.is_empty() && *part != ".").collect();
    if parts.contains(&"..") {
        return Err(Error::InvalidInput(format!("{line:?}: `..` is not allowed")));
    }
    let Some((first, rest)) = parts.split_first() else { return Ok(NodePath::root()) };
    let service = Service::ALL
        .into_iter()
        .find(|service| service.dir_name() == *first)
        .ok_or_else(|| Error::InvalidInput(format!("{line:?}: a path in the mount starts with ps/ or sm/")))?;
    Ok(NodePath { service: Some(service), parts: rest.iter().map(|part| part.to_string()).collect() })
}

/// `reachable (last answer 3 s ago)` or `unreachable since ...`.
fn reachability(stats: &CacheStats, now: SystemTime) -> String {
    match (stats.reachable(), stats.last_success, &stats.last_failure) {
        (true, Some(at), _) => format!("reachable (last answer {} ago)", since(now, at)),
        (true, None, _) => "reachable (not asked yet)".to_string(),
        (false, Some(at), _) => format!("UNREACHABLE (last answer {} ago)", since(now, at)),
        (false, None, _) => "UNREACHABLE (never answered)".to_string(),
    }
}

fn since(now: SystemTime, at: SystemTime) -> String {
    age(now.duration_since(at).unwrap_or_default())
}

/// A duration for people: `850 ms`, `42 s`, `17 min`, `5 h`.
fn age(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 => format!("{} ms", duration.as_millis()),
        1..120 => format!("{seconds} s"),
        120..7200 => format!("{} min", seconds / 60),
        _ => format!("{} h", seconds / 3600),
    }
}

fn count_outcome(outcomes: &OutcomeCounts, outcome: &str) -> u64 {
    outcomes.iter().filter(|((_, o), _)| *o == outcome).map(|(_, count)| count).sum()
}

/// Everything the metrics file shows, taken at once and encoded by prometheus-client.
#[derive(Debug)]
struct MetricsSnapshot {
    services: Vec<(Service, CacheStats, OutcomeCounts)>,
    inodes: usize,
    open_files: usize,
    requests: Arc<RequestStats>,
}

/// One metric family of one value per service.
type PerService = (&'static str, &'static str, MetricType, fn(&CacheStats) -> u64);

const PER_SERVICE: [PerService; 11] = [
    ("secretfs_cache_hits", "Reads answered from memory.", MetricType::Counter, |s| s.hits),
    ("secretfs_cache_misses", "Reads that waited for a fetch.", MetricType::Counter, |s| s.misses),
    ("secretfs_cache_stale_serves", "Reads answered with a value past its TTL.", MetricType::Counter, |s| {
        s.stale_serves
    }),
    ("secretfs_cache_evictions", "Values dropped to stay within capacity.", MetricType::Counter, |s| s.evictions),
    ("secretfs_refresh_checks", "Version checks made by background refreshes.", MetricType::Counter, |s| {
        s.version_checks
    }),
    ("secretfs_values_changed", "Values found changed by refreshes.", MetricType::Counter, |s| s.changes_found),
    ("secretfs_refresh_requests", "Values refreshed on demand.", MetricType::Counter, |s| s.refresh_requests),
    ("secretfs_cached_values", "Values held in memory.", MetricType::Gauge, |s| s.values as u64),
    ("secretfs_cached_listings", "Directory listings held in memory.", MetricType::Gauge, |s| s.listings as u64),
    ("secretfs_stale_values", "Values held past their TTL right now.", MetricType::Gauge, |s| s.stale_values as u64),
    (
        "secretfs_service_up",
        "1 while the service answers, 0 after a failure to get an answer.",
        MetricType::Gauge,
        |s| u64::from(s.reachable()),
    ),
];

impl Collector for MetricsSnapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        for (name, help, metric_type, value) in PER_SERVICE {
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for (service, stats, _) in &self.services {
                let labels = [("service", service.dir_name())];
                let value = value(stats);
                match metric_type {
                    MetricType::Counter => ConstCounter::new(value).encode(family.encode_family(&labels)?)?,
                    _ => ConstGauge::new(value as i64).encode(family.encode_family(&labels)?)?,
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "secretfs_oldest_value_age_seconds",
            "Age of the oldest value held.",
            None,
            MetricType::Gauge,
        )?;
        for (service, stats, _) in &self.services {
            let age = stats.oldest_value_age.unwrap_or_default().as_secs_f64();
            ConstGauge::new(age).encode(family.encode_family(&[("service", service.dir_name())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "secretfs_api_calls",
            "AWS API calls that ended, by service, action and outcome.",
            None,
            MetricType::Counter,
        )?;
        for (service, _, outcomes) in &self.services {
            for ((action, outcome), count) in outcomes {
                let labels = [("service", service.dir_name()), ("action", action), ("outcome", outcome)];
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in [
            ("secretfs_inodes", "Inodes the kernel holds.", self.inodes),
            ("secretfs_open_files", "Files open now.", self.open_files),
        ] {
            ConstGauge::new(value as i64).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "secretfs_fuse_requests",
            "Kernel requests, by operation.",
            None,
            MetricType::Counter,
        )?;
        for (op, count) in self.requests.counts() {
            ConstCounter::new(count).encode(family.encode_family(&[("op", op)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "secretfs_fuse_request_duration_seconds",
            "Time from a kernel request to its reply, by operation.",
            None,
            MetricType::Histogram,
        )?;
        for (op, histogram) in self.requests.latencies() {
            histogram.encode(family.encode_family(&[("op", op)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_name_a_service_node_or_are_refused() {
        let path = parse_mount_path("sm/prod/db/").unwrap();
        assert_eq!((path.service, path.parts), (Some(Service::SecretsManager), vec!["prod".into(), "db".into()]));
        assert_eq!(parse_mount_path("/ps").unwrap().service, Some(Service::ParameterStore));
        assert_eq!(parse_mount_path(".").unwrap(), NodePath::root());
        assert!(matches!(parse_mount_path("ps/../sm"), Err(Error::InvalidInput(_))));
        assert!(matches!(parse_mount_path("etc/passwd"), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(Duration::from_millis(850)), "850 ms");
        assert_eq!(age(Duration::from_secs(42)), "42 s");
        assert_eq!(age(Duration::from_secs(1020)), "17 min");
        assert_eq!(age(Duration::from_secs(5 * 3600)), "5 h");
    }
}
