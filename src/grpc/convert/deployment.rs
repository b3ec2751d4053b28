//! Deployments and their rollouts into proto messages.

use crate::domain::deployment::{DeploymentInput, StrategyInput};
use crate::domain::rollout::{
    DeploymentView, ReplicaSetState, RolloutGoal, RolloutPhase, RolloutReason, RolloutStatus,
    ServiceState, Strategy,
};
use crate::domain::spec::Protocol;
use crate::domain::{DeployInput, ObjectEvent, REQUEST_ID_LABEL, Violations, rollout};
use crate::grpc::convert::{duration, known, timestamp};
use crate::hub::rollout::RolloutSnapshot;
use crate::proto::deployer::v1 as pb;

impl From<RolloutPhase> for pb::RolloutPhase {
    fn from(phase: RolloutPhase) -> Self {
        match phase {
            RolloutPhase::Observing => Self::Observing,
            RolloutPhase::Progressing => Self::Progressing,
            RolloutPhase::Complete => Self::Complete,
            RolloutPhase::Failed => Self::Failed,
            RolloutPhase::Paused => Self::Paused,
        }
    }
}

impl From<RolloutReason> for pb::RolloutReason {
    fn from(reason: RolloutReason) -> Self {
        match reason {
            RolloutReason::SpecNotObserved => Self::SpecNotObserved,
            RolloutReason::UpdatingReplicas => Self::UpdatingReplicas,
            RolloutReason::OldReplicasTerminating => Self::OldReplicasTerminating,
            RolloutReason::WaitingForAvailable => Self::WaitingForAvailable,
            RolloutReason::ExtraReplicasTerminating => Self::ExtraReplicasTerminating,
            RolloutReason::RolledOut => Self::RolledOut,
            RolloutReason::DeadlineExceeded => Self::DeadlineExceeded,
            RolloutReason::NewPodsFailing => Self::NewPodsFailing,
            RolloutReason::ReplicaFailure => Self::ReplicaFailure,
            RolloutReason::Paused => Self::Paused,
        }
    }
}

/// The proto name of a rollout reason without its prefix, e.g. "NEW_PODS_FAILING".
#[must_use]
pub fn rollout_reason_name(reason: RolloutReason) -> String {
    let name = pb::RolloutReason::from(reason).as_str_name();
    name.strip_prefix("ROLLOUT_REASON_")
        .unwrap_or(name)
        .to_owned()
}

/// The proto name of a rollout phase without its prefix, e.g. "COMPLETE".
#[must_use]
pub fn rollout_phase_name(phase: RolloutPhase) -> String {
    let name = pb::RolloutPhase::from(phase).as_str_name();
    name.strip_prefix("ROLLOUT_PHASE_")
        .unwrap_or(name)
        .to_owned()
}

/// The one-line account of a FAILED rollout that an apply's wait returns, e.g.
/// "NEW_PODS_FAILING: IMAGE_PULL_FAILED: deployment \"web\": ...".
#[must_use]
pub fn rollout_failure(status: &RolloutStatus) -> String {
    match status.pod_reason {
        Some(pod_reason) => format!(
            "{}: {}: {}",
            rollout_reason_name(status.reason),
            crate::grpc::convert::reason_name(pod_reason),
            status.message
        ),
        None => format!("{}: {}", rollout_reason_name(status.reason), status.message),
    }
}

fn strategy(strategy: &Strategy) -> pb::DeploymentStrategy {
    match strategy {
        Strategy::RollingUpdate => pb::DeploymentStrategy {
            r#type: pb::StrategyType::RollingUpdate.into(),
            ..pb::DeploymentStrategy::default()
        },
        Strategy::RollingUpdateWith {
            max_surge,
            max_unavailable,
        } => pb::DeploymentStrategy {
            r#type: pb::StrategyType::RollingUpdate.into(),
            max_surge: max_surge.clone().unwrap_or_default(),
            max_unavailable: max_unavailable.clone().unwrap_or_default(),
        },
        Strategy::Recreate => pb::DeploymentStrategy {
            r#type: pb::StrategyType::Recreate.into(),
            ..pb::DeploymentStrategy::default()
        },
    }
}

impl From<&ReplicaSetState> for pb::ReplicaSetSummary {
    fn from(rs: &ReplicaSetState) -> Self {
        Self {
            name: rs.name.clone(),
            revision: rs.revision(),
            image: rs.image.clone(),
            replicas: rs.desired,
            ready: rs.ready,
            available: rs.available,
            current: false,
            created: timestamp(rs.created),
        }
    }
}

fn protocol(protocol: Protocol) -> pb::Protocol {
    match protocol {
        Protocol::Tcp => pb::Protocol::Tcp,
        Protocol::Udp => pb::Protocol::Udp,
        Protocol::Sctp => pb::Protocol::Sctp,
    }
}

impl From<&ServiceState> for pb::ExposedService {
    fn from(service: &ServiceState) -> Self {
        Self {
            name: service.name.clone(),
            cluster_ip: service.cluster_ip.clone().unwrap_or_default(),
            ports: service
                .ports
                .iter()
                .map(|port| pb::ServicePort {
                    name: port.name.clone(),
                    port: port.port,
                    target_port: port.target_port,
                    protocol: protocol(port.protocol).into(),
                })
                .collect(),
        }
    }
}

impl From<&DeploymentView> for pb::RolloutStatus {
    fn from(view: &DeploymentView) -> Self {
        let state = &view.state;
        let status = &view.rollout;
        Self {
            generation: state.generation,
            observed_generation: state.observed_generation,
            revision: state.revision(),
            desired: state.desired,
            updated: state.updated,
            ready: state.ready,
            available: state.available,
            unavailable: state.unavailable,
            terminating: state.terminating,
            phase: pb::RolloutPhase::from(status.phase).into(),
            reason: pb::RolloutReason::from(status.reason).into(),
            message: status.message.clone(),
            pod_reason: status
                .pod_reason
                .map_or(pb::Reason::Unspecified, pb::Reason::from)
                .into(),
            old_available: status.old_available,
            conditions: state
                .conditions
                .iter()
                .map(|c| pb::Condition {
                    r#type: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                    last_transition_time: timestamp(c.last_transition_time),
                })
                .collect(),
            replica_sets: view
                .replica_sets
                .iter()
                .map(|rs| pb::ReplicaSetSummary {
                    current: status.new_replica_set.as_deref() == Some(rs.name.as_str()),
                    ..pb::ReplicaSetSummary::from(rs)
                })
                .collect(),
            new_replica_set: status.new_replica_set.clone().unwrap_or_default(),
        }
    }
}

impl From<&DeploymentView> for pb::Deployment {
    fn from(view: &DeploymentView) -> Self {
        let state = &view.state;
        Self {
            namespace: state.namespace.clone(),
            name: state.name.clone(),
            uid: state.uid.clone(),
            resource_version: state.resource_version.clone(),
            labels: state
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            image: state.image.clone(),
            replicas: state.desired,
            strategy: Some(strategy(&state.strategy)),
            progress_deadline: state.progress_deadline_seconds.map(|seconds| {
                prost_types::Duration {
                    seconds: i64::from(seconds),
                    nanos: 0,
                }
            }),
            paused: state.paused,
            created: timestamp(state.created),
            request_id: state
                .annotations
                .get(REQUEST_ID_LABEL)
                .cloned()
                .unwrap_or_default(),
            rollout: Some(pb::RolloutStatus::from(view)),
            service: view.service.as_ref().map(pb::ExposedService::from),
            deleting: state.deleting,
        }
    }
}

/// The change cause recorded on a ReplicaSet or Deployment, if any.
#[must_use]
pub fn change_cause(rs: &ReplicaSetState) -> String {
    rs.annotations
        .get(rollout::CHANGE_CAUSE_ANNOTATION)
        .cloned()
        .unwrap_or_default()
}

/// An ApplyDeployment request as domain input. Its pod part (fields 1-22) goes through the
/// DeployRequest conversion, so that every pod rule applies to the template unchanged; its
/// `wait_for` is a rollout's, converted here. Every violation is listed at once.
impl TryFrom<pb::ApplyDeploymentRequest> for DeploymentInput {
    type Error = Violations;

    fn try_from(request: pb::ApplyDeploymentRequest) -> Result<Self, Violations> {
        let mut violations = Violations::default();
        let wait_for = match known(&mut violations, "wait_for", request.wait_for) {
            Some(pb::RolloutWaitFor::RolledOut) => Some(RolloutGoal::RolledOut),
            Some(pb::RolloutWaitFor::Available) => Some(RolloutGoal::Available),
            _ => None,
        };
        let strategy = request.strategy.unwrap_or_default();
        let recreate = matches!(
            known(&mut violations, "strategy.type", strategy.r#type),
            Some(pb::StrategyType::Recreate)
        );
        let progress_deadline = request
            .progress_deadline
            .as_ref()
            .map(|d| duration(d).unwrap_or_default());
        let pod = pb::DeployRequest {
            image: request.image,
            namespace: request.namespace,
            name: request.name,
            labels: request.labels,
            annotations: request.annotations,
            env: request.env,
            ports: request.ports,
            command: request.command,
            args: request.args,
            resources: request.resources,
            restart_policy: request.restart_policy,
            request_id: request.request_id,
            dry_run: request.dry_run,
            wait_for: pb::WaitFor::Unspecified.into(),
            wait_timeout: request.wait_timeout,
            pod_security: request.pod_security,
            probes: request.probes,
            env_from: request.env_from,
            image_pull_secrets: request.image_pull_secrets,
            service_account: request.service_account,
            node_selector: request.node_selector,
            tolerations: request.tolerations,
        };
        let pod = DeployInput::try_from(pod)
            .map_err(|v| violations.extend(v))
            .ok();
        match pod {
            Some(pod) if violations.is_empty() => Ok(Self {
                pod,
                replicas: request.replicas,
                strategy: StrategyInput {
                    recreate,
                    max_surge: strategy.max_surge,
                    max_unavailable: strategy.max_unavailable,
                },
                progress_deadline,
                expose: request.expose,
                change_cause: request.change_cause,
                wait_for,
            }),
            _ => Err(violations),
        }
    }
}

impl From<&ObjectEvent> for pb::RolloutEvent {
    fn from(event: &ObjectEvent) -> Self {
        Self {
            kind: event.kind.as_str().to_owned(),
            name: event.name.clone(),
            r#type: event.type_.clone(),
            reason: event.reason.clone(),
            message: event.message.clone(),
            count: event.count,
            last_time: timestamp(event.last_time),
            source: event.source.clone(),
        }
    }
}

impl From<&RolloutSnapshot> for pb::RolloutSnapshot {
    fn from(snapshot: &RolloutSnapshot) -> Self {
        Self {
            deployment: snapshot.deployment.as_deref().map(pb::Deployment::from),
            pods: snapshot
                .pods
                .iter()
                .map(|pod| pb::PodStatus::from(pod.as_ref()))
                .collect(),
            not_found: snapshot.deployment.is_none(),
        }
    }
}
