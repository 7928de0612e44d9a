//! Mount point checks before mounting, and unmounting.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The FUSE device the kernel must provide.
pub const FUSE_DEVICE: &str = "/dev/fuse";

/// Check that `path` is an existing, empty directory and FUSE is available; return it absolute.
pub fn check(path: &Path) -> Result<PathBuf> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTCONN) => Error::Mount(format!(
            "{shown} is a dead FUSE mount (its daemon was killed): run `secretfs unmount {shown}` first"
        )),
        _ if e.kind() == ErrorKind::NotFound => Error::Mount(format!("mount point {shown} does not exist")),
        _ => Error::Mount(format!("cannot use mount point {shown}: {e}")),
    })?;
    if !metadata.is_dir() {
        return Err(Error::Mount(format!("mount point {shown} is not a directory")));
    }
    let mounted = mount_type(path);
    if let Some(fstype) = mounted.as_deref().filter(|t| *t == "fuse" || t.starts_with("fuse.")) {
        return Err(Error::Mount(format!("{shown} is already mounted ({fstype}): unmount it first")));
    }
    check_ownership(&shown.to_string(), &metadata, mounted.is_some())?;
    let mut entries =
        std::fs::read_dir(path).map_err(|e| Error::Mount(format!("cannot read mount point {shown}: {e}")))?;
    if entries.next().is_some() {
        return Err(Error::Mount(format!(
            "mount point {shown} is not empty: secretfs refuses to hide files (or to expose them if it dies)"
        )));
    }
    if !Path::new(FUSE_DEVICE).exists() {
        return Err(Error::Mount(format!("{FUSE_DEVICE} is missing: load the fuse kernel module")));
    }
    std::fs::canonicalize(path).map_err(|e| Error::Mount(format!("cannot resolve {shown}: {e}")))
}

/// Refuse a mount point that others could plant files in (to be served if the daemon dies):
/// group- or world-writable, or owned by someone other than the mounting user or root. A
/// writable directory that is itself a mount root (an emptyDir, a bind mount, a tmpfs) was
/// handed over by whoever mounted it, so it is accepted, with a warning, once found empty.
fn check_ownership(shown: &str, metadata: &std::fs::Metadata, mount_root: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    if metadata.mode() & 0o022 != 0 && mount_root {
        tracing::warn!(
            "mount point {shown} is writable by others (mode {:04o}); accepted because it is a mount of its own",
            metadata.mode() & 0o7777
        );
    } else if metadata.mode() & 0o022 != 0 {
        return Err(Error::Mount(format!(
            "mount point {shown} is writable by others (mode {:04o}): use a directory only its owner can write",
            metadata.mode() & 0o7777
        )));
    }
    if metadata.uid() != uid && metadata.uid() != 0 {
        return Err(Error::Mount(format!(
            "mount point {shown} belongs to uid {}, not to you (uid {uid}) or root",
            metadata.uid()
        )));
    }
    Ok(())
}

/// How long `secretfs unmount` waits for the daemon of the mount to exit.
pub const DAEMON_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the kernel lists live FUSE connections (the fusectl file system), by device number.
const FUSE_CONNECTIONS: &str = "/sys/fs/fuse/connections";

/// Unmount `path` (as [`unmount_or_detach`]) and return once the FUSE connection behind it is
/// gone, that is once its daemon has closed the device (exited), so a new mount on the same
/// path is never touched by the old daemon. Without fusectl the wait is skipped.
pub fn unmount_and_wait(path: &Path, lazy: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let connection = std::fs::metadata(path)
        .ok()
        .map(|m| Path::new(FUSE_CONNECTIONS).join(libc::minor(m.dev()).to_string()))
        .filter(|dir| dir.exists());
    let detached = unmount_or_detach(path, lazy)?;
    // A detached mount lives on until its open files close: its daemon stays until then.
    let Some(connection) = connection.filter(|_| !detached) else { return Ok(()) };
    let deadline = std::time::Instant::now() + DAEMON_EXIT_WAIT;
    while connection.exists() {
        if std::time::Instant::now() >= deadline {
            return Err(Error::Mount(format!(
                "{} is unmounted, but its daemon has not exited after {}s (files still open through a lazy detach, or commits in progress)",
                path.display(),
                DAEMON_EXIT_WAIT.as_secs()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(())
}

/// Unmount `path`: umount(2) as root, else `fusermount3 -u`. If it is busy (files open, a
/// daemon stopping) and `lazy` is allowed, detach it at once instead: the path is free, and
/// programs still holding files get an error on their next call. Returns whether it detached.
pub fn unmount_or_detach(path: &Path, lazy: bool) -> Result<bool> {
    match unmount(path) {
        Err(err) if lazy && is_mount_point(path) => {
            detach(path)?;
            tracing::warn!("{} was busy (files open); detached it lazily: {err}", path.display());
            Ok(true)
        }
        other => other.map(|()| false),
    }
}

/// Whether something is mounted at `path`.
fn is_mount_point(path: &Path) -> bool {
    mount_type(path).is_some()
}

/// The file system type of the topmost mount at `path` (`tmpfs`, `fuse.secretfs`), if any.
fn mount_type(path: &Path) -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let path = path.to_string_lossy();
    mountinfo
        .lines()
        .rev()
        .filter(|line| line.split(' ').nth(4) == Some(path.as_ref()))
        .find_map(|line| line.split_once(" - ")?.1.split(' ').next().map(str::to_string))
}

/// Lazy unmount: umount2(MNT_DETACH) as root, else `fusermount3 -uz`.
pub fn detach(path: &Path) -> Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Mount("mount point path contains a NUL byte".into()))?;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    match Command::new("fusermount3").arg("-uz").arg(path).status() {
        Ok(s) if s.success() => Ok(()),
        _ => Err(Error::Mount(format!("cannot detach {}: {}", path.display(), std::io::Error::last_os_error()))),
    }
}

/// How long an unmount refused as busy is tried again: a file closed just before is busy
/// until the daemon has answered its release, which the kernel sends after `close()` returns.
const BUSY_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Unmount `path`: umount(2) as root, else `fusermount3 -u`.
pub fn unmount(path: &Path) -> Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Mount("mount point path contains a NUL byte".into()))?;
    let give_up = std::time::Instant::now() + BUSY_PATIENCE;
    let err = loop {
        // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
        if unsafe { libc::umount2(c_path.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) || std::time::Instant::now() >= give_up {
            break err;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            let status = Command::new("fusermount3").arg("-u").arg(path).status();
            match status {
                Ok(s) if s.success() => Ok(()),
                Ok(_) => Err(Error::Mount(format!("fusermount3 -u {} failed", path.display()))),
                Err(e) => Err(Error::Mount(format!("cannot unmount {} as a user: fusermount3: {e}", path.display()))),
            }
        }
        Some(libc::EINVAL) => Err(Error::Mount(format!("{} is not a mount point", path.display()))),
        Some(libc::EBUSY) => Err(Error::Mount(format!(
            "{} is busy (files open): `secretfs unmount --lazy` detaches it now",
            path.display()
        ))),
        _ => Err(Error::Mount(format!("cannot unmount {}: {err}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_missing_non_dir_and_non_empty() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(check(&missing).unwrap_err().to_string().contains("does not exist"));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(check(&file).unwrap_err().to_string().contains("not a directory"));
        assert!(check(dir.path()).unwrap_err().to_string().contains("not empty"));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check(&empty).unwrap(), std::fs::canonicalize(&empty).unwrap());
        for mode in [0o775, 0o777, 0o1777, 0o757] {
            std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(check(&empty).unwrap_err().to_string().contains("writable by others"), "{mode:o}");
        }
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o700)).unwrap();
        // SAFETY: chown of our own temp dir to another uid (the tests run as root).
        if unsafe { libc::getuid() } == 0 {
            std::os::unix::fs::chown(&empty, Some(4242), None).unwrap();
            assert!(check(&empty).unwrap_err().to_string().contains("belongs to uid 4242"));
        }
    }
}
