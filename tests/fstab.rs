//! fstab and `mount -t fuse.secretfs`: mount(8) runs the fuse3 package's `mount.fuse` helper,
//! which runs `secretfs SOURCE MOUNTPOINT -o OPTIONS`; the options are the long options without
//! dashes plus the generic mount flags. mount(8) looks for `secretfs` in a fixed PATH, so this
//! test links the build into /usr/local/bin for its duration (unless something else is there).

#[path = "common/mount.rs"]
mod mount;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use mount::{is_mounted, mount_options, BINARY};

const LINK: &str = "/usr/local/bin/secretfs";

/// Links the build at [`LINK`] while alive; `None` if another secretfs is installed there.
struct Installed;

impl Installed {
    fn link() -> Option<Installed> {
        match std::fs::read_link(LINK) {
            Ok(target) if target == Path::new(BINARY) => Some(Installed),
            // Left dangling by an earlier run whose build is gone.
            Ok(target) if !target.exists() => {
                std::fs::remove_file(LINK).ok()?;
                std::os::unix::fs::symlink(BINARY, LINK).ok().map(|()| Installed)
            }
            Ok(_) => None,
            Err(_) if Path::new(LINK).exists() => None,
            Err(_) => std::os::unix::fs::symlink(BINARY, LINK).ok().map(|()| Installed),
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(LINK);
    }
}

fn mountpoint() -> (tempfile::TempDir, std::path::PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    (parent, dir)
}

/// Run `command` with its output in files, not pipes: a background daemon on a machine without
/// /dev/log keeps the stderr it was started with (its log), so a pipe would never end.
fn run(command: &mut Command) -> std::process::Output {
    let (out, err) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let status = command.stdout(out.try_clone().unwrap()).stderr(err.try_clone().unwrap()).status().unwrap();
    let read = |mut file: std::fs::File| {
        use std::io::{Read, Seek};
        let mut text = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut text).unwrap();
        text
    };
    std::process::Output { status, stdout: read(out), stderr: read(err) }
}

fn unmount(dir: &Path) {
    assert!(run(Command::new("umount").arg(dir)).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while is_mounted(dir) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn mount_t_fuse_secretfs_and_an_fstab_line_work_through_mount_fuse() {
    let Some(_installed) = Installed::link() else {
        eprintln!("{LINK} is another installation: skipped");
        return;
    };
    let store = mount::example_store();
    let (_parent, dir) = mountpoint();
    let source = format!("local:{}", store.display());
    let out = run(Command::new("mount")
        .args(["-t", "fuse.secretfs", &source])
        .arg(&dir)
        .args(["-o", "ro,nosuid,cache-ttl=60,file-mode=0440,json-keys=off"]));
    assert!(out.status.success(), "{out:?}");
    assert!(mount_options(&dir).split(',').any(|o| o == "ro"), "ro is honoured");
    let root = dir.join("ps/prod/db/root");
    assert_eq!(std::fs::metadata(&root).unwrap().mode() & 0o777, 0o440);
    assert_eq!(std::fs::read_to_string(&root).unwrap(), "S3cr3Tp4Ssw0Rd!^");
    assert!(dir.join("ps/prod/app/feature-flags").is_file(), "json-keys=off");
    unmount(&dir);

    let fstab = _parent.path().join("fstab");
    let line =
        format!("{source} {} fuse.secretfs ro,noauto,nofail,_netdev,x-systemd.automount,uid=1234 0 0\n", dir.display());
    std::fs::write(&fstab, line).unwrap();
    let out = run(Command::new("mount").arg("-T").arg(&fstab).arg(&dir));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::metadata(dir.join("ps/prod/db/root")).unwrap().uid(), 1234);
    unmount(&dir);

    // `mount -a` twice: the second finds the line mounted (type fuse.secretfs, source as written).
    let line = format!("{source} {} fuse.secretfs ro,services=ps:sm 0 0\n", dir.display());
    std::fs::write(&fstab, line).unwrap();
    for round in 0..2 {
        let out = run(Command::new("mount").args(["-a", "-T"]).arg(&fstab));
        assert!(out.status.success(), "mount -a round {round}: {out:?}");
    }
    let found = run(Command::new("findmnt").args(["-n", "-t", "fuse.secretfs", "-o", "SOURCE,FSTYPE"]).arg(&dir));
    assert_eq!(String::from_utf8_lossy(&found.stdout).trim(), format!("{source} fuse.secretfs"), "{found:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(mounts.lines().filter(|l| l.split(' ').nth(4) == dir.to_str()).count(), 1, "mounted once");
    let out = run(Command::new("umount").args(["-t", "fuse.secretfs"]).arg(&dir));
    assert!(out.status.success(), "umount -t fuse.secretfs: {out:?}");
    assert!(!is_mounted(&dir));

    let out = run(Command::new("mount").args(["-t", "fuse.secretfs", "aws"]).arg(&dir).args(["-o", "colour=blue"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mount option `colour`"), "{out:?}");
    assert!(!is_mounted(&dir));
}
