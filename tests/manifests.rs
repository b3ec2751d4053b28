//! The service's own manifests against the real local control plane: `kubectl kustomize
//! manifests` renders a complete install that the apiserver accepts, whose pods the real
//! PodSecurity admission lets into the `restricted` namespace, and whose ServiceAccount can
//! do exactly what the service needs in the example target namespace `apps`, and nothing else.
//!
//! The install has fixed names (`k8s-deployer`, `apps`); this test binary has its own cluster,
//! and its tests take turns (`take_turn`) and set up what each needs, so any order works.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};
use support::{TestCluster, eventually, unique};

/// Where the service runs.
const INSTALL_NAMESPACE: &str = "k8s-deployer";
/// The example target namespace: where the service deploys pods. Not part of the install.
const TARGET_NAMESPACE: &str = "apps";
/// The service's identity, as the apiserver knows it.
const SERVICE_ACCOUNT: &str = "system:serviceaccount:k8s-deployer:k8s-deployer";
/// The Deployment's pods.
const POD_SELECTOR: &str = "app.kubernetes.io/name=k8s-deployer,app.kubernetes.io/component=server";

/// The tests change the same objects of the shared cluster: one at a time.
fn take_turn() -> MutexGuard<'static, ()> {
    static INSTALL: Mutex<()> = Mutex::new(());
    INSTALL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Run kubectl (admin); its standard output, or a panic with what it said.
fn kubectl(cluster: &TestCluster, args: &[&str]) -> String {
    let output = cluster.kubectl(args);
    assert!(
        output.status.success(),
        "kubectl {} failed ({}):\n{}\n{}",
        args.join(" "),
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// A new file in the cluster's folder.
fn write(cluster: &TestCluster, name: &str, text: &str) -> PathBuf {
    let path = cluster.dir.join(unique(name));
    std::fs::write(&path, text).expect("write a file into the cluster folder");
    path
}

/// The objects as one `List` file, which kubectl takes as it takes a YAML stream.
fn write_list(cluster: &TestCluster, name: &str, objects: &[Value]) -> PathBuf {
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
    write(cluster, name, &list.to_string())
}

fn path_str(path: &std::path::Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The install exactly as `kubectl kustomize manifests` renders it, as JSON objects (kubectl
/// converts, as there is no YAML parser among the dev-dependencies).
fn rendered(cluster: &TestCluster) -> Vec<Value> {
    let manifests = support::repo_root().join("manifests");
    let yaml = kubectl(cluster, &["kustomize", path_str(&manifests)]);
    let file = write(cluster, "rendered.yaml", &yaml);
    let json = kubectl(
        cluster,
        &[
            "create",
            "--dry-run=client",
            "-o",
            "json",
            "-f",
            path_str(&file),
        ],
    );
    serde_json::Deserializer::from_str(&json)
        .into_iter::<Value>()
        .map(|object| object.expect("kubectl prints JSON objects"))
        .collect()
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {object:#}"))
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| text(o, "/kind") == kind)
        .collect()
}

/// How kubectl names an object in what it prints: `deployment.apps/k8s-deployer`.
fn kubectl_id(object: &Value) -> String {
    let kind = text(object, "/kind").to_lowercase();
    let name = text(object, "/metadata/name");
    match text(object, "/apiVersion").split_once('/') {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// Create the target namespace unless it exists: it belongs to its team, not to the install.
fn ensure_target_namespace(cluster: &TestCluster) {
    let output = cluster.kubectl(&["create", "namespace", TARGET_NAMESPACE]);
    assert!(
        output.status.success() || stderr(&output).contains("AlreadyExists"),
        "cannot create namespace {TARGET_NAMESPACE}: {}",
        stderr(&output)
    );
}

/// `kubectl apply` these objects for real.
fn apply(cluster: &TestCluster, name: &str, objects: &[Value]) {
    let file = write_list(cluster, name, objects);
    kubectl(cluster, &["apply", "-f", path_str(&file)]);
}

/// Applies the install's ServiceAccount (with its Namespace) and RBAC for real, in a target
/// namespace created first.
fn apply_rbac(cluster: &TestCluster, objects: &[Value]) {
    let rbac: Vec<Value> = objects
        .iter()
        .filter(|o| {
            ["Namespace", "ServiceAccount", "Role", "RoleBinding"].contains(&text(o, "/kind"))
        })
        .cloned()
        .collect();
    ensure_target_namespace(cluster);
    apply(cluster, "rbac", &rbac);
}

/// The Secret the install expects but does not contain: the server's certificate, as
/// cert-manager or an operator would provide it.
fn ensure_tls_secret(cluster: &TestCluster) {
    let key = cluster.dir.join(unique("tls.key"));
    let cert = cluster.dir.join(unique("tls.crt"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=k8s-deployer.k8s-deployer.svc",
        ])
        .args([
            "-addext",
            "subjectAltName=DNS:k8s-deployer.k8s-deployer.svc",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "openssl: {}", stderr(&made));
    let output = cluster.kubectl(&[
        "create",
        "secret",
        "tls",
        "k8s-deployer-tls",
        "-n",
        INSTALL_NAMESPACE,
        "--cert",
        path_str(&cert),
        "--key",
        path_str(&key),
    ]);
    assert!(
        output.status.success() || stderr(&output).contains("AlreadyExists"),
        "cannot create the TLS secret: {}",
        stderr(&output)
    );
}

/// An RBAC rule in a form that compares regardless of order.
fn rule(rule: &Value) -> [Vec<String>; 4] {
    let list = |field: &str| {
        let mut items: Vec<String> = rule
            .get(field)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|i| i.as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        items.sort();
        items
    };
    [
        list("apiGroups"),
        list("resources"),
        list("verbs"),
        list("resourceNames"),
    ]
}

fn rules(object: &Value) -> Vec<[Vec<String>; 4]> {
    let mut rules: Vec<_> = object["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no rules in {object:#}"))
        .iter()
        .map(rule)
        .collect();
    rules.sort();
    rules
}

fn strings(items: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = items.iter().map(|&s| s.to_owned()).collect();
    items.sort();
    items
}

/// `kubectl auth can-i ... --as` the service's ServiceAccount.
fn service_account_can(cluster: &TestCluster, question: &[&str]) -> bool {
    let mut args = vec!["auth", "can-i"];
    args.extend_from_slice(question);
    args.extend_from_slice(&["--as", SERVICE_ACCOUNT]);
    let output = cluster.kubectl(&args);
    match stdout(&output).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl auth can-i {}: {other:?}\n{}",
            question.join(" "),
            stderr(&output)
        ),
    }
}

/// The messages of the FailedCreate events in the install's namespace: pods a controller
/// could not create (PodSecurity's refusals among them).
fn failed_create_events(cluster: &TestCluster) -> Vec<String> {
    let events = kubectl(
        cluster,
        &[
            "get",
            "events",
            "-n",
            INSTALL_NAMESPACE,
            "--field-selector",
            "reason=FailedCreate",
            "-o",
            "json",
        ],
    );
    let events: Value = serde_json::from_str(&events).expect("an event list");
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn every_rendered_manifest_is_accepted_by_the_apiserver_in_a_server_side_dry_run() {
    let cluster = TestCluster::shared();
    let _turn = take_turn();
    let objects = rendered(cluster);

    // A complete install: the service's namespace but not the target namespace (it belongs
    // to its team), and no Secret (the TLS certificate is provided separately).
    let mut kinds: Vec<&str> = objects.iter().map(|o| text(o, "/kind")).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    );
    let namespaces: Vec<Value> = of_kind(&objects, "Namespace")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(text(&namespaces[0], "/metadata/name"), INSTALL_NAMESPACE);

    // A dry run creates nothing, and namespaced objects are refused while their namespace
    // does not exist: the namespaces are made for real first.
    apply(cluster, "namespaces", &namespaces);
    ensure_target_namespace(cluster);

    let install = write_list(cluster, "install", &objects);
    let output = cluster.kubectl(&["apply", "--dry-run=server", "-f", path_str(&install)]);
    let printed = stdout(&output);
    assert!(
        output.status.success(),
        "the apiserver refused the install:\n{printed}\n{}",
        stderr(&output)
    );
    for object in &objects {
        let id = kubectl_id(object);
        assert!(
            printed
                .lines()
                .any(|l| l.starts_with(&format!("{id} ")) && l.ends_with("(server dry run)")),
            "{id} was not accepted in the dry run:\n{printed}"
        );
    }
    assert_eq!(printed.lines().count(), objects.len(), "{printed}");

    // The check can fail: the same install with a Deployment whose selector does not match
    // its pods' labels is refused, and the refusal names it.
    let mut broken = objects.clone();
    let deployment = broken
        .iter_mut()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    deployment["spec"]["template"]["metadata"]["labels"] =
        json!({ "app.kubernetes.io/name": "something-else" });
    let broken = write_list(cluster, "broken", &broken);
    let output = cluster.kubectl(&["apply", "--dry-run=server", "-f", path_str(&broken)]);
    assert!(
        !output.status.success(),
        "a broken Deployment passed the dry run:\n{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains(r#"The Deployment "k8s-deployer" is invalid"#),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
// The turn is a std mutex held across awaits on purpose: these tests share fixed names and
// take turns; each runs on its own runtime, so no task of another test waits on this one.
#[allow(clippy::await_holding_lock)]
async fn the_deployments_pods_are_admitted_under_pod_security_restricted() {
    let cluster = TestCluster::shared();
    let _turn = take_turn();
    let objects = rendered(cluster);
    let namespaces: Vec<Value> = of_kind(&objects, "Namespace")
        .into_iter()
        .cloned()
        .collect();
    apply(cluster, "namespaces", &namespaces);
    ensure_target_namespace(cluster);

    // The restricted profile is enforced there, so that the pods' admission below means
    // something: a privileged pod is refused.
    let privileged = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "privileged", "namespace": INSTALL_NAMESPACE },
        "spec": { "containers": [{
            "name": "app", "image": "nginx:1.27", "securityContext": { "privileged": true }
        }] }
    });
    let file = write(cluster, "privileged.json", &privileged.to_string());
    let output = cluster.kubectl(&["create", "--dry-run=server", "-f", path_str(&file)]);
    assert!(
        !output.status.success() && stderr(&output).contains("violates PodSecurity \"restricted"),
        "a privileged pod was not refused in {INSTALL_NAMESPACE}: {}{}",
        stdout(&output),
        stderr(&output)
    );

    ensure_tls_secret(cluster);
    apply(cluster, "install", &objects);

    // The ReplicaSet controller creates the pods, PodSecurity admits them, the scheduler
    // places them, kwok runs them. A refusal shows as a FailedCreate event of the ReplicaSet.
    let pods = eventually("two running pods of the Deployment")
        .until(async || {
            let refused = failed_create_events(cluster);
            assert!(refused.is_empty(), "pods were refused: {refused:#?}");
            let list: Value = serde_json::from_str(&kubectl(
                cluster,
                &[
                    "get",
                    "pods",
                    "-n",
                    INSTALL_NAMESPACE,
                    "-l",
                    POD_SELECTOR,
                    "-o",
                    "json",
                ],
            ))
            .expect("a pod list");
            let running: Vec<Value> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| {
                    p["status"]["phase"] == "Running"
                        && p["metadata"]["deletionTimestamp"].is_null()
                })
                .cloned()
                .collect();
            if running.len() >= 2 {
                Ok(running)
            } else {
                Err(format!("{list:#}"))
            }
        })
        .await;
    let refused = failed_create_events(cluster);
    assert!(refused.is_empty(), "pods were refused: {refused:#?}");

    // Spread over the two nodes: losing one leaves a replica serving.
    let mut nodes: Vec<&str> = pods.iter().map(|p| text(p, "/spec/nodeName")).collect();
    nodes.sort_unstable();
    nodes.dedup();
    assert_eq!(nodes.len(), 2, "both replicas on one node: {nodes:?}");
}

#[tokio::test]
// The turn is a std mutex held across awaits on purpose: these tests share fixed names and
// take turns; each runs on its own runtime, so no task of another test waits on this one.
#[allow(clippy::await_holding_lock)]
async fn the_service_account_can_do_what_the_service_needs_and_nothing_more() {
    let cluster = TestCluster::shared();
    let _turn = take_turn();
    let objects = rendered(cluster);

    // In the target namespace: pods (create, read, watch, delete) and their events.
    let roles = of_kind(&objects, "Role");
    assert_eq!(roles.len(), 1, "{roles:#?}");
    assert_eq!(text(roles[0], "/metadata/namespace"), TARGET_NAMESPACE);
    assert_eq!(
        rules(roles[0]),
        [
            [
                strings(&[""]),
                strings(&["events"]),
                strings(&["list", "watch"]),
                vec![]
            ],
            [
                strings(&[""]),
                strings(&["namespaces"]),
                strings(&["get"]),
                vec![]
            ],
            [
                strings(&[""]),
                strings(&["pods"]),
                strings(&["create", "get", "list", "watch", "delete"]),
                vec![],
            ],
            [
                strings(&[""]),
                strings(&["services"]),
                strings(&["create", "patch", "get", "list", "delete"]),
                vec![],
            ],
            [
                strings(&["apps"]),
                strings(&["deployments"]),
                strings(&["create", "patch", "get", "list", "watch", "delete"]),
                vec![],
            ],
            [
                strings(&["apps"]),
                strings(&["replicasets"]),
                strings(&["list", "watch"]),
                vec![],
            ],
        ]
    );
    let bindings = of_kind(&objects, "RoleBinding");
    assert_eq!(bindings.len(), 1, "{bindings:#?}");
    assert_eq!(text(bindings[0], "/metadata/namespace"), TARGET_NAMESPACE);
    assert_eq!(
        bindings[0]["roleRef"],
        json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "k8s-deployer" })
    );
    // kustomize's namespace transformer must not have moved the subject into `apps`.
    assert_eq!(
        bindings[0]["subjects"],
        json!([{ "kind": "ServiceAccount", "name": "k8s-deployer", "namespace": "k8s-deployer" }])
    );

    // Nothing cluster-wide: the namespaced Role also covers reading its own Namespace.
    assert!(of_kind(&objects, "ClusterRole").is_empty());
    assert!(of_kind(&objects, "ClusterRoleBinding").is_empty());

    // The target namespaces are named in two places; they must agree: the Roles' namespaces
    // and what the service is told to serve.
    let deployment = of_kind(&objects, "Deployment")[0];
    let served = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "DEPLOYER_NAMESPACES")
        .map(|e| text(e, "/value"))
        .expect("DEPLOYER_NAMESPACES is set");
    let mut served: Vec<&str> = served.split(',').collect();
    served.sort_unstable();
    let mut role_namespaces: Vec<&str> = roles
        .iter()
        .map(|r| text(r, "/metadata/namespace"))
        .collect();
    role_namespaces.sort_unstable();
    assert_eq!(served, role_namespaces);

    // The same, asked of the real apiserver's authorizer once the RBAC is applied.
    apply_rbac(cluster, &objects);

    let allowed: [&[&str]; 14] = [
        &["create", "pods", "-n", "apps"],
        &["patch", "deployments.apps", "-n", "apps"],
        &["create", "deployments.apps", "-n", "apps"],
        &["delete", "deployments.apps", "-n", "apps"],
        &["list", "replicasets.apps", "-n", "apps"],
        &["patch", "services", "-n", "apps"],
        &["delete", "services", "-n", "apps"],
        &["get", "pods", "-n", "apps"],
        &["list", "pods", "-n", "apps"],
        &["watch", "pods", "-n", "apps"],
        &["delete", "pods", "-n", "apps"],
        &["list", "events", "-n", "apps"],
        &["watch", "events", "-n", "apps"],
        &["get", "namespace/apps", "-n", "apps"],
    ];
    // The authorizer sees new bindings shortly after they are written: wait for all.
    eventually("the ServiceAccount's rights in apps")
        .until(async || {
            let missing: Vec<String> = allowed
                .iter()
                .filter(|q| !service_account_can(cluster, q))
                .map(|q| q.join(" "))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("still refused: {missing:?}"))
            }
        })
        .await;
    let refused: [&[&str]; 16] = [
        &["create", "pods", "-n", "default"],
        &["list", "pods", "--all-namespaces"],
        &["get", "namespace/default"],
        &["get", "namespace/default", "-n", "default"],
        &["list", "namespaces"],
        &["create", "secrets", "-n", "apps"],
        &["get", "secrets", "-n", "k8s-deployer"],
        &["update", "pods", "-n", "apps"],
        &["patch", "pods", "-n", "apps"],
        &["create", "pods", "--subresource=exec", "-n", "apps"],
        &["get", "pods", "--subresource=log", "-n", "apps"],
        &["update", "deployments.apps", "-n", "apps"],
        &[
            "update",
            "deployments.apps",
            "--subresource=scale",
            "-n",
            "apps",
        ],
        &["get", "replicasets.apps", "-n", "apps"],
        &["create", "deployments.apps", "-n", "default"],
        &[
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            "-n",
            "apps",
        ],
    ];
    for question in refused {
        assert!(
            !service_account_can(cluster, question),
            "the ServiceAccount may {}",
            question.join(" ")
        );
    }
}

/// Every `(verb, resource)` the user made in `namespace` according to the apiserver's audit
/// log, from line `from` on, with the highest response code seen for it.
fn audited_requests(
    cluster: &TestCluster,
    user: &str,
    namespace: &str,
    from: usize,
) -> std::collections::BTreeMap<(String, String), u64> {
    let log = std::fs::read_to_string(cluster.dir.join("logs/audit.log")).expect("the audit log");
    let mut seen = std::collections::BTreeMap::new();
    for line in log.lines().skip(from) {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if event["user"]["username"] != user || event["objectRef"]["namespace"] != namespace {
            continue;
        }
        let verb = text(&event, "/verb");
        let resource = text(&event, "/objectRef/resource");
        let code = event["responseStatus"]["code"].as_u64().unwrap_or(0);
        // A server-side apply that creates its object is a patch answered 201, which the
        // apiserver authorizes as a create too.
        let created_by_apply = verb == "patch" && code == 201;
        for verb in std::iter::once(verb).chain(created_by_apply.then_some("create")) {
            let worst = seen
                .entry((verb.to_owned(), resource.to_owned()))
                .or_insert(0);
            *worst = (*worst).max(code);
        }
    }
    seen
}

/// The service itself, run with a token of the manifests' own ServiceAccount (TokenRequest):
/// it does its whole job in the target namespace, gets PERMISSION_DENIED (the apiserver's
/// 403) elsewhere, and the apiserver's audit log shows it used every verb the Role grants and
/// was refused nothing there: nothing needed is missing, nothing granted is unused.
#[tokio::test]
// The turn is a std mutex held across awaits on purpose: these tests share fixed names and
// take turns; each runs on its own runtime, so no task of another test waits on this one.
#[allow(clippy::await_holding_lock)]
async fn the_service_does_its_job_with_its_own_service_account_and_nothing_more() {
    use k8s_deployer::proto::deployer::v1 as pb;
    use support::RunningDeployer;

    let cluster = TestCluster::shared();
    let _turn = take_turn();
    let objects = rendered(cluster);
    apply_rbac(cluster, &objects);
    let elsewhere = unique("elsewhere");
    kubectl(cluster, &["create", "namespace", &elsewhere]);
    let token = kubectl(
        cluster,
        &["create", "token", "k8s-deployer", "-n", "k8s-deployer"],
    );
    let kubeconfig = cluster.kubeconfig_with_token(token.trim());
    let user = "system:serviceaccount:k8s-deployer:k8s-deployer";
    let audit_from = std::fs::read_to_string(cluster.dir.join("logs/audit.log"))
        .expect("the audit log")
        .lines()
        .count();

    let deployer = RunningDeployer::with(k8s_deployer::Config::default())
        .kubeconfig(&kubeconfig)
        .serving()
        .await;
    let mut client = deployer.client();

    // The whole job in the target namespace.
    let name = unique("web");
    let deployed = client
        .deploy(pb::DeployRequest {
            image: "nginx:1.27".to_owned(),
            namespace: TARGET_NAMESPACE.to_owned(),
            name: name.clone(),
            wait_for: pb::WaitFor::Ready.into(),
            ..pb::DeployRequest::default()
        })
        .await
        .expect("Deploy with wait_for READY, as the ServiceAccount")
        .into_inner();
    assert_eq!(deployed.pod.expect("a pod").health(), pb::Health::Ready);
    let status = client
        .get_status(pb::GetStatusRequest {
            namespace: TARGET_NAMESPACE.to_owned(),
            name: name.clone(),
        })
        .await
        .expect("GetStatus")
        .into_inner();
    assert_eq!(status.pod.expect("a pod").name, name);
    let listed = client
        .list_pods(pb::ListPodsRequest {
            namespace: TARGET_NAMESPACE.to_owned(),
            ..pb::ListPodsRequest::default()
        })
        .await
        .expect("ListPods")
        .into_inner();
    assert!(listed.pods.iter().any(|p| p.name == name));
    let mut stream = client
        .watch_status(pb::WatchStatusRequest {
            namespace: TARGET_NAMESPACE.to_owned(),
            name: name.clone(),
            until: pb::Until::Ready.into(),
            ..pb::WatchStatusRequest::default()
        })
        .await
        .expect("WatchStatus")
        .into_inner();
    let first = stream.message().await.expect("a message").expect("open");
    assert!(matches!(
        first.kind,
        Some(pb::watch_status_response::Kind::Snapshot(_))
    ));
    client
        .delete_pod(pb::DeletePodRequest {
            namespace: TARGET_NAMESPACE.to_owned(),
            name: name.clone(),
            ..pb::DeletePodRequest::default()
        })
        .await
        .expect("DeletePod");

    // The DeploymentService's whole job: apply (creating, exposing, waiting on the rollout
    // hub's shared Deployment and ReplicaSet watches), read, list, scale, restart, list
    // revisions, roll back, apply without expose (the Service goes), delete with wait.
    let mut deployments = deployer.deployments();
    let app = unique("app");
    let apply = |image: &str, expose: bool| pb::ApplyDeploymentRequest {
        image: image.to_owned(),
        namespace: TARGET_NAMESPACE.to_owned(),
        name: app.clone(),
        expose,
        ports: vec![pb::ContainerPort {
            container_port: 8080,
            ..pb::ContainerPort::default()
        }],
        wait_for: pb::RolloutWaitFor::RolledOut.into(),
        ..pb::ApplyDeploymentRequest::default()
    };
    deployments
        .apply_deployment(apply("nginx:1.27", true))
        .await
        .expect("ApplyDeployment, exposed, as the ServiceAccount");
    deployments
        .apply_deployment(apply("nginx:1.28", true))
        .await
        .expect("ApplyDeployment of a second revision");
    let named = || (TARGET_NAMESPACE.to_owned(), app.clone());
    let (namespace, name) = named();
    deployments
        .get_deployment(pb::GetDeploymentRequest { namespace, name })
        .await
        .expect("GetDeployment");
    deployments
        .list_deployments(pb::ListDeploymentsRequest {
            namespace: TARGET_NAMESPACE.to_owned(),
            ..pb::ListDeploymentsRequest::default()
        })
        .await
        .expect("ListDeployments");
    let (namespace, name) = named();
    deployments
        .scale_deployment(pb::ScaleDeploymentRequest {
            namespace,
            name,
            replicas: 2,
        })
        .await
        .expect("ScaleDeployment");
    let (namespace, name) = named();
    deployments
        .restart_deployment(pb::RestartDeploymentRequest {
            namespace,
            name,
            ..pb::RestartDeploymentRequest::default()
        })
        .await
        .expect("RestartDeployment");
    let (namespace, name) = named();
    deployments
        .list_revisions(pb::ListRevisionsRequest { namespace, name })
        .await
        .expect("ListRevisions");
    let (namespace, name) = named();
    deployments
        .rollback_deployment(pb::RollbackDeploymentRequest {
            namespace,
            name,
            ..pb::RollbackDeploymentRequest::default()
        })
        .await
        .expect("RollbackDeployment");
    deployments
        .apply_deployment(apply("nginx:1.28", false))
        .await
        .expect("ApplyDeployment without expose");
    let (namespace, name) = named();
    deployments
        .delete_deployment(pb::DeleteDeploymentRequest {
            namespace,
            name,
            wait: true,
            ..pb::DeleteDeploymentRequest::default()
        })
        .await
        .expect("DeleteDeployment");

    // Outside the target namespaces the cluster says no, and the caller hears it.
    let refused = client
        .deploy(pb::DeployRequest {
            image: "nginx:1.27".to_owned(),
            namespace: elsewhere.clone(),
            ..pb::DeployRequest::default()
        })
        .await
        .expect_err("the ServiceAccount may not create pods there");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        !refused.message().contains("forbidden"),
        "apiserver text leaked: {refused:?}"
    );

    // Every grant was used, none was refused in the target namespace.
    let role = of_kind(&objects, "Role")[0];
    let mut granted = Vec::new();
    for rule in rules(role) {
        for resource in &rule[1] {
            for verb in &rule[2] {
                granted.push((verb.clone(), resource.clone()));
            }
        }
    }
    let used = eventually("the audit log to show every grant in use")
        .until(async || {
            let used = audited_requests(cluster, user, TARGET_NAMESPACE, audit_from);
            let unused: Vec<_> = granted.iter().filter(|g| !used.contains_key(*g)).collect();
            if unused.is_empty() {
                Ok(used)
            } else {
                Err(format!(
                    "granted but never used: {unused:?}; used: {used:?}"
                ))
            }
        })
        .await;
    let refused_there: Vec<_> = used.iter().filter(|(_, code)| **code == 403).collect();
    assert!(
        refused_there.is_empty(),
        "refused in {TARGET_NAMESPACE}: {refused_there:?}"
    );
    let beyond: Vec<_> = used.keys().filter(|k| !granted.contains(k)).collect();
    assert!(beyond.is_empty(), "used beyond the Role: {beyond:?}");
    let elsewhere_requests = audited_requests(cluster, user, &elsewhere, audit_from);
    assert_eq!(
        elsewhere_requests.get(&("create".to_owned(), "pods".to_owned())),
        Some(&403),
        "{elsewhere_requests:?}"
    );
    drop(stream);
    deployer.stop().await.expect("a clean stop");
}
