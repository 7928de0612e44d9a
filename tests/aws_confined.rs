//! The daemon under its system-call filter (seccomp), against moto reached by a host name (so
//! name resolution runs under the filter too): it serves, writes, refreshes, runs on-change
//! commands (which are not confined), reports, logs and stops cleanly; `--no-seccomp` leaves
//! the filter out.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use moto::{Aws, Moto};
use mount::Mounted;

/// The field `key` of `/proc/PID/status`.
fn proc_status(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|line| line.strip_prefix(&format!("{key}:"))).unwrap_or_default().trim().to_string()
}

/// Moto's environment with its endpoint named `localhost` instead of an address.
fn env_by_name(moto: &Moto) -> Vec<(&'static str, String)> {
    moto.env_via(moto.endpoint().replace("127.0.0.1", "localhost"))
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_confined_daemon_serves_writes_refreshes_runs_commands_and_stops() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/db/password", "first", ParameterType::SecureString);
    aws.put_parameter("/app/db/user", "admin", ParameterType::String);
    aws.create_secret("app/api", r#"{"token":"t1"}"#);
    let work = tempfile::tempdir().unwrap();
    let ran = work.path().join("ran.log");
    let config = work.path().join("secretfs.toml");
    // The command records its own seccomp mode: it runs outside the daemon's filter.
    let record =
        format!("grep Seccomp: /proc/self/status >> {0}; echo \"$SECRETFS_CHANGED_PATHS\" >> {0}", ran.display());
    std::fs::write(
        &config,
        format!(
            "[[on-change]]\npath = \"ps/app/db/password\"\ncommand = [\"sh\", \"-c\", {record:?}]\ndebounce-ms = 100\n"
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap(), "--cache-ttl", "1", "--timeout", "2"];
    let m = Mounted::start(&args, &env_by_name(&moto));
    let pid = m.pid();
    // The filter goes on just after the mount appears.
    assert!(wait_until(Duration::from_secs(5), || proc_status(pid, "Seccomp") == "2"), "the filter is installed");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(u64::from_str_radix(&proc_status(pid, "CapEff"), 16).unwrap(), 1 << 21, "CAP_SYS_ADMIN only");

    assert_eq!(m.read("ps/app/db/password").unwrap(), "first");
    assert_eq!(m.read("sm/app/api/token").unwrap(), "t1");
    let listed: Vec<String> = std::fs::read_dir(m.path("ps/app/db"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    std::fs::write(m.path("ps/app/db/user"), "root").unwrap();
    assert_eq!(aws.parameter("/app/db/user"), "root");
    std::fs::write(m.path("sm/app/api/token"), "t2").unwrap();
    assert_eq!(aws.secret("app/api"), r#"{"token":"t2"}"#);

    // An out-of-band rotation is found by the refresher and runs the on-change command.
    aws.put_parameter("/app/db/password", "second", ParameterType::SecureString);
    assert!(
        wait_until(Duration::from_secs(15), || m.read("ps/app/db/password").ok().as_deref() == Some("second")),
        "the rotation never reached the mount"
    );
    let finished = || std::fs::read_to_string(&ran).unwrap_or_default().contains("ps/app/db/password");
    assert!(wait_until(Duration::from_secs(10), finished), "the on-change command never ran");
    let ran = std::fs::read_to_string(&ran).unwrap();
    assert!(ran.starts_with("Seccomp:\t0\n") && ran.contains("ps/app/db/password"), "{ran}");

    m.signal(libc::SIGHUP);
    m.signal(libc::SIGUSR1);
    assert!(m.read(".secretfs/status").unwrap().contains("ps: reachable"));
    let mut m = m;
    m.signal(libc::SIGTERM);
    let (code, log) = m.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(!mount::is_mounted(&m.dir), "the daemon left its mount behind");
    assert!(log.contains("status: inodes") && log.contains("updated ps /app/db/user"), "{log}");
    for refused in ["Operation not permitted", "os error 1)", "filter"] {
        assert!(!log.contains(refused), "a system call was refused: {log}");
    }
}

#[test]
fn no_seccomp_leaves_the_filter_out() {
    let moto = Moto::start();
    Aws::new(&moto).put_parameter("/app/x", "1", ParameterType::String);
    let m = Mounted::start(&["--no-seccomp"], &moto.env());
    assert_eq!(proc_status(m.pid(), "Seccomp"), "0");
    assert_eq!(proc_status(m.pid(), "NoNewPrivs"), "1");
    assert_eq!(m.read("ps/app/x").unwrap(), "1");
    m.stop();
}
