//! What AWS refusing or struggling does, through a real mount against moto behind the
//! fault-injecting proxy: a KMS key that refuses ends the serving of a superseded value, every
//! retry takes a rate-limit slot, Secrets Manager's write conflicts are retried, and a large
//! listing under throttling neither fails whole nor keeps an exact-name reader waiting, and
//! stopping ends the listings still running cleanly.

#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use fault_proxy::{Fault, FaultProxy};
use moto::{Aws, Moto};
use mount::{sh, Mounted};

/// Short TTLs and deadlines, so refreshes and outages take seconds.
const FAST: [&str; 4] = ["--cache-ttl", "2", "--timeout", "1"];

#[test]
fn a_kms_key_that_refuses_ends_the_serving_of_a_superseded_value() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/token", "tok-1", ParameterType::SecureString);
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    // The value rotates, and its key is disabled: the new version cannot be decrypted.
    aws.put_parameter("/app/token", "tok-2", ParameterType::SecureString);
    proxy.fail("GetParameters", Fault::InvalidKeyId);
    let start = Instant::now();
    let err = loop {
        match m.read("ps/app/token") {
            Ok(value) => assert_eq!(value, "tok-1", "only the old value, until the refresh lands"),
            Err(err) => break err,
        }
        assert!(start.elapsed() < Duration::from_secs(8), "the superseded value was served past its refresh");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "a key refusal is a denial: {err}");
    for _ in 0..5 {
        let again = m.read("ps/app/token").unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::EACCES), "never the old value again");
    }
    proxy.heal();
    drop(m);
}

#[test]
fn every_retry_takes_a_rate_limit_slot_and_throttling_cuts_the_rate() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for dir in 0..20 {
        for key in 0..5 {
            aws.put_parameter(&format!("/t/d{dir}/p{key}"), "v", ParameterType::String);
        }
    }
    let proxy = FaultProxy::start(moto.port);
    proxy.fail("GetParameters", Fault::Throttling);
    let args = ["--ps-max-tps", "5", "--retries", "3", "--timeout", "8", "--services", "ps"];
    let m = Mounted::start(&args, &moto.env_via(proxy.endpoint()));
    // Listed first, so the requests counted are the reads' own (and their retries).
    assert_eq!(std::fs::read_dir(m.path("ps/t")).unwrap().count(), 20);
    let before: u64 = proxy.seen_all().values().sum();
    let start = Instant::now();
    let readers: Vec<_> = (0..20)
        .map(|dir| {
            let path = m.path(&format!("ps/t/d{dir}/p0"));
            std::thread::spawn(move || std::fs::read(path).map_err(|e| e.raw_os_error()))
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap().unwrap_err(), Some(libc::EIO), "throttled to the end: EIO");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let requests = proxy.seen_all().values().sum::<u64>() - before;
    println!("{requests} Parameter Store requests in {elapsed:.1}s at --ps-max-tps 5 under throttling");
    assert!(proxy.seen("GetParameters") > 5, "the reads were tried and retried: {}", proxy.seen("GetParameters"));
    // A burst of 5, then at most 5 a second, retries included; every throttle answered cuts
    // the rate (to 50-70 %, once a second; answered listing calls grow it back), so fewer than
    // the ceiling reach AWS (measured: 22 requests in 16 s; 53 in 10 s before the rate adapted).
    let ceiling = 5.0 + 5.0 * elapsed + 2.0;
    assert!(
        (requests as f64) <= ceiling * 0.75,
        "{requests} requests in {elapsed:.1}s: the rate was not cut (ceiling {ceiling:.0})"
    );
    drop(m);
}

#[test]
fn secrets_manager_write_conflicts_are_retried_within_the_timeout() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("app/key", "old");
    let proxy = FaultProxy::start(moto.port);
    let args = ["--retries", "2", "--timeout", "5", "--file-mode", "0600", "--dir-mode", "0700"];
    let m = Mounted::start(&args, &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("sm/app/key").unwrap(), "old");
    // More conflicts in a row than --retries allows: still retried until the deadline.
    proxy.fail_next("PutSecretValue", Fault::TooManyUpdates, 3);
    let out = sh(&format!("printf new | cat > {}", m.path("sm/app/key").display()));
    assert!(out.status.success(), "the write lands once the conflict clears: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(proxy.seen("PutSecretValue"), 4, "three refused attempts, then the one that stored it");
    assert_eq!(aws.secret("app/key"), "new");
    drop(m);
}

#[test]
fn a_large_listing_under_throttling_neither_fails_whole_nor_keeps_an_exact_reader_waiting() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for i in 0..500 {
        aws.put_parameter(&format!("/big/p{i:03}"), &format!("v{i}"), ParameterType::String);
    }
    for i in 0..250 {
        aws.create_secret(&format!("many/s{i:03}"), "x");
    }
    let proxy = FaultProxy::start(moto.port);
    // A share of every page is throttled whatever the rate (AWS throttles by rate): the
    // adaptive rate is cut about once a second and settles near a request a second, so the
    // 50 pages of the listing take 8-9 s on a quiet machine and can take a minute under load.
    proxy.fail_share("DescribeParameters", Fault::Throttling, 20);
    proxy.fail_share("ListSecrets", Fault::Throttling, 50);
    let m = Mounted::start(&["--timeout", "2", "--retries", "2"], &moto.env_via(proxy.endpoint()));
    // An exact path: answered whether or not the listing of /big has finished.
    let start = Instant::now();
    assert_eq!(m.read("ps/big/p250").unwrap(), "v250");
    println!("exact read under a throttled 500-name listing: {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(4), "within --timeout + 1 s + slack: {:?}", start.elapsed());
    // The whole listings complete: a failed page is tried again on its own.
    let listed = |rel: &str| {
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            let out = sh(&format!("ls -1 {}", m.path(rel).display()));
            if out.status.success() {
                return String::from_utf8(out.stdout).unwrap().lines().count();
            }
            assert!(Instant::now() < deadline, "{rel} never listed: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    assert_eq!(listed("ps/big"), 500);
    assert_eq!(listed("sm/many"), 250);
    assert!(proxy.refused() > 0, "pages were throttled");
    drop(m);
}

#[test]
fn stopping_ends_the_listings_still_running_without_a_panic() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for i in 0..200 {
        aws.put_parameter(&format!("/big/p{i:03}"), "v", ParameterType::String);
    }
    let proxy = FaultProxy::start(moto.port);
    // 20 pages of 300 ms: the listing outlives the reader's patience and runs on in the
    // background when the daemon is told to stop.
    proxy.set_latency(Duration::from_millis(300));
    let mut m = Mounted::start(&["--timeout", "1"], &moto.env_via(proxy.endpoint()));
    let out = sh(&format!("timeout 20 ls {} | wc -l", m.path("ps/big").display()));
    assert!(out.status.success());
    let pages = proxy.seen("DescribeParameters");
    m.signal(libc::SIGTERM);
    let started = Instant::now();
    let (code, log) = m.wait_exit();
    println!("stopped in {:?} after {pages} pages", started.elapsed());
    assert!(pages < 20, "the listing was still running: {pages} pages");
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped in {:?}", started.elapsed());
}

/// moto behind the fault proxy, holding `/app/token` (tok-1), `app/key` ({"password":
/// "hunter2"}) and `/cold/a`, which the credential tests never read before the refusals.
fn a_token_a_key_and_a_cold_value() -> (Moto, Aws, FaultProxy) {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/token", "tok-1", ParameterType::SecureString);
    aws.put_parameter("/cold/a", "never read", ParameterType::String);
    aws.create_secret("app/key", r#"{"password":"hunter2"}"#);
    let proxy = FaultProxy::start(moto.port);
    (moto, aws, proxy)
}

#[test]
fn refused_role_credentials_are_renewed_through_sts_while_known_values_stay_served() {
    let (moto, aws, proxy) = a_token_a_key_and_a_cold_value();
    let role = ["--role-arn", "arn:aws:iam::123456789012:role/reader", "--role-duration", "900"];
    let args: Vec<&str> = FAST.iter().copied().chain(role).collect();
    let m = Mounted::start(&args, &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    assert_eq!(m.read("sm/app/key/password").unwrap(), "hunter2");
    assert!(m.path("ps/cold").is_dir());
    assert_eq!(proxy.seen("AssumeRole"), 1);
    // The session token is refused (expired early, revoked): every SSM and Secrets Manager call
    // fails, STS still answers.
    let actions = [
        "GetParameters",
        "GetParameter",
        "DescribeParameters",
        "GetSecretValue",
        "BatchGetSecretValue",
        "DescribeSecret",
        "ListSecrets",
    ];
    for action in actions {
        proxy.fail(action, Fault::Code("ExpiredTokenException"));
    }
    let refused = std::time::Instant::now();
    while refused.elapsed() < Duration::from_millis(3500) {
        assert_eq!(m.read("ps/app/token").unwrap(), "tok-1", "the known value is served");
        assert_eq!(m.read("sm/app/key/password").unwrap(), "hunter2");
        std::thread::sleep(Duration::from_millis(100));
    }
    let cold = m.read("ps/cold/a").unwrap_err();
    assert_eq!(cold.raw_os_error(), Some(libc::EIO), "a cold read is EIO, never EACCES: {cold}");
    let assumed = proxy.seen("AssumeRole");
    // Renewals back off (1 s, 2 s, ...): a few in 3.5 s, not one per refused call.
    assert!((2..=5).contains(&assumed), "the role is assumed again, with backoff: {assumed} AssumeRole calls");
    let status = m.read(".secretfs/status").unwrap();
    assert!(status.contains("credentials asked for again"), "{status}");
    proxy.heal();
    aws.put_parameter("/app/token", "tok-2", ParameterType::SecureString);
    let healed = std::time::Instant::now();
    while m.read("ps/app/token").unwrap() != "tok-2" {
        assert!(
            healed.elapsed() < Duration::from_secs(15),
            "refreshes never resumed after the credentials were renewed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The cold read's failure is remembered until its backoff ends, then it is read.
    while m.read("ps/cold/a").ok().as_deref() != Some("never read") {
        assert!(healed.elapsed() < Duration::from_secs(15), "the cold value never became readable");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = m.stop();
    let renewals = stderr.matches("asking the credential chain again").count();
    assert!((1..=5).contains(&renewals), "one log line per renewal: {stderr}");
    assert!(!stderr.contains("tok-1") && !stderr.contains("hunter2"));
}

#[test]
fn refused_credentials_never_take_known_values_away() {
    let (moto, _aws, proxy) = a_token_a_key_and_a_cold_value();
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("ps/app/token").unwrap(), "tok-1");
    assert_eq!(m.read("sm/app/key/password").unwrap(), "hunter2");
    assert!(m.path("ps/cold").is_dir());
    let codes = [
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "RequestExpired",
    ];
    for code in codes {
        proxy.fail(fault_proxy::ALL_ACTIONS, Fault::Code(code));
        std::thread::sleep(Duration::from_millis(2500));
        for _ in 0..3 {
            assert_eq!(m.read("ps/app/token").unwrap(), "tok-1", "{code}: the known value is served");
            assert_eq!(m.read("sm/app/key/password").unwrap(), "hunter2", "{code}");
        }
        let cold = m.read("ps/cold/a").unwrap_err();
        assert_eq!(cold.raw_os_error(), Some(libc::EIO), "{code}: a cold read is EIO, never EACCES: {cold}");
        proxy.heal();
        std::thread::sleep(Duration::from_millis(1500));
    }
    let stderr = m.stop();
    assert!(stderr.contains("refused the daemon's credentials"), "the log says why: {stderr}");
    assert!(!stderr.contains("tok-1") && !stderr.contains("hunter2"));
}
