//! Fleet simulator: the real cache engine (`ServiceCache`: refresh-ahead, chunked revalidation,
//! backoff, stale serving) and the real adaptive rate (`AdaptiveRate`) of N simulated hosts, on
//! one fake clock, against a simulated AWS account that enforces per-account quotas per action
//! (a token bucket per quota group, refilled at the quota's rate and holding one second of it)
//! and answers ThrottlingException beyond them. Hosts' clocks are a fraction of a second apart
//! (each host's refresher ticks at its own offset within the second), as real hosts' are.
//!
//! Each host starts at a random second of the first minute (a fleet cold start) and reads its
//! working set (100 parameters in 50 directories, or 10 % of the secrets, two per directory)
//! spread over `READ_INTERVAL`,
//! then each name again every `READ_INTERVAL`; its refresher runs every tick of the engine's own period (TTL/100). A 1 %
//! rotation of the account happens at `ROTATE_AT`. Reported per scenario: calls a second by
//! action (steady state: the last TTL), throttles, reads that failed, the staleness of served
//! values (how long after a newer version existed), and the time for the rotation to reach
//! every host. Simplifications: calls take no time (a wait for a rate slot longer than the
//! request deadline fails the call, as the daemon's would), no retries inside a call (the
//! engine's backoff retries), reads by exact name (no directory listings).
//!
//! `cargo test --release --test fleet -- --ignored --nocapture` prints the full table
//! (`scripts/bench.sh` runs it); the quick test below runs in CI.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secretfs::cache::changes::ChangeStream;
use secretfs::cache::clock::{Clock, FakeClock};
use secretfs::cache::spawn::QueuedJobs;
use secretfs::cache::{CacheSettings, Runtime, ServiceCache};
use secretfs::error::{Error, Result};
use secretfs::provider::adaptive_rate::AdaptiveRate;
use secretfs::provider::aws::{DEFAULT_PS_TPS, DEFAULT_SM_TPS, DEFAULT_TIMEOUT};
use secretfs::provider::{
    CallCounts, FetchResult, Fetched, Listed, Metadata, OutcomeCounts, Provider, SecretBytes, Service, ValueKind,
};

/// Each host reads each of its names this often.
const READ_INTERVAL: Duration = Duration::from_secs(60);
/// Hosts start reading within this window.
const COLD_START: u64 = 60;

/// Per-account quotas, requests a second, by the group of actions that share one. Parameter
/// Store: `GetParameter`, `GetParameters` and `GetParametersByPath` share 40 (standard
/// throughput, published); `DescribeParameters` is not published and users report it as low: 10
/// is assumed. Secrets Manager (published): `DescribeSecret` 40,000, `GetSecretValue` 10,000,
/// `BatchGetSecretValue` 100, `ListSecrets` 100.
fn quota(action: &str) -> (&'static str, u32) {
    match action {
        "GetParameters" | "GetParameter" | "GetParametersByPath" => ("GetParameter*", 40),
        "DescribeParameters" => ("DescribeParameters", 10),
        "DescribeSecret" => ("DescribeSecret", 40_000),
        "GetSecretValue" => ("GetSecretValue", 10_000),
        "BatchGetSecretValue" => ("BatchGetSecretValue", 100),
        _ => ("ListSecrets", 100),
    }
}

/// How far around a request the token bucket's constraint is checked.
const BUCKET_HORIZON: Duration = Duration::from_secs(5);

/// Whether a token bucket refilled at `rate` a second and holding one second of it admits one
/// more request at `at`, next to the requests `admitted` (instant → count). Requests reach the
/// account out of time order (hosts are simulated one after another, and a host's request may
/// wait for its own rate), so the bucket is checked in its equivalent form: no interval `[s, e]`
/// within [`BUCKET_HORIZON`] of `at` that holds it may hold more than `rate × (1 s + (e - s))`
/// requests.
fn bucket_admits(admitted: &BTreeMap<Instant, u32>, at: Instant, rate: u32) -> bool {
    let rate = f64::from(rate);
    let origin = at.checked_sub(BUCKET_HORIZON).unwrap_or(at);
    let secs = |t: Instant| t.saturating_duration_since(origin).as_secs_f64();
    let mut before: Vec<(f64, u32)> = Vec::new();
    let mut after: Vec<(f64, u32)> = Vec::new();
    for (&t, &n) in admitted.range(origin..=at + BUCKET_HORIZON) {
        match t <= at {
            true => before.push((secs(t), n)),
            false => after.push((secs(t), n)),
        }
    }
    // With the new request counted at `at`: an interval starting at the i-th instant at or
    // before `at` and ending at the k-th at or after it holds C(k) - C(i-1) requests (C: the
    // running count). The bucket allows that iff (C(k) - rate·t(k)) - (C(i-1) - rate·t(i)) ≤ rate.
    let held_before: u32 = before.iter().map(|(_, n)| n).sum();
    let (mut count, mut lowest_start) = (0u32, f64::MAX);
    for &(t, n) in &before {
        lowest_start = lowest_start.min(f64::from(count) - rate * t);
        count += n;
    }
    lowest_start = lowest_start.min(f64::from(held_before) - rate * secs(at));
    let mut count = held_before + 1;
    let mut highest_end = f64::from(count) - rate * secs(at);
    for &(t, n) in &after {
        count += n;
        highest_end = highest_end.max(f64::from(count) - rate * t);
    }
    highest_end - lowest_start <= rate
}

/// One name of the account: its version now and when each version after the first was set.
struct Entry {
    version: u64,
    changed_at: Vec<Instant>,
}

/// The simulated account: names, versions, and the quotas.
struct Account {
    clock: Arc<FakeClock>,
    service: Service,
    names: Mutex<BTreeMap<String, Entry>>,
    /// Per quota group, the requests admitted (how many at each instant) within the last
    /// [`BUCKET_HORIZON`] or later.
    buckets: Mutex<HashMap<&'static str, BTreeMap<Instant, u32>>>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
    calls_by_second: Mutex<BTreeMap<(&'static str, u64), u64>>,
    throttles: Mutex<BTreeMap<&'static str, u64>>,
    /// Throttles per second.
    throttles_by_second: Mutex<BTreeMap<u64, u64>>,
    start: Instant,
}

impl Account {
    fn new(clock: Arc<FakeClock>, service: Service, count: usize) -> Arc<Account> {
        let start = clock.now();
        let names = (0..count).map(|i| (name_of(service, i), Entry { version: 1, changed_at: Vec::new() })).collect();
        Arc::new(Account {
            clock,
            service,
            names: Mutex::new(names),
            buckets: Mutex::default(),
            calls: Mutex::default(),
            calls_by_second: Mutex::default(),
            throttles: Mutex::default(),
            throttles_by_second: Mutex::default(),
            start,
        })
    }

    /// Admit one request of `action` made at `at`, or throttle it.
    fn admit(&self, action: &'static str, at: Instant) -> bool {
        let second = at.saturating_duration_since(self.start).as_secs();
        *self.calls.lock().unwrap().entry(action).or_default() += 1;
        *self.calls_by_second.lock().unwrap().entry((action, second)).or_default() += 1;
        let (group, rate) = quota(action);
        let mut buckets = self.buckets.lock().unwrap();
        let admitted = buckets.entry(group).or_default();
        if let Some(forgotten) = self.clock.now().checked_sub(2 * BUCKET_HORIZON) {
            *admitted = admitted.split_off(&forgotten);
        }
        if !bucket_admits(admitted, at, rate) {
            *self.throttles.lock().unwrap().entry(action).or_default() += 1;
            *self.throttles_by_second.lock().unwrap().entry(second).or_default() += 1;
            return false;
        }
        *admitted.entry(at).or_default() += 1;
        true
    }

    fn rotate(&self, name: &str) {
        let now = self.clock.now();
        let mut names = self.names.lock().unwrap();
        let entry = names.get_mut(name).unwrap();
        entry.version += 1;
        entry.changed_at.push(now);
    }

    /// How long ago a version newer than `version` of `name` was set (zero if it is current).
    fn staleness(&self, name: &str, version: u64, now: Instant) -> Duration {
        let names = self.names.lock().unwrap();
        let entry = &names[name];
        match version < entry.version {
            true => now.saturating_duration_since(entry.changed_at[(version - 1) as usize]),
            false => Duration::ZERO,
        }
    }

    fn fetched(&self, name: &str) -> Result<Fetched> {
        let names = self.names.lock().unwrap();
        let entry = names.get(name).ok_or(Error::NotFound)?;
        let kind = match self.service {
            Service::ParameterStore => ValueKind::SecureString,
            Service::SecretsManager => ValueKind::SecretString,
        };
        Ok(Fetched {
            bytes: SecretBytes::new(format!("v{}", entry.version).into_bytes()),
            kind,
            version: Some(entry.version.to_string()),
            last_modified: None,
            meta: Metadata::default(),
        })
    }
}

fn name_of(service: Service, i: usize) -> String {
    match service {
        Service::ParameterStore => format!("/app/d{:04}/p{i:05}", i / 2),
        Service::SecretsManager => format!("app/d{:04}/s{i:05}", i / 2),
    }
}

/// One host's view of the account: its own adaptive rate for the service, every call through it.
struct HostProvider {
    account: Arc<Account>,
    rate: Mutex<AdaptiveRate>,
    jitter: Mutex<u64>,
    /// Where in the simulated second this host's clock ticks.
    offset: Duration,
    /// Calls whose next rate slot came after the request deadline (never sent).
    timed_out: Mutex<u64>,
}

impl HostProvider {
    fn new(account: Arc<Account>, seed: u64) -> Self {
        let ceiling = match account.service {
            Service::ParameterStore => DEFAULT_PS_TPS,
            Service::SecretsManager => DEFAULT_SM_TPS,
        };
        let now = account.clock.now();
        let host = HostProvider {
            account,
            rate: Mutex::new(AdaptiveRate::new(ceiling, now)),
            jitter: Mutex::new(seed),
            offset: Duration::ZERO,
            timed_out: Mutex::new(0),
        };
        HostProvider { offset: Duration::from_secs_f64(host.jitter()), ..host }
    }

    /// One request of `action` as the daemon's `Caller` sends it: each attempt takes a rate
    /// slot; a throttled one is tried again after a jittered 0.1 s, 0.2 s, ... (at most 2 s)
    /// until the request deadline.
    fn call(&self, action: &'static str) -> Result<()> {
        let now = self.account.clock.now() + self.offset;
        let mut at = now;
        for attempt in 1..=u32::MAX {
            let patience = DEFAULT_TIMEOUT.saturating_sub(at.saturating_duration_since(now));
            let Some(wait) = self.rate.lock().unwrap().reserve_within(at, patience) else {
                *self.timed_out.lock().unwrap() += 1;
                return Err(Error::Transient(format!("{action}: no request slot before the deadline")));
            };
            at += wait;
            if self.account.admit(action, at) {
                self.rate.lock().unwrap().accepted(at);
                return Ok(());
            }
            let jitter = self.jitter();
            self.rate.lock().unwrap().throttled(at, jitter);
            let delay = Duration::from_millis(100 << (attempt - 1).min(5)).min(Duration::from_secs(2));
            at += delay.mul_f64(0.5 + 0.5 * jitter);
        }
        unreachable!("the deadline ends the attempts")
    }

    fn jitter(&self) -> f64 {
        let mut seed = self.jitter.lock().unwrap();
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Provider for HostProvider {
    fn list(&self, _prefix: &str) -> Result<Vec<Listed>> {
        Err(Error::Service("the simulation reads names, it does not list".into()))
    }

    fn versions(&self, names: &[String]) -> Result<HashMap<String, String>> {
        match self.account.service {
            Service::ParameterStore => {
                for _ in names.chunks(50) {
                    self.call("DescribeParameters")?;
                }
            }
            Service::SecretsManager => {
                for _ in names {
                    self.call("DescribeSecret")?;
                }
            }
        }
        let account = self.account.names.lock().unwrap();
        Ok(names.iter().filter_map(|n| Some((n.clone(), account.get(n)?.version.to_string()))).collect())
    }

    fn fetch(&self, names: &[String]) -> Result<Vec<FetchResult>> {
        let action = match self.account.service {
            Service::ParameterStore => "GetParameters",
            Service::SecretsManager => "BatchGetSecretValue",
        };
        self.call(action)?;
        Ok(names.iter().map(|name| (name.clone(), self.account.fetched(name))).collect())
    }

    fn update(&self, _: &str, _: &Fetched, _: SecretBytes) -> Result<Fetched> {
        Err(Error::Service("read-only simulation".into()))
    }

    fn create(&self, _: &str, _: ValueKind, _: SecretBytes) -> Result<Fetched> {
        Err(Error::Service("read-only simulation".into()))
    }

    fn delete(&self, _: &str) -> Result<()> {
        Err(Error::Service("read-only simulation".into()))
    }

    fn batch_limit(&self) -> usize {
        self.account.service.batch_limit()
    }

    fn call_counts(&self) -> CallCounts {
        CallCounts::new()
    }

    fn call_outcomes(&self) -> OutcomeCounts {
        OutcomeCounts::new()
    }
}

/// One simulated host.
struct Host {
    cache: ServiceCache,
    provider: Arc<HostProvider>,
    names: Vec<String>,
    /// The names (indexes) read at each second of READ_INTERVAL.
    read_slots: Vec<Vec<usize>>,
    /// Second of the first read.
    starts_at: u64,
}

/// What a scenario runs.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    hosts: usize,
    service: Service,
    names: usize,
}

/// What a scenario measured.
#[derive(Debug, Default)]
struct Report {
    steady_calls_per_second: BTreeMap<&'static str, f64>,
    peak_calls_per_second: BTreeMap<&'static str, u64>,
    throttles: BTreeMap<&'static str, u64>,
    /// Throttles in the last TTL of the run.
    steady_throttles: u64,
    /// When every host had read its whole working set at least once.
    cold_start_done: Option<u64>,
    timed_out: u64,
    failed_reads: u64,
    /// Reads that failed after every host had read its working set once.
    failed_after_cold_start: u64,
    reads: u64,
    staleness_p50: Duration,
    staleness_p99: Duration,
    staleness_max: Duration,
    rotation_reach_max: Option<Duration>,
    rotation_reach_p50: Option<Duration>,
}

fn percentile(sorted: &[Duration], share: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0) * share) as usize).copied().unwrap_or_default()
}

fn simulate(scenario: Scenario) -> Report {
    let ttl = CacheSettings::default().policy().ttl;
    let rotate_at = 2 * ttl.as_secs();
    let end = rotate_at + 2 * ttl.as_secs();
    let tick = secretfs::cache::refresh_tick(ttl).as_secs().max(1);
    let clock = Arc::new(FakeClock::default());
    let jobs = Arc::new(QueuedJobs::default());
    let account = Account::new(clock.clone(), scenario.service, scenario.names);
    let all_names: Vec<String> = (0..scenario.names).map(|i| name_of(scenario.service, i)).collect();
    let per_host = match scenario.service {
        Service::ParameterStore => 100.min(scenario.names),
        Service::SecretsManager => (scenario.names / 10).max(2),
    };
    let mut seed = 0x5eed_u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let hosts: Vec<Host> = (0..scenario.hosts)
        .map(|h| {
            let provider = Arc::new(HostProvider::new(account.clone(), h as u64 + 1));
            let runtime = Runtime { clock: clock.clone(), spawner: jobs.clone(), changes: ChangeStream::default() };
            let cache = ServiceCache::with_runtime(
                scenario.service,
                provider.clone(),
                "/".into(),
                CacheSettings::default(),
                runtime,
            );
            // Working set: `per_host` names in pairs (two per directory), from a random start.
            let first = (next() as usize % (scenario.names / 2)) * 2;
            let names = (0..per_host).map(|i| all_names[(first + i) % scenario.names].clone()).collect();
            let mut read_slots = vec![Vec::new(); READ_INTERVAL.as_secs() as usize];
            for i in 0..per_host {
                read_slots[(i * 7) % READ_INTERVAL.as_secs() as usize].push(i);
            }
            Host { cache, provider, names, read_slots, starts_at: next() % COLD_START }
        })
        .collect();
    // 1 % of the names (at least one), one of them held by the first host.
    let offset = all_names.iter().position(|name| *name == hosts[0].names[0]).unwrap_or(0);
    let rotated: Vec<String> =
        (0..(scenario.names / 100).max(1)).map(|i| all_names[(offset + i * 100) % scenario.names].clone()).collect();
    let rotated_set: std::collections::HashSet<&str> = rotated.iter().map(String::as_str).collect();
    let mut pending_reach: usize =
        hosts.iter().map(|h| h.names.iter().filter(|n| rotated_set.contains(n.as_str())).count()).sum();
    let mut reach = Vec::new();
    let mut seen_new: std::collections::HashSet<(usize, String)> = Default::default();
    let mut staleness = Vec::new();
    let mut unread: Vec<std::collections::HashSet<usize>> =
        hosts.iter().map(|h| (0..h.names.len()).collect()).collect();
    let mut hosts_unread = hosts.len();
    let mut cold_start_done = None;
    let mut report = Report::default();
    for second in 0..end {
        if second == rotate_at {
            rotated.iter().for_each(|name| account.rotate(name));
        }
        let now = clock.now();
        for (index, host) in hosts.iter().enumerate() {
            if second < host.starts_at {
                continue;
            }
            let since_start = second - host.starts_at;
            // Each name is read once per READ_INTERVAL at its own second of it (the first read
            // of the working set spreads over one interval).
            let slot = (since_start % READ_INTERVAL.as_secs()) as usize;
            for &i in &host.read_slots[slot] {
                let name = &host.names[i];
                let sibling = host.names[i ^ 1].as_str();
                report.reads += 1;
                match host.cache.value(name, [sibling]) {
                    Ok(value) => {
                        if unread[index].remove(&i) && unread[index].is_empty() {
                            hosts_unread -= 1;
                            if hosts_unread == 0 {
                                cold_start_done = Some(second);
                            }
                        }
                        let version: u64 = value.fetched.version.as_deref().unwrap_or("1").parse().unwrap();
                        let stale = account.staleness(name, version, now);
                        if second >= ttl.as_secs() {
                            staleness.push(stale);
                        }
                        if second >= rotate_at
                            && rotated_set.contains(name.as_str())
                            && version > 1
                            && seen_new.insert((index, name.clone()))
                        {
                            reach.push(Duration::from_secs(second - rotate_at));
                            pending_reach -= 1;
                        }
                    }
                    Err(_) => {
                        report.failed_reads += 1;
                        if cold_start_done.is_some() {
                            report.failed_after_cold_start += 1;
                        }
                    }
                }
            }
            if (second + index as u64) % tick == 0 {
                host.cache.refresh_due();
            }
        }
        jobs.run_all();
        clock.advance(Duration::from_secs(1));
    }
    let calls_by_second = account.calls_by_second.lock().unwrap();
    let steady_from = end - ttl.as_secs();
    for (&(action, second), &count) in calls_by_second.iter() {
        let peak = report.peak_calls_per_second.entry(action).or_default();
        *peak = (*peak).max(count);
        if second >= steady_from {
            *report.steady_calls_per_second.entry(action).or_default() += count as f64 / ttl.as_secs_f64();
        }
    }
    report.throttles = account.throttles.lock().unwrap().clone();
    report.timed_out = hosts.iter().map(|h| *h.provider.timed_out.lock().unwrap()).sum();
    report.steady_throttles = account.throttles_by_second.lock().unwrap().range(steady_from..).map(|(_, n)| n).sum();
    report.cold_start_done = cold_start_done;
    staleness.sort_unstable();
    report.staleness_p50 = percentile(&staleness, 0.5);
    report.staleness_p99 = percentile(&staleness, 0.99);
    report.staleness_max = staleness.last().copied().unwrap_or_default();
    reach.sort_unstable();
    if pending_reach == 0 && !reach.is_empty() {
        report.rotation_reach_max = reach.last().copied();
        report.rotation_reach_p50 = Some(percentile(&reach, 0.5));
    }
    report
}

fn print(scenario: Scenario, report: &Report) {
    let calls: Vec<String> =
        report.steady_calls_per_second.iter().map(|(action, rate)| format!("{action} {rate:.2}/s")).collect();
    let peaks: Vec<String> =
        report.peak_calls_per_second.iter().map(|(action, peak)| format!("{action} {peak}")).collect();
    println!(
        "FLEET {} hosts x {} {}: steady {}; peak/s {}; throttles {:?} ({} in the last TTL); no slot before the deadline {}; failed reads {} of {} ({} after the cold start); every host read its working set by {}; staleness p50 {:?} p99 {:?} max {:?}; 1 % rotation reached every host in {}",
        scenario.hosts,
        scenario.names,
        scenario.service.dir_name(),
        calls.join(", "),
        peaks.join(", "),
        report.throttles,
        report.steady_throttles,
        report.timed_out,
        report.failed_reads,
        report.reads,
        report.failed_after_cold_start,
        report.cold_start_done.map_or("never (within the run)".to_string(), |s| format!("{s} s")),
        report.staleness_p50,
        report.staleness_p99,
        report.staleness_max,
        report.rotation_reach_max.map_or("never (within the run)".to_string(), |d| format!("{d:?} (p50 {:?})", report.rotation_reach_p50.unwrap_or_default())),
    );
}

#[test]
fn a_small_fleet_stays_inside_the_quotas_and_sees_a_rotation_within_the_ttl() {
    let ttl = CacheSettings::default().policy().ttl;
    for scenario in [
        Scenario { hosts: 10, service: Service::ParameterStore, names: 1000 },
        Scenario { hosts: 10, service: Service::SecretsManager, names: 100 },
    ] {
        let report = simulate(scenario);
        print(scenario, &report);
        assert_eq!(report.steady_throttles, 0, "{scenario:?}: throttled in the steady state");
        assert!(report.cold_start_done.is_some_and(|s| s <= 2 * COLD_START), "{scenario:?}: slow cold start");
        assert_eq!(report.failed_reads, 0, "{scenario:?}: the cold start's throttles are retried");
        let reach = report.rotation_reach_max.expect("the rotation reached every host");
        assert!(reach <= ttl + READ_INTERVAL, "{scenario:?}: rotation took {reach:?}");
        assert!(report.staleness_max <= ttl + READ_INTERVAL, "{scenario:?}: {:?}", report.staleness_max);
        // Revalidation by metadata, in full calls: 100 names a host cost a few calls a TTL.
        if scenario.service == Service::ParameterStore {
            let describe = report.steady_calls_per_second["DescribeParameters"] * ttl.as_secs_f64();
            assert!(describe <= 10.0 * 4.0, "{describe} DescribeParameters per TTL for 10 hosts");
        }
    }
}

#[test]
#[ignore = "the full fleet table takes minutes: cargo test --release --test fleet -- --ignored --nocapture"]
fn fleet_table() {
    let only: Option<usize> = std::env::var("FLEET_HOSTS").ok().and_then(|n| n.parse().ok());
    for hosts in [1, 100, 1000].into_iter().filter(|h| only.is_none_or(|only| only == *h)) {
        for names in [1000, 10_000] {
            let scenario = Scenario { hosts, service: Service::ParameterStore, names };
            print(scenario, &simulate(scenario));
        }
        for names in [100, 1000] {
            let scenario = Scenario { hosts, service: Service::SecretsManager, names };
            print(scenario, &simulate(scenario));
        }
    }
}
