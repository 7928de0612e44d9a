//! On-change commands through a real mount against moto: an out-of-band rotation of two
//! watched values within the debounce runs the command once with both paths (values not read
//! again are still refreshed), and a failing command is logged once and not retried.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use moto::{Aws, Moto};
use mount::Mounted;

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_rotation_runs_the_command_once_per_batch_with_the_changed_paths() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for name in ["/app/tls/cert", "/app/tls/key", "/app/fail", "/app/other"] {
        aws.put_parameter(name, "v1", ParameterType::SecureString);
    }
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("ran.log");
    let config = work.path().join("secretfs.toml");
    let record = format!("printf '%s\\n--\\n' \"$SECRETFS_CHANGED_PATHS\" >> {}", log.display());
    std::fs::write(
        &config,
        format!(
            "[[on-change]]\npath = \"ps/app/tls/**\"\ncommand = [\"sh\", \"-c\", {record:?}]\ndebounce-ms = 700\n\n\
             [[on-change]]\npath = \"ps/app/fail\"\ncommand = [\"false\"]\ndebounce-ms = 100\n"
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap(), "--cache-ttl", "1", "--timeout", "1"];
    let m = Mounted::start(&args, &moto.env());
    for file in ["ps/app/tls/cert", "ps/app/tls/key", "ps/app/fail", "ps/app/other"] {
        assert_eq!(std::fs::read_to_string(m.path(file)).unwrap(), "v1");
    }
    // Nobody reads them again: watched values are refreshed anyway. Idle past two TTLs first.
    std::thread::sleep(Duration::from_millis(2500));
    let rotated = Instant::now();
    aws.put_parameter("/app/tls/cert", "v2", ParameterType::SecureString);
    aws.put_parameter("/app/tls/key", "v2", ParameterType::SecureString);
    aws.put_parameter("/app/other", "v2", ParameterType::SecureString);
    let ran = wait_until(Duration::from_secs(10), || log.exists());
    assert!(ran.is_some(), "the command never ran after the rotation");
    eprintln!("rotation to on-change command: {:?}", rotated.elapsed());
    // Another refresh round passes: nothing changed, so nothing more runs.
    std::thread::sleep(Duration::from_millis(2500));
    let ran = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ran, "ps/app/tls/cert\nps/app/tls/key\n--\n", "one run, both paths, only the watched ones");
    aws.put_parameter("/app/fail", "v2", ParameterType::SecureString);
    std::thread::sleep(Duration::from_millis(4000));
    let stderr = m.stop();
    assert_eq!(stderr.matches("on-change command `false` failed").count(), 1, "{stderr}");
    assert!(!stderr.contains("v2"), "a value reached the log: {stderr}");
}
