//! Conversions at the gRPC boundary: proto requests into domain inputs, domain states into
//! proto messages.

pub mod deployment;

use std::time::Duration;

use crate::domain::spec::{EnvVar, PodSecurityProfile, Port, Protocol, RestartPolicy};
use crate::domain::status::{ContainerState, Time};
use crate::domain::validate::validate_deploy;
use crate::domain::workload::{
    EnvFromObject, EnvFromSource, EnvSource, HttpGet, HttpScheme, KeyRef, Probe, ProbeAction,
    ProbePort, Probes, TaintEffect, Toleration, TolerationOperator, Workload,
};
use crate::domain::{DeployInput, Health, ObjectEvent, Reason, Violations, WaitFor};
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

/// A proto enum field's value, or a violation naming `field` when the number is not one of
/// the enum's: proto3 hands unknown numbers over as they are, and guessing what a newer
/// client meant by one would do something it did not ask for.
fn known<E>(violations: &mut Violations, field: &str, value: i32) -> Option<E>
where
    E: TryFrom<i32> + EnumNames,
{
    match E::try_from(value) {
        Ok(known) => Some(known),
        Err(_) => {
            violations.push(
                field,
                format!(
                    "unknown value {value} (one of {}; 0 means the default)",
                    E::names().join(", ")
                ),
            );
            None
        }
    }
}

/// The names of a proto enum's values, for messages.
pub(crate) trait EnumNames {
    fn names() -> Vec<&'static str>;
}

macro_rules! enum_names {
    ($($enum:ty => [$($value:ident),+]),+ $(,)?) => {$(
        impl EnumNames for $enum {
            fn names() -> Vec<&'static str> {
                vec![$(<$enum>::$value.as_str_name()),+]
            }
        }
    )+};
}

enum_names! {
    pb::WaitFor => [Unspecified, None, Scheduled, Running, Ready],
    pb::RestartPolicy => [Unspecified, Always, OnFailure, Never],
    pb::PodSecurity => [Unspecified, Baseline, Restricted],
    pb::Protocol => [Unspecified, Tcp, Udp, Sctp],
    pb::Until => [Unspecified, None, Ready, Terminal],
    pb::HttpScheme => [Unspecified, Http, Https],
    pb::TolerationOperator => [Unspecified, Equal, Exists],
    pb::TaintEffect => [Unspecified, NoSchedule, PreferNoSchedule, NoExecute],
    pb::RolloutWaitFor => [Unspecified, None, RolledOut, Available],
    pb::StrategyType => [Unspecified, RollingUpdate, Recreate],
    pb::RolloutUntil => [Unspecified, None, RolledOut, Terminal],
}

/// `until` of a WatchStatus request (an `Until`) or a WatchRollout request (a
/// `RolloutUntil`); INVALID_ARGUMENT naming the field for a number that is not one of its
/// values.
pub(crate) fn until<E>(value: i32) -> Result<E, Violations>
where
    E: TryFrom<i32> + EnumNames,
{
    let mut violations = Violations::default();
    let until = known(&mut violations, "until", value);
    match until {
        Some(until) => Ok(until),
        None => Err(violations),
    }
}

/// A Deploy request as domain input. An enum field holding a number the .proto does not
/// define is a violation naming the field (`wait_for`, `ports[0].protocol`); then every other
/// violation of the request is listed with it, as [`validate_deploy`] would list them, so the
/// caller learns everything at once.
impl TryFrom<pb::DeployRequest> for DeployInput {
    type Error = Violations;

    fn try_from(request: pb::DeployRequest) -> Result<Self, Violations> {
        let mut violations = Violations::default();
        let resources = request.resources.unwrap_or_default();
        let ports = request
            .ports
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let field = format!("ports[{i}].protocol");
                Port {
                    name: p.name,
                    number: p.container_port,
                    protocol: match known(&mut violations, &field, p.protocol) {
                        Some(pb::Protocol::Udp) => Protocol::Udp,
                        Some(pb::Protocol::Sctp) => Protocol::Sctp,
                        _ => Protocol::Tcp,
                    },
                }
            })
            .collect();
        let restart_policy = match known(&mut violations, "restart_policy", request.restart_policy)
        {
            Some(pb::RestartPolicy::OnFailure) => RestartPolicy::OnFailure,
            Some(pb::RestartPolicy::Never) => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        };
        let wait_for = match known(&mut violations, "wait_for", request.wait_for) {
            Some(pb::WaitFor::Scheduled) => WaitFor::Scheduled,
            Some(pb::WaitFor::Running) => WaitFor::Running,
            Some(pb::WaitFor::Ready) => WaitFor::Ready,
            _ => WaitFor::None,
        };
        let pod_security = match known(&mut violations, "pod_security", request.pod_security) {
            Some(pb::PodSecurity::Baseline) => Some(PodSecurityProfile::Baseline),
            Some(pb::PodSecurity::Restricted) => Some(PodSecurityProfile::Restricted),
            _ => None,
        };
        let workload = Workload {
            probes: request
                .probes
                .map(|probes| Probes {
                    readiness: probes
                        .readiness
                        .map(|p| probe(&mut violations, "probes.readiness", p)),
                    liveness: probes
                        .liveness
                        .map(|p| probe(&mut violations, "probes.liveness", p)),
                    startup: probes
                        .startup
                        .map(|p| probe(&mut violations, "probes.startup", p)),
                })
                .unwrap_or_default(),
            env_from: request.env_from.into_iter().map(env_from).collect(),
            image_pull_secrets: request.image_pull_secrets,
            service_account: request.service_account,
            node_selector: request.node_selector.into_iter().collect(),
            tolerations: request
                .tolerations
                .into_iter()
                .enumerate()
                .map(|(i, t)| toleration(&mut violations, &format!("tolerations[{i}]"), t))
                .collect(),
        };
        let input = Self {
            image: request.image,
            namespace: request.namespace,
            name: request.name,
            labels: request.labels.into_iter().collect(),
            annotations: request.annotations.into_iter().collect(),
            env: request
                .env
                .into_iter()
                .enumerate()
                .map(|(i, e)| EnvVar {
                    name: e.name,
                    value: e.value,
                    value_from: e
                        .value_from
                        .and_then(|from| env_source(&mut violations, i, from)),
                })
                .collect(),
            ports,
            command: request.command,
            args: request.args,
            requests: resources.requests.into_iter().collect(),
            limits: resources.limits.into_iter().collect(),
            restart_policy,
            request_id: request.request_id,
            dry_run: request.dry_run,
            pod_security,
            wait_for,
            // A negative duration is kept as zero, which validation refuses.
            wait_timeout: request
                .wait_timeout
                .as_ref()
                .map(|d| duration(d).unwrap_or(Duration::ZERO)),
            workload,
        };
        if violations.is_empty() {
            return Ok(input);
        }
        if let Err(others) = validate_deploy(&input) {
            violations.extend(others);
        }
        Err(violations)
    }
}

/// A duration field of the workload; a negative one is a violation naming `field` (unlike
/// wait_timeout, zero is a valid value here, so it cannot stand in for the negative one).
fn non_negative(
    violations: &mut Violations,
    field: &str,
    value: Option<prost_types::Duration>,
) -> Option<Duration> {
    let value = value?;
    let converted = duration(&value);
    if converted.is_none() {
        violations.push(field, "must not be negative");
    }
    converted
}

fn env_source(
    violations: &mut Violations,
    index: usize,
    from: pb::EnvVarSource,
) -> Option<EnvSource> {
    use pb::env_var_source::Source;
    let key = |k: pb::KeyReference| KeyRef {
        name: k.name,
        key: k.key,
        optional: k.optional,
    };
    match from.source {
        Some(Source::SecretKey(k)) => Some(EnvSource::SecretKey(key(k))),
        Some(Source::ConfigMapKey(k)) => Some(EnvSource::ConfigMapKey(key(k))),
        None => {
            violations.push(
                format!("env[{index}].value_from"),
                "one of secret_key and config_map_key is required",
            );
            None
        }
    }
}

fn probe_port(port: u32, name: String) -> ProbePort {
    ProbePort { number: port, name }
}

fn probe(violations: &mut Violations, place: &str, probe: pb::Probe) -> Probe {
    use pb::probe::Action;
    let action = probe.action.map(|action| match action {
        Action::HttpGet(http) => {
            let field = format!("{place}.http_get.scheme");
            ProbeAction::HttpGet(HttpGet {
                path: http.path,
                port: probe_port(http.port, http.port_name),
                scheme: match known(violations, &field, http.scheme) {
                    Some(pb::HttpScheme::Https) => HttpScheme::Https,
                    _ => HttpScheme::Http,
                },
                headers: http
                    .headers
                    .into_iter()
                    .map(|h| (h.name, h.value))
                    .collect(),
            })
        }
        Action::TcpSocket(tcp) => ProbeAction::TcpSocket(probe_port(tcp.port, tcp.port_name)),
        Action::Grpc(grpc) => ProbeAction::Grpc {
            port: grpc.port,
            service: grpc.service,
        },
        Action::Exec(exec) => ProbeAction::Exec(exec.command),
    });
    let mut timing =
        |name: &str, value| non_negative(violations, &format!("{place}.{name}"), value);
    Probe {
        action,
        initial_delay: timing("initial_delay", probe.initial_delay),
        period: timing("period", probe.period),
        timeout: timing("timeout", probe.timeout),
        success_threshold: probe.success_threshold,
        failure_threshold: probe.failure_threshold,
    }
}

fn env_from(source: pb::EnvFromSource) -> EnvFromSource {
    use pb::env_from_source::Source;
    EnvFromSource {
        prefix: source.prefix,
        source: source.source.map(|object| match object {
            Source::Secret(name) => EnvFromObject::Secret(name),
            Source::ConfigMap(name) => EnvFromObject::ConfigMap(name),
        }),
        optional: source.optional,
    }
}

fn toleration(violations: &mut Violations, place: &str, toleration: pb::Toleration) -> Toleration {
    let operator = match known(
        violations,
        &format!("{place}.operator"),
        toleration.operator,
    ) {
        Some(pb::TolerationOperator::Exists) => TolerationOperator::Exists,
        _ => TolerationOperator::Equal,
    };
    let effect = match known(violations, &format!("{place}.effect"), toleration.effect) {
        Some(pb::TaintEffect::NoSchedule) => Some(TaintEffect::NoSchedule),
        Some(pb::TaintEffect::PreferNoSchedule) => Some(TaintEffect::PreferNoSchedule),
        Some(pb::TaintEffect::NoExecute) => Some(TaintEffect::NoExecute),
        _ => None,
    };
    Toleration {
        key: toleration.key,
        operator,
        value: toleration.value,
        effect,
        toleration_seconds: non_negative(
            violations,
            &format!("{place}.toleration_seconds"),
            toleration.toleration_seconds,
        ),
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

impl From<&ObjectEvent> for pb::PodEvent {
    fn from(event: &ObjectEvent) -> Self {
        Self {
            namespace: event.namespace.clone(),
            pod: event.name.clone(),
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
    use crate::domain::workload::{example_env, example_workload};

    #[test]
    fn reason_and_health_names_drop_their_prefix() {
        assert_eq!(reason_name(Reason::ImagePullFailed), "IMAGE_PULL_FAILED");
        assert_eq!(reason_name(Reason::None), "UNSPECIFIED");
        assert_eq!(health_name(Health::Pending), "PENDING");
    }

    fn seconds(seconds: i64) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos: 0 }
    }

    #[test]
    fn a_deploy_request_keeps_every_field() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // Every field of DeployRequest, each set to something other than its default.
        let request = pb::DeployRequest {
            image: "ghcr.io/org/app:1.2".into(),
            namespace: "team-a".into(),
            name: "web.1".into(),
            labels: map(&[("app", "web")]),
            annotations: map(&[("note", "hello")]),
            env: vec![
                pb::EnvVar {
                    name: "MODE".into(),
                    value: "prod".into(),
                    value_from: None,
                },
                pb::EnvVar {
                    name: "PASSWORD".into(),
                    value: String::new(),
                    value_from: Some(pb::EnvVarSource {
                        source: Some(pb::env_var_source::Source::SecretKey(pb::KeyReference {
                            name: "db-password".into(),
                            key: "password".into(),
                            optional: false,
                        })),
                    }),
                },
                pb::EnvVar {
                    name: "APP_MODE".into(),
                    value: String::new(),
                    value_from: Some(pb::EnvVarSource {
                        source: Some(pb::env_var_source::Source::ConfigMapKey(pb::KeyReference {
                            name: "settings".into(),
                            key: "app.mode".into(),
                            optional: true,
                        })),
                    }),
                },
            ],
            ports: vec![
                pb::ContainerPort {
                    name: "http".into(),
                    container_port: 8080,
                    protocol: pb::Protocol::Tcp.into(),
                },
                pb::ContainerPort {
                    name: "dns".into(),
                    container_port: 53,
                    protocol: pb::Protocol::Udp.into(),
                },
                pb::ContainerPort {
                    name: "sctp".into(),
                    container_port: 9,
                    protocol: pb::Protocol::Sctp.into(),
                },
                pb::ContainerPort {
                    name: String::new(),
                    container_port: 80,
                    protocol: pb::Protocol::Unspecified.into(),
                },
            ],
            command: strings(&["/bin/app", "serve"]),
            args: strings(&["--port", "80"]),
            resources: Some(pb::Resources {
                requests: map(&[("cpu", "1")]),
                limits: map(&[("memory", "1Gi")]),
            }),
            restart_policy: pb::RestartPolicy::Never.into(),
            request_id: "req-1".into(),
            dry_run: true,
            wait_for: pb::WaitFor::Ready.into(),
            wait_timeout: Some(prost_types::Duration {
                seconds: 30,
                nanos: 5,
            }),
            pod_security: pb::PodSecurity::Restricted.into(),
            probes: Some(pb::Probes {
                readiness: Some(pb::Probe {
                    action: Some(pb::probe::Action::HttpGet(pb::HttpGetAction {
                        path: "/healthz?full=1".into(),
                        port: 0,
                        port_name: "http".into(),
                        scheme: pb::HttpScheme::Https.into(),
                        headers: vec![pb::HttpHeader {
                            name: "X-Probe".into(),
                            value: "yes".into(),
                        }],
                    })),
                    initial_delay: Some(seconds(2)),
                    period: Some(seconds(5)),
                    timeout: Some(seconds(3)),
                    success_threshold: 2,
                    failure_threshold: 4,
                }),
                liveness: Some(pb::Probe {
                    action: Some(pb::probe::Action::TcpSocket(pb::TcpSocketAction {
                        port: 8080,
                        port_name: String::new(),
                    })),
                    ..pb::Probe::default()
                }),
                startup: Some(pb::Probe {
                    action: Some(pb::probe::Action::Exec(pb::ExecAction {
                        command: strings(&["/bin/check", "--quick"]),
                    })),
                    failure_threshold: 30,
                    ..pb::Probe::default()
                }),
            }),
            env_from: vec![
                pb::EnvFromSource {
                    prefix: "DB_".into(),
                    source: Some(pb::env_from_source::Source::Secret("db-env".into())),
                    optional: false,
                },
                pb::EnvFromSource {
                    prefix: String::new(),
                    source: Some(pb::env_from_source::Source::ConfigMap("app.config".into())),
                    optional: true,
                },
            ],
            image_pull_secrets: strings(&["regcred", "other-regcred"]),
            service_account: "runner".into(),
            node_selector: map(&[("disktype", "ssd")]),
            tolerations: vec![
                pb::Toleration {
                    key: "dedicated".into(),
                    operator: pb::TolerationOperator::Equal.into(),
                    value: "batch".into(),
                    effect: pb::TaintEffect::NoSchedule.into(),
                    toleration_seconds: None,
                },
                pb::Toleration {
                    key: "node.kubernetes.io/unreachable".into(),
                    operator: pb::TolerationOperator::Exists.into(),
                    value: String::new(),
                    effect: pb::TaintEffect::NoExecute.into(),
                    toleration_seconds: Some(seconds(30)),
                },
                pb::Toleration {
                    operator: pb::TolerationOperator::Exists.into(),
                    ..pb::Toleration::default()
                },
            ],
        };
        let input = DeployInput::try_from(request).expect("a valid request");
        let want = DeployInput {
            image: "ghcr.io/org/app:1.2".into(),
            namespace: "team-a".into(),
            name: "web.1".into(),
            labels: [("app".to_owned(), "web".to_owned())].into(),
            annotations: [("note".to_owned(), "hello".to_owned())].into(),
            env: [EnvVar {
                name: "MODE".into(),
                value: "prod".into(),
                value_from: None,
            }]
            .into_iter()
            .chain(example_env())
            .collect(),
            ports: vec![
                Port {
                    name: "http".into(),
                    number: 8080,
                    protocol: Protocol::Tcp,
                },
                Port {
                    name: "dns".into(),
                    number: 53,
                    protocol: Protocol::Udp,
                },
                Port {
                    name: "sctp".into(),
                    number: 9,
                    protocol: Protocol::Sctp,
                },
                Port {
                    name: String::new(),
                    number: 80,
                    protocol: Protocol::Tcp,
                },
            ],
            command: strings(&["/bin/app", "serve"]),
            args: strings(&["--port", "80"]),
            requests: [("cpu".to_owned(), "1".to_owned())].into(),
            limits: [("memory".to_owned(), "1Gi".to_owned())].into(),
            restart_policy: RestartPolicy::Never,
            request_id: "req-1".into(),
            dry_run: true,
            wait_for: WaitFor::Ready,
            wait_timeout: Some(Duration::new(30, 5)),
            pod_security: Some(PodSecurityProfile::Restricted),
            workload: example_workload(),
        };
        assert_eq!(input, want);

        // The defaults: UNSPECIFIED means the default, a negative wait is kept as zero.
        let defaults = DeployInput::try_from(pb::DeployRequest {
            wait_timeout: Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
            ..pb::DeployRequest::default()
        })
        .expect("no unknown enum value");
        assert_eq!(defaults.wait_timeout, Some(Duration::ZERO));
        assert_eq!(defaults.restart_policy, RestartPolicy::Always);
        assert_eq!(defaults.wait_for, WaitFor::None);
        assert_eq!(defaults.pod_security, None);
    }

    #[test]
    fn unknown_enum_values_are_violations_naming_the_field() {
        let valid = || pb::DeployRequest {
            image: "nginx".into(),
            namespace: "ns".into(),
            ..pb::DeployRequest::default()
        };
        let port = |container_port, protocol| pb::ContainerPort {
            name: String::new(),
            container_port,
            protocol,
        };
        type Edit = fn(&mut pb::DeployRequest);
        #[rustfmt::skip]
        let cases: Vec<(Edit, &str, &str)> = vec![
            (|r| r.wait_for = 99, "wait_for", "unknown value 99 (one of WAIT_FOR_UNSPECIFIED, WAIT_FOR_NONE, WAIT_FOR_SCHEDULED, WAIT_FOR_RUNNING, WAIT_FOR_READY; 0 means the default)"),
            (|r| r.wait_for = -1, "wait_for", "unknown value -1"),
            (|r| r.restart_policy = 99, "restart_policy", "unknown value 99 (one of RESTART_POLICY_UNSPECIFIED"),
            (|r| r.pod_security = 3, "pod_security", "unknown value 3 (one of POD_SECURITY_UNSPECIFIED"),
            (|r| r.ports = vec![pb::ContainerPort { container_port: 80, protocol: 99, ..pb::ContainerPort::default() }],
             "ports[0].protocol", "unknown value 99 (one of PROTOCOL_UNSPECIFIED"),
            (|r| r.probes = Some(pb::Probes { readiness: Some(pb::Probe {
                action: Some(pb::probe::Action::HttpGet(pb::HttpGetAction { port: 80, scheme: 7, ..Default::default() })),
                ..Default::default() }), ..Default::default() }),
             "probes.readiness.http_get.scheme", "unknown value 7 (one of HTTP_SCHEME_UNSPECIFIED, HTTP_SCHEME_HTTP, HTTP_SCHEME_HTTPS"),
            (|r| r.tolerations = vec![pb::Toleration { key: "k".into(), operator: 5, ..Default::default() }],
             "tolerations[0].operator", "unknown value 5 (one of TOLERATION_OPERATOR_UNSPECIFIED"),
            (|r| r.tolerations = vec![pb::Toleration { key: "k".into(), effect: 9, ..Default::default() }],
             "tolerations[0].effect", "unknown value 9 (one of TAINT_EFFECT_UNSPECIFIED"),
            // Not enums, but likewise only visible in the proto: a negative duration, a
            // value_from with neither source.
            (|r| r.probes = Some(pb::Probes { liveness: Some(pb::Probe {
                action: Some(pb::probe::Action::Grpc(pb::GrpcAction { port: 9000, service: String::new() })),
                initial_delay: Some(prost_types::Duration { seconds: -1, nanos: 0 }),
                ..Default::default() }), ..Default::default() }),
             "probes.liveness.initial_delay", "must not be negative"),
            (|r| r.tolerations = vec![pb::Toleration { key: "k".into(), effect: pb::TaintEffect::NoExecute.into(),
                toleration_seconds: Some(prost_types::Duration { seconds: -5, nanos: 0 }), ..Default::default() }],
             "tolerations[0].toleration_seconds", "must not be negative"),
            (|r| r.env = vec![pb::EnvVar { name: "A".into(), value: String::new(), value_from: Some(pb::EnvVarSource { source: None }) }],
             "env[0].value_from", "one of secret_key and config_map_key is required"),
        ];
        for (edit, field, description) in cases {
            let mut request = valid();
            edit(&mut request);
            let violations = DeployInput::try_from(request).expect_err(field);
            assert_eq!(violations.0.len(), 1, "{violations}");
            assert_eq!(violations.0[0].field, field);
            assert!(
                violations.0[0].description.starts_with(description),
                "{violations}"
            );
        }

        // Listed together with every other violation of the request.
        let request = pb::DeployRequest {
            image: "Nginx".into(),
            wait_for: 99,
            ports: vec![port(80, 1), port(81, 7)],
            ..valid()
        };
        let violations = DeployInput::try_from(request).expect_err("invalid");
        let fields: Vec<&str> = violations.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["ports[1].protocol", "wait_for", "image"]);

        assert_eq!(until(pb::Until::Terminal.into()), Ok(pb::Until::Terminal));
        assert_eq!(until(0), Ok(pb::Until::Unspecified));
        assert_eq!(
            until(pb::RolloutUntil::RolledOut.into()),
            Ok(pb::RolloutUntil::RolledOut)
        );
        let violations = until::<pb::Until>(99).expect_err("unknown");
        assert_eq!(violations.0[0].field, "until");
        assert!(
            violations.0[0]
                .description
                .starts_with("unknown value 99 (one of UNTIL_UNSPECIFIED, UNTIL_NONE, UNTIL_READY, UNTIL_TERMINAL"),
            "{violations}"
        );
    }
}
