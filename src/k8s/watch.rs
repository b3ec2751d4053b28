//! The watches of one namespace, turned into domain-typed updates for the hubs. [`ClusterFeed`]
//! is the [`StatusHub`](crate::hub::StatusHub)'s [`NamespaceFeed`] (one watch of the managed
//! pods and one of the Events about pods, ReplicaSets and Deployments per namespace in use) and
//! the [`RolloutHub`](crate::hub::rollout::RolloutHub)'s [`WorkloadFeed`] (one watch of the
//! managed Deployments and one of the managed ReplicaSets, started only for the namespaces
//! whose rollouts someone follows), whatever the number of subscribers.
//!
//! The Event watch is not field-selected: a field selector cannot say "Pod, ReplicaSet or
//! Deployment", and three watches per namespace would cost more than the few Events of other
//! kinds, which are dropped as soon as they are read.
//!
//! kube-runtime's watcher relists on start and on watch expiry (HTTP 410 Gone). Each relist is
//! framed (`Relisting` ... `Relisted`) so the hubs can tell which objects went away meanwhile.
//!
//! Retries are spaced by a back-off of our own ([`retry_backoff`], [`after`]) rather than
//! kube-runtime's `default_backoff()`. That one suits many controllers sharing a struggling
//! API server: 0.8 s doubling to 30 s, jittered up to twice that, reset only by an `Ok` event
//! or by two minutes without an error. Here it made streams go blind after an API server
//! restart: the back-off grew during the outage, the first answer after it was a 410 (the
//! watch's resource version predates the restarted server's cache), which is an error too,
//! so the watcher waited the grown back-off (20-50 s) again before relisting. This service
//! keeps one watch per namespace, so it can afford to retry briskly: 250 ms doubling to
//! 1.5 s, jittered to under 3 s, reset by any answer, and a 410 relists at once.

use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::runtime::utils::Backoff as _;
use kube::runtime::watcher::{self, ExponentialBackoff, watcher};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::hub::rollout::{Listing, WorkloadFeed, WorkloadUpdate};
use crate::hub::{FeedGuard, FeedUpdate, NamespaceFeed};
use crate::k8s::convert::{deployment_state, object_event, pod_state, replica_set_state};
use crate::k8s::pods::managed_selector;

/// The API server ends each watch after this long and the watcher resumes it from where it
/// was: a quiet watch still sees bytes well within the client's read timeout.
const WATCH_TIMEOUT_SECS: u32 = 45;

/// The first pause after a failure.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// The longest pause before jitter; jitter adds up to as much again, so a pause stays under
/// 3 s and a recovered API server is seen within seconds.
const RETRY_MAX: Duration = Duration::from_millis(1500);

/// The namespace watches of the cluster: the hub's feed.
#[derive(Clone)]
pub struct ClusterFeed {
    client: kube::Client,
}

impl std::fmt::Debug for ClusterFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterFeed").finish_non_exhaustive()
    }
}

impl ClusterFeed {
    /// A feed that watches with `client`.
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl NamespaceFeed for ClusterFeed {
    /// Start watching `namespace`'s managed pods and the Events about pods, ReplicaSets and
    /// Deployments. The watches stop when the receiver is gone or the guard is dropped.
    fn start(&self, namespace: &str, updates: mpsc::Sender<FeedUpdate>) -> FeedGuard {
        let pods = tokio::spawn(
            relay(self.managed::<Pod>(namespace), updates.clone(), |seen| {
                Some(match seen {
                    Seen::Relisting => FeedUpdate::PodsRelisting,
                    Seen::Object(pod, _) => FeedUpdate::Pod(pod_state(&pod)),
                    Seen::Relisted => FeedUpdate::PodsRelisted,
                    Seen::Deleted(pod) => FeedUpdate::PodDeleted(pod_state(&pod)),
                    Seen::Failed { code, message } => FeedUpdate::PodsWatchFailed { code, message },
                })
            })
            .instrument(tracing::info_span!("pod_watcher", namespace = %namespace)),
        );
        let events = Api::<Event>::namespaced(self.client.clone(), namespace);
        let events = tokio::spawn(
            relay((events, watch_config()), updates, |seen| match seen {
                Seen::Object(event, listed) => {
                    object_event(&event).map(|event| FeedUpdate::Event { event, listed })
                }
                // A deleted Event (expired by its TTL) tells nothing new.
                _ => None,
            })
            .instrument(tracing::info_span!("event_watcher", namespace = %namespace)),
        );
        FeedGuard::new([pods.abort_handle(), events.abort_handle()])
    }
}

impl WorkloadFeed for ClusterFeed {
    /// Start watching `namespace`'s managed Deployments and ReplicaSets. The watches stop
    /// when the receiver is gone or the guard is dropped.
    fn start(&self, namespace: &str, updates: mpsc::Sender<WorkloadUpdate>) -> FeedGuard {
        let deployments = tokio::spawn(
            relay(
                self.managed::<Deployment>(namespace),
                updates.clone(),
                |seen| Some(WorkloadUpdate::Deployment(seen.listing(deployment_state))),
            )
            .instrument(tracing::info_span!("deployment_watcher", namespace = %namespace)),
        );
        let replica_sets = tokio::spawn(
            relay(self.managed::<ReplicaSet>(namespace), updates, |seen| {
                Some(WorkloadUpdate::ReplicaSet(seen.listing(replica_set_state)))
            })
            .instrument(tracing::info_span!("replica_set_watcher", namespace = %namespace)),
        );
        FeedGuard::new([deployments.abort_handle(), replica_sets.abort_handle()])
    }
}

impl ClusterFeed {
    /// The API and watch configuration of the objects of kind `K` this service manages in
    /// `namespace`.
    fn managed<K>(&self, namespace: &str) -> (Api<K>, watcher::Config)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        let config = watch_config().labels(&managed_selector(None));
        (Api::namespaced(self.client.clone(), namespace), config)
    }
}

/// How every watch here is made: renewed by the API server well within the read timeout.
fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(WATCH_TIMEOUT_SECS)
}

/// The back-off between two failed attempts of one watch: 250 ms doubling to 1.5 s, each
/// pause jittered up to twice its length (kube-runtime's exponential back-off on backon's).
fn retry_backoff() -> ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// What a watch does after one of its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The API server answered: the back-off starts over, the watch goes on at once.
    GoOn,
    /// Nothing was asked of the API server yet (a (re)list is about to start): the back-off
    /// stays as it is, so a list that keeps failing is spaced ever more widely.
    Keep,
    /// 410 Gone: the watch's resource version is too old. A fresh watcher relists at once.
    Relist,
    /// No answer, or a refusal: wait before the next attempt.
    Pause,
}

/// The rule of [`watch_promptly`]: any answer resets the back-off, a 410 relists at once,
/// anything else waits. kube-runtime yields `Init` before it sends the LIST, so `Init` is no
/// answer: resetting on it would retry a failing LIST every 250-500 ms for the whole outage.
fn after<K>(item: &watcher::Result<watcher::Event<K>>) -> Next {
    match item {
        Ok(watcher::Event::Init) => Next::Keep,
        Ok(_) => Next::GoOn,
        Err(error) if status_code(error) == Some(410) => Next::Relist,
        Err(_) => Next::Pause,
    }
}

/// A watch in progress, with its back-off.
struct Watch<K: 'static> {
    api: Api<K>,
    config: watcher::Config,
    events: BoxStream<'static, watcher::Result<watcher::Event<K>>>,
    backoff: ExponentialBackoff,
    /// The pause owed before the next attempt.
    pause: Option<Duration>,
}

/// `watcher(api, config)` with the retry rule of [`after`]. A 410 replaces the watcher by a
/// fresh one: kube-runtime relists on a 410 that arrives as a watch event, but keeps retrying
/// the same resource version when the API server answers the watch request itself with 410.
fn watch_promptly<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let events = watcher(api.clone(), config.clone()).boxed();
    let start = Watch {
        api,
        config,
        events,
        backoff: retry_backoff(),
        pause: None,
    };
    futures::stream::unfold(start, |mut watch| async move {
        if let Some(pause) = watch.pause.take() {
            tokio::time::sleep(pause).await;
        }
        let item = watch.events.next().await?;
        match after(&item) {
            Next::GoOn => watch.backoff.reset(),
            Next::Keep => {}
            Next::Relist => {
                tracing::debug!("resource version expired: relisting now");
                watch.backoff.reset();
                watch.events = watcher(watch.api.clone(), watch.config.clone()).boxed();
            }
            Next::Pause => watch.pause = watch.backoff.next(),
        }
        Some((item, watch))
    })
}

/// One item of a watch, framed as the hubs need it.
enum Seen<K> {
    /// A (re)list begins.
    Relisting,
    /// An object exists in this state; `true` when it came from a (re)list.
    Object(K, bool),
    /// The (re)list is complete.
    Relisted,
    /// An object is gone.
    Deleted(K),
    /// The watch failed and will retry.
    Failed {
        /// The API server's HTTP status, when it answered.
        code: Option<u16>,
        /// What failed.
        message: String,
    },
}

impl<K> Seen<K> {
    /// The same, as the domain's [`Listing`] of the objects converted by `convert`.
    fn listing<T>(self, convert: impl Fn(&K) -> T) -> Listing<T> {
        match self {
            Self::Relisting => Listing::Relisting,
            Self::Object(object, _) => Listing::Object(convert(&object)),
            Self::Relisted => Listing::Relisted,
            Self::Deleted(object) => Listing::Deleted(convert(&object)),
            Self::Failed { code, message } => Listing::Failed { code, message },
        }
    }
}

/// Run one watch ([`watch_promptly`]) and send what `to_update` makes of each of its items
/// (nothing when it returns `None`), until the receiver is gone.
async fn relay<K, U>(
    (api, config): (Api<K>, watcher::Config),
    updates: mpsc::Sender<U>,
    to_update: impl Fn(Seen<K>) -> Option<U>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = std::pin::pin!(watch_promptly(api, config));
    while let Some(item) = stream.next().await {
        let seen = match item {
            Ok(watcher::Event::Init) => Seen::Relisting,
            Ok(watcher::Event::InitApply(object)) => Seen::Object(object, true),
            Ok(watcher::Event::Apply(object)) => Seen::Object(object, false),
            Ok(watcher::Event::InitDone) => {
                tracing::debug!("listed");
                Seen::Relisted
            }
            Ok(watcher::Event::Delete(object)) => Seen::Deleted(object),
            Err(error) => {
                tracing::warn!(%error, "watch failed, retrying");
                Seen::Failed {
                    code: status_code(&error),
                    message: error.to_string(),
                }
            }
        };
        let Some(update) = to_update(seen) else {
            continue;
        };
        if updates.send(update).await.is_err() {
            return;
        }
    }
}

/// The API server's HTTP status in a watcher error, if it answered.
fn status_code(error: &watcher::Error) -> Option<u16> {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(status.code),
        watcher::Error::WatchError(status) => Some(status.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: u16) -> Box<kube::core::Status> {
        kube::core::Status::failure("failed", "Reason")
            .with_code(code)
            .boxed()
    }

    #[test]
    fn an_answer_resets_a_410_relists_and_the_rest_waits() {
        let cases: Vec<(watcher::Result<watcher::Event<Pod>>, Next)> = vec![
            // Said before the LIST is sent: no answer yet.
            (Ok(watcher::Event::Init), Next::Keep),
            (Ok(watcher::Event::InitDone), Next::GoOn),
            (Ok(watcher::Event::Apply(Pod::default())), Next::GoOn),
            (Ok(watcher::Event::Delete(Pod::default())), Next::GoOn),
            // Too old a resource version, as a watch event or as the answer to the request.
            (Err(watcher::Error::WatchError(failure(410))), Next::Relist),
            (
                Err(watcher::Error::WatchStartFailed(kube::Error::Api(failure(
                    410,
                )))),
                Next::Relist,
            ),
            (
                Err(watcher::Error::InitialListFailed(kube::Error::Api(
                    failure(410),
                ))),
                Next::Relist,
            ),
            // Refusals and silence wait.
            (
                Err(watcher::Error::InitialListFailed(kube::Error::Api(
                    failure(403),
                ))),
                Next::Pause,
            ),
            (
                Err(watcher::Error::WatchStartFailed(kube::Error::Api(failure(
                    429,
                )))),
                Next::Pause,
            ),
            (Err(watcher::Error::WatchError(failure(500))), Next::Pause),
            (Err(watcher::Error::NoResourceVersion), Next::Pause),
        ];
        for (item, expected) in cases {
            assert_eq!(after(&item), expected, "{item:?}");
        }
    }

    #[test]
    fn the_back_off_stays_short_and_starts_over_when_reset() {
        let mut backoff = retry_backoff();
        let pauses: Vec<Duration> = backoff.by_ref().take(50).collect();
        assert_eq!(pauses.len(), 50, "the back-off never gives up");
        assert!(
            (RETRY_MIN..RETRY_MIN * 2).contains(&pauses[0]),
            "the first pause is 250 ms, jittered: {pauses:?}"
        );
        assert!(
            pauses
                .iter()
                .all(|pause| (RETRY_MIN..Duration::from_secs(3)).contains(pause)),
            "every pause is at least 250 ms and under 3 s: {pauses:?}"
        );
        assert!(
            pauses[10..].iter().all(|pause| *pause >= RETRY_MAX),
            "it grows to its cap: {pauses:?}"
        );
        backoff.reset();
        let first = backoff.next().expect("a pause");
        assert!(
            first < RETRY_MIN * 2,
            "after a reset the pause is short again: {first:?}"
        );
    }
}
