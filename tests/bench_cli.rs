//! Benchmark of a new process reading one parameter (run on demand by `scripts/bench.sh`, not
//! in CI): `secretfs get` (the release build, `SECRETFS_BUILD`) next to `aws ssm get-parameter`
//! and a boto3 script (`BENCH_VENV`, a virtualenv with awscli and boto3), measured in the same
//! run against moto behind the test proxy with a simulated network round trip. Each figure is
//! the median wall-clock time from process start to value on stdout.

#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/moto.rs"]
mod moto;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use fault_proxy::FaultProxy;
use moto::{Aws, Moto};

const RUNS: usize = 15;
const NAME: &str = "/bench/db/password";
const VALUE: &str = "benchmark-value";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median time of `program ARGS` printing `VALUE`, or `None` if it is not installed.
fn timed(program: &PathBuf, args: &[&str], env: &[(&str, String)]) -> Option<Duration> {
    if !program.exists() {
        return None;
    }
    let mut samples = Vec::with_capacity(RUNS);
    for run in 0..RUNS + 2 {
        let started = Instant::now();
        let out = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        assert!(out.status.success(), "{program:?} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), VALUE);
        if run >= 2 {
            samples.push(elapsed);
        }
    }
    Some(median(samples))
}

#[test]
#[ignore = "benchmark: run by scripts/bench.sh"]
fn bench_process_to_value() {
    let moto = Moto::start();
    Aws::new(&moto).put_parameter(NAME, VALUE, ParameterType::SecureString);
    let proxy = FaultProxy::start(moto.port);
    let secretfs =
        std::env::var_os("SECRETFS_BUILD").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_secretfs")), PathBuf::from);
    let venv = std::env::var_os("BENCH_VENV").map_or_else(|| PathBuf::from("target/bench-venv"), PathBuf::from);
    let boto3 = format!(
        "import boto3; print(boto3.client('ssm').get_parameter(Name='{NAME}', WithDecryption=True)['Parameter']['Value'])"
    );
    for latency_ms in [0, 20] {
        proxy.set_latency(Duration::from_millis(latency_ms));
        let mut env = moto.env_via(proxy.endpoint());
        env.push(("AWS_DEFAULT_REGION", moto::REGION.to_string()));
        let figures = [
            ("secretfs get", timed(&secretfs, &["get", "ps", NAME], &env)),
            (
                "aws ssm get-parameter",
                timed(
                    &venv.join("bin/aws"),
                    &[
                        "ssm",
                        "get-parameter",
                        "--name",
                        NAME,
                        "--with-decryption",
                        "--query",
                        "Parameter.Value",
                        "--output",
                        "text",
                    ],
                    &env,
                ),
            ),
            ("boto3 (python -c)", timed(&venv.join("bin/python"), &["-c", &boto3], &env)),
        ];
        let base = figures[0].1.unwrap();
        for (what, figure) in figures {
            match figure {
                Some(median) => println!(
                    "BENCH process-to-value round-trip={latency_ms}ms {what:<24} median {:>7.1} ms  ({:.1}x secretfs get)",
                    median.as_secs_f64() * 1e3,
                    median.as_secs_f64() / base.as_secs_f64()
                ),
                None => println!("BENCH process-to-value {what}: not installed (BENCH_VENV)"),
            }
        }
    }
}
