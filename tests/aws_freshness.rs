//! Freshness through a real mount against moto behind the fault-injecting proxy: values known
//! before an outage keep being served past the TTL, cold reads fail within the deadline, a
//! broken key costs a bounded number of calls whatever the number of readers, rotations and
//! deletions made out of band show up without readers waiting, exact names work beyond (or
//! without) a listing, roles are assumed through STS, and cached reads stay fast while many
//! cold reads hang.

#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use fault_proxy::{Fault, FaultProxy, ALL_ACTIONS};
use moto::{Aws, Moto};
use mount::Mounted;

/// Short TTLs and deadlines, so outages past the TTL take seconds.
const FAST: [&str; 6] = ["--cache-ttl", "2", "--timeout", "1", "--retries", "1"];

fn seeded() -> (Moto, Aws) {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/token", "tok-1", ParameterType::SecureString);
    aws.put_parameter("/app/user", "admin", ParameterType::String);
    aws.put_parameter("/cold/a", "never read", ParameterType::String);
    aws.create_secret("app/key", r#"{"password":"hunter2"}"#);
    (moto, aws)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

#[test]
fn known_values_survive_an_outage_past_the_ttl_and_cold_reads_fail_within_the_deadline() {
    let (moto, _aws) = seeded();
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    assert_eq!(m.read("sm/app/key/password").unwrap(), "hunter2");
    for fault in [Fault::Blackhole, Fault::Unavailable, Fault::Throttling] {
        proxy.fail(ALL_ACTIONS, fault);
        std::thread::sleep(Duration::from_secs(3));
        for _ in 0..3 {
            let (token, took) = timed(|| m.read("ps/app/token"));
            assert_eq!(token.unwrap(), "tok-1", "{fault:?}: the last good value is served");
            assert!(took < Duration::from_millis(900), "{fault:?}: a known value waits on nothing ({took:?})");
            assert_eq!(m.read("sm/app/key/password").unwrap(), "hunter2", "{fault:?}");
        }
        let (cold, took) = timed(|| m.read("ps/cold/a"));
        let err = cold.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{fault:?}: a cold read is EIO, never ENOENT: {err}");
        assert!(took < Duration::from_secs(4), "{fault:?}: within the 1 s deadline (+ margin): {took:?}");
        proxy.heal();
        std::thread::sleep(Duration::from_millis(1500));
    }
    let stderr = m.stop();
    assert!(!stderr.contains("tok-1") && !stderr.contains("hunter2"), "no value in the log: {stderr}");
}

#[test]
fn a_long_outage_never_makes_a_cached_read_wait() {
    let (moto, _aws) = seeded();
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    proxy.fail(ALL_ACTIONS, Fault::Blackhole);
    // Five TTLs of outage, read every 100 ms: past twice the TTL, each end of a retry delay
    // used to make the next reader wait out the whole --timeout.
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(10) {
        let (value, took) = timed(|| m.read("ps/app/token"));
        assert_eq!(value.unwrap(), "tok-1");
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("slowest cached read over a 10 s outage: {slowest:?}");
    assert!(slowest < Duration::from_millis(500), "a cached read waited on AWS: {slowest:?}");
    proxy.heal();
    drop(m);
}

#[test]
fn plain_ls_fetches_no_value_and_ls_l_fetches_them_in_batches() {
    let (moto, aws) = seeded();
    for i in 0..100 {
        aws.put_parameter(&format!("/many/p{i:03}"), "v", ParameterType::String);
    }
    aws.create_secret("many/json", r#"{"k":"v"}"#);
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    let listed = mount::run("ls", &["-1", m.path("ps/many").to_str().unwrap()]);
    assert_eq!(listed.lines().count(), 100);
    let listed = mount::run("ls", &["-1", m.path("sm/many").to_str().unwrap()]);
    assert_eq!(listed.trim(), "json");
    assert_eq!(proxy.seen("GetParameters") + proxy.seen("GetSecretValue"), 0, "ls reads no value");
    let long = mount::run("ls", &["-l", m.path("ps/many").to_str().unwrap()]);
    assert_eq!(long.lines().filter(|l| l.starts_with('-')).count(), 100);
    let calls = proxy.seen("GetParameters");
    println!("ls -l of 100 parameters: {calls} GetParameters calls");
    assert!(calls <= 12, "sizes come in batches of 10: {calls} calls");
    // A JSON value nobody read is listed as a file; stat (and ls -l) tell what it is.
    assert!(m.path("sm/many/json").is_dir());
    drop(m);
}

#[test]
fn a_hundred_readers_of_a_broken_key_cost_a_bounded_number_of_calls() {
    let (moto, aws) = seeded();
    for i in 0..3 {
        aws.put_parameter(&format!("/broken/k{i}"), "v", ParameterType::String);
    }
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    assert!(m.path("ps/broken").is_dir());
    proxy.fail("GetParameters", Fault::Throttling);
    let path = m.path("ps/broken/k0");
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || std::fs::read(&path).unwrap_err().raw_os_error())
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), Some(libc::EIO));
    }
    let calls = proxy.seen("GetParameters");
    println!("100 readers of a throttled key: {calls} GetParameters calls");
    // One shared request, whose throttled attempts wait their turn again within its 1 s
    // deadline (0.1, 0.2, 0.4 s apart), and at most one more after the backoff.
    assert!(calls <= 10, "one shared request, not one per reader: {calls} GetParameters");
    drop(m);
}

#[test]
fn rotations_and_deletions_out_of_band_show_up_without_readers_waiting() {
    let (moto, aws) = seeded();
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    assert_eq!(m.read("ps/app/user").unwrap(), "admin");
    aws.put_parameter("/app/token", "tok-two", ParameterType::SecureString);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    loop {
        let (value, took) = timed(|| m.read("ps/app/token").unwrap());
        slowest = slowest.max(took);
        if value == "tok-two" {
            break;
        }
        assert_eq!(value, "tok-1", "a whole old value or the whole new one");
        assert!(start.elapsed() < Duration::from_secs(8), "the rotation never showed");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("rotation visible after {:?}; slowest read meanwhile {slowest:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(5), "within the 2 s TTL (+ refresh margin)");
    assert!(slowest < Duration::from_millis(500), "no reader waited on the refresh: {slowest:?}");
    // Deleted out of band: ENOENT (not the stale value), and the name leaves its directory.
    aws.runtime.block_on(aws.ssm.delete_parameter().name("/app/user").send()).unwrap();
    let start = Instant::now();
    while m.path("ps/app/user").exists() {
        let _ = m.read("ps/app/user");
        assert!(start.elapsed() < Duration::from_secs(8), "the deletion never showed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(m.read("ps/app/user").unwrap_err().raw_os_error(), Some(libc::ENOENT));
    // Access denied (IAM or KMS) ends the stale value too.
    assert_eq!(m.read("sm/app/key/password").unwrap(), "hunter2");
    for action in ["DescribeSecret", "GetSecretValue", "BatchGetSecretValue"] {
        proxy.fail(action, Fault::AccessDenied);
    }
    let start = Instant::now();
    loop {
        match m.read("sm/app/key/password") {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => break,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            other => assert_eq!(other.unwrap(), "hunter2"),
        }
        assert!(start.elapsed() < Duration::from_secs(8), "the denial never took effect");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(m);
}

#[test]
fn exact_names_work_beyond_the_listing_and_without_listing_permission() {
    let (moto, aws) = seeded();
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    let listed: Vec<String> =
        std::fs::read_dir(m.path("ps/app")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(listed.len(), 2);
    aws.put_parameter("/app/created-later", "new", ParameterType::String);
    aws.create_secret("app/later", "s");
    assert_eq!(m.read("ps/app/created-later").unwrap(), "new", "readable at once by exact path");
    assert_eq!(m.read("sm/app/later").unwrap(), "s");
    drop(m);

    // A role that may not list (no ssm:DescribeParameters, no secretsmanager:ListSecrets).
    proxy.fail("DescribeParameters", Fault::AccessDenied);
    proxy.fail("ListSecrets", Fault::AccessDenied);
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    assert_eq!(m.read("sm/app/key/password").unwrap(), "hunter2");
    // SSM's flat names (no leading `/`) are read by exact name too: `flat` and `/flat` in one call.
    aws.put_parameter("flatname", "flat-value", ParameterType::String);
    let before = proxy.seen("GetParameters");
    assert_eq!(m.read("ps/flatname").unwrap(), "flat-value");
    assert_eq!(proxy.seen("GetParameters") - before, 1, "both spellings in one GetParameters call");
    let known: Vec<String> =
        std::fs::read_dir(m.path("ps/app")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(known, ["token"], "a directory shows what is known");
    // A name that does not exist: not a file to read, never listed.
    assert_eq!(m.read("ps/app/nope").unwrap_err().raw_os_error(), Some(libc::ENOENT));
    assert_eq!(std::fs::read_dir(m.path("ps/app/nope")).unwrap_err().raw_os_error(), Some(libc::ENOENT));
    let known: Vec<String> =
        std::fs::read_dir(m.path("ps/app")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(known, ["token"], "no phantom entry");
    assert_eq!(proxy.seen("GetParametersByPath"), 0);
    let stderr = m.stop();
    assert!(stderr.contains("denied"), "{stderr}");
}

/// The first `cat` of a deep path under a directory of hundreds of names costs, per directory
/// level not known yet, one exact read and one page of the names below it, asked together (one
/// round trip): never a listing of the subtree.
#[test]
fn a_deep_path_in_a_large_account_costs_a_round_trip_a_level() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for i in 0..300 {
        aws.put_parameter(&format!("/prod/svc{i:03}/key"), "v", ParameterType::String);
    }
    aws.put_parameter("/prod/db/root", "pw", ParameterType::SecureString);
    let proxy = FaultProxy::start(moto.port);
    // A TTL long enough that no refresh-ahead call lands among the counted ones.
    let m = Mounted::start(&["--cache-ttl", "60"], &moto.env_via(proxy.endpoint()));
    let before = proxy.seen_all();
    let since = |action: &str| proxy.seen(action) - before.get(action).copied().unwrap_or(0);
    assert_eq!(m.read("ps/prod/db/root").unwrap(), "pw");
    // prod, db, root: a page of names below each (moto's pages hold 10 of the 301) and its
    // exact read (the last one is the value `cat` reads).
    assert!(since("DescribeParameters") <= 3, "{} DescribeParameters", since("DescribeParameters"));
    assert!(since("GetParameters") <= 3, "{} GetParameters", since("GetParameters"));
    let after_read = proxy.seen_all();
    assert_eq!(m.read("ps/prod/db/root").unwrap(), "pw");
    assert_eq!(proxy.seen_all(), after_read, "read again: no call");
    // A name that exists nowhere: ENOENT, asked once within the negative-cache period.
    for _ in 0..3 {
        assert_eq!(std::fs::metadata(m.path("ps/prod/nope")).unwrap_err().raw_os_error(), Some(libc::ENOENT));
    }
    let asked = proxy.seen("DescribeParameters") - after_read.get("DescribeParameters").copied().unwrap_or(0);
    assert_eq!(asked, 1, "one probe for a missing name");
    // `ls` still lists the whole directory.
    assert_eq!(std::fs::read_dir(m.path("ps/prod")).unwrap().count(), 301);
}

#[test]
fn a_role_is_assumed_through_sts_and_mounting_checks_the_credentials_once() {
    let (moto, _aws) = seeded();
    let proxy = FaultProxy::start(moto.port);
    let role = ["--role-arn", "arn:aws:iam::123456789012:role/secret-reader", "--external-id", "ext-1"];
    let m = Mounted::start(&role, &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    assert_eq!(proxy.seen("AssumeRole"), 1);
    assert_eq!(proxy.seen("GetCallerIdentity"), 1);
    drop(m);
    let (ps_before, sm_before) = (proxy.seen("DescribeParameters"), proxy.seen("ListSecrets"));
    let m = Mounted::start(&["--no-verify-credentials", "--services", "ps"], &moto.env_via(proxy.endpoint()));
    assert_eq!(proxy.seen("GetCallerIdentity"), 1, "--no-verify-credentials skips the check");
    assert_eq!(
        (proxy.seen("DescribeParameters"), proxy.seen("ListSecrets")),
        (ps_before, sm_before),
        "mounting lists nothing"
    );
    assert!(!m.path("sm").exists(), "--services ps shows only ps/");
    drop(m);
}

#[test]
fn the_external_id_comes_from_the_environment_or_the_config_file_never_the_command_line() {
    let (moto, _aws) = seeded();
    let proxy = FaultProxy::start(moto.port);
    let role = ["--role-arn", "arn:aws:iam::123456789012:role/secret-reader"];
    let mut env = moto.env_via(proxy.endpoint());
    env.push(("SECRETFS_EXTERNAL_ID", "ext-from-env".to_string()));
    let m = Mounted::start(&role, &env);
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", m.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("ext-from"), "nothing on the command line");
    drop(m);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "external-id = \"ext-from-file\"\n").unwrap();
    let mut args = role.to_vec();
    args.extend(["--config", config.path().to_str().unwrap()]);
    let m = Mounted::start(&args, &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", m.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("ext-from"), "nothing on the command line");
    drop(m);
    let assumed: Vec<String> = proxy.form_bodies().into_iter().filter(|b| b.contains("Action=AssumeRole")).collect();
    assert_eq!(assumed.len(), 2, "{assumed:?}");
    assert!(assumed[0].contains("ExternalId=ext-from-env") && assumed[1].contains("ExternalId=ext-from-file"));
}

#[test]
fn cached_reads_stay_fast_while_a_thousand_cold_requests_hang() {
    let (moto, aws) = seeded();
    for i in 0..64 {
        aws.put_parameter(&format!("/hang/p{i:02}"), "x", ParameterType::String);
    }
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&["--timeout", "2", "--retries", "1"], &moto.env_via(proxy.endpoint()));
    assert!(m.path("ps/hang").is_dir());
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    assert_eq!(m.read("sm/app/key/password").unwrap(), "hunter2");
    let sample = |m: &Mounted| {
        let mut took: Vec<Duration> = (0..200)
            .map(|i| timed(|| m.read(if i % 2 == 0 { "ps/app/token" } else { "sm/app/key/password" }).unwrap()).1)
            .collect();
        took.sort();
        (took[took.len() / 2], took[took.len() - 1])
    };
    let (baseline, _) = sample(&m);
    proxy.fail(ALL_ACTIONS, Fault::Blackhole);
    // 64 cold values of a listed directory, and 936 lookups of names nobody has listed (each
    // its own listing, exact read and probe), all hanging on the blackholed endpoint.
    let cold_paths = (0..64).map(|i| format!("ps/hang/p{i:02}")).chain((0..936).map(|i| format!("ps/unlisted{i}/x")));
    let hanging: Vec<_> = cold_paths
        .map(|rel| {
            let path = m.path(&rel);
            std::thread::spawn(move || timed(|| std::fs::read(path).map_err(|e| e.raw_os_error())))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (during, slowest) = sample(&m);
    println!(
        "cached read median: {baseline:?} before, {during:?} with 1,000 cold requests hanging (slowest {slowest:?})"
    );
    assert!(slowest < Duration::from_secs(1), "no cached read waited behind the hanging ones: {slowest:?}");
    assert!(during < baseline * 20 + Duration::from_millis(5), "{during:?} vs {baseline:?}");
    let mut longest = Duration::ZERO;
    for reader in hanging {
        let (outcome, took) = reader.join().unwrap();
        assert_eq!(outcome.unwrap_err(), Some(libc::EIO), "cold reads fail with EIO, never ENOENT");
        longest = longest.max(took);
    }
    println!("longest cold read: {longest:?} (--timeout 2)");
    assert!(longest < Duration::from_millis(4500), "a cold read waited {longest:?}: --timeout 2 + 1 s margin + slack");
    proxy.heal();
    drop(m);
}

#[test]
fn a_parameter_deleted_and_created_again_is_seen_although_its_version_is_1_again() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/recreated", "first", ParameterType::String);
    let m = Mounted::start(&FAST, &moto.env());
    assert_eq!(m.read("ps/app/recreated").unwrap(), "first");
    aws.delete_parameter("/app/recreated");
    // Parameter Store keeps last-modified instants to the millisecond: make them differ.
    std::thread::sleep(Duration::from_millis(20));
    aws.put_parameter("/app/recreated", "second", ParameterType::String);
    let deadline = Instant::now() + Duration::from_secs(15);
    while m.read("ps/app/recreated").unwrap_or_default() != "second" {
        assert!(Instant::now() < deadline, "version 1 again was taken for the version read before");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_directory_is_listed_in_pages_of_fifty_going_on_from_the_lookups_page() {
    // moto answers DescribeParameters 10 names a page; AWS up to the 50 a listing asks for
    // (the proxy joins moto's pages to answer as AWS does).
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for i in 0..120 {
        aws.put_parameter(&format!("/dir/p{i:03}"), "v", ParameterType::String);
    }
    let proxy = FaultProxy::start(moto.port);
    proxy.set_describe_page(50);
    let m = Mounted::start(&["--cache-ttl", "60"], &moto.env_via(proxy.endpoint()));
    let before = proxy.seen("DescribeParameters");
    assert_eq!(std::fs::read_dir(m.path("ps/dir")).unwrap().count(), 120);
    // The lookup's page of the names starting with `/dir` (50), then the listing goes on from
    // it with AWS's token: 2 more pages (50, 20). Listed from the start: 4 (14 in pages of 10).
    let pages = proxy.seen("DescribeParameters") - before;
    assert_eq!(pages, 3, "{pages} DescribeParameters for the lookup and listing of 120 names");
}
