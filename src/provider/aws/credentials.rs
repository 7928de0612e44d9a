//! Credentials the daemon can renew. They are kept until five minutes before they expire; when
//! AWS refuses them (expired, revoked, rotated), they are asked for again from a newly built
//! credential chain, so a changed profile file is read again and a role is assumed again. At
//! most one renewal per backoff step (1 s doubling to 5 min, reset by the next accepted call),
//! each said in one log line.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{self, future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

use crate::provider::counters::lock;

/// Credentials expiring sooner than this are fetched again before use.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// Credentials are kept at least this long, even when they come with less than
/// [`EXPIRY_MARGIN`] left (as instance credentials may), so each call does not fetch them.
pub const MIN_KEEP: Duration = Duration::from_secs(10);
/// Wait after a first renewal before another may run; doubles per refusal in a row.
pub const RENEWAL_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait between renewals.
pub const RENEWAL_BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Builds the credential chain anew (the default chain, and the role assumed through it).
pub type ChainBuilder = Box<dyn Fn() -> Pin<Box<dyn Future<Output = SharedCredentialsProvider> + Send>> + Send + Sync>;

/// Credentials from one build of the chain, fetched once by the first caller that needs them
/// (concurrent callers wait for that one fetch, inside the cell; no lock of ours is held).
struct Generation {
    credentials: tokio::sync::OnceCell<Credentials>,
    born: Instant,
}

impl Default for Generation {
    fn default() -> Self {
        Generation { credentials: tokio::sync::OnceCell::new(), born: Instant::now() }
    }
}

/// A credentials provider for the SDK clients (with the SDK's own identity cache switched off).
pub struct Renewable {
    build: ChainBuilder,
    current: Mutex<Arc<Generation>>,
    /// Refusals in a row, and when the next renewal may run.
    refusals: AtomicU32,
    next_renewal: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Renewable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewable").field("refusals", &self.refusals).finish_non_exhaustive()
    }
}

impl Renewable {
    /// Credentials from the chains `build` makes.
    pub fn new(build: ChainBuilder) -> Self {
        Renewable { build, current: Mutex::default(), refusals: AtomicU32::new(0), next_renewal: Mutex::new(None) }
    }

    /// The generation to use: the current one, or a new one when its credentials expire soon.
    fn generation(&self) -> Arc<Generation> {
        let mut current = lock(&self.current);
        let expiring = current.credentials.get().and_then(Credentials::expiry);
        if expiring.is_some_and(|at| at <= SystemTime::now() + EXPIRY_MARGIN) && current.born.elapsed() >= MIN_KEEP {
            *current = Arc::default();
        }
        current.clone()
    }

    async fn credentials(&self) -> provider::Result {
        let generation = self.generation();
        let fetched = generation
            .credentials
            .get_or_try_init(|| async { (self.build)().await.provide_credentials().await })
            .await?;
        Ok(fetched.clone())
    }

    /// AWS refused the credentials (`reason`, an error code): ask the chain again for the next
    /// call, unless a renewal ran less than a backoff step ago. Returns whether it renews.
    pub fn renew(&self, reason: &str) -> bool {
        let now = Instant::now();
        {
            let mut next = lock(&self.next_renewal);
            if next.is_some_and(|at| now < at) {
                return false;
            }
            let refusals = self.refusals.fetch_add(1, Ordering::Relaxed) + 1;
            let wait =
                RENEWAL_BACKOFF_BASE.saturating_mul(1 << refusals.saturating_sub(1).min(16)).min(RENEWAL_BACKOFF_CAP);
            *next = Some(now + wait);
            tracing::warn!(
                "AWS refused the daemon's credentials ({reason}); asking the credential chain again (refusal {refusals} in a row; the next renewal waits {} s)",
                wait.as_secs()
            );
        }
        *lock(&self.current) = Arc::default();
        true
    }

    /// A call was accepted: the next refusal starts the backoff from its first step.
    pub fn accepted(&self) {
        if self.refusals.load(Ordering::Relaxed) != 0 {
            self.refusals.store(0, Ordering::Relaxed);
            *lock(&self.next_renewal) = None;
        }
    }
}

impl ProvideCredentials for Renewable {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.credentials())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A renewable provider over chains that hand out `key-1`, `key-2`, ... (one per build).
    fn counting(expiry: Option<SystemTime>) -> (Renewable, Arc<AtomicUsize>) {
        let builds = Arc::new(AtomicUsize::new(0));
        let counter = builds.clone();
        let build: ChainBuilder = Box::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                SharedCredentialsProvider::new(Credentials::new(format!("key-{n}"), "secret", None, expiry, "test"))
            })
        });
        (Renewable::new(build), builds)
    }

    async fn key(renewable: &Renewable) -> String {
        renewable.provide_credentials().await.unwrap().access_key_id().to_string()
    }

    #[tokio::test]
    async fn credentials_are_kept_until_refused_and_renewals_back_off() {
        let (renewable, builds) = counting(None);
        assert_eq!(key(&renewable).await, "key-1");
        assert_eq!(key(&renewable).await, "key-1");
        assert_eq!(builds.load(Ordering::SeqCst), 1, "kept, not asked again");
        assert!(renewable.renew("ExpiredTokenException"));
        assert_eq!(key(&renewable).await, "key-2", "a refusal builds the chain again");
        assert!(!renewable.renew("ExpiredTokenException"), "within the backoff step: no renewal");
        assert_eq!(key(&renewable).await, "key-2");
        renewable.accepted();
        assert!(renewable.renew("InvalidClientTokenId"), "an accepted call resets the backoff");
        assert_eq!(key(&renewable).await, "key-3");
    }

    #[tokio::test]
    async fn credentials_about_to_expire_are_fetched_again_but_not_at_every_call() {
        let (renewable, builds) = counting(Some(SystemTime::now() + Duration::from_secs(60)));
        assert_eq!(key(&renewable).await, "key-1");
        assert_eq!(key(&renewable).await, "key-1", "kept for MIN_KEEP although they expire soon");
        {
            let mut current = lock(&renewable.current);
            let kept = current.credentials.get().cloned();
            let born = Instant::now() - MIN_KEEP;
            *current = Arc::new(Generation { credentials: tokio::sync::OnceCell::new_with(kept), born });
        }
        assert_eq!(key(&renewable).await, "key-2", "then fetched again");
        assert_eq!(builds.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let (renewable, builds) = counting(None);
        let renewable = Arc::new(renewable);
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let renewable = renewable.clone();
                tokio::spawn(async move { key(&renewable).await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), "key-1");
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }
}
