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
use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument as _;

use crate::domain::status::assess;
use crate::domain::{Assessment, Health, LabelSelector, ObjectEvent, ObjectKind, PodState, Reason};

pub mod rollout;

/// How many updates a subscriber may have waiting before it is marked for a resync.
pub const SUBSCRIBER_BUFFER: usize = 64;
/// How often the actor retries the resync of subscribers that fell behind.
const RESYNC_TICK: Duration = Duration::from_millis(200);
/// How many Event versions a namespace remembers to drop repeats after a relist.
const SEEN_EVENTS_LIMIT: usize = 20_000;
/// How long a subscription waits for its namespace's first list before it fails.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// What the feed of a namespace reports to the hub, in the order the cluster made it.
#[derive(Debug, Clone)]
pub enum FeedUpdate {
    /// A (re)list of the pods begins; the pods listed follow as [`FeedUpdate::Pod`].
    PodsRelisting,
    /// A pod exists in this state (created, changed, or listed).
    Pod(PodState),
    /// The (re)list is complete: pods known before and not listed since are gone.
    PodsRelisted,
    /// A pod is gone.
    PodDeleted(PodState),
    /// An Event about a pod, a ReplicaSet or a Deployment. `listed` when it came from a
    /// (re)list rather than as it happened.
    Event {
        /// The event.
        event: ObjectEvent,
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

/// What feeds the hub: starts the watch of a namespace. The Kubernetes adapter implements it,
/// so that the hub knows no Kubernetes client.
pub trait NamespaceFeed: Send + Sync {
    /// Start feeding the updates of `namespace` to `updates`, until the returned guard is
    /// dropped or the receiver is gone.
    fn start(&self, namespace: &str, updates: mpsc::Sender<FeedUpdate>) -> FeedGuard;
}

/// The running tasks of a namespace's feed: dropping the guard aborts them.
#[derive(Debug, Default)]
pub struct FeedGuard {
    tasks: Vec<AbortHandle>,
}

impl FeedGuard {
    /// A guard of these tasks.
    #[must_use]
    pub fn new(tasks: impl IntoIterator<Item = AbortHandle>) -> Self {
        Self {
            tasks: tasks.into_iter().collect(),
        }
    }
}

impl Drop for FeedGuard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

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
    /// Every managed pod, and the Events about pods, ReplicaSets and Deployments: what the
    /// [`rollout::RolloutHub`] follows. The other filters get Events about pods only.
    Rollouts,
}

impl Filter {
    fn matches(&self, state: &PodState) -> bool {
        match self {
            Self::Name(name) => &state.name == name,
            Self::Selector(selector) => selector.matches(&state.labels),
            Self::Rollouts => true,
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
    /// An Event about a matching pod (and, for [`Filter::Rollouts`], about a ReplicaSet or
    /// a Deployment).
    Event(Arc<ObjectEvent>),
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

/// The hub: a handle, cheap to clone.
#[derive(Clone)]
pub struct StatusHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    feed: Arc<dyn NamespaceFeed>,
    actors: Actors<NamespaceHandle>,
}

/// The actors of the namespaces in use, one per namespace, with the handles that reach them:
/// the bookkeeping every hub shares.
pub(crate) struct Actors<H> {
    state: Mutex<ActorsState<H>>,
}

struct ActorsState<H> {
    namespaces: HashMap<String, H>,
    /// The namespace actors, awaited by [`Actors::shutdown`].
    tasks: JoinSet<()>,
    /// Set by [`Actors::shutdown`]: no namespace starts after it.
    closed: bool,
}

/// What [`Actors`] needs of a namespace actor's handle.
pub(crate) trait ActorHandle: Clone {
    /// Whether the actor still takes commands. An actor only ends on shutdown or when what
    /// feeds it failed; the next subscription then starts a new one.
    fn is_running(&self) -> bool;
}

impl<H: ActorHandle> Actors<H> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(ActorsState {
                namespaces: HashMap::new(),
                tasks: JoinSet::new(),
                closed: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActorsState<H>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The handle of `namespace`'s actor. When none runs, `start` makes the handle and the
    /// actor's future, which is spawned (`start` runs under the lock: it must not block).
    pub(crate) fn get_or_start<F>(
        &self,
        namespace: &str,
        start: impl FnOnce() -> (H, F),
    ) -> Result<H, SubscribeError>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut state = self.state();
        if state.closed {
            return Err(SubscribeError::Closed);
        }
        if let Some(handle) = state.namespaces.get(namespace)
            && handle.is_running()
        {
            return Ok(handle.clone());
        }
        while let Some(ended) = state.tasks.try_join_next() {
            log_actor_end(ended);
        }
        let (handle, actor) = start();
        state.tasks.spawn(actor);
        state
            .namespaces
            .insert(namespace.to_owned(), handle.clone());
        Ok(handle)
    }

    /// Stop every actor and wait until they have ended; nothing starts after this.
    pub(crate) async fn shutdown(&self) {
        let mut tasks = {
            let mut state = self.state();
            state.closed = true;
            state.namespaces.clear();
            std::mem::take(&mut state.tasks)
        };
        // The actors hold no state worth saving: abort them (their feeds stop with them).
        tasks.abort_all();
        while let Some(ended) = tasks.join_next().await {
            log_actor_end(ended);
        }
    }
}

#[derive(Clone)]
struct NamespaceHandle {
    commands: mpsc::Sender<Subscribe>,
    synced: watch::Receiver<bool>,
}

impl ActorHandle for NamespaceHandle {
    fn is_running(&self) -> bool {
        self.commands.is_running()
    }
}

/// An actor reached by a channel of commands runs while the channel is open.
impl<T> ActorHandle for mpsc::Sender<T> {
    fn is_running(&self) -> bool {
        !self.is_closed()
    }
}

type Subscribe = Pending<Filter, Subscription>;

impl std::fmt::Debug for StatusHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusHub").finish_non_exhaustive()
    }
}

impl StatusHub {
    /// A hub whose namespaces are fed by `feed`.
    #[must_use]
    pub fn new(feed: Arc<dyn NamespaceFeed>) -> Self {
        Self {
            inner: Arc::new(HubInner {
                feed,
                actors: Actors::new(),
            }),
        }
    }

    /// The namespace's handle, starting its feed and actor on first use.
    fn namespace(&self, namespace: &str) -> Result<NamespaceHandle, SubscribeError> {
        self.inner.actors.get_or_start(namespace, || {
            let (updates_tx, updates_rx) = mpsc::channel(1024);
            let (commands_tx, commands_rx) = mpsc::channel(256);
            let (synced_tx, synced_rx) = watch::channel(false);
            let feed = self.inner.feed.start(namespace, updates_tx);
            let actor = NamespaceActor {
                namespace: namespace.to_owned(),
                pods: BTreeMap::new(),
                listed: None,
                seen_events: HashMap::new(),
                subscribers: Subscribers::new(),
                pending: PendingList::new(),
                last_failure: None,
                synced: synced_tx,
                _feed: feed,
            };
            let handle = NamespaceHandle {
                commands: commands_tx,
                synced: synced_rx,
            };
            let actor = actor
                .run(updates_rx, commands_rx)
                .instrument(tracing::info_span!("status_hub", namespace = %namespace));
            (handle, actor)
        })
    }

    /// Start watching a namespace now (for the namespaces served from start-up) and wait
    /// until its first list is complete (or the hub shuts down).
    pub async fn watch_and_sync(&self, namespace: &str) {
        let Ok(handle) = self.namespace(namespace) else {
            return;
        };
        let mut synced = handle.synced;
        // Fails only when the actor is gone, on shutdown.
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Stop every namespace actor and its feed, and wait until they have ended. Subscribers'
    /// channels close, so their streams end; a subscription asked for after this fails with
    /// [`SubscribeError::Closed`].
    pub async fn shutdown(&self) {
        self.inner.actors.shutdown().await;
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
        let handle = self.namespace(namespace)?;
        ask(&handle.commands, filter).await
    }
}

/// Ask a namespace actor for a subscription to what `filter` selects, and wait for its
/// answer.
async fn ask<F, S>(commands: &mpsc::Sender<Pending<F, S>>, filter: F) -> Result<S, SubscribeError> {
    let (reply, answer) = oneshot::channel();
    commands
        .send(Pending {
            filter,
            reply,
            asked: tokio::time::Instant::now(),
        })
        .await
        .map_err(|_| SubscribeError::Closed)?;
    answer.await.map_err(|_| SubscribeError::Closed)?
}

/// A namespace actor that ended other than by being aborted: a panic is a bug worth a log.
fn log_actor_end(ended: Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended
        && error.is_panic()
    {
        tracing::error!(%error, "a namespace actor panicked");
    }
}

/// A subscription asked for and not answered yet: what it follows, and where the answer goes.
pub(crate) struct Pending<F, S> {
    pub(crate) filter: F,
    pub(crate) reply: oneshot::Sender<Result<S, SubscribeError>>,
    pub(crate) asked: tokio::time::Instant,
}

/// The subscriptions that wait for a namespace's first list.
pub(crate) struct PendingList<F, S>(Vec<Pending<F, S>>);

impl<F, S> PendingList<F, S> {
    pub(crate) fn new() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn push(&mut self, pending: Pending<F, S>) {
        self.0.push(pending);
    }

    /// Every waiting subscription, for an answer now.
    pub(crate) fn take(&mut self) -> Vec<Pending<F, S>> {
        std::mem::take(&mut self.0)
    }

    /// Fail every waiting subscription with `error`.
    pub(crate) fn refuse(&mut self, error: &SubscribeError) {
        for pending in self.take() {
            let _ = pending.reply.send(Err(error.clone()));
        }
    }

    /// Fail the subscriptions that waited [`SYNC_TIMEOUT`], saying why (`last_failure`).
    pub(crate) fn expire(&mut self, last_failure: Option<&str>) {
        if self.0.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        let (expired, waiting): (Vec<_>, Vec<_>) = self
            .take()
            .into_iter()
            .partition(|s| now.duration_since(s.asked) >= SYNC_TIMEOUT);
        self.0 = waiting;
        let why = last_failure.unwrap_or("no answer from the API server");
        for pending in expired {
            let _ = pending
                .reply
                .send(Err(SubscribeError::NotSynced(why.to_owned())));
        }
    }
}

/// The subscribers of a namespace actor, each with its bounded channel, and the rule that
/// keeps the actor from ever waiting for one: a full channel drops the change and marks its
/// subscriber for a resync, sent (built by the actor's `resync`) as soon as there is room.
pub(crate) struct Subscribers<F, U> {
    list: Vec<Subscriber<F, U>>,
}

struct Subscriber<F, U> {
    filter: F,
    tx: mpsc::Sender<U>,
    needs_resync: bool,
}

impl<F, U: Clone> Subscribers<F, U> {
    pub(crate) fn new() -> Self {
        Self { list: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Answer `pending` with a fresh channel that holds `first` (the snapshot).
    pub(crate) fn add<S>(
        &mut self,
        pending: Pending<F, S>,
        first: U,
        subscription: impl FnOnce(mpsc::Receiver<U>) -> S,
    ) {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        // A fresh channel has room for the snapshot.
        let _ = tx.try_send(first);
        if pending.reply.send(Ok(subscription(rx))).is_ok() {
            self.list.push(Subscriber {
                filter: pending.filter,
                tx,
                needs_resync: false,
            });
        }
    }

    /// Send `update` to every subscriber whose filter is `wanted`; one that owes a resync
    /// gets `resync(filter)` instead, which carries this change too.
    pub(crate) fn send_where(
        &mut self,
        wanted: impl Fn(&F) -> bool,
        update: &U,
        resync: impl Fn(&F) -> U,
    ) {
        let mut closed = false;
        for subscriber in &mut self.list {
            if !wanted(&subscriber.filter) {
                continue;
            }
            if subscriber.needs_resync {
                closed |= subscriber.resync(&resync);
                continue;
            }
            match subscriber.tx.try_send(update.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => subscriber.needs_resync = true,
                Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
            }
        }
        if closed {
            self.list.retain(|s| !s.tx.is_closed());
        }
    }

    /// Owe every subscriber a resync (what fed the actor was replaced), and try to send it.
    pub(crate) fn resync_all(&mut self, resync: impl Fn(&F) -> U) {
        for subscriber in &mut self.list {
            subscriber.needs_resync = true;
        }
        self.retry_resyncs(resync);
    }

    /// Try again the resyncs owed; forget the subscribers that left.
    pub(crate) fn retry_resyncs(&mut self, resync: impl Fn(&F) -> U) {
        for subscriber in &mut self.list {
            if subscriber.needs_resync {
                subscriber.resync(&resync);
            }
        }
        self.list.retain(|s| !s.tx.is_closed());
    }
}

impl<F, U> Subscriber<F, U> {
    /// Try to send the resync; true when the channel is closed.
    fn resync(&mut self, resync: &impl Fn(&F) -> U) -> bool {
        match self.tx.try_send(resync(&self.filter)) {
            Ok(()) => {
                self.needs_resync = false;
                false
            }
            Err(mpsc::error::TrySendError::Full(_)) => false,
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }
}

struct NamespaceActor {
    namespace: String,
    pods: BTreeMap<String, Arc<PodView>>,
    /// During a relist: the names listed so far.
    listed: Option<HashSet<String>>,
    /// Event uid -> resourceVersion, to drop the repeats a relist brings.
    seen_events: HashMap<String, String>,
    subscribers: Subscribers<Filter, Update>,
    /// Subscriptions asked for before the first list completed.
    pending: PendingList<Filter, Subscription>,
    /// The last failure of the pod watch before the first list completed.
    last_failure: Option<String>,
    synced: watch::Sender<bool>,
    /// Stops the namespace's feed when the actor ends.
    _feed: FeedGuard,
}

/// The pods `filter` selects, and whether a pod followed by name is missing.
fn snapshot(pods: &BTreeMap<String, Arc<PodView>>, filter: &Filter) -> (Vec<Arc<PodView>>, bool) {
    let pods: Vec<Arc<PodView>> = match filter {
        Filter::Name(name) => pods.get(name).cloned().into_iter().collect(),
        Filter::Selector(_) | Filter::Rollouts => pods
            .values()
            .filter(|view| filter.matches(&view.state))
            .cloned()
            .collect(),
    };
    let not_found = matches!(filter, Filter::Name(_)) && pods.is_empty();
    (pods, not_found)
}

/// The resync of a subscriber that fell behind.
fn resync(pods: &BTreeMap<String, Arc<PodView>>, filter: &Filter) -> Update {
    let (pods, not_found) = snapshot(pods, filter);
    Update::Resync { pods, not_found }
}

impl NamespaceActor {
    async fn run(
        mut self,
        mut updates: mpsc::Receiver<FeedUpdate>,
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

    fn subscribe(&mut self, subscribe: Subscribe) {
        if !self.synced() {
            self.pending.push(subscribe);
            return;
        }
        let (pods, not_found) = snapshot(&self.pods, &subscribe.filter);
        self.subscribers
            .add(subscribe, Update::Snapshot { pods, not_found }, |updates| {
                Subscription { updates }
            });
    }

    fn apply(&mut self, update: FeedUpdate) {
        match update {
            FeedUpdate::PodsRelisting => self.listed = Some(HashSet::new()),
            FeedUpdate::Pod(state) => {
                if let Some(listed) = &mut self.listed {
                    listed.insert(state.name.clone());
                }
                self.pod_changed(state);
            }
            FeedUpdate::PodsRelisted => self.relisted(),
            FeedUpdate::PodDeleted(state) => self.pod_gone(state),
            FeedUpdate::Event { event, listed } => self.event(event, listed),
            FeedUpdate::PodsWatchFailed { code, message } => {
                if !self.synced() {
                    // Forbidden will not pass by itself: tell the waiting callers now.
                    if code == Some(403) {
                        self.pending
                            .refuse(&SubscribeError::Forbidden(message.clone()));
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
            for subscribe in self.pending.take() {
                self.subscribe(subscribe);
            }
        }
    }

    fn event(&mut self, event: ObjectEvent, listed: bool) {
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
        if event.kind != ObjectKind::Pod {
            // About a ReplicaSet or a Deployment: for the rollout hub, which knows whose.
            self.send_where(
                |filter| matches!(filter, Filter::Rollouts),
                &Update::Event(Arc::new(event)),
            );
            return;
        }
        let Some(pod) = self.pods.get(&event.name).map(|view| view.state.clone()) else {
            // Not a managed pod (or not yet known): subscribers by name still want it.
            let event = Arc::new(event);
            let name = event.name.clone();
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
        let pods = &self.pods;
        self.subscribers
            .send_where(wanted, update, |filter| resync(pods, filter));
    }

    fn retry_resyncs(&mut self) {
        self.pending.expire(self.last_failure.as_deref());
        let pods = &self.pods;
        self.subscribers
            .retry_resyncs(|filter| resync(pods, filter));
        tracing::trace!(namespace = %self.namespace, subscribers = self.subscribers.len(), "tick");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands each namespace's feed channel to the test: domain updates in, no cluster.
    struct TestFeed(mpsc::UnboundedSender<(String, mpsc::Sender<FeedUpdate>)>);

    impl NamespaceFeed for TestFeed {
        fn start(&self, namespace: &str, updates: mpsc::Sender<FeedUpdate>) -> FeedGuard {
            let _ = self.0.send((namespace.to_owned(), updates));
            FeedGuard::default()
        }
    }

    /// A hub whose namespace feeds are driven by the test.
    fn hub() -> (
        StatusHub,
        mpsc::UnboundedReceiver<(String, mpsc::Sender<FeedUpdate>)>,
    ) {
        let (feeds_tx, feeds_rx) = mpsc::unbounded_channel();
        (StatusHub::new(Arc::new(TestFeed(feeds_tx))), feeds_rx)
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
        feed.send(FeedUpdate::PodsRelisting).await.expect("feed");
        feed.send(FeedUpdate::Pod(pod("other", 1)))
            .await
            .expect("feed");
        feed.send(FeedUpdate::PodsRelisted).await.expect("feed");
        let mut sub = waiting.await.expect("task").expect("a subscription");
        match next(&mut sub).await {
            Update::Snapshot { pods, not_found } => {
                assert!(pods.is_empty());
                assert!(not_found, "web does not exist yet");
            }
            other => panic!("not a snapshot: {other:?}"),
        }
        feed.send(FeedUpdate::Pod(pod("other", 2)))
            .await
            .expect("feed");
        feed.send(FeedUpdate::Pod(pod("web", 3)))
            .await
            .expect("feed");
        // The same version again is not news.
        feed.send(FeedUpdate::Pod(pod("web", 3)))
            .await
            .expect("feed");
        feed.send(FeedUpdate::Pod(pod("web", 4)))
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
        feed.send(FeedUpdate::PodDeleted(pod("web", 5)))
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
            FeedUpdate::PodsRelisting,
            FeedUpdate::Pod(pod("web", 1)),
            FeedUpdate::PodsRelisted,
        ] {
            feed.send(update).await.expect("feed");
        }
        let mut sub = waiting.await.expect("task").expect("a subscription");
        assert!(matches!(next(&mut sub).await, Update::Snapshot { pods, .. } if pods.len() == 1));
        // The watch expired and relisted: web is no longer there.
        feed.send(FeedUpdate::PodsRelisting).await.expect("feed");
        feed.send(FeedUpdate::PodsRelisted).await.expect("feed");
        assert!(matches!(next(&mut sub).await, Update::Deleted(view) if view.state.name == "web"));
    }

    #[tokio::test]
    async fn a_stalled_subscriber_is_resynced_and_never_holds_up_another() {
        let (hub, mut feeds) = hub();
        let slow = subscribe_later(&hub, "web");
        let (_, feed) = feeds.recv().await.expect("a watch started");
        feed.send(FeedUpdate::PodsRelisting).await.expect("feed");
        feed.send(FeedUpdate::PodsRelisted).await.expect("feed");
        let mut slow = slow.await.expect("task").expect("a subscription");
        let mut fast = hub
            .subscribe("ns", Filter::Name("web".into()))
            .await
            .expect("a subscription");
        assert!(matches!(next(&mut fast).await, Update::Snapshot { .. }));

        // Far more changes than a buffer holds; the fast one reads them all as they come.
        let changes = u32::try_from(SUBSCRIBER_BUFFER).expect("small") * 3;
        for version in 1..=changes {
            feed.send(FeedUpdate::Pod(pod("web", version)))
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
        feed.send(FeedUpdate::PodsWatchFailed {
            code: None,
            message: "connection refused".into(),
        })
        .await
        .expect("feed");
        feed.send(FeedUpdate::PodsWatchFailed {
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
        feed.send(FeedUpdate::PodsWatchFailed {
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

    #[tokio::test]
    async fn shutdown_ends_the_actors_their_feeds_and_the_subscriptions() {
        let (hub, mut feeds) = hub();
        let waiting = subscribe_later(&hub, "web");
        let (_, feed) = feeds.recv().await.expect("a watch started");
        feed.send(FeedUpdate::PodsRelisting).await.expect("feed");
        feed.send(FeedUpdate::PodsRelisted).await.expect("feed");
        let mut sub = waiting.await.expect("task").expect("a subscription");
        assert!(matches!(next(&mut sub).await, Update::Snapshot { .. }));

        tokio::time::timeout(Duration::from_secs(5), hub.shutdown())
            .await
            .expect("the hub stops in time");
        // The actor is gone: its end of the feed is closed and the subscription ends.
        assert!(feed.is_closed(), "the namespace actor still runs");
        assert!(
            sub.updates.recv().await.is_none(),
            "the subscription is still open"
        );
        // And nothing starts again.
        assert_eq!(
            hub.subscribe("ns", Filter::Name("web".into()))
                .await
                .map(|_| ()),
            Err(SubscribeError::Closed)
        );
        assert!(
            feeds.try_recv().is_err(),
            "a watch was started after shutdown"
        );
    }

    #[tokio::test]
    async fn dropping_a_feed_guard_aborts_its_tasks() {
        let task = tokio::spawn(std::future::pending::<()>());
        drop(FeedGuard::new([task.abort_handle()]));
        let ended = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends in time");
        assert!(ended.is_err_and(|error| error.is_cancelled()));
    }
}
