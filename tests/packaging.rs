//! Packaging: `--version` names the commit, completions and the man page come from the CLI
//! definition, and the Debian package metadata ships the binary, unit, default options, man
//! page and completions that `scripts/package.sh` prepares.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_secretfs");

fn output(args: &[&str]) -> String {
    let out = Command::new(BINARY).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_the_commit() {
    let version = output(&["--version"]);
    assert!(version.starts_with(&format!("secretfs {} (", env!("CARGO_PKG_VERSION"))), "{version}");
}

#[test]
fn completions_and_man_page_cover_the_mount_options() {
    for shell in ["bash", "zsh", "fish"] {
        let script = output(&["completions", shell]);
        assert!(script.contains("cache-ttl") && script.contains("unmount"), "{shell}");
    }
    let page = output(&["manpage"]);
    assert!(page.contains(".TH secretfs 8"));
    assert!(page.contains("MOUNT OPTIONS") && page.contains(r"\-\-max\-stale"), "every mount option is documented");
}

#[test]
fn the_debian_package_ships_what_package_sh_prepares() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let deb = manifest.split("[package.metadata.deb]").nth(1).expect("[package.metadata.deb]");
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package.sh")).unwrap();
    for asset in
        ["secretfs.service", "etc/default/secretfs", "secretfs.8.gz", "secretfs.bash", "_secretfs", "secretfs.fish"]
    {
        assert!(deb.contains(asset), "{asset} is not in the package");
    }
    for prepared in ["secretfs.8.gz", "secretfs.bash", "_secretfs", "secretfs.fish", "secretfs.service"] {
        assert!(script.contains(prepared), "package.sh does not prepare {prepared}");
    }
    assert!(deb.contains(r#"depends = "fuse3"#));
}
