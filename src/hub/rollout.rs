//! The rollout hub: one owner of the rollouts of each namespace in use, fanning them out to
//! every subscriber of a Deployment.
//!
//! Same architecture as the [`StatusHub`]: each namespace has an actor task that alone owns
//! its managed Deployments and ReplicaSets (fed by the namespace's one Deployment watch and
//! one ReplicaSet watch, started when its first rollout subscriber comes), its managed pods
//! and the Events about them (from ONE subscription to the [`StatusHub`], so that pods and
//! Events keep their single upstream watch), the view of each Deployment, and its
//! subscribers. A subscriber follows one Deployment by name (it may not exist yet): first a
//! snapshot, then `Progress` whenever the Deployment's view changes as a caller sees it
//! (its status, a ReplicaSet, the assessment of its rollout), its pods' changes, the Events
//! about the Deployment, its ReplicaSets and its pods, and `Deleted` when it goes. A slow
//! subscriber is resynced, never waited for.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::{
    Actors, FeedGuard, Filter, Pending, PendingList, PodView, RESYNC_TICK, StatusHub,
    SubscribeError, Subscribers, Subscription, Update,
};
use crate::domain::rollout::{DeploymentState, DeploymentView, PodOfRollout, ReplicaSetState};
use crate::domain::{ObjectEvent, ObjectKind, PodState};

/// One list-and-watch of a kind of object, as a feed reports it, in the order the cluster
/// made it.
#[derive(Debug, Clone)]
pub enum Listing<T> {
    /// A (re)list begins; the objects listed follow as [`Listing::Object`].
    Relisting,
    /// An object exists in this state (created, changed, or listed).
    Object(T),
    /// The (re)list is complete: objects known before and not listed since are gone.
    Relisted,
    /// An object is gone.
    Deleted(T),
    /// The watch failed and will retry.
    Failed {
        /// The API server's HTTP status, when it answered (403: the deployer may not watch).
        code: Option<u16>,
        /// What failed, for logs and for a caller waiting on the first list.
        message: String,
    },
}

/// What the workload feed of a namespace reports to the rollout hub.
#[derive(Debug, Clone)]
pub enum WorkloadUpdate {
    /// About the managed Deployments.
    Deployment(Listing<DeploymentState>),
    /// About the managed ReplicaSets.
    ReplicaSet(Listing<ReplicaSetState>),
}

/// What feeds the rollout hub: starts the Deployment and ReplicaSet watches of a namespace.
/// The Kubernetes adapter implements it, so that the hub knows no Kubernetes client.
pub trait WorkloadFeed: Send + Sync {
    /// Start feeding the updates of `namespace` to `updates`, until the returned guard is
    /// dropped or the receiver is gone.
    fn start(&self, namespace: &str, updates: mpsc::Sender<WorkloadUpdate>) -> FeedGuard;
}

/// A Deployment and its pods at one moment.
#[derive(Debug, Clone, Default)]
pub struct RolloutSnapshot {
    /// The Deployment's view; `None` when it does not exist (yet).
    pub deployment: Option<Arc<DeploymentView>>,
    /// Its pods (of every ReplicaSet), sorted by name.
    pub pods: Vec<Arc<PodView>>,
}

/// What a subscriber of a Deployment receives.
#[derive(Debug, Clone)]
pub enum RolloutUpdate {
    /// The first message: the Deployment and its pods now.
    Snapshot(RolloutSnapshot),
    /// The Deployment, one of its ReplicaSets or the assessment of its rollout changed.
    Progress(Arc<DeploymentView>),
    /// One of its pods was created or changed.
    Pod(Arc<PodView>),
    /// One of its pods is gone.
    PodDeleted(Arc<PodView>),
    /// An Event about the Deployment, one of its ReplicaSets or one of its pods.
    Event(Arc<ObjectEvent>),
    /// The Deployment is gone (its last view).
    Deleted(Arc<DeploymentView>),
    /// After falling behind: the full current state, replacing all before it.
    Resync(RolloutSnapshot),
}

/// A subscription to one Deployment: read updates from it; drop it to unsubscribe.
#[derive(Debug)]
pub struct RolloutSubscription {
    /// The updates, snapshot first.
    pub updates: mpsc::Receiver<RolloutUpdate>,
}

/// The rollout hub: a handle, cheap to clone.
#[derive(Clone)]
pub struct RolloutHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    feed: Arc<dyn WorkloadFeed>,
    pods: StatusHub,
    /// Each namespace actor, reached by its channel of subscriptions.
    actors: Actors<mpsc::Sender<Subscribe>>,
}

/// A subscription asked for: the Deployment's name, and where the answer goes.
type Subscribe = Pending<String, RolloutSubscription>;

impl std::fmt::Debug for RolloutHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutHub").finish_non_exhaustive()
    }
}

impl RolloutHub {
    /// A hub whose namespaces' Deployments and ReplicaSets are fed by `feed`, and whose pods
    /// and Events come from `pods`.
    #[must_use]
    pub fn new(feed: Arc<dyn WorkloadFeed>, pods: StatusHub) -> Self {
        Self {
            inner: Arc::new(HubInner {
                feed,
                pods,
                actors: Actors::new(),
            }),
        }
    }

    /// The namespace's handle, starting its feed and actor on first use.
    fn namespace(&self, namespace: &str) -> Result<mpsc::Sender<Subscribe>, SubscribeError> {
        self.inner.actors.get_or_start(namespace, || {
            let (updates_tx, updates_rx) = mpsc::channel(1024);
            let (commands_tx, commands_rx) = mpsc::channel(256);
            let actor = RolloutActor {
                namespace: namespace.to_owned(),
                state: Rollouts::default(),
                subscribers: Subscribers::new(),
                pending: PendingList::new(),
                last_failure: None,
                forbidden: None,
                _feed: self.inner.feed.start(namespace, updates_tx),
            };
            let actor = actor
                .run(self.inner.pods.clone(), updates_rx, commands_rx)
                .instrument(tracing::info_span!("rollout_hub", namespace = %namespace));
            (commands_tx, actor)
        })
    }

    /// Follow the Deployment `name` of `namespace` (it may not exist yet). Answers once the
    /// namespace's Deployments, ReplicaSets and pods are listed, so the snapshot is whole;
    /// fails as [`StatusHub::subscribe`] does.
    ///
    /// # Errors
    ///
    /// [`SubscribeError`].
    pub async fn subscribe(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<RolloutSubscription, SubscribeError> {
        let commands = self.namespace(namespace)?;
        super::ask(&commands, name.to_owned()).await
    }

    /// Stop every namespace actor and its feeds, and wait until they have ended. Subscribers'
    /// channels close, so their streams end; a subscription asked for after this fails with
    /// [`SubscribeError::Closed`].
    pub async fn shutdown(&self) {
        self.inner.actors.shutdown().await;
    }
}

/// The objects of one kind, by name, with their (re)list in progress.
struct Store<T> {
    objects: BTreeMap<String, T>,
    /// During a relist: the names listed so far.
    listing: Option<HashSet<String>>,
    /// The first list is complete.
    listed: bool,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            listing: None,
            listed: false,
        }
    }
}

/// What a [`Listing`] changed in a [`Store`].
enum Change<T> {
    /// Created or changed; the state before, if any.
    Changed { name: String, before: Option<T> },
    /// Gone; its last state.
    Gone(T),
}

/// What a [`Store`] needs of its objects.
trait Object: Clone {
    fn name(&self) -> &str;
    fn resource_version(&self) -> &str;
}

impl Object for DeploymentState {
    fn name(&self) -> &str {
        &self.name
    }
    fn resource_version(&self) -> &str {
        &self.resource_version
    }
}

impl Object for ReplicaSetState {
    fn name(&self) -> &str {
        &self.name
    }
    fn resource_version(&self) -> &str {
        &self.resource_version
    }
}

impl<T: Object> Store<T> {
    /// Apply one item of the list-and-watch (a failure is the caller's to handle).
    fn apply(&mut self, listing: Listing<T>) -> Vec<Change<T>> {
        match listing {
            Listing::Relisting => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            Listing::Object(object) => {
                let name = object.name().to_owned();
                if let Some(listing) = &mut self.listing {
                    listing.insert(name.clone());
                }
                if self
                    .objects
                    .get(&name)
                    .is_some_and(|known| known.resource_version() == object.resource_version())
                {
                    return Vec::new();
                }
                let before = self.objects.insert(name.clone(), object);
                vec![Change::Changed { name, before }]
            }
            Listing::Deleted(object) => {
                let last = self.objects.remove(object.name()).unwrap_or(object);
                vec![Change::Gone(last)]
            }
            Listing::Relisted => {
                let listed = self.listing.take().unwrap_or_default();
                self.listed = true;
                let gone: Vec<String> = self
                    .objects
                    .keys()
                    .filter(|name| !listed.contains(*name))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|name| self.objects.remove(&name))
                    .map(Change::Gone)
                    .collect()
            }
            Listing::Failed { .. } => Vec::new(),
        }
    }
}

/// The state of a namespace's rollouts, as its actor owns it.
#[derive(Default)]
struct Rollouts {
    deployments: Store<DeploymentState>,
    replica_sets: Store<ReplicaSetState>,
    pods: BTreeMap<String, Arc<PodView>>,
    /// The last view of each Deployment, as its subscribers know it.
    views: BTreeMap<String, Arc<DeploymentView>>,
}

/// The ReplicaSet that controls a pod, if any.
fn owning_replica_set(pod: &PodState) -> Option<&str> {
    pod.owners
        .iter()
        .find(|owner| owner.controller && owner.kind == "ReplicaSet")
        .map(|owner| owner.name.as_str())
}

/// Whether two views of a Deployment differ in anything a caller sees: resource versions
/// alone change with every status write the controllers make, and are not news.
fn same_to_a_caller(a: &DeploymentView, b: &DeploymentView) -> bool {
    fn unversioned(view: &DeploymentView) -> DeploymentView {
        let mut view = view.clone();
        view.state.resource_version.clear();
        for rs in &mut view.replica_sets {
            rs.resource_version.clear();
        }
        view
    }
    unversioned(a) == unversioned(b)
}

impl Rollouts {
    fn synced(&self) -> bool {
        self.deployments.listed && self.replica_sets.listed
    }

    /// The Deployment a pod belongs to: its ReplicaSet's owner, or while that ReplicaSet is
    /// not known yet (the watches are separate), the Deployment whose template labels it
    /// carries. Pods that no ReplicaSet controls (Deploy's bare pods) belong to none.
    fn deployment_of(&self, pod: &PodState) -> Option<String> {
        let replica_set = owning_replica_set(pod)?;
        if let Some(replica_set) = self.replica_sets.objects.get(replica_set) {
            return replica_set.owner.clone();
        }
        self.deployments
            .objects
            .values()
            .find(|d| {
                !d.selector.is_empty()
                    && d.selector
                        .iter()
                        .all(|(key, value)| pod.labels.get(key) == Some(value))
            })
            .map(|d| d.name.clone())
    }

    fn pods_of(&self, name: &str) -> Vec<Arc<PodView>> {
        self.pods
            .values()
            .filter(|pod| self.deployment_of(&pod.state).as_deref() == Some(name))
            .cloned()
            .collect()
    }

    /// The view of Deployment `name` now, if it exists.
    fn view_of(&self, name: &str) -> Option<DeploymentView> {
        let state = self.deployments.objects.get(name)?;
        let pods = self.pods_of(name);
        let pods: Vec<PodOfRollout<'_>> = pods
            .iter()
            .map(|pod| PodOfRollout {
                state: &pod.state,
                assessment: &pod.assessment,
            })
            .collect();
        let replica_sets = self
            .replica_sets
            .objects
            .values()
            .filter(|rs| rs.owner.as_deref() == Some(name))
            .cloned();
        Some(DeploymentView::new(
            state.clone(),
            replica_sets,
            None,
            &pods,
        ))
    }

    /// Recompute Deployment `name`'s view; the new view when a caller would see a change.
    fn refresh(&mut self, name: &str) -> Option<Arc<DeploymentView>> {
        let view = Arc::new(self.view_of(name)?);
        let news = self
            .views
            .get(name)
            .is_none_or(|known| !same_to_a_caller(known, &view));
        self.views.insert(name.to_owned(), Arc::clone(&view));
        news.then_some(view)
    }

    fn snapshot(&self, name: &str) -> RolloutSnapshot {
        RolloutSnapshot {
            deployment: self.views.get(name).cloned(),
            pods: self.pods_of(name),
        }
    }
}

struct RolloutActor {
    namespace: String,
    state: Rollouts,
    subscribers: Subscribers<String, RolloutUpdate>,
    /// Subscriptions asked for before the first lists completed.
    pending: PendingList<String, RolloutSubscription>,
    /// The last failure of a watch before the first lists completed.
    last_failure: Option<String>,
    /// That failure, when it was a refusal (403).
    forbidden: Option<String>,
    /// Stops the namespace's Deployment and ReplicaSet watches when the actor ends.
    _feed: FeedGuard,
}

impl RolloutActor {
    async fn run(
        mut self,
        pods: StatusHub,
        mut updates: mpsc::Receiver<WorkloadUpdate>,
        mut commands: mpsc::Receiver<Subscribe>,
    ) {
        // The pods and Events, from the namespace's one pod watch and one Event watch. The
        // Deployment and ReplicaSet watches list meanwhile; subscriptions wait in `commands`.
        let mut pod_updates = match pods.subscribe(&self.namespace, Filter::Rollouts).await {
            Ok(Subscription { updates }) => updates,
            Err(error) => {
                tracing::debug!(%error, "the pods of the namespace cannot be followed");
                commands.close();
                while let Some(subscribe) = commands.recv().await {
                    let _ = subscribe.reply.send(Err(error.clone()));
                }
                return;
            }
        };
        // Its snapshot is waiting already: the pods are known before any subscriber is served.
        if let Some(snapshot) = pod_updates.recv().await {
            self.pods(snapshot);
        }
        let mut tick = tokio::time::interval(RESYNC_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                update = updates.recv() => match update {
                    Some(update) => self.workload(update),
                    None => return,
                },
                update = pod_updates.recv() => match update {
                    Some(update) => self.pods(update),
                    // The status hub stopped: the server is shutting down.
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

    fn subscribe(&mut self, subscribe: Subscribe) {
        if !self.state.synced() {
            match &self.forbidden {
                Some(refusal) => {
                    let _ = subscribe
                        .reply
                        .send(Err(SubscribeError::Forbidden(refusal.clone())));
                }
                None => self.pending.push(subscribe),
            }
            return;
        }
        let snapshot = self.state.snapshot(&subscribe.filter);
        self.subscribers
            .add(subscribe, RolloutUpdate::Snapshot(snapshot), |updates| {
                RolloutSubscription { updates }
            });
    }

    fn workload(&mut self, update: WorkloadUpdate) {
        let was_synced = self.state.synced();
        match update {
            WorkloadUpdate::Deployment(Listing::Failed { code, message })
            | WorkloadUpdate::ReplicaSet(Listing::Failed { code, message }) => {
                self.failed(code, message);
            }
            WorkloadUpdate::Deployment(listing) => {
                for change in self.state.deployments.apply(listing) {
                    match change {
                        Change::Changed { name, .. } => self.refresh(&name),
                        Change::Gone(state) => self.deployment_gone(state),
                    }
                }
            }
            WorkloadUpdate::ReplicaSet(listing) => {
                for change in self.state.replica_sets.apply(listing) {
                    let (before, now) = match change {
                        Change::Changed { name, before } => (
                            before.and_then(|rs| rs.owner),
                            self.state
                                .replica_sets
                                .objects
                                .get(&name)
                                .and_then(|rs| rs.owner.clone()),
                        ),
                        Change::Gone(rs) => (rs.owner, None),
                    };
                    self.refresh_both(before, now);
                }
            }
        }
        if !was_synced && self.state.synced() {
            tracing::info!(
                deployments = self.state.deployments.objects.len(),
                replica_sets = self.state.replica_sets.objects.len(),
                "rollouts synced"
            );
            for subscribe in self.pending.take() {
                self.subscribe(subscribe);
            }
        }
    }

    fn failed(&mut self, code: Option<u16>, message: String) {
        if self.state.synced() {
            return;
        }
        // Forbidden will not pass by itself: tell the waiting callers now, and those to come
        // until the lists succeed.
        if code == Some(403) {
            self.pending
                .refuse(&SubscribeError::Forbidden(message.clone()));
            self.forbidden = Some(message.clone());
        }
        self.last_failure = Some(message);
    }

    /// Recompute the views of the Deployments a change touched (once each).
    fn refresh_both(&mut self, before: Option<String>, now: Option<String>) {
        if let Some(before) = &before
            && before.as_str() != now.as_deref().unwrap_or_default()
        {
            self.refresh(before);
        }
        if let Some(now) = &now {
            self.refresh(now);
        }
    }

    /// Recompute Deployment `name`'s view, and send it to its subscribers when it changed.
    fn refresh(&mut self, name: &str) {
        if let Some(view) = self.state.refresh(name)
            && self.state.synced()
        {
            self.send_to(name, &RolloutUpdate::Progress(view));
        }
    }

    fn deployment_gone(&mut self, state: DeploymentState) {
        let name = state.name.clone();
        let last = self
            .state
            .views
            .remove(&name)
            .unwrap_or_else(|| Arc::new(DeploymentView::new(state, [], None, &[])));
        if self.state.synced() {
            self.send_to(&name, &RolloutUpdate::Deleted(last));
        }
    }

    fn pods(&mut self, update: Update) {
        match update {
            Update::Snapshot { pods, .. } | Update::Resync { pods, .. } => {
                self.state.pods = pods
                    .into_iter()
                    .map(|pod| (pod.state.name.clone(), pod))
                    .collect();
                let names: Vec<String> = self.state.deployments.objects.keys().cloned().collect();
                for name in names {
                    self.state.refresh(&name);
                }
                // The changes in between are lost: every subscriber starts over.
                let state = &self.state;
                self.subscribers
                    .resync_all(|name| RolloutUpdate::Resync(state.snapshot(name)));
            }
            Update::Pod(view) => {
                let before = self
                    .state
                    .pods
                    .insert(view.state.name.clone(), Arc::clone(&view))
                    .and_then(|old| self.state.deployment_of(&old.state));
                let now = self.state.deployment_of(&view.state);
                if let Some(name) = &now {
                    self.send_to(name, &RolloutUpdate::Pod(view));
                }
                self.refresh_both(before, now);
            }
            Update::Deleted(view) => {
                self.state.pods.remove(&view.state.name);
                let owner = self.state.deployment_of(&view.state);
                if let Some(name) = &owner {
                    self.send_to(name, &RolloutUpdate::PodDeleted(view));
                }
                self.refresh_both(None, owner);
            }
            Update::Event(event) => {
                let about = match event.kind {
                    ObjectKind::Pod => self
                        .state
                        .pods
                        .get(&event.name)
                        .and_then(|pod| self.state.deployment_of(&pod.state)),
                    ObjectKind::ReplicaSet => self
                        .state
                        .replica_sets
                        .objects
                        .get(&event.name)
                        .and_then(|rs| rs.owner.clone()),
                    // Only a Deployment this service manages: the Events of another of that
                    // name (unmanaged, or an earlier one) are not its subscribers' business.
                    ObjectKind::Deployment => self
                        .state
                        .deployments
                        .objects
                        .contains_key(&event.name)
                        .then(|| event.name.clone()),
                };
                if let Some(name) = about {
                    self.send_to(&name, &RolloutUpdate::Event(event));
                }
            }
        }
    }

    /// Send `update` to the subscribers of Deployment `name` (none before the first lists).
    fn send_to(&mut self, name: &str, update: &RolloutUpdate) {
        if !self.state.synced() {
            return;
        }
        let state = &self.state;
        self.subscribers.send_where(
            |followed| followed == name,
            update,
            |followed| RolloutUpdate::Resync(state.snapshot(followed)),
        );
    }

    fn retry_resyncs(&mut self) {
        self.pending.expire(self.last_failure.as_deref());
        let state = &self.state;
        self.subscribers
            .retry_resyncs(|followed| RolloutUpdate::Resync(state.snapshot(followed)));
        tracing::trace!(namespace = %self.namespace, subscribers = self.subscribers.len(), "tick");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::domain::rollout::{REVISION_ANNOTATION, RolloutPhase, RolloutReason};
    use crate::domain::status::{ContainerState, ContainerStatus, Owner};
    use crate::domain::{Health, Reason};
    use crate::hub::{FeedUpdate, NamespaceFeed};

    type Feeds<U> = mpsc::UnboundedReceiver<(String, mpsc::Sender<U>)>;

    /// Hands each namespace's feed channel to the test: domain updates in, no cluster.
    struct TestFeed<U>(mpsc::UnboundedSender<(String, mpsc::Sender<U>)>);

    impl NamespaceFeed for TestFeed<FeedUpdate> {
        fn start(&self, namespace: &str, updates: mpsc::Sender<FeedUpdate>) -> FeedGuard {
            let _ = self.0.send((namespace.to_owned(), updates));
            FeedGuard::default()
        }
    }

    impl WorkloadFeed for TestFeed<WorkloadUpdate> {
        fn start(&self, namespace: &str, updates: mpsc::Sender<WorkloadUpdate>) -> FeedGuard {
            let _ = self.0.send((namespace.to_owned(), updates));
            FeedGuard::default()
        }
    }

    struct Fixture {
        hub: RolloutHub,
        status: StatusHub,
        workload_feeds: Feeds<WorkloadUpdate>,
        pod_feeds: Feeds<FeedUpdate>,
    }

    fn fixture() -> Fixture {
        let (pods_tx, pod_feeds) = mpsc::unbounded_channel();
        let (workloads_tx, workload_feeds) = mpsc::unbounded_channel();
        let status = StatusHub::new(Arc::new(TestFeed(pods_tx)));
        let hub = RolloutHub::new(Arc::new(TestFeed(workloads_tx)), status.clone());
        Fixture {
            hub,
            status,
            workload_feeds,
            pod_feeds,
        }
    }

    /// The feeds of namespace "ns", once `waiting` asked for a subscription.
    struct Fed {
        workloads: mpsc::Sender<WorkloadUpdate>,
        pods: mpsc::Sender<FeedUpdate>,
    }

    impl Fed {
        async fn workload(&self, update: WorkloadUpdate) {
            self.workloads.send(update).await.expect("the actor runs");
        }

        async fn deployment(&self, state: DeploymentState) {
            self.workload(WorkloadUpdate::Deployment(Listing::Object(state)))
                .await;
        }

        async fn replica_set(&self, state: ReplicaSetState) {
            self.workload(WorkloadUpdate::ReplicaSet(Listing::Object(state)))
                .await;
        }

        async fn pod(&self, update: FeedUpdate) {
            self.pods.send(update).await.expect("the status hub runs");
        }
    }

    /// Start namespace "ns" with a subscriber of `name` in a task of its own, and complete
    /// the first lists with nothing in them.
    async fn synced(
        fixture: &mut Fixture,
        name: &str,
    ) -> (Fed, Result<RolloutSubscription, SubscribeError>) {
        let hub = fixture.hub.clone();
        let followed = name.to_owned();
        let waiting = tokio::spawn(async move { hub.subscribe("ns", &followed).await });
        let (namespace, workloads) = fixture.workload_feeds.recv().await.expect("a feed");
        assert_eq!(namespace, "ns");
        let (_, pods) = fixture.pod_feeds.recv().await.expect("a pod feed");
        let fed = Fed { workloads, pods };
        fed.pod(FeedUpdate::PodsRelisting).await;
        fed.pod(FeedUpdate::PodsRelisted).await;
        for update in [
            WorkloadUpdate::Deployment(Listing::Relisting),
            WorkloadUpdate::Deployment(Listing::Relisted),
            WorkloadUpdate::ReplicaSet(Listing::Relisting),
            WorkloadUpdate::ReplicaSet(Listing::Relisted),
        ] {
            fed.workload(update).await;
        }
        (fed, waiting.await.expect("task"))
    }

    fn labels(name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app.kubernetes.io/instance".to_owned(), name.to_owned())])
    }

    fn revision(revision: i64) -> BTreeMap<String, String> {
        BTreeMap::from([(REVISION_ANNOTATION.to_owned(), revision.to_string())])
    }

    /// A Deployment of one replica at revision 1, observed, its one pod not yet available.
    fn deployment(name: &str, version: u32) -> DeploymentState {
        DeploymentState {
            namespace: "ns".into(),
            name: name.into(),
            resource_version: version.to_string(),
            annotations: revision(1),
            selector: labels(name),
            generation: 1,
            observed_generation: 1,
            desired: 1,
            replicas: 1,
            updated: 1,
            ..DeploymentState::default()
        }
    }

    fn replica_set(name: &str, owner: &str, version: u32) -> ReplicaSetState {
        ReplicaSetState {
            namespace: "ns".into(),
            name: name.into(),
            resource_version: version.to_string(),
            owner: Some(owner.into()),
            annotations: revision(1),
            template_labels: labels(owner),
            desired: 1,
            replicas: 1,
            ..ReplicaSetState::default()
        }
    }

    /// A pod of ReplicaSet `rs` (of Deployment `owner`), pending on a node.
    fn pod(name: &str, owner: &str, rs: &str, version: u32) -> PodState {
        PodState {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: version.to_string(),
            labels: labels(owner),
            phase: "Pending".into(),
            node: Some("node-0".into()),
            owners: vec![Owner {
                kind: "ReplicaSet".into(),
                name: rs.into(),
                controller: true,
            }],
            ..PodState::default()
        }
    }

    /// The same pod, failing to pull its image.
    fn pulling_fails(mut pod: PodState, version: u32) -> PodState {
        pod.resource_version = version.to_string();
        pod.containers = vec![ContainerStatus {
            name: "app".into(),
            image: "fail.invalid/app:1".into(),
            image_id: String::new(),
            ready: false,
            started: false,
            restart_count: 0,
            state: ContainerState::Waiting {
                reason: "ErrImagePull".into(),
                message: "pull failed".into(),
            },
            last_state: ContainerState::Unknown,
        }];
        pod
    }

    fn event(kind: ObjectKind, name: &str, uid: &str) -> ObjectEvent {
        ObjectEvent {
            namespace: "ns".into(),
            kind,
            name: name.into(),
            uid: uid.into(),
            resource_version: "1".into(),
            type_: "Normal".into(),
            reason: "Reason".into(),
            message: String::new(),
            count: 1,
            first_time: None,
            last_time: None,
            source: String::new(),
        }
    }

    async fn next(subscription: &mut RolloutSubscription) -> RolloutUpdate {
        tokio::time::timeout(Duration::from_secs(5), subscription.updates.recv())
            .await
            .expect("an update in time")
            .expect("the hub is running")
    }

    /// Nothing more arrives for a moment.
    async fn quiet(subscription: &mut RolloutSubscription) {
        let more =
            tokio::time::timeout(Duration::from_millis(300), subscription.updates.recv()).await;
        assert!(more.is_err(), "unexpected update: {more:?}");
    }

    #[tokio::test]
    async fn a_subscriber_follows_its_deployment_from_creation_to_deletion() {
        let mut fixture = fixture();
        let (fed, subscription) = synced(&mut fixture, "web").await;
        let mut web = subscription.expect("a subscription");
        match next(&mut web).await {
            RolloutUpdate::Snapshot(snapshot) => {
                assert!(snapshot.deployment.is_none(), "web does not exist yet");
                assert!(snapshot.pods.is_empty());
            }
            other => panic!("not a snapshot: {other:?}"),
        }

        fed.deployment(deployment("web", 1)).await;
        let view = match next(&mut web).await {
            RolloutUpdate::Progress(view) => view,
            other => panic!("not progress: {other:?}"),
        };
        assert_eq!(view.rollout.phase, RolloutPhase::Progressing);
        assert!(view.replica_sets.is_empty());

        // Another Deployment's objects are not news for web.
        fed.deployment(deployment("api", 2)).await;
        fed.replica_set(replica_set("api-1", "api", 3)).await;
        fed.pod(FeedUpdate::Pod(pod("api-1-a", "api", "api-1", 4)))
            .await;

        // Its ReplicaSet, then its pod, then the pod failing: the rollout fails at once.
        fed.replica_set(replica_set("web-1", "web", 5)).await;
        match next(&mut web).await {
            RolloutUpdate::Progress(view) => {
                assert_eq!(view.replica_sets.len(), 1);
                assert_eq!(view.rollout.new_replica_set.as_deref(), Some("web-1"));
            }
            other => panic!("not progress with the RS: {other:?}"),
        }
        let web_pod = pod("web-1-a", "web", "web-1", 6);
        fed.pod(FeedUpdate::Pod(web_pod.clone())).await;
        assert!(
            matches!(next(&mut web).await, RolloutUpdate::Pod(view) if view.state.name == "web-1-a")
        );
        // A pending pod changes nothing in the rollout: no progress.
        fed.pod(FeedUpdate::Pod(pulling_fails(web_pod.clone(), 7)))
            .await;
        match next(&mut web).await {
            RolloutUpdate::Pod(view) => assert_eq!(view.assessment.health, Health::Failed),
            other => panic!("not the failing pod: {other:?}"),
        }
        match next(&mut web).await {
            RolloutUpdate::Progress(view) => {
                assert_eq!(view.rollout.phase, RolloutPhase::Failed);
                assert_eq!(view.rollout.reason, RolloutReason::NewPodsFailing);
                assert_eq!(view.rollout.pod_reason, Some(Reason::ImagePullFailed));
            }
            other => panic!("not the failed rollout: {other:?}"),
        }

        // Events about the Deployment, its ReplicaSet and its pod; not about api's.
        let events = [
            event(ObjectKind::Deployment, "api", "e0"),
            event(ObjectKind::Deployment, "web", "e1"),
            event(ObjectKind::ReplicaSet, "web-1", "e2"),
            event(ObjectKind::Pod, "web-1-a", "e3"),
            event(ObjectKind::Pod, "api-1-a", "e4"),
        ];
        for event in events {
            fed.pod(FeedUpdate::Event {
                event,
                listed: false,
            })
            .await;
        }
        for (kind, name) in [
            (ObjectKind::Deployment, "web"),
            (ObjectKind::ReplicaSet, "web-1"),
            (ObjectKind::Pod, "web-1-a"),
        ] {
            match next(&mut web).await {
                RolloutUpdate::Event(event) => {
                    assert_eq!((event.kind, event.name.as_str()), (kind, name));
                }
                other => panic!("not the event about {name}: {other:?}"),
            }
        }

        // A status write that changes nothing a caller sees is not news.
        fed.replica_set(replica_set("web-1", "web", 8)).await;
        quiet(&mut web).await;

        // The pod goes, then the Deployment.
        fed.pod(FeedUpdate::PodDeleted(web_pod)).await;
        assert!(
            matches!(next(&mut web).await, RolloutUpdate::PodDeleted(view) if view.state.name == "web-1-a")
        );
        assert!(matches!(next(&mut web).await, RolloutUpdate::Progress(_)));
        fed.workload(WorkloadUpdate::Deployment(Listing::Deleted(deployment(
            "web", 9,
        ))))
        .await;
        match next(&mut web).await {
            RolloutUpdate::Deleted(view) => assert_eq!(view.state.name, "web"),
            other => panic!("not the deletion: {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_watch_per_kind_started_only_for_rollouts_and_a_relist_reports_what_went() {
        let mut fixture = fixture();
        // A pod subscriber alone starts no Deployment or ReplicaSet watch.
        let status = fixture.status.clone();
        let pod_only =
            tokio::spawn(async move { status.subscribe("ns", Filter::Name("x".into())).await });
        let (_, pods) = fixture.pod_feeds.recv().await.expect("a pod feed");
        pods.send(FeedUpdate::PodsRelisting).await.expect("feed");
        pods.send(FeedUpdate::PodsRelisted).await.expect("feed");
        let _pod_only = pod_only.await.expect("task").expect("a pod subscription");
        assert!(fixture.workload_feeds.try_recv().is_err());

        let hub = fixture.hub.clone();
        let waiting = tokio::spawn(async move { hub.subscribe("ns", "web").await });
        let (_, workloads) = fixture.workload_feeds.recv().await.expect("a feed");
        let fed = Fed { workloads, pods };
        for update in [
            WorkloadUpdate::Deployment(Listing::Relisting),
            WorkloadUpdate::Deployment(Listing::Object(deployment("web", 1))),
            WorkloadUpdate::Deployment(Listing::Relisted),
            WorkloadUpdate::ReplicaSet(Listing::Relisting),
            WorkloadUpdate::ReplicaSet(Listing::Object(replica_set("web-1", "web", 2))),
            WorkloadUpdate::ReplicaSet(Listing::Relisted),
        ] {
            fed.workload(update).await;
        }
        let mut first = waiting.await.expect("task").expect("a subscription");
        match next(&mut first).await {
            RolloutUpdate::Snapshot(snapshot) => {
                let view = snapshot.deployment.expect("web exists");
                assert_eq!(view.replica_sets.len(), 1);
            }
            other => panic!("not a snapshot: {other:?}"),
        }
        let mut others = Vec::new();
        for _ in 0..10 {
            others.push(fixture.hub.subscribe("ns", "web").await.expect("more"));
        }
        // The pod feed of the status hub was not started again either.
        assert!(fixture.workload_feeds.try_recv().is_err());
        assert!(fixture.pod_feeds.try_recv().is_err());

        // The watch expired and relisted: web is gone.
        fed.workload(WorkloadUpdate::Deployment(Listing::Relisting))
            .await;
        fed.workload(WorkloadUpdate::Deployment(Listing::Relisted))
            .await;
        for subscription in std::iter::once(&mut first).chain(others.iter_mut()) {
            let mut update = next(subscription).await;
            if matches!(update, RolloutUpdate::Snapshot(_)) {
                update = next(subscription).await;
            }
            assert!(
                matches!(&update, RolloutUpdate::Deleted(view) if view.state.name == "web"),
                "{update:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_stalled_subscriber_is_resynced_and_never_holds_up_another() {
        let mut fixture = fixture();
        let (fed, slow) = synced(&mut fixture, "web").await;
        let mut slow = slow.expect("a subscription");
        let mut fast = fixture.hub.subscribe("ns", "web").await.expect("another");
        assert!(matches!(next(&mut fast).await, RolloutUpdate::Snapshot(_)));

        // Far more changes than a buffer holds; the fast one reads them all as they come.
        let changes = i32::try_from(crate::hub::SUBSCRIBER_BUFFER).expect("small") * 3;
        for replicas in 1..=changes {
            let mut state = deployment("web", replicas.unsigned_abs());
            state.desired = replicas;
            fed.deployment(state).await;
            match next(&mut fast).await {
                RolloutUpdate::Progress(view) => assert_eq!(view.state.desired, replicas),
                other => panic!("fast subscriber got {other:?}"),
            }
        }
        let mut last = None;
        while let Ok(Some(update)) =
            tokio::time::timeout(Duration::from_secs(2), slow.updates.recv()).await
        {
            last = Some(update);
        }
        match last.expect("the slow subscriber got updates") {
            RolloutUpdate::Resync(snapshot) => {
                let view = snapshot.deployment.expect("web exists");
                assert_eq!(view.state.desired, changes);
            }
            other => panic!("the slow subscriber's last update is not a resync: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_forbidden_list_fails_the_waiting_subscriptions_at_once() {
        let mut fixture = fixture();
        let hub = fixture.hub.clone();
        let waiting = tokio::spawn(async move { hub.subscribe("ns", "web").await });
        let (_, workloads) = fixture.workload_feeds.recv().await.expect("a feed");
        workloads
            .send(WorkloadUpdate::ReplicaSet(Listing::Failed {
                code: Some(403),
                message: "replicasets is forbidden".into(),
            }))
            .await
            .expect("feed");
        let (_, pods) = fixture.pod_feeds.recv().await.expect("a pod feed");
        pods.send(FeedUpdate::PodsRelisting).await.expect("feed");
        pods.send(FeedUpdate::PodsRelisted).await.expect("feed");
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("an answer in time")
            .expect("task");
        assert_eq!(
            answer.map(|_| ()),
            Err(SubscribeError::Forbidden("replicasets is forbidden".into()))
        );
    }

    #[tokio::test]
    async fn shutdown_ends_the_actors_and_the_subscriptions() {
        let mut fixture = fixture();
        let (fed, subscription) = synced(&mut fixture, "web").await;
        let mut web = subscription.expect("a subscription");
        assert!(matches!(next(&mut web).await, RolloutUpdate::Snapshot(_)));
        tokio::time::timeout(Duration::from_secs(5), fixture.hub.shutdown())
            .await
            .expect("the hub stops in time");
        assert!(fed.workloads.is_closed(), "the namespace actor still runs");
        assert!(web.updates.recv().await.is_none(), "still open");
        assert_eq!(
            fixture.hub.subscribe("ns", "web").await.map(|_| ()),
            Err(SubscribeError::Closed)
        );
    }
}
