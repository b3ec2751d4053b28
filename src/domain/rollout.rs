//! A Deployment's rollout as this service sees it ([`DeploymentState`], [`ReplicaSetState`])
//! and what it means for a caller ([`RolloutStatus`]: a [`RolloutPhase`] and a
//! [`RolloutReason`], in kubectl's words).
//!
//! [`assess_rollout`] follows `kubectl rollout status` (k8s.io/kubectl
//! `polymorphichelpers/rollout_status.go`), in this order:
//! 1. paused: PAUSED (kubectl waits forever; a caller should know);
//! 2. `generation > observedGeneration`: OBSERVING, "Waiting for deployment spec update to be
//!    observed...";
//! 3. the Progressing condition's reason `ProgressDeadlineExceeded`: FAILED, DEADLINE_EXCEEDED;
//! 4. the new ReplicaSet's pods have all failed (their assessment is FAILED, or every one is
//!    unschedulable): FAILED, NEW_PODS_FAILING, at once rather than at the progress deadline;
//! 5. a ReplicaFailure condition that is True: FAILED, REPLICA_FAILURE;
//! 6. `updated < desired`: PROGRESSING, "N out of M new replicas have been updated...";
//! 7. `replicas > updated`, or an older ReplicaSet still wants or has pods: PROGRESSING,
//!    "N old replicas are pending termination...";
//! 8. more replicas counted than desired (a scale-down under way, kstatus's "Pending
//!    termination"): PROGRESSING, "N extra replicas are pending termination...";
//! 9. `available < updated`: PROGRESSING, "N of M updated replicas are available...";
//! 10. otherwise COMPLETE, "deployment "X" successfully rolled out".
//!
//! Completion is judged against the Deployment's own generation, never by the Progressing
//! condition's `NewReplicaSetAvailable` alone (what kube-runtime's `is_deployment_completed`
//! does): right after an update that condition still describes the previous rollout.

use std::collections::BTreeMap;

use crate::domain::status::{Condition, ContainerState, Time};
use crate::domain::{Assessment, Health, PodState, Reason};

/// The annotation that numbers a Deployment's and a ReplicaSet's revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The annotation that records why a revision was made.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";

/// A Deployment's spec and status, converted from the Kubernetes object by the adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentState {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// resourceVersion of the object this was read from.
    pub resource_version: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// The pod template's labels: the pods (and ReplicaSets) of this Deployment carry them.
    pub selector: BTreeMap<String, String>,
    /// The image of the template's first container.
    pub image: String,
    /// metadata.generation.
    pub generation: i64,
    /// status.observedGeneration.
    pub observed_generation: i64,
    /// spec.replicas (1 when unset, as the API server defaults it).
    pub desired: i32,
    /// status.replicas: pods of every ReplicaSet.
    pub replicas: i32,
    /// status.updatedReplicas.
    pub updated: i32,
    /// status.readyReplicas.
    pub ready: i32,
    /// status.availableReplicas.
    pub available: i32,
    /// status.unavailableReplicas.
    pub unavailable: i32,
    /// status.terminatingReplicas.
    pub terminating: i32,
    /// spec.paused.
    pub paused: bool,
    /// Strategy: `Recreate` or `RollingUpdate`, with max surge / unavailable as written.
    pub strategy: Strategy,
    /// spec.progressDeadlineSeconds.
    pub progress_deadline_seconds: Option<i32>,
    /// Conditions (Available, Progressing, ReplicaFailure).
    pub conditions: Vec<Condition>,
    /// When the object was created.
    pub created: Option<Time>,
    /// Deletion has begun.
    pub deleting: bool,
}

impl DeploymentState {
    /// The current revision (the `deployment.kubernetes.io/revision` annotation), 0 if none.
    #[must_use]
    pub fn revision(&self) -> i64 {
        revision_of(&self.annotations)
    }

    /// The condition of this type, if reported.
    #[must_use]
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// A Deployment's update strategy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Replace pods a few at a time; the bounds as written ("25%", "1"), `None` for the default.
    #[default]
    RollingUpdate,
    /// With explicit bounds.
    RollingUpdateWith {
        /// Max surge, as written.
        max_surge: Option<String>,
        /// Max unavailable, as written.
        max_unavailable: Option<String>,
    },
    /// Stop every old pod before starting new ones.
    Recreate,
}

/// A ReplicaSet of a Deployment, converted from the Kubernetes object by the adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaSetState {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// resourceVersion of the object this was read from.
    pub resource_version: String,
    /// The Deployment that controls it (its controller owner of kind Deployment), if any.
    pub owner: Option<String>,
    /// Annotations (revision, change cause, request id).
    pub annotations: BTreeMap<String, String>,
    /// Its pod template's labels (with `pod-template-hash`).
    pub template_labels: BTreeMap<String, String>,
    /// The image of the template's first container.
    pub image: String,
    /// spec.replicas.
    pub desired: i32,
    /// status.replicas.
    pub replicas: i32,
    /// status.readyReplicas.
    pub ready: i32,
    /// status.availableReplicas.
    pub available: i32,
    /// When the object was created.
    pub created: Option<Time>,
}

impl ReplicaSetState {
    /// Its revision (the `deployment.kubernetes.io/revision` annotation), 0 if none.
    #[must_use]
    pub fn revision(&self) -> i64 {
        revision_of(&self.annotations)
    }

    /// Its `pod-template-hash` label, which its pods carry too.
    #[must_use]
    pub fn template_hash(&self) -> Option<&str> {
        self.template_labels
            .get("pod-template-hash")
            .map(String::as_str)
    }
}

fn revision_of(annotations: &BTreeMap<String, String>) -> i64 {
    annotations
        .get(REVISION_ANNOTATION)
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// A Deployment's ClusterIP Service, as the adapter read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// Name.
    pub name: String,
    /// Cluster IP, once allocated.
    pub cluster_ip: Option<String>,
    /// Ports.
    pub ports: Vec<ServicePortState>,
}

/// A port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortState {
    /// Name.
    pub name: String,
    /// Service port.
    pub port: u32,
    /// Target port on the pods.
    pub target_port: u32,
    /// Protocol.
    pub protocol: crate::domain::spec::Protocol,
}

/// A Deployment as callers see it: its state, its ReplicaSets (newest revision first), its
/// Service if exposed, and its rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentView {
    /// The Deployment.
    pub state: DeploymentState,
    /// Its ReplicaSets, newest revision first.
    pub replica_sets: Vec<ReplicaSetState>,
    /// Its exposed Service.
    pub service: Option<ServiceState>,
    /// The rollout's assessment.
    pub rollout: RolloutStatus,
}

impl DeploymentView {
    /// The view of a Deployment with its ReplicaSets (any order; those it does not control are
    /// left out), its Service and its pods.
    #[must_use]
    pub fn new(
        state: DeploymentState,
        replica_sets: impl IntoIterator<Item = ReplicaSetState>,
        service: Option<ServiceState>,
        pods: &[PodOfRollout<'_>],
    ) -> Self {
        let mut replica_sets: Vec<ReplicaSetState> = replica_sets
            .into_iter()
            .filter(|rs| rs.owner.as_deref() == Some(state.name.as_str()))
            .collect();
        replica_sets.sort_by_key(|rs| std::cmp::Reverse(rs.revision()));
        let rollout = assess_rollout(&state, &replica_sets, pods);
        Self {
            state,
            replica_sets,
            service,
            rollout,
        }
    }
}

/// The phase of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RolloutPhase {
    /// The controller has not observed the latest spec yet.
    Observing,
    /// Pods are being replaced or scaled.
    Progressing,
    /// Every replica runs the latest template and is available; no old one is left.
    Complete,
    /// The rollout cannot finish.
    Failed,
    /// Paused: nothing rolls out until it is resumed.
    Paused,
}

impl RolloutPhase {
    /// COMPLETE or FAILED: nothing will change without a new spec.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Failed)
    }
}

/// Why a rollout is in its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RolloutReason {
    /// OBSERVING: the spec's generation is ahead of the observed one.
    SpecNotObserved,
    /// PROGRESSING: fewer updated replicas than desired.
    UpdatingReplicas,
    /// PROGRESSING: old replicas are still there.
    OldReplicasTerminating,
    /// PROGRESSING: updated replicas are not all available yet.
    WaitingForAvailable,
    /// PROGRESSING: after a scale-down, more replicas than desired are still counted.
    ExtraReplicasTerminating,
    /// COMPLETE.
    RolledOut,
    /// FAILED: ProgressDeadlineExceeded.
    DeadlineExceeded,
    /// FAILED: the new ReplicaSet's pods fail.
    NewPodsFailing,
    /// FAILED: the new ReplicaSet cannot create pods.
    ReplicaFailure,
    /// PAUSED.
    Paused,
}

/// What a rollout is doing, for a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutStatus {
    /// The phase.
    pub phase: RolloutPhase,
    /// Why.
    pub reason: RolloutReason,
    /// kubectl's wording, plus the failing pod's reason and message for NEW_PODS_FAILING.
    pub message: String,
    /// NEW_PODS_FAILING: how the new pods fail.
    pub pod_reason: Option<Reason>,
    /// Available pods of the older ReplicaSets.
    pub old_available: i32,
    /// The ReplicaSet of the current template, once it exists.
    pub new_replica_set: Option<String>,
}

/// A pod of a Deployment, as the rollout needs it: its state and its assessment.
#[derive(Debug, Clone, Copy)]
pub struct PodOfRollout<'a> {
    /// The pod.
    pub state: &'a PodState,
    /// Its assessment.
    pub assessment: &'a Assessment,
}

/// How many restarts after failed runs make a pod that happens to be running between two
/// crashes count as crash-looping: the kubelet's back-off has begun, so this is no one-off.
const CRASH_LOOP_RESTARTS: i32 = 2;

impl PodOfRollout<'_> {
    /// The ReplicaSet that controls the pod, if any.
    #[must_use]
    pub fn replica_set(&self) -> Option<&str> {
        self.state
            .owners
            .iter()
            .find(|owner| owner.controller && owner.kind == "ReplicaSet")
            .map(|owner| owner.name.as_str())
    }

    /// Why the pod will not come up by itself, if it will not: its assessment is FAILED
    /// (image pull, invalid image, crash loop, config error), it cannot be scheduled, or it is
    /// running between two crashes of a crash loop (the kubelet reports CrashLoopBackOff only
    /// while it waits to restart, so without this a crash loop would read as failing and
    /// progressing by turns).
    fn failing(&self, room_coming: bool) -> Option<(Reason, String)> {
        let assessment = self.assessment;
        if assessment.health == Health::Failed
            || (assessment.reason == Reason::Unschedulable && !room_coming)
        {
            return Some((assessment.reason, assessment.message.clone()));
        }
        if assessment.health != Health::Degraded {
            return None;
        }
        self.state.containers.iter().find_map(|container| {
            let ContainerState::Terminated {
                exit_code, reason, ..
            } = &container.last_state
            else {
                return None;
            };
            (container.restart_count >= CRASH_LOOP_RESTARTS && *exit_code != 0).then(|| {
                let kind = if reason == "OOMKilled" {
                    Reason::OomKilled
                } else {
                    Reason::CrashLoop
                };
                let message = format!(
                    "container {} restarted {} times, last exit code {exit_code}",
                    container.name, container.restart_count
                );
                (kind, message)
            })
        })
    }
}

/// The ReplicaSet of the Deployment's current template: the one whose revision is the
/// Deployment's (the controller stamps both), else the newest with the highest revision.
#[must_use]
pub fn new_replica_set<'a>(
    deployment: &DeploymentState,
    replica_sets: &'a [ReplicaSetState],
) -> Option<&'a ReplicaSetState> {
    let revision = deployment.revision();
    if revision == 0 {
        return None;
    }
    replica_sets.iter().find(|rs| rs.revision() == revision)
}

/// Assess a Deployment's rollout from its state, its ReplicaSets and its pods (see the
/// module's documentation for the rules, in order).
#[must_use]
pub fn assess_rollout(
    deployment: &DeploymentState,
    replica_sets: &[ReplicaSetState],
    pods: &[PodOfRollout<'_>],
) -> RolloutStatus {
    let new_rs = if deployment.observed_generation >= deployment.generation {
        new_replica_set(deployment, replica_sets)
    } else {
        None
    };
    let old_available = replica_sets
        .iter()
        .filter(|rs| Some(rs.name.as_str()) != new_rs.map(|new| new.name.as_str()))
        .map(|rs| rs.available)
        .sum();
    let status = |phase, reason, message: String| RolloutStatus {
        phase,
        reason,
        message,
        pod_reason: None,
        old_available,
        new_replica_set: new_rs.map(|rs| rs.name.clone()),
    };
    let name = &deployment.name;

    if deployment.paused {
        return status(
            RolloutPhase::Paused,
            RolloutReason::Paused,
            format!("deployment {name:?} is paused"),
        );
    }
    if deployment.generation > deployment.observed_generation {
        return status(
            RolloutPhase::Observing,
            RolloutReason::SpecNotObserved,
            "Waiting for deployment spec update to be observed...".to_owned(),
        );
    }
    if let Some(progressing) = deployment.condition("Progressing")
        && progressing.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return status(
            RolloutPhase::Failed,
            RolloutReason::DeadlineExceeded,
            format!("deployment {name:?} exceeded its progress deadline"),
        );
    }
    if let Some(new_rs) = new_rs
        && let Some((reason, message)) = new_pods_failing(&new_rs.name, pods)
    {
        return RolloutStatus {
            pod_reason: Some(reason),
            ..status(
                RolloutPhase::Failed,
                RolloutReason::NewPodsFailing,
                format!("deployment {name:?}: the pods of its new replica set fail: {message}"),
            )
        };
    }
    if let Some(failure) = deployment.condition("ReplicaFailure")
        && failure.status == "True"
    {
        let detail = failure
            .message
            .clone()
            .or_else(|| failure.reason.clone())
            .unwrap_or_else(|| "the replica set cannot create its pods".to_owned());
        return status(
            RolloutPhase::Failed,
            RolloutReason::ReplicaFailure,
            format!("deployment {name:?}: {detail}"),
        );
    }
    let desired = deployment.desired;
    if deployment.updated < desired {
        return status(
            RolloutPhase::Progressing,
            RolloutReason::UpdatingReplicas,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} out of {desired} new replicas have been updated...",
                deployment.updated
            ),
        );
    }
    if deployment.replicas > deployment.updated {
        return status(
            RolloutPhase::Progressing,
            RolloutReason::OldReplicasTerminating,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
                deployment.replicas - deployment.updated
            ),
        );
    }
    // The Deployment's counts come from its status, its ReplicaSets from their own watch: the
    // two may arrive in either order. An older ReplicaSet that still wants or has pods is not
    // "no old replicas left", whatever the Deployment's status says already.
    let old_left: i32 = replica_sets
        .iter()
        .filter(|rs| new_rs.is_none_or(|new| new.name != rs.name))
        .map(|rs| rs.desired.max(rs.replicas))
        .sum();
    if old_left > 0 {
        return status(
            RolloutPhase::Progressing,
            RolloutReason::OldReplicasTerminating,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {old_left} old replicas are pending termination..."
            ),
        );
    }
    // After a scale-down the status counts the pods going away until the controller has seen
    // them go (kstatus: "Pending termination"); kubectl's ladder has no rung for it.
    let counted = deployment
        .replicas
        .max(deployment.updated)
        .max(deployment.available);
    if counted > desired {
        return status(
            RolloutPhase::Progressing,
            RolloutReason::ExtraReplicasTerminating,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} extra replicas are pending termination...",
                counted - desired
            ),
        );
    }
    if deployment.available < deployment.updated {
        return status(
            RolloutPhase::Progressing,
            RolloutReason::WaitingForAvailable,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} of {} updated replicas are available...",
                deployment.available, deployment.updated
            ),
        );
    }
    status(
        RolloutPhase::Complete,
        RolloutReason::RolledOut,
        format!("deployment {name:?} successfully rolled out"),
    )
}

/// When every live pod of the new ReplicaSet is failing ([`PodOfRollout::failing`]), the
/// reason and message of the first of them by name; `None` while any of them may still come
/// up, or before it has pods. An unschedulable new pod counts only while no pod of the
/// Deployment is terminating: a rolling update's surge pod often waits for the room an old
/// pod frees as it goes.
fn new_pods_failing(new_rs: &str, pods: &[PodOfRollout<'_>]) -> Option<(Reason, String)> {
    let room_coming = pods.iter().any(|pod| pod.state.deleting);
    let mut new_pods = pods
        .iter()
        .filter(|pod| pod.replica_set() == Some(new_rs) && !pod.state.deleting)
        .peekable();
    new_pods.peek()?;
    let mut first = None;
    for pod in new_pods {
        let failing = pod.failing(room_coming)?;
        first.get_or_insert(failing);
    }
    first
}

/// Whether the rollout of `generation` (or a later one) is over as `wanted` asks; `None` while
/// it is not decided. `Some(Err(status))` when it FAILED.
#[must_use]
pub fn rollout_outcome(
    deployment: &DeploymentState,
    status: &RolloutStatus,
    generation: i64,
    wanted: RolloutGoal,
) -> Option<Result<(), ()>> {
    if deployment.observed_generation < generation || deployment.generation < generation {
        return None;
    }
    match (wanted, status.phase) {
        (_, RolloutPhase::Failed) => Some(Err(())),
        (RolloutGoal::RolledOut, RolloutPhase::Complete) => Some(Ok(())),
        (RolloutGoal::Available, _) => deployment
            .condition("Available")
            .is_some_and(|available| available.status == "True")
            .then_some(Ok(())),
        _ => None,
    }
}

/// What an apply or a stream waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutGoal {
    /// COMPLETE for the generation.
    RolledOut,
    /// The Available condition True for the generation.
    Available,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> DeploymentState {
        let mut annotations = BTreeMap::new();
        annotations.insert(REVISION_ANNOTATION.to_owned(), "2".to_owned());
        DeploymentState {
            namespace: "ns".into(),
            name: "web".into(),
            annotations,
            generation: 2,
            observed_generation: 2,
            desired: 3,
            replicas: 3,
            updated: 3,
            ready: 3,
            available: 3,
            ..DeploymentState::default()
        }
    }

    fn rs(name: &str, revision: i64, available: i32) -> ReplicaSetState {
        let mut annotations = BTreeMap::new();
        annotations.insert(REVISION_ANNOTATION.to_owned(), revision.to_string());
        ReplicaSetState {
            name: name.into(),
            annotations,
            available,
            ..ReplicaSetState::default()
        }
    }

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(format!("{type_} {reason}")),
            last_transition_time: None,
        }
    }

    fn pod_of(replica_set: &str) -> PodState {
        PodState {
            name: format!("{replica_set}-pod"),
            owners: vec![crate::domain::status::Owner {
                kind: "ReplicaSet".into(),
                name: replica_set.into(),
                controller: true,
            }],
            ..PodState::default()
        }
    }

    fn assessment(health: Health, reason: Reason) -> Assessment {
        Assessment {
            health,
            reason,
            message: format!("{reason:?} message"),
        }
    }

    #[test]
    fn the_ladder_in_kubectls_order_and_words() {
        type Change = fn(&mut DeploymentState);
        let cases: &[(&str, Change, RolloutPhase, RolloutReason, &str)] = &[
            (
                "complete",
                |_| {},
                RolloutPhase::Complete,
                RolloutReason::RolledOut,
                "deployment \"web\" successfully rolled out",
            ),
            (
                "paused wins",
                |d| {
                    d.paused = true;
                    d.generation = 3
                },
                RolloutPhase::Paused,
                RolloutReason::Paused,
                "deployment \"web\" is paused",
            ),
            (
                "not observed",
                |d| d.generation = 3,
                RolloutPhase::Observing,
                RolloutReason::SpecNotObserved,
                "Waiting for deployment spec update to be observed...",
            ),
            (
                "deadline",
                |d| {
                    d.updated = 1;
                    d.conditions.push(condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                    ));
                },
                RolloutPhase::Failed,
                RolloutReason::DeadlineExceeded,
                "deployment \"web\" exceeded its progress deadline",
            ),
            (
                "replica failure",
                |d| {
                    d.updated = 0;
                    d.conditions
                        .push(condition("ReplicaFailure", "True", "FailedCreate"));
                },
                RolloutPhase::Failed,
                RolloutReason::ReplicaFailure,
                "deployment \"web\": ReplicaFailure FailedCreate",
            ),
            (
                "updating",
                |d| d.updated = 1,
                RolloutPhase::Progressing,
                RolloutReason::UpdatingReplicas,
                "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...",
            ),
            (
                "old left",
                |d| d.replicas = 4,
                RolloutPhase::Progressing,
                RolloutReason::OldReplicasTerminating,
                "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...",
            ),
            (
                "unavailable",
                |d| d.available = 2,
                RolloutPhase::Progressing,
                RolloutReason::WaitingForAvailable,
                "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...",
            ),
        ];
        for (what, change, phase, reason, message) in cases {
            let mut d = deployment();
            change(&mut d);
            let status = assess_rollout(&d, &[rs("web-new", 2, 3)], &[]);
            assert_eq!((status.phase, status.reason), (*phase, *reason), "{what}");
            assert_eq!(status.message, *message, "{what}");
        }
    }

    #[test]
    fn new_pods_that_all_fail_fail_the_rollout_at_once_and_old_pods_still_count() {
        let mut d = deployment();
        d.updated = 1;
        d.available = 3;
        d.desired = 3;
        d.replicas = 4;
        let failed = assessment(Health::Failed, Reason::ImagePullFailed);
        let ready = assessment(Health::Ready, Reason::Completed);
        let sets = [rs("web-new", 2, 0), rs("web-old", 1, 3)];
        let (new, old) = (pod_of("web-new"), pod_of("web-old"));
        let pods = [
            PodOfRollout {
                state: &new,
                assessment: &failed,
            },
            PodOfRollout {
                state: &old,
                assessment: &ready,
            },
        ];
        let status = assess_rollout(&d, &sets, &pods);
        assert_eq!(status.phase, RolloutPhase::Failed);
        assert_eq!(status.reason, RolloutReason::NewPodsFailing);
        assert_eq!(status.pod_reason, Some(Reason::ImagePullFailed));
        assert_eq!(status.old_available, 3);
        assert_eq!(status.new_replica_set.as_deref(), Some("web-new"));
        assert!(
            status.message.contains("ImagePullFailed message"),
            "{}",
            status.message
        );

        // One new pod that may still come up keeps the rollout going.
        let pending = assessment(Health::Pending, Reason::ContainerCreating);
        let pods = [
            PodOfRollout {
                state: &new,
                assessment: &failed,
            },
            PodOfRollout {
                state: &new,
                assessment: &pending,
            },
        ];
        assert_eq!(
            assess_rollout(&d, &sets, &pods).phase,
            RolloutPhase::Progressing
        );
    }

    #[test]
    fn an_old_replica_set_seen_before_its_scale_down_keeps_the_rollout_going() {
        // The Deployment's status already says 3 of 3, its old ReplicaSet's update is late.
        let old = ReplicaSetState {
            desired: 1,
            replicas: 1,
            ..rs("web-old", 1, 1)
        };
        let status = assess_rollout(&deployment(), &[rs("web-new", 2, 3), old], &[]);
        assert_eq!(status.reason, RolloutReason::OldReplicasTerminating);
        assert_eq!(
            status.message,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
    }

    #[test]
    fn unschedulable_new_pods_fail_the_rollout_unless_an_old_pod_is_making_room() {
        let mut d = deployment();
        d.updated = 1;
        let sets = [rs("web-new", 2, 0), rs("web-old", 1, 3)];
        let unschedulable = assessment(Health::Pending, Reason::Unschedulable);
        let ready = assessment(Health::Ready, Reason::None);
        let (new, mut old) = (pod_of("web-new"), pod_of("web-old"));
        let status = |old: &PodState| {
            let pods = [
                PodOfRollout {
                    state: &new,
                    assessment: &unschedulable,
                },
                PodOfRollout {
                    state: old,
                    assessment: &ready,
                },
            ];
            assess_rollout(&d, &sets, &pods)
        };
        let stuck = status(&old);
        assert_eq!(
            (stuck.phase, stuck.pod_reason),
            (RolloutPhase::Failed, Some(Reason::Unschedulable))
        );
        old.deleting = true;
        assert_eq!(status(&old).phase, RolloutPhase::Progressing);
    }

    #[test]
    fn a_crash_loop_stays_failing_while_its_container_runs_between_crashes() {
        let mut d = deployment();
        d.updated = 1;
        d.available = 0;
        let sets = [rs("web-new", 2, 0)];
        let mut pod = pod_of("web-new");
        pod.containers.push(crate::domain::status::ContainerStatus {
            name: "app".into(),
            image: "crash.invalid/app:1".into(),
            image_id: String::new(),
            ready: false,
            started: true,
            restart_count: 3,
            state: ContainerState::Running { started_at: None },
            last_state: ContainerState::Terminated {
                exit_code: 1,
                signal: 0,
                reason: "Error".into(),
                message: String::new(),
                started_at: None,
                finished_at: None,
            },
        });
        let running = assessment(Health::Degraded, Reason::NotReady);
        let assess = |pod: &PodState| {
            let pods = [PodOfRollout {
                state: pod,
                assessment: &running,
            }];
            assess_rollout(&d, &sets, &pods)
        };
        let status = assess(&pod);
        assert_eq!(
            (status.phase, status.pod_reason),
            (RolloutPhase::Failed, Some(Reason::CrashLoop))
        );
        assert!(
            status
                .message
                .contains("restarted 3 times, last exit code 1"),
            "{}",
            status.message
        );

        // One restart is not yet a loop.
        pod.containers[0].restart_count = 1;
        assert_eq!(assess(&pod).phase, RolloutPhase::Progressing);
    }

    #[test]
    fn the_previous_rollouts_completion_is_not_this_ones() {
        let mut d = deployment();
        d.generation = 3;
        d.conditions
            .push(condition("Progressing", "True", "NewReplicaSetAvailable"));
        d.conditions
            .push(condition("Available", "True", "MinimumReplicasAvailable"));
        let status = assess_rollout(&d, &[rs("web-new", 2, 3)], &[]);
        assert_eq!(status.phase, RolloutPhase::Observing);
        assert_eq!(
            rollout_outcome(&d, &status, 3, RolloutGoal::RolledOut),
            None
        );
        assert_eq!(
            rollout_outcome(&d, &status, 3, RolloutGoal::Available),
            None
        );
        d.observed_generation = 3;
        let status = assess_rollout(&d, &[rs("web-new", 2, 3)], &[]);
        assert_eq!(
            rollout_outcome(&d, &status, 3, RolloutGoal::RolledOut),
            Some(Ok(()))
        );
    }
}
