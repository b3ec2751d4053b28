//! What the service needs to know about a namespace (does it exist, which level does its
//! PodSecurity admission enforce), answered from a small cache so that opening streams and
//! deploying cost the API server at most one namespace read per namespace every few seconds.
//!
//! A cache and not a watch: the deployer's least-privilege RBAC
//! (`manifests/target-namespace/role.yaml`) is one namespaced Role per target namespace, which
//! lets it `get` that one Namespace object; it may not list or watch namespaces, which a
//! namespace watch would need.
//!
//! - Found namespaces are remembered for [`FOUND_TTL`], missing ones for [`MISSING_TTL`] (so
//!   a namespace created right after a NOT_FOUND is seen quickly); a failed read is not
//!   remembered once it has been answered.
//! - Single flight: every caller that asks for a namespace while its read is under way waits
//!   for that one read and shares its outcome.
//! - At most [`CAPACITY`] namespaces are remembered; the oldest go first.
//!
//! Staleness is bounded by the TTL and harmless: a pod created in a namespace deleted since is
//! refused by the API server (404, which the caller gets as NOT_FOUND and which makes the
//! service forget the namespace), and the PodSecurity admission enforces the namespace's
//! current label whatever the service chose.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How long a namespace that exists is remembered.
pub const FOUND_TTL: Duration = Duration::from_secs(10);
/// How long a namespace that does not exist is remembered.
pub const MISSING_TTL: Duration = Duration::from_secs(1);
/// Most namespaces remembered at once.
pub const CAPACITY: usize = 1024;

/// What one read of a namespace found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceInfo {
    /// It exists; the value of its `pod-security.kubernetes.io/enforce` label, if any.
    Found {
        /// The enforced level.
        enforce: Option<String>,
    },
    /// It does not exist.
    Missing,
    /// The deployer may not read it (403); it is taken to exist, and the calls that follow
    /// fail on their own if it does not.
    Unreadable,
}

/// The outcome of one read, shared by everyone who waited for it.
pub type Lookup = Result<NamespaceInfo, Arc<kube::Error>>;

/// One namespace's read: under way (the cell is empty) or done, with when it was done.
struct Entry {
    read: Arc<OnceCell<(Lookup, Instant)>>,
    added: Instant,
}

impl Entry {
    /// Whether the outcome is too old to answer with. A read under way never is.
    fn expired(&self, now: Instant) -> bool {
        match self.read.get() {
            None => false,
            Some((Ok(NamespaceInfo::Missing), at)) => now.duration_since(*at) >= MISSING_TTL,
            Some((Ok(_), at)) => now.duration_since(*at) >= FOUND_TTL,
            Some((Err(_), _)) => true,
        }
    }
}

/// The cache: cheap to clone, shared by every clone.
#[derive(Clone, Default)]
pub struct NamespaceCache {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl std::fmt::Debug for NamespaceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceCache").finish_non_exhaustive()
    }
}

impl NamespaceCache {
    /// What is known of `namespace`, reading it with `read` only when nothing recent is known
    /// and no read is under way.
    pub async fn lookup<F, Fut>(&self, namespace: &str, read: F) -> Lookup
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Lookup>,
    {
        let cell = self.cell(namespace);
        // A caller that gives up during the read (its deadline passed) drops it; the next
        // waiter then reads in its place.
        let (lookup, _) = cell
            .get_or_init(|| async { (read().await, Instant::now()) })
            .await;
        lookup.clone()
    }

    /// Forget what is known of `namespace` (the API server just said otherwise).
    pub fn forget(&self, namespace: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(namespace);
    }

    /// The read to wait for: the current one, or a new one.
    fn cell(&self, namespace: &str) -> Arc<OnceCell<(Lookup, Instant)>> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(namespace)
            && !entry.expired(now)
        {
            return Arc::clone(&entry.read);
        }
        if entries.len() >= CAPACITY && !entries.contains_key(namespace) {
            entries.retain(|_, entry| !entry.expired(now));
            if entries.len() >= CAPACITY {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.added)
                    .map(|(name, _)| name.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        let read = Arc::new(OnceCell::new());
        entries.insert(
            namespace.to_owned(),
            Entry {
                read: Arc::clone(&read),
                added: now,
            },
        );
        read
    }

    /// How many namespaces are remembered (or being read).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn found() -> Lookup {
        Ok(NamespaceInfo::Found {
            enforce: Some("restricted".to_owned()),
        })
    }

    /// A read that counts itself and answers `outcome` after `delay`.
    async fn counted(reads: &AtomicUsize, delay: Duration, outcome: fn() -> Lookup) -> Lookup {
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        outcome()
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_askers_share_one_read() {
        let cache = NamespaceCache::default();
        let reads = AtomicUsize::new(0);
        let asks = (0..200).map(|_| {
            cache.lookup("team-a", || {
                counted(&reads, Duration::from_millis(500), found)
            })
        });
        let answers = futures::future::join_all(asks).await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().ok() == found().as_ref().ok())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_are_remembered_for_their_ttl() {
        let cases: [(fn() -> Lookup, Duration); 4] = [
            (found, FOUND_TTL),
            (|| Ok(NamespaceInfo::Unreadable), FOUND_TTL),
            (|| Ok(NamespaceInfo::Missing), MISSING_TTL),
            (
                || Err(Arc::new(kube::Error::Service("refused".into()))),
                Duration::ZERO,
            ),
        ];
        for (outcome, ttl) in cases {
            let cache = NamespaceCache::default();
            let reads = AtomicUsize::new(0);
            let ask = || cache.lookup("ns", || counted(&reads, Duration::ZERO, outcome));
            let first = ask().await;
            assert_eq!(first.is_ok(), outcome().is_ok());
            if ttl > Duration::ZERO {
                tokio::time::advance(ttl - Duration::from_millis(10)).await;
                ask().await.ok();
                assert_eq!(reads.load(Ordering::SeqCst), 1, "within {ttl:?}");
                tokio::time::advance(Duration::from_millis(10)).await;
            }
            ask().await.ok();
            assert_eq!(reads.load(Ordering::SeqCst), 2, "after {ttl:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn forgetting_reads_again() {
        let cache = NamespaceCache::default();
        let reads = AtomicUsize::new(0);
        let ask = || cache.lookup("ns", || counted(&reads, Duration::ZERO, found));
        ask().await.ok();
        cache.forget("ns");
        ask().await.ok();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded() {
        let cache = NamespaceCache::default();
        let reads = AtomicUsize::new(0);
        for i in 0..CAPACITY + 10 {
            let name = format!("ns-{i}");
            cache
                .lookup(&name, || counted(&reads, Duration::ZERO, found))
                .await
                .ok();
            tokio::time::advance(Duration::from_micros(1)).await;
        }
        assert_eq!(cache.len(), CAPACITY);
        // The newest are kept, the oldest went first.
        cache
            .lookup(&format!("ns-{}", CAPACITY + 9), || {
                counted(&reads, Duration::ZERO, found)
            })
            .await
            .ok();
        assert_eq!(reads.load(Ordering::SeqCst), CAPACITY + 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_gives_up_hands_over_to_the_next() {
        let cache = NamespaceCache::default();
        let reads = AtomicUsize::new(0);
        let abandoned = tokio::time::timeout(
            Duration::from_millis(100),
            cache.lookup("ns", || counted(&reads, Duration::from_secs(60), found)),
        )
        .await;
        assert!(abandoned.is_err());
        let answer = cache
            .lookup("ns", || counted(&reads, Duration::ZERO, found))
            .await;
        assert!(answer.is_ok());
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }
}
