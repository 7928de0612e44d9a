//! Where background work (refreshes, prefetches) runs: a blocking thread pool in the daemon, a
//! queue that tests drain by hand.

use std::sync::Mutex;

/// One piece of background work.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Runs jobs off the caller's thread.
pub trait Spawner: Send + Sync {
    /// Run `job` later, on another thread.
    fn spawn(&self, job: Job);

    /// Run `job` as soon as possible on another thread, while the caller waits for its outcome
    /// a bounded time (a listing a reader needs). Unlike [`Spawner::spawn`], test spawners run
    /// it at once too (on a thread of its own).
    fn spawn_now(&self, job: Job) {
        std::thread::spawn(job);
    }
}

/// The blocking pool of a tokio runtime (provider calls block on the runtime, so they must not
/// run on its worker threads).
#[derive(Clone, Debug)]
pub struct BlockingPool(pub tokio::runtime::Handle);

impl Spawner for BlockingPool {
    fn spawn(&self, job: Job) {
        drop(self.0.spawn_blocking(job));
    }

    fn spawn_now(&self, job: Job) {
        drop(self.0.spawn_blocking(job));
    }
}

/// A new thread per job: for callers without a runtime (core tests, tools).
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadPerJob;

impl Spawner for ThreadPerJob {
    fn spawn(&self, job: Job) {
        std::thread::spawn(job);
    }
}

/// Jobs kept until [`QueuedJobs::run_all`] runs them on the calling thread (deterministic tests).
#[derive(Default)]
pub struct QueuedJobs {
    jobs: Mutex<Vec<Job>>,
}

impl QueuedJobs {
    /// Run every queued job, including jobs those jobs queue; returns how many ran.
    pub fn run_all(&self) -> usize {
        let mut ran = 0;
        loop {
            let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|p| p.into_inner()));
            if jobs.is_empty() {
                return ran;
            }
            for job in jobs {
                job();
                ran += 1;
            }
        }
    }

    /// How many jobs wait.
    pub fn len(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Spawner for QueuedJobs {
    fn spawn(&self, job: Job) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).push(job);
    }
}
