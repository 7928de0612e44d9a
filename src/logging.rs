//! Logging on `tracing`: the filter comes from `SECRETFS_LOG` (EnvFilter syntax) or `--debug`;
//! lines go to stderr with a timestamp and level in the foreground, to journald (with their
//! priority and fields) under systemd, and to syslog or size-rotated files in `--log-dir` in the
//! background, never to /dev/null. The AWS SDK's own events (retries, credentials) come through
//! the same filter. Log lines carry names, counts and error codes, never values.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The environment variable holding the filter (`info`, `debug,aws_smithy_runtime=debug`, ...).
pub const LOG_ENV: &str = "SECRETFS_LOG";
/// The filter without `SECRETFS_LOG`: secretfs at info, the SDK and HTTP stack at warn, and
/// fuser's failed replies off (the kernel has dropped a request it no longer waits for, as at
/// an unmount: nothing to act on).
pub const DEFAULT_FILTER: &str =
    "info,aws_config=warn,aws_runtime=warn,aws_smithy_runtime=warn,hyper=warn,rustls=warn,fuser::reply=off";
/// The filter of `--debug`.
pub const DEBUG_FILTER: &str = "debug,aws_smithy_runtime=info,hyper=info,h2=info,rustls=info";
/// The filter of a one-shot command (`get`, `exec`, ...): it reports its own failure in one
/// line, so only errors beyond that are logged.
pub const QUIET_FILTER: &str = "error";

/// How much is logged without `SECRETFS_LOG`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// [`QUIET_FILTER`].
    Quiet,
    /// [`DEFAULT_FILTER`].
    Normal,
    /// [`DEBUG_FILTER`].
    Debug,
}
/// A log file is rotated when it reaches this size.
pub const LOG_FILE_LIMIT: u64 = 10 * 1024 * 1024;
/// Rotated log files kept (`secretfs.log.1` .. `.4`).
pub const LOG_FILES_KEPT: usize = 4;

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error, with timestamps and levels (foreground, commands).
    Stderr,
    /// The systemd journal (foreground under systemd: `JOURNAL_STREAM` is set).
    Journald,
    /// syslog, facility daemon (background without `--log-dir`).
    Syslog,
    /// Size-rotated files `secretfs.log*` (mode 0600) in this directory.
    Dir(PathBuf),
}

/// The journald socket `JOURNAL_STREAM` promises.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";
/// The syslog socket.
pub const SYSLOG_SOCKET: &str = "/dev/log";

static KEEPS_STDERR: AtomicBool = AtomicBool::new(false);

impl LogTarget {
    /// The target for a process in the foreground or not, with `--log-dir` if given, and why
    /// the usual one was not taken: `JOURNAL_STREAM` without a journald socket falls back to
    /// stderr; the background without `/dev/log` (a minimal container) logs to the stderr it
    /// was started with (a supervisor's file, a terminal), which then stays open
    /// ([`keeps_stderr`]); a pipe is never kept (whoever reads it would wait for the daemon to
    /// exit), so then the logs go to [`fallback_log_dir`].
    pub fn choose(foreground: bool, log_dir: Option<PathBuf>) -> (LogTarget, Option<&'static str>) {
        let exists = |path: &str| Path::new(path).exists();
        match (log_dir, foreground) {
            (Some(dir), _) => (LogTarget::Dir(dir), None),
            (None, true) if std::env::var_os("JOURNAL_STREAM").is_some() && exists(JOURNALD_SOCKET) => {
                (LogTarget::Journald, None)
            }
            (None, true) if std::env::var_os("JOURNAL_STREAM").is_some() => {
                (LogTarget::Stderr, Some("JOURNAL_STREAM is set but journald does not answer; logging to stderr"))
            }
            (None, true) => (LogTarget::Stderr, None),
            (None, false) if exists(SYSLOG_SOCKET) => (LogTarget::Syslog, None),
            (None, false) if stderr_is_file_or_terminal() => {
                KEEPS_STDERR.store(true, Ordering::SeqCst);
                (LogTarget::Stderr, None)
            }
            (None, false) => (LogTarget::Dir(fallback_log_dir()), None),
        }
    }
}

/// Whether stderr is a regular file or a terminal (not a pipe, socket or /dev/null).
fn stderr_is_file_or_terminal() -> bool {
    use std::os::fd::AsFd;
    let Ok(owned) = std::io::stderr().as_fd().try_clone_to_owned() else { return false };
    let Ok(meta) = File::from(owned).metadata() else { return false };
    meta.file_type().is_file() || std::io::stderr().is_terminal()
}

/// Where a background daemon with neither syslog nor a usable stderr logs: `/var/log/secretfs`
/// as root, `$HOME/.local/state/secretfs` otherwise.
pub fn fallback_log_dir() -> PathBuf {
    // SAFETY: getuid cannot fail and has no preconditions.
    match (unsafe { libc::getuid() }, std::env::var_os("HOME")) {
        (0, _) | (_, None) => PathBuf::from("/var/log/secretfs"),
        (_, Some(home)) => PathBuf::from(home).join(".local/state/secretfs"),
    }
}

/// Whether a background daemon logs to the stderr it was started with, so it must keep it.
pub fn keeps_stderr() -> bool {
    KEEPS_STDERR.load(Ordering::SeqCst)
}

/// Install the subscriber once, at `verbosity` unless `SECRETFS_LOG` is set.
/// An invalid `SECRETFS_LOG` or an unusable target is an error for the user to fix.
pub fn init(target: &LogTarget, verbosity: Verbosity) -> Result<(), String> {
    let directives = match std::env::var(LOG_ENV) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => match verbosity {
            Verbosity::Quiet => QUIET_FILTER,
            Verbosity::Normal => DEFAULT_FILTER,
            Verbosity::Debug => DEBUG_FILTER,
        }
        .to_string(),
    };
    let filter = EnvFilter::builder().parse(&directives).map_err(|e| format!("{LOG_ENV}={directives:?}: {e}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match target {
        LogTarget::Stderr => {
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_span_events(FmtSpan::CLOSE);
            registry.with(layer).try_init()
        }
        LogTarget::Journald => {
            let journald = tracing_journald::layer().map_err(|e| format!("cannot reach journald: {e}"))?;
            registry.with(journald.with_syslog_identifier("secretfs".into())).try_init()
        }
        LogTarget::Syslog => {
            let layer = tracing_subscriber::fmt::layer()
                .without_time()
                .with_ansi(false)
                .with_span_events(FmtSpan::CLOSE)
                .with_writer(Syslog::open());
            registry.with(layer).try_init()
        }
        LogTarget::Dir(dir) => {
            let files = RotatingFiles::open(dir)?;
            let layer =
                tracing_subscriber::fmt::layer().with_ansi(false).with_span_events(FmtSpan::CLOSE).with_writer(files);
            registry.with(layer).try_init()
        }
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

/// Writes each event to syslog with its level's priority.
struct Syslog;

impl Syslog {
    fn open() -> Syslog {
        // openlog keeps the pointer: the identifier must live for the process.
        static IDENT: &std::ffi::CStr = c"secretfs";
        // SAFETY: IDENT is a static NUL-terminated string.
        unsafe { libc::openlog(IDENT.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
        Syslog
    }
}

/// One event on its way to syslog.
struct SyslogLine {
    priority: libc::c_int,
    text: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text: Vec<u8> = self.text.iter().copied().filter(|b| *b != 0).collect();
        let Ok(line) = CString::new(text) else { return };
        // SAFETY: constant format string with one NUL-terminated argument.
        unsafe { libc::syslog(self.priority, c"%s".as_ptr(), line.as_ptr()) };
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine { priority: libc::LOG_INFO, text: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        let priority = match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        SyslogLine { priority, text: Vec::new() }
    }
}

/// `secretfs.log` in a directory, rotated to `secretfs.log.1` .. `.N` when it grows too large;
/// every file is created with mode 0600.
#[derive(Clone)]
struct RotatingFiles {
    inner: Arc<Mutex<Rotating>>,
}

struct Rotating {
    dir: PathBuf,
    file: File,
    size: u64,
}

fn open_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

impl RotatingFiles {
    fn open(dir: &Path) -> Result<RotatingFiles, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("--log-dir {}: {e}", dir.display()))?;
        let file = open_log(&dir.join("secretfs.log")).map_err(|e| format!("--log-dir {}: {e}", dir.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFiles { inner: Arc::new(Mutex::new(Rotating { dir: dir.to_path_buf(), file, size })) })
    }
}

impl Rotating {
    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |n: usize| self.dir.join(if n == 0 { "secretfs.log".into() } else { format!("secretfs.log.{n}") });
        for n in (0..LOG_FILES_KEPT).rev() {
            let _ = std::fs::rename(name(n), name(n + 1));
        }
        self.file = open_log(&name(0))?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFiles {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rotating = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if rotating.size + buf.len() as u64 > LOG_FILE_LIMIT {
            rotating.rotate()?;
        }
        rotating.file.write_all(buf)?;
        rotating.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingFiles {
    type Writer = RotatingFiles;

    fn make_writer(&'a self) -> RotatingFiles {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_rotate_by_size_and_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut files = RotatingFiles::open(dir.path()).unwrap();
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..25 {
            files.write_all(&line).unwrap();
        }
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["secretfs.log", "secretfs.log.1", "secretfs.log.2"]);
        for name in names {
            let meta = std::fs::metadata(dir.path().join(&name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
            assert!(meta.len() <= LOG_FILE_LIMIT);
        }
    }

    #[test]
    fn targets_follow_the_foreground_flag_and_log_dir() {
        if Path::new(SYSLOG_SOCKET).exists() {
            assert_eq!(LogTarget::choose(false, None), (LogTarget::Syslog, None));
        }
        assert_eq!(LogTarget::choose(false, Some("/d".into())), (LogTarget::Dir("/d".into()), None));
    }
}
