//! `deployer.v1.DeployerService` as its callers use it: through the generated client, against
//! the service running on 127.0.0.1:0 and a real local control plane. Every call, every error
//! code the contract promises, and the WatchStatus stream contract.

mod support;

use std::time::Duration;

use k8s_deployer::Config;
use k8s_deployer::proto::deployer::v1 as pb;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use pb::watch_status_response::Kind;
use support::{
    RunningDeployer, TestCluster, create_namespace, eventually, pod, pods_in,
    service_account_token, serving_deployer,
};

use tonic::{Code, Streaming};

type Client = support::DeployerClient;

fn deploy_request(namespace: &str, image: &str) -> pb::DeployRequest {
    pb::DeployRequest {
        image: image.to_owned(),
        namespace: namespace.to_owned(),
        ..pb::DeployRequest::default()
    }
}

async fn deploy(client: &mut Client, request: pb::DeployRequest) -> pb::PodStatus {
    client
        .deploy(request)
        .await
        .expect("deploy")
        .into_inner()
        .pod
        .expect("a pod status")
}

async fn watch(
    client: &mut Client,
    namespace: &str,
    name: &str,
    until: pb::Until,
) -> Streaming<pb::WatchStatusResponse> {
    client
        .watch_status(pb::WatchStatusRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            label_selector: String::new(),
            until: until.into(),
        })
        .await
        .expect("open the stream")
        .into_inner()
}

/// Read the stream until it ends (or the wait runs out), checking that sequence numbers go
/// on from `already_read` by one per message. Returns the messages read.
async fn read_to_end(
    stream: &mut Streaming<pb::WatchStatusResponse>,
    already_read: u64,
) -> Vec<pb::WatchStatusResponse> {
    let mut messages = Vec::new();
    eventually("the stream to end")
        .every(Duration::ZERO)
        .until(
            async || match stream.message().await.expect("the stream ends with OK") {
                Some(message) => {
                    assert_eq!(
                        message.sequence,
                        already_read + messages.len() as u64 + 1,
                        "sequence numbers"
                    );
                    messages.push(message);
                    Err(messages.clone())
                }
                None => Ok(()),
            },
        )
        .await;
    messages
}

/// Read until `wanted` holds for a message; returns it.
async fn read_until(
    stream: &mut Streaming<pb::WatchStatusResponse>,
    what: &str,
    wanted: impl Fn(&pb::WatchStatusResponse) -> bool,
) -> pb::WatchStatusResponse {
    eventually(what)
        .every(Duration::ZERO)
        .until(async || {
            let next = stream
                .message()
                .await
                .expect("the stream")
                .unwrap_or_else(|| panic!("the stream ended before {what}"));
            if wanted(&next) { Ok(next) } else { Err(next) }
        })
        .await
}

fn pod_of(message: &pb::WatchStatusResponse) -> Option<&pb::PodStatus> {
    match message.kind.as_ref()? {
        Kind::Pod(pod) | Kind::Deleted(pod) => Some(pod),
        _ => None,
    }
}

fn end_of(messages: &[pb::WatchStatusResponse]) -> pb::EndReason {
    match messages.last().and_then(|m| m.kind.as_ref()) {
        Some(Kind::End(end)) => end.reason(),
        other => panic!("the stream's last message is not an end: {other:?}"),
    }
}

#[tokio::test]
async fn deploy_then_watch_until_ready() {
    let (server, _admin, ns) = serving_deployer("ready").await;
    let mut client = server.client();
    let created = client
        .deploy(deploy_request(&ns, "nginx:1.27"))
        .await
        .expect("deploy")
        .into_inner();
    assert!(created.created);
    let pod = created.pod.expect("a pod");
    assert!(pod.name.starts_with("nginx-"), "{}", pod.name);
    assert_eq!(pod.name.len(), "nginx-".len() + 5);
    assert_eq!(pod.image, "nginx:1.27");
    assert_eq!(pod.labels["app.kubernetes.io/managed-by"], "k8s-deployer");
    assert!(!pod.uid.is_empty() && !pod.resource_version.is_empty());

    let mut stream = watch(&mut client, &ns, &pod.name, pb::Until::Ready).await;
    let messages = read_to_end(&mut stream, 0).await;
    assert!(
        matches!(messages[0].kind, Some(Kind::Snapshot(_))),
        "the first message is a snapshot: {:?}",
        messages[0]
    );
    assert_eq!(end_of(&messages), pb::EndReason::UntilMet);
    let last_pod = messages
        .iter()
        .rev()
        .find_map(|m| match &m.kind {
            Some(Kind::Pod(p)) => Some(p.clone()),
            Some(Kind::Snapshot(s)) => s.pods.first().cloned(),
            _ => None,
        })
        .expect("a pod status");
    assert_eq!(last_pod.health(), pb::Health::Ready);
    assert_eq!(last_pod.phase, "Running");
    assert!(!last_pod.pod_ip.is_empty() && !last_pod.node.is_empty());
    assert!(last_pod.start_time.is_some());
    let container = &last_pod.containers[0];
    assert_eq!(container.name, "app");
    assert!(container.ready);
    assert!(container.image_id.contains("@sha256:"));
    // Pod messages carry resourceVersions that only grow.
    let versions: Vec<u64> = messages
        .iter()
        .filter_map(pod_of)
        .map(|p| p.resource_version.parse().expect("a number"))
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
}

#[tokio::test]
async fn an_unpullable_image_fails_and_its_event_arrives_in_the_stream() {
    let (server, _admin, ns) = serving_deployer("pullfail").await;
    let mut client = server.client();
    let pod = deploy(&mut client, deploy_request(&ns, "fail.invalid/nothing:1")).await;
    // Until NONE: the kubelet's Event and the status change are separate objects, and either
    // may reach the stream first; both must arrive.
    let mut stream = watch(&mut client, &ns, &pod.name, pb::Until::None).await;
    let (mut failed, mut event) = (None, None);
    let mut sequence = 0;
    while failed.is_none() || event.is_none() {
        let message = read_until(&mut stream, "the failure and its event", |_| true).await;
        sequence += 1;
        assert_eq!(message.sequence, sequence, "sequence numbers");
        match &message.kind {
            Some(Kind::Pod(p)) if p.health() == pb::Health::Failed => failed = Some(p.clone()),
            Some(Kind::Event(e))
                if e.r#type == "Warning" && e.message.starts_with("Failed to pull image") =>
            {
                event = Some(e.clone());
            }
            _ => {}
        }
    }
    let failed = failed.expect("a failed status");
    assert_eq!(failed.reason(), pb::Reason::ImagePullFailed);
    assert!(
        failed.message.contains("fail.invalid/nothing:1"),
        "{}",
        failed.message
    );
    let event = event.expect("the kubelet's Warning event in the stream");
    assert_eq!(event.pod, pod.name);
    assert_eq!(event.reason, "Failed");
    assert!(event.count >= 1 && event.last_time.is_some());
}

#[tokio::test]
async fn a_crashing_image_is_a_crash_loop_and_never_ready() {
    let (server, _admin, ns) = serving_deployer("crashloop").await;
    let mut client = server.client();
    let pod = deploy(&mut client, deploy_request(&ns, "crash.invalid/app:1")).await;
    let mut stream = watch(&mut client, &ns, &pod.name, pb::Until::Terminal).await;
    let messages = read_to_end(&mut stream, 0).await;
    let statuses: Vec<&pb::PodStatus> = messages.iter().filter_map(pod_of).collect();
    assert!(statuses.iter().all(|p| p.health() != pb::Health::Ready));
    let last = statuses.last().expect("a pod status");
    assert_eq!(last.health(), pb::Health::Failed);
    assert_eq!(last.reason(), pb::Reason::CrashLoop);
    let container = &last.containers[0];
    assert!(!container.ready);
    let terminated = container
        .last_state
        .as_ref()
        .and_then(|s| s.state.as_ref())
        .map(|s| matches!(s, pb::container_state::State::Terminated(t) if t.exit_code == 1));
    assert_eq!(terminated, Some(true), "{container:?}");
}

#[tokio::test]
async fn an_oversized_pod_is_unschedulable_with_the_schedulers_message() {
    let (server, _admin, ns) = serving_deployer("oversized").await;
    let mut client = server.client();
    let mut request = deploy_request(&ns, "nginx:1.27");
    request.resources = Some(pb::Resources {
        requests: [("cpu".to_owned(), "64".to_owned())].into(),
        limits: Default::default(),
    });
    let pod = deploy(&mut client, request).await;
    let mut stream = watch(&mut client, &ns, &pod.name, pb::Until::None).await;
    let message = read_until(&mut stream, "UNSCHEDULABLE", |m| {
        let snapshot_pod = match &m.kind {
            Some(Kind::Snapshot(s)) => s.pods.first(),
            _ => pod_of(m),
        };
        snapshot_pod.is_some_and(|p| p.reason() == pb::Reason::Unschedulable)
    })
    .await;
    let status = match &message.kind {
        Some(Kind::Snapshot(s)) => s.pods[0].clone(),
        _ => pod_of(&message).expect("a pod").clone(),
    };
    assert_eq!(status.health(), pb::Health::Pending);
    assert!(
        status.message.contains("Insufficient cpu"),
        "{}",
        status.message
    );
    assert!(status.node.is_empty());
}

#[tokio::test]
async fn malformed_images_are_rejected_and_nothing_is_created() {
    let (server, admin, ns) = serving_deployer("badimage").await;
    let mut client = server.client();
    let malformed = [
        "",
        "Nginx",
        "nginx:",
        ":latest",
        "nginx@",
        "nginx@sha256:abc",
        "nginx@sha256:ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
        "ngin x",
        "nginx:tag with space",
        "-nginx",
        "nginx-",
        "nginx//x",
        "nginx/",
        "/nginx",
        "nginx:-tag",
        "http://nginx",
        "a..b/c",
        "registry.example.com/Team/app",
        "nginx:1.0:2",
        &format!("nginx:{}", "t".repeat(129)),
    ];
    for image in malformed {
        let error = client
            .deploy(deploy_request(&ns, image))
            .await
            .expect_err("a malformed image is refused");
        assert_eq!(error.code(), Code::InvalidArgument, "{image:?}: {error:?}");
        assert!(
            error.message().starts_with("image: "),
            "{image:?}: {}",
            error.message()
        );
    }
    assert!(pods_in(&admin, &ns).await.is_empty(), "no pod was created");
}

#[tokio::test]
async fn every_malformed_field_is_named_with_its_rule() {
    let (server, admin, ns) = serving_deployer("badfields").await;
    let mut client = server.client();
    let cases: Vec<(pb::DeployRequest, &str)> = vec![
        (deploy_request("Bad_NS", "nginx"), "namespace"),
        (deploy_request("", "nginx"), "namespace"),
        (
            pb::DeployRequest {
                name: "Web_1".into(),
                ..deploy_request(&ns, "nginx")
            },
            "name",
        ),
        (
            pb::DeployRequest {
                labels: [("bad key".to_owned(), "v".to_owned())].into(),
                ..deploy_request(&ns, "nginx")
            },
            "labels",
        ),
        (
            pb::DeployRequest {
                labels: [("app.kubernetes.io/managed-by".to_owned(), "me".to_owned())].into(),
                ..deploy_request(&ns, "nginx")
            },
            "labels",
        ),
        (
            pb::DeployRequest {
                env: vec![pb::EnvVar {
                    name: "1BAD".into(),
                    value: String::new(),
                    value_from: None,
                }],
                ..deploy_request(&ns, "nginx")
            },
            "env[0].name",
        ),
        (
            pb::DeployRequest {
                ports: vec![pb::ContainerPort {
                    name: String::new(),
                    container_port: 70000,
                    protocol: 0,
                }],
                ..deploy_request(&ns, "nginx")
            },
            "ports[0].container_port",
        ),
        (
            pb::DeployRequest {
                request_id: "has spaces".into(),
                ..deploy_request(&ns, "nginx")
            },
            "request_id",
        ),
        (
            pb::DeployRequest {
                resources: Some(pb::Resources {
                    requests: [("cpu".to_owned(), "lots".to_owned())].into(),
                    limits: Default::default(),
                }),
                ..deploy_request(&ns, "nginx")
            },
            "resources.requests",
        ),
    ];
    for (request, field) in cases {
        let error = client
            .deploy(request.clone())
            .await
            .expect_err("a malformed request is refused");
        assert_eq!(error.code(), Code::InvalidArgument, "{field}: {error:?}");
        assert!(
            error.message().starts_with(field),
            "{field}: the message names the field: {}",
            error.message()
        );
        // The violations are also in google.rpc.BadRequest details.
        use tonic_types::StatusExt as _;
        let details = error.get_details_bad_request().expect("BadRequest details");
        assert!(
            details
                .field_violations
                .iter()
                .any(|v| v.field.starts_with(field)),
            "{field}: {details:?}"
        );
    }
    // Several violations are reported together.
    let error = client
        .deploy(pb::DeployRequest {
            name: "Bad_Name".into(),
            ..deploy_request(&ns, "Bad:Image:")
        })
        .await
        .expect_err("refused");
    assert!(
        error.message().contains("image") && error.message().contains("name"),
        "{}",
        error.message()
    );
    assert!(pods_in(&admin, &ns).await.is_empty(), "no pod was created");
}

#[tokio::test]
async fn a_retried_request_id_gets_the_same_pod_and_a_reused_one_is_refused() {
    let (server, admin, ns) = serving_deployer("idempotent").await;
    let mut client = server.client();
    let request = pb::DeployRequest {
        request_id: "6f1c2a1e-9b1d-4c5e-8f00-1a2b3c4d5e6f".into(),
        ..deploy_request(&ns, "nginx:1.27")
    };
    let first = client
        .deploy(request.clone())
        .await
        .expect("deploy")
        .into_inner();
    let retried = client
        .deploy(request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert!(first.created);
    assert!(!retried.created, "a retry creates nothing");
    let (first, retried) = (first.pod.expect("pod"), retried.pod.expect("pod"));
    assert_eq!(first.name, retried.name);
    assert_eq!(first.uid, retried.uid);
    assert_eq!(retried.request_id, request.request_id);
    assert_eq!(pods_in(&admin, &ns).await.len(), 1, "one pod, not two");

    let error = client
        .deploy(pb::DeployRequest {
            image: "nginx:1.28".into(),
            ..request
        })
        .await
        .expect_err("the same request_id for a different request");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().starts_with("request_id"),
        "{}",
        error.message()
    );
    assert_eq!(pods_in(&admin, &ns).await.len(), 1);
}

#[tokio::test]
async fn wait_for_ready_answers_once_the_pod_is_ready() {
    let (server, _admin, ns) = serving_deployer("waitready").await;
    let mut client = server.client();
    let pod = deploy(
        &mut client,
        pb::DeployRequest {
            name: "web".into(),
            wait_for: pb::WaitFor::Ready.into(),
            ..deploy_request(&ns, "nginx:1.27")
        },
    )
    .await;
    assert_eq!(pod.health(), pb::Health::Ready);
    assert_eq!(pod.name, "web");
    assert!(pod.containers[0].ready);
}

#[tokio::test]
async fn a_failing_wait_for_answers_with_the_pods_reason() {
    let (server, _admin, ns) = serving_deployer("waitfail").await;
    let mut client = server.client();
    let error = client
        .deploy(pb::DeployRequest {
            wait_for: pb::WaitFor::Ready.into(),
            ..deploy_request(&ns, "fail.invalid/app:2")
        })
        .await
        .expect_err("the pod cannot become ready");
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert!(
        error.message().contains("IMAGE_PULL_FAILED"),
        "{}",
        error.message()
    );
    assert!(
        error.message().contains("fail.invalid/app:2"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn a_wait_that_runs_out_is_deadline_exceeded_with_the_reason() {
    let (server, _admin, ns) = serving_deployer("waittimeout").await;
    let mut client = server.client();
    let mut request = pb::DeployRequest {
        wait_for: pb::WaitFor::Scheduled.into(),
        wait_timeout: Some(prost_types::Duration {
            seconds: 3,
            nanos: 0,
        }),
        ..deploy_request(&ns, "nginx:1.27")
    };
    request.resources = Some(pb::Resources {
        requests: [("memory".to_owned(), "1Ti".to_owned())].into(),
        limits: Default::default(),
    });
    let error = client
        .deploy(request.clone())
        .await
        .expect_err("the pod never gets scheduled");
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
    assert!(error.message().contains("SCHEDULED"), "{}", error.message());
    assert!(
        error.message().contains("UNSCHEDULABLE"),
        "{}",
        error.message()
    );

    // The caller's own deadline is honoured too, with the same reason.
    let mut with_deadline = tonic::Request::new(pb::DeployRequest {
        wait_timeout: None,
        ..request
    });
    with_deadline.set_timeout(Duration::from_secs(3));
    let error = client
        .deploy(with_deadline)
        .await
        .expect_err("the caller's deadline passes first");
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
}

#[tokio::test]
async fn watch_then_delete_ends_the_stream() {
    let (server, admin, ns) = serving_deployer("watchdelete").await;
    let mut client = server.client();
    let pod = deploy(
        &mut client,
        pb::DeployRequest {
            wait_for: pb::WaitFor::Running.into(),
            ..deploy_request(&ns, "nginx:1.27")
        },
    )
    .await;
    let mut stream = watch(&mut client, &ns, &pod.name, pb::Until::None).await;
    let snapshot = stream.message().await.expect("a message").expect("one");
    assert!(
        matches!(snapshot.kind, Some(Kind::Snapshot(_))),
        "{snapshot:?}"
    );

    let deleted = client
        .delete_pod(pb::DeletePodRequest {
            namespace: ns.clone(),
            name: pod.name.clone(),
            grace_period: None,
        })
        .await
        .expect("delete")
        .into_inner()
        .pod
        .expect("a pod");
    assert!(deleted.deleting);
    let rest = read_to_end(&mut stream, 1).await;
    assert!(
        rest.iter().any(
            |m| matches!(&m.kind, Some(Kind::Deleted(p)) if p.health() == pb::Health::Deleted)
        ),
        "{rest:#?}"
    );
    match rest.last().and_then(|m| m.kind.as_ref()) {
        Some(Kind::End(end)) => assert_eq!(end.reason(), pb::EndReason::PodDeleted),
        other => panic!("not an end: {other:?}"),
    }
    assert!(pods_in(&admin, &ns).await.is_empty());
}

#[tokio::test]
async fn watching_a_name_before_it_exists_sees_it_created() {
    let (server, _admin, ns) = serving_deployer("early").await;
    let mut client = server.client();
    let mut stream = watch(&mut client, &ns, "later", pb::Until::Ready).await;
    let first = stream.message().await.expect("a message").expect("one");
    match first.kind {
        Some(Kind::Snapshot(snapshot)) => {
            assert!(snapshot.not_found);
            assert!(snapshot.pods.is_empty());
        }
        other => panic!("not a snapshot: {other:?}"),
    }
    deploy(
        &mut client,
        pb::DeployRequest {
            name: "later".into(),
            ..deploy_request(&ns, "nginx:1.27")
        },
    )
    .await;
    let messages = read_to_end(&mut stream, 1).await;
    assert_eq!(end_of(&messages), pb::EndReason::UntilMet);
    assert!(
        messages
            .iter()
            .filter_map(pod_of)
            .any(|p| p.health() == pb::Health::Ready)
    );
}

#[tokio::test]
async fn get_list_and_delete_see_only_managed_pods() {
    let (server, admin, ns) = serving_deployer("crud").await;
    let mut client = server.client();
    let web = deploy(
        &mut client,
        pb::DeployRequest {
            name: "web".into(),
            labels: [("tier".to_owned(), "front".to_owned())].into(),
            ..deploy_request(&ns, "nginx:1.27")
        },
    )
    .await;
    deploy(
        &mut client,
        pb::DeployRequest {
            name: "db".into(),
            labels: [("tier".to_owned(), "back".to_owned())].into(),
            ..deploy_request(&ns, "nginx:1.27")
        },
    )
    .await;
    // A pod this service did not create.
    Api::<Pod>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &pod("foreign", "nginx:1.27"))
        .await
        .expect("create a foreign pod");

    let status = client
        .get_status(pb::GetStatusRequest {
            namespace: ns.clone(),
            name: "web".into(),
        })
        .await
        .expect("get")
        .into_inner()
        .pod
        .expect("a pod");
    assert_eq!(status.uid, web.uid);

    let all = client
        .list_pods(pb::ListPodsRequest {
            namespace: ns.clone(),
            label_selector: String::new(),
        })
        .await
        .expect("list")
        .into_inner()
        .pods;
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["db", "web"], "sorted, managed only");
    let front = client
        .list_pods(pb::ListPodsRequest {
            namespace: ns.clone(),
            label_selector: "tier in (front)".into(),
        })
        .await
        .expect("list")
        .into_inner()
        .pods;
    assert_eq!(front.len(), 1);
    assert_eq!(front[0].name, "web");
    let bad = client
        .list_pods(pb::ListPodsRequest {
            namespace: ns.clone(),
            label_selector: "tier in (".into(),
        })
        .await
        .expect_err("a malformed selector");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("label_selector"),
        "{}",
        bad.message()
    );

    for (call, code) in [
        ("get foreign", Code::NotFound),
        ("get missing", Code::NotFound),
        ("delete foreign", Code::FailedPrecondition),
        ("delete missing", Code::NotFound),
    ] {
        let name = if call.ends_with("foreign") {
            "foreign"
        } else {
            "missing"
        };
        let result = if call.starts_with("get") {
            client
                .get_status(pb::GetStatusRequest {
                    namespace: ns.clone(),
                    name: name.into(),
                })
                .await
                .map(|_| ())
        } else {
            client
                .delete_pod(pb::DeletePodRequest {
                    namespace: ns.clone(),
                    name: name.into(),
                    grace_period: None,
                })
                .await
                .map(|_| ())
        };
        let error = result.expect_err(call);
        assert_eq!(error.code(), code, "{call}: {error:?}");
    }
    let foreign_still_there = Api::<Pod>::namespaced(admin.clone(), &ns)
        .get_opt("foreign")
        .await
        .expect("get");
    assert!(
        foreign_still_there.is_some(),
        "the foreign pod was left alone"
    );
}

#[tokio::test]
async fn a_missing_namespace_is_not_found_everywhere() {
    let (server, _admin, _ns) = serving_deployer("unused").await;
    let mut client = server.client();
    let missing = support::unique("missing");
    let deploy_error = client
        .deploy(deploy_request(&missing, "nginx:1.27"))
        .await
        .expect_err("no namespace");
    assert_eq!(deploy_error.code(), Code::NotFound, "{deploy_error:?}");
    assert!(
        deploy_error.message().contains(&missing),
        "{}",
        deploy_error.message()
    );
    let list_error = client
        .list_pods(pb::ListPodsRequest {
            namespace: missing.clone(),
            label_selector: String::new(),
        })
        .await
        .expect_err("no namespace");
    assert_eq!(list_error.code(), Code::NotFound);
    let watch_error = client
        .watch_status(pb::WatchStatusRequest {
            namespace: missing.clone(),
            name: "x".into(),
            label_selector: String::new(),
            until: 0,
        })
        .await
        .expect_err("no namespace");
    assert_eq!(watch_error.code(), Code::NotFound);
}

#[tokio::test]
async fn a_taken_name_is_already_exists() {
    let (server, _admin, ns) = serving_deployer("taken").await;
    let mut client = server.client();
    let request = pb::DeployRequest {
        name: "web".into(),
        ..deploy_request(&ns, "nginx:1.27")
    };
    deploy(&mut client, request.clone()).await;
    let error = client.deploy(request).await.expect_err("the name is taken");
    assert_eq!(error.code(), Code::AlreadyExists, "{error:?}");
    assert!(error.message().contains("web"), "{}", error.message());
}

#[tokio::test]
async fn a_dry_run_goes_through_admission_and_creates_nothing() {
    let (server, admin, ns) = serving_deployer("dryrun").await;
    let mut client = server.client();
    let answer = client
        .deploy(pb::DeployRequest {
            name: "web".into(),
            dry_run: true,
            ..deploy_request(&ns, "nginx:1.27")
        })
        .await
        .expect("a dry run")
        .into_inner();
    assert!(!answer.created);
    assert_eq!(answer.pod.expect("a pod").name, "web");
    assert!(pods_in(&admin, &ns).await.is_empty());
}

#[tokio::test]
async fn what_the_cluster_forbids_is_permission_denied() {
    let cluster = TestCluster::shared();
    let admin = cluster.client().await;
    let team_a = create_namespace(&admin, "team-a", &[]).await;
    let team_b = create_namespace(&admin, "team-b", &[]).await;
    let token = service_account_token(
        &admin,
        &team_a,
        "deployer",
        &["create", "get", "list", "watch"],
    )
    .await;
    let kubeconfig = cluster.kubeconfig_with_token(&token);
    let server = RunningDeployer::with(Config::default())
        .kubeconfig(&kubeconfig)
        .serving()
        .await;
    let mut client = server.client();

    let allowed = deploy(&mut client, deploy_request(&team_a, "nginx:1.27")).await;
    assert_eq!(allowed.namespace, team_a);
    let error = client
        .deploy(deploy_request(&team_b, "nginx:1.27"))
        .await
        .expect_err("forbidden in team-b");
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    assert!(
        !error.message().contains("forbidden: User"),
        "no apiserver text: {}",
        error.message()
    );
    let error = client
        .delete_pod(pb::DeletePodRequest {
            namespace: team_a.clone(),
            name: allowed.name,
            grace_period: None,
        })
        .await
        .expect_err("delete was not granted");
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
}

#[tokio::test]
async fn namespaces_not_served_are_refused() {
    let cluster = TestCluster::shared();
    let admin = cluster.client().await;
    let served = create_namespace(&admin, "served", &[]).await;
    let other = create_namespace(&admin, "other", &[]).await;
    let server = RunningDeployer::with(Config {
        namespaces: vec![served.clone()],
        ..Config::default()
    })
    .start()
    .await;
    // SERVING means the served namespace's watch has synced.
    server.wait_serving().await;
    let mut client = server.client();
    deploy(&mut client, deploy_request(&served, "nginx:1.27")).await;
    let error = client
        .deploy(deploy_request(&other, "nginx:1.27"))
        .await
        .expect_err("not served");
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(error.message().contains(&other), "{}", error.message());
}

#[tokio::test]
async fn an_unreachable_apiserver_is_unavailable() {
    let cluster = TestCluster::shared();
    // The shared cluster's credentials, pointed at a port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let text = std::fs::read_to_string(&cluster.kubeconfig).expect("read the kubeconfig");
    let server_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("server:"))
        .expect("a server line");
    let dead = text.replace(server_line, &format!("    server: https://{closed}"));
    let path = cluster
        .dir
        .join(format!("{}.kubeconfig", support::unique("dead")));
    std::fs::write(&path, dead).expect("write");
    let server = RunningDeployer::with(Config::default())
        .kubeconfig(&path)
        .start()
        .await;
    let mut client = server.client();
    let error = client
        .deploy(deploy_request("default", "nginx:1.27"))
        .await
        .expect_err("the apiserver is unreachable");
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
}

#[tokio::test]
async fn streams_beyond_the_maximum_are_resource_exhausted() {
    let cluster = TestCluster::shared();
    let admin = cluster.client().await;
    let ns = create_namespace(&admin, "maxstreams", &[]).await;
    let server = RunningDeployer::with(Config {
        max_streams: 1,
        ..Config::default()
    })
    .serving()
    .await;
    let mut client = server.client();
    let mut first = watch(&mut client, &ns, "a", pb::Until::None).await;
    first.message().await.expect("a snapshot").expect("one");
    let error = client
        .watch_status(pb::WatchStatusRequest {
            namespace: ns.clone(),
            name: "b".into(),
            label_selector: String::new(),
            until: 0,
        })
        .await
        .expect_err("one stream at most");
    assert_eq!(error.code(), Code::ResourceExhausted);
    // Neither or both of name and selector.
    let error = client
        .watch_status(pb::WatchStatusRequest {
            namespace: ns.clone(),
            name: String::new(),
            label_selector: String::new(),
            until: 0,
        })
        .await
        .expect_err("neither name nor selector");
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn shutdown_ends_open_streams_with_a_final_message() {
    let (server, _admin, ns) = serving_deployer("shutdown").await;
    let mut client = server.client();
    let mut stream = watch(&mut client, &ns, "anything", pb::Until::None).await;
    stream.message().await.expect("a snapshot").expect("one");
    let stopping = tokio::spawn(server.stop());
    let rest = read_to_end(&mut stream, 1).await;
    match rest.last().and_then(|m| m.kind.as_ref()) {
        Some(Kind::End(end)) => assert_eq!(end.reason(), pb::EndReason::ServerShutdown),
        other => panic!("not an end: {other:?}"),
    }
    stopping
        .await
        .expect("the stop task")
        .expect("a clean stop");
}

/// The apiserver's API Priority and Fairness, set to give the deployer's identity the
/// smallest share of seats and to reject what it cannot seat, makes it answer 429 under a
/// burst: the caller gets RESOURCE_EXHAUSTED, not a hang (the client does not retry on its
/// own) and not INTERNAL.
#[tokio::test]
async fn an_apiserver_that_throttles_is_resource_exhausted() {
    use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
    let cluster = TestCluster::shared();
    let admin = cluster.client().await;
    let ns = create_namespace(&admin, "throttled", &[]).await;
    let token = service_account_token(
        &admin,
        &ns,
        "throttled",
        &["create", "get", "list", "watch"],
    )
    .await;
    let level_name = support::unique("throttle");
    let level: PriorityLevelConfiguration = serde_json::from_value(serde_json::json!({
        "metadata": { "name": level_name },
        "spec": { "type": "Limited", "limited": {
            "nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0,
            "limitResponse": { "type": "Reject" }
        } }
    }))
    .expect("a priority level");
    let schema: FlowSchema = serde_json::from_value(serde_json::json!({
        "metadata": { "name": level_name },
        "spec": {
            "priorityLevelConfiguration": { "name": level_name },
            "matchingPrecedence": 100,
            "distinguisherMethod": { "type": "ByUser" },
            "rules": [{
                "subjects": [{ "kind": "ServiceAccount",
                               "serviceAccount": { "name": "throttled", "namespace": ns } }],
                "resourceRules": [{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                    "namespaces": ["*"] }]
            }]
        }
    }))
    .expect("a flow schema");
    let pp = PostParams::default();
    Api::<PriorityLevelConfiguration>::all(admin.clone())
        .create(&pp, &level)
        .await
        .expect("create the priority level");
    Api::<FlowSchema>::all(admin.clone())
        .create(&pp, &schema)
        .await
        .expect("create the flow schema");

    let kubeconfig = cluster.kubeconfig_with_token(&token);
    let server = RunningDeployer::with(Config::default())
        .kubeconfig(&kubeconfig)
        .serving()
        .await;
    let client = server.client();

    // Bursts of dry-run deploys (nothing is created) until the apiserver, once it has taken
    // the new flow control configuration, throttles.
    let status = eventually("the apiserver to throttle")
        .until(async || {
            let mut exhausted = Err("no call throttled");
            let calls = (0..150).map(|i| {
                let mut client = client.clone();
                let request = pb::DeployRequest {
                    name: format!("burst-{i}"),
                    dry_run: true,
                    ..deploy_request(&ns, "nginx:1.27")
                };
                async move { client.deploy(request).await }
            });
            for result in futures::future::join_all(calls).await {
                if let Err(status) = result {
                    assert_eq!(
                        status.code(),
                        Code::ResourceExhausted,
                        "only throttling may fail these calls: {status:?}"
                    );
                    exhausted = Ok(status);
                }
            }
            exhausted
        })
        .await;
    assert!(
        status.message().contains("retry later"),
        "{}",
        status.message()
    );
    assert!(
        pods_in(&admin, &ns).await.is_empty(),
        "dry runs create nothing"
    );
    // Leave the cluster's flow control as it was.
    let dp = kube::api::DeleteParams::default();
    let _ = Api::<FlowSchema>::all(admin.clone())
        .delete(&level_name, &dp)
        .await;
    let _ = Api::<PriorityLevelConfiguration>::all(admin.clone())
        .delete(&level_name, &dp)
        .await;
}

// ---------------------------------------------------------------------------------------------
// Issue 9, input defects at the boundary: unknown enum values, digest algorithms, sizes, pod
// names with dots. Each of these failed before the fix.
// ---------------------------------------------------------------------------------------------

/// The fields of an INVALID_ARGUMENT's google.rpc.BadRequest details.
fn violated_fields(error: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    error
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// Malformed workload fields (probes, env from Secrets and ConfigMaps, envFrom, pull secrets,
/// ServiceAccount, node selector, tolerations) are INVALID_ARGUMENT, each violation naming its
/// field in the BadRequest details, all of them at once; nothing is created.
#[tokio::test]
async fn malformed_workload_fields_are_named_in_the_details() {
    use pb::probe::Action;
    let (server, admin, ns) = serving_deployer("bad-workload").await;
    let mut client = server.client();
    let probe = |action| pb::Probe {
        action: Some(action),
        ..pb::Probe::default()
    };
    let secret_key = |name: &str, key: &str| pb::EnvVarSource {
        source: Some(pb::env_var_source::Source::SecretKey(pb::KeyReference {
            name: name.into(),
            key: key.into(),
            optional: false,
        })),
    };
    let request = pb::DeployRequest {
        env: vec![
            pb::EnvVar {
                name: "A".into(),
                value: "both".into(),
                value_from: Some(secret_key("db", "password")),
            },
            pb::EnvVar {
                name: "B".into(),
                value: String::new(),
                value_from: Some(secret_key("Db_Password", "../x")),
            },
        ],
        probes: Some(pb::Probes {
            readiness: Some(probe(Action::HttpGet(pb::HttpGetAction {
                path: "ready".into(),
                port: 8080,
                port_name: "http".into(),
                headers: vec![pb::HttpHeader {
                    name: "Bad Header".into(),
                    value: "v".into(),
                }],
                ..pb::HttpGetAction::default()
            }))),
            liveness: Some(pb::Probe {
                success_threshold: 2,
                period: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }),
                ..probe(Action::TcpSocket(pb::TcpSocketAction {
                    port: 0,
                    port_name: "metrics".into(),
                }))
            }),
            startup: Some(pb::Probe::default()),
        }),
        env_from: vec![pb::EnvFromSource {
            prefix: "1_".into(),
            source: None,
            optional: false,
        }],
        image_pull_secrets: vec!["regcred".into(), "regcred".into()],
        service_account: "Runner".into(),
        node_selector: [("disk".to_owned(), "fast ssd".to_owned())].into(),
        tolerations: vec![
            pb::Toleration {
                key: "k".into(),
                operator: pb::TolerationOperator::Exists.into(),
                value: "v".into(),
                toleration_seconds: Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                }),
                ..pb::Toleration::default()
            },
            pb::Toleration::default(),
        ],
        ..deploy_request(&ns, "nginx:1.27")
    };
    let error = client.deploy(request).await.expect_err("refused");
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert_eq!(
        violated_fields(&error),
        [
            "env[0].value",
            "env[1].value_from.secret_key.name",
            "env[1].value_from.secret_key.key",
            "probes.readiness.http_get.port_name",
            "probes.readiness.http_get.path",
            "probes.readiness.http_get.headers[0].name",
            "probes.liveness.tcp_socket.port_name",
            "probes.liveness.period",
            "probes.liveness.success_threshold",
            "probes.startup",
            "env_from[0].prefix",
            "env_from[0]",
            "image_pull_secrets[1]",
            "service_account",
            "node_selector[\"disk\"]",
            "tolerations[0].value",
            "tolerations[0].toleration_seconds",
            "tolerations[1].key",
        ]
    );
    assert!(
        error
            .message()
            .contains("probes.liveness.success_threshold: must be 1 for a liveness probe, not 2"),
        "{}",
        error.message()
    );
    assert!(pods_in(&admin, &ns).await.is_empty(), "no pod was created");
}

#[tokio::test]
async fn unknown_enum_values_are_invalid_argument_naming_the_field() {
    let (server, admin, ns) = serving_deployer("unknown-enum").await;
    let mut client = server.client();
    type Edit = fn(&mut pb::DeployRequest);
    let cases: [(Edit, &str); 4] = [
        (|r| r.wait_for = 99, "wait_for"),
        (|r| r.restart_policy = 99, "restart_policy"),
        (|r| r.pod_security = 99, "pod_security"),
        (
            |r| {
                r.ports = vec![pb::ContainerPort {
                    name: String::new(),
                    container_port: 80,
                    protocol: 99,
                }]
            },
            "ports[0].protocol",
        ),
    ];
    for (edit, field) in cases {
        let mut request = deploy_request(&ns, "nginx:1.27");
        edit(&mut request);
        let error = client.deploy(request).await.expect_err("refused");
        assert_eq!(error.code(), Code::InvalidArgument, "{field}: {error:?}");
        assert!(
            error
                .message()
                .starts_with(&format!("{field}: unknown value 99")),
            "{field}: {}",
            error.message()
        );
        assert_eq!(violated_fields(&error), [field]);
    }
    // Listed with the request's other violations, in one error.
    let error = client
        .deploy(pb::DeployRequest {
            wait_for: 99,
            name: "Bad_Name".into(),
            ..deploy_request(&ns, "nginx:1.27")
        })
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&error), ["wait_for", "name"]);
    assert!(pods_in(&admin, &ns).await.is_empty(), "no pod was created");

    // WatchStatus's until, with the other fields of its request.
    let error = client
        .watch_status(pb::WatchStatusRequest {
            namespace: ns.clone(),
            name: "web".into(),
            label_selector: String::new(),
            until: 99,
        })
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        error.message().starts_with("until: unknown value 99"),
        "{}",
        error.message()
    );
    let error = client
        .watch_status(pb::WatchStatusRequest {
            namespace: ns.clone(),
            name: "Bad_Name".into(),
            label_selector: String::new(),
            until: 7,
        })
        .await
        .expect_err("refused");
    assert_eq!(violated_fields(&error), ["name", "until"]);
}

#[tokio::test]
async fn unsupported_digest_algorithms_are_refused_naming_the_algorithm() {
    let (server, admin, ns) = serving_deployer("digest").await;
    let mut client = server.client();
    let hex = "0123456789abcdef".repeat(4);
    let cases = [
        (
            "nginx@md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
            "digest algorithm \"md5\" is not supported (sha256 or sha512)",
        ),
        (
            format!("nginx@sha1:{}", &hex[..40]),
            "digest algorithm \"sha1\" is not supported (sha256 or sha512)",
        ),
        (
            format!("nginx@sha256:{}", &hex[..63]),
            "sha256 digest must be 64 lower-case hex characters, not 63",
        ),
        (
            format!("nginx@sha512:{hex}"),
            "sha512 digest must be 128 lower-case hex characters, not 64",
        ),
    ];
    for (image, rule) in cases {
        let error = client
            .deploy(deploy_request(&ns, &image))
            .await
            .expect_err("refused");
        assert_eq!(error.code(), Code::InvalidArgument, "{image}: {error:?}");
        assert!(
            error.message().starts_with(&format!("image: {image:?}"))
                && error.message().ends_with(rule),
            "{image}: {}",
            error.message()
        );
    }
    assert!(pods_in(&admin, &ns).await.is_empty(), "no pod was created");
}

#[tokio::test]
async fn a_pod_too_large_for_kubernetes_is_invalid_argument_not_unavailable() {
    let (server, admin, ns) = serving_deployer("too-large").await;
    let mut client = server.client();
    // 2 MiB, below gRPC's 4 MiB: the apiserver used to answer 500, sent on as UNAVAILABLE.
    let error = client
        .deploy(pb::DeployRequest {
            env: vec![pb::EnvVar {
                name: "BIG".into(),
                value: "x".repeat(2 << 20),
                value_from: None,
            }],
            ..deploy_request(&ns, "nginx:1.27")
        })
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        error
            .message()
            .starts_with("env: the pod would take about ")
            && error.message().contains("1 MiB (1048576 bytes)"),
        "{}",
        error.message()
    );
    assert_eq!(violated_fields(&error), ["env"]);

    // Annotations: 256 KiB in all, counting the ones the service adds.
    let error = client
        .deploy(pb::DeployRequest {
            annotations: [("note".to_owned(), "x".repeat(256 * 1024 - 50))].into(),
            ..deploy_request(&ns, "nginx:1.27")
        })
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        error
            .message()
            .starts_with("annotations: total size of keys and values must be at most 256 KiB"),
        "{}",
        error.message()
    );
    assert!(pods_in(&admin, &ns).await.is_empty(), "no pod was created");
}

#[tokio::test]
async fn a_request_above_the_receive_limit_is_resource_exhausted() {
    let (server, admin, ns) = serving_deployer("receive-limit").await;
    let mut client = server.client();
    let error = client
        .deploy(pb::DeployRequest {
            args: vec!["x".repeat(5 << 20)],
            ..deploy_request(&ns, "nginx:1.27")
        })
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert!(
        error.message().contains("message length too large"),
        "{}",
        error.message()
    );
    // The server still serves the connection.
    let pod = deploy(&mut client, deploy_request(&ns, "nginx:1.27")).await;
    assert_eq!(pods_in(&admin, &ns).await.len(), 1, "{}", pod.name);
}

#[tokio::test]
async fn pod_names_with_dots_work_in_every_call() {
    let (server, admin, ns) = serving_deployer("dotted").await;
    let mut client = server.client();
    let name = "web.v1.27";
    let pod = deploy(
        &mut client,
        pb::DeployRequest {
            name: name.into(),
            ..deploy_request(&ns, "nginx:1.27")
        },
    )
    .await;
    assert_eq!(pod.name, name);
    assert!(
        pods_in(&admin, &ns)
            .await
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(name))
    );
    let status = client
        .get_status(pb::GetStatusRequest {
            namespace: ns.clone(),
            name: name.into(),
        })
        .await
        .expect("get status")
        .into_inner();
    assert_eq!(status.pod.expect("a pod").name, name);
    let mut stream = watch(&mut client, &ns, name, pb::Until::None).await;
    let first = stream
        .message()
        .await
        .expect("the stream")
        .expect("a snapshot");
    match first.kind {
        Some(Kind::Snapshot(snapshot)) => assert_eq!(snapshot.pods[0].name, name),
        other => panic!("a snapshot first: {other:?}"),
    }
    client
        .delete_pod(pb::DeletePodRequest {
            namespace: ns.clone(),
            name: name.into(),
            grace_period: Some(prost_types::Duration {
                seconds: 0,
                nanos: 0,
            }),
        })
        .await
        .expect("delete");
    let messages = read_to_end(&mut stream, 1).await;
    assert_eq!(end_of(&messages), pb::EndReason::PodDeleted);
}
