//! The composition root: turns plain configuration into provider → cache → core → FUSE
//! adapter, mounts it, and runs until a signal or an unmount ends the session.

pub mod daemon;
pub mod mountpoint;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CacheSettings, ServiceCache};
use crate::error::{Error, Result};
use crate::fs::{FsConfig, SecretFs};
use crate::fuse_adapter::FuseAdapter;
use crate::provider::aws::parameter_store::ParameterStore;
use crate::provider::aws::secrets_manager::SecretsManager;
use crate::provider::aws::{load_config, AwsSettings, Bridge};
use crate::provider::{local, Provider, Service};

/// Threads answering kernel requests, so one slow AWS call does not stall other readers.
pub const FUSE_THREADS: usize = 8;
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
        .enable_all()
        .thread_name("secretfs-aws")
        .build()
        .map_err(|e| Error::Config(format!("cannot start the async runtime: {e}")))?;
    let started = start(&config, Bridge::new(runtime.handle().clone()));
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

/// Build the layers and mount them. Listing both services first proves region, credentials
/// and endpoint before the mount appears.
fn start(config: &MountConfig, bridge: Bridge) -> Result<fuser::BackgroundSession> {
    let (parameters, secrets) = providers(&config.source, &bridge)?;
    let services = vec![
        (Service::ParameterStore, ServiceCache::new(parameters, config.ps_prefix.clone(), config.cache)),
        (Service::SecretsManager, ServiceCache::new(secrets, config.sm_prefix.clone(), config.cache)),
    ];
    for (service, cache) in &services {
        cache.namespace().map_err(|e| {
            Error::Config(format!("cannot list {} ({}/): {e}", service_title(*service), service.dir_name()))
        })?;
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
    let session = fuser::spawn_mount(FuseAdapter::new(fs, notifier.clone()), &config.mountpoint, &fuse_config)
        .map_err(|e| Error::Config(format!("cannot mount {}: {e}", config.mountpoint.display())))?;
    let _ = notifier.set(session.notifier());
    Ok(session)
}

fn service_title(service: Service) -> &'static str {
    match service {
        Service::ParameterStore => "Parameter Store",
        Service::SecretsManager => "Secrets Manager",
    }
}

fn providers(source: &Source, bridge: &Bridge) -> Result<(Arc<dyn Provider>, Arc<dyn Provider>)> {
    match source {
        Source::Aws(settings) => {
            let sdk = load_config(bridge, settings)?;
            Ok((
                Arc::new(ParameterStore::new(aws_sdk_ssm::Client::new(&sdk), bridge.clone())),
                Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(&sdk), bridge.clone())),
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
