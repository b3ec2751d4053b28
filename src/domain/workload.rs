//! The workload fields of a pod beyond its image and command: probes, environment from
//! Secrets and ConfigMaps, image pull secrets, the ServiceAccount, node selection and
//! tolerations ([`Workload`]); their checks ([`check_workload`], [`check_env_source`]), as
//! Kubernetes makes them, and the objects they reference ([`references`]), which the policy
//! must allow.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use crate::domain::names::{
    is_dns1123_subdomain, is_env_var_name, is_iana_service_name, validate_label_key,
    validate_label_value,
};
use crate::domain::spec::{EnvVar, Port};
use crate::domain::validate::Violations;

/// Longest probe duration (initial delay, period, timeout) a request may ask for.
pub const MAX_PROBE_DURATION: Duration = Duration::from_secs(3600);
/// Longest Secret or ConfigMap key, as in Kubernetes.
pub const CONFIG_KEY_MAX_LEN: usize = 253;

/// The workload fields of a request (all optional); the same type before and after
/// validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// Readiness, liveness and startup probes.
    pub probes: Probes,
    /// Environment variables from whole Secrets or ConfigMaps, in order.
    pub env_from: Vec<EnvFromSource>,
    /// Secrets for pulling the image, by name.
    pub image_pull_secrets: Vec<String>,
    /// The ServiceAccount the pod runs as; empty for the namespace's default.
    pub service_account: String,
    /// Node labels the pod must be scheduled on.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of node taints.
    pub tolerations: Vec<Toleration>,
}

impl Workload {
    /// Whether no workload field is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The probes of the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probes {
    /// Whether the container is ready for traffic.
    pub readiness: Option<Probe>,
    /// Whether the container is alive.
    pub liveness: Option<Probe>,
    /// Whether the container has started.
    pub startup: Option<Probe>,
}

impl Probes {
    /// Each probe that is set, with its field name (`readiness`, `liveness`, `startup`).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Probe)> {
        [
            ("readiness", &self.readiness),
            ("liveness", &self.liveness),
            ("startup", &self.startup),
        ]
        .into_iter()
        .filter_map(|(name, probe)| probe.as_ref().map(|probe| (name, probe)))
    }
}

/// One probe: an action and its timing. `None` and 0 mean Kubernetes' defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// What the probe does; required.
    pub action: Option<ProbeAction>,
    /// Delay before the first probe.
    pub initial_delay: Option<Duration>,
    /// Time between probes.
    pub period: Option<Duration>,
    /// How long one probe may take.
    pub timeout: Option<Duration>,
    /// Successes in a row that count as passing; 0 for the default.
    pub success_threshold: u32,
    /// Failures in a row that count as failing; 0 for the default.
    pub failure_threshold: u32,
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// An HTTP GET that must answer 200-399.
    HttpGet(HttpGet),
    /// A TCP connection that must open.
    TcpSocket(ProbePort),
    /// A gRPC health check.
    Grpc {
        /// The port, 1-65535.
        port: u32,
        /// The service name sent; empty for the whole server.
        service: String,
    },
    /// A command that must exit 0.
    Exec(Vec<String>),
}

impl ProbeAction {
    /// The action's field name in the request.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::HttpGet(_) => "http_get",
            Self::TcpSocket(_) => "tcp_socket",
            Self::Grpc { .. } => "grpc",
            Self::Exec(_) => "exec",
        }
    }
}

/// The port of an HTTP or TCP probe: exactly one of a number and a container port's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbePort {
    /// Port number; 0 for none.
    pub number: u32,
    /// Name of one of the container's ports; empty for none.
    pub name: String,
}

/// An HTTP GET probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpGet {
    /// Absolute path; empty for "/".
    pub path: String,
    /// The port.
    pub port: ProbePort,
    /// HTTP or HTTPS.
    pub scheme: HttpScheme,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
}

/// The scheme of an HTTP probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpScheme {
    /// Plain HTTP (the default).
    #[default]
    Http,
    /// HTTPS, the certificate unchecked.
    Https,
}

impl HttpScheme {
    /// The Kubernetes spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
        }
    }
}

/// A key of a Secret or ConfigMap of the pod's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRef {
    /// The object's name.
    pub name: String,
    /// The key.
    pub key: String,
    /// Start the container even when the object or key is missing.
    pub optional: bool,
}

/// Where an environment variable's value comes from, instead of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// A key of a Secret.
    SecretKey(KeyRef),
    /// A key of a ConfigMap.
    ConfigMapKey(KeyRef),
}

impl EnvSource {
    /// The field name in the request and the key reference.
    #[must_use]
    pub fn parts(&self) -> (&'static str, ReferenceKind, &KeyRef) {
        match self {
            Self::SecretKey(key) => ("secret_key", ReferenceKind::Secret, key),
            Self::ConfigMapKey(key) => ("config_map_key", ReferenceKind::ConfigMap, key),
        }
    }
}

/// Every key of a Secret or ConfigMap as environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFromSource {
    /// Prefix of every variable's name; may be empty.
    pub prefix: String,
    /// The object; required.
    pub source: Option<EnvFromObject>,
    /// Start the container even when the object is missing.
    pub optional: bool,
}

/// The object of an [`EnvFromSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvFromObject {
    /// A Secret, by name.
    Secret(String),
    /// A ConfigMap, by name.
    ConfigMap(String),
}

impl EnvFromObject {
    /// The field name in the request, the kind and the name.
    #[must_use]
    pub fn parts(&self) -> (&'static str, ReferenceKind, &str) {
        match self {
            Self::Secret(name) => ("secret", ReferenceKind::Secret, name),
            Self::ConfigMap(name) => ("config_map", ReferenceKind::ConfigMap, name),
        }
    }
}

/// How a toleration matches a taint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TolerationOperator {
    /// Key and value equal the taint's (the default).
    #[default]
    Equal,
    /// The taint's key exists.
    Exists,
}

impl TolerationOperator {
    /// The Kubernetes spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "Equal",
            Self::Exists => "Exists",
        }
    }
}

/// A taint effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaintEffect {
    /// Do not schedule new pods.
    NoSchedule,
    /// Avoid scheduling new pods.
    PreferNoSchedule,
    /// Evict running pods too.
    NoExecute,
}

impl TaintEffect {
    /// The Kubernetes spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSchedule => "NoSchedule",
            Self::PreferNoSchedule => "PreferNoSchedule",
            Self::NoExecute => "NoExecute",
        }
    }
}

/// A toleration of node taints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Toleration {
    /// The taint key; empty only with [`TolerationOperator::Exists`].
    pub key: String,
    /// How it matches.
    pub operator: TolerationOperator,
    /// The taint value; empty with `Exists`.
    pub value: String,
    /// The effect tolerated; `None` for every effect.
    pub effect: Option<TaintEffect>,
    /// With `NoExecute`: how long the pod stays bound after the taint appears.
    pub toleration_seconds: Option<Duration>,
}

/// The kinds of objects a pod can reference, which the policy must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReferenceKind {
    /// A Secret: env value_from, env_from, image_pull_secrets.
    Secret,
    /// A ConfigMap: env value_from, env_from.
    ConfigMap,
    /// A ServiceAccount: service_account.
    ServiceAccount,
}

impl ReferenceKind {
    /// The Kubernetes kind: `Secret`, `ConfigMap`, `ServiceAccount`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "Secret",
            Self::ConfigMap => "ConfigMap",
            Self::ServiceAccount => "ServiceAccount",
        }
    }
}

impl fmt::Display for ReferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object of the pod's namespace that the request references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The field that references it, as the .proto names it: `env[0].value_from.secret_key`,
    /// `env_from[1].config_map`, `image_pull_secrets[0]`, `service_account`.
    pub field: String,
    /// What it is.
    pub kind: ReferenceKind,
    /// Its name.
    pub name: String,
}

/// Every Secret, ConfigMap and ServiceAccount that `env` and `workload` reference, in request
/// order: env value_from, env_from, image_pull_secrets, then service_account (when set).
#[must_use]
pub fn references(env: &[EnvVar], workload: &Workload) -> Vec<Reference> {
    let mut found = Vec::new();
    for (i, var) in env.iter().enumerate() {
        if let Some(source) = &var.value_from {
            let (field, kind, key) = source.parts();
            found.push(Reference {
                field: format!("env[{i}].value_from.{field}"),
                kind,
                name: key.name.clone(),
            });
        }
    }
    for (i, source) in workload.env_from.iter().enumerate() {
        if let Some(object) = &source.source {
            let (field, kind, name) = object.parts();
            found.push(Reference {
                field: format!("env_from[{i}].{field}"),
                kind,
                name: name.to_owned(),
            });
        }
    }
    for (i, name) in workload.image_pull_secrets.iter().enumerate() {
        found.push(Reference {
            field: format!("image_pull_secrets[{i}]"),
            kind: ReferenceKind::Secret,
            name: name.clone(),
        });
    }
    if !workload.service_account.is_empty() {
        found.push(Reference {
            field: "service_account".to_owned(),
            kind: ReferenceKind::ServiceAccount,
            name: workload.service_account.clone(),
        });
    }
    found
}

/// A Secret or ConfigMap key, as Kubernetes checks it: at most 253 characters of
/// `[-._a-zA-Z0-9]`, not `.`, `..` or anything starting with `..`.
pub fn is_config_key(key: &str) -> Result<(), String> {
    let why = if key.is_empty() {
        Some("must not be empty".to_owned())
    } else if key.len() > CONFIG_KEY_MAX_LEN {
        Some(format!(
            "must be at most {CONFIG_KEY_MAX_LEN} characters, not {}",
            key.chars().count()
        ))
    } else if let Some(c) = key
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        Some(format!(
            "must contain only letters, digits, '-', '_' and '.' (found {c:?})"
        ))
    } else if key == "." || key.starts_with("..") {
        Some("must not be '.' or '..', nor start with '..'".to_owned())
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("{key:?} is not a valid key: {why}")),
        None => Ok(()),
    }
}

/// An object name: required, a DNS-1123 subdomain.
fn check_object_name(violations: &mut Violations, field: &str, name: &str) {
    if name.is_empty() {
        violations.push(field, "is required");
    } else if let Err(e) = is_dns1123_subdomain(name) {
        violations.push(field, e);
    }
}

/// The value_from of `env[index]`: a Secret or ConfigMap name and key, and no value beside it.
pub fn check_env_source(violations: &mut Violations, index: usize, var: &EnvVar) {
    let Some(source) = &var.value_from else {
        return;
    };
    if !var.value.is_empty() {
        violations.push(
            format!("env[{index}].value"),
            "must be empty when value_from is set",
        );
    }
    let (field, _, key) = source.parts();
    let field = format!("env[{index}].value_from.{field}");
    check_object_name(violations, &format!("{field}.name"), &key.name);
    if let Err(e) = is_config_key(&key.key) {
        violations.push(format!("{field}.key"), e);
    }
}

/// Check every workload field; `ports` are the container's, which probes may name.
pub fn check_workload(violations: &mut Violations, workload: &Workload, ports: &[Port]) {
    for (name, probe) in workload.probes.iter() {
        check_probe(violations, &format!("probes.{name}"), name, probe, ports);
    }
    for (i, source) in workload.env_from.iter().enumerate() {
        let place = format!("env_from[{i}]");
        if !source.prefix.is_empty()
            && let Err(e) = is_env_var_name(&source.prefix)
        {
            violations.push(format!("{place}.prefix"), e);
        }
        match &source.source {
            None => violations.push(place, "one of secret and config_map is required"),
            Some(object) => {
                let (field, _, name) = object.parts();
                check_object_name(violations, &format!("{place}.{field}"), name);
            }
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in workload.image_pull_secrets.iter().enumerate() {
        let field = format!("image_pull_secrets[{i}]");
        if let Some(first) = seen.get(name.as_str()) {
            violations.push(
                field,
                format!("duplicate name {name:?} (also image_pull_secrets[{first}])"),
            );
            continue;
        }
        check_object_name(violations, &field, name);
        seen.insert(name, i);
    }
    if !workload.service_account.is_empty()
        && let Err(e) = is_dns1123_subdomain(&workload.service_account)
    {
        violations.push("service_account", e);
    }
    for (key, value) in &workload.node_selector {
        let field = format!("node_selector[{key:?}]");
        if let Err(e) = validate_label_key(key) {
            violations.push(&field, e);
        }
        if let Err(e) = validate_label_value(value) {
            violations.push(&field, e);
        }
    }
    for (i, toleration) in workload.tolerations.iter().enumerate() {
        check_toleration(violations, &format!("tolerations[{i}]"), toleration);
    }
}

fn check_probe(
    violations: &mut Violations,
    place: &str,
    name: &str,
    probe: &Probe,
    ports: &[Port],
) {
    match &probe.action {
        None => violations.push(
            place,
            "one of http_get, tcp_socket, grpc and exec is required",
        ),
        Some(action) => {
            let place = format!("{place}.{}", action.field());
            match action {
                ProbeAction::HttpGet(http) => check_http_get(violations, &place, http, ports),
                ProbeAction::TcpSocket(port) => check_probe_port(violations, &place, port, ports),
                ProbeAction::Grpc { port, .. } => {
                    check_port_number(violations, &format!("{place}.port"), *port);
                }
                ProbeAction::Exec(command) => {
                    if command.is_empty() {
                        violations
                            .push(format!("{place}.command"), "must have at least one element");
                    }
                }
            }
        }
    }
    for (field, duration, least) in [
        ("initial_delay", probe.initial_delay, Duration::ZERO),
        ("period", probe.period, Duration::from_secs(1)),
        ("timeout", probe.timeout, Duration::from_secs(1)),
    ] {
        if let Some(duration) = duration {
            check_probe_duration(violations, &format!("{place}.{field}"), duration, least);
        }
    }
    // Kubernetes: a liveness or startup probe passes on its first success.
    if name != "readiness" && probe.success_threshold > 1 {
        violations.push(
            format!("{place}.success_threshold"),
            format!(
                "must be 1 for a {name} probe, not {}",
                probe.success_threshold
            ),
        );
    }
    for (field, threshold) in [
        ("success_threshold", probe.success_threshold),
        ("failure_threshold", probe.failure_threshold),
    ] {
        if i32::try_from(threshold).is_err() {
            violations.push(
                format!("{place}.{field}"),
                format!("must be at most {}, not {threshold}", i32::MAX),
            );
        }
    }
}

fn check_probe_duration(
    violations: &mut Violations,
    field: &str,
    duration: Duration,
    least: Duration,
) {
    if duration.subsec_nanos() != 0 {
        violations.push(field, "must be whole seconds");
    } else if duration < least {
        violations.push(
            field,
            format!(
                "must be at least {}s, not {}s",
                least.as_secs(),
                duration.as_secs()
            ),
        );
    } else if duration > MAX_PROBE_DURATION {
        violations.push(
            field,
            format!("must be at most 1 hour, not {}s", duration.as_secs()),
        );
    }
}

fn check_port_number(violations: &mut Violations, field: &str, number: u32) {
    if !(1..=65535).contains(&number) {
        violations.push(field, format!("must be 1 to 65535, not {number}"));
    }
}

/// Exactly one of a port number and the name of one of the container's ports.
fn check_probe_port(violations: &mut Violations, place: &str, port: &ProbePort, ports: &[Port]) {
    match (port.number, port.name.as_str()) {
        (0, "") => violations.push(
            format!("{place}.port"),
            "one of port and port_name is required",
        ),
        (_, "") => check_port_number(violations, &format!("{place}.port"), port.number),
        (0, name) => {
            let field = format!("{place}.port_name");
            if let Err(e) = is_iana_service_name(name) {
                violations.push(field, e);
            } else if !ports.iter().any(|p| p.name == name) {
                violations.push(
                    field,
                    format!("{name:?} is not the name of one of the request's ports"),
                );
            }
        }
        (_, _) => violations.push(
            format!("{place}.port_name"),
            "must be empty when port is set (one of port and port_name)",
        ),
    }
}

fn check_http_get(violations: &mut Violations, place: &str, http: &HttpGet, ports: &[Port]) {
    check_probe_port(violations, place, &http.port, ports);
    if !http.path.is_empty() {
        let field = format!("{place}.path");
        if !http.path.starts_with('/') {
            violations.push(
                field,
                format!("{:?} must be an absolute path (start with '/')", http.path),
            );
        } else if http.path.parse::<http::uri::PathAndQuery>().is_err() {
            violations.push(
                field,
                format!(
                    "{:?} is not a valid URL path (no spaces or control characters)",
                    http.path
                ),
            );
        }
    }
    for (i, (name, value)) in http.headers.iter().enumerate() {
        let field = format!("{place}.headers[{i}]");
        // Kubernetes' rule (IsHTTPHeaderName), stricter than HTTP's token.
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            violations.push(
                format!("{field}.name"),
                format!("{name:?} is not a valid header name: must be letters, digits and '-'"),
            );
        }
        if http::HeaderValue::from_str(value).is_err() {
            violations.push(
                format!("{field}.value"),
                "is not a valid header value: no control characters",
            );
        }
    }
}

/// Kubernetes' toleration rules (validateTolerations).
fn check_toleration(violations: &mut Violations, place: &str, toleration: &Toleration) {
    let exists = toleration.operator == TolerationOperator::Exists;
    if toleration.key.is_empty() {
        if !exists {
            violations.push(
                format!("{place}.key"),
                "is required unless operator is EXISTS (an empty key with EXISTS tolerates every taint)",
            );
        }
    } else if let Err(e) = validate_label_key(&toleration.key) {
        violations.push(format!("{place}.key"), e);
    }
    if exists {
        if !toleration.value.is_empty() {
            violations.push(
                format!("{place}.value"),
                "must be empty when operator is EXISTS",
            );
        }
    } else if let Err(e) = validate_label_value(&toleration.value) {
        violations.push(format!("{place}.value"), e);
    }
    if let Some(seconds) = toleration.toleration_seconds {
        let field = format!("{place}.toleration_seconds");
        if toleration.effect != Some(TaintEffect::NoExecute) {
            violations.push(field, "may only be set with effect NO_EXECUTE");
        } else if seconds.subsec_nanos() != 0 {
            violations.push(field, "must be whole seconds");
        } else if i64::try_from(seconds.as_secs()).is_err() {
            violations.push(field, "is too long");
        }
    }
}

/// A request's workload with every field set, valid with [`example_ports`]: for the tests
/// that follow the fields through validation, the request hash and the pod builder.
#[cfg(test)]
pub(crate) fn example_workload() -> Workload {
    let probe = |action| Probe {
        action: Some(action),
        ..Probe::default()
    };
    Workload {
        probes: Probes {
            readiness: Some(Probe {
                initial_delay: Some(Duration::from_secs(2)),
                period: Some(Duration::from_secs(5)),
                timeout: Some(Duration::from_secs(3)),
                success_threshold: 2,
                failure_threshold: 4,
                ..probe(ProbeAction::HttpGet(HttpGet {
                    path: "/healthz?full=1".into(),
                    port: ProbePort {
                        number: 0,
                        name: "http".into(),
                    },
                    scheme: HttpScheme::Https,
                    headers: vec![("X-Probe".into(), "yes".into())],
                }))
            }),
            liveness: Some(probe(ProbeAction::TcpSocket(ProbePort {
                number: 8080,
                name: String::new(),
            }))),
            startup: Some(Probe {
                failure_threshold: 30,
                ..probe(ProbeAction::Exec(vec![
                    "/bin/check".into(),
                    "--quick".into(),
                ]))
            }),
        },
        env_from: vec![
            EnvFromSource {
                prefix: "DB_".into(),
                source: Some(EnvFromObject::Secret("db-env".into())),
                optional: false,
            },
            EnvFromSource {
                prefix: String::new(),
                source: Some(EnvFromObject::ConfigMap("app.config".into())),
                optional: true,
            },
        ],
        image_pull_secrets: vec!["regcred".into(), "other-regcred".into()],
        service_account: "runner".into(),
        node_selector: [("disktype".to_owned(), "ssd".to_owned())].into(),
        tolerations: vec![
            Toleration {
                key: "dedicated".into(),
                operator: TolerationOperator::Equal,
                value: "batch".into(),
                effect: Some(TaintEffect::NoSchedule),
                toleration_seconds: None,
            },
            Toleration {
                key: "node.kubernetes.io/unreachable".into(),
                operator: TolerationOperator::Exists,
                value: String::new(),
                effect: Some(TaintEffect::NoExecute),
                toleration_seconds: Some(Duration::from_secs(30)),
            },
            Toleration {
                operator: TolerationOperator::Exists,
                ..Toleration::default()
            },
        ],
    }
}

/// The container ports [`example_workload`]'s probes name.
#[cfg(test)]
pub(crate) fn example_ports() -> Vec<Port> {
    vec![Port {
        name: "http".into(),
        number: 8080,
        protocol: crate::domain::spec::Protocol::Tcp,
    }]
}

/// Env vars taking their values from a Secret key and a ConfigMap key.
#[cfg(test)]
pub(crate) fn example_env() -> Vec<EnvVar> {
    vec![
        EnvVar {
            name: "PASSWORD".into(),
            value: String::new(),
            value_from: Some(EnvSource::SecretKey(KeyRef {
                name: "db-password".into(),
                key: "password".into(),
                optional: false,
            })),
        },
        EnvVar {
            name: "APP_MODE".into(),
            value: String::new(),
            value_from: Some(EnvSource::ConfigMapKey(KeyRef {
                name: "settings".into(),
                key: "app.mode".into(),
                optional: true,
            })),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::assert_one_violation;

    fn check(env: &[EnvVar], workload: &Workload) -> Violations {
        let mut violations = Violations::default();
        for (i, var) in env.iter().enumerate() {
            check_env_source(&mut violations, i, var);
        }
        check_workload(&mut violations, workload, &example_ports());
        violations
    }

    #[test]
    fn the_example_is_valid_and_lists_its_references_in_request_order() {
        let violations = check(&example_env(), &example_workload());
        assert!(violations.is_empty(), "{violations}");
        let found: Vec<(String, ReferenceKind, String)> =
            references(&example_env(), &example_workload())
                .into_iter()
                .map(|r| (r.field, r.kind, r.name))
                .collect();
        let want = [
            (
                "env[0].value_from.secret_key",
                ReferenceKind::Secret,
                "db-password",
            ),
            (
                "env[1].value_from.config_map_key",
                ReferenceKind::ConfigMap,
                "settings",
            ),
            ("env_from[0].secret", ReferenceKind::Secret, "db-env"),
            (
                "env_from[1].config_map",
                ReferenceKind::ConfigMap,
                "app.config",
            ),
            ("image_pull_secrets[0]", ReferenceKind::Secret, "regcred"),
            (
                "image_pull_secrets[1]",
                ReferenceKind::Secret,
                "other-regcred",
            ),
            ("service_account", ReferenceKind::ServiceAccount, "runner"),
        ]
        .map(|(field, kind, name)| (field.to_owned(), kind, name.to_owned()));
        assert_eq!(found, want);
        assert!(references(&[], &Workload::default()).is_empty());
        assert!(Workload::default().is_empty());
        assert!(!example_workload().is_empty());
    }

    type Edit = fn(&mut Vec<EnvVar>, &mut Workload);

    fn readiness(w: &mut Workload) -> &mut Probe {
        w.probes.readiness.get_or_insert_with(Probe::default)
    }

    fn http(w: &mut Workload) -> &mut HttpGet {
        match &mut readiness(w).action {
            Some(ProbeAction::HttpGet(http)) => http,
            _ => unreachable!("the example's readiness probe is an HTTP GET"),
        }
    }

    #[test]
    fn each_rule_names_its_field() {
        #[rustfmt::skip]
        let cases: Vec<(&str, Edit, &str, &str)> = vec![
            // Probes.
            ("no action", |_, w| readiness(w).action = None,
             "probes.readiness", "one of http_get, tcp_socket, grpc and exec is required"),
            ("no port", |_, w| http(w).port = ProbePort::default(),
             "probes.readiness.http_get.port", "one of port and port_name is required"),
            ("port and name", |_, w| http(w).port.number = 80,
             "probes.readiness.http_get.port_name", "must be empty when port is set"),
            ("port too high", |_, w| http(w).port = ProbePort { number: 65536, name: String::new() },
             "probes.readiness.http_get.port", "must be 1 to 65535, not 65536"),
            ("unknown port name", |_, w| http(w).port.name = "metrics".into(),
             "probes.readiness.http_get.port_name", "\"metrics\" is not the name of one of the request's ports"),
            ("malformed port name", |_, w| http(w).port.name = "HTTP".into(),
             "probes.readiness.http_get.port_name", "is not a valid port name"),
            ("relative path", |_, w| http(w).path = "healthz".into(),
             "probes.readiness.http_get.path", "\"healthz\" must be an absolute path"),
            ("path with a space", |_, w| http(w).path = "/a b".into(),
             "probes.readiness.http_get.path", "is not a valid URL path"),
            ("header name", |_, w| http(w).headers = vec![("X_Probe".into(), "v".into())],
             "probes.readiness.http_get.headers[0].name", "\"X_Probe\" is not a valid header name"),
            ("empty header name", |_, w| http(w).headers = vec![(String::new(), "v".into())],
             "probes.readiness.http_get.headers[0].name", "is not a valid header name"),
            ("header value", |_, w| http(w).headers = vec![("X-A".into(), "a\r\nX-B: b".into())],
             "probes.readiness.http_get.headers[0].value", "is not a valid header value"),
            ("tcp port zero", |_, w| w.probes.liveness = Some(Probe { action: Some(ProbeAction::TcpSocket(ProbePort::default())), ..Probe::default() }),
             "probes.liveness.tcp_socket.port", "one of port and port_name is required"),
            ("grpc port", |_, w| w.probes.startup = Some(Probe { action: Some(ProbeAction::Grpc { port: 0, service: String::new() }), ..Probe::default() }),
             "probes.startup.grpc.port", "must be 1 to 65535, not 0"),
            ("empty exec", |_, w| w.probes.startup = Some(Probe { action: Some(ProbeAction::Exec(vec![])), ..Probe::default() }),
             "probes.startup.exec.command", "must have at least one element"),
            ("fractional period", |_, w| readiness(w).period = Some(Duration::from_millis(1500)),
             "probes.readiness.period", "must be whole seconds"),
            ("zero timeout", |_, w| readiness(w).timeout = Some(Duration::ZERO),
             "probes.readiness.timeout", "must be at least 1s, not 0s"),
            ("long initial delay", |_, w| readiness(w).initial_delay = Some(Duration::from_secs(3601)),
             "probes.readiness.initial_delay", "must be at most 1 hour, not 3601s"),
            ("liveness success threshold", |_, w| w.probes.liveness.as_mut().into_iter().for_each(|p| p.success_threshold = 2),
             "probes.liveness.success_threshold", "must be 1 for a liveness probe, not 2"),
            ("startup success threshold", |_, w| w.probes.startup.as_mut().into_iter().for_each(|p| p.success_threshold = 3),
             "probes.startup.success_threshold", "must be 1 for a startup probe, not 3"),
            ("huge failure threshold", |_, w| readiness(w).failure_threshold = u32::MAX,
             "probes.readiness.failure_threshold", "must be at most 2147483647"),
            // Env from Secret and ConfigMap keys.
            ("value beside value_from", |e, _| e[0].value = "x".into(),
             "env[0].value", "must be empty when value_from is set"),
            ("key ref name missing", |e, _| e[0].value_from = Some(EnvSource::SecretKey(KeyRef { key: "k".into(), ..KeyRef::default() })),
             "env[0].value_from.secret_key.name", "is required"),
            ("key ref name", |e, _| e[1].value_from = Some(EnvSource::ConfigMapKey(KeyRef { name: "Settings".into(), key: "k".into(), optional: false })),
             "env[1].value_from.config_map_key.name", "\"Settings\" is not a DNS-1123 subdomain"),
            ("key missing", |e, _| e[0].value_from = Some(EnvSource::SecretKey(KeyRef { name: "s".into(), ..KeyRef::default() })),
             "env[0].value_from.secret_key.key", "\"\" is not a valid key: must not be empty"),
            ("key characters", |e, _| e[0].value_from = Some(EnvSource::SecretKey(KeyRef { name: "s".into(), key: "a/b".into(), optional: false })),
             "env[0].value_from.secret_key.key", "must contain only letters, digits, '-', '_' and '.' (found '/')"),
            ("key '..'", |e, _| e[0].value_from = Some(EnvSource::SecretKey(KeyRef { name: "s".into(), key: "..data".into(), optional: false })),
             "env[0].value_from.secret_key.key", "must not be '.' or '..', nor start with '..'"),
            ("key too long", |e, _| e[0].value_from = Some(EnvSource::SecretKey(KeyRef { name: "s".into(), key: "k".repeat(254), optional: false })),
             "env[0].value_from.secret_key.key", "must be at most 253 characters, not 254"),
            // envFrom.
            ("env_from without object", |_, w| w.env_from[0].source = None,
             "env_from[0]", "one of secret and config_map is required"),
            ("env_from secret name", |_, w| w.env_from[0].source = Some(EnvFromObject::Secret("db_env".into())),
             "env_from[0].secret", "is not a DNS-1123 subdomain"),
            ("env_from config map name", |_, w| w.env_from[1].source = Some(EnvFromObject::ConfigMap(String::new())),
             "env_from[1].config_map", "is required"),
            ("env_from prefix", |_, w| w.env_from[0].prefix = "1DB_".into(),
             "env_from[0].prefix", "must start with a letter or '_'"),
            // Pull secrets, ServiceAccount.
            ("pull secret name", |_, w| w.image_pull_secrets[1] = "Reg".into(),
             "image_pull_secrets[1]", "\"Reg\" is not a DNS-1123 subdomain"),
            ("empty pull secret", |_, w| w.image_pull_secrets.push(String::new()),
             "image_pull_secrets[2]", "is required"),
            ("duplicate pull secret", |_, w| w.image_pull_secrets.push("regcred".into()),
             "image_pull_secrets[2]", "duplicate name \"regcred\" (also image_pull_secrets[0])"),
            ("service account", |_, w| w.service_account = "Runner".into(),
             "service_account", "\"Runner\" is not a DNS-1123 subdomain"),
            // Node selector.
            ("node selector key", |_, w| w.node_selector = [("disk type".to_owned(), "ssd".to_owned())].into(),
             "node_selector[\"disk type\"]", "is not a valid label key"),
            ("node selector value", |_, w| w.node_selector = [("disk".to_owned(), "fast ssd".to_owned())].into(),
             "node_selector[\"disk\"]", "\"fast ssd\" is not a valid label value"),
            // Tolerations.
            ("toleration key", |_, w| w.tolerations[0].key = "bad key".into(),
             "tolerations[0].key", "is not a valid label key"),
            ("empty key with EQUAL", |_, w| w.tolerations[0].key.clear(),
             "tolerations[0].key", "is required unless operator is EXISTS"),
            ("value with EXISTS", |_, w| w.tolerations[1].value = "x".into(),
             "tolerations[1].value", "must be empty when operator is EXISTS"),
            ("toleration value", |_, w| w.tolerations[0].value = "not valid".into(),
             "tolerations[0].value", "\"not valid\" is not a valid label value"),
            ("seconds without NO_EXECUTE", |_, w| w.tolerations[0].toleration_seconds = Some(Duration::from_secs(5)),
             "tolerations[0].toleration_seconds", "may only be set with effect NO_EXECUTE"),
            ("fractional seconds", |_, w| w.tolerations[1].toleration_seconds = Some(Duration::from_millis(10)),
             "tolerations[1].toleration_seconds", "must be whole seconds"),
        ];
        for (case, edit, field, description) in cases {
            let (mut env, mut workload) = (example_env(), example_workload());
            edit(&mut env, &mut workload);
            assert_one_violation(case, &check(&env, &workload), field, description);
        }
    }

    #[test]
    fn config_keys_follow_kubernetes() {
        for key in ["a", "A.b-c_d", ".env", "x..y", &"k".repeat(253)] {
            assert_eq!(is_config_key(key), Ok(()), "{key:?}");
        }
        for key in ["", ".", "..", "..x", "a b", "a/b", "é", &"k".repeat(254)] {
            assert!(is_config_key(key).is_err(), "{key:?}");
        }
    }
}
