//! Conversions at the gRPC boundary: proto requests into domain inputs, domain states into
//! proto messages.

use std::time::Duration;

use crate::domain::spec::{EnvVar, PodSecurityProfile, Port, Protocol, RestartPolicy};
use crate::domain::status::{ContainerState, Time};
use crate::domain::{DeployInput, Health, PodEvent, Reason, WaitFor};
use crate::hub::PodView;
use crate::proto::deployer::v1 as pb;

/// A proto timestamp from a domain time.
#[must_use]
pub fn timestamp(time: Option<Time>) -> Option<prost_types::Timestamp> {
    time.map(|t| prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    })
}

/// A duration from the proto's, `None` when negative.
#[must_use]
pub fn duration(value: &prost_types::Duration) -> Option<Duration> {
    let seconds = u64::try_from(value.seconds).ok()?;
    let nanos = u32::try_from(value.nanos).ok()?;
    Some(Duration::new(seconds, nanos))
}

impl From<pb::DeployRequest> for DeployInput {
    fn from(request: pb::DeployRequest) -> Self {
        let resources = request.resources.unwrap_or_default();
        Self {
            image: request.image,
            namespace: request.namespace,
            name: request.name,
            labels: request.labels.into_iter().collect(),
            annotations: request.annotations.into_iter().collect(),
            env: request
                .env
                .into_iter()
                .map(|e| EnvVar {
                    name: e.name,
                    value: e.value,
                })
                .collect(),
            ports: request
                .ports
                .into_iter()
                .map(|p| Port {
                    name: p.name,
                    number: p.container_port,
                    protocol: match pb::Protocol::try_from(p.protocol) {
                        Ok(pb::Protocol::Udp) => Protocol::Udp,
                        Ok(pb::Protocol::Sctp) => Protocol::Sctp,
                        _ => Protocol::Tcp,
                    },
                })
                .collect(),
            command: request.command,
            args: request.args,
            requests: resources.requests.into_iter().collect(),
            limits: resources.limits.into_iter().collect(),
            restart_policy: match pb::RestartPolicy::try_from(request.restart_policy) {
                Ok(pb::RestartPolicy::OnFailure) => RestartPolicy::OnFailure,
                Ok(pb::RestartPolicy::Never) => RestartPolicy::Never,
                _ => RestartPolicy::Always,
            },
            request_id: request.request_id,
            dry_run: request.dry_run,
            pod_security: match pb::PodSecurity::try_from(request.pod_security) {
                Ok(pb::PodSecurity::Baseline) => Some(PodSecurityProfile::Baseline),
                Ok(pb::PodSecurity::Restricted) => Some(PodSecurityProfile::Restricted),
                _ => None,
            },
            wait_for: match pb::WaitFor::try_from(request.wait_for) {
                Ok(pb::WaitFor::Scheduled) => WaitFor::Scheduled,
                Ok(pb::WaitFor::Running) => WaitFor::Running,
                Ok(pb::WaitFor::Ready) => WaitFor::Ready,
                _ => WaitFor::None,
            },
            // A negative duration is kept as zero, which validation refuses.
            wait_timeout: request
                .wait_timeout
                .as_ref()
                .map(|d| duration(d).unwrap_or(Duration::ZERO)),
        }
    }
}

impl From<Health> for pb::Health {
    fn from(health: Health) -> Self {
        match health {
            Health::Pending => Self::Pending,
            Health::Progressing => Self::Progressing,
            Health::Ready => Self::Ready,
            Health::Degraded => Self::Degraded,
            Health::Failed => Self::Failed,
            Health::Succeeded => Self::Succeeded,
            Health::Deleted => Self::Deleted,
        }
    }
}

impl From<Reason> for pb::Reason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::None => Self::Unspecified,
            Reason::Unschedulable => Self::Unschedulable,
            Reason::Scheduling => Self::Scheduling,
            Reason::ContainerCreating => Self::ContainerCreating,
            Reason::ImagePullFailed => Self::ImagePullFailed,
            Reason::InvalidImage => Self::InvalidImage,
            Reason::CrashLoop => Self::CrashLoop,
            Reason::ConfigError => Self::ConfigError,
            Reason::OomKilled => Self::OomKilled,
            Reason::ContainerError => Self::ContainerError,
            Reason::Completed => Self::Completed,
            Reason::NotReady => Self::NotReady,
            Reason::Deleted => Self::Deleted,
            Reason::Evicted => Self::Evicted,
        }
    }
}

/// The proto name of a reason without its prefix, e.g. "IMAGE_PULL_FAILED".
#[must_use]
pub fn reason_name(reason: Reason) -> String {
    let name = pb::Reason::from(reason).as_str_name();
    name.strip_prefix("REASON_").unwrap_or(name).to_owned()
}

/// The proto name of a health without its prefix, e.g. "PENDING".
#[must_use]
pub fn health_name(health: Health) -> String {
    let name = pb::Health::from(health).as_str_name();
    name.strip_prefix("HEALTH_").unwrap_or(name).to_owned()
}

fn container_state(state: &ContainerState) -> Option<pb::ContainerState> {
    use pb::container_state::State;
    let state = match state {
        ContainerState::Unknown => return None,
        ContainerState::Waiting { reason, message } => State::Waiting(pb::Waiting {
            reason: reason.clone(),
            message: message.clone(),
        }),
        ContainerState::Running { started_at } => State::Running(pb::Running {
            started_at: timestamp(*started_at),
        }),
        ContainerState::Terminated {
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
        } => State::Terminated(pb::Terminated {
            exit_code: *exit_code,
            signal: *signal,
            reason: reason.clone(),
            message: message.clone(),
            started_at: timestamp(*started_at),
            finished_at: timestamp(*finished_at),
        }),
    };
    Some(pb::ContainerState { state: Some(state) })
}

impl From<&PodView> for pb::PodStatus {
    fn from(view: &PodView) -> Self {
        let state = &view.state;
        let containers = |list: &[crate::domain::status::ContainerStatus]| {
            list.iter()
                .map(|c| pb::ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    image_id: c.image_id.clone(),
                    ready: c.ready,
                    started: c.started,
                    restart_count: c.restart_count,
                    state: container_state(&c.state),
                    last_state: container_state(&c.last_state),
                })
                .collect()
        };
        Self {
            namespace: state.namespace.clone(),
            name: state.name.clone(),
            uid: state.uid.clone(),
            resource_version: state.resource_version.clone(),
            health: pb::Health::from(view.assessment.health).into(),
            reason: pb::Reason::from(view.assessment.reason).into(),
            message: view.assessment.message.clone(),
            phase: state.phase.clone(),
            image: state.image.clone(),
            request_id: state.request_id.clone().unwrap_or_default(),
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
            init_containers: containers(&state.init_containers),
            containers: containers(&state.containers),
            pod_ip: state.pod_ip.clone().unwrap_or_default(),
            node: state.node.clone().unwrap_or_default(),
            start_time: timestamp(state.start_time),
            created: timestamp(state.created),
            owners: state
                .owners
                .iter()
                .map(|o| pb::Owner {
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                    controller: o.controller,
                })
                .collect(),
            deleting: state.deleting,
            labels: state.labels.clone().into_iter().collect(),
        }
    }
}

impl From<&PodEvent> for pb::PodEvent {
    fn from(event: &PodEvent) -> Self {
        Self {
            namespace: event.namespace.clone(),
            pod: event.pod.clone(),
            r#type: event.type_.clone(),
            reason: event.reason.clone(),
            message: event.message.clone(),
            count: event.count,
            first_time: timestamp(event.first_time),
            last_time: timestamp(event.last_time),
            source: event.source.clone(),
        }
    }
}

impl From<PodSecurityProfile> for pb::PodSecurity {
    fn from(profile: PodSecurityProfile) -> Self {
        match profile {
            PodSecurityProfile::Baseline => Self::Baseline,
            PodSecurityProfile::Restricted => Self::Restricted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_and_health_names_drop_their_prefix() {
        assert_eq!(reason_name(Reason::ImagePullFailed), "IMAGE_PULL_FAILED");
        assert_eq!(reason_name(Reason::None), "UNSPECIFIED");
        assert_eq!(health_name(Health::Pending), "PENDING");
    }

    #[test]
    fn a_deploy_request_keeps_every_field() {
        let input = DeployInput::from(pb::DeployRequest {
            image: "nginx".into(),
            namespace: "ns".into(),
            ports: vec![pb::ContainerPort {
                name: "dns".into(),
                container_port: 53,
                protocol: pb::Protocol::Udp.into(),
            }],
            restart_policy: pb::RestartPolicy::Never.into(),
            wait_for: pb::WaitFor::Ready.into(),
            wait_timeout: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            resources: Some(pb::Resources {
                requests: [("cpu".to_owned(), "1".to_owned())].into(),
                limits: Default::default(),
            }),
            ..pb::DeployRequest::default()
        });
        assert_eq!(input.ports[0].protocol, Protocol::Udp);
        assert_eq!(input.restart_policy, RestartPolicy::Never);
        assert_eq!(input.wait_for, WaitFor::Ready);
        assert_eq!(input.wait_timeout, Some(Duration::from_secs(30)));
        assert_eq!(input.requests["cpu"], "1");
        let negative = DeployInput::from(pb::DeployRequest {
            wait_timeout: Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
            ..pb::DeployRequest::default()
        });
        assert_eq!(negative.wait_timeout, Some(Duration::ZERO));
    }
}
