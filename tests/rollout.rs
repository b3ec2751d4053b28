//! WatchRollout against the real local cluster: its kube-controller-manager rolls Deployments
//! out for real (kwok plays the pods), and the service streams what happens. The Deployments
//! are made and changed with the admin client, shaped like those the service makes; the
//! stream is read through the generated gRPC client, as a caller reads it. The wait behind
//! ApplyDeployment's `wait_for` ([`wait_rollout`]) is exercised on a rollout hub of the test's
//! own, over the same cluster.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_deployer::domain::rollout::{DeploymentView, RolloutGoal, RolloutPhase};
use k8s_deployer::grpc::rollout::wait_rollout;
use k8s_deployer::hub::StatusHub;
use k8s_deployer::hub::rollout::RolloutHub;
use k8s_deployer::k8s::ClusterFeed;
use k8s_deployer::proto::deployer::v1 as pb;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use pb::watch_rollout_response::Kind;
use support::{DeploymentsClient, RunningDeployer, TestCluster, WAIT, create_namespace};
use tonic::Streaming;
use tonic::transport::Endpoint;

/// The API server counts the watches it serves across the whole cluster, not per namespace:
/// the test that counts them runs alone (write), the others side by side (read).
static SHARED_CLUSTER_WATCHES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

// --- Deployments as the service makes them, with the admin client --------------------------

/// A Deployment labelled and selected as the service labels its own, with one container
/// "app".
fn deployment(name: &str, image: &str, replicas: i32, deadline: Option<i32>) -> Deployment {
    let labels = serde_json::json!({
        "app.kubernetes.io/managed-by": "k8s-deployer",
        "app.kubernetes.io/instance": name,
    });
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": deadline,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": { "containers": [{ "name": "app", "image": image }] }
            }
        }
    }))
    .expect("a deployment")
}

async fn create(api: &Api<Deployment>, deployment: &Deployment) -> i64 {
    let created = api
        .create(&PostParams::default(), deployment)
        .await
        .expect("create the deployment");
    created.metadata.generation.expect("a generation")
}

/// Change the image of container "app"; the new generation.
async fn set_image(api: &Api<Deployment>, name: &str, image: &str) -> i64 {
    let patch = serde_json::json!({
        "spec": { "template": { "spec": { "containers": [{ "name": "app", "image": image }] } } }
    });
    let patched = api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("set the image");
    patched.metadata.generation.expect("a generation")
}

/// What a test of one namespace works with.
struct Setting {
    /// The service, serving on the shared cluster.
    deployer: RunningDeployer,
    /// Its DeploymentService.
    client: DeploymentsClient,
    /// Deployments, as the admin.
    api: Api<Deployment>,
    namespace: String,
    /// A rollout hub of the test's own, on the admin client, for [`wait_rollout`].
    hub: RolloutHub,
}

impl Setting {
    async fn new(prefix: &str) -> Setting {
        let (deployer, admin, namespace) = support::serving_deployer(prefix).await;
        let feed = Arc::new(ClusterFeed::new(admin.clone()));
        Setting {
            client: deployer.deployments(),
            deployer,
            api: Api::namespaced(admin, &namespace),
            namespace,
            hub: RolloutHub::new(feed.clone(), StatusHub::new(feed)),
        }
    }

    /// Open a WatchRollout stream on Deployment `name`.
    async fn watch(&mut self, name: &str, until: pb::RolloutUntil, generation: i64) -> Rollout {
        Rollout::open(&mut self.client, &self.namespace, name, until, generation).await
    }

    /// [`wait_rollout`] for `generation` to roll out, for up to `within`; its error as a
    /// caller would get it.
    async fn wait(
        &self,
        name: &str,
        generation: i64,
        within: Duration,
    ) -> Result<DeploymentView, tonic::Status> {
        let until = tokio::time::Instant::now() + within;
        wait_rollout(
            &self.hub,
            &self.namespace,
            name,
            None,
            generation,
            RolloutGoal::RolledOut,
            until,
        )
        .await
        .map_err(tonic::Status::from)
    }

    async fn stop(self) {
        self.hub.shutdown().await;
        self.deployer
            .stop()
            .await
            .expect("the server stops cleanly");
    }
}

// --- One WatchRollout stream, read as a caller reads it -------------------------------------

/// An open WatchRollout stream. Every message is checked against the stream contract:
/// sequence numbers run 1, 2, 3, ... without a gap, the first message is a snapshot and no
/// later one is, and each message carries the phase of the latest Deployment sent before
/// or with it.
struct Rollout {
    label: String,
    stream: Streaming<pb::WatchRolloutResponse>,
    received: u64,
    /// The phase of the Deployment as last sent.
    phase: pb::RolloutPhase,
}

impl Rollout {
    async fn open(
        client: &mut DeploymentsClient,
        namespace: &str,
        name: &str,
        until: pb::RolloutUntil,
        generation: i64,
    ) -> Rollout {
        let label = format!("WatchRollout {namespace}/{name} (generation {generation})");
        let request = pb::WatchRolloutRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            until: until.into(),
            generation,
        };
        let stream = client
            .watch_rollout(request)
            .await
            .unwrap_or_else(|status| panic!("{label}: refused: {status:?}"))
            .into_inner();
        Rollout {
            label,
            stream,
            received: 0,
            phase: pb::RolloutPhase::Unspecified,
        }
    }

    /// The next message. Panics if none comes within [`WAIT`], if the stream fails or ends,
    /// or if the message breaks the contract.
    async fn next(&mut self) -> Kind {
        let label = &self.label;
        let message = support::next_message(label, &mut self.stream, self.received).await;
        self.received += 1;
        assert_eq!(message.sequence, self.received, "{label}: sequence numbers");
        let phase = message.phase();
        let kind = message.kind.expect("a kind");
        assert_eq!(
            matches!(kind, Kind::Snapshot(_)),
            self.received == 1,
            "{label}: the first message, and only the first, is a snapshot: {kind:?}"
        );
        let deployment = match &kind {
            Kind::Snapshot(snapshot) | Kind::Resync(snapshot) => snapshot.deployment.as_ref(),
            Kind::Progress(deployment) => Some(deployment),
            _ => None,
        };
        if let Some(deployment) = deployment {
            self.phase = deployment.rollout.as_ref().expect("a rollout").phase();
        }
        assert_eq!(
            phase, self.phase,
            "{label}: message {} carries the rollout's phase",
            self.received
        );
        kind
    }

    /// Every message up to and with the `end`, which must come within [`WAIT`].
    async fn read_to_end(&mut self) -> (Vec<Kind>, pb::End) {
        let mut messages = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let label = self.label.clone();
            let kind = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| panic!("{label}: no end within {WAIT:?}: {messages:#?}"));
            match kind {
                Kind::End(end) => return (messages, end),
                kind => messages.push(kind),
            }
        }
    }
}

/// The rollouts the stream reported (snapshot, resyncs and progress), in order.
fn rollouts(messages: &[Kind]) -> Vec<pb::RolloutStatus> {
    messages
        .iter()
        .filter_map(|kind| match kind {
            Kind::Snapshot(snapshot) | Kind::Resync(snapshot) => snapshot.deployment.as_ref(),
            Kind::Progress(deployment) => Some(deployment),
            _ => None,
        })
        .filter_map(|deployment| deployment.rollout.clone())
        .collect()
}

/// The Events the stream reported, as (kind, reason).
fn events(messages: &[Kind]) -> BTreeSet<(String, String)> {
    messages
        .iter()
        .filter_map(|kind| match kind {
            Kind::Event(event) => Some((event.kind.clone(), event.reason.clone())),
            _ => None,
        })
        .collect()
}

fn assert_until_met(end: &pb::End, what: &str) {
    assert_eq!(end.reason(), pb::EndReason::UntilMet, "{what}: {end:?}");
}

// --- Tests ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_is_streamed_live_from_creation_through_updates_and_failures_to_deletion() {
    let _turn = SHARED_CLUSTER_WATCHES.read().await;
    let mut setting = Setting::new("rollout").await;

    // Created with 3 replicas: a stream opened before, until ROLLED_OUT.
    let mut watch = setting.watch("web", pb::RolloutUntil::RolledOut, 0).await;
    match watch.next().await {
        Kind::Snapshot(snapshot) => {
            assert!(snapshot.not_found && snapshot.deployment.is_none());
        }
        other => unreachable!("{other:?}"),
    }
    let generation = create(&setting.api, &deployment("web", "nginx:1.27", 3, None)).await;
    let (messages, end) = watch.read_to_end().await;
    assert_until_met(&end, "the first rollout");
    let progress = rollouts(&messages);
    let last = progress.last().expect("progress");
    assert_eq!(last.phase(), pb::RolloutPhase::Complete, "{last:?}");
    assert_eq!((last.updated, last.available, last.revision), (3, 3, 1));
    assert!(
        progress[..progress.len() - 1]
            .iter()
            .all(|rollout| rollout.phase() != pb::RolloutPhase::Complete),
        "COMPLETE comes last: {progress:#?}"
    );
    assert!(
        progress
            .windows(2)
            .all(|w| w[0].available <= w[1].available),
        "the rollout moves forward: {progress:#?}"
    );
    let seen = events(&messages);
    for wanted in [
        ("Deployment", "ScalingReplicaSet"),
        ("ReplicaSet", "SuccessfulCreate"),
    ] {
        assert!(
            seen.contains(&(wanted.0.to_owned(), wanted.1.to_owned())),
            "no {wanted:?} event in {seen:?}"
        );
    }
    assert!(
        messages.iter().any(|kind| matches!(kind, Kind::Pod(_))),
        "the pods were streamed"
    );
    let view = setting
        .wait("web", generation, WAIT)
        .await
        .expect("wait_rollout: rolled out");
    assert_eq!(view.rollout.phase, RolloutPhase::Complete);

    // A new image: a stream for the new generation sees it roll out, never COMPLETE early.
    let generation = set_image(&setting.api, "web", "nginx:1.28").await;
    let mut watch = setting
        .watch("web", pb::RolloutUntil::RolledOut, generation)
        .await;
    let (messages, end) = watch.read_to_end().await;
    assert_until_met(&end, "the update");
    let progress = rollouts(&messages);
    assert!(
        progress
            .iter()
            .all(|rollout| rollout.phase() != pb::RolloutPhase::Complete
                || rollout.observed_generation >= generation),
        "COMPLETE only once generation {generation} is observed: {progress:#?}"
    );
    assert!(
        progress
            .iter()
            .any(|rollout| rollout.phase() == pb::RolloutPhase::Progressing
                && rollout
                    .message
                    .starts_with("Waiting for deployment \"web\" rollout to finish: ")),
        "PROGRESSING in kubectl's words: {progress:#?}"
    );
    // Until the controller has observed the new spec, the counts are the last rollout's.
    let observed: Vec<i32> = progress
        .iter()
        .filter(|rollout| rollout.observed_generation >= generation)
        .map(|rollout| rollout.updated)
        .collect();
    assert!(
        observed.windows(2).all(|w| w[0] <= w[1]),
        "the updated count rises: {progress:#?}"
    );
    let last = progress.last().expect("progress");
    assert_eq!(last.phase(), pb::RolloutPhase::Complete);
    assert_eq!((last.revision, last.updated, last.available), (2, 3, 3));
    let old = last
        .replica_sets
        .iter()
        .find(|rs| rs.revision == 1)
        .expect("the first revision's ReplicaSet");
    assert_eq!(
        old.replicas, 0,
        "the old ReplicaSet is scaled to 0: {old:?}"
    );
    assert!(
        last.replica_sets
            .iter()
            .any(|rs| rs.current && rs.image == "nginx:1.28")
    );

    // An image that cannot be pulled: FAILED within seconds (not at the 600 s deadline),
    // while the old pods keep serving.
    let generation = set_image(&setting.api, "web", "fail.invalid/app:1").await;
    let mut watch = setting
        .watch("web", pb::RolloutUntil::Terminal, generation)
        .await;
    let (messages, end) = watch.read_to_end().await;
    assert_until_met(&end, "the failed pull");
    let last = rollouts(&messages).pop().expect("progress");
    assert_eq!(last.phase(), pb::RolloutPhase::Failed, "{last:?}");
    assert_eq!(last.reason(), pb::RolloutReason::NewPodsFailing);
    assert_eq!(last.pod_reason(), pb::Reason::ImagePullFailed);
    assert!(last.old_available > 0, "the old pods still serve: {last:?}");
    assert!(
        end.message
            .starts_with("NEW_PODS_FAILING: IMAGE_PULL_FAILED: "),
        "{end:?}"
    );
    let failed = setting
        .wait("web", generation, WAIT)
        .await
        .expect_err("wait_rollout: the rollout failed");
    assert_eq!(failed.code(), tonic::Code::FailedPrecondition, "{failed:?}");
    assert!(
        failed
            .message()
            .contains("NEW_PODS_FAILING: IMAGE_PULL_FAILED: "),
        "{failed:?}"
    );

    // A container that crashes: FAILED, CRASH_LOOP.
    let generation = set_image(&setting.api, "web", "crash.invalid/app:1").await;
    let mut watch = setting
        .watch("web", pb::RolloutUntil::Terminal, generation)
        .await;
    let (messages, end) = watch.read_to_end().await;
    assert_until_met(&end, "the crash loop");
    let last = rollouts(&messages).pop().expect("progress");
    assert_eq!(last.reason(), pb::RolloutReason::NewPodsFailing, "{last:?}");
    assert_eq!(last.pod_reason(), pb::Reason::CrashLoop, "{last:?}");
    assert!(last.old_available > 0, "the old pods still serve: {last:?}");

    // Deleted: the stream ends saying so.
    let mut watch = setting.watch("web", pb::RolloutUntil::None, 0).await;
    assert!(matches!(watch.next().await, Kind::Snapshot(_)));
    setting
        .api
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete the deployment");
    let (_, end) = watch.read_to_end().await;
    assert_eq!(end.reason(), pb::EndReason::DeploymentDeleted, "{end:?}");

    setting.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_makes_no_progress_fails_at_its_progress_deadline() {
    let _turn = SHARED_CLUSTER_WATCHES.read().await;
    let mut setting = Setting::new("deadline").await;
    let mut watch = setting.watch("slow", pb::RolloutUntil::Terminal, 0).await;
    // Pods that run and never become ready, with a 10 s deadline.
    let unready = deployment("slow", "unready.invalid/app:1", 1, Some(10));
    let generation = create(&setting.api, &unready).await;
    let waited = setting
        .wait("slow", generation, Duration::from_secs(2))
        .await
        .expect_err("not rolled out within 2 s");
    assert_eq!(waited.code(), tonic::Code::DeadlineExceeded, "{waited:?}");
    assert!(waited.message().contains("ROLLED_OUT"), "{waited:?}");

    let (messages, end) = watch.read_to_end().await;
    assert_until_met(&end, "the progress deadline");
    let last = rollouts(&messages).pop().expect("progress");
    assert_eq!(last.phase(), pb::RolloutPhase::Failed, "{last:?}");
    assert_eq!(
        last.reason(),
        pb::RolloutReason::DeadlineExceeded,
        "{last:?}"
    );
    assert_eq!(
        last.message, "deployment \"slow\" exceeded its progress deadline",
        "{last:?}"
    );
    // The pods ran, not ready: degraded, never failed.
    let pods: Vec<&pb::PodStatus> = messages
        .iter()
        .filter_map(|kind| match kind {
            Kind::Pod(pod) => Some(pod),
            _ => None,
        })
        .collect();
    assert!(
        pods.iter()
            .any(|pod| pod.phase == "Running" && pod.reason() == pb::Reason::NotReady),
        "a running pod that is not ready: {pods:#?}"
    );
    assert!(
        pods.iter().all(|pod| pod.health() != pb::Health::Failed),
        "{pods:#?}"
    );
    let failed = setting
        .wait("slow", generation, WAIT)
        .await
        .expect_err("the rollout failed");
    assert_eq!(failed.code(), tonic::Code::FailedPrecondition, "{failed:?}");
    assert!(
        failed.message().contains("DEADLINE_EXCEEDED: "),
        "{failed:?}"
    );

    setting.stop().await;
}

/// How many streams the fan-out test opens, over how many Deployments and connections.
const SUBSCRIBERS: usize = 200;
const DEPLOYMENTS: usize = 4;
const CONNECTIONS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_rollout_subscribers_cost_one_upstream_watch_per_kind() {
    let _turn = SHARED_CLUSTER_WATCHES.write().await;
    let admin = TestCluster::shared().client().await;
    let namespace = create_namespace(&admin, "rollout-fanout", &[]).await;
    let api: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let names: Vec<String> = (0..DEPLOYMENTS).map(|i| format!("app-{i}")).collect();
    for name in &names {
        create(&api, &deployment(name, "nginx:1.27", 1, None)).await;
    }
    let deployer = RunningDeployer::with(k8s_deployer::Config::default())
        .serving()
        .await;
    let kinds = ["deployments", "replicasets", "pods", "events"];
    // Nobody follows this namespace yet, so the service does not watch it.
    let before = support::namespaced_watches(&admin, &kinds).await;

    let endpoint = Endpoint::from_shared(format!("http://{}", deployer.addr)).expect("an endpoint");
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(endpoint.connect().await.expect("connect"));
    }
    let token = support::TestAuth::shared().tester_token();
    let mut watches = join_all((0..SUBSCRIBERS).map(|i| {
        let mut client =
            support::deployments_client_with_token(channels[i % CONNECTIONS].clone(), &token);
        let name = names[i % DEPLOYMENTS].clone();
        let namespace = namespace.clone();
        async move {
            let mut watch =
                Rollout::open(&mut client, &namespace, &name, pb::RolloutUntil::None, 0).await;
            match watch.next().await {
                Kind::Snapshot(snapshot) => assert!(snapshot.deployment.is_some()),
                other => unreachable!("{other:?}"),
            }
            (name, watch)
        }
    }))
    .await;

    let after = support::namespaced_watches(&admin, &kinds).await;
    println!(
        "namespaced watches served by the API server: {before:?} before, {after:?} with \
         {SUBSCRIBERS} WatchRollout streams open"
    );
    for kind in kinds {
        assert!(
            after[kind] >= 1,
            "the service's own {kind} watch of {namespace} must show in the API server's \
             count ({before:?} before, {after:?} after): otherwise this test measures nothing"
        );
        assert!(
            after[kind] <= before[kind] + 1,
            "{SUBSCRIBERS} streams on one namespace must share one upstream {kind} watch, but \
             the API server went from {before:?} to {after:?}"
        );
    }

    // The shared watches serve them all: every stream of app-0 hears of its new scale.
    api.patch(
        &names[0],
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "spec": { "replicas": 2 } })),
    )
    .await
    .expect("scale app-0");
    join_all(
        watches
            .iter_mut()
            .filter(|(name, _)| *name == names[0])
            .map(|(_, watch)| async move {
                loop {
                    let deployment = match watch.next().await {
                        Kind::Progress(deployment) => deployment,
                        Kind::Resync(snapshot) => snapshot.deployment.expect("app-0 exists"),
                        Kind::End(end) => panic!("ended: {end:?}"),
                        _ => continue,
                    };
                    if deployment.replicas == 2 {
                        break;
                    }
                }
            }),
    )
    .await;

    drop(watches);
    drop(channels);
    deployer.stop().await.expect("the server stops cleanly");
}
