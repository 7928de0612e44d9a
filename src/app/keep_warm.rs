//! Keeps the warm-restart files current: what each cache holds is taken back at start, written
//! every few seconds when it changed, and written once more when the daemon stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cache::ServiceCache;
use crate::warm_cache::WarmCache;

/// How often the caches are checked for changes worth writing.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(5);

/// The writer of one mount's warm-restart files.
pub struct KeepWarm {
    warm: Arc<WarmCache>,
    caches: Vec<ServiceCache>,
    stopped: Arc<AtomicBool>,
}

impl KeepWarm {
    /// Take back what `warm` kept for each of `caches` (before anything is served).
    pub fn restore(warm: Arc<WarmCache>, caches: Vec<ServiceCache>) -> KeepWarm {
        let now = SystemTime::now();
        for cache in &caches {
            if let Some(snapshot) = warm.load(cache.service()) {
                let taken = cache.restore(snapshot, now);
                tracing::info!("warm cache: {taken} {} value(s) restored", cache.service().dir_name());
            }
        }
        KeepWarm { warm, caches, stopped: Arc::default() }
    }

    /// Write the files every [`WRITE_INTERVAL`] when what the caches hold changed, on a thread
    /// of its own, until [`KeepWarm::stop`].
    pub fn start(&self) -> std::io::Result<()> {
        let (warm, caches, stopped) = (self.warm.clone(), self.caches.clone(), self.stopped.clone());
        std::thread::Builder::new().name("secretfs-warm".into()).spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                std::thread::sleep(WRITE_INTERVAL);
                if !stopped.load(Ordering::SeqCst) {
                    save(&warm, &caches, false);
                }
            }
        })?;
        Ok(())
    }

    /// Write the files a last time and stop the writer.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        save(&self.warm, &self.caches, true);
    }
}

fn save(warm: &WarmCache, caches: &[ServiceCache], force: bool) {
    let now = SystemTime::now();
    for cache in caches {
        if let Err(err) = warm.save(cache.service(), &cache.snapshot(now), now, force) {
            tracing::warn!("{err}");
        }
    }
}
