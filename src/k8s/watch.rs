//! The watches of one namespace: managed pods and the Events about pods, turned into
//! domain-typed [`WatchUpdate`]s for the hub. One [`NamespaceWatch`] per namespace in use,
//! whatever the number of subscribers.
//!
//! kube-runtime's watcher relists on start, on watch expiry (HTTP 410) and after the API
//! server comes back; `default_backoff` spaces the retries. Each relist is framed by
//! [`WatchUpdate::PodsRelisting`] and [`WatchUpdate::PodsRelisted`] so the hub can tell which
//! pods went away meanwhile.

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::domain::{MANAGED_BY_LABEL, PodEvent, PodState};
use crate::k8s::convert::{pod_event, pod_state};

/// The API server ends each watch after this long and the watcher resumes it from where it
/// was: a quiet watch still sees bytes well within the client's read timeout.
const WATCH_TIMEOUT_SECS: u32 = 45;

/// What the watches of a namespace report, in the order the cluster made it.
#[derive(Debug, Clone)]
pub enum WatchUpdate {
    /// A (re)list of the pods begins; the pods listed follow as [`WatchUpdate::Pod`].
    PodsRelisting,
    /// A pod exists in this state (created, changed, or listed).
    Pod(PodState),
    /// The (re)list is complete: pods known before and not listed since are gone.
    PodsRelisted,
    /// A pod is gone.
    PodDeleted(PodState),
    /// An Event about a pod. `listed` when it came from a (re)list rather than as it happened.
    Event {
        /// The event.
        event: PodEvent,
        /// From a list, not live.
        listed: bool,
    },
    /// The pod watch failed and will retry.
    PodsWatchFailed {
        /// The API server's HTTP status, when it answered (403: the deployer may not watch).
        code: Option<u16>,
        /// What failed, for logs and for a caller waiting on the first list.
        message: String,
    },
}

/// The running watches of one namespace; dropping it stops them.
#[derive(Debug)]
pub struct NamespaceWatch {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for NamespaceWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl NamespaceWatch {
    /// Start watching `namespace`, sending updates to `updates`. The watches stop when the
    /// receiver is gone or this value is dropped.
    #[must_use]
    pub fn start(
        client: &kube::Client,
        namespace: &str,
        updates: mpsc::Sender<WatchUpdate>,
    ) -> Self {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let events: Api<Event> = Api::namespaced(client.clone(), namespace);
        let pod_config = watcher::Config::default()
            .labels(&format!("{}={}", MANAGED_BY_LABEL.0, MANAGED_BY_LABEL.1))
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
        Self {
            tasks: vec![pod_task, event_task],
        }
    }
}

async fn watch_pods(api: Api<Pod>, config: watcher::Config, updates: mpsc::Sender<WatchUpdate>) {
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(item) = stream.next().await {
        let update = match item {
            Ok(watcher::Event::Init) => WatchUpdate::PodsRelisting,
            Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => {
                WatchUpdate::Pod(pod_state(&pod))
            }
            Ok(watcher::Event::InitDone) => {
                tracing::debug!("pods listed");
                WatchUpdate::PodsRelisted
            }
            Ok(watcher::Event::Delete(pod)) => WatchUpdate::PodDeleted(pod_state(&pod)),
            Err(error) => {
                tracing::warn!(%error, "pod watch failed, retrying with back-off");
                WatchUpdate::PodsWatchFailed {
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

async fn watch_events(
    api: Api<Event>,
    config: watcher::Config,
    updates: mpsc::Sender<WatchUpdate>,
) {
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(item) = stream.next().await {
        let (event, listed) = match item {
            Ok(watcher::Event::InitApply(event)) => (event, true),
            Ok(watcher::Event::Apply(event)) => (event, false),
            // A deleted Event (expired by its TTL) tells nothing new.
            Ok(watcher::Event::Init | watcher::Event::InitDone | watcher::Event::Delete(_)) => {
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "event watch failed, retrying with back-off");
                continue;
            }
        };
        let Some(event) = pod_event(&event) else {
            continue;
        };
        if updates
            .send(WatchUpdate::Event { event, listed })
            .await
            .is_err()
        {
            return;
        }
    }
}
