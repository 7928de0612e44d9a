//! Core write tests without FUSE: buffering, commit on close, JSON member merges, refusals,
//! and that a failed or unchanged write makes no update.

#[path = "common/core.rs"]
mod core;

use std::sync::Arc;

use core::{filesystem, open, read, stat, write};
use secretfs::error::Error;
use secretfs::fs::OpenMode;
use secretfs::provider::memory::{MemoryProvider, UPDATE_ACTION};
use secretfs::provider::{Provider, Service, ValueKind};

fn stores() -> (Arc<MemoryProvider>, Arc<MemoryProvider>) {
    let ps = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
    ps.insert("/prod/db/root", ValueKind::SecureString, "old-root");
    let sm = Arc::new(MemoryProvider::for_service(Service::SecretsManager));
    sm.insert(
        "prod/db",
        ValueKind::SecretString,
        r#"{"username":"admin","password":"old","port":5432,"opts":{"ssl":"on"}}"#,
    );
    sm.insert("prod/bin", ValueKind::SecretBinary, vec![0u8, 1, 2]);
    (ps, sm)
}

fn updates(store: &MemoryProvider) -> u64 {
    store.call_counts().get(UPDATE_ACTION).copied().unwrap_or(0)
}

#[test]
fn a_whole_value_write_is_stored_on_close_and_read_back_at_once() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm, true);
    write(&fs, "ps/prod/db/root", b"S3cr3Tp4Ssw0Rd!^").unwrap();
    assert_eq!(read(&fs, "ps/prod/db/root").unwrap(), b"S3cr3Tp4Ssw0Rd!^");
    let stored = ps.fetch(&["/prod/db/root".into()]).unwrap().remove(0).1.unwrap();
    assert_eq!((stored.kind, stored.bytes.as_slice()), (ValueKind::SecureString, &b"S3cr3Tp4Ssw0Rd!^"[..]));
    assert_eq!(updates(&ps), 1);
}

#[test]
fn nothing_is_stored_before_close_and_offsets_and_appends_act_on_the_buffer() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm, true);
    let (ino, fh) =
        open(&fs, "ps/prod/db/root", OpenMode { write: true, truncate: false, ..OpenMode::default() }).unwrap();
    fs.write(fh, 3, b"-NEW").unwrap();
    fs.write(fh, 7, b"+tail").unwrap();
    assert_eq!(updates(&ps), 0, "buffered until close");
    assert_eq!(fs.getattr(ino, Some(fh)).unwrap().size, 12);
    fs.release(fh).unwrap();
    assert_eq!(read(&fs, "ps/prod/db/root").unwrap(), b"old-NEW+tail");
}

#[test]
fn a_json_key_write_rewrites_the_whole_object_keeping_order_and_types() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm.clone(), true);
    write(&fs, "sm/prod/db/password", b"newpass").unwrap();
    write(&fs, "sm/prod/db/port", b"6543").unwrap();
    write(&fs, "sm/prod/db/opts/ssl", b"off").unwrap();
    assert_eq!(
        read(&fs, "sm/prod/db/.value").unwrap(),
        br#"{"username":"admin","password":"newpass","port":6543,"opts":{"ssl":"off"}}"#
    );
    assert_eq!(read(&fs, "sm/prod/db/password").unwrap(), b"newpass");
}

#[test]
fn writers_to_two_keys_of_one_secret_lose_nothing() {
    let (ps, sm) = stores();
    let fs = Arc::new(filesystem(ps, sm, true));
    stat(&fs, "sm/prod/db/password").unwrap();
    let threads: Vec<_> = ["username", "password"]
        .into_iter()
        .map(|key| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    write(&fs, &format!("sm/prod/db/{key}"), format!("{key}-{i}").as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(read(&fs, "sm/prod/db/username").unwrap(), b"username-24");
    assert_eq!(read(&fs, "sm/prod/db/password").unwrap(), b"password-24");
}

#[test]
fn an_unchanged_value_makes_no_call() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm.clone(), true);
    write(&fs, "ps/prod/db/root", b"old-root").unwrap();
    write(&fs, "sm/prod/db/username", b"admin").unwrap();
    assert_eq!((updates(&ps), updates(&sm)), (0, 0));
}

#[test]
fn bad_input_is_refused_and_the_old_value_stays() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm.clone(), true);
    let too_big = vec![b'x'; 8 * 1024 + 1];
    assert_eq!(write(&fs, "ps/prod/db/root", &too_big).unwrap_err(), Error::TooLarge);
    assert!(matches!(write(&fs, "ps/prod/db/root", &[0xff, 0xfe]).unwrap_err(), Error::InvalidInput(_)));
    assert!(matches!(write(&fs, "sm/prod/db/password", &[0xff]).unwrap_err(), Error::InvalidInput(_)));
    assert_eq!(read(&fs, "ps/prod/db/root").unwrap(), b"old-root");
    assert_eq!(updates(&ps) + updates(&sm), 0);
    // A write that fails part-way poisons the handle: close stores nothing.
    let (bin, fh) = open(&fs, "sm/prod/bin", OpenMode { write: true, truncate: true, ..OpenMode::default() }).unwrap();
    fs.write(fh, 0, &vec![7u8; 65_536]).unwrap();
    assert_eq!(fs.write(fh, 65_536, b"one too many").unwrap_err(), Error::TooLarge);
    assert_eq!(fs.release(fh).unwrap_err(), Error::TooLarge);
    assert_eq!(read(&fs, "sm/prod/bin").unwrap(), [0, 1, 2]);
    assert_eq!(fs.change_metadata(bin).unwrap_err().errno(), libc::EPERM);
}

#[test]
fn binary_secrets_take_any_bytes() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    write(&fs, "sm/prod/bin", &[0xff, 0x00, 0xfe]).unwrap();
    assert_eq!(read(&fs, "sm/prod/bin").unwrap(), [0xff, 0x00, 0xfe]);
}

#[test]
fn a_reader_opened_before_a_write_keeps_the_whole_old_value() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    let attr = stat(&fs, "ps/prod/db/root").unwrap();
    let before = fs.open(attr.ino, OpenMode::default()).unwrap().fh;
    write(&fs, "ps/prod/db/root", b"a-new-and-longer-value").unwrap();
    assert_eq!(fs.read(before, 0, 100, |b| b.to_vec()).unwrap(), b"old-root");
    fs.release(before).unwrap();
    assert_eq!(read(&fs, "ps/prod/db/root").unwrap(), b"a-new-and-longer-value");
}

#[test]
fn a_write_reported_as_failed_is_never_stored_later() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm, true);
    let writing = OpenMode { write: true, truncate: true, ..OpenMode::default() };
    let (_, fh) = open(&fs, "ps/prod/db/root", writing).unwrap();
    fs.write(fh, 0, b"NEW").unwrap();
    ps.fail(UPDATE_ACTION, Some(Error::Transient("ThrottlingException".into())));
    assert!(matches!(fs.flush(fh), Err(Error::Transient(_))), "close() reports the failure");
    ps.fail(UPDATE_ACTION, None);
    fs.release(fh).unwrap();
    assert_eq!(updates(&ps), 1, "the release made no second attempt");
    assert_eq!(ps.get("/prod/db/root").unwrap().bytes.as_slice(), b"old-root");
    // Writing again and closing again does store.
    let (_, fh) = open(&fs, "ps/prod/db/root", writing).unwrap();
    fs.write(fh, 0, b"NEW").unwrap();
    ps.fail(UPDATE_ACTION, Some(Error::AccessDenied("denied".into())));
    assert!(fs.flush(fh).is_err());
    ps.fail(UPDATE_ACTION, None);
    fs.write(fh, 0, b"NEWER").unwrap();
    fs.flush(fh).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(ps.get("/prod/db/root").unwrap().bytes.as_slice(), b"NEWER");
}

#[test]
fn an_oversized_write_fails_at_close_in_both_services() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm.clone(), true);
    for (path, limit) in [("ps/prod/db/root", 8192), ("sm/prod/db/.value", 65_536)] {
        let (_, fh) = open(&fs, path, OpenMode { write: true, truncate: true, ..OpenMode::default() }).unwrap();
        assert_eq!(fs.write(fh, 0, &vec![b'x'; limit + 1]).unwrap_err(), Error::TooLarge);
        assert_eq!(fs.flush(fh).unwrap_err(), Error::TooLarge, "{path}: close() fails too");
        let _ = fs.release(fh);
    }
    assert_eq!(updates(&ps) + updates(&sm), 0);
}

#[test]
fn a_key_write_merges_into_the_value_stored_now_not_a_cached_copy() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm.clone(), true);
    assert_eq!(read(&fs, "sm/prod/db/username").unwrap(), b"admin");
    // Changed out of band after the cache was filled.
    sm.insert("prod/db", ValueKind::SecretString, r#"{"username":"root-oob","password":"old","port":5432}"#);
    write(&fs, "sm/prod/db/password", b"new").unwrap();
    let stored = sm.get("prod/db").unwrap();
    assert_eq!(stored.bytes.as_slice(), br#"{"username":"root-oob","password":"new","port":5432}"#);
    assert_eq!(read(&fs, "sm/prod/db/username").unwrap(), b"root-oob");
    // Writing back the value the cache once held is a real change now: it is stored.
    sm.insert("prod/db", ValueKind::SecretString, r#"{"username":"root-oob","password":"oob","port":5432}"#);
    let updates_before = updates(&sm);
    write(&fs, "sm/prod/db/password", b"new").unwrap();
    assert_eq!(updates(&sm), updates_before + 1, "not skipped as unchanged");
    assert!(String::from_utf8(sm.get("prod/db").unwrap().bytes.as_slice().to_vec())
        .unwrap()
        .contains(r#""password":"new""#));
}

#[test]
fn a_key_write_into_json_with_duplicate_keys_is_refused_and_stores_nothing() {
    let (ps, sm) = stores();
    sm.insert("prod/dup", ValueKind::SecretString, r#"{"a":"first","a":"second","b":"x"}"#);
    let fs = filesystem(ps, sm.clone(), true);
    assert!(matches!(write(&fs, "sm/prod/dup/b", b"y"), Err(Error::InvalidInput(m)) if m.contains("prod/dup")));
    assert_eq!(sm.get("prod/dup").unwrap().bytes.as_slice(), br#"{"a":"first","a":"second","b":"x"}"#);
    write(&fs, "sm/prod/dup/.value", br#"{"a":"one","b":"y"}"#).unwrap();
    assert_eq!(read(&fs, "sm/prod/dup/b").unwrap(), b"y");
}

#[test]
fn creating_dot_value_in_a_directory_without_a_value_creates_the_directory_s_value() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm.clone(), true);
    assert!(ps.get("/prod/db").is_none(), "ps/prod/db is a directory without a value");
    core::create(&fs, "ps/prod/db", ".value", b"now-a-value").unwrap();
    assert_eq!(ps.get("/prod/db").unwrap().bytes.as_slice(), b"now-a-value");
    assert_eq!(read(&fs, "ps/prod/db/.value").unwrap(), b"now-a-value");
    assert_eq!(read(&fs, "ps/prod/db/root").unwrap(), b"old-root");
    sm.insert("app/db/replica", ValueKind::SecretString, "r");
    core::create(&fs, "sm/app/db", ".value", b"{}").unwrap();
    assert_eq!(sm.get("app/db").unwrap().bytes.as_slice(), b"{}");
    assert!(matches!(core::create(&fs, "ps", ".value", b"x"), Err(Error::InvalidInput(_))));
}

#[test]
fn a_writer_never_changes_an_inode_whose_pages_a_reader_keeps() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    let writing = OpenMode { write: true, truncate: true, ..OpenMode::default() };
    // No reader open: the writer takes the inode itself (editors compare inode numbers).
    let root = stat(&fs, "ps/prod/db/root").unwrap();
    let opened = fs.open(root.ino, OpenMode::default()).unwrap();
    assert!(opened.keep_pages, "a pinned inode: the kernel may keep its pages");
    fs.release(opened.fh).unwrap();
    let fh = fs.open(root.ino, writing).unwrap().fh;
    fs.write(fh, 0, b"new-root-value").unwrap();
    fs.release(fh).unwrap();
    assert_eq!(fs.getattr(root.ino, None).unwrap().size, 14, "a live inode shows the new value");
    let opened = fs.open(root.ino, OpenMode::default()).unwrap();
    assert!(!opened.keep_pages, "the kernel changed its pages and size as it wrote");
    fs.release(opened.fh).unwrap();
    // A reader keeps the pages of the inode: the writer is sent to look the name up again,
    // and finds a live inode of its own; the reader keeps its version, size included.
    let member = stat(&fs, "sm/prod/db/password").unwrap();
    let reader = fs.open(member.ino, OpenMode::default()).unwrap();
    assert!(reader.keep_pages);
    assert_eq!(fs.open(member.ino, writing).unwrap_err(), Error::Replaced);
    let (live, fh) = open(&fs, "sm/prod/db/password", writing).unwrap();
    assert_ne!(live, member.ino);
    fs.write(fh, 0, b"new-password").unwrap();
    fs.release(fh).unwrap();
    assert_eq!(fs.getattr(live, None).unwrap().size, 12);
    assert_eq!(fs.read(reader.fh, 0, 4096, |b| b.to_vec()).unwrap(), b"old");
    assert_eq!(fs.getattr(member.ino, None).unwrap().size, 3);
    fs.release(reader.fh).unwrap();
}

#[test]
fn inodes_showing_a_value_written_through_the_mount_read_the_new_value_before_the_kernel_hears() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    let whole = stat(&fs, "sm/prod/db/.value").unwrap();
    write(&fs, "sm/prod/db/password", b"new-password").unwrap();
    // The kernel may open the pinned inode it still holds before the notifier's invalidation
    // reaches it: it reads the new value, through the handle, and keeps the attributes of the
    // version it shows (files opened on it before read that version).
    let opened = fs.open(whole.ino, OpenMode::default()).unwrap();
    assert!(!opened.keep_pages, "pages kept from before the write would show the old value");
    let bytes = fs.read(opened.fh, 0, 4096, |b| b.to_vec()).unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("new-password"));
    assert_eq!(fs.getattr(whole.ino, None).unwrap().size, whole.size);
    fs.release(opened.fh).unwrap();
    // The next lookup hands out a pinned inode again.
    let again = stat(&fs, "sm/prod/db/.value").unwrap();
    assert_ne!(again.ino, whole.ino);
    let opened = fs.open(again.ino, OpenMode::default()).unwrap();
    assert!(opened.keep_pages);
    assert!(fs.read(opened.fh, 0, 4096, |b| String::from_utf8_lossy(b).contains("new-password")).unwrap());
}
