//! What a pod's status means for a caller: [`assess`] turns a [`PodState`] into a [`Health`],
//! a [`Reason`] and a message. The rules, in order; the first that matches decides:
//!
//! 1. Deletion has begun: `Deleted`, `Deleted`, "deletion in progress".
//! 2. Phase `Succeeded`: `Succeeded`, `Completed`.
//! 3. Phase `Failed`: `Failed`, with
//!    - `Evicted` when the pod-level reason is `Evicted`, or another node-level cause
//!      (node shutdown, node affinity or out-of-resource admission failure), with the pod's
//!      message;
//!    - else from the first container (init containers first) whose current or previous run
//!      ended with a non-zero code or was OOM-killed: `OomKilled` or `ContainerError`,
//!      "container X exited with code N (Reason): message";
//!    - else `ContainerError` with the pod's reason and message.
//! 4. Condition `PodScheduled` is `False` with reason `Unschedulable`: `Pending`,
//!    `Unschedulable`, with the scheduler's message ("0/2 nodes are available: ...").
//! 5. No node yet: `Pending`, `Scheduling`.
//! 6. Containers, init containers first, then the others; the first that matches decides:
//!    - waiting `InvalidImageName`: `Failed`, `InvalidImage`;
//!    - waiting `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`,
//!      `RegistryUnavailable`, `ImageInspectError` or `SignatureValidationFailed`: `Failed`,
//!      `ImagePullFailed`;
//!    - waiting `CrashLoopBackOff`: `Failed`, `OomKilled` when the previous run was
//!      OOM-killed, else `CrashLoop` ("container app restarted 3 times, last exit code 1
//!      (Error): back-off ...");
//!    - waiting `CreateContainerConfigError`, `CreateContainerError` or `RunContainerError`:
//!      `Failed`, `ConfigError`;
//!    - terminated with a non-zero code (or OOM-killed) while the phase is `Running` or
//!      `Pending`, i.e. between restarts: `Degraded`, `OomKilled` or `ContainerError`.
//! 7. Phase `Running`, condition `Ready` is `True` and every container ready: `Ready`, `None`.
//! 8. Phase `Running` otherwise: `Degraded`, `NotReady`, naming the containers that are not
//!    ready, and saying "restarting" when any container has restarted.
//! 9. Phase `Pending` on a node: `Progressing`, `ContainerCreating`, with the first waiting
//!    container's reason and message.
//! 10. Anything else (phase `Unknown` or not reported): `Pending`, `None`, naming the phase.
//!
//! Rule 6 comes before rule 7 so that a crash-looping pod whose Ready condition lags behind
//! is never reported Ready.

use super::{Assessment, Condition, ContainerState, ContainerStatus, Health, PodState, Reason};

/// Classify a pod's status (see the module documentation for the rules).
pub(super) fn assess(pod: &PodState) -> Assessment {
    if pod.deleting {
        return verdict(Health::Deleted, Reason::Deleted, "deletion in progress");
    }
    match pod.phase.as_str() {
        "Succeeded" => return verdict(Health::Succeeded, Reason::Completed, ""),
        "Failed" => return failed_pod(pod),
        _ => {}
    }
    if let Some(scheduled) = condition(pod, "PodScheduled")
        && scheduled.status == "False"
        && scheduled.reason.as_deref() == Some("Unschedulable")
    {
        let message =
            non_empty(scheduled.message.as_deref()).unwrap_or("the scheduler cannot place the pod");
        return verdict(Health::Pending, Reason::Unschedulable, message);
    }
    if pod.node.as_deref().is_none_or(str::is_empty) {
        let message = condition(pod, "PodScheduled")
            .and_then(|c| non_empty(c.message.as_deref()))
            .unwrap_or("waiting to be scheduled");
        return verdict(Health::Pending, Reason::Scheduling, message);
    }
    if let Some(assessment) =
        all_containers(pod).find_map(|(c, init)| container_problem(pod, c, init))
    {
        return assessment;
    }
    match pod.phase.as_str() {
        "Running" => running_pod(pod),
        "Pending" => {
            let message = all_containers(pod)
                .find_map(|(c, init)| match &c.state {
                    ContainerState::Waiting { reason, message } if !reason.is_empty() => Some(
                        with_detail(format!("{} is waiting: {reason}", who(c, init)), message),
                    ),
                    _ => None,
                })
                .unwrap_or_else(|| "starting containers".to_owned());
            verdict(Health::Progressing, Reason::ContainerCreating, message)
        }
        "" => verdict(Health::Pending, Reason::None, "pod phase not reported yet"),
        phase => verdict(
            Health::Pending,
            Reason::None,
            format!("pod phase is {phase}"),
        ),
    }
}

fn verdict(health: Health, reason: Reason, message: impl Into<String>) -> Assessment {
    Assessment {
        health,
        reason,
        message: message.into(),
    }
}

fn condition<'a>(pod: &'a PodState, type_: &str) -> Option<&'a Condition> {
    pod.conditions.iter().find(|c| c.type_ == type_)
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// Init containers first (they run first), each with whether it is one.
fn all_containers(pod: &PodState) -> impl Iterator<Item = (&ContainerStatus, bool)> {
    let init = pod.init_containers.iter().map(|c| (c, true));
    init.chain(pod.containers.iter().map(|c| (c, false)))
}

fn who(container: &ContainerStatus, init: bool) -> String {
    let kind = if init { "init container" } else { "container" };
    format!("{kind} {}", container.name)
}

/// `text`, then ": detail" when there is one.
fn with_detail(mut text: String, detail: &str) -> String {
    if !detail.is_empty() {
        text.push_str(": ");
        text.push_str(detail);
    }
    text
}

/// Pod-level reasons for a failure that lies with the node rather than the container.
fn is_node_level(reason: &str) -> bool {
    matches!(
        reason,
        "Evicted"
            | "Preempted"
            | "Shutdown"
            | "Terminated"
            | "NodeShutdown"
            | "NodeLost"
            | "NodeAffinity"
            | "UnexpectedAdmissionError"
    ) || reason.starts_with("OutOf")
}

/// A finished run that went wrong: exit code, reason, message.
fn bad_exit(state: &ContainerState) -> Option<(i32, &str, &str)> {
    match state {
        ContainerState::Terminated {
            exit_code,
            reason,
            message,
            ..
        } if *exit_code != 0 || reason == "OOMKilled" => {
            Some((*exit_code, reason.as_str(), message.as_str()))
        }
        _ => None,
    }
}

fn exit_verdict(
    health: Health,
    who: &str,
    (code, reason, message): (i32, &str, &str),
) -> Assessment {
    let mut text = format!("{who} exited with code {code}");
    if !reason.is_empty() {
        text.push_str(&format!(" ({reason})"));
    }
    let kind = if reason == "OOMKilled" {
        Reason::OomKilled
    } else {
        Reason::ContainerError
    };
    verdict(health, kind, with_detail(text, message))
}

fn failed_pod(pod: &PodState) -> Assessment {
    let pod_reason = pod.reason.as_deref().unwrap_or("");
    let pod_message = pod.message.as_deref().unwrap_or("");
    if is_node_level(pod_reason) {
        let message = if pod_message.is_empty() {
            pod_reason
        } else {
            pod_message
        };
        return verdict(Health::Failed, Reason::Evicted, message);
    }
    let exit = all_containers(pod).find_map(|(c, init)| {
        bad_exit(&c.state)
            .or_else(|| bad_exit(&c.last_state))
            .map(|exit| (who(c, init), exit))
    });
    if let Some((who, exit)) = exit {
        return exit_verdict(Health::Failed, &who, exit);
    }
    let message = match (pod_reason, pod_message) {
        ("", "") => "pod failed".to_owned(),
        ("", message) => message.to_owned(),
        (reason, message) => with_detail(reason.to_owned(), message),
    };
    verdict(Health::Failed, Reason::ContainerError, message)
}

fn container_problem(
    pod: &PodState,
    container: &ContainerStatus,
    init: bool,
) -> Option<Assessment> {
    let who = who(container, init);
    match &container.state {
        ContainerState::Waiting { reason, message } => {
            let (kind, text) = match reason.as_str() {
                "InvalidImageName" => (
                    Reason::InvalidImage,
                    format!(
                        "{who} has an invalid image reference {:?} ({reason})",
                        container.image
                    ),
                ),
                "ErrImagePull"
                | "ImagePullBackOff"
                | "ErrImageNeverPull"
                | "RegistryUnavailable"
                | "ImageInspectError"
                | "SignatureValidationFailed" => (
                    Reason::ImagePullFailed,
                    format!("{who} cannot pull image {:?} ({reason})", container.image),
                ),
                "CrashLoopBackOff" => crash_loop(&who, container),
                "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => (
                    Reason::ConfigError,
                    format!("{who} cannot be created ({reason})"),
                ),
                _ => return None,
            };
            Some(verdict(Health::Failed, kind, with_detail(text, message)))
        }
        state @ ContainerState::Terminated { .. }
            if matches!(pod.phase.as_str(), "Running" | "Pending") =>
        {
            bad_exit(state).map(|exit| exit_verdict(Health::Degraded, &who, exit))
        }
        _ => None,
    }
}

fn crash_loop(who: &str, container: &ContainerStatus) -> (Reason, String) {
    let restarts = container.restart_count;
    let times = if restarts == 1 { "time" } else { "times" };
    let mut text = format!("{who} restarted {restarts} {times}");
    let mut kind = Reason::CrashLoop;
    if let ContainerState::Terminated {
        exit_code, reason, ..
    } = &container.last_state
    {
        text.push_str(&format!(", last exit code {exit_code}"));
        if !reason.is_empty() {
            text.push_str(&format!(" ({reason})"));
        }
        if reason == "OOMKilled" {
            kind = Reason::OomKilled;
        }
    }
    (kind, text)
}

fn running_pod(pod: &PodState) -> Assessment {
    let ready_condition = condition(pod, "Ready").is_some_and(|c| c.status == "True");
    let unready: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    if ready_condition && unready.is_empty() {
        return verdict(Health::Ready, Reason::None, "");
    }
    let restarting = all_containers(pod).any(|(c, _)| c.restart_count > 0);
    let mut message = match unready.as_slice() {
        [] => with_detail(
            "pod is not ready".to_owned(),
            condition(pod, "Ready")
                .and_then(|c| non_empty(c.message.as_deref()))
                .unwrap_or(""),
        ),
        [one] => format!("container {one} is not ready"),
        many => format!("containers {} are not ready", many.join(", ")),
    };
    if restarting {
        message.push_str(" (restarting)");
    }
    verdict(Health::Degraded, Reason::NotReady, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container status, built up from a plain waiting-less default.
    struct C(ContainerStatus);

    fn c(name: &str) -> C {
        C(ContainerStatus {
            name: name.into(),
            image: "nginx:1.27".into(),
            image_id: String::new(),
            ready: false,
            started: false,
            restart_count: 0,
            state: ContainerState::Unknown,
            last_state: ContainerState::Unknown,
        })
    }

    fn terminated(exit_code: i32, reason: &str, message: &str) -> ContainerState {
        ContainerState::Terminated {
            exit_code,
            signal: 0,
            reason: reason.into(),
            message: message.into(),
            started_at: None,
            finished_at: None,
        }
    }

    impl C {
        fn image(mut self, image: &str) -> Self {
            self.0.image = image.into();
            self
        }
        fn waiting(mut self, reason: &str, message: &str) -> Self {
            self.0.state = ContainerState::Waiting {
                reason: reason.into(),
                message: message.into(),
            };
            self
        }
        fn running(mut self) -> Self {
            self.0.state = ContainerState::Running { started_at: None };
            self.0.started = true;
            self
        }
        fn ready(mut self) -> Self {
            self.0.ready = true;
            self
        }
        fn exited(mut self, code: i32, reason: &str, message: &str) -> Self {
            self.0.state = terminated(code, reason, message);
            self
        }
        fn last_exited(mut self, code: i32, reason: &str) -> Self {
            self.0.last_state = terminated(code, reason, "");
            self
        }
        fn restarts(mut self, n: i32) -> Self {
            self.0.restart_count = n;
            self
        }
    }

    /// A pod status, starting as created and not yet scheduled.
    struct P(PodState);

    fn pod() -> P {
        P(PodState {
            namespace: "team-a".into(),
            name: "web-7xk2q".into(),
            phase: "Pending".into(),
            ..PodState::default()
        })
    }

    impl P {
        fn phase(mut self, phase: &str) -> Self {
            self.0.phase = phase.into();
            self
        }
        fn node(mut self) -> Self {
            self.0.node = Some("node-1".into());
            self
        }
        fn condition(mut self, type_: &str, status: &str, reason: &str, message: &str) -> Self {
            self.0.conditions.push(Condition {
                type_: type_.into(),
                status: status.into(),
                reason: (!reason.is_empty()).then(|| reason.into()),
                message: (!message.is_empty()).then(|| message.into()),
                last_transition_time: None,
            });
            self
        }
        fn ready_condition(self) -> Self {
            self.condition("Ready", "True", "", "")
        }
        fn init(mut self, container: C) -> Self {
            self.0.init_containers.push(container.0);
            self
        }
        fn container(mut self, container: C) -> Self {
            self.0.containers.push(container.0);
            self
        }
        fn deleting(mut self) -> Self {
            self.0.deleting = true;
            self
        }
        fn pod_reason(mut self, reason: &str, message: &str) -> Self {
            self.0.reason = Some(reason.into());
            self.0.message = Some(message.into());
            self
        }
        /// Running on a node.
        fn running(self) -> Self {
            self.phase("Running").node()
        }
    }

    const SCHEDULER: &str = "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.";
    const BACK_OFF: &str = "back-off 40s restarting failed container=app pod=web-7xk2q_team-a(uid)";

    #[test]
    fn pods_are_classified_by_the_rules_in_order() {
        use Health as H;
        use Reason as R;
        let crash_message =
            format!("container app restarted 3 times, last exit code 1 (Error): {BACK_OFF}");
        #[rustfmt::skip]
        let cases: Vec<(&str, P, Health, Reason, &str)> = vec![
            // 1. deletion
            ("deleting", pod().running().ready_condition().container(c("app").running().ready()).deleting(),
             H::Deleted, R::Deleted, "deletion in progress"),
            ("deleting a failed pod", pod().phase("Failed").deleting(), H::Deleted, R::Deleted, "deletion in progress"),
            // 2. succeeded
            ("succeeded", pod().phase("Succeeded").node().container(c("app").exited(0, "Completed", "")),
             H::Succeeded, R::Completed, ""),
            // 3. failed
            ("evicted", pod().phase("Failed").node().pod_reason("Evicted", "The node was low on resource: memory.")
                .container(c("app").exited(137, "Error", "")),
             H::Failed, R::Evicted, "The node was low on resource: memory."),
            ("node shutdown", pod().phase("Failed").node()
                .pod_reason("Terminated", "Pod was terminated in response to imminent node shutdown."),
             H::Failed, R::Evicted, "Pod was terminated in response to imminent node shutdown."),
            ("out of cpu at admission", pod().phase("Failed").node().pod_reason("OutOfcpu", ""),
             H::Failed, R::Evicted, "OutOfcpu"),
            ("failed, oom killed", pod().phase("Failed").node().container(c("app").exited(137, "OOMKilled", "")),
             H::Failed, R::OomKilled, "container app exited with code 137 (OOMKilled)"),
            ("failed, exit code", pod().phase("Failed").node().container(c("app").exited(2, "Error", "no config")),
             H::Failed, R::ContainerError, "container app exited with code 2 (Error): no config"),
            ("failed, from the previous run", pod().phase("Failed").node()
                .container(c("app").waiting("ContainerCreating", "").last_exited(1, "Error")),
             H::Failed, R::ContainerError, "container app exited with code 1 (Error)"),
            ("failed, init container first", pod().phase("Failed").node()
                .init(c("migrate").exited(3, "Error", "db down"))
                .container(c("app").waiting("PodInitializing", "")),
             H::Failed, R::ContainerError, "init container migrate exited with code 3 (Error): db down"),
            ("failed, second container", pod().phase("Failed").node()
                .container(c("app").exited(0, "Completed", ""))
                .container(c("sidecar").exited(1, "", "")),
             H::Failed, R::ContainerError, "container sidecar exited with code 1"),
            ("failed, deadline", pod().phase("Failed").node()
                .pod_reason("DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
                .container(c("app").exited(0, "Completed", "")),
             H::Failed, R::ContainerError, "DeadlineExceeded: Pod was active on the node longer than the specified deadline"),
            ("failed, nothing known", pod().phase("Failed"), H::Failed, R::ContainerError, "pod failed"),
            // 4. unschedulable
            ("unschedulable", pod().condition("PodScheduled", "False", "Unschedulable", SCHEDULER),
             H::Pending, R::Unschedulable, SCHEDULER),
            ("unschedulable without a message", pod().condition("PodScheduled", "False", "Unschedulable", ""),
             H::Pending, R::Unschedulable, "the scheduler cannot place the pod"),
            // 5. scheduling
            ("created", pod(), H::Pending, R::Scheduling, "waiting to be scheduled"),
            ("no phase yet", pod().phase(""), H::Pending, R::Scheduling, "waiting to be scheduled"),
            ("scheduling gated", pod().condition("PodScheduled", "False", "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates"),
             H::Pending, R::Scheduling, "Scheduling is blocked due to non-empty scheduling gates"),
            // 6. containers
            ("invalid image", pod().node().container(c("app").image("nginx:").waiting("InvalidImageName", "Failed to apply default image tag \"nginx:\"")),
             H::Failed, R::InvalidImage, "container app has an invalid image reference \"nginx:\" (InvalidImageName): Failed to apply default image tag \"nginx:\""),
            ("err image pull", pod().node().container(c("app").image("fail.invalid/nothing:1").waiting("ErrImagePull", "dial tcp: lookup fail.invalid: no such host")),
             H::Failed, R::ImagePullFailed, "container app cannot pull image \"fail.invalid/nothing:1\" (ErrImagePull): dial tcp: lookup fail.invalid: no such host"),
            ("image pull back-off", pod().node().container(c("app").waiting("ImagePullBackOff", "Back-off pulling image \"nginx:1.27\"")),
             H::Failed, R::ImagePullFailed, "container app cannot pull image \"nginx:1.27\" (ImagePullBackOff): Back-off pulling image \"nginx:1.27\""),
            ("never pull", pod().node().container(c("app").waiting("ErrImageNeverPull", "")),
             H::Failed, R::ImagePullFailed, "container app cannot pull image \"nginx:1.27\" (ErrImageNeverPull)"),
            ("registry unavailable", pod().node().container(c("app").waiting("RegistryUnavailable", "")),
             H::Failed, R::ImagePullFailed, "(RegistryUnavailable)"),
            ("init container cannot pull", pod().node()
                .init(c("setup").image("busybox:nope").waiting("ImagePullBackOff", "Back-off pulling image \"busybox:nope\""))
                .container(c("app").waiting("PodInitializing", "")),
             H::Failed, R::ImagePullFailed, "init container setup cannot pull image \"busybox:nope\" (ImagePullBackOff)"),
            ("crash loop", pod().running().container(c("app").waiting("CrashLoopBackOff", BACK_OFF).restarts(3).last_exited(1, "Error")),
             H::Failed, R::CrashLoop, &crash_message),
            ("crash loop with a stale Ready condition", pod().running().ready_condition()
                .container(c("app").waiting("CrashLoopBackOff", BACK_OFF).restarts(1).last_exited(1, "Error").ready()),
             H::Failed, R::CrashLoop, "container app restarted 1 time, last exit code 1 (Error)"),
            ("crash loop, oom killed", pod().running().container(c("app").waiting("CrashLoopBackOff", "").restarts(5).last_exited(137, "OOMKilled")),
             H::Failed, R::OomKilled, "container app restarted 5 times, last exit code 137 (OOMKilled)"),
            ("crash loop, no last state", pod().running().container(c("app").waiting("CrashLoopBackOff", "").restarts(2)),
             H::Failed, R::CrashLoop, "container app restarted 2 times"),
            ("init container crash loop", pod().node().init(c("migrate").waiting("CrashLoopBackOff", "").restarts(4).last_exited(1, "Error")),
             H::Failed, R::CrashLoop, "init container migrate restarted 4 times, last exit code 1 (Error)"),
            ("config error", pod().node().container(c("app").waiting("CreateContainerConfigError", "configmap \"settings\" not found")),
             H::Failed, R::ConfigError, "container app cannot be created (CreateContainerConfigError): configmap \"settings\" not found"),
            ("create error", pod().node().container(c("app").waiting("CreateContainerError", "")),
             H::Failed, R::ConfigError, "container app cannot be created (CreateContainerError)"),
            ("run error", pod().running().container(c("app").waiting("RunContainerError", "exec: \"nope\": not found")),
             H::Failed, R::ConfigError, "(RunContainerError): exec: \"nope\": not found"),
            ("exited between restarts", pod().running().container(c("app").exited(1, "Error", "").restarts(1)),
             H::Degraded, R::ContainerError, "container app exited with code 1 (Error)"),
            ("oom killed between restarts", pod().running().container(c("app").exited(137, "OOMKilled", "").restarts(1)),
             H::Degraded, R::OomKilled, "container app exited with code 137 (OOMKilled)"),
            ("init container exited between restarts", pod().node().init(c("migrate").exited(1, "Error", "")),
             H::Degraded, R::ContainerError, "init container migrate exited with code 1 (Error)"),
            ("one bad container of two", pod().running()
                .container(c("app").running().ready())
                .container(c("sidecar").image("sidecar:9").waiting("ErrImagePull", "not found")),
             H::Failed, R::ImagePullFailed, "container sidecar cannot pull image \"sidecar:9\" (ErrImagePull): not found"),
            ("the first problem decides", pod().running()
                .container(c("app").waiting("CreateContainerConfigError", "secret \"s\" not found"))
                .container(c("sidecar").waiting("CrashLoopBackOff", "").restarts(2)),
             H::Failed, R::ConfigError, "container app cannot be created"),
            // 7. ready
            ("ready", pod().running().ready_condition().container(c("app").running().ready()),
             H::Ready, R::None, ""),
            ("ready after restarts", pod().running().ready_condition()
                .init(c("setup").exited(0, "Completed", ""))
                .container(c("app").running().ready().restarts(2).last_exited(1, "Error"))
                .container(c("sidecar").running().ready()),
             H::Ready, R::None, ""),
            // 8. not ready
            ("not ready", pod().running().condition("Ready", "False", "ContainersNotReady", "containers with unready status: [app]")
                .container(c("app").running()),
             H::Degraded, R::NotReady, "container app is not ready"),
            ("not ready, restarting", pod().running().container(c("app").running().restarts(3)),
             H::Degraded, R::NotReady, "container app is not ready (restarting)"),
            ("several not ready", pod().running()
                .container(c("app").running()).container(c("cache").running().ready()).container(c("sidecar").running()),
             H::Degraded, R::NotReady, "containers app, sidecar are not ready"),
            ("containers ready, pod not yet", pod().running().condition("Ready", "False", "ReadinessGatesNotReady", "corresponding condition of pod readiness gate \"x\" does not exist")
                .container(c("app").running().ready()),
             H::Degraded, R::NotReady, "pod is not ready: corresponding condition of pod readiness gate \"x\" does not exist"),
            ("finished container in a running pod", pod().running().ready_condition()
                .container(c("app").running().ready()).container(c("job").exited(0, "Completed", "")),
             H::Degraded, R::NotReady, "container job is not ready"),
            // 9. progressing
            ("creating", pod().node().container(c("app").waiting("ContainerCreating", "")),
             H::Progressing, R::ContainerCreating, "container app is waiting: ContainerCreating"),
            ("initializing", pod().node().init(c("setup").running()).container(c("app").waiting("PodInitializing", "")),
             H::Progressing, R::ContainerCreating, "container app is waiting: PodInitializing"),
            ("scheduled, nothing reported", pod().node().condition("PodScheduled", "True", "", ""),
             H::Progressing, R::ContainerCreating, "starting containers"),
            // 10. anything else
            ("unknown phase", pod().phase("Unknown").node().container(c("app").running().ready()),
             H::Pending, R::None, "pod phase is Unknown"),
            ("no phase on a node", pod().phase("").node(), H::Pending, R::None, "pod phase not reported yet"),
        ];
        for (case, pod, health, reason, message) in cases {
            let got = assess(&pod.0);
            assert_eq!(
                (got.health, got.reason),
                (health, reason),
                "{case}: {got:?}"
            );
            if message.is_empty() {
                assert_eq!(got.message, "", "{case}");
            } else {
                assert!(
                    got.message.contains(message),
                    "{case}: {:?} should contain {message:?}",
                    got.message
                );
            }
        }
    }

    #[test]
    fn a_crash_looping_pod_is_never_ready() {
        for restarts in [1, 5, 100] {
            let crashing = pod()
                .running()
                .ready_condition()
                .condition("ContainersReady", "True", "", "")
                .container(c("web").running().ready())
                .container(
                    c("app")
                        .waiting("CrashLoopBackOff", BACK_OFF)
                        .restarts(restarts)
                        .ready(),
                );
            let got = assess(&crashing.0);
            assert_eq!(got.health, Health::Failed, "{got:?}");
            assert_eq!(got.reason, Reason::CrashLoop, "{got:?}");
        }
    }
}
