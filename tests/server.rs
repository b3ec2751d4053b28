//! The service as a caller sees it: run in-process on 127.0.0.1:0 against a real local control
//! plane, spoken to over gRPC with generated clients.

mod support;

use std::time::Duration;

use k8s_deployer::{Config, Server};
use support::{TestCluster, WAIT};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Streaming;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// A server running in this test, stopped when `stop` is sent or dropped.
struct Running {
    channel: Channel,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), k8s_deployer::StartupError>>,
}

async fn start_server(cluster: &TestCluster) -> Running {
    let config = support::with_test_security(Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        kubeconfig: Some(cluster.kubeconfig.clone()),
        ..Config::default()
    });
    let server = Server::bind(&config).await.expect("bind the server");
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a uri")
        .connect()
        .await
        .expect("connect to the server");
    Running {
        channel,
        stop,
        task,
    }
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
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = check(health, service).await;
        if status == ServingStatus::Serving {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{service:?} is still {status:?} after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

    drop(running.stop);
    drop(health);
    drop(running.channel);
    running
        .task
        .await
        .expect("the server task")
        .expect("the server stops cleanly");
}

#[tokio::test]
async fn reflection_lists_the_deployer_and_health_services() {
    let running = start_server(TestCluster::shared()).await;
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
    let _ = running.stop.send(());
}

#[tokio::test]
async fn shutdown_reports_not_serving_to_watchers_then_stops() {
    let running = start_server(TestCluster::shared()).await;
    let mut health = HealthClient::new(running.channel.clone());
    wait_until_serving(&mut health, "").await;

    let mut watch = watch_serving(&mut health).await;

    running.stop.send(()).expect("the server is running");
    let next = tokio::time::timeout(WAIT, watch.message())
        .await
        .expect("a status change within the wait")
        .expect("the watch stream")
        .expect("a message");
    assert_eq!(next.status(), ServingStatus::NotServing);

    drop(watch);
    drop(health);
    drop(running.channel);
    tokio::time::timeout(WAIT, running.task)
        .await
        .expect("the server stops once its callers are gone")
        .expect("the server task")
        .expect("a clean stop");
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
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match Channel::from_shared(uri.to_owned())
            .expect("a uri")
            .connect()
            .await
        {
            Ok(channel) => return channel,
            Err(error) => assert!(
                tokio::time::Instant::now() < deadline,
                "cannot connect to {uri}: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
