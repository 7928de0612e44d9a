//! Real kernel mounts of the `secretfs` binary, against the shipped local store and against
//! moto, read with `std::fs` and with `cat`, `ls` and `stat`.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use aws_sdk_ssm::types::ParameterType;
use moto::{Aws, Moto};
use mount::{is_mounted, mount_options, run, Mounted, BINARY};

#[test]
fn local_store_reads_with_cat_ls_and_std_fs() {
    let m = Mounted::local(&[]);
    assert_eq!(run("cat", &[m.path("ps/prod/db/root").to_str().unwrap()]), "S3cr3Tp4Ssw0Rd!^");
    assert_eq!(std::fs::read(m.path("sm/prod/db/password")).unwrap(), b"c0rrect-h0rse");
    assert_eq!(std::fs::read(m.path("sm/prod/db/port")).unwrap(), b"5432");
    assert_eq!(std::fs::read(m.path("sm/prod/db/options/sslmode")).unwrap(), b"require");
    assert_eq!(std::fs::read(m.path("sm/prod/db/replica/username")).unwrap(), b"reader");
    assert_eq!(std::fs::read(m.path("ps/prod/app/allowed-hosts")).unwrap(), b"app1.example.com,app2.example.com");
    assert_eq!(std::fs::read_to_string(m.path("ps/prod/app/greeting")).unwrap(), "Grüße, 世界 ✓");
    assert_eq!(std::fs::read(m.path("sm/prod/tls/client.p12")).unwrap()[..4], [0x30, 0x82, 0x01, 0x01]);
    let listing = run("ls", &["-A", m.path("sm/prod/db").to_str().unwrap()]);
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(names, [".value", "host", "options", "password", "port", "replica", "username"]);
    let raw = std::fs::read_to_string(m.path("sm/prod/db/.value")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(parsed["username"], "admin");
    assert!(std::fs::metadata(m.path("ps/prod/db")).unwrap().is_dir(), "value and prefix: a directory");
    assert_eq!(std::fs::read(m.path("ps/prod/db/.value")).unwrap()[..1], *b"{");
    assert_eq!(std::fs::read(m.path("ps/nope")).unwrap_err().kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn sizes_modes_and_owner() {
    let m = Mounted::local(&[]);
    let stat = run("stat", &["-c", "%s %a %u %g %F", m.path("ps/prod/db/root").to_str().unwrap()]);
    assert_eq!(stat.trim(), "16 400 0 0 regular file");
    let stat = run("stat", &["-c", "%a %F", m.path("sm/prod/db").to_str().unwrap()]);
    assert_eq!(stat.trim(), "500 directory");
    for file in ["sm/prod/db/.value", "sm/prod/db/port", "ps/prod/app/greeting", "sm/prod/tls/client.p12"] {
        let meta = std::fs::metadata(m.path(file)).unwrap();
        assert_eq!(meta.len(), std::fs::read(m.path(file)).unwrap().len() as u64, "st_size of {file}");
    }
    assert!(mount_options(&m.dir).contains("default_permissions") || is_default_permissions(&m));
    drop(m);
    let m = Mounted::local(&["--uid", "1234", "--gid", "5678", "--file-mode", "0440", "--dir-mode", "0550"]);
    let meta = std::fs::metadata(m.path("ps/prod/db/root")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777), (1234, 5678, 0o440));
    let meta = std::fs::metadata(m.path("ps/prod")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o550);
}

fn is_default_permissions(m: &Mounted) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    mounts.lines().any(|l| l.contains(m.dir.to_str().unwrap()) && l.contains("default_permissions"))
}

#[test]
fn mode_bits_are_enforced_for_other_users() {
    let m = Mounted::local(&["--allow-other"]);
    // Let the other user reach the mount point itself.
    let mut parent = m.dir.clone();
    parent.pop();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(is_default_permissions(&m));
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(m.path("ps/prod/db/root"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn read_only_refuses_writes_and_shows_in_mountinfo() {
    let m = Mounted::local(&["--read-only"]);
    assert!(mount_options(&m.dir).split(',').any(|o| o == "ro"), "{}", mount_options(&m.dir));
    let err = std::fs::write(m.path("ps/prod/db/root"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert_eq!(std::fs::read(m.path("ps/prod/db/root")).unwrap(), b"S3cr3Tp4Ssw0Rd!^");
}

#[test]
fn json_keys_off_and_prefixes_from_the_command_line() {
    let m = Mounted::local(&["--json-keys", "off", "--ps-prefix", "/prod", "--sm-prefix", "prod"]);
    assert!(std::fs::metadata(m.path("ps/app/feature-flags")).unwrap().is_file());
    assert_eq!(std::fs::read(m.path("ps/db/root")).unwrap(), b"S3cr3Tp4Ssw0Rd!^");
    assert!(std::fs::metadata(m.path("sm/db")).unwrap().is_dir(), "prefix collision stays a directory");
    assert_eq!(std::fs::read_dir(m.path("sm/db")).unwrap().count(), 2, ".value and replica");
    assert!(!m.path("sm/dev").exists() && !m.path("ps/dev").exists());
}

#[test]
fn sigterm_and_sigint_unmount_cleanly() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut m = Mounted::local(&[]);
        assert!(m.signal_and_wait(signal), "clean exit on signal {signal}");
        assert!(!is_mounted(&m.dir), "signal {signal} must unmount");
    }
}

#[test]
fn background_mount_returns_when_ready_and_unmount_ends_it() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("bg");
    std::fs::create_dir(&dir).unwrap();
    let store = mount::example_store();
    let status = Command::new(BINARY).arg("mount").arg("--local").arg(&store).arg(&dir).status().unwrap();
    assert!(status.success());
    assert!(is_mounted(&dir), "mounted by the time the command returns");
    assert_eq!(std::fs::read(dir.join("sm/prod/api-token")).unwrap(), b"tok_live_8f14e45fceea167a5a36dedd4bea2543");
    let status = Command::new(BINARY).arg("unmount").arg(&dir).status().unwrap();
    assert!(status.success());
    assert!(!is_mounted(&dir));
}

#[test]
fn mount_failures_exit_nonzero_with_one_line() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join("file"), b"x").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&[parent.path().to_str().unwrap()], "not empty"),
        (&["/nonexistent/secretfs-mnt"], "does not exist"),
        (&["--local", "/nonexistent.json", "/tmp"], ""),
    ];
    for (args, expected) in cases {
        let out = Command::new(BINARY).arg("mount").args(args).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(BINARY)
        .arg("mount")
        .arg(&empty)
        .args(["--region", "us-east-1", "--endpoint-url", "http://127.0.0.1:9", "--timeout", "1"])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("STS") && stderr.lines().count() == 1, "{stderr}");
    let out = Command::new(BINARY)
        .arg("mount")
        .arg(&empty)
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no AWS region"));
    assert!(!is_mounted(&empty));
}

#[test]
fn moto_mount_serves_parameters_and_secrets() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/prod/db/root", "S3cr3Tp4Ssw0Rd!^", ParameterType::SecureString);
    aws.put_parameter("/prod/db", "value-and-prefix", ParameterType::String);
    aws.put_parameter("/prod/hosts", "a,b", ParameterType::StringList);
    aws.create_secret("prod/db", r#"{"username":"admin","password":"pw","port":5432}"#);
    aws.create_secret("prod/db/replica", "replica-secret");
    aws.create_binary_secret("prod/bin", &[0, 1, 2, 255]);
    let m = Mounted::start(&[], &moto.env());
    assert_eq!(run("cat", &[m.path("ps/prod/db/root").to_str().unwrap()]), "S3cr3Tp4Ssw0Rd!^");
    assert_eq!(std::fs::read(m.path("ps/prod/db/.value")).unwrap(), b"value-and-prefix");
    assert_eq!(std::fs::read(m.path("ps/prod/hosts")).unwrap(), b"a,b");
    assert_eq!(std::fs::read(m.path("sm/prod/db/password")).unwrap(), b"pw");
    assert_eq!(std::fs::read(m.path("sm/prod/db/port")).unwrap(), b"5432");
    assert_eq!(std::fs::read(m.path("sm/prod/db/replica")).unwrap(), b"replica-secret");
    assert_eq!(std::fs::read(m.path("sm/prod/bin")).unwrap(), [0, 1, 2, 255]);
    let listing = run("ls", &["-A", m.path("sm/prod/db").to_str().unwrap()]);
    assert_eq!(listing.lines().collect::<Vec<_>>(), [".value", "password", "port", "replica", "username"]);
    let stderr = m.stop();
    for secret in ["S3cr3Tp4Ssw0Rd!^", "replica-secret", "value-and-prefix"] {
        assert!(!stderr.contains(secret), "a secret reached the log: {stderr}");
    }
}
