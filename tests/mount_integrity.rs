//! Write integrity through a real mount against moto behind the fault proxy: a write reported
//! as failed is never stored later, writes merge into the value stored now, duplicate JSON keys
//! are not collapsed, `.value` in a directory creates its value, and oversized writes fail at
//! close in both services.

#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::time::Duration;

use aws_sdk_ssm::types::ParameterType;
use fault_proxy::{Fault, FaultProxy};
use moto::{Aws, Moto};
use mount::{sh, Mounted};

fn fails(script: &str) -> String {
    let out = sh(script);
    assert!(!out.status.success(), "{script} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(script: &str) {
    let out = sh(script);
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

const WRITABLE: [&str; 4] = ["--file-mode", "0600", "--dir-mode", "0700"];

#[test]
fn a_write_reported_as_failed_is_never_stored_later() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/x", "OLD", ParameterType::SecureString);
    aws.create_secret("s", "OLD");
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&WRITABLE, &moto.env_via(proxy.endpoint()));
    let p = |rel: &str| m.path(rel).display().to_string();
    assert_eq!(std::fs::read_to_string(m.path("ps/x")).unwrap(), "OLD");
    assert_eq!(std::fs::read_to_string(m.path("sm/s")).unwrap(), "OLD");
    for (action, fault, calls, file, errno) in [
        ("PutParameter", Fault::Unavailable, 3, "ps/x", "Input/output error"),
        ("PutParameter", Fault::AccessDenied, 1, "ps/x", "Permission denied"),
        ("PutSecretValue", Fault::Unavailable, 3, "sm/s", "Input/output error"),
        ("PutSecretValue", Fault::AccessDenied, 1, "sm/s", "Permission denied"),
    ] {
        let before = proxy.seen(action);
        proxy.fail_next(action, fault, calls);
        assert!(fails(&format!("printf NEW | cat > {}", p(file))).contains(errno), "{action} {fault:?}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(proxy.seen(action) - before, u64::from(calls), "{action} {fault:?}: no attempt after close()");
    }
    assert_eq!(aws.parameter("/x"), "OLD", "AWS keeps the value close() said was not stored");
    assert_eq!(aws.secret("s"), "OLD");
    let stderr = m.stop();
    let logged = stderr.matches("write not stored").count();
    assert_eq!(logged, 4, "each failure is logged once: {stderr}");
}

#[test]
fn writes_build_on_the_value_stored_now() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("app/db", r#"{"username":"admin","password":"old"}"#);
    aws.create_secret("app/dup", r#"{"a":"first","a":"second","b":"x"}"#);
    aws.put_parameter("/a/b/c", "child", ParameterType::String);
    let m = Mounted::start(&WRITABLE, &moto.env());
    let p = |rel: &str| m.path(rel).display().to_string();
    assert_eq!(std::fs::read_to_string(m.path("sm/app/db/username")).unwrap(), "admin");
    aws.runtime
        .block_on(
            aws.sm
                .put_secret_value()
                .secret_id("app/db")
                .secret_string(r#"{"username":"root-oob","password":"old"}"#)
                .send(),
        )
        .unwrap();
    ok(&format!("printf new | cat > {}", p("sm/app/db/password")));
    assert_eq!(aws.secret("app/db"), r#"{"username":"root-oob","password":"new"}"#, "no lost update");

    assert!(fails(&format!("printf y | cat > {}", p("sm/app/dup/b"))).contains("Invalid argument"));
    assert_eq!(aws.secret("app/dup"), r#"{"a":"first","a":"second","b":"x"}"#);

    // Appends, writes at an offset and truncation start from the value stored now too.
    aws.put_parameter("/rel/wr/p9", "base-value", ParameterType::SecureString);
    assert_eq!(std::fs::read_to_string(m.path("ps/rel/wr/p9")).unwrap(), "base-value");
    aws.put_parameter("/rel/wr/p9", "OUT-OF-BAND-CHANGE", ParameterType::SecureString);
    ok(&format!("printf X >> {}", p("ps/rel/wr/p9")));
    assert_eq!(aws.parameter("/rel/wr/p9"), "OUT-OF-BAND-CHANGEX", "an append never undoes an outside change");
    aws.put_parameter("/rel/wr/p9", "abcdef", ParameterType::SecureString);
    ok(&format!("printf Z | dd of={} bs=1 seek=1 conv=notrunc status=none", p("ps/rel/wr/p9")));
    assert_eq!(aws.parameter("/rel/wr/p9"), "aZcdef", "a write at an offset lands in the stored value");
    aws.put_parameter("/rel/wr/p9", "0123456789", ParameterType::SecureString);
    ok(&format!("truncate -s 4 {}", p("ps/rel/wr/p9")));
    assert_eq!(aws.parameter("/rel/wr/p9"), "0123", "truncate cuts the stored value");
    aws.put_secret_value("app/db", r#"{"username":"oob-user","password":"new"}"#);
    ok(&format!("printf 2 >> {}", p("sm/app/db/username")));
    assert_eq!(aws.secret("app/db"), r#"{"username":"oob-user2","password":"new"}"#, "a key append too");

    ok(&format!("printf X | cat > {}", p("ps/a/b/.value")));
    assert_eq!(aws.parameter("/a/b"), "X", "the directory's own value is created");
    assert_eq!(std::fs::read_to_string(m.path("ps/a/b/c")).unwrap(), "child");
    let stderr = m.stop();
    assert!(stderr.contains("app/dup") && stderr.contains("duplicate keys"), "{stderr}");
}

#[test]
fn oversized_writes_fail_at_close_in_both_services() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/big", "OLD", ParameterType::String);
    aws.create_secret("big", "OLD");
    let m = Mounted::start(&WRITABLE, &moto.env());
    for (file, size) in [("ps/big", 8193), ("sm/big", 65_537)] {
        let script = format!("head -c {size} /dev/zero | tr '\\0' x | cat > {}", m.path(file).display());
        assert!(fails(&script).contains("File too large"), "{file}");
    }
    assert_eq!(aws.parameter("/big"), "OLD");
    assert_eq!(aws.secret("big"), "OLD");
    drop(m);
}

#[test]
fn fstat_on_a_file_opened_before_a_rotation_tells_that_file_s_truth() {
    use std::io::Read;
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/rot", "S3cr3Tp4Ssw0Rd!^", ParameterType::SecureString);
    let m = Mounted::start(&["--cache-ttl", "1"], &moto.env());
    let path = m.path("ps/rot");
    let mut before = std::fs::File::open(&path).unwrap();
    assert_eq!(before.metadata().unwrap().len(), 16);
    for new in ["a-value-of-another-length-entirely", "short"] {
        aws.put_parameter("/rot", new, ParameterType::SecureString);
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        while std::fs::read_to_string(&path).unwrap() != new {
            assert!(std::time::Instant::now() < deadline, "the rotation to {new} never showed");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), new.len() as u64, "the path shows the new value");
        assert_eq!(before.metadata().unwrap().len(), 16, "fstat of the old descriptor: its own value");
    }
    let mut old = String::new();
    before.read_to_string(&mut old).unwrap();
    assert_eq!(old, "S3cr3Tp4Ssw0Rd!^", "and it reads exactly that many bytes");
    drop(before);
    drop(m);
}

#[test]
fn a_write_costs_one_version_check_and_one_update() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/token", "old", ParameterType::SecureString);
    aws.create_secret("app/key", "old");
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&WRITABLE, &moto.env_via(proxy.endpoint()));
    assert_eq!(std::fs::read_to_string(m.path("ps/app/token")).unwrap(), "old");
    assert_eq!(std::fs::read_to_string(m.path("sm/app/key")).unwrap(), "old");
    let before = proxy.seen_all();
    ok(&format!("printf new | cat > {}", m.path("ps/app/token").display()));
    ok(&format!("printf new | cat > {}", m.path("sm/app/key").display()));
    let after = proxy.seen_all();
    let made = |action: &str| after.get(action).copied().unwrap_or(0) - before.get(action).copied().unwrap_or(0);
    assert_eq!((made("DescribeParameters"), made("PutParameter")), (1, 1), "a parameter write: check + put");
    assert_eq!((made("DescribeSecret"), made("PutSecretValue")), (1, 1), "a secret write: check + put");
    assert_eq!(aws.parameter("/app/token"), "new");
    assert_eq!(aws.secret("app/key"), "new");
    drop(m);
}

#[test]
fn a_burst_of_writers_of_one_secret_costs_a_few_updates_and_stores_one_whole_value() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("app/burst", "initial");
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&["--file-mode", "0600"], &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("sm/app/burst").unwrap(), "initial");
    proxy.set_latency(Duration::from_millis(200));
    let path = m.path("sm/app/burst");
    let script = format!(
        "fail=0; for i in $(seq 100); do (printf 'value-%03d' $i > {0} || echo failed) & done; wait",
        path.display()
    );
    let out = sh(&script);
    proxy.set_latency(Duration::ZERO);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("failed"), "{out:?}");
    let puts = proxy.seen("PutSecretValue");
    assert!(puts <= 10, "100 writers, {puts} PutSecretValue calls");
    let stored = aws.secret("app/burst");
    assert!(stored.len() == 9 && stored.starts_with("value-"), "one written value, whole: {stored:?}");
    assert_eq!(m.read("sm/app/burst").unwrap(), stored);
    eprintln!("100 concurrent writers: {puts} PutSecretValue, {} DescribeSecret", proxy.seen("DescribeSecret"));
}
