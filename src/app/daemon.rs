//! Going to the background: fork, and let the parent exit only once the child reports the
//! mount ready (exit 0) or failed (its one-line reason, exit 1).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};

const READY: &str = "ready";

/// The child's end of the report pipe.
pub struct Reporter {
    pipe: Option<File>,
}

impl Reporter {
    /// A reporter for a process that stays in the foreground: nothing to report to.
    pub fn foreground() -> Self {
        Reporter { pipe: None }
    }

    /// Tell the waiting parent how the mount went, then detach from the terminal.
    pub fn report(&mut self, outcome: &Result<()>) {
        let Some(mut pipe) = self.pipe.take() else { return };
        let message = match outcome {
            Ok(()) => READY.to_string(),
            Err(e) => format!("{} {e}", e.exit_code()),
        };
        let _ = pipe.write_all(message.as_bytes());
        drop(pipe);
        match outcome {
            Ok(()) => detach_stdio(),
            // The parent prints the reason; the child leaves quietly.
            Err(_) => std::process::exit(1),
        }
    }

    /// In a helper process forked from the daemon: close the report pipe (the waiting parent
    /// reads it to its end) and, in the background, leave the terminal as the daemon does.
    pub fn leave_to_the_daemon(&mut self) {
        if self.pipe.take().is_some() {
            detach_stdio();
        }
    }
}

/// Fork. In the parent, wait for the child's report and exit; in the child, return its reporter.
pub fn fork_and_wait() -> Result<Reporter> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(Error::Mount(format!("pipe: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: the descriptors were just created and are owned here only.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other threads exist yet (the runtime is built after this), so fork is sound.
    match unsafe { libc::fork() } {
        -1 => Err(Error::Mount(format!("fork: {}", std::io::Error::last_os_error()))),
        0 => {
            drop(read_end);
            // SAFETY: setsid has no memory-safety preconditions.
            unsafe { libc::setsid() };
            Ok(Reporter { pipe: Some(File::from(write_end)) })
        }
        _child => {
            drop(write_end);
            let mut message = String::new();
            let _ = File::from(read_end).read_to_string(&mut message);
            match message.as_str() {
                READY => std::process::exit(0),
                "" => {
                    eprintln!("secretfs: the mount process died before the mount was ready");
                    std::process::exit(Error::Mount(String::new()).exit_code())
                }
                report => {
                    let (code, reason) = report.split_once(' ').unwrap_or(("1", report));
                    eprintln!("secretfs: {reason}");
                    std::process::exit(code.parse().unwrap_or(1))
                }
            }
        }
    }
}

/// Close every descriptor the process inherited beyond stdio, so a daemon holds no file, socket
/// or terminal of whoever started it. Call first thing, before the process opens anything.
pub fn close_inherited_fds() {
    let inherited: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect(),
        Err(_) => return,
    };
    for fd in inherited.into_iter().filter(|fd| *fd > libc::STDERR_FILENO) {
        // SAFETY: closing a descriptor nothing in this fresh child uses (the directory handle
        // used to list them is already closed, so this at worst fails with EBADF).
        unsafe { libc::close(fd) };
    }
}

/// Leave the starting directory (so it can be unmounted or removed) and the terminal (stderr
/// stays when it is where the logs go: no syslog socket).
fn detach_stdio() {
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::chdir(c"/".as_ptr()) };
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let kept = if crate::logging::keeps_stderr() { 2 } else { 3 };
        for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO].into_iter().take(kept) {
            // SAFETY: both descriptors are open; dup2 replaces fd atomically.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}
