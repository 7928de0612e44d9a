//! The encrypted warm-restart cache through real mounts against moto: mount, read, stop; start
//! again with AWS unreachable (a blackhole) and every value read before is served at once,
//! byte-exact; the files hold no value or name in the clear; a flipped byte, a truncated file
//! and another key each give one warning and cold behaviour; loose permissions are refused.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use moto::{Aws, Moto};
use mount::{Mounted, BINARY};

const PASSWORD: &str = "CANARY-pw \"x\"\nline2";

fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, [byte; 32]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    path
}

/// A mount of the cache in `cache` with `key`, against `endpoint`.
fn start(moto: &Moto, endpoint: String, cache: &Path, key: &Path) -> Mounted {
    let args = ["--cache-dir", cache.to_str().unwrap(), "--cache-key-file", key.to_str().unwrap(), "--timeout", "1"];
    Mounted::start(&args, &moto.env_via(endpoint))
}

#[test]
fn a_restart_while_aws_is_unreachable_serves_what_was_known_and_nothing_else() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/host", "CANARY.db.internal", ParameterType::String);
    aws.put_parameter("/app/sibling", "CANARY-sibling", ParameterType::SecureString);
    aws.put_parameter("/other/unread", "CANARY-unread", ParameterType::SecureString);
    aws.create_secret("app/db", &serde_json::json!({"password": PASSWORD, "port": 5432}).to_string());
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let key = key_file(work.path(), "key", 7);

    let m = start(&moto, moto.endpoint(), &cache, &key);
    assert_eq!(m.read("ps/app/host").unwrap(), "CANARY.db.internal");
    assert_eq!(m.read("sm/app/db/password").unwrap(), PASSWORD);
    let listed = std::fs::read_dir(m.path("ps/app")).unwrap().count();
    assert_eq!(listed, 2);
    m.stop();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache), 0o700);
    for file in ["ps.cache", "sm.cache"] {
        let bytes = std::fs::read(cache.join(file)).unwrap();
        assert_eq!(mode(&cache.join(file)), 0o600);
        for clear in [&b"CANARY"[..], b"app/db", b"/app/host", b"password"] {
            assert!(!bytes.windows(clear.len()).any(|w| w == clear), "{file} holds {:?} in the clear", clear);
        }
    }

    // AWS unreachable: connections are accepted by the kernel and never answered.
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", blackhole.local_addr().unwrap());
    let m = start(&moto, endpoint.clone(), &cache, &key);
    let started = Instant::now();
    assert_eq!(m.read("ps/app/host").unwrap(), "CANARY.db.internal");
    assert_eq!(m.read("sm/app/db/password").unwrap(), PASSWORD);
    assert_eq!(m.read("sm/app/db/port").unwrap(), "5432");
    assert!(started.elapsed() < Duration::from_millis(900), "served at once: {:?}", started.elapsed());
    let mut names: Vec<String> =
        std::fs::read_dir(m.path("ps/app")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["host", "sibling"], "listings come back too");
    assert_eq!(m.read("ps/app/sibling").unwrap(), "CANARY-sibling", "fetched with host in one batch");
    let unread = m.read("ps/other/unread").unwrap_err();
    assert_eq!(unread.raw_os_error(), Some(libc::EIO), "a value never fetched is not invented");
    let log = m.stop();
    assert!(log.contains("mounting anyway to serve the warm cache"), "{log}");
    assert!(!log.contains("CANARY"), "{log}");

    // Each damaged cache: one warning, cold behaviour (EIO after --timeout, nothing served).
    let sealed = std::fs::read(cache.join("ps.cache")).unwrap();
    let mut flipped = sealed.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let other_key = key_file(work.path(), "other-key", 9);
    let damages: [(&str, Vec<u8>, &Path); 3] = [
        ("a flipped byte", flipped, &key),
        ("a truncated file", sealed[..sealed.len() - 5].to_vec(), &key),
        ("another key", sealed.clone(), &other_key),
    ];
    for (damage, bytes, key) in damages {
        std::fs::write(cache.join("ps.cache"), &bytes).unwrap();
        let m = start(&moto, endpoint.clone(), &cache, key);
        let err = m.read("ps/app/host").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{damage}");
        let log = m.stop();
        let warnings = log.matches("ps.cache ignored").count();
        assert_eq!(warnings, 1, "{damage}: one warning: {log}");
        assert!(!log.contains("CANARY"), "{log}");
    }
    drop(blackhole);
}

#[test]
fn keys_and_directories_others_can_reach_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let key = key_file(work.path(), "key", 1);
    let mountpoint = work.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let mount = |cache: &Path, key: &Path| {
        let out = Command::new(BINARY)
            .args(["mount", "-f"])
            .arg(&mountpoint)
            .args(["--local", "examples/secrets.json", "--cache-dir"])
            .arg(cache)
            .arg("--cache-key-file")
            .arg(key)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = mount(&work.path().join("cache"), &key);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("--cache-key-file") && err.contains("lets other users in"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    let open_dir = work.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, err) = mount(&open_dir, &key);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("--cache-dir") && err.contains("0755"), "{err}");
    let short = work.path().join("short");
    std::fs::write(&short, b"0123").unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o400)).unwrap();
    let (code, err) = mount(&work.path().join("cache"), &short);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("holds 4 bytes"), "{err}");
}
