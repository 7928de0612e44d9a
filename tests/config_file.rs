//! `--config FILE`: options from a TOML file (the command line overrides them) and per-path
//! owner rules that give each consumer files it accepts, enforced by the kernel for other users.

#[path = "common/mount.rs"]
mod mount;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use mount::{Mounted, BINARY};

fn cat_as(uid: u32, path: &std::path::Path) -> std::process::Output {
    Command::new("cat").arg(path).uid(uid).gid(uid).output().unwrap()
}

#[test]
fn rules_give_each_consumer_its_owner_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("secretfs.toml");
    let text = format!(
        r#"local = "{}"
allow-other = true
file-mode = "0440"
dir-mode = "0555"

[[rule]]
path = "sm/prod/api-token"
uid = 1001
mode = "0400"

[[rule]]
path = "ps/prod/db/*"
uid = 1002
gid = 1002
mode = "0440"
"#,
        mount::example_store().display()
    );
    std::fs::write(&config, text).unwrap();
    let m = Mounted::start(&["--config", config.to_str().unwrap(), "--file-mode", "0444"], &[]);
    let stat = |rel: &str| std::fs::metadata(m.path(rel)).unwrap();
    let token = stat("sm/prod/api-token");
    assert_eq!((token.uid(), token.mode() & 0o777), (1001, 0o400));
    let root = stat("ps/prod/db/root");
    assert_eq!((root.uid(), root.gid(), root.mode() & 0o777), (1002, 1002, 0o440));
    assert_eq!(stat("ps/prod/app/greeting").mode() & 0o777, 0o444, "the command line overrides the file");
    assert!(cat_as(1001, &m.path("sm/prod/api-token")).status.success(), "its owner reads it");
    let refused = cat_as(1003, &m.path("sm/prod/api-token"));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Permission denied"), "{refused:?}");
    drop(m);
}

#[test]
fn a_bad_config_file_names_the_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("secretfs.toml");
    std::fs::write(&config, "read-only = true\ncolour = \"blue\"\n").unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new(BINARY).arg("mount").arg(&mnt).arg("--config").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("{}:2: unknown key `colour`", config.display())), "{stderr}");
}
