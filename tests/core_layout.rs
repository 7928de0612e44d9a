//! Core tests without FUSE: layout rules, JSON expansion, collisions, names, single-flight,
//! failure isolation, against the in-memory provider.

#[path = "common/core.rs"]
mod core;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use core::{filesystem, filesystem_with_prefixes, list, names, read, stat};
use secretfs::error::{Error, Result};
use secretfs::fs::{NodeKind, OpenMode};
use secretfs::provider::memory::{MemoryProvider, FETCH_ACTION};
use secretfs::provider::{CallCounts, FetchResult, Fetched, Listed, Provider, SecretBytes, Service, ValueKind};

fn stores() -> (Arc<MemoryProvider>, Arc<MemoryProvider>) {
    let ps = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
    ps.insert("/prod/db/root", ValueKind::SecureString, "S3cr3Tp4Ssw0Rd!^");
    ps.insert("/prod/db", ValueKind::String, "prefix-and-value");
    ps.insert("/prod/list", ValueKind::StringList, "a,b,c");
    ps.insert("/prod/json", ValueKind::String, r#"{"k":"v","n":1}"#);
    ps.insert("flat", ValueKind::String, "top");
    let sm = Arc::new(MemoryProvider::for_service(Service::SecretsManager));
    sm.insert(
        "prod/db",
        ValueKind::SecretString,
        r#"{"username":"admin","password":"pw","port":5432,"ok":true,"none":null,"list":[1,"a"],"options":{"ssl":"require","deep":{"x":1}},"":"empty","a/b":"slash","replica":"json-loses"}"#,
    );
    sm.insert("prod/db/replica", ValueKind::SecretString, "real-child-wins");
    sm.insert("prod/api-token", ValueKind::SecretString, "tok");
    sm.insert("prod/bin", ValueKind::SecretBinary, vec![0u8, 159, 146, 150, 255]);
    sm.insert("prod/bin-json", ValueKind::SecretBinary, br#"{"a":1}"#.to_vec());
    sm.insert("Mixed.Case_name-@+=", ValueKind::SecretString, "exact");
    (ps, sm)
}

#[test]
fn root_holds_ps_and_sm() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    assert_eq!(names(&fs, ""), [".secretfs", "ps", "sm"], "the services and the control directory");
    assert_eq!(stat(&fs, "").unwrap().perm, 0o500);
    assert_eq!(stat(&fs, "nope").unwrap_err(), Error::NotFound);
}

#[test]
fn parameters_are_files_with_exact_bytes_and_true_size() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    assert_eq!(read(&fs, "ps/prod/db/root").unwrap(), b"S3cr3Tp4Ssw0Rd!^");
    assert_eq!(read(&fs, "ps/prod/list").unwrap(), b"a,b,c");
    assert_eq!(read(&fs, "ps/flat").unwrap(), b"top");
    let attr = stat(&fs, "ps/prod/db/root").unwrap();
    assert_eq!((attr.kind, attr.size, attr.perm, attr.uid, attr.gid), (NodeKind::File, 16, 0o400, 1000, 1000));
}

#[test]
fn a_value_that_is_also_a_prefix_is_a_directory_with_dot_value() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    assert_eq!(stat(&fs, "ps/prod/db").unwrap().kind, NodeKind::Dir);
    assert_eq!(names(&fs, "ps/prod/db"), [".value", "root"]);
    assert_eq!(read(&fs, "ps/prod/db/.value").unwrap(), b"prefix-and-value");
}

#[test]
fn json_objects_become_directories_in_both_services() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    assert_eq!(names(&fs, "ps/prod/json"), [".value", "k", "n"]);
    assert_eq!(read(&fs, "ps/prod/json/k").unwrap(), b"v");
    let listing = list(&fs, "sm/prod/db").unwrap();
    let expected: Vec<(String, NodeKind)> = [
        (".value", NodeKind::File),
        ("list", NodeKind::File),
        ("none", NodeKind::File),
        ("ok", NodeKind::File),
        ("options", NodeKind::Dir),
        ("password", NodeKind::File),
        ("port", NodeKind::File),
        ("replica", NodeKind::File),
        ("username", NodeKind::File),
    ]
    .into_iter()
    .map(|(n, k)| (n.to_string(), k))
    .collect();
    assert_eq!(listing, expected);
    assert_eq!(read(&fs, "sm/prod/db/username").unwrap(), b"admin");
    assert_eq!(read(&fs, "sm/prod/db/port").unwrap(), b"5432");
    assert_eq!(read(&fs, "sm/prod/db/ok").unwrap(), b"true");
    assert_eq!(read(&fs, "sm/prod/db/none").unwrap(), b"null");
    assert_eq!(read(&fs, "sm/prod/db/list").unwrap(), br#"[1,"a"]"#);
    assert_eq!(read(&fs, "sm/prod/db/options/ssl").unwrap(), b"require");
    assert_eq!(read(&fs, "sm/prod/db/options/deep/x").unwrap(), b"1");
    assert_eq!(read(&fs, "sm/prod/db/options/.value").unwrap(), br#"{"ssl":"require","deep":{"x":1}}"#);
}

#[test]
fn dot_value_is_the_raw_value_byte_for_byte() {
    let (ps, sm) = stores();
    let raw = sm.fetch(&["prod/db".into()]).unwrap().remove(0).1.unwrap();
    let fs = filesystem(ps, sm, true);
    assert_eq!(read(&fs, "sm/prod/db/.value").unwrap(), raw.bytes.as_slice());
}

#[test]
fn real_child_wins_over_json_key_and_bad_keys_are_hidden() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    assert_eq!(read(&fs, "sm/prod/db/replica").unwrap(), b"real-child-wins");
    assert!(!names(&fs, "sm/prod/db").iter().any(|n| n.is_empty() || n.contains('/')));
    assert_eq!(stat(&fs, "sm/prod/db/..").unwrap_err(), Error::NotFound);
}

#[test]
fn binary_secrets_are_raw_bytes_and_never_expanded() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    assert_eq!(read(&fs, "sm/prod/bin").unwrap(), [0u8, 159, 146, 150, 255]);
    assert_eq!(stat(&fs, "sm/prod/bin-json").unwrap().kind, NodeKind::File);
}

#[test]
fn names_are_kept_exactly() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, true);
    assert_eq!(read(&fs, "sm/Mixed.Case_name-@+=").unwrap(), b"exact");
    assert_eq!(stat(&fs, "sm/mixed.case_name-@+=").unwrap_err(), Error::NotFound);
}

#[test]
fn json_keys_off_shows_json_values_as_files() {
    let (ps, sm) = stores();
    let fs = filesystem(ps, sm, false);
    assert_eq!(stat(&fs, "ps/prod/json").unwrap().kind, NodeKind::File);
    assert_eq!(read(&fs, "ps/prod/json").unwrap(), br#"{"k":"v","n":1}"#);
    // A prefix collision still needs a directory.
    assert_eq!(names(&fs, "sm/prod/db"), [".value", "replica"]);
}

#[test]
fn prefixes_root_each_service() {
    let (ps, sm) = stores();
    let fs = filesystem_with_prefixes(ps, "/prod/", sm, "prod/", true);
    assert_eq!(names(&fs, "ps"), ["db", "json", "list"]);
    assert_eq!(read(&fs, "ps/db/root").unwrap(), b"S3cr3Tp4Ssw0Rd!^");
    assert_eq!(names(&fs, "sm"), ["api-token", "bin", "bin-json", "db"]);
}

#[test]
fn reading_a_directory_of_values_costs_one_call_per_batch() {
    let ps = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
    for i in 0..100 {
        ps.insert(&format!("/many/p{i:03}"), ValueKind::String, format!("value {i}"));
    }
    let sm = Arc::new(MemoryProvider::for_service(Service::SecretsManager));
    let fs = filesystem(ps.clone(), sm, true);
    for i in 0..100 {
        assert_eq!(read(&fs, &format!("ps/many/p{i:03}")).unwrap(), format!("value {i}").as_bytes());
    }
    assert_eq!(ps.call_counts()[FETCH_ACTION], 10);
}

/// A provider that counts fetches per name and can be slow or fail for chosen names.
struct Instrumented {
    inner: MemoryProvider,
    delay: Duration,
    failing: Option<(String, Error)>,
    fetched_names: AtomicUsize,
}

impl Provider for Instrumented {
    fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.inner.list(prefix)
    }
    fn fetch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        std::thread::sleep(self.delay);
        self.fetched_names.fetch_add(names.len(), Ordering::SeqCst);
        let mut results = self.inner.fetch(names)?;
        for (name, result) in results.iter_mut() {
            if let Some((failing, err)) = &self.failing {
                if name == failing {
                    *result = Err(err.clone());
                }
            }
        }
        Ok(results)
    }
    fn versions(&self, names: &[String]) -> Result<std::collections::HashMap<String, String>> {
        self.inner.versions(names)
    }
    fn update(&self, name: &str, current: &Fetched, bytes: SecretBytes) -> Result<Fetched> {
        self.inner.update(name, current, bytes)
    }
    fn create(&self, name: &str, kind: ValueKind, bytes: SecretBytes) -> Result<Fetched> {
        self.inner.create(name, kind, bytes)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(name)
    }
    fn batch_limit(&self) -> usize {
        self.inner.batch_limit()
    }
    fn call_counts(&self) -> CallCounts {
        self.inner.call_counts()
    }

    fn call_outcomes(&self) -> secretfs::provider::OutcomeCounts {
        self.inner.call_outcomes()
    }
}

fn instrumented(delay: Duration, failing: Option<(String, Error)>) -> Arc<Instrumented> {
    let inner = MemoryProvider::for_service(Service::SecretsManager);
    inner.insert("app/one", ValueKind::SecretString, "1");
    inner.insert("app/two", ValueKind::SecretString, "2");
    inner.insert("app/three", ValueKind::SecretString, "3");
    Arc::new(Instrumented { inner, delay, failing, fetched_names: AtomicUsize::new(0) })
}

#[test]
fn concurrent_readers_of_one_uncached_key_make_one_call() {
    let sm = instrumented(Duration::from_millis(200), None);
    let fs = Arc::new(filesystem(Arc::new(MemoryProvider::for_service(Service::ParameterStore)), sm.clone(), true));
    stat(&fs, "sm/app").unwrap();
    let readers = 16;
    let barrier = Arc::new(Barrier::new(readers));
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let (fs, barrier) = (fs.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                read(&fs, "sm/app/two").unwrap()
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), b"2");
    }
    assert_eq!(sm.call_counts()[FETCH_ACTION], 1, "16 readers, one fetch");
    assert_eq!(sm.fetched_names.load(Ordering::SeqCst), 3, "the one fetch carried the siblings");
}

#[test]
fn a_failing_key_does_not_break_its_siblings() {
    let sm = instrumented(Duration::ZERO, Some(("app/two".into(), Error::AccessDenied("denied".into()))));
    let fs = filesystem(Arc::new(MemoryProvider::for_service(Service::ParameterStore)), sm, true);
    assert_eq!(names(&fs, "sm/app"), ["one", "three", "two"]);
    assert_eq!(read(&fs, "sm/app/one").unwrap(), b"1");
    assert_eq!(read(&fs, "sm/app/two").unwrap_err().errno(), libc::EACCES);
    assert_eq!(read(&fs, "sm/app/three").unwrap(), b"3");
}

#[test]
fn a_transient_failure_is_eio_never_enoent() {
    let sm = instrumented(Duration::ZERO, Some(("app/one".into(), Error::Transient("throttled".into()))));
    let fs = filesystem(Arc::new(MemoryProvider::for_service(Service::ParameterStore)), sm, true);
    assert_eq!(stat(&fs, "sm/app/one").unwrap_err().errno(), libc::EIO);
}

#[test]
fn an_open_handle_keeps_its_snapshot() {
    let (ps, sm) = stores();
    let fs = filesystem(ps.clone(), sm, true);
    let attr = stat(&fs, "ps/flat").unwrap();
    let fh = fs.open(attr.ino, OpenMode::default()).unwrap().fh;
    ps.insert("flat", ValueKind::String, "a much longer new value");
    assert_eq!(fs.getattr(attr.ino, Some(fh)).unwrap().size, 3);
    assert_eq!(fs.read(fh, 0, 100, |b| b.to_vec()).unwrap(), b"top");
    fs.release(fh).unwrap();
}

#[test]
fn opening_a_directory_lists_it_and_makes_its_entries_only_when_read() {
    let (ps, sm) = stores();
    for i in 0..100 {
        ps.insert(&format!("/big/p{i:03}"), ValueKind::String, "v");
    }
    let fs = filesystem(ps.clone(), sm, true);
    let dir = stat(&fs, "ps/big").unwrap();
    let fh = fs.opendir(dir.ino).unwrap();
    let listings = ps.call_counts().values().sum::<u64>();
    // Entries are made at the first read (the kernel keeps what it read, so most opens are
    // never read: `bench_hot_path` measures what that saves), from the listing of the open.
    ps.insert("/big/zz-later", ValueKind::String, "v");
    let entries = fs.readdir(fh).unwrap();
    assert_eq!(entries.len(), 102, "., .. and the 100 names listed at the open");
    assert!(entries.iter().all(|entry| entry.name != "zz-later"));
    assert_eq!(fs.readdir(fh).unwrap().len(), 102, "made once");
    assert_eq!(ps.call_counts().values().sum::<u64>(), listings, "reading the handle asks nothing");
    fs.releasedir(fh);
    assert_eq!(fs.opendir(stat(&fs, "ps/prod/db/root").unwrap().ino).unwrap_err(), Error::NotADirectory);
}
