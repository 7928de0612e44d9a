//! Running a step that could hang on a FUSE mount with a bound: past it, the mount's FUSE
//! connection is aborted (through /sys/fs/fuse/connections/N/abort), so the step ends and the
//! test fails instead of hanging CI.
#![allow(dead_code)] // Shared by several test binaries; each uses a part.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CONNECTIONS: &str = "/sys/fs/fuse/connections";

/// The abort file of the FUSE connection mounted at `mountpoint` (read it before anything can
/// hang: a stat of a mount whose daemon is stuck can block too). Mounts the FUSE control
/// filesystem (fusectl) there if the machine has not.
pub fn abort_file(mountpoint: &Path) -> PathBuf {
    let dev = std::fs::metadata(mountpoint).unwrap().dev();
    let abort = PathBuf::from(format!("{CONNECTIONS}/{}/abort", libc::minor(dev)));
    if !abort.exists() {
        let status = Command::new("mount").args(["-t", "fusectl", "fusectl", CONNECTIONS]).status();
        assert!(status.is_ok_and(|s| s.success()) || abort.exists(), "cannot mount fusectl on {CONNECTIONS}");
    }
    assert!(abort.exists(), "{} is missing: a hang could not be ended", abort.display());
    abort
}

/// What a bounded step did.
#[derive(Debug)]
pub enum Bounded<T> {
    /// It finished within the bound, in this time.
    Done(T, Duration),
    /// It was still blocked at the bound; the connection was aborted.
    Hung,
}

impl<T: std::fmt::Debug> Bounded<T> {
    /// The step's result, or a panic naming `what` if it hung.
    pub fn expect(self, what: &str) -> T {
        match self {
            Bounded::Done(value, _) => value,
            Bounded::Hung => panic!("{what} hung; the FUSE connection was aborted"),
        }
    }
}

/// Run `step` on its own thread; if it has not returned within `limit`, abort the connection
/// behind `abort` and report it hung (the step then fails with ENOTCONN and its thread ends).
pub fn bounded<T: Send + 'static>(
    abort: &Path,
    limit: Duration,
    step: impl FnOnce() -> T + Send + 'static,
) -> Bounded<T> {
    let started = Instant::now();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(step());
    });
    match receiver.recv_timeout(limit) {
        Ok(value) => Bounded::Done(value, started.elapsed()),
        Err(_) => {
            let _ = std::fs::write(abort, "1");
            let _ = receiver.recv_timeout(Duration::from_secs(10));
            Bounded::Hung
        }
    }
}

/// Run `script` with `sh -c` under [`bounded`].
pub fn sh_bounded(abort: &Path, limit: Duration, script: &str) -> Bounded<Output> {
    let script = script.to_string();
    bounded(abort, limit, move || Command::new("sh").arg("-c").arg(&script).stdin(Stdio::null()).output().unwrap())
}
