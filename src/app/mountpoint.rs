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
        Some(libc::ENOTCONN) => Error::Config(format!(
            "{shown} is a dead FUSE mount (its daemon was killed): run `secretfs unmount {shown}` first"
        )),
        _ if e.kind() == ErrorKind::NotFound => Error::Config(format!("mount point {shown} does not exist")),
        _ => Error::Config(format!("cannot use mount point {shown}: {e}")),
    })?;
    if !metadata.is_dir() {
        return Err(Error::Config(format!("mount point {shown} is not a directory")));
    }
    let mut entries =
        std::fs::read_dir(path).map_err(|e| Error::Config(format!("cannot read mount point {shown}: {e}")))?;
    if entries.next().is_some() {
        return Err(Error::Config(format!(
            "mount point {shown} is not empty: secretfs refuses to hide files (or to expose them if it dies)"
        )));
    }
    if !Path::new(FUSE_DEVICE).exists() {
        return Err(Error::Config(format!("{FUSE_DEVICE} is missing: load the fuse kernel module")));
    }
    std::fs::canonicalize(path).map_err(|e| Error::Config(format!("cannot resolve {shown}: {e}")))
}

/// Unmount `path`: umount(2) as root, else `fusermount3 -u`.
pub fn unmount(path: &Path) -> Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Config("mount point path contains a NUL byte".into()))?;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::umount2(c_path.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            let status = Command::new("fusermount3").arg("-u").arg(path).status();
            match status {
                Ok(s) if s.success() => Ok(()),
                Ok(_) => Err(Error::Config(format!("fusermount3 -u {} failed", path.display()))),
                Err(e) => Err(Error::Config(format!("cannot unmount {} as a user: fusermount3: {e}", path.display()))),
            }
        }
        Some(libc::EINVAL) => Err(Error::Config(format!("{} is not a mount point", path.display()))),
        _ => Err(Error::Config(format!("cannot unmount {}: {err}", path.display()))),
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
        assert_eq!(check(&empty).unwrap(), std::fs::canonicalize(&empty).unwrap());
    }
}
