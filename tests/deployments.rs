//! `deployer.v1.DeploymentService` as its callers use it: through the generated client,
//! against the service on 127.0.0.1:0 and a real local control plane whose
//! kube-controller-manager rolls Deployments out for real (kwok plays the pods).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_deployer::proto::deployer::v1 as pb;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use support::{DeploymentsClient, RunningDeployer, TestAuth, eventually, serving_deployer, unique};
use tonic::Code;

/// Long enough for a rollout of a few pods on a loaded machine.
const ROLLOUT: Duration = Duration::from_secs(120);

fn apply_request(namespace: &str, name: &str, image: &str) -> pb::ApplyDeploymentRequest {
    pb::ApplyDeploymentRequest {
        image: image.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        ..pb::ApplyDeploymentRequest::default()
    }
}

async fn apply(
    client: &mut DeploymentsClient,
    request: pb::ApplyDeploymentRequest,
) -> pb::ApplyDeploymentResponse {
    client
        .apply_deployment(request)
        .await
        .expect("ApplyDeployment")
        .into_inner()
}

async fn get(client: &mut DeploymentsClient, namespace: &str, name: &str) -> pb::Deployment {
    client
        .get_deployment(pb::GetDeploymentRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
        .await
        .expect("GetDeployment")
        .into_inner()
        .deployment
        .expect("a deployment")
}

fn rollout(deployment: &pb::Deployment) -> &pb::RolloutStatus {
    deployment.rollout.as_ref().expect("a rollout status")
}

/// Poll GetDeployment until revision `revision` has rolled out completely.
async fn rolled_out(
    client: &mut DeploymentsClient,
    namespace: &str,
    name: &str,
    revision: i64,
) -> pb::Deployment {
    eventually(&format!("revision {revision} of {name} to roll out"))
        .within(ROLLOUT)
        .every(Duration::from_millis(300))
        .until(async || {
            let deployment = get(client, namespace, name).await;
            let status = rollout(&deployment);
            if status.phase() == pb::RolloutPhase::Complete && status.revision == revision {
                Ok(deployment)
            } else {
                Err(format!(
                    "revision {}, {:?}: {}",
                    status.revision,
                    status.phase(),
                    status.message
                ))
            }
        })
        .await
}

async fn revisions(
    client: &mut DeploymentsClient,
    namespace: &str,
    name: &str,
) -> Vec<pb::Revision> {
    client
        .list_revisions(pb::ListRevisionsRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
        .await
        .expect("ListRevisions")
        .into_inner()
        .revisions
}

fn delete_request(namespace: &str, name: &str) -> pb::DeleteDeploymentRequest {
    pb::DeleteDeploymentRequest {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        ..pb::DeleteDeploymentRequest::default()
    }
}

fn template_annotation(deployment: &Deployment, key: &str) -> Option<String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(key).cloned())
}

/// The whole life of a Deployment: created with 3 replicas and rolled out, retried, updated
/// to a second revision, retried again (no rollback), rolled back, scaled, restarted (and the
/// restart retried), applied again after all that (no conflict with itself, nothing rolled
/// again), its history listed, and deleted with everything it made.
#[tokio::test]
async fn a_deployment_lives_through_updates_rollbacks_scales_restarts_and_deletion() {
    let (deployer, admin, namespace) = serving_deployer("dep-life").await;
    let mut client = deployer.deployments();
    let name = unique("web");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);

    // Create: 3 replicas, rolled out (the test polls GetDeployment).
    let first = pb::ApplyDeploymentRequest {
        replicas: Some(3),
        request_id: unique("create"),
        change_cause: "first release".to_owned(),
        ..apply_request(&namespace, &name, "nginx:1.27")
    };
    let created = apply(&mut client, first.clone()).await;
    assert!(created.created && created.changed, "{created:?}");
    let v1 = rolled_out(&mut client, &namespace, &name, 1).await;
    let status = rollout(&v1);
    assert_eq!(
        (status.desired, status.updated, status.available),
        (3, 3, 3)
    );
    assert!(
        status.message.contains("successfully rolled out"),
        "{status:?}"
    );

    // The same request again: one change, not two.
    let retried = apply(&mut client, first.clone()).await;
    assert!(!retried.changed && !retried.created, "{retried:?}");
    let live = deployments.get(&name).await.expect("the deployment");
    assert_eq!(live.metadata.generation, Some(rollout(&v1).generation));

    // A new image: a second revision, waited for by the call itself.
    let second = pb::ApplyDeploymentRequest {
        replicas: Some(3),
        request_id: unique("update"),
        change_cause: "second release".to_owned(),
        wait_for: pb::RolloutWaitFor::RolledOut.into(),
        ..apply_request(&namespace, &name, "nginx:1.28")
    };
    let updated = apply(&mut client, second).await;
    assert!(updated.changed, "{updated:?}");
    let v2 = updated.deployment.expect("a deployment");
    let status = rollout(&v2);
    assert_eq!(status.phase(), pb::RolloutPhase::Complete, "{status:?}");
    assert_eq!(status.revision, 2);
    assert_eq!(v2.image, "nginx:1.28");
    let old: Vec<_> = status
        .replica_sets
        .iter()
        .filter(|rs| !rs.current)
        .collect();
    assert_eq!(old.len(), 1, "{status:?}");
    assert_eq!(
        (old[0].revision, old[0].replicas),
        (1, 0),
        "the old ReplicaSet scaled to 0"
    );

    // The first request retried after the update: it does not roll back.
    let late_retry = apply(&mut client, first).await;
    assert!(!late_retry.changed, "{late_retry:?}");
    assert_eq!(
        get(&mut client, &namespace, &name).await.image,
        "nginx:1.28"
    );

    // Rollback: the first template is live again, as revision 3.
    let rolled_back = client
        .rollback_deployment(pb::RollbackDeploymentRequest {
            namespace: namespace.clone(),
            name: name.clone(),
            request_id: unique("undo"),
            ..pb::RollbackDeploymentRequest::default()
        })
        .await
        .expect("RollbackDeployment")
        .into_inner();
    assert!(rolled_back.changed, "{rolled_back:?}");
    assert_eq!(rolled_back.rolled_back_to, 1);
    let v3 = rolled_out(&mut client, &namespace, &name, 3).await;
    assert_eq!(v3.image, "nginx:1.27");
    // A rollback to the template that is live already changes nothing, and says so.
    let again = client
        .rollback_deployment(pb::RollbackDeploymentRequest {
            namespace: namespace.clone(),
            name: name.clone(),
            to_revision: 3,
            ..pb::RollbackDeploymentRequest::default()
        })
        .await
        .expect("RollbackDeployment to the current revision")
        .into_inner();
    assert!(!again.changed, "{again:?}");
    assert!(again.message.starts_with("skipped rollback"), "{again:?}");
    let missing = client
        .rollback_deployment(pb::RollbackDeploymentRequest {
            namespace: namespace.clone(),
            name: name.clone(),
            to_revision: 42,
            ..pb::RollbackDeploymentRequest::default()
        })
        .await
        .expect_err("no revision 42");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // The history: revisions 2 and 3 (revision 1's ReplicaSet became 3), with their images
    // and change causes.
    let history = revisions(&mut client, &namespace, &name).await;
    let summary: Vec<_> = history
        .iter()
        .map(|r| {
            (
                r.revision,
                r.image.as_str(),
                r.change_cause.as_str(),
                r.current,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (2, "nginx:1.28", "second release", false),
            (3, "nginx:1.27", "first release", true),
        ]
    );

    // Scale up, then down.
    for replicas in [5, 2] {
        let scaled = client
            .scale_deployment(pb::ScaleDeploymentRequest {
                namespace: namespace.clone(),
                name: name.clone(),
                replicas,
            })
            .await
            .expect("ScaleDeployment")
            .into_inner();
        assert!(scaled.changed, "{scaled:?}");
        eventually(&format!("{replicas} available pods"))
            .within(ROLLOUT)
            .until(async || {
                let deployment = get(&mut client, &namespace, &name).await;
                let status = rollout(&deployment);
                let replicas = i32::try_from(replicas).expect("small");
                if status.phase() == pb::RolloutPhase::Complete
                    && status.desired == replicas
                    && status.available == replicas
                {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            })
            .await;
    }

    // Restart: restartedAt on the template, a new revision rolls out; the retry does not
    // restart again.
    let restart = pb::RestartDeploymentRequest {
        namespace: namespace.clone(),
        name: name.clone(),
        request_id: unique("restart"),
    };
    let restarted = client
        .restart_deployment(restart.clone())
        .await
        .expect("RestartDeployment")
        .into_inner();
    assert!(restarted.changed, "{restarted:?}");
    let v4 = rolled_out(&mut client, &namespace, &name, 4).await;
    let live = deployments.get(&name).await.expect("the deployment");
    let restarted_at = template_annotation(&live, "kubectl.kubernetes.io/restartedAt")
        .expect("restartedAt on the template");
    let retried = client
        .restart_deployment(restart)
        .await
        .expect("RestartDeployment retried")
        .into_inner();
    assert!(!retried.changed, "{retried:?}");
    assert_eq!(
        rollout(&get(&mut client, &namespace, &name).await).generation,
        rollout(&v4).generation
    );

    // An apply after scale, restart and rollback, without replicas: no conflict with the
    // service's own changes, the scale kept, the restart kept (nothing rolls again).
    let after = apply(
        &mut client,
        pb::ApplyDeploymentRequest {
            change_cause: "first release".to_owned(),
            ..apply_request(&namespace, &name, "nginx:1.27")
        },
    )
    .await;
    let deployment = after.deployment.expect("a deployment");
    assert_eq!(deployment.replicas, 2, "the scale is kept");
    let live = deployments.get(&name).await.expect("the deployment");
    assert_eq!(
        template_annotation(&live, "kubectl.kubernetes.io/restartedAt"),
        Some(restarted_at)
    );
    assert_eq!(
        rollout(&rolled_out(&mut client, &namespace, &name, 4).await).revision,
        4
    );

    // Delete with wait: the Deployment, its ReplicaSets and pods are gone when it answers.
    let deleted = client
        .delete_deployment(pb::DeleteDeploymentRequest {
            wait: true,
            ..delete_request(&namespace, &name)
        })
        .await
        .expect("DeleteDeployment")
        .into_inner();
    assert_eq!(deleted.deployment.expect("its last state").name, name);
    assert!(deployments.get_opt(&name).await.expect("read").is_none());
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    let replica_sets = Api::<ReplicaSet>::namespaced(admin.clone(), &namespace)
        .list(&selector)
        .await
        .expect("list");
    assert!(replica_sets.items.is_empty(), "{:?}", replica_sets.items);
    let pods = Api::<Pod>::namespaced(admin.clone(), &namespace)
        .list(&selector)
        .await
        .expect("list");
    assert!(pods.items.is_empty(), "{} pods left", pods.items.len());
    let gone = client
        .get_deployment(pb::GetDeploymentRequest {
            namespace: namespace.clone(),
            name: name.clone(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
}

/// A policy where "operator" may deploy and read but not scale, and "tester" may reference
/// the Secrets named app-* and every ConfigMap, nothing else.
const POLICY: &str = r#"
rules:
  - name: tester-everything
    subjects: [tester]
    namespaces: ["*"]
    actions: ["*"]
    references: {secrets: ["app-*"], configMaps: ["*"]}
  - name: operator-deploys
    subjects: [operator]
    namespaces: ["*"]
    actions: [deploy, status, list]
"#;

/// What an apply must not do: change anything on a dry run, touch what it does not manage,
/// force over another manager's field, let a caller without `scale` scale. And the Service:
/// created with the container ports, removed when expose is dropped and with the Deployment.
#[tokio::test]
async fn applies_expose_a_service_and_never_take_what_is_not_theirs() {
    let auth = TestAuth::shared();
    let policy = auth
        .dir
        .join(format!("{}-policy.yaml", unique("deployments")));
    std::fs::write(&policy, POLICY).expect("write the policy");
    let deployer = RunningDeployer::with(auth.config(Some(&policy), None))
        .serving()
        .await;
    let admin = support::TestCluster::shared().client().await;
    let namespace = support::create_namespace(&admin, "dep-rules", &[]).await;
    let mut client = deployer.deployments();
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(admin.clone(), &namespace);
    let name = unique("api");

    // A dry run changes nothing.
    let dry = apply(
        &mut client,
        pb::ApplyDeploymentRequest {
            dry_run: true,
            ..apply_request(&namespace, &name, "nginx:1.27")
        },
    )
    .await;
    assert!(!dry.changed && !dry.created, "{dry:?}");
    assert_eq!(dry.deployment.expect("the would-be deployment").name, name);
    assert!(deployments.get_opt(&name).await.expect("read").is_none());

    // Exposed: a ClusterIP Service with the container ports.
    let exposed_request = pb::ApplyDeploymentRequest {
        expose: true,
        replicas: Some(1),
        ports: vec![
            pb::ContainerPort {
                name: "http".to_owned(),
                container_port: 8080,
                ..pb::ContainerPort::default()
            },
            pb::ContainerPort {
                container_port: 5353,
                protocol: pb::Protocol::Udp.into(),
                ..pb::ContainerPort::default()
            },
        ],
        ..apply_request(&namespace, &name, "nginx:1.27")
    };
    let exposed = apply(&mut client, exposed_request.clone()).await;
    let service = exposed
        .deployment
        .and_then(|d| d.service)
        .expect("the exposed service");
    let ports: Vec<_> = service
        .ports
        .iter()
        .map(|p| (p.name.as_str(), p.port, p.target_port, p.protocol()))
        .collect();
    assert_eq!(
        ports,
        [
            ("http", 8080, 8080, pb::Protocol::Tcp),
            ("udp-5353", 5353, 5353, pb::Protocol::Udp)
        ]
    );
    let live_service = services.get(&name).await.expect("the service");
    let spec = live_service.spec.expect("a spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(
        spec.selector,
        Some(BTreeMap::from([
            ("app.kubernetes.io/instance".to_owned(), name.clone()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "k8s-deployer".to_owned()
            ),
        ]))
    );

    // Dropping expose removes the Service; exposing again brings it back.
    let unexposed = apply(
        &mut client,
        pb::ApplyDeploymentRequest {
            expose: false,
            ..exposed_request.clone()
        },
    )
    .await;
    assert!(unexposed.changed, "{unexposed:?}");
    assert!(
        unexposed
            .deployment
            .expect("a deployment")
            .service
            .is_none()
    );
    eventually("the service to be gone")
        .until(async || match services.get_opt(&name).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .await;
    apply(&mut client, exposed_request.clone()).await;
    assert!(services.get_opt(&name).await.expect("read").is_some());

    // Another manager takes a field the spec sets: the apply is ABORTED, naming the field
    // and the manager, and nothing changes.
    deployments
        .patch(
            &name,
            &PatchParams {
                field_manager: Some("kubectl-edit".to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(serde_json::json!({ "spec": { "replicas": 4 } })),
        )
        .await
        .expect("someone edits replicas");
    let conflict = client
        .apply_deployment(exposed_request.clone())
        .await
        .expect_err("replicas belong to kubectl-edit now");
    assert_eq!(conflict.code(), Code::Aborted, "{conflict:?}");
    assert!(
        conflict.message().contains(".spec.replicas")
            && conflict.message().contains("kubectl-edit"),
        "{conflict:?}"
    );
    let live = deployments.get(&name).await.expect("the deployment");
    assert_eq!(live.spec.and_then(|s| s.replicas), Some(4), "not forced");

    // A caller without `scale` may not scale; nothing reaches the cluster.
    let operator = auth.token("operator", &[], Duration::from_secs(600));
    let refused = deployer
        .deployments_with_token(&operator)
        .scale_deployment(pb::ScaleDeploymentRequest {
            namespace: namespace.clone(),
            name: name.clone(),
            replicas: 1,
        })
        .await
        .expect_err("operator may not scale");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // A Deployment of that name that this service does not manage is left alone.
    let plain = unique("plain");
    let unmanaged: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": plain },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "app": "plain" } },
            "template": {
                "metadata": { "labels": { "app": "plain" } },
                "spec": { "containers": [{ "name": "c", "image": "nginx:1.27" }] }
            }
        }
    }))
    .expect("a deployment");
    deployments
        .create(&PostParams::default(), &unmanaged)
        .await
        .expect("create an unmanaged deployment");
    let refused = client
        .apply_deployment(apply_request(&namespace, &plain, "nginx:1.28"))
        .await
        .expect_err("not ours");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let untouched = deployments.get(&plain).await.expect("still there");
    assert_eq!(
        untouched
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod spec")
            .containers[0]
            .image
            .as_deref(),
        Some("nginx:1.27")
    );

    // Deleted with wait: the Service goes with the Deployment.
    client
        .delete_deployment(pb::DeleteDeploymentRequest {
            wait: true,
            ..delete_request(&namespace, &name)
        })
        .await
        .expect("DeleteDeployment");
    assert!(services.get_opt(&name).await.expect("read").is_none());
    assert!(deployments.get_opt(&name).await.expect("read").is_none());
    // Deleting again: NOT_FOUND, or OK with allow_missing.
    let again = client
        .delete_deployment(delete_request(&namespace, &name))
        .await
        .expect_err("gone");
    assert_eq!(again.code(), Code::NotFound);
    let allowed = client
        .delete_deployment(pb::DeleteDeploymentRequest {
            allow_missing: true,
            ..delete_request(&namespace, &name)
        })
        .await
        .expect("allow_missing")
        .into_inner();
    assert!(allowed.deployment.is_none());
}

/// The pod template gets the workload fields as pods do, and the policy's references apply
/// to Deployments too; an apply that waits on a rollout whose new pods cannot pull their
/// image fails at once with the reason.
#[tokio::test]
async fn templates_carry_the_workload_fields_and_a_failing_rollout_fails_the_wait() {
    let auth = TestAuth::shared();
    let policy = auth
        .dir
        .join(format!("{}-policy.yaml", unique("templates")));
    std::fs::write(&policy, POLICY).expect("write the policy");
    let deployer = RunningDeployer::with(auth.config(Some(&policy), None))
        .serving()
        .await;
    let admin = support::TestCluster::shared().client().await;
    let namespace = support::create_namespace(&admin, "dep-template", &[]).await;
    let mut client = deployer.deployments();
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let name = unique("cfg");

    let secret_env = |secret: &str| pb::EnvVar {
        name: "DB_PASSWORD".to_owned(),
        value: String::new(),
        value_from: Some(pb::EnvVarSource {
            source: Some(pb::env_var_source::Source::SecretKey(pb::KeyReference {
                name: secret.to_owned(),
                key: "password".to_owned(),
                optional: false,
            })),
        }),
    };
    let configured = |secret: &str| pb::ApplyDeploymentRequest {
        env: vec![secret_env(secret)],
        env_from: vec![pb::EnvFromSource {
            prefix: "CFG_".to_owned(),
            source: Some(pb::env_from_source::Source::ConfigMap(
                "app-config".to_owned(),
            )),
            optional: true,
        }],
        ports: vec![pb::ContainerPort {
            name: "http".to_owned(),
            container_port: 8080,
            ..pb::ContainerPort::default()
        }],
        probes: Some(pb::Probes {
            readiness: Some(pb::Probe {
                action: Some(pb::probe::Action::HttpGet(pb::HttpGetAction {
                    path: "/healthz".to_owned(),
                    port_name: "http".to_owned(),
                    ..pb::HttpGetAction::default()
                })),
                period: Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                }),
                ..pb::Probe::default()
            }),
            liveness: Some(pb::Probe {
                action: Some(pb::probe::Action::TcpSocket(pb::TcpSocketAction {
                    port: 8080,
                    ..pb::TcpSocketAction::default()
                })),
                ..pb::Probe::default()
            }),
            startup: None,
        }),
        ..apply_request(&namespace, &name, "nginx:1.27")
    };

    // Allowed references: the template carries probes, env from a Secret key, envFrom.
    apply(&mut client, configured("app-db")).await;
    let live = deployments.get(&name).await.expect("the deployment");
    let container = live
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers[0]
        .clone();
    let readiness = container.readiness_probe.expect("a readiness probe");
    let http = readiness.http_get.expect("an HTTP GET probe");
    assert_eq!(http.path.as_deref(), Some("/healthz"));
    assert_eq!(
        http.port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".to_owned())
    );
    assert_eq!(readiness.period_seconds, Some(5));
    assert!(
        container
            .liveness_probe
            .and_then(|p| p.tcp_socket)
            .is_some()
    );
    let env = container.env.expect("env");
    let secret_ref = env[0]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("a secretKeyRef");
    assert_eq!(
        (secret_ref.name.as_str(), secret_ref.key.as_str()),
        ("app-db", "password")
    );
    let env_from = container.env_from.expect("envFrom");
    assert_eq!(env_from[0].prefix.as_deref(), Some("CFG_"));
    assert_eq!(
        env_from[0].config_map_ref.as_ref().map(|c| c.name.as_str()),
        Some("app-config")
    );
    let generation = deployments
        .get(&name)
        .await
        .expect("the deployment")
        .metadata
        .generation;

    // A Secret the policy does not let the caller reference: refused, nothing changes.
    let refused = client
        .apply_deployment(configured("other-db"))
        .await
        .expect_err("a Secret outside the allow-list");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("other-db") && refused.message().contains("references.secrets"),
        "{refused:?}"
    );
    let after = deployments.get(&name).await.expect("the deployment");
    assert_eq!(after.metadata.generation, generation, "nothing applied");

    // A Deployment whose deletion has begun (a finalizer holds it here) is not changed: the
    // change would go with it.
    let hold = |finalizers: serde_json::Value| {
        Patch::Merge(serde_json::json!({ "metadata": { "finalizers": finalizers } }))
    };
    deployments
        .patch(
            &name,
            &PatchParams::default(),
            &hold(serde_json::json!(["test.k8s-deployer.io/hold"])),
        )
        .await
        .expect("hold the deployment");
    client
        .delete_deployment(delete_request(&namespace, &name))
        .await
        .expect("DeleteDeployment");
    let refused = client
        .apply_deployment(configured("app-db"))
        .await
        .expect_err("being deleted");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("being deleted"), "{refused:?}");
    let refused = client
        .scale_deployment(pb::ScaleDeploymentRequest {
            namespace: namespace.clone(),
            name: name.clone(),
            replicas: 3,
        })
        .await
        .expect_err("being deleted");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    deployments
        .patch(
            &name,
            &PatchParams::default(),
            &hold(serde_json::Value::Null),
        )
        .await
        .expect("let it go");

    // An apply that waits for a rollout whose new pods cannot pull: FAILED_PRECONDITION with
    // the rollout's and the pods' reasons, long before any progress deadline.
    let failed = client
        .apply_deployment(pb::ApplyDeploymentRequest {
            wait_for: pb::RolloutWaitFor::RolledOut.into(),
            replicas: Some(2),
            ..apply_request(&namespace, &unique("broken"), "fail.invalid/app:1")
        })
        .await
        .expect_err("the rollout fails");
    assert_eq!(failed.code(), Code::FailedPrecondition, "{failed:?}");
    assert!(
        failed.message().contains("NEW_PODS_FAILING")
            && failed.message().contains("IMAGE_PULL_FAILED"),
        "{failed:?}"
    );
}
