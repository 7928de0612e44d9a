//! Benchmark of the freshness engine (run on demand by `scripts/bench.sh`, not in CI): each
//! figure is printed next to the same scenario run by a baseline build (`SECRETFS_BASELINE`,
//! the binary of an earlier commit) in the same run, against moto behind the fault proxy.
//! The machine is noisy: read medians and ratios, not single numbers.

#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use fault_proxy::{Fault, FaultProxy, ALL_ACTIONS};
use moto::{Aws, Moto};
use mount::Mounted;

fn report(scenario: &str, figures: &[(impl std::fmt::Display, String)]) {
    let cells: Vec<String> = figures.iter().map(|(build, figure)| format!("{build}: {figure}")).collect();
    println!("BENCH {scenario:<58} | {}", cells.join(" | "));
}

/// Read `path` on another thread, giving up after `limit` (the read may hang on the baseline).
fn read_within(path: PathBuf, limit: Duration) -> (Option<std::io::Result<Vec<u8>>>, Duration) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(path));
    });
    let got = rx.recv_timeout(limit).ok();
    (got, start.elapsed())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn seed_parameters(aws: &Aws, dir: &str, count: usize) {
    for i in 0..count {
        aws.put_parameter(&format!("{dir}/p{i:05}"), &format!("value-{i}"), ParameterType::SecureString);
    }
}

fn mount(binary: &Path, args: &[&str], env: &[(&str, String)]) -> (Mounted, Duration) {
    let start = Instant::now();
    let mounted = Mounted::start_binary(binary, args, env);
    (mounted, start.elapsed())
}

/// `binary` mounted with `args` against moto behind the fault proxy, with `ps/app/token`
/// read once (so it is cached). Dropped in order: the mount, the proxy, moto.
fn mounted_with_a_read_token(binary: &Path, args: &[&str]) -> (Mounted, FaultProxy, Moto) {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/token", "tok", ParameterType::SecureString);
    let proxy = FaultProxy::start(moto.port);
    let (m, _) = mount(binary, args, &moto.env_via(proxy.endpoint()));
    std::fs::read(m.path("ps/app/token")).unwrap();
    (m, proxy, moto)
}

#[test]
#[ignore = "benchmark: scripts/bench.sh"]
fn bench_cached_read_during_an_outage() {
    let mut figures = Vec::new();
    for (build, binary) in mount::benchmark_builds() {
        let (m, proxy, _moto) = mounted_with_a_read_token(&binary, &["--cache-ttl", "2"]);
        let healthy = median((0..50).map(|_| read_within(m.path("ps/app/token"), Duration::from_secs(5)).1).collect());
        proxy.fail(ALL_ACTIONS, Fault::Blackhole);
        std::thread::sleep(Duration::from_secs(3));
        let mut outage = Vec::new();
        let mut failed = 0;
        for _ in 0..5 {
            let (got, took) = read_within(m.path("ps/app/token"), Duration::from_secs(20));
            failed += usize::from(!matches!(got, Some(Ok(_))));
            outage.push(took);
        }
        figures.push((
            build,
            format!("healthy {} / blackhole past TTL {} ({failed}/5 failed)", ms(healthy), ms(median(outage))),
        ));
        proxy.heal();
        drop(m);
    }
    report("cached read, healthy vs. AWS blackholed past the TTL", &figures);
}

#[test]
#[ignore = "benchmark: scripts/bench.sh"]
fn bench_warm_reads_while_cold_reads_hang() {
    for hanging in [0usize, 64, 256, 1000] {
        let mut figures = Vec::new();
        for (build, binary) in mount::benchmark_builds() {
            let (m, proxy, _moto) = mounted_with_a_read_token(&binary, &["--timeout", "5"]);
            proxy.fail(ALL_ACTIONS, Fault::Blackhole);
            // Cold reads of names nobody listed, each hanging on the blackholed endpoint.
            for i in 0..hanging {
                let path = m.path(&format!("ps/unlisted{i}/x"));
                std::thread::spawn(move || std::fs::read(path));
            }
            std::thread::sleep(Duration::from_millis(500));
            let mut samples: Vec<Duration> =
                (0..200).map(|_| read_within(m.path("ps/app/token"), Duration::from_secs(20)).1).collect();
            samples.sort();
            let p99 = samples[samples.len() * 99 / 100];
            figures.push((build, format!("p50 {} p99 {}", ms(median(samples)), ms(p99))));
            proxy.heal();
            drop(m);
        }
        report(&format!("warm read with {hanging} cold reads hanging"), &figures);
    }
}

#[test]
#[ignore = "benchmark: scripts/bench.sh"]
fn bench_calls_per_readers_of_a_broken_key() {
    let mut figures = Vec::new();
    for (build, binary) in mount::benchmark_builds() {
        let moto = Moto::start();
        let aws = Aws::new(&moto);
        seed_parameters(&aws, "/broken", 3);
        let proxy = FaultProxy::start(moto.port);
        let (m, _) = mount(&binary, &[], &moto.env_via(proxy.endpoint()));
        assert!(m.path("ps/broken").is_dir());
        proxy.fail("GetParameters", Fault::Throttling);
        let start = Instant::now();
        let handles: Vec<_> = (0..100)
            .map(|_| {
                let path = m.path("ps/broken/p00000");
                std::thread::spawn(move || read_within(path, Duration::from_secs(120)))
            })
            .collect();
        let readers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let failed = readers.iter().filter(|(got, _)| !matches!(got, Some(Ok(_)))).count();
        figures.push((
            build,
            format!(
                "{} GetParameters calls, {failed}/100 EIO, {:.1} s",
                proxy.seen("GetParameters"),
                start.elapsed().as_secs_f64()
            ),
        ));
        proxy.heal();
        drop(m);
    }
    report("100 concurrent readers of a throttled cold key", &figures);
}

#[test]
#[ignore = "benchmark: scripts/bench.sh"]
fn bench_mount_ready_time_against_account_size() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    seed_parameters(&aws, "/small", 100);
    let proxy = FaultProxy::start(moto.port);
    proxy.set_latency(Duration::from_millis(20));
    for count in [100usize, 10_000] {
        if count > 100 {
            proxy.set_latency(Duration::ZERO);
            seed_parameters(&aws, "/large", count - 100);
            proxy.set_latency(Duration::from_millis(20));
        }
        let mut figures = Vec::new();
        for (build, binary) in mount::benchmark_builds() {
            let (m, took) = mount(&binary, &[], &moto.env_via(proxy.endpoint()));
            let calls = proxy.seen_all();
            figures.push((build, format!("{:.2} s", took.as_secs_f64())));
            drop(m);
            println!("  ({build}: calls so far {calls:?})");
        }
        report(&format!("mount ready, {count} parameters, 20 ms RTT"), &figures);
    }
}

#[test]
#[ignore = "benchmark: scripts/bench.sh"]
fn bench_cold_directory_reads_at_20ms() {
    let mut figures_ps = Vec::new();
    let mut figures_sm = Vec::new();
    // moto answers DescribeParameters 10 names a page whatever MaxResults asks; AWS answers up
    // to 50 (best effort), which the proxy stands in for by joining moto's pages.
    let builds = mount::benchmark_builds();
    let runs = builds.iter().flat_map(|build| [(build, None), (build, Some(50))]);
    for ((build, binary), describe_page) in runs {
        let moto = Moto::start();
        let aws = Aws::new(&moto);
        seed_parameters(&aws, "/dir", 100);
        for i in 0..40 {
            aws.create_secret(&format!("dir/s{i:02}"), &format!(r#"{{"user":"u{i}","password":"p{i}"}}"#));
        }
        let proxy = FaultProxy::start(moto.port);
        proxy.set_latency(Duration::from_millis(20));
        let label = match describe_page {
            Some(most) => {
                proxy.set_describe_page(most);
                format!("{build}, listing pages of {most} as AWS")
            }
            None => format!("{build}, moto's listing pages of 10"),
        };
        let (m, _) = mount(binary, &[], &moto.env_via(proxy.endpoint()));
        let before = proxy.seen_all();
        let start = Instant::now();
        let out = mount::sh(&format!("cat {}/* > /dev/null", m.path("ps/dir").display()));
        assert!(out.status.success());
        let ps_took = start.elapsed();
        let new_calls = |action: &str| proxy.seen(action) - before.get(action).copied().unwrap_or(0);
        let (ps_calls, pages) = (new_calls("GetParameters"), new_calls("DescribeParameters"));
        figures_ps.push((
            label,
            format!("{:.2} s, {pages} DescribeParameters + {ps_calls} GetParameters", ps_took.as_secs_f64()),
        ));
        if describe_page.is_none() {
            let start = Instant::now();
            let out = mount::sh(&format!("cat {}/*/password > /dev/null", m.path("sm/dir").display()));
            assert!(out.status.success());
            let sm_took = start.elapsed();
            let sm_calls = proxy.seen("BatchGetSecretValue") + proxy.seen("GetSecretValue");
            figures_sm.push((*build, format!("{:.2} s, {sm_calls} value calls", sm_took.as_secs_f64())));
        }
        drop(m);
        if let Some(boto3) = boto3_by_path(&moto.env_via(proxy.endpoint())).filter(|_| figures_ps.len() == 1) {
            figures_ps.insert(0, ("boto3 GetParametersByPath".into(), boto3));
        }
    }
    report("cold `cat` of a 100-parameter directory, 20 ms RTT", &figures_ps);
    report("cold `cat` of 40 JSON secrets' keys, 20 ms RTT", &figures_sm);
}

#[test]
#[ignore = "benchmark: scripts/bench.sh"]
fn bench_cold_deep_path_in_a_large_account_at_20ms() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    seed_parameters(&aws, "/prod/svc", 7_000);
    seed_parameters(&aws, "/other", 3_000);
    aws.put_parameter("/prod/db/root", "pw", ParameterType::SecureString);
    let proxy = FaultProxy::start(moto.port);
    proxy.set_latency(Duration::from_millis(20));
    let mut figures = Vec::new();
    for (build, binary) in mount::benchmark_builds() {
        let (m, _) = mount(&binary, &[], &moto.env_via(proxy.endpoint()));
        let before = proxy.seen_all();
        let start = Instant::now();
        assert_eq!(m.read("ps/prod/db/root").unwrap(), "pw");
        let took = start.elapsed();
        let calls: Vec<String> = proxy
            .seen_all()
            .iter()
            .filter_map(|(action, n)| {
                let new = n - before.get(action).copied().unwrap_or(0);
                (new > 0).then(|| format!("{new} {action}"))
            })
            .collect();
        figures.push((build, format!("{:.2} s, {}", took.as_secs_f64(), calls.join(" + "))));
        drop(m);
    }
    report("cold `cat /prod/db/root`, 10,000 parameters (7,000 under /prod), 20 ms RTT", &figures);
}

/// boto3 reading `/dir` whole with GetParametersByPath (client made before the clock starts),
/// with `BENCH_VENV`'s Python; `None` without it.
fn boto3_by_path(env: &[(&str, String)]) -> Option<String> {
    let venv = std::env::var_os("BENCH_VENV").map_or_else(|| PathBuf::from("target/bench-venv"), PathBuf::from);
    let python = venv.join("bin/python");
    if !python.exists() {
        return None;
    }
    let script = "import time, boto3\n\
c = boto3.client('ssm')\n\
t = time.monotonic(); n = 0; calls = 0\n\
pages = c.get_paginator('get_parameters_by_path').paginate(Path='/dir', Recursive=True, WithDecryption=True)\n\
for page in pages: n += len(page['Parameters']); calls += 1\n\
print(f'{time.monotonic() - t:.2f} s, {calls} GetParametersByPath ({n} values)')\n";
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_DEFAULT_REGION", moto::REGION)
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
#[ignore = "benchmark: scripts/bench.sh"]
fn bench_steady_state_calls_per_ttl() {
    let mut figures = Vec::new();
    for (build, binary) in mount::benchmark_builds() {
        let moto = Moto::start();
        let aws = Aws::new(&moto);
        seed_parameters(&aws, "/steady", 100);
        let proxy = FaultProxy::start(moto.port);
        let (m, _) = mount(&binary, &["--cache-ttl", "2"], &moto.env_via(proxy.endpoint()));
        let read_all =
            || assert!(mount::sh(&format!("cat {}/* > /dev/null", m.path("ps/steady").display())).status.success());
        read_all();
        std::thread::sleep(Duration::from_secs(3));
        let before = proxy.seen_all();
        let start = Instant::now();
        let mut slowest = Duration::ZERO;
        while start.elapsed() < Duration::from_secs(10) {
            let t = Instant::now();
            read_all();
            slowest = slowest.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(200));
        }
        let after = proxy.seen_all();
        let per_ttl = |action: &str| {
            let calls = after.get(action).copied().unwrap_or(0) - before.get(action).copied().unwrap_or(0);
            calls as f64 / 5.0
        };
        figures.push((
            build,
            format!(
                "{:.1} GetParameters + {:.1} DescribeParameters per TTL; slowest `cat` {}",
                per_ttl("GetParameters"),
                per_ttl("DescribeParameters"),
                ms(slowest)
            ),
        ));
        drop(m);
    }
    report("100 parameters read every 200 ms, TTL 2 s, nothing changes", &figures);
}
