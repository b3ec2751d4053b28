//! The local control plane behaves as a real cluster does: pods run, fail to pull, crash and
//! go unscheduled the way the kubelet and scheduler report them; RBAC and PodSecurity are
//! enforced; and `cluster.sh down` leaves nothing behind. Every later test relies on this.

mod support;

use std::net::TcpStream;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use support::{
    TestCluster, condition, create_namespace, create_pod_in_new_namespace, pod,
    service_account_token, unique, wait_for_event, wait_for_pod, wait_for_pod_gone, waiting_reason,
};

#[tokio::test]
async fn a_normal_image_runs_and_becomes_ready() {
    let client = TestCluster::shared().client().await;
    let (ns, pods) = create_pod_in_new_namespace(&client, "run", &pod("web", "nginx:1.27")).await;

    let ready = wait_for_pod(&pods, "web", "Running and Ready", |p| {
        condition(p, "Ready") == Some("True")
    })
    .await;

    let status = ready.status.expect("a status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(
        status.pod_ip.as_ref().is_some_and(|ip| !ip.is_empty()),
        "a pod IP"
    );
    assert!(status.start_time.is_some(), "a start time");
    assert_eq!(condition_of(&status, "PodScheduled"), Some("True"));
    assert_eq!(condition_of(&status, "ContainersReady"), Some("True"));
    let container = &status.container_statuses.expect("container statuses")[0];
    assert_eq!(container.name, "app");
    assert_eq!(container.image, "nginx:1.27");
    assert!(container.ready);
    assert_eq!(container.started, Some(true));
    assert!(container.image_id.starts_with("nginx@sha256:"));
    let running = container.state.as_ref().and_then(|s| s.running.as_ref());
    assert!(running.is_some_and(|r| r.started_at.is_some()));

    for reason in ["Scheduled", "Pulled", "Started"] {
        let event = wait_for_event(&client, &ns, "web", reason, |e| {
            e.reason.as_deref() == Some(reason)
        })
        .await;
        assert_eq!(event.type_.as_deref(), Some("Normal"), "{reason}");
    }
}

#[tokio::test]
async fn an_unpullable_image_backs_off_with_warning_events() {
    let client = TestCluster::shared().client().await;
    let bad = pod("bad", "fail.invalid/nothing:1");
    let (ns, pods) = create_pod_in_new_namespace(&client, "pull", &bad).await;

    let backing_off = wait_for_pod(&pods, "bad", "ImagePullBackOff", |p| {
        waiting_reason(p) == Some("ImagePullBackOff")
    })
    .await;
    let status = backing_off.status.expect("a status");
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(condition_of(&status, "Ready"), Some("False"));
    let message = status.container_statuses.expect("container statuses")[0]
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .unwrap_or_default();
    assert!(message.contains("fail.invalid/nothing:1"), "{message}");

    let failed = wait_for_event(&client, &ns, "bad", "Warning Failed", |e| {
        e.type_.as_deref() == Some("Warning")
            && e.reason.as_deref() == Some("Failed")
            && e.message.as_deref() == Some("Error: ImagePullBackOff")
    })
    .await;
    assert!(failed.count.unwrap_or(1) >= 1);
}

#[tokio::test]
async fn an_upper_case_repository_is_an_invalid_image_name() {
    let client = TestCluster::shared().client().await;
    let (ns, pods) =
        create_pod_in_new_namespace(&client, "badname", &pod("upper", "Nginx:1.27")).await;

    wait_for_pod(&pods, "upper", "InvalidImageName", |p| {
        waiting_reason(p) == Some("InvalidImageName")
    })
    .await;
    wait_for_event(&client, &ns, "upper", "Warning Failed", |e| {
        e.type_.as_deref() == Some("Warning")
            && e.message.as_deref() == Some("Error: InvalidImageName")
    })
    .await;
}

#[tokio::test]
async fn a_crashing_image_crash_loops_with_rising_restarts() {
    let client = TestCluster::shared().client().await;
    let (ns, pods) =
        create_pod_in_new_namespace(&client, "crash", &pod("crash", "crash.invalid/app:1")).await;

    let looping = wait_for_pod(&pods, "crash", "CrashLoopBackOff with 2+ restarts", |p| {
        waiting_reason(p) == Some("CrashLoopBackOff") && restart_count(p) >= 2
    })
    .await;
    assert_eq!(
        condition(&looping, "Ready"),
        Some("False"),
        "a crash loop is never ready"
    );
    let status = looping.status.expect("a status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let container = &status.container_statuses.expect("container statuses")[0];
    assert!(!container.ready);
    let terminated = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("lastState.terminated");
    assert_eq!(terminated.exit_code, 1);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert!(terminated.finished_at.is_some());

    wait_for_event(&client, &ns, "crash", "Warning BackOff", |e| {
        e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("BackOff")
    })
    .await;
}

#[tokio::test]
async fn an_oom_image_that_may_not_restart_ends_failed_and_oom_killed() {
    let client = TestCluster::shared().client().await;
    let mut never = pod("oom", "oom.invalid/app:1");
    never.spec.as_mut().expect("a spec").restart_policy = Some("Never".to_owned());
    let (_, pods) = create_pod_in_new_namespace(&client, "oom", &never).await;

    let failed = wait_for_pod(&pods, "oom", "phase Failed", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
    })
    .await;
    let status = failed.status.expect("a status");
    let container = &status.container_statuses.expect("container statuses")[0];
    let terminated = container
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("state.terminated");
    assert_eq!(terminated.exit_code, 137);
    assert_eq!(terminated.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(container.restart_count, 0);
}

#[tokio::test]
async fn an_oversized_pod_is_unschedulable_with_the_schedulers_event() {
    let client = TestCluster::shared().client().await;
    let big: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "big" },
        "spec": { "containers": [{
            "name": "app", "image": "nginx:1.27",
            "resources": { "requests": { "cpu": "64", "memory": "1Ti" } }
        }] }
    }))
    .expect("a pod");
    let (ns, pods) = create_pod_in_new_namespace(&client, "big", &big).await;

    let pending = wait_for_pod(&pods, "big", "PodScheduled=False", |p| {
        condition(p, "PodScheduled") == Some("False")
    })
    .await;
    let status = pending.status.expect("a status");
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let scheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled")
        .expect("PodScheduled");
    assert_eq!(scheduled.reason.as_deref(), Some("Unschedulable"));
    assert!(
        scheduled
            .message
            .as_deref()
            .is_some_and(|m| m.contains("Insufficient cpu")),
        "{scheduled:?}"
    );
    assert!(pending.spec.and_then(|s| s.node_name).is_none());

    let event = wait_for_event(&client, &ns, "big", "FailedScheduling", |e| {
        e.reason.as_deref() == Some("FailedScheduling")
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .message
            .as_deref()
            .is_some_and(|m| m.contains("0/2 nodes are available")),
        "{event:?}"
    );
}

#[tokio::test]
async fn a_deleted_pod_goes_away() {
    let client = TestCluster::shared().client().await;
    let (ns, pods) =
        create_pod_in_new_namespace(&client, "delete", &pod("web", "nginx:1.27")).await;
    wait_for_pod(&pods, "web", "Ready", |p| {
        condition(p, "Ready") == Some("True")
    })
    .await;

    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete the pod");
    wait_for_pod_gone(&pods, "web").await;
    wait_for_event(&client, &ns, "web", "Killing", |e| {
        e.reason.as_deref() == Some("Killing")
    })
    .await;
}

#[tokio::test]
async fn rbac_limits_a_service_account_to_its_namespace() {
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
    assert!(!token.is_empty());
    let deployer = cluster.client_with_token(&token).await;
    let pp = PostParams::default();

    let allowed: Api<Pod> = Api::namespaced(deployer.clone(), &team_a);
    let created = allowed
        .create(&pp, &pod("allowed", "nginx:1.27"))
        .await
        .expect("the service account may create pods in its own namespace");
    assert_eq!(created.metadata.namespace.as_deref(), Some(team_a.as_str()));
    allowed
        .list(&Default::default())
        .await
        .expect("and list them");

    let forbidden: Api<Pod> = Api::namespaced(deployer.clone(), &team_b);
    let refused = forbidden
        .create(&pp, &pod("refused", "nginx:1.27"))
        .await
        .expect_err("creating pods in another namespace is forbidden");
    assert_eq!(api_code(&refused), Some(403), "{refused:?}");
    let refused = forbidden
        .list(&Default::default())
        .await
        .expect_err("listing pods in another namespace is forbidden");
    assert_eq!(api_code(&refused), Some(403), "{refused:?}");
    // And in its own namespace it holds only the verbs it was given.
    let refused = allowed
        .delete("allowed", &DeleteParams::default())
        .await
        .expect_err("deleting was not granted");
    assert_eq!(api_code(&refused), Some(403), "{refused:?}");
}

#[tokio::test]
async fn pod_security_admission_rejects_a_privileged_pod_under_restricted() {
    let client = TestCluster::shared().client().await;
    let ns = create_namespace(
        &client,
        "restricted",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();

    let mut privileged = pod("privileged", "nginx:1.27");
    privileged.spec.as_mut().expect("a spec").containers[0].security_context =
        Some(serde_json::from_value(serde_json::json!({ "privileged": true })).expect("ctx"));
    let refused = pods
        .create(&pp, &privileged)
        .await
        .expect_err("a privileged pod is rejected");
    assert_eq!(api_code(&refused), Some(403), "{refused:?}");
    let message = refused.to_string();
    assert!(
        message.contains("violates PodSecurity \"restricted:latest\"")
            && message.contains("privileged"),
        "{message}"
    );

    // The same namespace admits a pod that meets the restricted profile, so the refusal above
    // is the policy's and not some other fault.
    let compliant: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "compliant" },
        "spec": {
            "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "app", "image": "nginx:1.27",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": { "drop": ["ALL"] }
                }
            }]
        }
    }))
    .expect("a pod");
    pods.create(&pp, &compliant)
        .await
        .expect("a restricted-compliant pod is admitted");
}

#[test]
fn clusters_run_side_by_side_restart_components_and_go_down_without_a_trace() {
    let shared = TestCluster::shared();
    let second = TestCluster::start(&unique("down"));
    assert_ne!(
        shared.ports(),
        second.ports(),
        "each cluster has its own ports"
    );

    // `restart` brings the apiserver back on the same port with the same data.
    let created = second.kubectl(&["create", "namespace", "before-restart"]);
    assert!(created.status.success(), "{created:?}");
    let old_pid = second.pids()["kube-apiserver"];
    let restarted = second.restart("kube-apiserver", 1);
    assert!(
        restarted.status.success(),
        "cluster.sh restart failed: {}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    assert_ne!(
        second.pids()["kube-apiserver"],
        old_pid,
        "a new apiserver process"
    );
    assert!(!process_exists(old_pid), "the old apiserver is gone");
    let after = second.kubectl(&["get", "namespace", "before-restart", "-o", "name"]);
    assert!(after.status.success(), "{after:?}");

    let pids = second.pids();
    let ports = second.ports();
    for component in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "watchdog",
    ] {
        let pid = pids
            .get(component)
            .unwrap_or_else(|| panic!("no pid for {component}"));
        assert!(process_exists(*pid), "{component} runs before down");
    }
    assert_eq!(ports.len(), 6, "{ports:?}");
    for (component, port) in &ports {
        assert!(
            TcpStream::connect(("127.0.0.1", *port)).is_ok(),
            "{component} listens on {port} before down"
        );
    }

    let down = second.down();
    assert!(
        down.status.success(),
        "cluster.sh down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );

    for (component, pid) in &pids {
        assert!(
            !process_exists(*pid),
            "{component} (pid {pid}) survived down"
        );
    }
    let dir = second.dir.to_string_lossy().into_owned();
    assert!(
        processes_mentioning(&dir).is_empty(),
        "processes still mention {dir}: {:?}",
        processes_mentioning(&dir)
    );
    for (component, port) in &ports {
        assert!(
            TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "{component}'s port {port} still accepts connections after down"
        );
    }
    assert!(!second.dir.exists(), "down removes the cluster folder");

    // The other cluster is untouched.
    let nodes = shared.kubectl(&["get", "nodes", "-o", "name"]);
    assert!(nodes.status.success());
    assert_eq!(String::from_utf8_lossy(&nodes.stdout).lines().count(), 2);
}

fn condition_of<'a>(
    status: &'a k8s_openapi::api::core::v1::PodStatus,
    type_: &str,
) -> Option<&'a str> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn process_exists(pid: u32) -> bool {
    // A zombie has exited; only a live process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

fn processes_mentioning(text: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmdline =
                std::fs::read(Path::new("/proc").join(e.file_name()).join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(text).then_some(cmdline)
        })
        .collect()
}
