//! No request hangs: changes found inside a request (a lookup's batch, a commit's version
//! check) reach the kernel from the notifier thread after the request, never from inside it.
//! Every step runs with a bound; a step still blocked at its bound aborts the FUSE connection
//! and fails the test (the old code hung in both reproductions forever).

#[path = "common/bounded.rs"]
mod bounded;
#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;
#[path = "common/rng.rs"]
mod rng;

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use bounded::{abort_file, bounded, sh_bounded, Bounded};
use fault_proxy::{Fault, FaultProxy};
use moto::{Aws, Moto};
use mount::Mounted;
use rng::Rng;

/// Longest any step may take: the `--timeout 1` of every AWS call, its retry, and room.
const BOUND: Duration = Duration::from_secs(8);
const FAST: [&str; 10] =
    ["--cache-ttl", "1", "--timeout", "1", "--retries", "1", "--file-mode", "0600", "--dir-mode", "0700"];

#[test]
fn a_lookup_whose_batch_finds_a_rotated_sibling_returns() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for i in 0..5 {
        aws.put_parameter(&format!("/rel/rot/p{i}"), &format!("v{i}"), ParameterType::SecureString);
    }
    let m = Mounted::start(&FAST, &moto.env());
    let abort = abort_file(&m.dir);
    assert_eq!(std::fs::read_to_string(m.path("ps/rel/rot/p1")).unwrap(), "v1");
    // Idle for 4 TTLs: nothing is refreshed ahead, so the next lookup fetches a batch of
    // siblings inline, and that batch finds p3 rotated.
    std::thread::sleep(Duration::from_secs(4));
    aws.put_parameter("/rel/rot/p3", "v3-rotated", ParameterType::SecureString);
    let p0 = m.path("ps/rel/rot/p0");
    let read = bounded(&abort, BOUND, move || std::fs::read_to_string(p0));
    let Bounded::Done(value, took) = read else { panic!("cat of a sibling hung; the FUSE connection was aborted") };
    assert_eq!(value.unwrap(), "v0");
    eprintln!("cat p0 after a sibling's rotation: {took:?}");
    assert_eq!(std::fs::read_to_string(m.path("ps/rel/rot/p3")).unwrap(), "v3-rotated");
}

#[test]
fn sed_i_with_describe_secret_denied_returns() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("prod/token", "old-token");
    let proxy = FaultProxy::start(moto.port);
    proxy.fail("DescribeSecret", Fault::AccessDenied);
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    let abort = abort_file(&m.dir);
    let file = m.path("sm/prod/token");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "old-token");
    // Rotated out of band after sed read it: the commit's refetch (its version check is denied)
    // finds the value moved, inside the RENAME that holds the directory's lock.
    aws.put_secret_value("prod/token", "old-rotated");
    let script = format!("sed -i 's/old/new/' {}", file.display());
    let out = sh_bounded(&abort, BOUND, &script).expect("sed -i");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "new-token", "sed's whole new value is stored");
    let agents = proxy.user_agents();
    let version = concat!("app/secretfs-", env!("CARGO_PKG_VERSION"));
    assert!(!agents.is_empty() && agents.iter().all(|agent| agent.contains(version)), "{agents:?}");
}

#[test]
fn random_rotations_deletions_and_denials_never_hang_a_request() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let names: Vec<String> = (0..6).map(|i| format!("/mix/d{}/p{i}", i % 2)).collect();
    for name in &names {
        aws.put_parameter(name, "old-0", ParameterType::SecureString);
    }
    for i in 0..3 {
        aws.create_secret(&format!("mix/s{i}"), "old-0");
    }
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&FAST, &moto.env_via(proxy.endpoint()));
    let abort = abort_file(&m.dir);
    let mut rng = Rng::seeded_from("NO_HANG_SEED");
    let seed = rng.state();
    let denials = ["DescribeParameters", "GetParameters", "DescribeSecret", "BatchGetSecretValue", "GetSecretValue"];
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for step in 0..80 {
        let param = &names[rng.below(names.len() as u64) as usize];
        let secret = format!("mix/s{}", rng.below(3));
        let file = |service: &str, name: &str| m.path(&format!("{service}/{}", name.trim_start_matches('/')));
        let script = match rng.below(9) {
            0 => {
                aws.put_parameter(param, &format!("old-{step}"), ParameterType::SecureString);
                continue;
            }
            1 => {
                aws.put_secret_value(&secret, &format!("old-{step}"));
                continue;
            }
            2 => {
                aws.delete_parameter(param);
                continue;
            }
            3 => {
                match rng.below(2) {
                    0 => proxy.heal(),
                    _ => proxy.fail(denials[rng.below(denials.len() as u64) as usize], Fault::AccessDenied),
                }
                continue;
            }
            4 => format!("cat {}", file("ps", param).display()),
            5 => format!("cat {}", file("sm", &secret).display()),
            6 => format!("ls -l {} {}", m.path("ps/mix/d0").display(), m.path("ps/mix/d1").display()),
            7 => format!("sed -i 's/old/new/' {}", file("ps", param).display()),
            _ => format!("sed -i 's/old/new/' {}", file("sm", &secret).display()),
        };
        // Any outcome is fine (a denied or deleted value fails); hanging is not.
        match sh_bounded(&abort, BOUND, &script) {
            Bounded::Done(_, took) => slowest = slowest.max(took),
            Bounded::Hung => panic!("step {step} `{script}` hung (NO_HANG_SEED={seed})"),
        }
    }
    eprintln!("80 steps in {:?}; slowest operation {slowest:?}", started.elapsed());
}
