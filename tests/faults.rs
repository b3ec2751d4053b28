//! The service when its cluster stalls or is pressed: a frozen API server (SIGSTOP), a burst of
//! streams opened at once, and what the API server's audit log says the service asked of it.
//!
//! A test binary of its own, so its own cluster: freezing the API server would stall every
//! other test sharing it. Within this binary, a test that freezes the API server holds
//! [`CLUSTER`] for writing, the others for reading, so no test sees another's freeze.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_deployer::proto::deployer::v1 as pb;
use serde_json::Value;
use tokio::sync::RwLock;
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use support::{RunningDeployer, TestCluster, WAIT, eventually, serving_deployer};

/// Held for writing while the API server is frozen, for reading by every other test.
static CLUSTER: RwLock<()> = RwLock::const_new(());

/// The server's limit on a call when the caller sets no deadline (`--call-timeout`'s default).
const CALL_TIMEOUT: Duration = Duration::from_secs(k8s_deployer::config::DEFAULT_CALL_TIMEOUT_SECS);

/// Slack on top of a documented limit: generous, the machine may be busy. Before the limit,
/// a call waited for the client's 60 s read timeout.
const SLACK: Duration = Duration::from_secs(15);

/// The API server, stopped with SIGSTOP until this is dropped (SIGCONT), so that a failing
/// test never leaves it frozen.
struct Frozen {
    pid: u32,
}

impl Frozen {
    fn apiserver(cluster: &TestCluster) -> Frozen {
        let pid = cluster.pids()["kube-apiserver"];
        signal(pid, "STOP");
        Frozen { pid }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.pid, "CONT");
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg("-s")
        .arg(name)
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {name} {pid}: {status}");
}

fn deploy_request(namespace: &str, request_id: &str) -> pb::DeployRequest {
    pb::DeployRequest {
        image: "nginx:1.27".to_owned(),
        namespace: namespace.to_owned(),
        request_id: request_id.to_owned(),
        ..pb::DeployRequest::default()
    }
}

/// The health a server reports for `service` ("" for the whole server).
async fn health(server: &RunningDeployer, service: &str) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(server.channel.clone());
    let checked = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(checked.into_inner().status())
}

/// Waits until `service`'s health is `wanted`; panics with the last answer after `within`.
async fn wait_for_health(
    server: &RunningDeployer,
    service: &str,
    wanted: ServingStatus,
    within: Duration,
) {
    eventually(&format!("the health of {service:?} to be {wanted:?}"))
        .within(within)
        .until(async || match health(server, service).await {
            Ok(status) if status == wanted => Ok(()),
            other => Err(other),
        })
        .await;
}

#[tokio::test]
async fn a_frozen_apiserver_gets_unavailable_in_time_and_health_says_so() {
    let _exclusive = CLUSTER.write().await;
    let cluster = TestCluster::shared();
    let (server, _admin, ns) = serving_deployer("frozen").await;
    let mut client = server.client();
    wait_for_health(
        &server,
        k8s_deployer::proto::DEPLOYER_SERVICE,
        ServingStatus::Serving,
        WAIT,
    )
    .await;

    let frozen = Frozen::apiserver(cluster);

    // No deadline: the server's own limit.
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(120),
        client.deploy(deploy_request(&ns, "frozen-1")),
    )
    .await
    .expect("Deploy answers at all while the apiserver is frozen");
    let took = started.elapsed();
    let status = answer.expect_err("nothing can be created while the apiserver is frozen");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("Kubernetes did not answer within")
            // The earlier-attempt lookup stalled: no create was sent, so nothing to doubt.
            && status.message().ends_with("retry later"),
        "our words, and what to do: {status:?}"
    );
    assert!(
        took <= CALL_TIMEOUT + SLACK,
        "answered after {took:?}, the limit is {CALL_TIMEOUT:?}"
    );

    // A caller's deadline shorter than the limit: our answer, before the deadline.
    let mut request = tonic::Request::new(deploy_request(&ns, "frozen-2"));
    request.set_timeout(Duration::from_secs(3));
    let status = client
        .deploy(request)
        .await
        .expect_err("nothing can be created while the apiserver is frozen");
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "the server's answer, not the transport's DEADLINE_EXCEEDED: {status:?}"
    );
    assert!(
        status
            .message()
            .contains("Kubernetes did not answer within"),
        "{status:?}"
    );

    // Reads are bounded too.
    let mut request = tonic::Request::new(pb::ListPodsRequest {
        namespace: ns.clone(),
        label_selector: String::new(),
    });
    request.set_timeout(Duration::from_secs(3));
    let status = client.list_pods(request).await.expect_err("frozen");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // Health: the deployer service is NOT_SERVING while the apiserver does not answer; the
    // server as a whole stays SERVING.
    wait_for_health(
        &server,
        k8s_deployer::proto::DEPLOYER_SERVICE,
        ServingStatus::NotServing,
        k8s_deployer::server::APISERVER_UNREACHABLE_AFTER + SLACK,
    )
    .await;
    assert_eq!(
        health(&server, "").await.expect("health answers"),
        ServingStatus::Serving
    );

    drop(frozen);
    wait_for_health(
        &server,
        k8s_deployer::proto::DEPLOYER_SERVICE,
        ServingStatus::Serving,
        WAIT,
    )
    .await;
    // The retry with the same request_id that a caller should make now succeeds.
    eventually("the retry after the apiserver came back to succeed")
        .every(Duration::from_millis(500))
        .until(
            async || match client.deploy(deploy_request(&ns, "frozen-1")).await {
                Ok(response) => Ok(response
                    .into_inner()
                    .pod
                    .expect("Deploy answers with the pod")),
                Err(status) if status.code() == Code::Unavailable => Err(status),
                Err(status) => panic!("the retry after the apiserver came back: {status:?}"),
            },
        )
        .await;
}

/// The API server's audit events (one JSON object per line) from line `from` on, completed
/// requests only (a watch has one more event, when its response starts).
fn audit_events(cluster: &TestCluster, from: usize) -> Vec<Value> {
    std::fs::read_to_string(cluster.dir.join("logs/audit.log"))
        .expect("the audit log")
        .lines()
        .skip(from)
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["stage"] == "ResponseComplete")
        .collect()
}

fn audit_log_lines(cluster: &TestCluster) -> usize {
    std::fs::read_to_string(cluster.dir.join("logs/audit.log"))
        .expect("the audit log")
        .lines()
        .count()
}

/// Requests made with the tests' admin credentials (`tests/cluster/cluster.sh`), which the
/// deployer runs with here; not the control plane's components, nor kwok.
fn by_admin(event: &Value) -> bool {
    event["user"]["username"] == "kubernetes-admin"
}

#[tokio::test]
async fn opening_many_streams_reads_the_namespace_once_and_health_answers() {
    const STREAMS: usize = 200;
    const CONNECTIONS: usize = 4;
    let _shared = CLUSTER.read().await;
    let cluster = TestCluster::shared();
    let (server, _admin, ns) = serving_deployer("burst").await;
    let audit_from = audit_log_lines(cluster);

    // Several connections, as many callers would have: one HTTP/2 connection would cap the
    // streams it carries at once.
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .expect("a uri")
            .connect()
            .await
            .expect("connect");
        channels.push(channel);
    }
    let opened = (0..STREAMS).map(|i| {
        let mut client = support::tester_client(channels[i % CONNECTIONS].clone());
        let ns = ns.clone();
        async move {
            let mut stream = client
                .watch_status(pb::WatchStatusRequest {
                    namespace: ns,
                    name: format!("pod-{i}"),
                    label_selector: String::new(),
                    until: pb::Until::None.into(),
                })
                .await
                .expect("the stream opens")
                .into_inner();
            let first = stream
                .message()
                .await
                .expect("a first message")
                .expect("the stream is open");
            assert!(
                matches!(
                    first.kind,
                    Some(pb::watch_status_response::Kind::Snapshot(_))
                ),
                "{first:?}"
            );
            stream
        }
    });
    let burst = futures::future::join_all(opened);
    tokio::pin!(burst);

    // Health, on its own connection to the same port, answers throughout the burst.
    let checks = AtomicUsize::new(0);
    let health_checks = async {
        loop {
            let answer = tokio::time::timeout(Duration::from_secs(5), health(&server, "")).await;
            assert!(
                matches!(answer, Ok(Ok(ServingStatus::Serving))),
                "health during the burst: {answer:?}"
            );
            checks.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let streams = tokio::select! {
        streams = &mut burst => streams,
        () = health_checks => unreachable!("health checks go on until the burst is over"),
    };
    assert!(
        checks.load(Ordering::Relaxed) > 0,
        "health answered during the burst"
    );
    assert_eq!(streams.len(), STREAMS);

    let namespace_reads = audit_events(cluster, audit_from)
        .into_iter()
        .filter(|event| {
            by_admin(event)
                && event["verb"] == "get"
                && event["objectRef"]["resource"] == "namespaces"
                && event["objectRef"]["name"] == ns.as_str()
        })
        .count();
    assert!(
        (1..=3).contains(&namespace_reads),
        "{STREAMS} streams opened at once read namespace {ns} {namespace_reads} times"
    );
}

#[tokio::test]
async fn apiserver_requests_carry_our_user_agent() {
    let _shared = CLUSTER.read().await;
    let cluster = TestCluster::shared();
    let (server, _admin, ns) = serving_deployer("agent").await;
    let audit_from = audit_log_lines(cluster);
    let mut client = server.client();
    client
        .deploy(deploy_request(&ns, "agent-1"))
        .await
        .expect("deploy");

    let ours: Vec<Value> = audit_events(cluster, audit_from)
        .into_iter()
        .filter(|event| by_admin(event) && event["objectRef"]["namespace"] == ns.as_str())
        .filter(|event| event["objectRef"]["resource"] == "pods")
        .collect();
    assert!(
        ours.iter().any(|event| event["verb"] == "create"),
        "the deployer's create is in the audit log: {ours:#?}"
    );
    let expected = format!("k8s-deployer/{}", env!("CARGO_PKG_VERSION"));
    for event in &ours {
        let agent = event["userAgent"].as_str().unwrap_or_default();
        assert!(
            agent.starts_with(&expected),
            "{} {} by user agent {agent:?}",
            event["verb"],
            event["requestURI"]
        );
    }
}
