//! Logs at the most verbose level never carry a value: canary values go through reads, JSON
//! keys, writes, sed and failures, against the local store and moto, and no log line holds
//! them. Foreground lines carry a timestamp, a level and each FUSE operation's span; a
//! background daemon with `--log-dir` writes private, rotated files.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use aws_sdk_ssm::types::ParameterType;
use moto::{Aws, Moto};
use mount::{sh, Mounted, BINARY};

const CANARIES: [&str; 5] =
    ["CANARY-PS-4d1f", "CANARY-SM-9a2e", "CANARY-KEY-77c3", "CANARY-WRITE-5b0d", "CANARY-SED-e81a"];

fn trace_env(mut env: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    env.push(("SECRETFS_LOG", "trace".to_string()));
    env
}

/// Read, list, write, sed and fail through the mount, touching every canary.
fn exercise(m: &Mounted) {
    let p = |rel: &str| m.path(rel).display().to_string();
    for script in [
        format!("cat {} {} > /dev/null", p("ps/canary/p"), p("sm/canary/s/key")),
        format!("ls -lR {} > /dev/null", p("")),
        format!("printf {} | cat > {}", CANARIES[3], p("ps/canary/p")),
        format!("sed -i 's/{}/{}/' {}", CANARIES[1], CANARIES[4], p("sm/canary/s/.value")),
        format!("head -c 70000 /dev/zero | cat > {} ; true", p("sm/canary/s/key")),
        format!("printf '{}' | cat > {} ; true", CANARIES[2], p("sm/canary/s/no/such")),
    ] {
        let _ = sh(&script);
    }
}

fn assert_clean(log: &str) {
    for canary in CANARIES {
        assert!(!log.contains(canary), "{canary} reached the log");
    }
}

#[test]
fn trace_logs_of_a_local_mount_hold_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let text = format!(
        r#"{{"parameters":{{"/canary/p":{{"type":"SecureString","value":"{}"}}}},"secrets":{{"canary/s":{{"json":{{"key":"{}","note":"{}"}}}}}}}}"#,
        CANARIES[0], CANARIES[2], CANARIES[1]
    );
    std::fs::write(&store, text).unwrap();
    let args = ["--local", store.to_str().unwrap(), "--file-mode", "0600", "--dir-mode", "0700"];
    let m = Mounted::start(&args, &trace_env(Vec::new()));
    exercise(&m);
    let log = m.stop();
    assert_clean(&log);
    assert!(log.contains("op=\"lookup\"") && log.contains("path=\"ps/canary/p\"") && log.contains("uid="), "spans");
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "levels are shown");
    assert!(log.lines().any(|l| l.starts_with("20")), "lines start with a timestamp");
}

#[test]
fn trace_logs_of_an_aws_mount_hold_no_value() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/canary/p", CANARIES[0], ParameterType::SecureString);
    aws.create_secret("canary/s", &format!(r#"{{"key":"{}","note":"{}"}}"#, CANARIES[2], CANARIES[1]));
    let m = Mounted::start(&["--file-mode", "0600", "--dir-mode", "0700"], &trace_env(moto.env()));
    exercise(&m);
    let log = m.stop();
    assert_clean(&log);
    assert!(log.contains("aws_smithy_runtime"), "the SDK's own events are logged too");
}

#[test]
fn a_background_daemon_logs_to_private_rotated_files() {
    let parent = tempfile::tempdir().unwrap();
    let (mnt, logs) = (parent.path().join("mnt"), parent.path().join("logs"));
    std::fs::create_dir(&mnt).unwrap();
    let store = mount::example_store();
    let out = Command::new(BINARY)
        .arg("mount")
        .arg(&mnt)
        .args(["--local", store.to_str().unwrap(), "--read-only", "--log-dir", logs.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let _ = sh(&format!("printf x | cat > {}", mnt.join("ps/prod/db/root").display()));
    let out = Command::new(BINARY).arg("unmount").arg(&mnt).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let file = logs.join("secretfs.log");
    let log = std::fs::read_to_string(&file).unwrap();
    assert!(log.contains("mounted at"), "{log}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn without_syslog_or_journald_logs_reach_the_starters_stderr() {
    if std::path::Path::new("/dev/log").exists() {
        eprintln!("SKIPPED: this machine has /dev/log; the fallback is for machines without it");
        return;
    }
    let (_store_dir, store) = mount::local_copy();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let log = parent.path().join("stderr.log");
    let status = Command::new(BINARY)
        .args(["mount", "--local", store.to_str().unwrap()])
        .arg(&dir)
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(dir.join("ps/prod/db/root")).unwrap();
    assert!(Command::new(BINARY).arg("unmount").arg(&dir).status().unwrap().success());
    let stopped_by = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !std::fs::read_to_string(&log).unwrap().contains("stopping") && std::time::Instant::now() < stopped_by {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.matches("no syslog socket").count(), 1, "{logged}");
    assert!(logged.contains("mounted at") && logged.contains("stopping"), "the daemon's lines: {logged}");

    let m = Mounted::start(&["--local", store.to_str().unwrap()], &[("JOURNAL_STREAM", "8:9".to_string())]);
    let stderr = m.stop();
    assert_eq!(stderr.matches("journald does not answer").count(), 1, "{stderr}");
}
