//! The composition root: turns plain configuration into provider → cache → core → FUSE
//! adapter, mounts it, and runs until a signal or an unmount ends the session.

pub mod daemon;
pub mod direct;
pub mod hardening;
pub mod keep_warm;
pub mod launcher;
pub mod mountpoint;
pub mod on_change;
pub mod refresh;
pub mod syscall_filter;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::changes::ChangeStream;
use crate::cache::clock::SystemClock;
use crate::cache::spawn::BlockingPool;
use crate::cache::{CacheSettings, Runtime, ServiceCache};
use crate::error::{Error, Result};
use crate::fs::{FsConfig, SecretFs};
use crate::fuse_adapter::{notifier, FuseAdapter};
use crate::provider::aws::call::Caller;
use crate::provider::aws::parameter_store::ParameterStore;
use crate::provider::aws::secrets_manager::SecretsManager;
use crate::provider::aws::{load_config, secrets_manager_client, ssm_client, AwsSettings, Bridge};
use crate::provider::{local, Provider, Service};

/// Threads reading kernel requests: one per CPU, at least 2 and at most 8. Requests that may
/// wait on AWS are handed to the runtime's blocking pool, so these threads only ever use a CPU,
/// and more of them than CPUs only adds wake-ups (measured on 2 CPUs: a warm read-write cycle
/// took 12–13.5 µs with 2 threads, 22 µs with 8, 25–27 µs with 4).
fn fuse_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |cpus| cpus.get().clamp(2, 8))
}
/// Most threads the blocking pool runs at once (requests waiting on AWS, background refreshes).
pub const BLOCKING_THREADS: usize = 256;
/// How often the main thread checks whether the session ended (external unmount).
const SESSION_POLL: Duration = Duration::from_millis(20);
/// How long a stopping daemon lets requests in progress (commits) finish before detaching.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a stopping daemon waits for the provider calls it ended to return.
const BRIDGE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Where values come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// AWS (or an AWS-compatible endpoint).
    Aws(Box<AwsSettings>),
    /// A local store file.
    Local(PathBuf),
}

/// Everything `secretfs mount` needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountConfig {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Stay attached to the terminal.
    pub foreground: bool,
    /// AWS or a local store.
    pub source: Source,
    /// Cache TTL and size.
    pub cache: CacheSettings,
    /// Presentation of nodes.
    pub fs: FsConfig,
    /// Let users other than the owner in (the kernel still checks mode bits).
    pub allow_other: bool,
    /// Parameter Store prefix shown as `ps/`, normalised to `/` or `/a/b/`.
    pub ps_prefix: String,
    /// Secrets Manager prefix shown as `sm/`, normalised to `` or `a/b/`.
    pub sm_prefix: String,
    /// The services shown (`--services`).
    pub services: Vec<Service>,
    /// Lock the daemon's memory so values never reach swap.
    pub lock_memory: bool,
    /// Confine a root daemon to its system-call allow-list once mounted (`--no-seccomp` unsets).
    pub seccomp: bool,
    /// Commands run when values they watch change.
    pub on_change: Vec<on_change::OnChangeRule>,
    /// The encrypted warm-restart cache: its directory and key file.
    pub warm_cache: Option<WarmCacheFiles>,
}

/// `--cache-dir` and `--cache-key-file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmCacheFiles {
    /// Where the files go.
    pub dir: PathBuf,
    /// The file holding the 32-byte key.
    pub key_file: PathBuf,
}

/// A mounted filesystem and what stopping it needs.
struct Running {
    session: fuser::BackgroundSession,
    /// The device number of this daemon's mount, so it only ever unmounts its own.
    device: u64,
    fs: Arc<SecretFs>,
    caches: Vec<ServiceCache>,
    busy: Arc<std::sync::atomic::AtomicUsize>,
    requests: Arc<crate::request_stats::RequestStats>,
    keep_warm: Option<keep_warm::KeepWarm>,
    /// The providers' way onto the runtime, closed last.
    bridge: Bridge,
}

/// Normalise a Parameter Store prefix: `prod` and `/prod/` both become `/prod/`.
pub fn normalize_ps_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        format!("/{trimmed}/")
    }
}

/// Normalise a Secrets Manager prefix: `prod` and `prod/` both become `prod/`; empty stays empty.
pub fn normalize_sm_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

/// Mount and serve until unmounted or signalled. Without `foreground`, the calling process
/// exits once the mount is ready (or failed) and a child keeps serving.
pub fn mount(mut config: MountConfig) -> Result<()> {
    hardening::one_allocator_arena();
    hardening::harden(false)?;
    config.mountpoint = mountpoint::check(&config.mountpoint)?;
    if let Source::Local(path) = &config.source {
        let absolute = std::fs::canonicalize(path)
            .map_err(|e| Error::Config(format!("cannot read local store {}: {e}", path.display())))?;
        config.source = Source::Local(absolute);
    }
    if let Some(files) = &mut config.warm_cache {
        // The daemon leaves the working directory; the files are named from anywhere.
        for path in [&mut files.dir, &mut files.key_file] {
            *path = std::path::absolute(&*path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        }
    }
    let mut reporter = if config.foreground { daemon::Reporter::foreground() } else { daemon::fork_and_wait()? };
    let local_store = matches!(config.source, Source::Local(_));
    let hardened = hardening::harden(config.lock_memory)
        .and_then(|()| hardening::drop_privileges(config.lock_memory, local_store));
    if let Err(err) = hardened {
        reporter.report(&Err(err.clone()));
        return Err(err);
    }
    let launcher = match config.on_change.is_empty() {
        true => None,
        false => match launcher::Launcher::fork(&config.on_change, &config.mountpoint, &mut reporter) {
            Ok(launcher) => Some(launcher),
            Err(err) => {
                reporter.report(&Err(err.clone()));
                return Err(err);
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .thread_name("secretfs-aws")
        .build()
        .map_err(|e| Error::Mount(format!("cannot start the async runtime: {e}")))?;
    // Before mounting: a signal sent once the mount is visible (a `systemctl reload` right after
    // start) must not take its default action, which ends the process and leaves a dead mount.
    let signals = {
        let _runtime = runtime.enter();
        signal_streams()
    };
    let running = match start(&config, runtime.handle(), launcher) {
        Ok(running) => running,
        Err(err) => {
            reporter.report(&Err(err.clone()));
            return Err(err);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if config.seccomp && unsafe { libc::geteuid() } == 0 {
        if let Err(err) = syscall_filter::confine() {
            stop(running, &config.mountpoint);
            reporter.report(&Err(err.clone()));
            return Err(err);
        }
    }
    reporter.report(&Ok(()));
    tracing::info!("mounted at {}", config.mountpoint.display());
    if crate::logging::keeps_stderr() {
        tracing::info!(
            "no syslog socket ({}): logging to the stderr secretfs was started with",
            crate::logging::SYSLOG_SOCKET
        );
    }
    notify_ready(&config);
    runtime.block_on(wait_for_end(&running, signals));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    stop(running, &config.mountpoint);
    Ok(())
}

/// The one-line reason a mount failed; a permission problem names what a user needs.
fn mount_failure(mountpoint: &std::path::Path, err: &std::io::Error) -> Error {
    let shown = mountpoint.display();
    match err.kind() {
        std::io::ErrorKind::PermissionDenied => Error::Mount(format!(
            "cannot mount {shown}: permission denied ({err}); as a user you need read-write access to /dev/fuse and `fusermount3` from the fuse3 package (or run as root)"
        )),
        _ => Error::Mount(format!("cannot mount {shown}: {err}")),
    }
}

/// Tell systemd (`Type=notify`) the mount is ready, once a stat of the mount point has been
/// answered by this daemon: dependent units never start against an empty directory.
fn notify_ready(config: &MountConfig) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(err) = std::fs::metadata(&config.mountpoint) {
        tracing::warn!("the new mount does not answer: {err}");
    }
    let shown: Vec<String> = config.services.iter().map(|s| format!("{}/", s.dir_name())).collect();
    let status = format!("serving {} at {}", shown.join(" and "), config.mountpoint.display());
    let sent = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
    if let Err(err) = sent {
        tracing::warn!("cannot notify systemd: {err}");
    }
}

/// Stop serving: unmount, then end the provider calls still running in the background
/// (refreshes, listings) before the runtime goes.
fn stop(running: Running, mountpoint: &std::path::Path) {
    let bridge = running.bridge.clone();
    release_mount(running, mountpoint);
    bridge.close(BRIDGE_CLOSE_GRACE);
}

/// Write the warm-restart files a last time, let requests in progress (commits) finish for up
/// to [`STOP_GRACE`], name the files whose writes were never stored, and unmount; if the mount
/// is busy (files still open), detach it lazily so the path is free at once and holders get an
/// error on their next call.
fn release_mount(running: Running, mountpoint: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    if let Some(keep_warm) = &running.keep_warm {
        keep_warm.stop();
    }
    let ours = std::fs::metadata(mountpoint).is_ok_and(|m| m.dev() == running.device);
    if running.session.guard.is_finished() || !ours {
        // Unmounted from outside (and perhaps mounted again by someone else): fuser would
        // unmount the path when the session is dropped, whatever is mounted there now, so the
        // session is left as it is; the process is about to exit, which closes its device.
        tracing::info!("{} was unmounted; stopping", mountpoint.display());
        std::mem::forget(running.session);
        return;
    }
    tracing::info!("unmounting {}", mountpoint.display());
    let grace_ends = std::time::Instant::now() + STOP_GRACE;
    while running.busy.load(std::sync::atomic::Ordering::SeqCst) > 0 && std::time::Instant::now() < grace_ends {
        std::thread::sleep(Duration::from_millis(20));
    }
    for path in running.fs.unsaved_writes() {
        tracing::warn!("{path}: written but never closed, so not stored");
    }
    drop(running.caches);
    if let Err(err) = running.session.umount_and_join() {
        tracing::debug!("unmount: {err}");
        if let Err(err) = mountpoint::unmount_or_detach(mountpoint, true) {
            tracing::error!("{err}");
        }
    }
}

/// Build the layers and mount them. Nothing is listed: the credentials are checked once
/// (STS, unless switched off) and directories are listed when first visited.
fn start(
    config: &MountConfig,
    handle: &tokio::runtime::Handle,
    launcher: Option<launcher::Launcher>,
) -> Result<Running> {
    let bridge = Bridge::new(handle.clone());
    let (parameters, secrets) = match (providers(&config.source, &bridge), &config.source) {
        // With a warm cache, AWS being unreachable at start is the case it is for: mount, serve
        // what it kept, and let the reads find out when AWS answers again.
        (Err(Error::AwsAccess(reason)), Source::Aws(settings)) if config.warm_cache.is_some() => {
            tracing::warn!("{reason}; mounting anyway to serve the warm cache");
            let unchecked = Source::Aws(Box::new(AwsSettings { verify_credentials: false, ..(**settings).clone() }));
            providers(&unchecked, &bridge)?
        }
        (providers, _) => providers?,
    };
    let changes = ChangeStream::default();
    let runtime = Runtime {
        clock: Arc::new(SystemClock),
        spawner: Arc::new(BlockingPool(handle.clone())),
        changes: changes.clone(),
    };
    let prefixes: std::collections::HashMap<Service, String> =
        [(Service::ParameterStore, config.ps_prefix.clone()), (Service::SecretsManager, config.sm_prefix.clone())]
            .into_iter()
            .filter(|(service, _)| config.services.contains(service))
            .collect();
    let dependents =
        crate::views::dependents(&config.fs.views, |service, name| on_change::shown_path(&prefixes, service, name));
    let mut services = Vec::new();
    for (service, provider, prefix) in [
        (Service::ParameterStore, parameters, &config.ps_prefix),
        (Service::SecretsManager, secrets, &config.sm_prefix),
    ] {
        if config.services.contains(&service) {
            let cache = ServiceCache::with_runtime(service, provider, prefix.clone(), config.cache, runtime.clone());
            if !config.on_change.is_empty() {
                let (rules, dependents, prefix) = (config.on_change.clone(), dependents.clone(), prefix.clone());
                let watched = move |name: &str| on_change::watched(&rules, &dependents, service, &prefix, name);
                cache.keep_refreshed(Box::new(watched));
            }
            let ttls: Vec<Duration> = config.fs.rules.iter().filter_map(|rule| rule.ttl).collect();
            if let Some(shortest) = ttls.iter().min() {
                let (rules, prefix) = (config.fs.rules.clone(), prefix.clone());
                let ttl_of = move |name: &str| {
                    let path = crate::inodes::NodePath::of_name(service, &prefix, name)?.mount_path();
                    crate::fs::ownership::rule_for(&rules, &path)?.ttl
                };
                cache.set_ttl_rules(Box::new(ttl_of), *shortest);
            }
            cache.start_refresher();
            services.push((service, cache));
        }
    }
    let caches: Vec<ServiceCache> = services.iter().map(|(_, cache)| cache.clone()).collect();
    let keep_warm = match &config.warm_cache {
        Some(files) => {
            let warm = Arc::new(crate::warm_cache::WarmCache::open(&files.dir, &files.key_file)?);
            Some(keep_warm::KeepWarm::restore(warm, caches.clone()))
        }
        None => None,
    };
    on_change::start(config.on_change.clone(), &changes, launcher, prefixes, dependents)
        .map_err(|e| Error::Mount(format!("cannot start the on-change thread: {e}")))?;
    let fs = Arc::new(SecretFs::new(config.fs.clone(), services));
    // Type `fuse.secretfs` (the kernel's own subtype option) and the source as an fstab line
    // names it, so mount(8), findmnt and umount -t see what the user wrote.
    let mut options = vec![
        fuser::MountOption::FSName(source_name(&config.source)),
        fuser::MountOption::CUSTOM("subtype=secretfs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoExec,
    ];
    if config.fs.read_only {
        options.push(fuser::MountOption::RO);
    }
    let mut fuse_config = fuser::Config::default();
    fuse_config.mount_options = options;
    fuse_config.n_threads = Some(fuse_threads());
    if config.allow_other {
        fuse_config.acl = fuser::SessionACL::All;
    }
    let (notices, queue) = notifier::queue(&changes);
    let adapter = FuseAdapter::new(fs.clone(), notices, Some(handle.clone()), config.cache.patience);
    let busy = adapter.busy();
    let requests = fs.request_stats();
    let session = fuser::spawn_mount(adapter, &config.mountpoint, &fuse_config)
        .map_err(|e| mount_failure(&config.mountpoint, &e))?;
    queue
        .start(fs.clone(), session.notifier())
        .map_err(|e| Error::Mount(format!("cannot start the kernel notifier thread: {e}")))?;
    let device = std::os::unix::fs::MetadataExt::dev(
        &std::fs::metadata(&config.mountpoint).map_err(|e| mount_failure(&config.mountpoint, &e))?,
    );
    if let Some(keep_warm) = &keep_warm {
        keep_warm.start().map_err(|e| Error::Mount(format!("cannot start the warm cache writer: {e}")))?;
    }
    Ok(Running { session, device, fs, caches, busy, requests, keep_warm, bridge })
}

/// The mount's source as fstab writes it: `aws`, or `local:PATH`.
pub fn source_name(source: &Source) -> String {
    match source {
        Source::Aws(_) => "aws".to_string(),
        Source::Local(path) => format!("local:{}", path.display()),
    }
}

/// The Parameter Store and Secrets Manager providers of `source`.
fn providers(source: &Source, bridge: &Bridge) -> Result<(Arc<dyn Provider>, Arc<dyn Provider>)> {
    match source {
        Source::Aws(settings) => {
            let config = load_config(bridge, settings)?;
            let (sdk, credentials) = (&config.sdk, &config.credentials);
            let (ps_caller, sm_caller) = (
                Caller::new(settings.ps_max_tps, settings.timeout, settings.attempts).renewing(credentials.clone()),
                Caller::new(settings.sm_max_tps, settings.timeout, settings.attempts).renewing(credentials.clone()),
            );
            let ps_options = settings.ps_options.clone();
            let stage = settings.version_stage.clone();
            Ok((
                Arc::new(ParameterStore::with_options(ssm_client(sdk), bridge.clone(), ps_caller, ps_options)),
                Arc::new(SecretsManager::with_stage(secrets_manager_client(sdk), bridge.clone(), sm_caller, stage)),
            ))
        }
        Source::Local(path) => {
            let (parameters, secrets) = local::load(path)?;
            Ok((Arc::new(parameters), Arc::new(secrets)))
        }
    }
}

/// The daemon's handlers of SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2, in that order;
/// signals that arrive before they are read wait for [`wait_for_end`]. Needs the runtime's
/// context.
fn signal_streams() -> std::io::Result<Vec<tokio::signal::unix::Signal>> {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ];
    kinds.into_iter().map(signal).collect()
}

/// Serve until SIGINT or SIGTERM, or until the mount goes away. SIGHUP refreshes every cached
/// value and listing; SIGUSR1 logs one line of counts (inodes, handles, cache entries); SIGUSR2
/// is ignored (logged).
async fn wait_for_end(running: &Running, streams: std::io::Result<Vec<tokio::signal::unix::Signal>>) {
    let Ok(mut streams) = streams else {
        tracing::error!("cannot install signal handlers; unmount with `secretfs unmount`");
        while !running.session.guard.is_finished() {
            tokio::time::sleep(SESSION_POLL).await;
        }
        return;
    };
    let [interrupt, terminate, hangup, user1, user2] = &mut streams[..] else { return };
    let mut poll = tokio::time::interval(SESSION_POLL);
    loop {
        // In this order: a signal sent before the stop is handled before it.
        tokio::select! {
            biased;
            _ = hangup.recv() => running.caches.iter().for_each(ServiceCache::refresh_all),
            _ = user1.recv() => {
                tracing::info!("status: {}; requests: {}", running.fs.status_line(), running.requests.summary())
            }
            _ = user2.recv() => tracing::info!("SIGUSR2 ignored"),
            _ = interrupt.recv() => return,
            _ = terminate.recv() => return,
            _ = poll.tick() => if running.session.guard.is_finished() { return },
        }
    }
}

/// `secretfs unmount [--lazy] MOUNTPOINT`: a busy mount (files open) is detached lazily with
/// `lazy`, and otherwise named busy. A dead mount (its daemon killed) is cleared. Returns once
/// the mount's daemon has exited (or says why not within a bound).
pub fn unmount(path: &std::path::Path, lazy: bool) -> Result<()> {
    mountpoint::unmount_and_wait(path, lazy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(normalize_ps_prefix("/"), "/");
        assert_eq!(normalize_ps_prefix(""), "/");
        assert_eq!(normalize_ps_prefix("prod"), "/prod/");
        assert_eq!(normalize_ps_prefix("/prod/db/"), "/prod/db/");
        assert_eq!(normalize_sm_prefix(""), "");
        assert_eq!(normalize_sm_prefix("prod"), "prod/");
        assert_eq!(normalize_sm_prefix("prod/"), "prod/");
    }
}
