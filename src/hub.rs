//! The status hub: one owner of the state of each namespace in use, fed by that namespace's
//! one watch, fanning out to every subscriber.
//!
//! Each namespace has an actor task that alone owns its pods (with their assessment), and the
//! list of its subscribers. A subscriber gets a bounded channel: first a snapshot, then the
//! changes that match its filter. The actor never waits for a subscriber: when a subscriber's
//! channel is full, its changes are dropped and it is marked for a resync, a fresh snapshot
//! sent as soon as its channel has room (checked on every change and on a short tick). So a
//! slow reader costs at most its own buffer, never holds up the others, and never keeps a
//! stale view without a resync on the way. N subscribers of a namespace share its one watch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument as _;

use crate::domain::status::assess;
use crate::domain::{Assessment, Health, LabelSelector, PodEvent, PodState, Reason};
use crate::k8s::WatchUpdate;

/// How many updates a subscriber may have waiting before it is marked for a resync.
pub const SUBSCRIBER_BUFFER: usize = 64;
/// How often the actor retries the resync of subscribers that fell behind.
const RESYNC_TICK: Duration = Duration::from_millis(200);
/// How many Event versions a namespace remembers to drop repeats after a relist.
const SEEN_EVENTS_LIMIT: usize = 20_000;
/// How long a subscription waits for its namespace's first list before it fails.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a subscription could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The API server refuses to let the deployer list or watch pods there.
    #[error("the deployer may not watch pods in this namespace: {0}")]
    Forbidden(String),
    /// The namespace's first list did not complete in time.
    #[error("the pods of this namespace could not be listed in time: {0}")]
    NotSynced(String),
    /// The hub is gone (the server is stopping).
    #[error("the server is shutting down")]
    Closed,
}

/// A pod's state with what it means, shared by every subscriber that receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// The state.
    pub state: PodState,
    /// Its assessment.
    pub assessment: Assessment,
}

impl PodView {
    /// A state with its assessment.
    #[must_use]
    pub fn new(state: PodState) -> Self {
        let assessment = assess(&state);
        Self { state, assessment }
    }

    /// The last state of a pod that is gone.
    fn gone(state: PodState) -> Self {
        Self {
            state,
            assessment: Assessment {
                health: Health::Deleted,
                reason: Reason::Deleted,
                message: "the pod is gone".to_owned(),
            },
        }
    }
}

/// Which pods a subscriber follows.
#[derive(Debug, Clone)]
pub enum Filter {
    /// One pod, by name (it may not exist yet).
    Name(String),
    /// The managed pods whose labels match.
    Selector(LabelSelector),
}

impl Filter {
    fn matches(&self, state: &PodState) -> bool {
        match self {
            Self::Name(name) => &state.name == name,
            Self::Selector(selector) => selector.matches(&state.labels),
        }
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Update {
    /// The first message: every matching pod now (sorted by name); `not_found` when
    /// following a name that does not exist.
    Snapshot {
        /// The pods.
        pods: Vec<Arc<PodView>>,
        /// The named pod does not exist.
        not_found: bool,
    },
    /// A matching pod was created or changed.
    Pod(Arc<PodView>),
    /// A matching pod is gone.
    Deleted(Arc<PodView>),
    /// An Event about a matching pod.
    Event(Arc<PodEvent>),
    /// After falling behind: the full current state, replacing all before it.
    Resync {
        /// The pods.
        pods: Vec<Arc<PodView>>,
        /// The named pod does not exist.
        not_found: bool,
    },
}

/// A subscription: read updates from it; drop it to unsubscribe.
#[derive(Debug)]
pub struct Subscription {
    /// The updates, snapshot first.
    pub updates: mpsc::Receiver<Update>,
}

/// Starts the watch of a namespace, sending its updates to the given channel, and returns a
/// guard that stops the watch when dropped. Given by the server, so that the hub knows no
/// Kubernetes client.
pub type WatchStarter =
    Arc<dyn Fn(&str, mpsc::Sender<WatchUpdate>) -> Box<dyn std::any::Any + Send> + Send + Sync>;

/// The hub: a handle, cheap to clone.
#[derive(Clone)]
pub struct StatusHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    start_watch: WatchStarter,
    namespaces: Mutex<HashMap<String, NamespaceHandle>>,
}

#[derive(Clone)]
struct NamespaceHandle {
    commands: mpsc::Sender<Subscribe>,
    synced: watch::Receiver<bool>,
}

struct Subscribe {
    filter: Filter,
    reply: oneshot::Sender<Result<Subscription, SubscribeError>>,
    asked: tokio::time::Instant,
}

impl std::fmt::Debug for StatusHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusHub").finish_non_exhaustive()
    }
}

impl StatusHub {
    /// A hub that starts namespace watches with `start_watch`.
    #[must_use]
    pub fn new(start_watch: WatchStarter) -> Self {
        Self {
            inner: Arc::new(HubInner {
                start_watch,
                namespaces: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The namespace's handle, starting its watch and actor on first use.
    fn namespace(&self, namespace: &str) -> NamespaceHandle {
        let mut namespaces = self
            .inner
            .namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(handle) = namespaces.get(namespace)
            && !handle.commands.is_closed()
        {
            return handle.clone();
        }
        let (updates_tx, updates_rx) = mpsc::channel(1024);
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let (synced_tx, synced_rx) = watch::channel(false);
        let watch = (self.inner.start_watch)(namespace, updates_tx);
        let actor = NamespaceActor {
            namespace: namespace.to_owned(),
            pods: BTreeMap::new(),
            listed: None,
            seen_events: HashMap::new(),
            subscribers: Vec::new(),
            pending: Vec::new(),
            last_failure: None,
            synced: synced_tx,
            _watch: watch,
        };
        tokio::spawn(
            actor
                .run(updates_rx, commands_rx)
                .instrument(tracing::info_span!("status_hub", namespace = %namespace)),
        );
        let handle = NamespaceHandle {
            commands: commands_tx,
            synced: synced_rx,
        };
        namespaces.insert(namespace.to_owned(), handle.clone());
        handle
    }

    /// Start watching a namespace now (for the namespaces served from start-up) and wait
    /// until its first list is complete.
    pub async fn watch_and_sync(&self, namespace: &str) {
        let mut synced = self.namespace(namespace).synced;
        // The sender lives as long as the actor, which lives as long as the hub.
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Subscribe to the pods of `namespace` that `filter` selects. Answers once the
    /// namespace's first list is complete, so the snapshot is whole; fails when the API server
    /// forbids the list, or when it has not completed within [`SYNC_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`SubscribeError`].
    pub async fn subscribe(
        &self,
        namespace: &str,
        filter: Filter,
    ) -> Result<Subscription, SubscribeError> {
        let handle = self.namespace(namespace);
        let (reply, answer) = oneshot::channel();
        let asked = tokio::time::Instant::now();
        handle
            .commands
            .send(Subscribe {
                filter,
                reply,
                asked,
            })
            .await
            .map_err(|_| SubscribeError::Closed)?;
        answer.await.map_err(|_| SubscribeError::Closed)?
    }
}

struct Subscriber {
    filter: Filter,
    tx: mpsc::Sender<Update>,
    needs_resync: bool,
}

struct NamespaceActor {
    namespace: String,
    pods: BTreeMap<String, Arc<PodView>>,
    /// During a relist: the names listed so far.
    listed: Option<HashSet<String>>,
    /// Event uid -> resourceVersion, to drop the repeats a relist brings.
    seen_events: HashMap<String, String>,
    subscribers: Vec<Subscriber>,
    /// Subscriptions asked for before the first list completed.
    pending: Vec<Subscribe>,
    /// The last failure of the pod watch before the first list completed.
    last_failure: Option<String>,
    synced: watch::Sender<bool>,
    _watch: Box<dyn std::any::Any + Send>,
}

impl NamespaceActor {
    async fn run(
        mut self,
        mut updates: mpsc::Receiver<WatchUpdate>,
        mut commands: mpsc::Receiver<Subscribe>,
    ) {
        let mut tick = tokio::time::interval(RESYNC_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                update = updates.recv() => match update {
                    Some(update) => self.apply(update),
                    None => return,
                },
                command = commands.recv() => match command {
                    Some(subscribe) => self.subscribe(subscribe),
                    None => return,
                },
                _ = tick.tick() => self.retry_resyncs(),
            }
        }
    }

    fn synced(&self) -> bool {
        *self.synced.borrow()
    }

    fn snapshot(&self, filter: &Filter) -> (Vec<Arc<PodView>>, bool) {
        let pods: Vec<Arc<PodView>> = match filter {
            Filter::Name(name) => self.pods.get(name).cloned().into_iter().collect(),
            Filter::Selector(_) => self
                .pods
                .values()
                .filter(|view| filter.matches(&view.state))
                .cloned()
                .collect(),
        };
        let not_found = matches!(filter, Filter::Name(_)) && pods.is_empty();
        (pods, not_found)
    }

    fn subscribe(&mut self, subscribe: Subscribe) {
        if !self.synced() {
            self.pending.push(subscribe);
            return;
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let (pods, not_found) = self.snapshot(&subscribe.filter);
        // A fresh channel has room for the snapshot.
        let _ = tx.try_send(Update::Snapshot { pods, not_found });
        if subscribe
            .reply
            .send(Ok(Subscription { updates: rx }))
            .is_ok()
        {
            self.subscribers.push(Subscriber {
                filter: subscribe.filter,
                tx,
                needs_resync: false,
            });
        }
    }

    fn apply(&mut self, update: WatchUpdate) {
        match update {
            WatchUpdate::PodsRelisting => self.listed = Some(HashSet::new()),
            WatchUpdate::Pod(state) => {
                if let Some(listed) = &mut self.listed {
                    listed.insert(state.name.clone());
                }
                self.pod_changed(state);
            }
            WatchUpdate::PodsRelisted => self.relisted(),
            WatchUpdate::PodDeleted(state) => self.pod_gone(state),
            WatchUpdate::Event { event, listed } => self.event(event, listed),
            WatchUpdate::PodsWatchFailed { code, message } => {
                if !self.synced() {
                    // Forbidden will not pass by itself: tell the waiting callers now.
                    if code == Some(403) {
                        for subscribe in std::mem::take(&mut self.pending) {
                            let _ = subscribe
                                .reply
                                .send(Err(SubscribeError::Forbidden(message.clone())));
                        }
                    }
                    self.last_failure = Some(message);
                }
            }
        }
    }

    fn pod_changed(&mut self, state: PodState) {
        if self
            .pods
            .get(&state.name)
            .is_some_and(|known| known.state.resource_version == state.resource_version)
        {
            return;
        }
        let view = Arc::new(PodView::new(state));
        self.pods.insert(view.state.name.clone(), Arc::clone(&view));
        if self.synced() {
            self.broadcast(&view.state, &Update::Pod(Arc::clone(&view)));
        }
    }

    fn pod_gone(&mut self, state: PodState) {
        let last = self
            .pods
            .remove(&state.name)
            .map_or(state, |view| view.state.clone());
        let view = Arc::new(PodView::gone(last));
        if self.synced() {
            self.broadcast(&view.state, &Update::Deleted(Arc::clone(&view)));
        }
    }

    fn relisted(&mut self) {
        let listed = self.listed.take().unwrap_or_default();
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|name| !listed.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(view) = self.pods.get(&name) {
                let state = view.state.clone();
                self.pod_gone(state);
            }
        }
        if !self.synced() {
            tracing::info!(pods = self.pods.len(), "namespace synced");
            self.synced.send_replace(true);
            for subscribe in std::mem::take(&mut self.pending) {
                self.subscribe(subscribe);
            }
        }
    }

    fn event(&mut self, event: PodEvent, listed: bool) {
        let version = self.seen_events.get(&event.uid);
        if version.is_some_and(|v| *v == event.resource_version) {
            return;
        }
        if self.seen_events.len() >= SEEN_EVENTS_LIMIT {
            self.seen_events.clear();
        }
        self.seen_events
            .insert(event.uid.clone(), event.resource_version.clone());
        // Events listed before the first sync are history, not news.
        if listed && !self.synced() {
            return;
        }
        let Some(pod) = self.pods.get(&event.pod).map(|view| view.state.clone()) else {
            // Not a managed pod (or not yet known): subscribers by name still want it.
            let event = Arc::new(event);
            let name = event.pod.clone();
            self.send_where(
                |filter| matches!(filter, Filter::Name(n) if *n == name),
                &Update::Event(event),
            );
            return;
        };
        self.broadcast(&pod, &Update::Event(Arc::new(event)));
    }

    fn broadcast(&mut self, pod: &PodState, update: &Update) {
        self.send_where(|filter| filter.matches(pod), update);
    }

    fn send_where(&mut self, wanted: impl Fn(&Filter) -> bool, update: &Update) {
        let mut closed = false;
        for index in 0..self.subscribers.len() {
            if !wanted(&self.subscribers[index].filter) {
                continue;
            }
            if self.subscribers[index].needs_resync {
                // The resync carries the new state; this change is in it.
                closed |= self.resync(index);
                continue;
            }
            match self.subscribers[index].tx.try_send(update.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.subscribers[index].needs_resync = true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
            }
        }
        if closed {
            self.subscribers.retain(|s| !s.tx.is_closed());
        }
    }

    /// Try to send subscriber `index` a resync; true when its channel is closed.
    fn resync(&mut self, index: usize) -> bool {
        let (pods, not_found) = self.snapshot(&self.subscribers[index].filter);
        let subscriber = &mut self.subscribers[index];
        match subscriber.tx.try_send(Update::Resync { pods, not_found }) {
            Ok(()) => {
                subscriber.needs_resync = false;
                false
            }
            Err(mpsc::error::TrySendError::Full(_)) => false,
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    /// Fail the subscriptions that waited too long for the first list.
    fn expire_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|s| now.duration_since(s.asked) >= SYNC_TIMEOUT);
        self.pending = waiting;
        let why = self
            .last_failure
            .clone()
            .unwrap_or_else(|| "no answer from the API server".to_owned());
        for subscribe in expired {
            let _ = subscribe
                .reply
                .send(Err(SubscribeError::NotSynced(why.clone())));
        }
    }

    fn retry_resyncs(&mut self) {
        self.expire_pending();
        let mut closed = false;
        for index in 0..self.subscribers.len() {
            if self.subscribers[index].needs_resync {
                closed |= self.resync(index);
            }
        }
        if closed || self.subscribers.iter().any(|s| s.tx.is_closed()) {
            self.subscribers.retain(|s| !s.tx.is_closed());
        }
        tracing::trace!(namespace = %self.namespace, subscribers = self.subscribers.len(), "tick");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hub whose namespace watches are fed by the test: domain updates in, no cluster.
    fn hub() -> (
        StatusHub,
        mpsc::UnboundedReceiver<(String, mpsc::Sender<WatchUpdate>)>,
    ) {
        let (feeds_tx, feeds_rx) = mpsc::unbounded_channel();
        let starter: WatchStarter = Arc::new(move |namespace, updates| {
            let _ = feeds_tx.send((namespace.to_owned(), updates));
            Box::new(())
        });
        (StatusHub::new(starter), feeds_rx)
    }

    fn pod(name: &str, version: u32) -> PodState {
        PodState {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: version.to_string(),
            phase: "Pending".into(),
            ..PodState::default()
        }
    }

    /// Subscribe to `name` in namespace "ns" from a task of its own: the answer comes only
    /// once the test has fed the namespace's first list.
    fn subscribe_later(
        hub: &StatusHub,
        name: &str,
    ) -> tokio::task::JoinHandle<Result<Subscription, SubscribeError>> {
        let hub = hub.clone();
        let filter = Filter::Name(name.to_owned());
        tokio::spawn(async move { hub.subscribe("ns", filter).await })
    }

    async fn next(subscription: &mut Subscription) -> Update {
        tokio::time::timeout(Duration::from_secs(5), subscription.updates.recv())
            .await
            .expect("an update in time")
            .expect("the hub is running")
    }

    #[tokio::test]
    async fn subscribers_get_a_snapshot_once_synced_then_changes() {
        let (hub, mut feeds) = hub();
        let waiting = subscribe_later(&hub, "web");
        let (namespace, feed) = feeds.recv().await.expect("a watch started");
        assert_eq!(namespace, "ns");
        feed.send(WatchUpdate::PodsRelisting).await.expect("feed");
        feed.send(WatchUpdate::Pod(pod("other", 1)))
            .await
            .expect("feed");
        feed.send(WatchUpdate::PodsRelisted).await.expect("feed");
        let mut sub = waiting.await.expect("task").expect("a subscription");
        match next(&mut sub).await {
            Update::Snapshot { pods, not_found } => {
                assert!(pods.is_empty());
                assert!(not_found, "web does not exist yet");
            }
            other => panic!("not a snapshot: {other:?}"),
        }
        feed.send(WatchUpdate::Pod(pod("other", 2)))
            .await
            .expect("feed");
        feed.send(WatchUpdate::Pod(pod("web", 3)))
            .await
            .expect("feed");
        // The same version again is not news.
        feed.send(WatchUpdate::Pod(pod("web", 3)))
            .await
            .expect("feed");
        feed.send(WatchUpdate::Pod(pod("web", 4)))
            .await
            .expect("feed");
        match next(&mut sub).await {
            Update::Pod(view) => assert_eq!(view.state.resource_version, "3"),
            other => panic!("not web v3: {other:?}"),
        }
        match next(&mut sub).await {
            Update::Pod(view) => assert_eq!(view.state.resource_version, "4"),
            other => panic!("not web v4: {other:?}"),
        }
        feed.send(WatchUpdate::PodDeleted(pod("web", 5)))
            .await
            .expect("feed");
        match next(&mut sub).await {
            Update::Deleted(view) => assert_eq!(view.assessment.health, Health::Deleted),
            other => panic!("not a deletion: {other:?}"),
        }
        // One namespace, one watch, however many subscribers.
        let _second = hub.subscribe("ns", Filter::Name("x".into())).await;
        assert!(feeds.try_recv().is_err(), "a second watch was started");
    }

    #[tokio::test]
    async fn a_relist_reports_the_pods_that_went_away_meanwhile() {
        let (hub, mut feeds) = hub();
        let waiting = subscribe_later(&hub, "web");
        let (_, feed) = feeds.recv().await.expect("a watch started");
        for update in [
            WatchUpdate::PodsRelisting,
            WatchUpdate::Pod(pod("web", 1)),
            WatchUpdate::PodsRelisted,
        ] {
            feed.send(update).await.expect("feed");
        }
        let mut sub = waiting.await.expect("task").expect("a subscription");
        assert!(matches!(next(&mut sub).await, Update::Snapshot { pods, .. } if pods.len() == 1));
        // The watch expired and relisted: web is no longer there.
        feed.send(WatchUpdate::PodsRelisting).await.expect("feed");
        feed.send(WatchUpdate::PodsRelisted).await.expect("feed");
        assert!(matches!(next(&mut sub).await, Update::Deleted(view) if view.state.name == "web"));
    }

    #[tokio::test]
    async fn a_stalled_subscriber_is_resynced_and_never_holds_up_another() {
        let (hub, mut feeds) = hub();
        let slow = subscribe_later(&hub, "web");
        let (_, feed) = feeds.recv().await.expect("a watch started");
        feed.send(WatchUpdate::PodsRelisting).await.expect("feed");
        feed.send(WatchUpdate::PodsRelisted).await.expect("feed");
        let mut slow = slow.await.expect("task").expect("a subscription");
        let mut fast = hub
            .subscribe("ns", Filter::Name("web".into()))
            .await
            .expect("a subscription");
        assert!(matches!(next(&mut fast).await, Update::Snapshot { .. }));

        // Far more changes than a buffer holds; the fast one reads them all as they come.
        let changes = u32::try_from(SUBSCRIBER_BUFFER).expect("small") * 3;
        for version in 1..=changes {
            feed.send(WatchUpdate::Pod(pod("web", version)))
                .await
                .expect("feed");
            match next(&mut fast).await {
                Update::Pod(view) => assert_eq!(view.state.resource_version, version.to_string()),
                other => panic!("fast subscriber got {other:?}"),
            }
        }
        // The slow one now reads: what fit in its buffer, then a resync with the latest state.
        let mut last = None;
        while let Ok(Some(update)) =
            tokio::time::timeout(Duration::from_secs(2), slow.updates.recv()).await
        {
            last = Some(update);
        }
        match last.expect("the slow subscriber got updates") {
            Update::Resync { pods, .. } => {
                assert_eq!(pods[0].state.resource_version, changes.to_string());
            }
            other => panic!("the slow subscriber's last update is not a resync: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_forbidden_list_fails_the_waiting_subscriptions_at_once() {
        let (hub, mut feeds) = hub();
        let waiting = subscribe_later(&hub, "web");
        let (_, feed) = feeds.recv().await.expect("a watch started");
        // A transient failure keeps the caller waiting; a refusal does not.
        feed.send(WatchUpdate::PodsWatchFailed {
            code: None,
            message: "connection refused".into(),
        })
        .await
        .expect("feed");
        feed.send(WatchUpdate::PodsWatchFailed {
            code: Some(403),
            message: "pods is forbidden".into(),
        })
        .await
        .expect("feed");
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("an answer in time")
            .expect("task");
        assert_eq!(
            answer.map(|_| ()),
            Err(SubscribeError::Forbidden("pods is forbidden".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscription_fails_when_the_first_list_never_completes() {
        let (hub, mut feeds) = hub();
        let waiting = subscribe_later(&hub, "web");
        let (_, feed) = feeds.recv().await.expect("a watch started");
        feed.send(WatchUpdate::PodsWatchFailed {
            code: None,
            message: "connection refused".into(),
        })
        .await
        .expect("feed");
        let answer = waiting.await.expect("task");
        assert_eq!(
            answer.map(|_| ()),
            Err(SubscribeError::NotSynced("connection refused".into()))
        );
        drop(feed);
    }
}
