//! Kubernetes objects to domain types: [`pod_state`], [`object_event`], [`deployment_state`],
//! [`replica_set_state`] and [`service_state`].

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time as KubeTime;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::domain::rollout::{
    DeploymentState, ReplicaSetState, ServicePortState, ServiceState, Strategy,
};
use crate::domain::spec::{PodSecurityProfile, Protocol};
use crate::domain::status::{Condition, ContainerState, ContainerStatus, Owner, Time};
use crate::domain::{
    IMAGE_ANNOTATION, ObjectEvent, ObjectKind, POD_SECURITY_ANNOTATION, PodState,
    REQUEST_HASH_ANNOTATION, REQUEST_ID_LABEL,
};

fn time(t: Option<&KubeTime>) -> Option<Time> {
    t.map(|t| t.0)
}

/// The domain view of a pod.
#[must_use]
pub fn pod_state(pod: &core::Pod) -> PodState {
    let meta = &pod.metadata;
    let status = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.as_ref();
    let first_image = spec
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    PodState {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        image: annotations
            .and_then(|a| a.get(IMAGE_ANNOTATION).cloned())
            .unwrap_or(first_image),
        request_id: labels.get(REQUEST_ID_LABEL).cloned(),
        request_hash: annotations.and_then(|a| a.get(REQUEST_HASH_ANNOTATION).cloned()),
        pod_security: annotations
            .and_then(|a| a.get(POD_SECURITY_ANNOTATION))
            .and_then(|p| PodSecurityProfile::parse(p)),
        labels,
        phase: status.phase.clone().unwrap_or_default(),
        conditions: status
            .conditions
            .iter()
            .flatten()
            .map(|c| Condition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: time(c.last_transition_time.as_ref()),
            })
            .collect(),
        init_containers: container_statuses(
            spec.and_then(|s| s.init_containers.as_deref())
                .unwrap_or_default(),
            status
                .init_container_statuses
                .as_deref()
                .unwrap_or_default(),
        ),
        containers: container_statuses(
            spec.map(|s| s.containers.as_slice()).unwrap_or_default(),
            status.container_statuses.as_deref().unwrap_or_default(),
        ),
        pod_ip: status.pod_ip.clone().filter(|ip| !ip.is_empty()),
        node: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        start_time: time(status.start_time.as_ref()),
        created: time(meta.creation_timestamp.as_ref()),
        owners: meta
            .owner_references
            .iter()
            .flatten()
            .map(|o| Owner {
                kind: o.kind.clone(),
                name: o.name.clone(),
                controller: o.controller.unwrap_or(false),
            })
            .collect(),
        deleting: meta.deletion_timestamp.is_some(),
        reason: status.reason.clone(),
        message: status.message.clone(),
    }
}

/// One entry per container of the spec, in spec order, with its reported status when there
/// is one (a container the kubelet has not reported yet is `Unknown`).
fn container_statuses(
    containers: &[core::Container],
    statuses: &[core::ContainerStatus],
) -> Vec<ContainerStatus> {
    containers
        .iter()
        .map(|c| {
            let reported = statuses.iter().find(|s| s.name == c.name);
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: reported.map(|s| s.image_id.clone()).unwrap_or_default(),
                ready: reported.is_some_and(|s| s.ready),
                started: reported.and_then(|s| s.started).unwrap_or(false),
                restart_count: reported.map_or(0, |s| s.restart_count),
                state: container_state(reported.and_then(|s| s.state.as_ref())),
                last_state: container_state(reported.and_then(|s| s.last_state.as_ref())),
            }
        })
        .collect()
}

fn container_state(state: Option<&core::ContainerState>) -> ContainerState {
    let Some(state) = state else {
        return ContainerState::Unknown;
    };
    if let Some(t) = &state.terminated {
        ContainerState::Terminated {
            exit_code: t.exit_code,
            signal: t.signal.unwrap_or(0),
            reason: t.reason.clone().unwrap_or_default(),
            message: t.message.clone().unwrap_or_default(),
            started_at: time(t.started_at.as_ref()),
            finished_at: time(t.finished_at.as_ref()),
        }
    } else if let Some(r) = &state.running {
        ContainerState::Running {
            started_at: time(r.started_at.as_ref()),
        }
    } else if let Some(w) = &state.waiting {
        ContainerState::Waiting {
            reason: w.reason.clone().unwrap_or_default(),
            message: w.message.clone().unwrap_or_default(),
        }
    } else {
        ContainerState::Unknown
    }
}

/// The domain view of an Event, when it is about a pod, a ReplicaSet or a Deployment; `None`
/// for Events about anything else.
#[must_use]
pub fn object_event(event: &core::Event) -> Option<ObjectEvent> {
    let object = &event.involved_object;
    let kind = match (object.kind.as_deref(), object.api_version.as_deref()) {
        (Some("Pod"), _) => ObjectKind::Pod,
        // The controllers name apps/v1; an Event without apiVersion is still taken at its word.
        (Some("ReplicaSet"), Some("apps/v1") | None) => ObjectKind::ReplicaSet,
        (Some("Deployment"), Some("apps/v1") | None) => ObjectKind::Deployment,
        _ => return None,
    };
    let last_time = time(event.last_timestamp.as_ref())
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| time(event.metadata.creation_timestamp.as_ref()));
    Some(ObjectEvent {
        kind,
        namespace: object
            .namespace
            .clone()
            .or_else(|| event.metadata.namespace.clone())
            .unwrap_or_default(),
        name: object.name.clone()?,
        uid: event.metadata.uid.clone().unwrap_or_default(),
        resource_version: event.metadata.resource_version.clone().unwrap_or_default(),
        type_: event.type_.clone().unwrap_or_else(|| "Normal".to_owned()),
        reason: event.reason.clone().unwrap_or_default(),
        message: event.message.clone().unwrap_or_default(),
        count: event.count.unwrap_or(1),
        first_time: time(event.first_timestamp.as_ref()).or(last_time),
        last_time,
        source: event
            .source
            .as_ref()
            .and_then(|s| s.component.clone())
            .or_else(|| event.reporting_component.clone())
            .unwrap_or_default(),
    })
}

/// The conditions of a Deployment (same shape as a pod's).
fn deployment_conditions(conditions: Option<&Vec<apps::DeploymentCondition>>) -> Vec<Condition> {
    conditions
        .into_iter()
        .flatten()
        .map(|c| Condition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: time(c.last_transition_time.as_ref())
                .or_else(|| time(c.last_update_time.as_ref())),
        })
        .collect()
}

fn first_image(template: Option<&core::PodTemplateSpec>) -> String {
    template
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn int_or_string(value: Option<&IntOrString>) -> Option<String> {
    value.map(|value| match value {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    })
}

/// The domain view of a Deployment.
#[must_use]
pub fn deployment_state(deployment: &apps::Deployment) -> DeploymentState {
    let meta = &deployment.metadata;
    let spec = deployment.spec.as_ref();
    let status = deployment.status.clone().unwrap_or_default();
    let strategy = spec.and_then(|s| s.strategy.as_ref());
    let strategy = match strategy.and_then(|s| s.type_.as_deref()) {
        Some("Recreate") => Strategy::Recreate,
        _ => match strategy.and_then(|s| s.rolling_update.as_ref()) {
            Some(rolling) if rolling.max_surge.is_some() || rolling.max_unavailable.is_some() => {
                Strategy::RollingUpdateWith {
                    max_surge: int_or_string(rolling.max_surge.as_ref()),
                    max_unavailable: int_or_string(rolling.max_unavailable.as_ref()),
                }
            }
            _ => Strategy::RollingUpdate,
        },
    };
    DeploymentState {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        selector: spec
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        image: first_image(spec.map(|s| &s.template)),
        generation: meta.generation.unwrap_or_default(),
        observed_generation: status.observed_generation.unwrap_or_default(),
        desired: spec.and_then(|s| s.replicas).unwrap_or(1),
        replicas: status.replicas.unwrap_or_default(),
        updated: status.updated_replicas.unwrap_or_default(),
        ready: status.ready_replicas.unwrap_or_default(),
        available: status.available_replicas.unwrap_or_default(),
        unavailable: status.unavailable_replicas.unwrap_or_default(),
        terminating: status.terminating_replicas.unwrap_or_default(),
        paused: spec.and_then(|s| s.paused).unwrap_or(false),
        strategy,
        progress_deadline_seconds: spec.and_then(|s| s.progress_deadline_seconds),
        conditions: deployment_conditions(status.conditions.as_ref()),
        created: time(meta.creation_timestamp.as_ref()),
        deleting: meta.deletion_timestamp.is_some(),
    }
}

/// The domain view of a ReplicaSet.
#[must_use]
pub fn replica_set_state(replica_set: &apps::ReplicaSet) -> ReplicaSetState {
    let meta = &replica_set.metadata;
    let spec = replica_set.spec.as_ref();
    let status = replica_set.status.clone().unwrap_or_default();
    ReplicaSetState {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        owner: meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "Deployment" && o.controller == Some(true))
            .map(|o| o.name.clone()),
        annotations: meta.annotations.clone().unwrap_or_default(),
        template_labels: spec
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        image: first_image(spec.and_then(|s| s.template.as_ref())),
        desired: spec.and_then(|s| s.replicas).unwrap_or(1),
        replicas: status.replicas,
        ready: status.ready_replicas.unwrap_or_default(),
        available: status.available_replicas.unwrap_or_default(),
        created: time(meta.creation_timestamp.as_ref()),
    }
}

/// The domain view of a Deployment's Service.
#[must_use]
pub fn service_state(service: &core::Service) -> ServiceState {
    let spec = service.spec.as_ref();
    ServiceState {
        name: service.metadata.name.clone().unwrap_or_default(),
        cluster_ip: spec
            .and_then(|s| s.cluster_ip.clone())
            .filter(|ip| !ip.is_empty() && ip != "None"),
        ports: spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|port| ServicePortState {
                name: port.name.clone().unwrap_or_default(),
                port: u32::try_from(port.port).unwrap_or_default(),
                target_port: match &port.target_port {
                    Some(IntOrString::Int(n)) => u32::try_from(*n).unwrap_or_default(),
                    // A named target port resolves per pod; the Service port stands for it.
                    _ => u32::try_from(port.port).unwrap_or_default(),
                },
                protocol: match port.protocol.as_deref() {
                    Some("UDP") => Protocol::Udp,
                    Some("SCTP") => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> core::Pod {
        serde_json::from_value(json).expect("a pod")
    }

    #[test]
    fn a_crash_looping_pod_converts_with_its_last_state() {
        let state = pod_state(&pod(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "ns", "uid": "u1", "resourceVersion": "42",
                "labels": { "k8s-deployer.io/request-id": "r1" },
                "annotations": { "k8s-deployer.io/image": "crash.invalid/app:1" }
            },
            "spec": { "nodeName": "n0", "containers": [{ "name": "app", "image": "crash.invalid/app:1" }] },
            "status": {
                "phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{ "type": "Ready", "status": "False", "reason": "ContainersNotReady" }],
                "containerStatuses": [{
                    "name": "app", "image": "crash.invalid/app:1", "imageID": "", "ready": false,
                    "restartCount": 3,
                    "state": { "waiting": { "reason": "CrashLoopBackOff", "message": "back-off" } },
                    "lastState": { "terminated": { "exitCode": 1, "reason": "Error" } }
                }]
            }
        })));
        assert_eq!(state.name, "web");
        assert_eq!(state.resource_version, "42");
        assert_eq!(state.request_id.as_deref(), Some("r1"));
        assert_eq!(state.image, "crash.invalid/app:1");
        assert_eq!(state.node.as_deref(), Some("n0"));
        assert_eq!(state.containers.len(), 1);
        let c = &state.containers[0];
        assert_eq!(c.restart_count, 3);
        assert!(
            matches!(&c.state, ContainerState::Waiting { reason, .. } if reason == "CrashLoopBackOff")
        );
        assert!(
            matches!(&c.last_state, ContainerState::Terminated { exit_code: 1, reason, .. } if reason == "Error")
        );
        assert_eq!(
            state.conditions[0].reason.as_deref(),
            Some("ContainersNotReady")
        );
    }

    #[test]
    fn a_new_pod_has_unknown_container_states_and_no_node() {
        let state = pod_state(&pod(serde_json::json!({
            "metadata": { "name": "p", "namespace": "ns" },
            "spec": { "containers": [{ "name": "app", "image": "nginx" }] }
        })));
        assert_eq!(state.node, None);
        assert_eq!(state.image, "nginx");
        assert_eq!(state.containers[0].state, ContainerState::Unknown);
        assert!(!state.deleting);
    }

    #[test]
    fn events_about_pods_replica_sets_and_deployments_convert() {
        let event = |kind: &str, api_version: &str| -> core::Event {
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": "e", "namespace": "ns", "uid": "e1" },
                "involvedObject": {
                    "kind": kind, "apiVersion": api_version, "name": "web", "namespace": "ns"
                },
                "type": "Warning", "reason": "Failed", "message": "Failed to pull image",
                "count": 2, "source": { "component": "kubelet" }
            }))
            .expect("an event")
        };
        let converted = object_event(&event("Pod", "v1")).expect("a pod event");
        assert_eq!(converted.kind, ObjectKind::Pod);
        assert_eq!(converted.name, "web");
        assert_eq!(converted.count, 2);
        assert_eq!(converted.source, "kubelet");
        assert_eq!(converted.type_, "Warning");
        let converted = object_event(&event("ReplicaSet", "apps/v1")).expect("an RS event");
        assert_eq!(converted.kind, ObjectKind::ReplicaSet);
        let converted = object_event(&event("Deployment", "apps/v1")).expect("a Deployment event");
        assert_eq!(converted.kind, ObjectKind::Deployment);
        assert!(object_event(&event("Node", "v1")).is_none());
        assert!(object_event(&event("Service", "v1")).is_none());
        // Another API group's kind of the same name is not ours.
        assert!(object_event(&event("Deployment", "example.com/v1")).is_none());
    }
}
