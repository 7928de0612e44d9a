//! On-change commands (`[[on-change]]` in the config file): a command run once per batch of
//! changes to the paths its glob matches, after a debounce (a certificate and its key rotating
//! together run it once), with the changed mount paths in its environment and never a value.
//! Commands are started by the launcher process (`super::launcher`) and waited for on threads
//! of their own there: a slow or failing one never blocks serving; a failure is logged once and
//! not retried.

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::cache::changes::{Change, ChangeKind, ChangeStream};
use crate::fs::ownership::matches_glob;
use crate::inodes::NodePath;
use crate::provider::Service;

use super::launcher::Launcher;

/// Default wait after the last change of a batch before its command runs.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(1);

/// Environment variable holding the changed mount paths, one per line.
pub const CHANGED_PATHS_VAR: &str = "SECRETFS_CHANGED_PATHS";
/// Environment variable holding the mount point.
pub const MOUNTPOINT_VAR: &str = "SECRETFS_MOUNTPOINT";

/// One `[[on-change]]` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnChangeRule {
    /// A glob on mount paths (`sm/prod/tls/**`), as in owner rules. A value shown as a
    /// directory (a JSON secret) matches as its path and as that path followed by `/`.
    pub pattern: String,
    /// The program and its arguments (no shell, unless the program is one).
    pub command: Vec<String>,
    /// How long to wait after the last matching change before running.
    pub debounce: Duration,
}

impl OnChangeRule {
    /// Whether a change of the value at mount path `path` concerns this rule.
    pub fn matches(&self, path: &str) -> bool {
        matches_glob(&self.pattern, path) || matches_glob(&self.pattern, &format!("{path}/"))
    }
}

/// A batch collecting for one rule.
struct Batch {
    paths: BTreeSet<String>,
    due: Instant,
}

/// Start the thread that has `launcher` run `rules` for the changes on `changes` (`prefixes`
/// are the names each service directory shows; `dependents` pairs a value's mount path with
/// each view that reads it, so a change of the value is also one of the view).
pub fn start(
    rules: Vec<OnChangeRule>,
    changes: &ChangeStream,
    launcher: Option<Launcher>,
    prefixes: HashMap<Service, String>,
    dependents: Vec<(String, String)>,
) -> std::io::Result<()> {
    // The daemon forks a launcher only when there are rules.
    let Some(mut launcher) = launcher else { return Ok(()) };
    let (sender, receiver) = mpsc::channel();
    changes.subscribe(sender, |change| change);
    std::thread::Builder::new()
        .name("secretfs-on-change".into())
        .spawn(move || run(&rules, &receiver, &mut launcher, &prefixes, &dependents))
        .map(drop)
}

fn run(
    rules: &[OnChangeRule],
    changes: &Receiver<Change>,
    launcher: &mut Launcher,
    prefixes: &HashMap<Service, String>,
    dependents: &[(String, String)],
) {
    let mut batches: Vec<Option<Batch>> = rules.iter().map(|_| None).collect();
    loop {
        let next_due = batches.iter().flatten().map(|b| b.due).min();
        let received = match next_due {
            Some(due) => changes.recv_timeout(due.saturating_duration_since(Instant::now())),
            None => changes.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(change) if change.kind == ChangeKind::Listed => {}
            Ok(change) => {
                let Some(path) = mount_path(&change, prefixes) else { continue };
                let views = dependents.iter().filter(|(source, _)| *source == path).map(|(_, view)| view.clone());
                let paths: Vec<String> = std::iter::once(path.clone()).chain(views).collect();
                for (rule, batch) in rules.iter().zip(batches.iter_mut()) {
                    for path in paths.iter().filter(|path| rule.matches(path)) {
                        let batch = batch.get_or_insert_with(|| Batch { paths: BTreeSet::new(), due: Instant::now() });
                        batch.paths.insert(path.clone());
                        batch.due = Instant::now() + rule.debounce;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        for (index, batch) in batches.iter_mut().enumerate() {
            if batch.as_ref().is_some_and(|b| b.due <= now) {
                if let Some(batch) = batch.take() {
                    let paths: Vec<String> = batch.paths.into_iter().collect();
                    if let Err(err) = launcher.run(index, &paths) {
                        tracing::warn!("on-change launcher gone ({err}); commands no longer run");
                        return;
                    }
                }
            }
        }
    }
}

/// The mount path (`sm/prod/tls`) of the changed name.
fn mount_path(change: &Change, prefixes: &HashMap<Service, String>) -> Option<String> {
    mount_path_of(change.service, prefixes.get(&change.service)?, &change.name)
}

/// The mount path of `name` of `service` shown below `prefix`.
fn mount_path_of(service: Service, prefix: &str, name: &str) -> Option<String> {
    NodePath::of_name(service, prefix, name).map(|path| path.mount_path())
}

/// Whether one of `rules` watches `name` of `service` shown below `prefix`, directly or
/// through a view that reads it (`dependents`, as for [`start`]).
pub fn watched(
    rules: &[OnChangeRule],
    dependents: &[(String, String)],
    service: Service,
    prefix: &str,
    name: &str,
) -> bool {
    let Some(path) = mount_path_of(service, prefix, name) else { return false };
    let views = dependents.iter().filter(|(source, _)| *source == path).map(|(_, view)| view.as_str());
    std::iter::once(path.as_str()).chain(views).any(|path| rules.iter().any(|rule| rule.matches(path)))
}

/// The mount path of `name` of `service` as a mount with these `prefixes` shows it.
pub fn shown_path(prefixes: &HashMap<Service, String>, service: Service, name: &str) -> Option<String> {
    mount_path_of(service, prefixes.get(&service)?, name)
}

/// Start `rule`'s command for the changed mount `paths` (in the launcher), wait for it on a
/// thread of its own, and log how it ended.
pub fn launch(rule: &OnChangeRule, listed: Vec<String>, mountpoint: &std::path::Path) {
    let Some((program, args)) = rule.command.split_first() else { return };
    let shown = rule.command.join(" ");
    tracing::info!("running on-change command `{shown}` for {}", listed.join(", "));
    let spawned = Command::new(program)
        .args(args)
        .env(CHANGED_PATHS_VAR, listed.join("\n"))
        .env(MOUNTPOINT_VAR, mountpoint)
        .stdin(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => return tracing::warn!("on-change command `{shown}` could not start: {err}"),
    };
    let waiter = std::thread::Builder::new().name("secretfs-on-change-wait".into()).spawn(move || match child.wait() {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::warn!("on-change command `{shown}` failed ({status}); not retried"),
        Err(err) => tracing::warn!("on-change command `{shown}`: {err}"),
    });
    if let Err(err) = waiter {
        tracing::warn!("cannot wait for an on-change command: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_matches_a_value_and_what_its_directory_holds() {
        let rule =
            OnChangeRule { pattern: "sm/prod/tls/**".into(), command: vec!["true".into()], debounce: DEFAULT_DEBOUNCE };
        assert!(rule.matches("sm/prod/tls"), "the JSON secret shown as the directory");
        assert!(rule.matches("sm/prod/tls/cert"));
        assert!(!rule.matches("sm/prod/tlsx"));
        let change = Change {
            service: Service::ParameterStore,
            name: "/prod/db/root".into(),
            kind: ChangeKind::Updated,
            origin: crate::cache::changes::Origin::Service,
        };
        let prefixes = HashMap::from([(Service::ParameterStore, "/".to_string())]);
        assert_eq!(mount_path(&change, &prefixes).as_deref(), Some("ps/prod/db/root"));
        let prefixes = HashMap::from([(Service::ParameterStore, "/prod/".to_string())]);
        assert_eq!(mount_path(&change, &prefixes).as_deref(), Some("ps/db/root"));
    }
}
