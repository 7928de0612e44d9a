//! Benchmark of the hot path (run on demand by `scripts/bench.sh`, not in CI; `SECRETFS_BUILD`
//! names the release binary of this tree, `SECRETFS_BASELINE` a baseline's): warm
//! open + read to EOF + close, `stat`, a listing with `stat` of each of 100 entries, the same
//! with the ACL and security-label checks that `ls -l` adds, and 32-thread throughput, each
//! printed next to tmpfs measured in the same rounds (seven rounds of tmpfs then the mount, one
//! right after the other: the machine's load drifts; each figure is the median over the rounds,
//! each ratio the median of the rounds' ratios, with their range) and to a baseline build
//! (`SECRETFS_BASELINE`), on a read-write and a `--read-only` mount of a local store (and, for
//! this build, a read-write mount without its system-call filter); with the daemon's CPU time
//! and the kernel requests it received per operation (this build). The machine is noisy: read
//! medians and ratios, not single numbers.

#[path = "common/mount.rs"]
mod mount;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mount::Mounted;

/// Warm reads and stats timed per build and mode (over all rounds), and listings.
const CYCLES: usize = 21_000;
const LISTINGS: usize = 350;
/// Rounds of tmpfs then the mount, each figure a median over them.
const ROUNDS: usize = 7;
const THREADS: usize = 32;

/// A local store with a 20-byte parameter and 100 more in one directory.
fn store(dir: &Path) -> PathBuf {
    let mut parameters = serde_json::Map::new();
    parameters.insert("/hot/value".into(), "0123456789abcdefghij".into());
    for i in 0..100 {
        parameters.insert(format!("/dir/p{i:03}"), format!("value-{i:03}").into());
    }
    let path = dir.join("store.json");
    std::fs::write(&path, serde_json::json!({ "parameters": parameters, "secrets": {} }).to_string()).unwrap();
    path
}

/// The same files on tmpfs (/dev/shm).
fn tmpfs_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    std::fs::create_dir_all(dir.path().join("ps/hot")).unwrap();
    std::fs::create_dir_all(dir.path().join("ps/dir")).unwrap();
    std::fs::write(dir.path().join("ps/hot/value"), "0123456789abcdefghij").unwrap();
    for i in 0..100 {
        std::fs::write(dir.path().join(format!("ps/dir/p{i:03}")), format!("value-{i:03}")).unwrap();
    }
    dir
}

fn open_read_close(path: &Path, buf: &mut [u8]) {
    let mut file = std::fs::File::open(path).unwrap();
    while file.read(buf).unwrap() > 0 {}
}

/// Whether `getxattr` (`lgetxattr` unless `follow`) of `name` on `path` says the filesystem
/// does not support it.
fn unsupported_xattr(path: &Path, name: &str, follow: bool) -> bool {
    mount::xattr_size(path, name, follow) == Err(libc::EOPNOTSUPP)
}

/// Lists `dir` and stats each entry; with `label_and_acl`, also asks each one for its SELinux
/// label and access ACL as GNU `ls -l` (9.1) does: it stops asking for either once the
/// filesystem says it does not support it.
fn list_and_stat(dir: &Path, label_and_acl: bool) {
    let (mut label, mut acl) = (label_and_acl, label_and_acl);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        std::hint::black_box(entry.metadata().unwrap());
        label = label && !unsupported_xattr(&entry.path(), "security.selinux", false);
        acl = acl && !unsupported_xattr(&entry.path(), "system.posix_acl_access", true);
    }
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

/// p50 and p99 of `op` over `cycles` runs (after a warm-up).
fn timed(cycles: usize, mut op: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..cycles / 100 {
        op();
    }
    let mut samples: Vec<Duration> = (0..cycles)
        .map(|_| {
            let start = Instant::now();
            op();
            start.elapsed()
        })
        .collect();
    (percentile(&mut samples, 50), percentile(&mut samples, 99))
}

/// Operations a second of `THREADS` threads doing open + read + close of `path` for 1 s.
fn throughput(path: &Path) -> f64 {
    let stop = Instant::now() + Duration::from_secs(1);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let path = path.to_path_buf();
            std::thread::spawn(move || {
                let (mut buf, mut ops) = ([0u8; 4096], 0u64);
                while Instant::now() < stop {
                    open_read_close(&path, &mut buf);
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum::<u64>() as f64
}

/// User + system CPU time of process `pid`.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    Duration::from_secs_f64(ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

fn us(d: f64) -> String {
    format!("{:.1} µs", d * 1e6)
}

/// One round's figures of one filesystem: seconds per operation (p50, and p99 of the read),
/// and operations a second for the throughput.
#[derive(Clone, Copy)]
struct Round {
    read: f64,
    read_p99: f64,
    stat: f64,
    listing: f64,
    ls: f64,
    ops_per_second: f64,
}

fn measure_round(root: &Path) -> Round {
    let value = root.join("ps/hot/value");
    let dir = root.join("ps/dir");
    let mut buf = [0u8; 4096];
    let (read, read_p99) = timed(CYCLES / ROUNDS, || open_read_close(&value, &mut buf));
    let (stat, _) = timed(CYCLES / ROUNDS, || {
        std::hint::black_box(std::fs::metadata(&value).unwrap());
    });
    let (listing, _) = timed(LISTINGS / ROUNDS, || list_and_stat(&dir, false));
    let (ls, _) = timed(LISTINGS / ROUNDS, || list_and_stat(&dir, true));
    Round {
        read: read.as_secs_f64(),
        read_p99: read_p99.as_secs_f64(),
        stat: stat.as_secs_f64(),
        listing: listing.as_secs_f64(),
        ls: ls.as_secs_f64(),
        ops_per_second: throughput(&value),
    }
}

/// `ROUNDS` rounds of tmpfs then the mount at `root`, one right after the other, so the
/// machine's drifting load weighs on both alike; then the daemon's CPU time per warm read, over
/// `CYCLES` reads once it is idle.
fn measure(tmpfs: &Path, root: &Path, pid: u32) -> (Vec<Round>, Vec<Round>, Duration) {
    let (mut on_tmpfs, mut on_mount) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        on_tmpfs.push(measure_round(tmpfs));
        on_mount.push(measure_round(root));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (mut buf, value, before) = ([0u8; 4096], root.join("ps/hot/value"), cpu(pid));
    for _ in 0..CYCLES {
        open_read_close(&value, &mut buf);
    }
    (on_tmpfs, on_mount, (cpu(pid) - before) / CYCLES as u32)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median of `figure` on the mount, its median ratio to tmpfs (round by round) and the
/// range of that ratio; `inverse` for figures where more is better (the ratio is tmpfs's over
/// the mount's).
fn compared(tmpfs: &[Round], mount: &[Round], figure: fn(&Round) -> f64, inverse: bool) -> (f64, f64, f64, f64) {
    let ratios: Vec<f64> = tmpfs
        .iter()
        .zip(mount)
        .map(|(t, m)| match inverse {
            true => figure(t) / figure(m),
            false => figure(m) / figure(t),
        })
        .collect();
    let (low, high) = ratios.iter().fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
    (median(mount.iter().map(figure).collect()), median(ratios), low, high)
}

fn report(label: &str, tmpfs: &[Round], mount: &[Round], cpu_per_read: Duration) {
    let time = |figure: fn(&Round) -> f64| {
        let (value, ratio, low, high) = compared(tmpfs, mount, figure, false);
        format!("{} ({ratio:.1}x tmpfs, rounds {low:.1}–{high:.1}x)", us(value))
    };
    let (ops, share, low, high) = compared(tmpfs, mount, |r| r.ops_per_second, true);
    println!(
        "BENCH {label:<24} | open+read+close p50 {} p99 {} | stat {} | list+stat 100 {} | ls -l 100 {} | 32 threads {ops:.0}/s (1/{share:.1} of tmpfs, rounds 1/{low:.1}–1/{high:.1}) | tmpfs p50 read {} stat {} | daemon CPU per read {}",
        time(|r| r.read),
        us(median(mount.iter().map(|r| r.read_p99).collect())),
        time(|r| r.stat),
        time(|r| r.listing),
        time(|r| r.ls),
        us(median(tmpfs.iter().map(|r| r.read).collect())),
        us(median(tmpfs.iter().map(|r| r.stat).collect())),
        us(cpu_per_read.as_secs_f64()),
    );
}

/// The request counts of the daemon's last SIGUSR1 status line.
fn request_counts(stderr: &str) -> String {
    stderr.lines().rev().find_map(|l| l.split("requests: ").nth(1)).unwrap_or("").to_string()
}

#[test]
#[ignore = "benchmark: scripts/bench.sh"]
fn bench_hot_path_against_tmpfs() {
    let work = tempfile::tempdir().unwrap();
    let store = store(work.path());
    let tmpfs = tmpfs_copy();
    for (build, binary) in mount::benchmark_builds() {
        let modes =
            [("read-write", vec![]), ("--read-only", vec!["--read-only"]), ("rw --no-seccomp", vec!["--no-seccomp"])];
        for (mode, args) in modes {
            if args.contains(&"--no-seccomp") && build != "this build" {
                continue;
            }
            let mut all = vec!["--local", store.to_str().unwrap()];
            all.extend(args);
            let mut m = Mounted::start_binary(&binary, &all, &[]);
            let (on_tmpfs, on_mount, cpu_per_read) = measure(tmpfs.path(), &m.dir, m.pid());
            report(&format!("{build} {mode}"), &on_tmpfs, &on_mount, cpu_per_read);
            if build == "this build" {
                // Requests per warm open + read + close, counted by the daemon.
                m.signal(libc::SIGUSR1);
                std::thread::sleep(Duration::from_millis(100));
                let mut buf = [0u8; 4096];
                for _ in 0..1000 {
                    open_read_close(&m.path("ps/hot/value"), &mut buf);
                }
                m.signal(libc::SIGUSR1);
                std::thread::sleep(Duration::from_millis(100));
                for _ in 0..100 {
                    list_and_stat(&m.path("ps/dir"), true);
                }
                m.signal(libc::SIGUSR1);
                std::thread::sleep(Duration::from_millis(100));
                m.signal(libc::SIGTERM);
                let (_, stderr) = m.wait_exit();
                let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("requests: ")).collect();
                let [before, reads, listings] = lines[lines.len() - 3..] else { unreachable!() };
                println!(
                    "BENCH {build} {mode}: requests before 1,000 warm reads: {}; after: {}; after 100 ls -l: {}",
                    request_counts(before),
                    request_counts(reads),
                    request_counts(listings)
                );
            }
        }
    }
}
