//! The dependency tree stays clean: no legacy HTTP/TLS stack, no unused direct dependency, a
//! license file and a cargo-deny policy.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn cargo_tree() -> String {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "-e", "normal", "--prefix", "none"])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn no_legacy_http_or_tls_stack() {
    let tree = cargo_tree();
    for legacy in ["hyper v0.14", "rustls v0.21", "h2 v0.3", "rustls-webpki v0.101"] {
        assert!(!tree.lines().any(|l| l.starts_with(legacy)), "{legacy} is in the tree");
    }
}

#[test]
fn every_direct_dependency_is_used() {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    let mut sources = String::new();
    let mut dirs = vec![Path::new(ROOT).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            match entry.path().extension() {
                Some(ext) if ext == "rs" => sources.push_str(&std::fs::read_to_string(entry.path()).unwrap()),
                _ if entry.path().is_dir() => dirs.push(entry.path()),
                _ => {}
            }
        }
    }
    for line in deps.lines().filter(|l| !l.starts_with('#') && l.contains('=')) {
        let name = line.split('=').next().unwrap().trim().replace('-', "_");
        assert!(sources.contains(&format!("{name}::")), "{name} is a dependency nothing uses");
    }
}

#[test]
fn a_license_and_a_deny_policy_are_shipped() {
    let license = std::fs::read_to_string(Path::new(ROOT).join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"license = "Apache-2.0""#));
    let deny = std::fs::read_to_string(Path::new(ROOT).join("deny.toml")).unwrap();
    for section in ["[licenses]", "[bans]", "[sources]"] {
        assert!(deny.contains(section), "deny.toml lacks {section}");
    }
}
