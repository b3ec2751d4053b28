//! The watches of one namespace: managed pods and the Events about pods, turned into
//! domain-typed [`FeedUpdate`]s for the hub. [`ClusterFeed`] is the hub's [`NamespaceFeed`]:
//! one pod watch and one Event watch per namespace in use, whatever the number of subscribers.
//!
//! kube-runtime's watcher relists on start and on watch expiry (HTTP 410 Gone). Each relist is
//! framed by [`FeedUpdate::PodsRelisting`] and [`FeedUpdate::PodsRelisted`] so the hub can
//! tell which pods went away meanwhile.
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
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::runtime::utils::Backoff as _;
use kube::runtime::watcher::{self, ExponentialBackoff, watcher};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::hub::{FeedGuard, FeedUpdate, NamespaceFeed};
use crate::k8s::convert::{pod_event, pod_state};
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
    /// Start watching `namespace`'s managed pods and the Events about pods. The watches stop
    /// when the receiver is gone or the guard is dropped.
    fn start(&self, namespace: &str, updates: mpsc::Sender<FeedUpdate>) -> FeedGuard {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let pod_config = watcher::Config::default()
            .labels(&managed_selector(None))
            .timeout(WATCH_TIMEOUT_SECS);
        let event_config = watcher::Config::default()
            .fields("involvedObject.kind=Pod")
            .timeout(WATCH_TIMEOUT_SECS);

        let pod_task = tokio::spawn(
            watch_pods(pods, pod_config, updates.clone())
                .instrument(tracing::info_span!("pod_watcher", namespace = %namespace)),
        );
        let event_task = tokio::spawn(
            watch_events(events, event_config, updates)
                .instrument(tracing::info_span!("event_watcher", namespace = %namespace)),
        );
        FeedGuard::new([pod_task.abort_handle(), event_task.abort_handle()])
    }
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

async fn watch_pods(api: Api<Pod>, config: watcher::Config, updates: mpsc::Sender<FeedUpdate>) {
    let mut stream = std::pin::pin!(watch_promptly(api, config));
    while let Some(item) = stream.next().await {
        let update = match item {
            Ok(watcher::Event::Init) => FeedUpdate::PodsRelisting,
            Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => {
                FeedUpdate::Pod(pod_state(&pod))
            }
            Ok(watcher::Event::InitDone) => {
                tracing::debug!("pods listed");
                FeedUpdate::PodsRelisted
            }
            Ok(watcher::Event::Delete(pod)) => FeedUpdate::PodDeleted(pod_state(&pod)),
            Err(error) => {
                tracing::warn!(%error, "pod watch failed, retrying");
                FeedUpdate::PodsWatchFailed {
                    code: status_code(&error),
                    message: error.to_string(),
                }
            }
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

async fn watch_events(api: Api<Event>, config: watcher::Config, updates: mpsc::Sender<FeedUpdate>) {
    let mut stream = std::pin::pin!(watch_promptly(api, config));
    while let Some(item) = stream.next().await {
        let (event, listed) = match item {
            Ok(watcher::Event::InitApply(event)) => (event, true),
            Ok(watcher::Event::Apply(event)) => (event, false),
            // A deleted Event (expired by its TTL) tells nothing new.
            Ok(watcher::Event::Init | watcher::Event::InitDone | watcher::Event::Delete(_)) => {
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "event watch failed, retrying");
                continue;
            }
        };
        let Some(event) = pod_event(&event) else {
            continue;
        };
        if updates
            .send(FeedUpdate::Event { event, listed })
            .await
            .is_err()
        {
            return;
        }
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
