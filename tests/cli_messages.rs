//! One-line messages and distinct exit codes for what goes wrong at mount (README "Exit codes"):
//! 2 usage, 3 bad configuration, 4 AWS unreachable or refusing the credentials, 32 mount failure.

#[path = "common/mount.rs"]
mod mount;

use std::process::Command;

use mount::{Mounted, BINARY};

fn mountpoint() -> (tempfile::TempDir, std::path::PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    (parent, dir)
}

/// Run `secretfs mount DIR ARGS` with no AWS configuration around; (exit code, stderr).
fn mount(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BINARY)
        .arg("mount")
        .arg(dir)
        .args(args)
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn each_failure_has_its_exit_code_and_a_clear_line() {
    let (parent, dir) = mountpoint();
    let bad_store = parent.path().join("bad.json");
    std::fs::write(&bad_store, r#"{"parameters": {"/a": 5}}"#).unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--local", bad_store.to_str().unwrap()], 3, "parameter /a: expected a string or"),
        (vec!["--region", "us-east-1", "--endpoint-url", "localhost:4566"], 3, "is not a URL"),
        (vec!["--region", "us-east-1", "--profile", "nosuch", "--timeout", "1"], 4, "profile \"nosuch\""),
        (
            vec!["--region", "us-east-1", "--endpoint-url", "http://127.0.0.1:9", "--timeout", "1"],
            4,
            "STS is unreachable",
        ),
        (vec!["--bogus"], 2, "unexpected argument"),
    ];
    for (args, code, message) in cases {
        let (got, stderr) = mount(&dir, &args);
        assert_eq!(got, code, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("enum") && !stderr.contains("temporary failure"), "{stderr}");
    }
    std::fs::write(dir.join("file"), b"x").unwrap();
    let (got, stderr) = mount(&dir, &["--local", "examples/secrets.json"]);
    assert_eq!((got, stderr.lines().count()), (32, 1), "{stderr}");
    assert!(stderr.contains("not empty"));
}

#[test]
fn mounting_on_a_mounted_directory_says_already_mounted() {
    let m = Mounted::local(&[]);
    let (got, stderr) = mount(&m.dir, &["--local", mount::example_store().to_str().unwrap()]);
    assert_eq!(got, 32);
    assert!(stderr.contains("already mounted"), "{stderr}");
}
