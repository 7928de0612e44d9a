//! `secretfs refresh MOUNTPOINT [PATH...]`: ask a running mount to fetch paths again now,
//! through its `.secretfs/refresh` file, and say which failed.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::inodes::CONTROL_DIR;

/// Refresh `paths` (mount paths like `sm/prod/db`, or absolute paths inside `mountpoint`; none
/// means everything) of the mount at `mountpoint`; returns once every one has landed. Each
/// failure is printed as `PATH: reason`; any failure makes the whole an error.
pub fn refresh(mountpoint: &Path, paths: &[String]) -> Result<()> {
    let control = mountpoint.join(CONTROL_DIR).join("refresh");
    let mut file = std::fs::OpenOptions::new().write(true).open(&control).map_err(|e| {
        Error::Config(format!("{} is not a secretfs mount, or the mount is read-only ({e})", mountpoint.display()))
    })?;
    let everything = [".".to_string()];
    let paths = if paths.is_empty() { &everything[..] } else { paths };
    let mut failed = 0;
    for path in paths {
        let relative = mount_relative(mountpoint, path);
        if let Err(err) = file.write_all(format!("{relative}\n").as_bytes()) {
            eprintln!("secretfs: {path}: {err}");
            failed += 1;
        }
    }
    match failed {
        0 => Ok(()),
        _ => Err(Error::Partial(format!("{failed} of {} path(s) not refreshed", paths.len()))),
    }
}

/// `path` relative to the mount: an absolute path inside `mountpoint` loses it; anything else
/// is taken as a mount path already.
fn mount_relative(mountpoint: &Path, path: &str) -> String {
    match Path::new(path).strip_prefix(mountpoint) {
        Ok(rest) => rest.to_string_lossy().into_owned(),
        Err(_) => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_inside_the_mount_become_mount_paths() {
        let mount = Path::new("/mnt/secrets");
        assert_eq!(mount_relative(mount, "/mnt/secrets/sm/prod/db"), "sm/prod/db");
        assert_eq!(mount_relative(mount, "ps/app"), "ps/app");
    }
}
