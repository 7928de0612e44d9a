//! The on-change launcher: a process forked from the daemon before it confines itself (system
//! call filter), which starts on-change commands on the daemon's behalf, so a command runs with
//! what the daemon had at start-up rather than under the daemon's filter.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::daemon::Reporter;
use super::on_change::{self, OnChangeRule};
use crate::error::{Error, Result};

/// Longest request accepted: a rule number and the changed mount paths, one per line.
const MAX_REQUEST: usize = 16 << 20;

/// The daemon's end of the launcher: asks it to run a rule's command for some paths.
pub struct Launcher {
    requests: UnixStream,
}

impl Launcher {
    /// Fork the launcher for `rules`, which are run with `mountpoint` in their environment.
    /// Call before any thread starts; `reporter` is let go of in the launcher.
    pub fn fork(rules: &[OnChangeRule], mountpoint: &Path, reporter: &mut Reporter) -> Result<Launcher> {
        let (daemon_end, launcher_end) =
            UnixStream::pair().map_err(|e| Error::Mount(format!("cannot start the on-change launcher: {e}")))?;
        // SAFETY: no other threads exist yet (the runtime is built after this), so fork is sound.
        match unsafe { libc::fork() } {
            -1 => {
                Err(Error::Mount(format!("cannot start the on-change launcher: {}", std::io::Error::last_os_error())))
            }
            0 => {
                drop(daemon_end);
                reporter.leave_to_the_daemon();
                serve(rules, mountpoint, launcher_end)
            }
            _launcher => Ok(Launcher { requests: daemon_end }),
        }
    }

    /// Ask for `rules[rule]`'s command to run for `paths`.
    pub fn run(&mut self, rule: usize, paths: &[String]) -> std::io::Result<()> {
        let joined = paths.join("\n");
        let mut request = Vec::with_capacity(8 + joined.len());
        request.extend_from_slice(&(rule as u32).to_le_bytes());
        request.extend_from_slice(&(joined.len() as u32).to_le_bytes());
        request.extend_from_slice(joined.as_bytes());
        self.requests.write_all(&request)
    }
}

/// The launcher's life: run each request's command until the daemon's end closes (it stopped
/// or died).
fn serve(rules: &[OnChangeRule], mountpoint: &Path, mut requests: UnixStream) -> ! {
    while let Some((rule, paths)) = next_request(&mut requests) {
        if let Some(rule) = rules.get(rule) {
            on_change::launch(rule, paths, mountpoint);
        }
    }
    std::process::exit(0)
}

/// Read one request; `None` at the end of the stream or on a malformed one.
fn next_request(requests: &mut UnixStream) -> Option<(usize, Vec<String>)> {
    let mut header = [0u8; 8];
    requests.read_exact(&mut header).ok()?;
    let rule = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let length = u32::from_le_bytes(header[4..].try_into().ok()?) as usize;
    if length > MAX_REQUEST {
        return None;
    }
    let mut joined = vec![0u8; length];
    requests.read_exact(&mut joined).ok()?;
    let joined = String::from_utf8(joined).ok()?;
    Some((rule, joined.split('\n').map(str::to_string).collect()))
}
