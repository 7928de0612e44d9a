//! Core tests of name changes without FUSE: creating parameters, secrets and JSON keys, mkdir,
//! the temp-file-and-rename pattern of `sed -i`, deletes, and refusals that cost no call.

#[path = "common/core.rs"]
mod core;

use std::sync::Arc;

use core::{config, create, filesystem, filesystem_with, names, read, rename, stat, unlink};
use secretfs::error::Error;
use secretfs::fs::{FsConfig, SecretFs};
use secretfs::provider::memory::{MemoryProvider, CREATE_ACTION, DELETE_ACTION, UPDATE_ACTION};
use secretfs::provider::{Provider, Service, ValueKind};

const JSON: &str = r#"{"host":"old-host","port":5432}"#;

fn stores() -> (Arc<MemoryProvider>, Arc<MemoryProvider>) {
    let ps = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
    ps.insert("/prod/db/root", ValueKind::SecureString, "root-pw");
    let sm = Arc::new(MemoryProvider::for_service(Service::SecretsManager));
    sm.insert("prod/app", ValueKind::SecretString, JSON);
    sm.insert("prod/token", ValueKind::SecretString, "tok");
    (ps, sm)
}

fn calls(store: &MemoryProvider, action: &str) -> u64 {
    store.call_counts().get(action).copied().unwrap_or(0)
}

fn writes(store: &MemoryProvider) -> u64 {
    [CREATE_ACTION, UPDATE_ACTION, DELETE_ACTION].iter().map(|a| calls(store, a)).sum()
}

fn stored(store: &MemoryProvider, name: &str) -> Option<(ValueKind, Vec<u8>)> {
    store.get(name).map(|f| (f.kind, f.bytes.as_slice().to_vec()))
}

fn with(config: FsConfig, ps: Arc<MemoryProvider>, sm: Arc<MemoryProvider>) -> SecretFs {
    filesystem_with(config, ps, "/", sm, "")
}

#[test]
fn a_new_file_creates_a_parameter_of_the_configured_type_on_close() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm.clone(), true);
    create(&fs, "ps/prod/db", "replica", b"r3pl1ca").unwrap();
    assert_eq!(stored(&ps, "/prod/db/replica"), Some((ValueKind::SecureString, b"r3pl1ca".to_vec())));
    assert_eq!(read(&fs, "ps/prod/db/replica").unwrap(), b"r3pl1ca");
    assert_eq!(names(&fs, "ps/prod/db"), ["replica", "root"]);
    assert_eq!(calls(&ps, CREATE_ACTION), 1);

    let (ps, sm) = stores();
    let fs = with(FsConfig { new_parameter_kind: ValueKind::String, ..config(true) }, ps.clone(), sm);
    create(&fs, "ps", "flat", b"v").unwrap();
    assert_eq!(stored(&ps, "/flat"), Some((ValueKind::String, b"v".to_vec())));
}

#[test]
fn a_new_file_in_sm_creates_a_string_or_binary_secret() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm.clone(), true);
    create(&fs, "sm/prod", "tls-cert", b"-----BEGIN CERTIFICATE-----\n").unwrap();
    assert_eq!(stored(&sm, "prod/tls-cert").unwrap().0, ValueKind::SecretString);
    create(&fs, "sm/prod", "keystore", &[0xfe, 0xed, 0x00]).unwrap();
    assert_eq!(stored(&sm, "prod/keystore"), Some((ValueKind::SecretBinary, vec![0xfe, 0xed, 0x00])));
    assert_eq!(read(&fs, "sm/prod/keystore").unwrap(), [0xfe, 0xed, 0x00]);
}

#[test]
fn a_new_file_in_a_json_directory_adds_a_string_key() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm.clone(), true);
    create(&fs, "sm/prod/app", "user", b"admin").unwrap();
    assert_eq!(stored(&sm, "prod/app").unwrap().1, br#"{"host":"old-host","port":5432,"user":"admin"}"#);
    assert_eq!(read(&fs, "sm/prod/app/user").unwrap(), b"admin");
    assert_eq!((calls(&sm, UPDATE_ACTION), calls(&sm, CREATE_ACTION)), (1, 0));
}

#[test]
fn an_empty_new_file_stays_in_memory_until_written() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm, true);
    create(&fs, "ps/prod/db", "later", b"").unwrap();
    assert_eq!(writes(&ps), 0, "touch makes no call: Parameter Store cannot hold an empty value");
    assert_eq!(stat(&fs, "ps/prod/db/later").unwrap().size, 0);
    assert_eq!(names(&fs, "ps/prod/db"), ["later", "root"]);
    core::write(&fs, "ps/prod/db/later", b"now").unwrap();
    assert_eq!(stored(&ps, "/prod/db/later").unwrap().1, b"now");
}

#[test]
fn mkdir_lives_in_memory_until_something_is_created_inside() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm, true);
    let ps_dir = stat(&fs, "ps").unwrap();
    fs.mkdir(ps_dir.ino, "staging").unwrap();
    fs.mkdir(stat(&fs, "ps/staging").unwrap().ino, "db").unwrap();
    assert!(names(&fs, "ps").contains(&"staging".to_string()));
    assert_eq!(fs.mkdir(ps_dir.ino, "staging").unwrap_err(), Error::AlreadyExists);
    assert_eq!(fs.rmdir(ps_dir.ino, "staging").unwrap_err(), Error::NotEmpty);
    create(&fs, "ps/staging/db", "root", b"pw").unwrap();
    assert_eq!(stored(&ps, "/staging/db/root").unwrap().1, b"pw");
    assert_eq!(names(&fs, "ps/staging/db"), ["root"]);
    fs.mkdir(ps_dir.ino, "empty").unwrap();
    fs.rmdir(ps_dir.ino, "empty").unwrap();
    assert_eq!(stat(&fs, "ps/empty").unwrap_err(), Error::NotFound);
    assert_eq!(writes(&ps), 1);
    let sm_app = stat(&fs, "sm/prod/app").unwrap();
    assert_eq!(fs.mkdir(sm_app.ino, "nested").unwrap_err(), Error::NotPermitted, "no mkdir inside JSON");
}

#[test]
fn sed_in_place_is_one_atomic_update_and_temp_files_never_reach_the_store() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm.clone(), true);
    // What `sed -i s/old-host/new-host/ sm/prod/app/.value` does: temp file, write, close, rename.
    let new = JSON.replace("old-host", "new-host");
    create(&fs, "sm/prod/app", "sedX1b2c3", new.as_bytes()).unwrap();
    assert!(names(&fs, "sm/prod/app").contains(&"sedX1b2c3".to_string()));
    assert_eq!(writes(&sm), 0, "a temp file is memory-only");
    rename(&fs, "sm/prod/app/sedX1b2c3", "sm/prod/app/.value").unwrap();
    assert_eq!(stored(&sm, "prod/app").unwrap().1, new.as_bytes());
    assert_eq!(read(&fs, "sm/prod/app/host").unwrap(), b"new-host");
    assert_eq!(names(&fs, "sm/prod/app"), [".value", "host", "port"]);
    assert_eq!(calls(&sm, UPDATE_ACTION), 1);
    // The renamed inode now names the target.
    let temp_free = stat(&fs, "sm/prod/app/sedX1b2c3").unwrap_err();
    assert_eq!(temp_free, Error::NotFound);
    // An unchanged rename-over makes no call.
    create(&fs, "sm/prod", ".token.swp", b"tok").unwrap();
    rename(&fs, "sm/prod/.token.swp", "sm/prod/token").unwrap();
    assert_eq!(calls(&sm, UPDATE_ACTION), 1);
    // Renamed onto a new name, a temp file creates it.
    create(&fs, "sm/prod", "tmpab12cd34", b"fresh").unwrap();
    rename(&fs, "sm/prod/tmpab12cd34", "sm/prod/fresh").unwrap();
    assert_eq!(stored(&sm, "prod/fresh").unwrap().1, b"fresh");
    // A file made the way mkstemp makes them is scratch whatever its name (perl -i: `XXLBqeHa`).
    let prod = stat(&fs, "sm/prod").unwrap();
    let (_, fh) = fs.create(prod.ino, "XXLBqeHa", true).unwrap();
    fs.write(fh, 0, b"perl").unwrap();
    fs.release(fh).unwrap();
    assert!(stored(&sm, "prod/XXLBqeHa").is_none());
    rename(&fs, "sm/prod/XXLBqeHa", "sm/prod/token").unwrap();
    assert_eq!(stored(&sm, "prod/token").unwrap().1, b"perl");
    // A scratch file whose write failed is never stored, not even by a rename.
    let (_, fh) = fs.create(prod.ino, ".big.swp", false).unwrap();
    fs.write(fh, 0, b"partial").unwrap();
    assert_eq!(fs.write(fh, 0, &vec![b'x'; 5 * 1024 * 1024]).unwrap_err(), Error::TooLarge);
    assert_eq!(fs.release(fh).unwrap_err(), Error::TooLarge);
    assert_eq!(rename(&fs, "sm/prod/.big.swp", "sm/prod/token").unwrap_err(), Error::TooLarge);
    assert_eq!(stored(&sm, "prod/token").unwrap().1, b"perl");
    // A temp file that is deleted is gone without a trace.
    create(&fs, "sm/prod", "4913", b"probe").unwrap();
    unlink(&fs, "sm/prod/4913").unwrap();
    assert_eq!(stat(&fs, "sm/prod/4913").unwrap_err(), Error::NotFound);
    assert_eq!((calls(&sm, CREATE_ACTION), calls(&sm, UPDATE_ACTION)), (1, 2));
}

#[test]
fn stored_names_and_directories_are_not_renamed_in_place() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm.clone(), true);
    assert_eq!(rename(&fs, "sm/prod/token", "sm/prod/token2").unwrap_err(), Error::CrossDevice);
    assert_eq!(rename(&fs, "sm/prod/app", "sm/prod/app2").unwrap_err(), Error::CrossDevice);
    assert_eq!(rename(&fs, "sm/prod/nope", "sm/prod/x").unwrap_err(), Error::NotFound);
    create(&fs, "sm/prod", ".t.swp", b"x").unwrap();
    let prod = stat(&fs, "sm/prod").unwrap();
    assert_eq!(fs.rename(prod.ino, ".t.swp", prod.ino, "token", true).unwrap_err(), Error::AlreadyExists);
    assert_eq!(writes(&sm), 0);
}

#[test]
fn deleting_needs_allow_delete() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm.clone(), true);
    assert_eq!(unlink(&fs, "ps/prod/db/root").unwrap_err(), Error::NotPermitted);
    assert_eq!(unlink(&fs, "sm/prod/app/host").unwrap_err(), Error::NotPermitted);
    assert_eq!(writes(&ps) + writes(&sm), 0);
    assert!(stored(&ps, "/prod/db/root").is_some());

    let fs = with(FsConfig { allow_delete: true, ..config(true) }, ps.clone(), sm.clone());
    unlink(&fs, "sm/prod/app/host").unwrap();
    assert_eq!(stored(&sm, "prod/app").unwrap().1, br#"{"port":5432}"#);
    unlink(&fs, "ps/prod/db/root").unwrap();
    assert!(stored(&ps, "/prod/db/root").is_none());
    assert_eq!(names(&fs, "ps/prod/db"), Vec::<String>::new(), "the emptied directory stays, in memory");
    let prod = stat(&fs, "ps/prod").unwrap();
    fs.rmdir(prod.ino, "db").unwrap();
    unlink(&fs, "sm/prod/app/.value").unwrap();
    assert!(stored(&sm, "prod/app").is_none(), "`.value` deletes the secret it shows");
    assert_eq!((calls(&ps, DELETE_ACTION), calls(&sm, DELETE_ACTION), calls(&sm, UPDATE_ACTION)), (1, 1, 1));
}

#[test]
fn names_the_service_would_refuse_fail_before_any_call() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm.clone(), true);
    for (dir, name) in [("ps/prod", "has space"), ("ps", "awsconfig"), ("ps", "SSM-x"), ("ps/prod", "p@ss")] {
        assert!(matches!(create(&fs, dir, name, b"v").unwrap_err(), Error::InvalidInput(_)), "{dir}/{name}");
    }
    for name in ["has space", "a#b", "ünï"] {
        assert!(matches!(create(&fs, "sm/prod", name, b"v").unwrap_err(), Error::InvalidInput(_)), "{name}");
    }
    let deep = "ps/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o";
    for (i, part) in deep.split('/').enumerate().skip(1) {
        let parent = deep.split('/').take(i).collect::<Vec<_>>().join("/");
        let _ = stat(&fs, &parent).map(|p| fs.mkdir(p.ino, part));
    }
    assert!(matches!(create(&fs, deep, "p", b"v").unwrap_err(), Error::InvalidInput(_)), "16 levels");
    assert_eq!(create(&fs, "ps/prod/db", "root", b"v").unwrap_err(), Error::AlreadyExists);
    assert!(matches!(create(&fs, "ps/prod/db", "bin", &[0xff]).unwrap_err(), Error::InvalidInput(_)));
    assert_eq!(writes(&ps) + writes(&sm), 0);
}

#[test]
fn a_read_only_mount_refuses_every_change() {
    let (ps, sm) = stores();
    let fs = with(FsConfig { read_only: true, allow_delete: true, ..config(true) }, ps.clone(), sm);
    let dir = stat(&fs, "ps/prod/db").unwrap();
    assert_eq!(fs.create(dir.ino, "x", false).unwrap_err(), Error::ReadOnly);
    assert_eq!(fs.mkdir(dir.ino, "x").unwrap_err(), Error::ReadOnly);
    assert_eq!(fs.unlink(dir.ino, "root").unwrap_err(), Error::ReadOnly);
    assert_eq!(fs.rename(dir.ino, "root", dir.ino, "x", false).unwrap_err(), Error::ReadOnly);
    assert_eq!(writes(&ps), 0);
}
