//! Memory that stays flat through a real mount against moto: the inodes of a looked-up path
//! are freed when the kernel forgets them, and the daemon allocates from one arena, so a
//! thousand rotations found by refreshes leave the inode table and the daemon's resident memory
//! where they were (within 5 %).

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::time::{Duration, Instant};

use moto::{Aws, Moto};
use mount::Mounted;

const KEYS: usize = 8;

fn secret_json(round: usize) -> String {
    let members: Vec<String> = (0..KEYS).map(|k| format!(r#""k{k}":"value-{k}-{round}""#)).collect();
    format!("{{{}}}", members.join(","))
}

fn resident_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
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
    let rss_before = resident_kb(m.pid());
    m.signal(libc::SIGUSR1);
    for round in WARM_UP + 1..=WARM_UP + ROUNDS {
        rotate_and_read(&aws, &m, round);
    }
    // Let the kernel send the forgets of the last rotations' inodes.
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = resident_kb(m.pid());
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
