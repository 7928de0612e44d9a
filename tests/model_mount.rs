//! The reference model through a real mount against moto: a few hundred random steps (reads,
//! writes, refreshes through the control file, out-of-band puts and deletions through the SDK),
//! each bounded in time (a step that hangs aborts the FUSE connection and fails the test), and
//! each checked against the rules: a value read was stored within the last two TTLs plus the
//! negative-cache period (and some slack for the real clock), a write is read back, and a
//! refreshed path shows what is stored now. The seed is printed; `MODEL_SEED=N` replays one.

#[path = "common/bounded.rs"]
mod bounded;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;
#[path = "common/rng.rs"]
mod rng;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use bounded::{abort_file, bounded, Bounded};
use moto::{Aws, Moto};
use mount::Mounted;
use rng::Rng;

const NAMES: [&str; 3] = ["/m/a", "/m/b", "/m/c"];
const STEPS: usize = 300;
/// The mount's `--cache-ttl`.
const TTL: Duration = Duration::from_secs(2);
/// What the filesystem may lag: two TTLs, the negative-cache period (the TTL here) and slack
/// for a loaded machine's clock.
const WINDOW: Duration = Duration::from_secs(2 * TTL.as_secs() + TTL.as_secs() + 3);
/// The longest a step may take: `--timeout 1` plus a margin, and slack.
const STEP_BOUND: Duration = Duration::from_secs(10);

/// The service's history of each name: (when, value or absent).
struct Model(BTreeMap<&'static str, Vec<(Instant, Option<String>)>>);

impl Model {
    fn record(&mut self, name: &'static str, value: Option<String>) {
        self.0.get_mut(name).unwrap().push((Instant::now(), value));
    }

    fn current(&self, name: &str) -> Option<String> {
        self.0[name].last().and_then(|(_, value)| value.clone())
    }

    /// The states `name` held at any instant of the last [`WINDOW`] (up to `until`).
    fn held_within(&self, name: &str) -> Vec<Option<String>> {
        let since = Instant::now().checked_sub(WINDOW).unwrap_or_else(Instant::now);
        let history = &self.0[name];
        let first = history.iter().rposition(|(at, _)| *at < since).unwrap_or(0);
        history[first..].iter().map(|(_, value)| value.clone()).collect()
    }
}

#[test]
fn a_real_mount_shows_what_the_freshness_rules_allow_and_never_hangs() {
    let mut rng = Rng::seeded_from("MODEL_SEED");
    let seed = rng.state();
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for name in NAMES {
        aws.put_parameter(name, "initial", ParameterType::String);
    }
    let mut model =
        Model(NAMES.iter().map(|name| (*name, vec![(Instant::now(), Some("initial".to_string()))])).collect());
    let ttl = TTL.as_secs().to_string();
    let args = ["--cache-ttl", &ttl, "--timeout", "1", "--retries", "1", "--file-mode", "0600", "--allow-delete"];
    let m = Mounted::start(&args, &moto.env());
    let abort = abort_file(&m.dir);
    let mut slowest = Duration::ZERO;
    for step in 0..STEPS {
        let name = NAMES[rng.below(NAMES.len() as u64) as usize];
        let path = m.path(&format!("ps{name}"));
        let value = format!("v{}", rng.below(1000));
        let at = format!("seed {seed}, step {step}");
        let kind = rng.below(10);
        let (outcome, took) = match kind {
            0..=4 => {
                let target = path.clone();
                match bounded(&abort, STEP_BOUND, move || std::fs::read_to_string(target)) {
                    Bounded::Done(read, took) => {
                        let held = model.held_within(name);
                        match &read {
                            Ok(text) => assert!(
                                held.contains(&Some(text.clone())),
                                "{at}: read {text:?} of {name}; held {held:?}"
                            ),
                            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                                assert!(held.contains(&None), "{at}: ENOENT for {name}; held {held:?}")
                            }
                            Err(err) => panic!("{at}: read of {name} failed: {err}"),
                        }
                        (read.map(drop), took)
                    }
                    Bounded::Hung => panic!("{at}: a read hung"),
                }
            }
            5 | 6 => {
                let (target, written) = (path.clone(), value.clone());
                // fsync: the commit's outcome (`std::fs::write` ignores what close says).
                let write = move || -> std::io::Result<()> {
                    let mut file = std::fs::File::create(target)?;
                    std::io::Write::write_all(&mut file, written.as_bytes())?;
                    file.sync_all()
                };
                match bounded(&abort, STEP_BOUND, write) {
                    Bounded::Done(Ok(()), took) => {
                        model.record(name, Some(value.clone()));
                        assert_eq!(std::fs::read_to_string(&path).unwrap(), value, "{at}: a write was not read back");
                        (Ok(()), took)
                    }
                    // Writing a name deleted out of band: refused, or created again.
                    Bounded::Done(Err(err), took) => {
                        assert!(model.held_within(name).contains(&None), "{at}: write of {name} failed: {err}");
                        (Err(err), took)
                    }
                    Bounded::Hung => panic!("{at}: a write hung"),
                }
            }
            7 => {
                let refresh = m.path(".secretfs/refresh");
                let line = format!("ps{name}\n");
                let started = Instant::now();
                match bounded(&abort, STEP_BOUND, move || std::fs::write(refresh, line)) {
                    Bounded::Done(Ok(()), took) => {
                        let now = std::fs::read_to_string(&path).ok();
                        assert_eq!(now, model.current(name), "{at}: a refreshed path shows what is stored");
                        (Ok(()), took)
                    }
                    Bounded::Done(Err(err), took) => {
                        assert!(model.current(name).is_none(), "{at}: refresh of {name} failed: {err}");
                        (Err(err), took.max(started.elapsed()))
                    }
                    Bounded::Hung => panic!("{at}: a refresh hung"),
                }
            }
            8 => {
                aws.put_parameter(name, &value, ParameterType::String);
                model.record(name, Some(value));
                (Ok(()), Duration::ZERO)
            }
            _ => {
                if model.current(name).is_some() {
                    aws.delete_parameter(name);
                    model.record(name, None);
                }
                (Ok(()), Duration::ZERO)
            }
        };
        let _ = outcome;
        slowest = slowest.max(took);
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(400)));
        }
    }
    eprintln!("{STEPS} steps; slowest step {slowest:?}");
}
