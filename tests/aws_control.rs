//! The control directory `.secretfs/` through a real mount against moto behind the counting
//! proxy: refresh on demand (one call however many writers, refused for a user who may not read
//! the path, errors from `write()`), the status file, and the metrics file parsed by
//! Prometheus' own text parser. No control file and no log line shows a value.

#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use aws_sdk_ssm::types::ParameterType;
use fault_proxy::FaultProxy;
use moto::{Aws, Moto};
use mount::{sh, Mounted};

const CANARY: &str = "CANARY-7f3a9c";

/// Write `line` to the refresh file with bash's `echo` (which reports the errno of a failed
/// write; dash says "I/O error" for any).
fn refresh(m: &Mounted, line: &str) -> std::process::Output {
    bash(&format!("echo '{line}' > {}", m.path(".secretfs/refresh").display()))
}

fn bash(script: &str) -> std::process::Output {
    std::process::Command::new("bash").args(["-c", script]).output().unwrap()
}

#[test]
fn writing_a_path_to_the_refresh_file_fetches_it_again_once_for_every_writer() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/db/password", &format!("{CANARY}-1"), ParameterType::SecureString);
    aws.put_parameter("/app/db/user", "admin", ParameterType::String);
    aws.create_secret("app/db", &format!(r#"{{"password":"{CANARY}-a"}}"#));
    let proxy = FaultProxy::start(moto.port);
    let mut env = moto.env_via(proxy.endpoint());
    env.push(("SECRETFS_LOG", "trace".to_string()));
    let m = Mounted::start(&["--allow-other", "--file-mode", "0400", "--dir-mode", "0555"], &env);
    std::fs::set_permissions(m.dir.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(m.read("ps/app/db/password").unwrap(), format!("{CANARY}-1"));
    assert_eq!(m.read("sm/app/db/password").unwrap(), format!("{CANARY}-a"));

    // A change made out of band is not seen within the TTL (900 s) until refreshed.
    aws.put_parameter("/app/db/password", &format!("{CANARY}-2"), ParameterType::SecureString);
    assert_eq!(m.read("ps/app/db/password").unwrap(), format!("{CANARY}-1"));
    let before = proxy.seen("GetParameters");
    let done = refresh(&m, "ps/app/db/password");
    assert!(done.status.success(), "{done:?}");
    assert_eq!(proxy.seen("GetParameters") - before, 1, "one fetch");
    assert_eq!(m.read("ps/app/db/password").unwrap(), format!("{CANARY}-2"), "the write returned after it landed");

    // The same from the command line, with an absolute path inside the mount.
    aws.put_parameter("/app/db/password", &format!("{CANARY}-3"), ParameterType::SecureString);
    let cli = std::process::Command::new(mount::BINARY)
        .args(["refresh", m.dir.to_str().unwrap(), m.path("ps/app/db/password").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{cli:?}");
    assert_eq!(m.read("ps/app/db/password").unwrap(), format!("{CANARY}-3"));
    let cli = std::process::Command::new(mount::BINARY)
        .args(["refresh", m.dir.to_str().unwrap(), "ps/app/nope"])
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(1), "{cli:?}");
    assert!(String::from_utf8_lossy(&cli.stderr).contains("ps/app/nope: No such file or directory"), "{cli:?}");

    // A directory refreshes its subtree: new names appear, changed values are fetched.
    aws.put_parameter("/app/db/host", "db.internal", ParameterType::String);
    aws.put_parameter("/app/db/user", "root", ParameterType::String);
    assert!(refresh(&m, "ps/app/db/").status.success());
    assert_eq!(m.read("ps/app/db/host").unwrap(), "db.internal");
    assert_eq!(m.read("ps/app/db/user").unwrap(), "root");

    // Fifty apps refreshing the same secret at once share one fetch.
    aws.put_secret_value("app/db", &format!(r#"{{"password":"{CANARY}-b"}}"#));
    proxy.set_latency(Duration::from_millis(600));
    let fetches = || proxy.seen("GetSecretValue") + proxy.seen("BatchGetSecretValue");
    let before = fetches();
    let script = format!(
        "for i in $(seq 50); do echo sm/app/db/password > {} & done; wait",
        m.path(".secretfs/refresh").display()
    );
    assert!(sh(&script).status.success());
    proxy.set_latency(Duration::ZERO);
    assert_eq!(fetches() - before, 1, "fifty writers, one fetch");
    assert_eq!(m.read("sm/app/db/password").unwrap(), format!("{CANARY}-b"));

    // Failures come back from write(), which is what a shell reports.
    let missing = refresh(&m, "ps/app/nope");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("No such file or directory"), "{missing:?}");
    // A name created out of band while the mount remembers it as missing: a refresh finds it.
    aws.put_parameter("/app/nope", "created", ParameterType::String);
    assert_eq!(m.read("ps/app/nope").unwrap_err().raw_os_error(), Some(libc::ENOENT), "remembered as missing");
    assert!(refresh(&m, "ps/app/nope").status.success());
    assert_eq!(m.read("ps/app/nope").unwrap(), "created");
    // And a write to a name remembered as missing but created meanwhile replaces its value.
    assert_eq!(m.read("ps/app/late").unwrap_err().raw_os_error(), Some(libc::ENOENT));
    aws.put_parameter("/app/late", "theirs", ParameterType::String);
    let written = bash(&format!("printf mine > {} && sync {0}", m.path("ps/app/late").display()));
    assert!(written.status.success(), "{written:?}");
    assert_eq!(aws.parameter("/app/late"), "mine");
    let outside = refresh(&m, "etc/passwd");
    assert!(String::from_utf8_lossy(&outside.stderr).contains("Invalid argument"), "{outside:?}");

    // Who may refresh follows who may read: nobody may not read the 0400 files, but may read
    // (and so refresh) the 0555 directories.
    let as_nobody = |line: &str| {
        bash(&format!("su nobody -s /bin/bash -c \"echo '{line}' > {}\"", m.path(".secretfs/refresh").display()))
    };
    let denied = as_nobody("ps/app/db/password");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Permission denied"), "{denied:?}");
    let allowed = as_nobody("ps/app");
    assert!(allowed.status.success(), "{allowed:?}");

    // Nothing of the above shows a value: not the control files, not the trace log.
    let status = m.read(".secretfs/status").unwrap();
    let metrics = m.read(".secretfs/metrics").unwrap();
    assert!(m.read(".secretfs/refresh").unwrap().is_empty());
    let log = m.stop();
    for text in [&status, &metrics, &log] {
        assert!(!text.contains(CANARY), "a value leaked");
    }
    assert!(log.contains("refresh"), "the trace log was captured");
}

#[test]
fn status_and_metrics_tell_health_counts_and_latencies() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for index in 0..5 {
        aws.put_parameter(&format!("/svc/key{index}"), &format!("{CANARY}{index}"), ParameterType::SecureString);
    }
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&["--cache-ttl", "2", "--timeout", "1"], &moto.env_via(proxy.endpoint()));
    for index in 0..5 {
        assert_eq!(m.read(&format!("ps/svc/key{index}")).unwrap(), format!("{CANARY}{index}"));
    }
    let entries = mount::run("ls", &["-a", m.dir.to_str().unwrap()]);
    assert!(entries.contains(".secretfs"), "{entries}");
    assert_eq!(mount::run("ls", &[m.path(".secretfs").to_str().unwrap()]).split_whitespace().count(), 3);
    let status = m.read(".secretfs/status").unwrap();
    assert!(status.contains("ps: reachable"), "{status}");
    assert!(status.contains("5 values"), "{status}");

    // An outage shows: the service is unreachable, values past their TTL are counted, calls
    // are counted by outcome.
    proxy.fail("GetParameters", fault_proxy::Fault::Code("ThrottlingException"));
    proxy.fail("DescribeParameters", fault_proxy::Fault::Code("ThrottlingException"));
    std::thread::sleep(Duration::from_millis(2500));
    for index in 0..5 {
        assert_eq!(m.read(&format!("ps/svc/key{index}")).unwrap(), format!("{CANARY}{index}"), "served stale");
    }
    // The background refreshes of those stale values fail: the status says so (generous
    // bound for a loaded machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut status = m.read(".secretfs/status").unwrap();
    while !status.contains("ps: UNREACHABLE") {
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(200));
        status = m.read(".secretfs/status").unwrap();
    }
    assert!(status.contains("last failure"), "{status}");
    let ps_line = status.lines().find(|line| line.starts_with("ps: ")).unwrap();
    assert!(!ps_line.contains(" 0 throttled"), "{status}");

    let metrics = m.read(".secretfs/metrics").unwrap();
    let parsed = parse_metrics(&metrics);
    let sample = |name: &str, labels: &str| -> f64 {
        parsed
            .lines()
            .filter_map(|line| line.strip_prefix(&format!("{name} {labels} ")))
            .map(|value| value.parse::<f64>().unwrap())
            .sum()
    };
    let throttled: f64 = ["GetParameters", "DescribeParameters"]
        .iter()
        .map(|action| {
            let labels = format!(r#"{{"action": "{action}", "outcome": "throttled", "service": "ps"}}"#);
            sample("secretfs_api_calls_total", &labels)
        })
        .sum();
    assert!(throttled >= 1.0, "{parsed}");
    assert!(parsed.contains("TYPE secretfs_api_calls counter"), "{parsed}");
    assert!(
        sample("secretfs_api_calls_total", r#"{"action": "GetParameters", "outcome": "ok", "service": "ps"}"#) >= 1.0,
        "{parsed}"
    );
    assert!(sample("secretfs_cache_hits_total", r#"{"service": "ps"}"#) >= 1.0, "{parsed}");
    assert!(sample("secretfs_cache_stale_serves_total", r#"{"service": "ps"}"#) >= 1.0, "{parsed}");
    assert_eq!(sample("secretfs_service_up", r#"{"service": "ps"}"#), 0.0, "{parsed}");
    assert_eq!(sample("secretfs_cached_values", r#"{"service": "ps"}"#), 5.0, "{parsed}");
    assert!(sample("secretfs_fuse_requests_total", r#"{"op": "lookup"}"#) >= 5.0, "{parsed}");
    assert!(sample("secretfs_fuse_request_duration_seconds_count", r#"{"op": "read"}"#) >= 5.0, "{parsed}");
    assert!(parsed.contains("TYPE secretfs_fuse_request_duration_seconds histogram"), "{parsed}");
    assert!(!parsed.contains(" unknown"), "every family typed: {parsed}");
    assert!(!metrics.contains(CANARY) && !status.contains(CANARY));
}

/// Every sample of `text` as the OpenMetrics parser of Prometheus' Python client parses it
/// (strict: the `# EOF` end, names, types, histogram buckets): `name {labels} value` lines, and
/// `TYPE name type` for each family.
fn parse_metrics(text: &str) -> String {
    let python = moto::venv_python();
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print("TYPE", family.name, family.type)
    for sample in family.samples:
        print(sample.name, json.dumps(dict(sorted(sample.labels.items()))), sample.value)
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
