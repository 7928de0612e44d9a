//! systemd integration: READY=1 reaches the notify socket only once the mount serves (and
//! STOPPING=1 on stop), and the shipped unit passes `systemd-analyze verify` with a
//! `systemd-analyze security` exposure of at most 6.0 (when systemd-analyze is installed).

#[path = "common/mount.rs"]
mod mount;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mount::{is_mounted, Mounted, BINARY};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/secretfs.service");

#[test]
fn ready_is_sent_only_once_the_mount_serves_and_stopping_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let store = mount::example_store();
    let env = [("NOTIFY_SOCKET", socket_path.to_str().unwrap().to_string())];
    let mut m = Mounted::start(&["--local", store.to_str().unwrap()], &env);
    let mut buf = [0u8; 512];
    let len = socket.recv(&mut buf).unwrap();
    let message = String::from_utf8_lossy(&buf[..len]).into_owned();
    assert!(message.contains("READY=1") && message.contains("STATUS=serving ps/ and sm/"), "{message}");
    assert!(is_mounted(&m.dir) && m.path("ps/prod/db/root").exists(), "ready means serving");
    m.signal(libc::SIGTERM);
    let len = socket.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..len]).contains("STOPPING=1"));
    assert_eq!(m.wait_exit().0, Some(0));
}

fn systemd_analyze() -> Option<()> {
    Command::new("systemd-analyze").arg("--version").output().ok().filter(|o| o.status.success()).map(drop)
}

/// The shipped unit with its binary path pointed at this build.
fn unit_copy(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(UNIT).unwrap().replace("/usr/local/bin/secretfs", BINARY);
    let path = dir.join("secretfs.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in ["Type=notify", "EnvironmentFile=-/etc/default/secretfs", "LimitCORE=0", "$SECRETFS_OPTIONS"] {
        assert!(unit.contains(line), "{line}");
    }
    if systemd_analyze().is_none() {
        eprintln!("systemd-analyze is not installed: verification skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = unit_copy(dir.path());
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("secretfs.service")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify: {stderr}");
    let out = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for secretfs.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {text}"));
    println!("systemd-analyze security exposure: {exposure}");
    assert!(exposure <= 6.0, "exposure {exposure}: {text}");
}

#[test]
fn the_default_options_file_parses_as_mount_options() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/secretfs.default")).unwrap();
    let options = text.lines().find_map(|l| l.strip_prefix("SECRETFS_OPTIONS=")).unwrap();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let mut args = vec!["mount", "--local", mount::example_store().to_str().unwrap().to_owned().leak()];
    args.extend(options.split_whitespace());
    let out = Command::new(BINARY).args(&args).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(Command::new(BINARY).arg("unmount").arg(&dir).status().unwrap().success());
}
