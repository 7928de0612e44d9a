//! Memory that stays flat through a real mount: against moto, the inodes of a looked-up path
//! are freed when the kernel forgets them, and the daemon allocates from one arena, so a
//! thousand rotations found by refreshes leave the inode table and the daemon's resident memory
//! where they were (within 5 %); over a local store, repeated passes over more values than the
//! cache holds keep the values held within the bound, resident memory flat, and each pass's
//! calls to what it must fetch again.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;
#[path = "common/passes.rs"]
mod passes;

use std::time::{Duration, Instant};

use moto::{Aws, Moto};
use mount::Mounted;
use passes::{ps_status_figure, read_bulk_pass, write_bulk_store};

const KEYS: usize = 8;

fn secret_json(round: usize) -> String {
    let members: Vec<String> = (0..KEYS).map(|k| format!(r#""k{k}":"value-{k}-{round}""#)).collect();
    format!("{{{}}}", members.join(","))
}

/// The figure after `label` in each SIGUSR1 status line of `stderr`, in order.
fn logged(stderr: &str, label: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter(|line| line.contains("status: inodes "))
        .filter_map(|line| line.split(label).nth(1))
        .map(|rest| rest.split([',', ' ', ';']).next().unwrap().parse().unwrap())
        .collect()
}

/// Rotate the secret out of band, have the daemon refresh (SIGHUP), and read every key until
/// the new value shows.
fn rotate_and_read(aws: &Aws, m: &Mounted, round: usize) {
    aws.put_secret_value("app/db", &secret_json(round));
    m.signal(libc::SIGHUP);
    let expected = format!("value-0-{round}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(m.path("sm/app/db/k0")).unwrap() != expected {
        assert!(Instant::now() < deadline, "rotation {round} never showed");
        std::thread::sleep(Duration::from_millis(5));
    }
    for k in 0..KEYS {
        assert_eq!(std::fs::read_to_string(m.path(&format!("sm/app/db/k{k}"))).unwrap(), format!("value-{k}-{round}"));
    }
}

#[test]
fn rotations_of_a_looked_up_secret_leave_inodes_and_memory_flat() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("app/db", &secret_json(0));
    let mut m = Mounted::start(&["--services", "sm"], &moto.env());
    const WARM_UP: usize = 50;
    const ROUNDS: usize = 1000;
    for round in 1..=WARM_UP {
        rotate_and_read(&aws, &m, round);
    }
    let rss_before = mount::status_kb(m.pid(), "VmRSS:");
    m.signal(libc::SIGUSR1);
    for round in WARM_UP + 1..=WARM_UP + ROUNDS {
        rotate_and_read(&aws, &m, round);
    }
    // Let the kernel send the forgets of the last rotations' inodes.
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = mount::status_kb(m.pid(), "VmRSS:");
    m.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    m.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(200));
    m.signal(libc::SIGTERM);
    let (_, stderr) = m.wait_exit();
    let counts = logged(&stderr, "inodes ");
    let heap = logged(&stderr, "heap in use ");
    println!("{ROUNDS} rotations: inodes {counts:?}, heap in use {heap:?} KiB, RSS {rss_before} kB -> {rss_after} kB");
    assert_eq!(counts.len(), 3, "three status lines: {stderr}");
    // The kernel keeps some replaced entries cached until memory is short (those in use when
    // the rotation was told), and their inodes with them; once it drops its caches, it has
    // forgotten every inode and the table holds the root alone.
    assert!(counts[1] < counts[0] + ROUNDS as u64 / 2, "the inode table grows with rotations: {counts:?}");
    assert!(counts[2] <= 2, "inodes the kernel forgot are freed: {counts:?}");
    assert!(rss_after <= rss_before + rss_before / 20, "RSS grew more than 5 %: {rss_before} kB to {rss_after} kB");
}

#[test]
fn passes_over_more_values_than_the_cache_holds_keep_memory_and_calls_bounded() {
    const VALUES: usize = 3_000;
    const PER_DIR: usize = 100;
    const HELD: u64 = 2_000;
    const LEN: usize = 64;
    const PASSES: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    write_bulk_store(&store, VALUES, PER_DIR, LEN);
    let held = HELD.to_string();
    let m = Mounted::start(&["--local", store.to_str().unwrap(), "--cache-size", &held], &[]);
    let status = || m.read(".secretfs/status").unwrap();
    let figure = |status: &str, label| ps_status_figure(status, label).unwrap_or_else(|| panic!("{label}: {status}"));
    let mut resident = Vec::new();
    let mut calls = vec![0];
    for pass in 1..=PASSES {
        assert_eq!(read_bulk_pass(&m.path(""), LEN), VALUES, "pass {pass}");
        let now = status();
        resident.push(mount::status_kb(m.pid(), "VmRSS:"));
        calls.push(figure(&now, "calls"));
        assert!(figure(&now, "values") <= HELD, "pass {pass} holds more than --cache-size: {now}");
    }
    let per_pass: Vec<u64> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    println!("{PASSES} passes over {VALUES} values through a cache of {HELD}: calls {per_pass:?}, RSS {resident:?} kB");
    // Every pass must fetch again what the last one evicted (a scan in LRU order), but never
    // more: one call per batch of 10 (a directory's last batch may be short), not batches of
    // names evicted again before they are read.
    let most = (VALUES / 10 + VALUES / PER_DIR) as u64;
    assert!(per_pass.iter().all(|&c| c <= most), "calls per pass {per_pass:?}, at most {most} each");
    // Generous: the first passes grow the allocator's pools; later ones must not grow them.
    let (second, last) = (resident[1], resident[PASSES - 1]);
    assert!(last <= second + second / 10, "RSS grew more than 10 % from pass 2: {resident:?} kB");
}
