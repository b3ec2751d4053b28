//! A pod's status as this service sees it ([`PodState`]), the Events about it and its owners ([`ObjectEvent`]),
//! and what it means for a caller ([`Assessment`]: a [`Health`] and a [`Reason`]).

use std::collections::BTreeMap;

use crate::domain::spec::WaitFor;

/// A point in time (UTC), as Kubernetes reports it.
pub type Time = jiff::Timestamp;

/// The status of one pod, converted from the Kubernetes object by the adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodState {
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
    /// The image requested at Deploy (annotation), else the first container's image.
    pub image: String,
    /// The Deploy request_id (label), if any.
    pub request_id: Option<String>,
    /// The request hash (annotation), if any.
    pub request_hash: Option<String>,
    /// The Pod Security profile it was hardened to (from its annotation), when this service
    /// recorded one.
    pub pod_security: Option<crate::domain::spec::PodSecurityProfile>,
    /// Kubernetes phase; empty when not reported yet.
    pub phase: String,
    /// Conditions, as reported.
    pub conditions: Vec<Condition>,
    /// Init container statuses, in spec order.
    pub init_containers: Vec<ContainerStatus>,
    /// Container statuses, in spec order.
    pub containers: Vec<ContainerStatus>,
    /// Pod IP, once assigned.
    pub pod_ip: Option<String>,
    /// Node, once scheduled.
    pub node: Option<String>,
    /// When the kubelet started the pod.
    pub start_time: Option<Time>,
    /// When the object was created.
    pub created: Option<Time>,
    /// Owner references.
    pub owners: Vec<Owner>,
    /// Deletion has begun.
    pub deleting: bool,
    /// The pod-level reason, e.g. "Evicted" (status.reason).
    pub reason: Option<String>,
    /// The pod-level message (status.message).
    pub message: Option<String>,
}

/// A pod condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// PodScheduled, Initialized, ContainersReady, Ready, ...
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// Reason, if any.
    pub reason: Option<String>,
    /// Message, if any.
    pub message: Option<String>,
    /// Last transition.
    pub last_transition_time: Option<Time>,
}

/// The status of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Name.
    pub name: String,
    /// Image, as in the spec.
    pub image: String,
    /// Resolved image ID, once pulled; empty before.
    pub image_id: String,
    /// Ready.
    pub ready: bool,
    /// Started.
    pub started: bool,
    /// Restarts so far.
    pub restart_count: i32,
    /// Current state.
    pub state: ContainerState,
    /// Previous run's state (`Unknown` when none).
    pub last_state: ContainerState,
}

/// A container's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ContainerState {
    /// Not reported.
    #[default]
    Unknown,
    /// Waiting, with the kubelet's reason and message.
    Waiting {
        /// ContainerCreating, ErrImagePull, ImagePullBackOff, CrashLoopBackOff, ...
        reason: String,
        /// Detail.
        message: String,
    },
    /// Running.
    Running {
        /// Since when.
        started_at: Option<Time>,
    },
    /// Terminated.
    Terminated {
        /// Exit code.
        exit_code: i32,
        /// Signal, 0 for none.
        signal: i32,
        /// Completed, Error, OOMKilled, ...
        reason: String,
        /// Detail.
        message: String,
        /// Start.
        started_at: Option<Time>,
        /// End.
        finished_at: Option<Time>,
    },
}

/// An owner reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Managing controller.
    pub controller: bool,
}

/// The kinds of object whose Events this service follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A pod.
    Pod,
    /// A ReplicaSet (of a Deployment).
    ReplicaSet,
    /// A Deployment.
    Deployment,
}

impl ObjectKind {
    /// The Kubernetes kind, e.g. "ReplicaSet".
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::ReplicaSet => "ReplicaSet",
            Self::Deployment => "Deployment",
        }
    }
}

/// A Kubernetes Event about a pod, a ReplicaSet or a Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// Namespace.
    pub namespace: String,
    /// The kind of the object it is about.
    pub kind: ObjectKind,
    /// The object's name.
    pub name: String,
    /// The Event object's UID (for de-duplication across relists).
    pub uid: String,
    /// The Event object's resourceVersion.
    pub resource_version: String,
    /// "Normal" or "Warning".
    pub type_: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// Occurrences.
    pub count: i32,
    /// First occurrence.
    pub first_time: Option<Time>,
    /// Last occurrence.
    pub last_time: Option<Time>,
    /// Reporting component.
    pub source: String,
}

/// Derived health of a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Not yet scheduled or started.
    Pending,
    /// Scheduled and on its way.
    Progressing,
    /// Running and Ready.
    Ready,
    /// Running but not ready, or restarting.
    Degraded,
    /// Will not become ready without action.
    Failed,
    /// Every container finished successfully.
    Succeeded,
    /// Gone.
    Deleted,
}

impl Health {
    /// FAILED, SUCCEEDED or DELETED: the pod will not change by itself any more.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Succeeded | Self::Deleted)
    }
}

impl WaitFor {
    /// Whether a pod meets this condition, judged from its Kubernetes `phase`, whether it is
    /// `scheduled` to a node, and its `health`. The one rule behind Deploy's `wait_for` and
    /// deployctl's `--wait`: the waiter checks it first, and only then treats a terminal health
    /// as a failure (a pod that ran to completion has met RUNNING on its way).
    #[must_use]
    pub fn is_met(self, phase: &str, scheduled: bool, health: Health) -> bool {
        match self {
            Self::None => true,
            Self::Scheduled => scheduled,
            Self::Running => phase == "Running" && health != Health::Failed,
            Self::Ready => health == Health::Ready,
        }
    }
}

/// Machine-readable reason behind a health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Nothing to report.
    None,
    /// The scheduler cannot place the pod.
    Unschedulable,
    /// Waiting to be scheduled.
    Scheduling,
    /// Pulling the image or creating the container.
    ContainerCreating,
    /// The image cannot be pulled.
    ImagePullFailed,
    /// The image reference is invalid.
    InvalidImage,
    /// The container keeps crashing.
    CrashLoop,
    /// The container cannot be created from its configuration.
    ConfigError,
    /// Killed for exceeding its memory limit.
    OomKilled,
    /// Exited with an error.
    ContainerError,
    /// Every container completed.
    Completed,
    /// Running but not ready.
    NotReady,
    /// Deletion has begun or the pod is gone.
    Deleted,
    /// Evicted or failed for a node-level cause.
    Evicted,
}

/// What a pod's status means: health, reason and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Health.
    pub health: Health,
    /// Reason.
    pub reason: Reason,
    /// Explanation, e.g. the scheduler's or kubelet's message; may be empty.
    pub message: String,
}

/// Classify a pod's status. A pure function of the status.
#[must_use]
pub fn assess(pod: &PodState) -> Assessment {
    classify::assess(pod)
}

mod classify;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_conditions_are_met_by_these_pods() {
        use Health::{Degraded, Failed, Pending, Progressing, Ready, Succeeded};
        // (condition, phase, scheduled, health, met)
        let table = [
            (WaitFor::None, "", false, Pending, true),
            (WaitFor::Scheduled, "Pending", false, Pending, false),
            (WaitFor::Scheduled, "Pending", true, Progressing, true),
            (WaitFor::Scheduled, "Failed", true, Failed, true),
            (WaitFor::Running, "Pending", true, Progressing, false),
            (WaitFor::Running, "Running", true, Degraded, true),
            (WaitFor::Running, "Running", true, Failed, false),
            (WaitFor::Running, "Succeeded", true, Succeeded, false),
            (WaitFor::Ready, "Running", true, Degraded, false),
            (WaitFor::Ready, "Running", true, Ready, true),
        ];
        for (wanted, phase, scheduled, health, met) in table {
            assert_eq!(
                wanted.is_met(phase, scheduled, health),
                met,
                "{wanted:?} for a {phase:?} pod, scheduled {scheduled}, {health:?}"
            );
        }
    }

    #[test]
    fn terminal_healths_are_the_ones_a_pod_does_not_leave() {
        use Health::{Degraded, Deleted, Failed, Pending, Progressing, Ready, Succeeded};
        for (health, terminal) in [
            (Pending, false),
            (Progressing, false),
            (Ready, false),
            (Degraded, false),
            (Failed, true),
            (Succeeded, true),
            (Deleted, true),
        ] {
            assert_eq!(health.is_terminal(), terminal, "{health:?}");
        }
    }
}
