//! The composition root: turns plain configuration into provider → cache → core → FUSE
//! adapter, mounts it, and runs until a signal or an unmount ends the session.

pub mod daemon;
pub mod mountpoint;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::clock::SystemClock;
use crate::cache::spawn::BlockingPool;
use crate::cache::{CacheSettings, Runtime, ServiceCache};
use crate::error::{Error, Result};
use crate::fs::{FsConfig, SecretFs};
use crate::fuse_adapter::FuseAdapter;
use crate::provider::aws::call::Caller;
use crate::provider::aws::parameter_store::ParameterStore;
use crate::provider::aws::secrets_manager::SecretsManager;
use crate::provider::aws::{load_config, AwsSettings, Bridge};
use crate::provider::{local, Provider, Service};

/// Threads reading kernel requests. Requests that may wait on AWS are handed to the runtime's
/// blocking pool, so these threads stay free for cached reads.
pub const FUSE_THREADS: usize = 8;
/// Most threads the blocking pool runs at once (requests waiting on AWS, background refreshes).
pub const BLOCKING_THREADS: usize = 256;
/// How often the main thread checks whether the session ended (external unmount).
const SESSION_POLL: Duration = Duration::from_millis(200);

/// Where values come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// AWS (or an AWS-compatible endpoint).
    Aws(AwsSettings),
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
    config.mountpoint = mountpoint::check(&config.mountpoint)?;
    if let Source::Local(path) = &config.source {
        let absolute = std::fs::canonicalize(path)
            .map_err(|e| Error::Config(format!("cannot read local store {}: {e}", path.display())))?;
        config.source = Source::Local(absolute);
    }
    let mut reporter = if config.foreground { daemon::Reporter::foreground() } else { daemon::fork_and_wait()? };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .thread_name("secretfs-aws")
        .build()
        .map_err(|e| Error::Config(format!("cannot start the async runtime: {e}")))?;
    let started = start(&config, runtime.handle());
    let session = match started {
        Ok(session) => {
            reporter.report(&Ok(()));
            session
        }
        Err(err) => {
            reporter.report(&Err(err.clone()));
            return Err(err);
        }
    };
    log::info!("mounted at {}", config.mountpoint.display());
    runtime.block_on(wait_for_end(&session));
    log::info!("unmounting {}", config.mountpoint.display());
    if !session.guard.is_finished() {
        session.umount_and_join().map_err(|e| Error::Config(format!("unmount failed: {e}")))?;
    }
    Ok(())
}

/// Build the layers and mount them. Nothing is listed: the credentials are checked once
/// (STS, unless switched off) and directories are listed when first visited.
fn start(config: &MountConfig, handle: &tokio::runtime::Handle) -> Result<fuser::BackgroundSession> {
    let bridge = Bridge::new(handle.clone());
    let (parameters, secrets) = providers(&config.source, &bridge)?;
    let runtime = Runtime { clock: Arc::new(SystemClock), spawner: Arc::new(BlockingPool(handle.clone())) };
    let mut services = Vec::new();
    for (service, provider, prefix) in [
        (Service::ParameterStore, parameters, &config.ps_prefix),
        (Service::SecretsManager, secrets, &config.sm_prefix),
    ] {
        if config.services.contains(&service) {
            let cache = ServiceCache::with_runtime(provider, prefix.clone(), config.cache, runtime.clone());
            cache.start_refresher();
            services.push((service, cache));
        }
    }
    let fs = Arc::new(SecretFs::new(config.fs, services));
    let mut options = vec![
        fuser::MountOption::FSName("secretfs".into()),
        fuser::MountOption::Subtype("secretfs".into()),
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
    fuse_config.n_threads = Some(FUSE_THREADS);
    if config.allow_other {
        fuse_config.acl = fuser::SessionACL::All;
    }
    let notifier = Arc::new(std::sync::OnceLock::new());
    let adapter = FuseAdapter::new(fs, notifier.clone(), Some(handle.clone()));
    let session = fuser::spawn_mount(adapter, &config.mountpoint, &fuse_config)
        .map_err(|e| Error::Config(format!("cannot mount {}: {e}", config.mountpoint.display())))?;
    let _ = notifier.set(session.notifier());
    Ok(session)
}

fn providers(source: &Source, bridge: &Bridge) -> Result<(Arc<dyn Provider>, Arc<dyn Provider>)> {
    match source {
        Source::Aws(settings) => {
            let sdk = load_config(bridge, settings)?;
            let (ps_caller, sm_caller) = (
                Caller::new(settings.ps_max_tps, settings.timeout),
                Caller::new(settings.sm_max_tps, settings.timeout),
            );
            Ok((
                Arc::new(ParameterStore::new(aws_sdk_ssm::Client::new(&sdk), bridge.clone(), ps_caller)),
                Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(&sdk), bridge.clone(), sm_caller)),
            ))
        }
        Source::Local(path) => {
            let (parameters, secrets) = local::load(path)?;
            Ok((Arc::new(parameters), Arc::new(secrets)))
        }
    }
}

async fn wait_for_end(session: &fuser::BackgroundSession) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        log::error!("cannot install signal handlers; unmount with `secretfs unmount`");
        while !session.guard.is_finished() {
            tokio::time::sleep(SESSION_POLL).await;
        }
        return;
    };
    let mut poll = tokio::time::interval(SESSION_POLL);
    loop {
        tokio::select! {
            _ = interrupt.recv() => return,
            _ = terminate.recv() => return,
            _ = poll.tick() => if session.guard.is_finished() { return },
        }
    }
}

/// `secretfs unmount MOUNTPOINT`.
pub fn unmount(path: &std::path::Path) -> Result<()> {
    mountpoint::unmount(path)
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
