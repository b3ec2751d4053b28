//! How WatchStatus scales and survives, seen from outside: the service under test runs on
//! 127.0.0.1:0 against a real local control plane (kwok plays the kubelet), and every check is
//! made through the generated gRPC client or on what the API server itself reports.
//!
//! - Many subscribers of a namespace share one upstream watch: 200 streams move the API
//!   server's count of pod watches by at most one, and every one of them still hears of a new
//!   pod.
//! - A subscriber that stops reading never delays another: while one stream is left unread,
//!   another keeps receiving every change; the stalled one, once read, gets a `resync` with
//!   the full state, and its sequence numbers never skip.
//! - An API server restart does not end a stream: heartbeats keep coming while it is down,
//!   and changes made after it is back arrive on the same stream, in order.
//! - Streams recover promptly: after the API server was down for 30 s, or lost its watch
//!   history to an etcd compaction (a real 410 Gone), every stream sees what changed, a pod
//!   deleted behind the API server's back included, within seconds of its answering again.
//!
//! The tests run on a multi-threaded runtime, as the server does in production, so that a
//! service task that blocks its thread shows up as a failed wait rather than a hung test.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_deployer::Config;
use k8s_deployer::proto::deployer::v1 as pb;
use pb::watch_status_response::Kind;
use prost::Message as _;
use support::{RunningDeployer, TestCluster, WAIT, create_namespace, eventually, unique};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};

type Client = support::DeployerClient;

/// The selector that matches every pod the service manages.
const MANAGED: &str = "app.kubernetes.io/managed-by=k8s-deployer";

/// The API server counts the watches it serves across the whole cluster, not per namespace,
/// so the tests on the shared cluster that start namespace watches take turns: otherwise one
/// test's watch would show up in another's count.
static SHARED_CLUSTER_WATCHES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One open WatchStatus stream, read as a caller reads it. Every message is checked against
/// the stream contract: sequence numbers run 1, 2, 3, ... without a gap, the first message is
/// a snapshot and no later one is.
struct Watch {
    label: String,
    stream: Streaming<pb::WatchStatusResponse>,
    received: u64,
    /// Bytes received so far, as framed on the wire (5-byte gRPC prefix and message).
    bytes: usize,
}

impl Watch {
    async fn open(client: &mut Client, request: pb::WatchStatusRequest, label: &str) -> Watch {
        let stream = client
            .watch_status(request)
            .await
            .unwrap_or_else(|status| panic!("{label}: WatchStatus refused: {status:?}"))
            .into_inner();
        Watch {
            label: label.to_owned(),
            stream,
            received: 0,
            bytes: 0,
        }
    }

    /// The next message. Panics if none comes within [`WAIT`], if the stream fails or ends,
    /// or if the message breaks the contract.
    async fn next(&mut self) -> Kind {
        let label = &self.label;
        let message = support::next_message(label, &mut self.stream, self.received).await;
        self.received += 1;
        self.bytes += 5 + message.encoded_len();
        assert_eq!(
            message.sequence, self.received,
            "{label}: sequence numbers must grow by one per message"
        );
        let kind = message
            .kind
            .unwrap_or_else(|| panic!("{label}: message {} has no kind", self.received));
        let is_snapshot = matches!(kind, Kind::Snapshot(_));
        assert_eq!(
            is_snapshot,
            self.received == 1,
            "{label}: the first message, and only the first, is a snapshot; message {} is \
             {kind:?}",
            self.received
        );
        kind
    }

    /// Read until `pick` returns something, within [`WAIT`] in all (heartbeats alone would
    /// keep [`Watch::next`] waiting for ever). An `end` on the way is a failure.
    async fn read_until<T>(&mut self, what: &str, mut pick: impl FnMut(Kind) -> Option<T>) -> T {
        let label = self.label.clone();
        eventually(&format!("{label}: {what}"))
            .every(Duration::ZERO)
            .until(async || match self.next().await {
                Kind::End(end) => panic!("{label}: the stream ended before {what}: {end:?}"),
                kind => pick(kind).ok_or("not yet"),
            })
            .await
    }

    /// The first message, which must be a snapshot.
    async fn snapshot(&mut self) -> pb::Snapshot {
        match self.next().await {
            Kind::Snapshot(snapshot) => snapshot,
            other => unreachable!("next() lets only a snapshot through first: {other:?}"),
        }
    }

    /// After its last message the stream must end with OK.
    async fn expect_closed_ok(&mut self) {
        let label = &self.label;
        let after = tokio::time::timeout(WAIT, self.stream.message())
            .await
            .unwrap_or_else(|_| panic!("{label}: the stream did not close within {WAIT:?}"));
        assert!(
            matches!(after, Ok(None)),
            "{label}: after its end message the stream must close with OK, not {after:?}"
        );
    }
}

fn by_selector(namespace: &str) -> pb::WatchStatusRequest {
    pb::WatchStatusRequest {
        namespace: namespace.to_owned(),
        label_selector: MANAGED.to_owned(),
        until: pb::Until::None.into(),
        ..pb::WatchStatusRequest::default()
    }
}

fn by_name(namespace: &str, name: &str) -> pb::WatchStatusRequest {
    pb::WatchStatusRequest {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        until: pb::Until::None.into(),
        ..pb::WatchStatusRequest::default()
    }
}

async fn deploy(
    client: &mut Client,
    namespace: &str,
    name: &str,
    image: &str,
    wait_for: pb::WaitFor,
) -> pb::PodStatus {
    client
        .deploy(pb::DeployRequest {
            image: image.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            wait_for: wait_for.into(),
            ..pb::DeployRequest::default()
        })
        .await
        .unwrap_or_else(|status| panic!("deploy {image} as {namespace}/{name}: {status:?}"))
        .into_inner()
        .pod
        .expect("Deploy answers with the pod's status")
}

/// `call`, retried while the service reports the API server UNAVAILABLE (it may still be
/// reconnecting after a restart), for up to [`WAIT`].
async fn retry_unavailable<T, F>(what: &str, mut call: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    eventually(&format!("{what} to be accepted"))
        .every(Duration::from_millis(500))
        .until(async || match call().await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if status.code() == Code::Unavailable => Err(status),
            Err(status) => panic!("{what}: {status:?}"),
        })
        .await
}

/// DeletePod, retried while the service reports the API server UNAVAILABLE.
async fn delete_pod(client: &mut Client, namespace: &str, name: &str, grace: Option<Duration>) {
    let request = pb::DeletePodRequest {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        grace_period: grace.map(|grace| prost_types::Duration {
            seconds: i64::try_from(grace.as_secs()).expect("a short grace period"),
            nanos: 0,
        }),
    };
    eventually(&format!(
        "the deletion of {namespace}/{name} to be accepted"
    ))
    .until(async || match client.delete_pod(request.clone()).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::Unavailable => Err(status),
        Err(status) => panic!("delete {namespace}/{name}: {status:?}"),
    })
    .await;
}

/// A new connection to the server: a caller of its own.
async fn connect(endpoint: Endpoint) -> Channel {
    endpoint
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to {}: {error}", endpoint.uri()))
}

fn endpoint(deployer: &RunningDeployer) -> Endpoint {
    Endpoint::from_shared(format!("http://{}", deployer.addr)).expect("a uri")
}

/// How many pod watches scoped to a namespace the API server is serving (see
/// [`support::namespaced_watches`]).
async fn namespaced_pod_watches(admin: &kube::Client) -> u64 {
    support::namespaced_watches(admin, &["pods"]).await["pods"]
}

// --- Tests ----------------------------------------------------------------------------------

/// How many streams the fan-out test opens, and over how many connections (callers).
const SUBSCRIBERS: usize = 200;
const CONNECTIONS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_subscribers_cost_one_upstream_watch() {
    let _turn = SHARED_CLUSTER_WATCHES.lock().await;
    let cluster = TestCluster::shared();
    let admin = cluster.client().await;
    let namespace = create_namespace(&admin, "fanout", &[]).await;
    let deployer = RunningDeployer::with(Config::default()).serving().await;

    // Nobody has subscribed to this namespace yet, so the service does not watch it.
    let before = namespaced_pod_watches(&admin).await;

    // 200 streams at once, spread over several connections as separate callers would be.
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(connect(endpoint(&deployer)).await);
    }
    let mut watches = join_all((0..SUBSCRIBERS).map(|i| {
        let mut client = support::tester_client(channels[i % CONNECTIONS].clone());
        let request = by_selector(&namespace);
        async move {
            let mut watch = Watch::open(&mut client, request, &format!("subscriber {i}")).await;
            let snapshot = watch.snapshot().await;
            assert!(
                snapshot.pods.is_empty() && !snapshot.not_found,
                "subscriber {i}: the namespace has no pods yet: {snapshot:?}"
            );
            watch
        }
    }))
    .await;

    let after = namespaced_pod_watches(&admin).await;
    println!(
        "namespaced pod watches served by the API server: {before} before, {after} with \
         {SUBSCRIBERS} streams open"
    );
    assert!(
        after >= 1,
        "the service's own watch of {namespace} must show in the API server's count \
         ({before} before, {after} after): otherwise this test measures nothing"
    );
    assert!(
        after <= before + 1,
        "{SUBSCRIBERS} streams on one namespace must share one upstream pod watch, but the API \
         server went from {before} to {after} namespaced pod watches"
    );

    // The shared watch serves them all: every stream hears of a new pod.
    let mut client = deployer.client();
    let web = deploy(
        &mut client,
        &namespace,
        "web",
        "nginx:1.27",
        pb::WaitFor::None,
    )
    .await;
    let name = &web.name;
    join_all(watches.iter_mut().map(|watch| async move {
        watch
            .read_until(&format!("news of {name}"), |kind| match kind {
                Kind::Pod(pod) => (pod.name == *name).then_some(()),
                Kind::Resync(snapshot) => {
                    snapshot.pods.iter().any(|p| p.name == *name).then_some(())
                }
                _ => None,
            })
            .await;
    }))
    .await;

    delete_pod(&mut client, &namespace, &web.name, Some(Duration::ZERO)).await;
    drop(watches);
    drop(channels);
    deployer.stop().await.expect("the server stops cleanly");
}

/// How many crash-looping pods feed the stalled-subscriber test with changes.
const CRASHING_PODS: usize = 20;
/// The stalled caller's HTTP/2 windows (stream and connection): the protocol's default size,
/// so the transport holds little of what it is not reading.
const SMALL_WINDOW: u32 = 65_535;
/// Messages a stalled stream can hold before the service must drop changes for it: the hub's
/// per-subscriber buffer, the one message the stream's task holds while it waits, and the
/// stream's own buffer (`STREAM_BUFFER` in src/grpc/watch.rs).
const QUEUED_MESSAGES: usize = k8s_deployer::hub::SUBSCRIBER_BUFFER + 1 + 16;
/// Bytes the transport can hold for a stream that is not read, with the windows above: the
/// client's receive window, plus on the server one tonic encode buffer (32 KiB) and the chunk
/// hyper holds while it waits for window. Rounded up generously.
const TRANSPORT_BYTES: usize = 512 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_never_delays_another() {
    let _turn = SHARED_CLUSTER_WATCHES.lock().await;
    let cluster = TestCluster::shared();
    let admin = cluster.client().await;
    let namespace = create_namespace(&admin, "stall", &[]).await;
    let deployer = RunningDeployer::with(Config::default()).serving().await;
    let mut client = deployer.client();

    // Stream A: a caller of its own that reads the snapshot and then nothing more.
    let stalled_channel = connect(
        endpoint(&deployer)
            .initial_stream_window_size(SMALL_WINDOW)
            .initial_connection_window_size(SMALL_WINDOW),
    )
    .await;
    let mut stalled = Watch::open(
        &mut support::tester_client(stalled_channel),
        by_selector(&namespace),
        "stalled stream A",
    )
    .await;
    assert!(stalled.snapshot().await.pods.is_empty());
    // Stream B: read all the time.
    let mut reading = Watch::open(&mut client, by_selector(&namespace), "reading stream B").await;
    assert!(reading.snapshot().await.pods.is_empty());

    let names: BTreeSet<String> = (0..CRASHING_PODS)
        .map(|i| format!("crash-{i:02}"))
        .collect();
    for name in &names {
        deploy(
            &mut client,
            &namespace,
            name,
            "crash.invalid/app",
            pb::WaitFor::None,
        )
        .await;
    }

    // B must see every pod crash-loop, and enough changes go by that A, stalled, cannot
    // have kept them all: more than its queues hold, and more bytes than its transport holds
    // even if the queues held the largest messages.
    let crash_looping = |pod: &pb::PodStatus| {
        pod.health() == pb::Health::Failed && pod.reason() == pb::Reason::CrashLoop
    };
    let mut seen_crash_looping = BTreeSet::new();
    let (mut changes, mut change_bytes, mut largest, mut resyncs_of_b) = (0, 0, 0, 0);
    eventually("B to see every pod crash-loop, and more changes than A can hold")
        .within(2 * WAIT)
        .every(Duration::ZERO)
        .until(async || {
            if seen_crash_looping == names
                && changes > QUEUED_MESSAGES
                && change_bytes > TRANSPORT_BYTES + QUEUED_MESSAGES * largest
            {
                return Ok(());
            }
            let bytes_before = reading.bytes;
            let change = match reading.next().await {
                Kind::Pod(pod) => {
                    if crash_looping(&pod) {
                        seen_crash_looping.insert(pod.name);
                    }
                    true
                }
                Kind::Event(_) => true,
                Kind::Resync(snapshot) => {
                    resyncs_of_b += 1;
                    for pod in snapshot.pods.into_iter().filter(crash_looping) {
                        seen_crash_looping.insert(pod.name);
                    }
                    false
                }
                Kind::Heartbeat(_) => false,
                other => panic!("B: nothing was deleted and nothing ends the stream: {other:?}"),
            };
            if change {
                let size = reading.bytes - bytes_before;
                changes += 1;
                change_bytes += size;
                largest = largest.max(size);
            }
            Err(format!(
                "B saw {changes} changes ({change_bytes} bytes) and these pods crash-loop: \
             {seen_crash_looping:?}"
            ))
        })
        .await;
    println!(
        "B received {changes} changes ({change_bytes} bytes, largest {largest}) and \
         {resyncs_of_b} resyncs while A was stalled"
    );

    // Now A reads: what it had queued, then a resync with the full state, numbered on.
    let mut queued = 0;
    let resync = stalled
        .read_until("resync", |kind| match kind {
            Kind::Resync(snapshot) => Some(snapshot),
            _ => {
                queued += 1;
                None
            }
        })
        .await;
    println!(
        "A: {queued} queued messages, then a resync of {} pods as message {}",
        resync.pods.len(),
        stalled.received
    );
    let resynced: BTreeSet<String> = resync.pods.iter().map(|p| p.name.clone()).collect();
    assert!(
        names.is_subset(&resynced),
        "A's resync must carry every pod; missing: {:?}",
        names.difference(&resynced).collect::<Vec<_>>()
    );
    // And then A follows the changes live again.
    stalled
        .read_until("live change after the resync", |kind| match kind {
            Kind::Pod(pod) => names.contains(&pod.name).then_some(()),
            _ => None,
        })
        .await;

    for name in &names {
        delete_pod(&mut client, &namespace, name, Some(Duration::ZERO)).await;
    }
    drop((stalled, reading));
    deployer.stop().await.expect("the server stops cleanly");
}

/// A cluster of the test's own, torn down when the test ends, by a panic too (the script's
/// watchdog only does it when the test process exits).
struct OwnCluster(TestCluster);

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let down = self.0.down();
        if !down.status.success() {
            eprintln!(
                "cluster.sh down failed: {}",
                String::from_utf8_lossy(&down.stderr)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_survive_an_apiserver_restart() {
    // Its own cluster: the API server goes down, which the other tests must not notice.
    let cluster = Arc::new(OwnCluster(TestCluster::start(&unique("restart"))));
    let admin = cluster.0.client().await;
    let namespace = create_namespace(&admin, "restart", &[]).await;
    let config = Config {
        heartbeat_secs: 1,
        ..Config::default()
    };
    let deployer = RunningDeployer::with(config)
        .kubeconfig(&cluster.0.kubeconfig)
        .serving()
        .await;
    let mut client = deployer.client();
    let web = deploy(
        &mut client,
        &namespace,
        "web",
        "nginx:1.27",
        pb::WaitFor::Ready,
    )
    .await;
    assert_eq!(web.health(), pb::Health::Ready);

    let mut watch = Watch::open(&mut client, by_name(&namespace, "web"), "stream of web").await;
    let snapshot = watch.snapshot().await;
    assert!(
        snapshot.pods.len() == 1
            && snapshot.pods[0].name == "web"
            && snapshot.pods[0].health() == pb::Health::Ready,
        "the snapshot holds web, ready: {snapshot:?}"
    );

    // Restart the API server, down for 3 s, reading the stream all the while.
    let restarting = Arc::clone(&cluster);
    let mut restart =
        tokio::task::spawn_blocking(move || restarting.0.restart("kube-apiserver", 3));
    let mut heartbeats_during_restart = 0;
    let restarted = loop {
        tokio::select! {
            output = &mut restart => break output.expect("the restart task"),
            kind = watch.next() => match kind {
                Kind::Heartbeat(_) => heartbeats_during_restart += 1,
                Kind::Pod(_) | Kind::Event(_) | Kind::Resync(_) => {}
                other => panic!("the API server restart reached the caller: {other:?}"),
            },
        }
    };
    assert!(
        restarted.status.success(),
        "cluster.sh restart kube-apiserver failed:\n{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    assert!(
        heartbeats_during_restart >= 1,
        "an idle stream gets a heartbeat every second, the API server down or not"
    );

    // The stream lives on after the restart, still idle.
    let mut heartbeats_after_restart = 0;
    watch
        .read_until("two heartbeats after the restart", |kind| match kind {
            Kind::Heartbeat(_) => {
                heartbeats_after_restart += 1;
                (heartbeats_after_restart == 2).then_some(())
            }
            Kind::Pod(_) | Kind::Event(_) | Kind::Resync(_) => None,
            other => panic!("after the API server restart: {other:?}"),
        })
        .await;

    // A change made after the restart arrives on the same stream: web's deletion, then the
    // end of the stream, numbered on from before.
    delete_pod(&mut client, &namespace, "web", None).await;
    let deleted = watch
        .read_until("deletion of web", |kind| match kind {
            Kind::Deleted(pod) => Some(pod),
            Kind::Heartbeat(_) | Kind::Pod(_) | Kind::Event(_) | Kind::Resync(_) => None,
            other => panic!("before web's deletion: {other:?}"),
        })
        .await;
    assert_eq!(deleted.name, "web");
    assert_eq!(deleted.health(), pb::Health::Deleted);
    match watch.next().await {
        Kind::End(end) => assert_eq!(
            end.reason(),
            pb::EndReason::PodDeleted,
            "the stream of a deleted pod ends: {end:?}"
        ),
        other => panic!("the deletion of the watched pod must end the stream, not {other:?}"),
    }
    watch.expect_closed_ok().await;
    println!(
        "stream of web: {} messages, {heartbeats_during_restart} heartbeats during the restart",
        watch.received
    );

    deployer.stop().await.expect("the server stops cleanly");
    drop(cluster);
}

/// How soon after the API server answers again every stream must have seen what changed:
/// the bound issue 9 asks for (before the fix: 20 to 50 s).
const RECOVERY_BOUND: Duration = Duration::from_secs(12);
/// Selector streams open across the restart, besides one stream by name.
const RECOVERY_STREAMS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_recover_promptly_after_an_apiserver_outage() {
    streams_recover_promptly("outage", 30, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_recover_promptly_when_the_watch_history_is_gone() {
    streams_recover_promptly("gone", 10, true).await;
}

/// Whether a process is gone (a zombie waiting for its parent counts as gone).
fn process_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// How many times the apiserver's audit log shows a LIST of the managed pods of `namespace`
/// (by label selector): the pod watch's lists, as these tests call no ListPods.
fn pod_watch_lists(cluster: &TestCluster, namespace: &str) -> usize {
    let log = std::fs::read_to_string(cluster.dir.join("logs/audit.log")).expect("the audit log");
    let prefix = format!("/api/v1/namespaces/{namespace}/pods?");
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            let uri = event["requestURI"].as_str().unwrap_or_default();
            event["verb"] == "list"
                && event["stage"] == "ResponseComplete"
                && uri.starts_with(&prefix)
                && uri.contains("labelSelector=")
        })
        .count()
}

/// The names of the pods a selector stream holds, kept up to date from its messages.
fn follow(pods: &mut BTreeSet<String>, kind: Kind) {
    match kind {
        Kind::Pod(pod) => {
            pods.insert(pod.name);
        }
        Kind::Deleted(pod) => {
            pods.remove(&pod.name);
        }
        Kind::Resync(snapshot) => *pods = snapshot.pods.into_iter().map(|p| p.name).collect(),
        Kind::Heartbeat(_) | Kind::Event(_) => {}
        other => panic!("a selector stream with until NONE got {other:?}"),
    }
}

/// Ten selector streams and one by-name stream are open while the API server is stopped for
/// `down_seconds`. While it is down, pod `vanish` is deleted in etcd behind its back (and with
/// `compact`, etcd's history is compacted, so that the watch can only be answered 410 Gone).
/// Once it answers again, `fresh` is deployed and `doomed` deleted through the service: every
/// stream must see all three changes within [`RECOVERY_BOUND`], and the stream of `vanish`
/// must end with `deleted` and `end`.
async fn streams_recover_promptly(label: &str, down_seconds: u32, compact: bool) {
    // Its own cluster: the API server goes down, which the other tests must not notice.
    let cluster = Arc::new(OwnCluster(TestCluster::start(&unique(label))));
    let admin = cluster.0.client().await;
    let namespace = create_namespace(&admin, label, &[]).await;
    let config = Config {
        heartbeat_secs: 1,
        ..Config::default()
    };
    let deployer = RunningDeployer::with(config)
        .kubeconfig(&cluster.0.kubeconfig)
        .serving()
        .await;
    let mut client = deployer.client();
    for name in ["vanish", "doomed"] {
        deploy(
            &mut client,
            &namespace,
            name,
            "nginx:1.27",
            pb::WaitFor::Ready,
        )
        .await;
    }
    let before: BTreeSet<String> = ["doomed".to_owned(), "vanish".to_owned()].into();

    let mut selected = Vec::new();
    for i in 0..RECOVERY_STREAMS {
        let label = format!("selector stream {i}");
        let mut watch = Watch::open(&mut client, by_selector(&namespace), &label).await;
        let pods: BTreeSet<String> = watch
            .snapshot()
            .await
            .pods
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(pods, before, "{label}: the snapshot holds both pods");
        selected.push((watch, pods));
    }
    let mut named = Watch::open(
        &mut client,
        by_name(&namespace, "vanish"),
        "stream of vanish",
    )
    .await;
    assert_eq!(
        named.snapshot().await.pods.len(),
        1,
        "the snapshot holds vanish"
    );
    let lists_before = pod_watch_lists(&cluster.0, &namespace);

    // Stop the API server; once it is gone, change etcd behind its back.
    let apiserver = cluster.0.pids()["kube-apiserver"];
    let restarting = Arc::clone(&cluster);
    let restart =
        tokio::task::spawn_blocking(move || restarting.0.restart("kube-apiserver", down_seconds));
    eventually("the API server to stop")
        .every(Duration::from_millis(100))
        .until(async || {
            if process_gone(apiserver) {
                Ok(())
            } else {
                Err(apiserver)
            }
        })
        .await;
    cluster
        .0
        .etcd_delete(&format!("/registry/pods/{namespace}/vanish"));
    if compact {
        cluster.0.etcd_compact();
    }
    let restarted = restart.await.expect("the restart task");
    assert!(
        restarted.status.success(),
        "cluster.sh restart kube-apiserver failed:\n{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    // cluster.sh returns once /readyz answers ok: the clock starts now.
    let answered = tokio::time::Instant::now();
    let bound = answered + RECOVERY_BOUND;

    let fresh = pb::DeployRequest {
        image: "nginx:1.27".to_owned(),
        namespace: namespace.clone(),
        name: "fresh".to_owned(),
        wait_for: pb::WaitFor::None.into(),
        ..pb::DeployRequest::default()
    };
    retry_unavailable("deploy fresh", || {
        let mut client = client.clone();
        let request = fresh.clone();
        async move { client.deploy(request).await }
    })
    .await;
    delete_pod(&mut client, &namespace, "doomed", Some(Duration::ZERO)).await;

    let after: BTreeSet<String> = ["fresh".to_owned()].into();
    let selectors = join_all(selected.iter_mut().map(|(watch, pods)| {
        let after = &after;
        async move {
            while *pods != *after {
                let kind = watch.next().await;
                follow(pods, kind);
            }
        }
    }));
    let name = async {
        let deleted = named
            .read_until("the deletion of vanish", |kind| match kind {
                Kind::Deleted(pod) => Some(pod),
                _ => None,
            })
            .await;
        assert_eq!(deleted.name, "vanish");
        match named.next().await {
            Kind::End(end) => assert_eq!(end.reason(), pb::EndReason::PodDeleted, "{end:?}"),
            other => panic!("the stream of a deleted pod must end, not go on with {other:?}"),
        }
    };
    let recovered = tokio::time::timeout_at(bound, futures::future::join(selectors, name)).await;
    let states: Vec<&BTreeSet<String>> = selected.iter().map(|(_, pods)| pods).collect();
    assert!(
        recovered.is_ok(),
        "{:?} after the API server answered again, the streams did not all see vanish and \
         doomed gone and fresh there; they hold {states:?}; the stream of vanish has {} \
         messages",
        RECOVERY_BOUND,
        named.received
    );
    println!(
        "every stream saw the changes {:?} after the API server answered again",
        answered.elapsed()
    );
    if compact {
        // The watch could not resume from its resource version: it relisted.
        let lists_after = pod_watch_lists(&cluster.0, &namespace);
        assert!(
            lists_before >= 1 && lists_after > lists_before,
            "the pod watch did not relist after its history was compacted ({lists_before} lists \
             before, {lists_after} after)"
        );
    }

    drop(selected);
    drop(named);
    deployer.stop().await.expect("the server stops cleanly");
    drop(cluster);
}
