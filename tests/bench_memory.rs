//! Benchmark of memory at size (run on demand by `scripts/bench.sh`, not in CI): ten full passes
//! over 52,000 values of a local store through a mount, with the default settings and with a
//! cache smaller than the values, printing the daemon's resident memory and calls after each
//! pass for a baseline build (`SECRETFS_BASELINE`) and this one, in the same run.

#[path = "common/mount.rs"]
mod mount;
#[path = "common/passes.rs"]
mod passes;

use std::time::Instant;

use mount::Mounted;
use passes::{ps_status_figure, read_bulk_pass, write_bulk_store};

const VALUES: usize = 52_000;
const PER_DIR: usize = 100;
const LEN: usize = 64;
const PASSES: usize = 10;

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

#[test]
#[ignore = "benchmark: scripts/bench.sh"]
fn bench_memory_over_ten_passes_of_52k_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    write_bulk_store(&store, VALUES, PER_DIR, LEN);
    let store = store.to_str().unwrap();
    let smaller = (VALUES * 3 / 4).to_string();
    for (setting, extra) in
        [("default settings", vec![]), ("--cache-size 39000", vec!["--cache-size", smaller.as_str()])]
    {
        for (build, binary) in mount::benchmark_builds() {
            let mut args = vec!["--local", store];
            args.extend(&extra);
            let m = Mounted::start_binary(&binary, &args, &[]);
            let mounted = mount::status_kb(m.pid(), "VmRSS:");
            let (mut resident, mut calls, mut seconds) = (Vec::new(), Vec::new(), Vec::new());
            let mut calls_before = 0;
            for _ in 0..PASSES {
                let start = Instant::now();
                assert_eq!(read_bulk_pass(&m.path(""), LEN), VALUES);
                seconds.push(format!("{:.1}", start.elapsed().as_secs_f64()));
                resident.push(mount::status_kb(m.pid(), "VmRSS:"));
                // The baseline has no status file: its calls show as "?".
                let status = m.read(".secretfs/status").unwrap_or_default();
                let total = ps_status_figure(&status, "calls");
                calls.push(total.map_or("?".into(), |total| (total - calls_before).to_string()));
                calls_before = total.unwrap_or(0);
            }
            let (second, last) = (resident[1] as f64, resident[PASSES - 1] as f64);
            let max = *resident.iter().max().unwrap() as f64;
            println!(
                "BENCH memory, {VALUES} values, {setting}, {build}: RSS after mount {} MB, after each pass {} MB; last vs pass 2 {:+.1} %, highest vs pass 2 {:+.1} %; calls per pass {}; seconds per pass {}",
                mb(mounted),
                resident.iter().map(|&kb| mb(kb)).collect::<Vec<_>>().join(" "),
                (last / second - 1.0) * 100.0,
                (max / second - 1.0) * 100.0,
                calls.join(" "),
                seconds.join(" "),
            );
            drop(m);
        }
    }
}
