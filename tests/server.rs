//! The service as a caller sees it: run in-process on 127.0.0.1:0 against a real local control
//! plane, spoken to over gRPC with generated clients.

mod support;

use k8s_deployer::Config;
use support::{RunningDeployer, TestCluster, WAIT, eventually};
use tonic::Streaming;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn start_server(cluster: &TestCluster) -> RunningDeployer {
    let running = RunningDeployer::with(Config::default())
        .kubeconfig(&cluster.kubeconfig)
        .start()
        .await;
    let addr = running.addr;
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    running
}

async fn check(health: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let response = health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health check");
    response.into_inner().status()
}

async fn wait_until_serving(health: &mut HealthClient<Channel>, service: &str) {
    eventually(&format!("{service:?} to be SERVING"))
        .until(async || match check(health, service).await {
            ServingStatus::Serving => Ok(()),
            status => Err(status),
        })
        .await;
}

#[tokio::test]
async fn health_turns_serving_once_the_apiserver_answers() {
    let running = start_server(TestCluster::shared()).await;
    let mut health = HealthClient::new(running.channel.clone());

    wait_until_serving(&mut health, "").await;
    wait_until_serving(&mut health, "deployer.v1.DeployerService").await;

    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .expect_err("an unknown service is not reported");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    drop(health);
    running.stop().await.expect("the server stops cleanly");
}

#[tokio::test]
async fn reflection_lists_the_deployer_and_health_services() {
    let mut running = start_server(TestCluster::shared()).await;
    let mut reflection = ServerReflectionClient::new(running.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream_once(request))
        .await
        .expect("open the reflection stream")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("a reflection answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a list of services: {response:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "deployer.v1.DeployerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    running.begin_stop();
}

#[tokio::test]
async fn shutdown_reports_not_serving_to_watchers_then_stops() {
    let mut running = start_server(TestCluster::shared()).await;
    let mut health = HealthClient::new(running.channel.clone());
    wait_until_serving(&mut health, "").await;

    let mut watch = watch_serving(&mut health).await;

    running.begin_stop();
    let next = tokio::time::timeout(WAIT, watch.message())
        .await
        .expect("a status change within the wait")
        .expect("the watch stream")
        .expect("a message");
    assert_eq!(next.status(), ServingStatus::NotServing);

    drop(watch);
    drop(health);
    running.stop().await.expect("a clean stop");
}

/// The binary, stopped by SIGTERM while a caller still holds a stream open: health turns
/// NOT_SERVING, and once `--shutdown-timeout` has passed the process exits with 0 and the
/// stream ends.
#[tokio::test]
async fn sigterm_stops_the_binary_even_with_a_stream_held_open() {
    let cluster = TestCluster::shared();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_k8s-deployer"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .arg("--shutdown-timeout")
        .arg("1")
        .args(support::TestAuth::shared().args())
        .kill_on_drop(true)
        .spawn()
        .expect("start k8s-deployer");
    let channel = connect_with_retries(&format!("http://127.0.0.1:{port}")).await;
    let mut health = HealthClient::new(channel);
    wait_until_serving(&mut health, "").await;
    let mut watch = watch_serving(&mut health).await;

    let pid = child.id().expect("a pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());

    let next = tokio::time::timeout(WAIT, watch.message())
        .await
        .expect("a status change within the wait")
        .expect("the watch stream")
        .expect("a message");
    assert_eq!(next.status(), ServingStatus::NotServing);
    // The caller keeps its stream open; the process must exit anyway.
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the process exits although a stream is still open")
        .expect("wait for the process");
    assert!(status.success(), "exit status {status}");
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the open stream ends");
    assert!(ended.is_err() || matches!(ended, Ok(None)), "{ended:?}");
}

async fn connect_with_retries(uri: &str) -> Channel {
    eventually(&format!("a connection to {uri}"))
        .until(async || {
            Channel::from_shared(uri.to_owned())
                .expect("a uri")
                .connect()
                .await
        })
        .await
}

/// Open a health Watch for the whole server and read its first message, SERVING.
async fn watch_serving(health: &mut HealthClient<Channel>) -> Streaming<HealthCheckResponse> {
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch health")
        .into_inner();
    let first = watch.message().await.expect("a status").expect("one");
    assert_eq!(first.status(), ServingStatus::Serving);
    watch
}

/// A request stream of one message.
fn tokio_stream_once<T: Send + 'static>(item: T) -> impl tokio_stream::Stream<Item = T> {
    tokio_stream::once(item)
}
