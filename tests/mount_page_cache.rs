//! The kernel's caches, through a real mount: a read-only mount opens nothing (no OPEN or
//! RELEASE reaches the daemon) and a read-write mount only opens and releases (no READ, no
//! FLUSH) while pages and listings are kept; and on both a rotation (of the same length or not) reaches the
//! next open, a file opened before a rotation reads exactly the old value through its end with
//! `fstat` agreeing, and readers never see a mix of two versions. On a read-write mount a
//! value written through the mount, by its own path or another, is what the next open reads,
//! and what changed through the mount is what the next listing shows. `ls -l` asks the daemon
//! for each file's ACL once, and for a security label once a run, not once a file.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use moto::{Aws, Moto};
use mount::Mounted;

const READ_ONLY_FAST: [&str; 5] = ["--read-only", "--cache-ttl", "1", "--timeout", "1"];
const READ_WRITE_FAST: [&str; 4] = ["--cache-ttl", "1", "--timeout", "1"];

/// The count after `operation ` in the last SIGUSR1 status line of `stderr` (0 if never seen).
fn requests(stderr: &str, operation: &str) -> u64 {
    let Some(line) = stderr.lines().rfind(|l| l.contains("requests: ")) else { return 0 };
    let counts = line.split("requests: ").nth(1).unwrap();
    counts
        .split(", ")
        .find_map(|pair| pair.strip_prefix(&format!("{operation} ")))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn wait_for(m: &Mounted, rel: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let value = std::fs::read_to_string(m.path(rel)).unwrap();
        if value == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{rel} still shows {value:?}, not {expected:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_read_only_mount_opens_nothing_and_reads_warm_values_from_the_page_cache() {
    let m = Mounted::local(&["--read-only"]);
    let path = m.path("ps/prod/db/root");
    let first = std::fs::read(&path).unwrap();
    for _ in 0..200 {
        assert_eq!(std::fs::read(&path).unwrap(), first);
    }
    let counts = stopped_counts(m, &["open", "read", "release"]);
    println!("201 reads of a warm file: {counts:?} OPEN, READ, RELEASE");
    let [opens, reads, releases] = counts[..] else { unreachable!() };
    assert!(opens <= 1, "only the first open reaches the daemon (answered ENOSYS): {opens}");
    assert_eq!(releases, 0, "nothing opened, nothing released");
    assert!(reads <= 3, "the pages are kept: {reads} READ for 201 reads");
}

/// The request counts of `m` after SIGUSR1, once it has stopped.
fn stopped_counts(mut m: Mounted, operations: &[&str]) -> Vec<u64> {
    m.signal(libc::SIGUSR1);
    // Time for the status line to be logged before the daemon stops, even under load.
    std::thread::sleep(Duration::from_secs(1));
    m.signal(libc::SIGTERM);
    let (_, stderr) = m.wait_exit();
    operations.iter().map(|operation| requests(&stderr, operation)).collect()
}

#[test]
fn a_read_write_mount_only_opens_and_releases_warm_values() {
    let m = Mounted::local(&[]);
    let path = m.path("ps/prod/db/root");
    let first = std::fs::read(&path).unwrap();
    for _ in 0..200 {
        assert_eq!(std::fs::read(&path).unwrap(), first);
    }
    let listed = |m: &Mounted| std::fs::read_dir(m.path("ps/prod/db")).unwrap().count();
    let names = listed(&m);
    for _ in 0..50 {
        assert_eq!(listed(&m), names);
    }
    let counts = stopped_counts(m, &["open", "read", "flush", "release", "opendir", "readdir"]);
    println!("201 reads of a warm file, 51 listings: {counts:?} OPEN, READ, FLUSH, RELEASE, OPENDIR, READDIR");
    let [opens, reads, flushes, releases, opendirs, readdirs] = counts[..] else { unreachable!() };
    assert_eq!(opens, 201, "every open reaches the daemon");
    assert!(reads <= 3, "the pages are kept: {reads} READ for 201 reads");
    assert_eq!(flushes, 0, "a reader needs no flush");
    assert!((200..=201).contains(&releases), "{releases} RELEASE");
    assert!(opendirs >= 51, "{opendirs} OPENDIR");
    assert!(readdirs <= 4, "the listing is kept: {readdirs} READDIR for 51 listings");
}

#[test]
fn a_read_write_mount_lists_what_changed_through_it_at_once() {
    let (_dir, store) = mount::local_copy();
    let m = Mounted::start(&["--local", store.to_str().unwrap(), "--allow-delete"], &[]);
    // Each listing is read twice: the second comes from the kernel's cache, which a change
    // through the mount must have dropped.
    let listed = |rel: &str| -> Vec<(String, bool)> {
        let read = || {
            let mut entries: Vec<(String, bool)> = std::fs::read_dir(m.path(rel))
                .unwrap()
                .map(|entry| {
                    let entry = entry.unwrap();
                    (entry.file_name().into_string().unwrap(), entry.file_type().unwrap().is_dir())
                })
                .collect();
            entries.sort();
            entries
        };
        let first = read();
        assert_eq!(read(), first, "{rel} listed twice");
        first
    };
    let has = |rel: &str, name: &str, dir: bool| listed(rel).contains(&(name.to_string(), dir));
    assert!(!has("ps", "lt", true));
    std::fs::create_dir(m.path("ps/lt")).unwrap();
    assert!(has("ps", "lt", true), "a new directory is listed");
    std::fs::write(m.path("ps/lt/new"), "v").unwrap();
    assert!(has("ps/lt", "new", false), "a created file is listed");
    // A stored name is renamed by `mv`'s copy and delete (rename(2) answers EXDEV).
    let moved = mount::sh(&format!("mv {} {}", m.path("ps/lt/new").display(), m.path("ps/lt/newer").display()));
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    assert!(has("ps/lt", "newer", false) && !has("ps/lt", "new", false), "a moved file");
    std::fs::remove_file(m.path("ps/lt/newer")).unwrap();
    assert!(!has("ps/lt", "newer", false), "a removed file is gone");
    std::fs::remove_dir(m.path("ps/lt")).unwrap();
    assert!(!has("ps", "lt", true), "a removed directory is gone");
    // A value that becomes a JSON object is listed as a directory, and back. A change of kind
    // reaches the kernel's listing of `sm/prod` through the notifier, which runs after
    // `close()` returns.
    let eventually_has = |rel: &str, name: &str, dir: bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !has(rel, name, dir) {
            assert!(Instant::now() < deadline, "{rel}/{name} (directory: {dir}) not listed: {:?}", listed(rel));
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::fs::write(m.path("sm/prod/j"), "plain").unwrap();
    assert!(has("sm/prod", "j", false));
    std::fs::write(m.path("sm/prod/j"), r#"{"a":1}"#).unwrap();
    eventually_has("sm/prod", "j", true);
    assert!(has("sm/prod/j", "a", false));
    std::fs::write(m.path("sm/prod/j/.value"), "plain again").unwrap();
    eventually_has("sm/prod", "j", false);
}

#[test]
fn ls_l_does_not_ask_the_daemon_for_each_files_acl_and_label() {
    // `ls -l` asks every entry for its access ACL and its security label. The kernel keeps the
    // answer "no ACL" once it has it; a label is not supported, and `ls` stops asking a
    // filesystem that says so (coreutils 9.6 and later ask with listxattr, not counted here).
    for flags in [&[][..], &["--read-only"][..]] {
        let m = Mounted::local(flags);
        let dir = m.path("ps/prod/db");
        let paths = std::fs::read_dir(&dir).unwrap().count() as u64 + 1;
        let root = m.path("ps/prod/db/root");
        assert_eq!(mount::xattr_size(&root, "system.posix_acl_access", true), Err(libc::ENODATA), "no ACL");
        assert_eq!(mount::xattr_size(&root, "security.selinux", true), Err(libc::EOPNOTSUPP), "no labels");
        assert_eq!(mount::xattr_size(&root, "user.other", true), Err(libc::ENODATA), "user attributes are supported");
        assert!(mount::xattr_size(&root, "user.secretfs.type", true).unwrap() > 0, "the metadata is shown");
        for _ in 0..20 {
            let listed = mount::sh(&format!("ls -l {} >/dev/null", dir.display()));
            assert!(listed.status.success(), "{listed:?}");
        }
        let acl = mount::sh(&format!("setfacl -m u:nobody:r {} 2>&1", root.display()));
        assert!(!acl.status.success(), "an ACL cannot be set");
        let [asked] = stopped_counts(m, &["getxattr"])[..] else { unreachable!() };
        println!("{flags:?}: 20 runs of ls -l over {paths} paths: {asked} GETXATTR");
        assert!(asked <= paths + 2 * 20 + 4, "{asked} GETXATTR for 20 runs of ls -l over {paths} paths");
    }
}

#[test]
fn a_write_through_the_mount_is_what_the_next_open_reads() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/token", "first", ParameterType::SecureString);
    aws.create_secret("app/conf", r#"{"user":"admin","pass":"p-1"}"#);
    let m = Mounted::start(&READ_WRITE_FAST, &moto.env());
    let token = m.path("ps/app/token");
    let whole = m.path("sm/app/conf/.value");
    assert_eq!(std::fs::read_to_string(&token).unwrap(), "first");
    let before = std::fs::read_to_string(&whole).unwrap();
    // Its own path: same length, longer, shorter, each read and stat'ed at once (kept pages
    // and a kept size would show the old value).
    for value in ["firsT", "a-much-longer-value", "s", "x".repeat(4_000).as_str()] {
        std::fs::write(&token, value).unwrap();
        assert_eq!(std::fs::read_to_string(&token).unwrap(), value);
        assert_eq!(std::fs::metadata(&token).unwrap().len(), value.len() as u64);
        for _ in 0..3 {
            assert_eq!(std::fs::read_to_string(&token).unwrap(), value, "read again");
        }
    }
    // A reader keeps its version, size included, through a write of the same path: the
    // writer is sent to a live inode of its own (ESTALE, looked up again by the kernel). The
    // reader opens a pinned inode: the path's entry is looked up again once its second has
    // passed (the writes above left the path a live inode).
    std::thread::sleep(Duration::from_millis(1_100));
    let mut reader = std::fs::File::open(&token).unwrap();
    let mut head = [0u8; 1_000];
    reader.read_exact(&mut head).unwrap();
    std::fs::write(&token, "short").unwrap();
    assert_eq!(std::fs::read_to_string(&token).unwrap(), "short");
    assert_eq!(std::fs::metadata(&token).unwrap().len(), 5);
    assert_eq!(reader.metadata().unwrap().len(), 4_000, "fstat tells what the open file reads");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.len() == 3_000 && head.iter().chain(&rest).all(|b| *b == b'x'), "the old version, whole");
    drop(reader);
    // Another path: a JSON member changes the secret that the whole-value file shows.
    std::fs::write(m.path("sm/app/conf/pass"), "p-22").unwrap();
    let after = std::fs::read_to_string(&whole).unwrap();
    assert_ne!(after, before);
    assert!(after.contains("p-22"), "the whole value, read at once after the member's write");
    wait_for(&m, "sm/app/conf/.value", &after);
    drop(m);
}

#[test]
fn rotations_reach_the_next_open_and_open_files_keep_their_version() {
    rotations_reach_the_next_open(&READ_ONLY_FAST);
    rotations_reach_the_next_open(&READ_WRITE_FAST);
}

fn rotations_reach_the_next_open(flags: &[&str]) {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/token", "tok-1", ParameterType::SecureString);
    aws.create_secret("app/cert", &"A".repeat(10_000));
    let m = Mounted::start(flags, &moto.env());
    assert_eq!(std::fs::read_to_string(m.path("ps/app/token")).unwrap(), "tok-1");
    // Same length: a kept page must not hide it.
    aws.put_parameter("/app/token", "tok-2", ParameterType::SecureString);
    wait_for(&m, "ps/app/token", "tok-2");
    // Longer, then shorter.
    aws.put_parameter("/app/token", "token-number-three", ParameterType::SecureString);
    wait_for(&m, "ps/app/token", "token-number-three");
    aws.put_parameter("/app/token", "t4", ParameterType::SecureString);
    wait_for(&m, "ps/app/token", "t4");
    // A kept directory listing learns of names created and deleted out of band.
    let listed = |m: &Mounted| mount::run("ls", &["-1", m.path("ps/app").to_str().unwrap()]);
    assert_eq!(listed(&m).trim(), "token");
    aws.put_parameter("/app/new", "n", ParameterType::String);
    // Generous bounds: the listing is refreshed within the TTL (1 s); on a loaded machine a
    // listing call can pass --timeout 1 and back off (1, 2, 4, 8 s...), which once took more
    // than 20 s in a full run.
    let deadline = Instant::now() + Duration::from_secs(45);
    while !listed(&m).contains("new") {
        assert!(Instant::now() < deadline, "the new name never showed in ls");
        std::thread::sleep(Duration::from_millis(100));
    }
    aws.delete_parameter("/app/new");
    while listed(&m).contains("new") {
        assert!(Instant::now() < deadline + Duration::from_secs(45), "the deleted name never left ls");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A file opened before a rotation reads exactly its version, through its end.
    let mut old = std::fs::File::open(m.path("sm/app/cert")).unwrap();
    let mut head = [0u8; 100];
    old.read_exact(&mut head).unwrap();
    aws.put_secret_value("app/cert", &"B".repeat(7_000));
    wait_for(&m, "sm/app/cert", &"B".repeat(7_000));
    assert_eq!(old.metadata().unwrap().size(), 10_000, "fstat tells what the open file reads");
    let mut rest = Vec::new();
    old.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), 9_900);
    assert!(head.iter().chain(&rest).all(|b| *b == b'A'), "the old version, whole");
    drop(m);
}

#[test]
fn readers_never_see_two_versions_mixed_while_a_value_rotates() {
    readers_never_see_two_versions_mixed(&READ_WRITE_FAST);
    readers_never_see_two_versions_mixed(&READ_ONLY_FAST);
}

fn readers_never_see_two_versions_mixed(flags: &[&str]) {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("app/blob", &"A".repeat(12_000));
    let m = Mounted::start(flags, &moto.env());
    let path = m.path("sm/app/blob");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let bytes = std::fs::read(&path).unwrap();
                    let first = bytes[0];
                    assert!(bytes.iter().all(|b| *b == first), "a mix of two versions");
                    let expected = if first == b'A' { 12_000 } else { 5_000 + usize::from(first - b'B') * 1_000 };
                    assert_eq!(bytes.len(), expected, "a whole version of {}", first as char);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // Rotate between versions of different letters and lengths, refreshing at once (SIGHUP).
    let start = Instant::now();
    let mut round = 0u8;
    while start.elapsed() < Duration::from_secs(6) {
        let letter = b'B' + round % 5;
        aws.put_secret_value("app/blob", &String::from(letter as char).repeat(5_000 + usize::from(round % 5) * 1_000));
        m.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(150));
        round += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    println!("{reads} whole reads across {round} rotations");
    assert!(reads > 100);
    drop(m);
}
