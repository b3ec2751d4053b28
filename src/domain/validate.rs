//! Checking a Deploy request ([`validate_deploy`]) and the names other calls receive
//! ([`validate_namespace`], [`validate_pod_name`]). Every violation is collected, not just the
//! first, each naming the field as the .proto spells it (`env[2].name`,
//! `resources.limits["cpu"]`) and the rule that failed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::domain::image::ImageReference;
use crate::domain::names::{
    generate_pod_name, is_dns1123_label, is_dns1123_subdomain, is_env_var_name,
    is_iana_service_name, name_part_rule, quantity_nanos, validate_annotation_key,
    validate_label_key, validate_label_value, validate_quantity,
};
use crate::domain::spec::{DEFAULT_WAIT_TIMEOUT, DeployInput, DeploySpec, EnvVar, WaitFor};
use crate::domain::workload::{
    EnvSource, HttpGet, Probe, ProbeAction, ProbePort, Workload, check_env_source, check_workload,
};
use crate::domain::{
    IMAGE_ANNOTATION, MANAGED_BY_LABEL, POD_SECURITY_ANNOTATION, REQUEST_HASH_ANNOTATION,
    RESERVED_PREFIX,
};

/// Largest total size of the annotations (keys and values), as in Kubernetes: the caller's
/// and the ones this service adds (apimachinery's `ValidateAnnotationsSize`).
pub const MAX_ANNOTATIONS_SIZE: usize = 256 * 1024;
/// Largest pod this service sends, as JSON: well below what etcd takes in one request (1.5 MiB
/// by default) and the API server's request body limit (3 MiB), so that a request too big for
/// the cluster is refused here, naming the field, rather than by the API server.
pub const MAX_POD_SIZE: usize = 1024 * 1024;
/// Room for what every pod carries besides the request's own values (the container's name,
/// the hardening, the default resources, the managed-by label, JSON syntax), as JSON. The
/// pod builder's tests check that [`pod_size`] stays an upper bound of the real size.
const POD_OVERHEAD: usize = 4 * 1024;
/// The longest Pod Security profile name, which the service's annotation may carry.
const LONGEST_PROFILE: &str = "restricted";
/// Longest wait a Deploy may ask for.
pub const MAX_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);
/// The resources a request may name.
pub const RESOURCE_NAMES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// One malformed field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field, as the .proto names it: `image`, `labels["Bad Key"]`, `env[2].name`.
    pub field: String,
    /// What is wrong, naming the rule; lower case, no trailing period.
    pub description: String,
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Every violation found in a request; displayed as `field: description; field2: ...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    /// Record a violation.
    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Record every violation of `other` after these.
    pub fn extend(&mut self, other: Violations) {
        self.0.extend(other.0);
    }

    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, violation) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// For table tests: `violations` is one violation of `field`, whose description contains
/// `description` and has no trailing period.
#[cfg(test)]
pub(crate) fn assert_one_violation(
    case: &str,
    violations: &Violations,
    field: &str,
    description: &str,
) {
    assert_eq!(violations.0.len(), 1, "{case}: {violations}");
    let violation = &violations.0[0];
    assert_eq!(violation.field, field, "{case}: {violations}");
    assert!(
        violation.description.contains(description),
        "{case}: {:?} should contain {description:?}",
        violation.description
    );
    assert!(
        !violation.description.ends_with('.'),
        "{case}: {violations}"
    );
}

/// A namespace: required, a DNS-1123 label.
pub fn validate_namespace(field: &str, value: &str) -> Result<(), Violations> {
    let mut violations = Violations::default();
    check_namespace(&mut violations, field, value);
    violations.into_result()
}

/// The name of an existing pod: required, a DNS-1123 subdomain (any name Kubernetes accepts).
pub fn validate_pod_name(field: &str, value: &str) -> Result<(), Violations> {
    let mut violations = Violations::default();
    if value.is_empty() {
        violations.push(field, "is required");
    } else if let Err(e) = is_dns1123_subdomain(value) {
        violations.push(field, e);
    }
    violations.into_result()
}

/// Check a Deploy request and settle the pod name. Every violation is reported.
pub fn validate_deploy(input: &DeployInput) -> Result<DeploySpec, Violations> {
    let mut violations = Violations::default();

    let image = if input.image.is_empty() {
        violations.push("image", "is required");
        None
    } else {
        ImageReference::parse(&input.image)
            .map_err(|e| {
                violations.push(
                    "image",
                    format!("{:?} is not a valid image reference: {e}", input.image),
                );
            })
            .ok()
    };
    check_namespace(&mut violations, "namespace", &input.namespace);
    // Any name Kubernetes accepts for a pod (dots included), as the prototype's derived
    // names need; generated names stay DNS-1123 labels.
    if !input.name.is_empty()
        && let Err(e) = is_dns1123_subdomain(&input.name)
    {
        violations.push("name", e);
    }
    check_labels(&mut violations, &input.labels);
    check_annotations(&mut violations, input);
    check_env(&mut violations, input);
    check_ports(&mut violations, input);
    check_workload(&mut violations, &input.workload, &input.ports);
    check_resources(&mut violations, "requests", &input.requests);
    check_resources(&mut violations, "limits", &input.limits);
    check_limits_cover_requests(&mut violations, input);
    let request_id = check_request_id(&mut violations, &input.request_id);
    let wait = check_wait(&mut violations, input);
    check_pod_size(&mut violations, input);

    let image = match image {
        Some(image) if violations.is_empty() => image,
        _ => return Err(violations),
    };
    let (name, generated_name) = if input.name.is_empty() {
        (generate_pod_name(&image, request_id.as_deref()), true)
    } else {
        (input.name.clone(), false)
    };
    let request_hash = request_hash(input);
    Ok(DeploySpec {
        image,
        namespace: input.namespace.clone(),
        name,
        generated_name,
        labels: input.labels.clone(),
        annotations: input.annotations.clone(),
        env: input.env.clone(),
        ports: input.ports.clone(),
        command: input.command.clone(),
        args: input.args.clone(),
        requests: input.requests.clone(),
        limits: input.limits.clone(),
        restart_policy: input.restart_policy,
        request_id,
        dry_run: input.dry_run,
        wait,
        request_hash,
        pod_security: input.pod_security,
        workload: input.workload.clone(),
    })
}

fn check_namespace(violations: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        violations.push(field, "is required");
    } else if let Err(e) = is_dns1123_label(value) {
        violations.push(field, e);
    }
}

fn map_field(map: &str, key: &str) -> String {
    format!("{map}[{key:?}]")
}

fn check_labels(violations: &mut Violations, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        let field = map_field("labels", key);
        if let Err(e) = validate_label_key(key) {
            violations.push(&field, e);
        } else if key.to_ascii_lowercase().starts_with(RESERVED_PREFIX) || key == MANAGED_BY_LABEL.0
        {
            violations.push(
                &field,
                format!("key {key:?} is reserved for k8s-deployer (keys under {RESERVED_PREFIX} and {})", MANAGED_BY_LABEL.0),
            );
        }
        if let Err(e) = validate_label_value(value) {
            violations.push(&field, e);
        }
    }
}

/// Annotation prefixes that the kubelet or the API server still read as security settings:
/// a caller could undo the hardening with them (an unconfined AppArmor or seccomp profile).
const SECURITY_ANNOTATION_PREFIXES: [&str; 3] = [
    "container.apparmor.security.beta.kubernetes.io/",
    "seccomp.security.alpha.kubernetes.io/",
    "container.seccomp.security.alpha.kubernetes.io/",
];

/// The size, keys and values, of the annotations this service adds to every pod: the image,
/// the request hash and the Pod Security profile (counted at its longest).
fn service_annotations_size(image: &str) -> usize {
    IMAGE_ANNOTATION.len()
        + image.len()
        + REQUEST_HASH_ANNOTATION.len()
        + REQUEST_HASH_LEN
        + POD_SECURITY_ANNOTATION.len()
        + LONGEST_PROFILE.len()
}

/// Length of the request hash: SHA-256 in hex.
const REQUEST_HASH_LEN: usize = 64;

fn check_annotations(violations: &mut Violations, input: &DeployInput) {
    let ours = service_annotations_size(&input.image);
    let mut total = ours;
    for (key, value) in &input.annotations {
        total = total.saturating_add(key.len()).saturating_add(value.len());
        let field = map_field("annotations", key);
        if let Err(e) = validate_annotation_key(key) {
            violations.push(&field, e);
        } else if key.to_ascii_lowercase().starts_with(RESERVED_PREFIX) {
            violations.push(
                &field,
                format!("key {key:?} is reserved for k8s-deployer (keys under {RESERVED_PREFIX})"),
            );
        } else if let Some(prefix) = SECURITY_ANNOTATION_PREFIXES
            .iter()
            .find(|prefix| key.to_ascii_lowercase().starts_with(*prefix))
        {
            violations.push(
                &field,
                format!(
                    "key {key:?} would change the pod's security profile (keys under {prefix} \
                     are refused: the pod's hardening is the service's to decide)"
                ),
            );
        }
    }
    if total > MAX_ANNOTATIONS_SIZE {
        violations.push(
            "annotations",
            format!(
                "total size of keys and values must be at most 256 KiB ({MAX_ANNOTATIONS_SIZE} \
                 bytes), not {total} bytes (counting the {ours} bytes of the annotations \
                 k8s-deployer adds)"
            ),
        );
    }
}

/// The size of `text` as a JSON string, quotes included (as serde_json writes it).
fn json_string_size(text: &str) -> usize {
    let escaped: usize = text
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if u32::from(c) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum();
    escaped + 2
}

/// JSON syntax around one item of a list or map (`{"name":,"value":},`, `"key":,`), counted
/// generously.
const ITEM_OVERHEAD: usize = 32;

fn strings_size<'a>(items: impl IntoIterator<Item = &'a String>) -> usize {
    items
        .into_iter()
        .map(|s| json_string_size(s) + ITEM_OVERHEAD)
        .sum()
}

fn map_size(map: &BTreeMap<String, String>) -> usize {
    strings_size(map.keys()) + strings_size(map.values())
}

/// What each part of the request adds to the pod's JSON, by the field that carries it.
fn pod_size_by_field(input: &DeployInput) -> [(&'static str, usize); 15] {
    // The image appears twice: in the container and in the service's annotation.
    let service_annotations = service_annotations_size(&input.image) + 3 * ITEM_OVERHEAD;
    let workload = &input.workload;
    [
        ("image", 2 * json_string_size(&input.image)),
        ("name", json_string_size(&input.name)),
        ("labels", map_size(&input.labels)),
        (
            "annotations",
            map_size(&input.annotations) + service_annotations,
        ),
        (
            "env",
            input
                .env
                .iter()
                .map(|var| {
                    json_string_size(&var.name) + json_string_size(&var.value) + ITEM_OVERHEAD
                })
                .sum::<usize>()
                + input
                    .env
                    .iter()
                    .filter_map(|var| var.value_from.as_ref())
                    .map(env_source_size)
                    .sum::<usize>(),
        ),
        (
            "ports",
            input
                .ports
                .iter()
                .map(|port| json_string_size(&port.name) + 2 * ITEM_OVERHEAD)
                .sum(),
        ),
        ("command", strings_size(&input.command)),
        ("args", strings_size(&input.args)),
        (
            "resources",
            map_size(&input.requests) + map_size(&input.limits),
        ),
        (
            "probes",
            workload
                .probes
                .iter()
                .map(|(_, probe)| probe_size(probe))
                .sum(),
        ),
        (
            "env_from",
            workload
                .env_from
                .iter()
                .map(|source| {
                    let name = source.source.as_ref().map_or("", |object| object.parts().2);
                    json_string_size(&source.prefix) + json_string_size(name) + 3 * ITEM_OVERHEAD
                })
                .sum(),
        ),
        (
            "image_pull_secrets",
            workload
                .image_pull_secrets
                .iter()
                .map(|name| json_string_size(name) + 2 * ITEM_OVERHEAD)
                .sum(),
        ),
        (
            "service_account",
            json_string_size(&workload.service_account) + ITEM_OVERHEAD,
        ),
        ("node_selector", map_size(&workload.node_selector)),
        (
            "tolerations",
            workload
                .tolerations
                .iter()
                .map(|t| json_string_size(&t.key) + json_string_size(&t.value) + 4 * ITEM_OVERHEAD)
                .sum(),
        ),
    ]
}

/// What an env var's value_from adds: `"valueFrom":{"secretKeyRef":{"name":..,"key":..,
/// "optional":false}}`.
fn env_source_size(source: &EnvSource) -> usize {
    let (_, _, key) = source.parts();
    json_string_size(&key.name) + json_string_size(&key.key) + 3 * ITEM_OVERHEAD
}

/// What one probe adds: its action with its strings, and up to five numbers, each counted as
/// one item.
fn probe_size(probe: &Probe) -> usize {
    let action = match &probe.action {
        None => 0,
        Some(ProbeAction::HttpGet(HttpGet {
            path,
            port,
            headers,
            ..
        })) => {
            json_string_size(path)
                + probe_port_size(port)
                + headers
                    .iter()
                    .map(|(name, value)| {
                        json_string_size(name) + json_string_size(value) + ITEM_OVERHEAD
                    })
                    .sum::<usize>()
        }
        Some(ProbeAction::TcpSocket(port)) => probe_port_size(port),
        Some(ProbeAction::Grpc { service, .. }) => json_string_size(service),
        Some(ProbeAction::Exec(command)) => strings_size(command),
    };
    action + 10 * ITEM_OVERHEAD
}

fn probe_port_size(port: &ProbePort) -> usize {
    json_string_size(&port.name) + ITEM_OVERHEAD
}

/// An upper bound of the size of the pod built for `input`, as JSON (namespace and request id
/// included).
#[must_use]
pub fn pod_size(input: &DeployInput) -> usize {
    let fields: usize = pod_size_by_field(input).iter().map(|(_, size)| size).sum();
    POD_OVERHEAD
        + json_string_size(&input.namespace)
        + 2 * json_string_size(&input.request_id)
        + fields
}

/// Refuse a pod too large to send ([`MAX_POD_SIZE`]), naming the field that takes the most
/// room: Kubernetes would refuse it anyway, and a retry could never succeed.
fn check_pod_size(violations: &mut Violations, input: &DeployInput) {
    let size = pod_size(input);
    if size <= MAX_POD_SIZE {
        return;
    }
    let by_field = pod_size_by_field(input);
    let Some((field, largest)) = by_field.iter().max_by_key(|(_, size)| *size) else {
        return;
    };
    violations.push(
        *field,
        format!(
            "the pod would take about {size} bytes, more than the {} MiB ({MAX_POD_SIZE} bytes) \
             a pod may take; {field} takes {largest} of them",
            MAX_POD_SIZE / (1024 * 1024)
        ),
    );
}

fn check_env(violations: &mut Violations, input: &DeployInput) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, var) in input.env.iter().enumerate() {
        let field = format!("env[{i}].name");
        if var.name.is_empty() {
            violations.push(field, "is required");
        } else if let Err(e) = is_env_var_name(&var.name) {
            violations.push(field, e);
        } else if let Some(first) = seen.get(var.name.as_str()) {
            violations.push(
                field,
                format!("duplicate name {:?} (also env[{first}].name)", var.name),
            );
        } else {
            seen.insert(&var.name, i);
        }
        check_env_source(violations, i, var);
    }
}

fn check_ports(violations: &mut Violations, input: &DeployInput) {
    let mut numbers = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, port) in input.ports.iter().enumerate() {
        let field = format!("ports[{i}].container_port");
        if !(1..=65535).contains(&port.number) {
            violations.push(field, format!("must be 1 to 65535, not {}", port.number));
        } else if let Some(first) = numbers.get(&(port.number, port.protocol)) {
            violations.push(
                field,
                format!(
                    "duplicate port {}/{} (also ports[{first}])",
                    port.number,
                    port.protocol.as_str()
                ),
            );
        } else {
            numbers.insert((port.number, port.protocol), i);
        }
        if port.name.is_empty() {
            continue;
        }
        let field = format!("ports[{i}].name");
        if let Err(e) = is_iana_service_name(&port.name) {
            violations.push(field, e);
        } else if let Some(first) = names.get(port.name.as_str()) {
            violations.push(
                field,
                format!("duplicate name {:?} (also ports[{first}].name)", port.name),
            );
        } else {
            names.insert(&port.name, i);
        }
    }
}

fn check_resources(violations: &mut Violations, kind: &str, amounts: &BTreeMap<String, String>) {
    for (resource, amount) in amounts {
        let field = map_field(&format!("resources.{kind}"), resource);
        if !RESOURCE_NAMES.contains(&resource.as_str()) {
            violations.push(
                field,
                format!(
                    "unsupported resource {resource:?} (only cpu, memory and ephemeral-storage)"
                ),
            );
        } else if let Err(e) = validate_quantity(amount) {
            violations.push(field, e);
        }
    }
}

fn check_limits_cover_requests(violations: &mut Violations, input: &DeployInput) {
    for (resource, limit) in &input.limits {
        let Some(request) = input.requests.get(resource) else {
            continue;
        };
        if !RESOURCE_NAMES.contains(&resource.as_str()) {
            continue;
        }
        // Malformed amounts are reported by check_resources.
        if let (Some(limit_nanos), Some(request_nanos)) =
            (quantity_nanos(limit), quantity_nanos(request))
            && limit_nanos < request_nanos
        {
            violations.push(
                map_field("resources.limits", resource),
                format!("limit {limit:?} must not be below the request {request:?}"),
            );
        }
    }
}

fn check_request_id(violations: &mut Violations, request_id: &str) -> Option<String> {
    if request_id.is_empty() {
        return None;
    }
    if let Err(why) = name_part_rule(request_id) {
        violations.push(
            "request_id",
            format!("{request_id:?} is not a valid request_id: {why}"),
        );
    }
    Some(request_id.to_owned())
}

fn check_wait(violations: &mut Violations, input: &DeployInput) -> Option<(WaitFor, Duration)> {
    if let Some(timeout) = input.wait_timeout {
        if timeout.is_zero() {
            violations.push("wait_timeout", "must be greater than zero");
        } else if timeout > MAX_WAIT_TIMEOUT {
            violations.push(
                "wait_timeout",
                format!("must be at most 1 hour, not {}s", timeout.as_secs()),
            );
        }
    }
    match input.wait_for {
        WaitFor::None => None,
        wait_for => Some((wait_for, input.wait_timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT))),
    }
}

/// SHA-256, in lower-case hex, of an unambiguous encoding of everything that defines the pod:
/// the image as written, namespace, the name when given, labels, annotations, env, ports,
/// command, args, requests, limits and restart policy. Not dry_run, the wait or the
/// request_id, so a retry that only changes those is recognised as the same request.
fn request_hash(input: &DeployInput) -> String {
    let mut hash = CanonicalHasher(Sha256::new());
    hash.text("k8s-deployer request v1");
    hash.field("image").text(&input.image);
    hash.field("namespace").text(&input.namespace);
    hash.field("name").text(&input.name);
    hash.field("labels").map(&input.labels);
    hash.field("annotations").map(&input.annotations);
    hash.field("env").count(input.env.len());
    for var in &input.env {
        hash.text(&var.name).text(&var.value);
    }
    hash.field("ports").count(input.ports.len());
    for port in &input.ports {
        hash.text(&port.name)
            .number(u64::from(port.number))
            .text(port.protocol.as_str());
    }
    hash.field("command").list(&input.command);
    hash.field("args").list(&input.args);
    hash.field("requests").map(&input.requests);
    hash.field("limits").map(&input.limits);
    hash.field("restart_policy")
        .text(input.restart_policy.as_str());
    // Only when asked for, so that requests without it hash as they always did.
    if let Some(profile) = input.pod_security {
        hash.field("pod_security").text(profile.as_str());
    }
    // Likewise only when used.
    if input.env.iter().any(|var| var.value_from.is_some()) || !input.workload.is_empty() {
        hash_workload(&mut hash, &input.env, &input.workload);
    }
    hash.finish()
}

/// The env vars' value_from and the workload fields, for [`request_hash`]. An absent optional
/// part is hashed as an empty text where present ones start with a non-empty tag, so that no
/// two requests encode alike.
fn hash_workload(hash: &mut CanonicalHasher, env: &[EnvVar], workload: &Workload) {
    hash.field("workload v1");
    hash.field("env value_from").count(env.len());
    for var in env {
        match &var.value_from {
            None => hash.text(""),
            Some(source) => {
                let (field, _, key) = source.parts();
                hash.text(field)
                    .text(&key.name)
                    .text(&key.key)
                    .flag(key.optional)
            }
        };
    }
    hash.field("probes");
    for probe in [
        &workload.probes.readiness,
        &workload.probes.liveness,
        &workload.probes.startup,
    ] {
        match probe {
            None => {
                hash.text("");
            }
            Some(probe) => hash_probe(hash, probe),
        }
    }
    hash.field("env_from").count(workload.env_from.len());
    for source in &workload.env_from {
        hash.text(&source.prefix).flag(source.optional);
        match &source.source {
            None => hash.text(""),
            Some(object) => {
                let (field, _, name) = object.parts();
                hash.text(field).text(name)
            }
        };
    }
    hash.field("image_pull_secrets")
        .list(&workload.image_pull_secrets);
    hash.field("service_account")
        .text(&workload.service_account);
    hash.field("node_selector").map(&workload.node_selector);
    hash.field("tolerations").count(workload.tolerations.len());
    for toleration in &workload.tolerations {
        hash.text(&toleration.key)
            .text(toleration.operator.as_str())
            .text(&toleration.value)
            .text(toleration.effect.map_or("", |effect| effect.as_str()))
            .duration(toleration.toleration_seconds);
    }
}

fn hash_probe(hash: &mut CanonicalHasher, probe: &Probe) {
    match &probe.action {
        None => {
            hash.text("none");
        }
        Some(ProbeAction::HttpGet(http)) => {
            hash.text("http_get")
                .text(&http.path)
                .number(u64::from(http.port.number))
                .text(&http.port.name)
                .text(http.scheme.as_str())
                .count(http.headers.len());
            for (name, value) in &http.headers {
                hash.text(name).text(value);
            }
        }
        Some(ProbeAction::TcpSocket(port)) => {
            hash.text("tcp_socket")
                .number(u64::from(port.number))
                .text(&port.name);
        }
        Some(ProbeAction::Grpc { port, service }) => {
            hash.text("grpc").number(u64::from(*port)).text(service);
        }
        Some(ProbeAction::Exec(command)) => {
            hash.text("exec").list(command);
        }
    }
    hash.duration(probe.initial_delay)
        .duration(probe.period)
        .duration(probe.timeout)
        .number(u64::from(probe.success_threshold))
        .number(u64::from(probe.failure_threshold));
}

/// Feeds length-prefixed items to SHA-256, so that no two different requests encode alike.
struct CanonicalHasher(Sha256);

impl CanonicalHasher {
    fn number(&mut self, n: u64) -> &mut Self {
        self.0.update(n.to_be_bytes());
        self
    }

    fn count(&mut self, n: usize) -> &mut Self {
        self.number(n as u64)
    }

    fn text(&mut self, s: &str) -> &mut Self {
        self.count(s.len());
        self.0.update(s.as_bytes());
        self
    }

    fn field(&mut self, name: &str) -> &mut Self {
        self.text(name)
    }

    fn flag(&mut self, value: bool) -> &mut Self {
        self.number(u64::from(value))
    }

    fn duration(&mut self, value: Option<Duration>) -> &mut Self {
        match value {
            None => self.flag(false),
            Some(value) => self
                .flag(true)
                .number(value.as_secs())
                .number(u64::from(value.subsec_nanos())),
        }
    }

    fn list(&mut self, items: &[String]) -> &mut Self {
        self.count(items.len());
        for item in items {
            self.text(item);
        }
        self
    }

    fn map(&mut self, map: &BTreeMap<String, String>) -> &mut Self {
        self.count(map.len());
        for (key, value) in map {
            self.text(key).text(value);
        }
        self
    }

    fn finish(self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = self.0.finalize();
        let mut out = String::with_capacity(digest.len() * 2);
        for byte in digest {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::{EnvVar, PodSecurityProfile, Port, Protocol, RestartPolicy};
    use crate::domain::workload::{
        EnvFromObject, ProbeAction, TaintEffect, example_env, example_ports, example_workload,
    };

    fn valid() -> DeployInput {
        DeployInput {
            image: "nginx:1.27".into(),
            namespace: "team-a".into(),
            ..DeployInput::default()
        }
    }

    fn env(name: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: "v".into(),
            value_from: None,
        }
    }

    fn port(name: &str, number: u32, protocol: Protocol) -> Port {
        Port {
            name: name.into(),
            number,
            protocol,
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    type Edit = fn(&mut DeployInput);

    #[test]
    fn each_rule_names_its_field() {
        #[rustfmt::skip]
        let cases: Vec<(&str, Edit, &str, &str)> = vec![
            ("image missing", |i| i.image.clear(), "image", "is required"),
            ("image malformed", |i| i.image = "Nginx:".into(), "image",
             "\"Nginx:\" is not a valid image reference: tag after ':' is empty"),
            ("image upper case", |i| i.image = "Nginx".into(), "image", "must be lower case"),
            ("namespace missing", |i| i.namespace.clear(), "namespace", "is required"),
            ("namespace upper case", |i| i.namespace = "Team".into(), "namespace",
             "\"Team\" is not a DNS-1123 label: must be lower case"),
            ("namespace with a dot", |i| i.namespace = "a.b".into(), "namespace", "found '.'"),
            ("name too long", |i| i.name = "n".repeat(254), "name", "at most 253 characters, not 254"),
            ("name with an empty part", |i| i.name = "web..1".into(), "name",
             "\"web..1\" is not a DNS-1123 subdomain: must not have an empty part"),
            ("name ending with a dot", |i| i.name = "web.".into(), "name", "is not a DNS-1123 subdomain"),
            ("name part ending with '-'", |i| i.name = "web-.1".into(), "name",
             "each part must start and end with a letter or digit"),
            ("name with '_'", |i| i.name = "web_1".into(), "name", "found '_'"),
            ("label key", |i| i.labels = map(&[("Bad Key", "x")]), "labels[\"Bad Key\"]",
             "\"Bad Key\" is not a valid label key"),
            ("label value", |i| i.labels = map(&[("app", "no way")]), "labels[\"app\"]",
             "\"no way\" is not a valid label value"),
            ("reserved label prefix", |i| i.labels = map(&[("k8s-deployer.io/x", "y")]),
             "labels[\"k8s-deployer.io/x\"]", "is reserved for k8s-deployer"),
            ("reserved managed-by label", |i| i.labels = map(&[("app.kubernetes.io/managed-by", "me")]),
             "labels[\"app.kubernetes.io/managed-by\"]", "is reserved for k8s-deployer"),
            ("annotation key", |i| i.annotations = map(&[("a/b/c", "x")]), "annotations[\"a/b/c\"]",
             "is not a valid annotation key"),
            ("reserved annotation", |i| i.annotations = map(&[("K8s-Deployer.io/image", "x")]),
             "annotations[\"K8s-Deployer.io/image\"]", "is reserved for k8s-deployer"),
            ("apparmor annotation", |i| i.annotations = map(&[("container.apparmor.security.beta.kubernetes.io/app", "unconfined")]),
             "annotations[\"container.apparmor.security.beta.kubernetes.io/app\"]", "would change the pod's security profile"),
            ("seccomp annotation", |i| i.annotations = map(&[("seccomp.security.alpha.kubernetes.io/pod", "unconfined")]),
             "annotations[\"seccomp.security.alpha.kubernetes.io/pod\"]", "would change the pod's security profile"),
            ("annotations too large", |i| i.annotations = map(&[("big", &"x".repeat(256 * 1024))]),
             "annotations", "must be at most 256 KiB (262144 bytes), not 262308 bytes (counting the 161 bytes of the annotations k8s-deployer adds)"),
            ("annotations too large with ours", |i| i.annotations = map(&[("big", &"x".repeat(256 * 1024 - 100))]),
             "annotations", "not 262208 bytes (counting the 161 bytes"),
            ("env too large for a pod", |i| i.env = vec![EnvVar { name: "BIG".into(), value: "x".repeat(2 << 20), value_from: None }],
             "env", "the pod would take about 2101"),
            ("args too large for a pod", |i| i.args = vec!["\"".repeat(600 * 1024)],
             "args", "more than the 1 MiB (1048576 bytes) a pod may take; args takes 1228834 of them"),
            ("command too large for a pod", |i| i.command = vec!["c".repeat(1024); 1024],
             "command", "command takes 1083392 of them"),
            ("env name missing", |i| i.env = vec![env("")], "env[0].name", "is required"),
            ("env name", |i| i.env = vec![env("A"), env("B"), env("1X")], "env[2].name",
             "must start with a letter or '_'"),
            ("env duplicate", |i| i.env = vec![env("A"), env("B"), env("A")], "env[2].name",
             "duplicate name \"A\" (also env[0].name)"),
            ("port zero", |i| i.ports = vec![port("", 0, Protocol::Tcp)], "ports[0].container_port",
             "must be 1 to 65535, not 0"),
            ("port too high", |i| i.ports = vec![port("", 65536, Protocol::Tcp)], "ports[0].container_port",
             "must be 1 to 65535, not 65536"),
            ("port duplicate", |i| i.ports = vec![port("", 80, Protocol::Tcp), port("", 80, Protocol::Tcp)],
             "ports[1].container_port", "duplicate port 80/TCP (also ports[0])"),
            ("port name", |i| i.ports = vec![port("HTTP", 80, Protocol::Tcp)], "ports[0].name",
             "\"HTTP\" is not a valid port name"),
            ("port name too long", |i| i.ports = vec![port("a-very-long-name", 80, Protocol::Tcp)],
             "ports[0].name", "at most 15 characters"),
            ("port name duplicate", |i| i.ports = vec![port("web", 80, Protocol::Tcp), port("web", 81, Protocol::Tcp)],
             "ports[1].name", "duplicate name \"web\" (also ports[0].name)"),
            ("unknown resource", |i| i.requests = map(&[("gpu", "1")]), "resources.requests[\"gpu\"]",
             "unsupported resource \"gpu\""),
            ("malformed request", |i| i.requests = map(&[("cpu", "lots")]), "resources.requests[\"cpu\"]",
             "\"lots\" is not a valid quantity"),
            ("negative limit", |i| i.limits = map(&[("memory", "-1Gi")]), "resources.limits[\"memory\"]",
             "must not be negative"),
            ("limit below request", |i| {
                i.requests = map(&[("cpu", "500m")]);
                i.limits = map(&[("cpu", "0.25")]);
            }, "resources.limits[\"cpu\"]", "limit \"0.25\" must not be below the request \"500m\""),
            ("memory limit below request", |i| {
                i.requests = map(&[("memory", "1Gi")]);
                i.limits = map(&[("memory", "1G")]);
            }, "resources.limits[\"memory\"]", "must not be below the request"),
            ("request_id characters", |i| i.request_id = "a b".into(), "request_id",
             "\"a b\" is not a valid request_id: must contain only letters, digits"),
            ("request_id ends badly", |i| i.request_id = "abc-".into(), "request_id",
             "must start and end with a letter or digit"),
            ("request_id too long", |i| i.request_id = "r".repeat(64), "request_id",
             "at most 63 characters"),
            ("zero wait", |i| {
                i.wait_for = WaitFor::Ready;
                i.wait_timeout = Some(Duration::ZERO);
            }, "wait_timeout", "must be greater than zero"),
            ("long wait", |i| {
                i.wait_for = WaitFor::Running;
                i.wait_timeout = Some(Duration::from_secs(3601));
            }, "wait_timeout", "must be at most 1 hour, not 3601s"),
        ];
        for (case, edit, field, description) in cases {
            let mut input = valid();
            edit(&mut input);
            let violations = validate_deploy(&input).expect_err(case);
            assert_one_violation(case, &violations, field, description);
        }
    }

    #[test]
    fn given_pod_names_may_be_any_dns1123_subdomain() {
        let long_label = "n".repeat(64);
        let longest = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        for name in [
            "web",
            "web.1",
            "nginx-1.27",
            "gcr.io-google-containers-pause",
            "a.b.c",
            "0",
            long_label.as_str(),
            longest.as_str(),
        ] {
            let input = DeployInput {
                name: name.to_owned(),
                ..valid()
            };
            let spec = validate_deploy(&input).unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert_eq!(spec.name, name);
            assert!(!spec.generated_name);
        }
    }

    #[test]
    fn a_full_valid_request_is_accepted_as_given() {
        let input = DeployInput {
            image: "ghcr.io/org/app:1.2".into(),
            namespace: "team-a".into(),
            name: "web-1".into(),
            labels: map(&[
                ("app", "web"),
                ("example.com/tier", ""),
                ("app.kubernetes.io/name", "web"),
            ]),
            annotations: map(&[
                ("note", "any text at all: {}\n"),
                ("Example.com/Owner", "me"),
            ]),
            env: [env("PATH"), env("_x"), env("my.var-1")]
                .into_iter()
                .chain(example_env())
                .collect(),
            ports: vec![
                port("http", 8080, Protocol::Tcp),
                port("dns", 53, Protocol::Udp),
                port("", 53, Protocol::Tcp),
                port("", 65535, Protocol::Sctp),
            ],
            command: vec!["/bin/sh".into(), "-c".into()],
            args: vec!["echo $((1+1)) ; exit 0".into(), String::new()],
            requests: map(&[
                ("cpu", "250m"),
                ("memory", "64Mi"),
                ("ephemeral-storage", "1Gi"),
            ]),
            limits: map(&[("cpu", "0.25"), ("memory", "128Mi")]),
            restart_policy: RestartPolicy::Never,
            request_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            dry_run: true,
            wait_for: WaitFor::Ready,
            wait_timeout: Some(Duration::from_secs(3600)),
            pod_security: Some(PodSecurityProfile::Restricted),
            workload: example_workload(),
        };
        let spec = validate_deploy(&input).expect("valid request");
        assert_eq!(spec.workload, example_workload());
        assert_eq!(spec.pod_security, Some(PodSecurityProfile::Restricted));
        assert_eq!(spec.image.path, "org/app");
        assert_eq!(spec.name, "web-1");
        assert!(!spec.generated_name);
        assert_eq!(spec.labels, input.labels);
        assert_eq!(spec.annotations, input.annotations);
        assert_eq!(spec.env, input.env);
        assert_eq!(spec.ports, input.ports);
        assert_eq!(spec.command, input.command);
        assert_eq!(spec.args, input.args);
        assert_eq!(spec.requests, input.requests);
        assert_eq!(spec.limits, input.limits);
        assert_eq!(spec.restart_policy, RestartPolicy::Never);
        assert_eq!(
            spec.request_id.as_deref(),
            Some("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
        assert!(spec.dry_run);
        assert_eq!(spec.wait, Some((WaitFor::Ready, Duration::from_secs(3600))));
        assert_eq!(spec.request_hash.len(), 64);
        assert!(
            spec.request_hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn several_violations_are_reported_together() {
        let input = DeployInput {
            image: "Nginx".into(),
            namespace: String::new(),
            labels: map(&[("Bad Key", "x")]),
            env: vec![env("OK"), env("1BAD")],
            ports: vec![port("", 0, Protocol::Tcp)],
            limits: map(&[("cpu", "x")]),
            request_id: "-".into(),
            ..DeployInput::default()
        };
        let violations = validate_deploy(&input).expect_err("invalid request");
        let fields: Vec<&str> = violations.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "image",
                "namespace",
                "labels[\"Bad Key\"]",
                "env[1].name",
                "ports[0].container_port",
                "resources.limits[\"cpu\"]",
                "request_id",
            ]
        );
        let text = violations.to_string();
        assert!(text.starts_with("image: \"Nginx\" is not a valid image reference: path component \"Nginx\" must be lower case; namespace: is required; "), "{text}");
        assert!(!text.ends_with(';') && !text.ends_with('.'), "{text}");
    }

    #[test]
    fn the_wait_defaults_and_the_name_is_generated() {
        let mut input = valid();
        let spec = validate_deploy(&input).expect("valid");
        assert_eq!(spec.wait, None);
        assert!(spec.generated_name);
        assert!(
            spec.name.starts_with("nginx-") && spec.name.len() == 11,
            "{}",
            spec.name
        );
        assert_eq!(spec.request_id, None);

        input.wait_for = WaitFor::Scheduled;
        assert_eq!(
            validate_deploy(&input).expect("valid").wait,
            Some((WaitFor::Scheduled, DEFAULT_WAIT_TIMEOUT))
        );
        input.wait_for = WaitFor::None;
        input.wait_timeout = Some(Duration::from_secs(10));
        assert_eq!(validate_deploy(&input).expect("valid").wait, None);

        input.request_id = "req-1".into();
        let first = validate_deploy(&input).expect("valid");
        let again = validate_deploy(&input).expect("valid");
        assert_eq!(
            first.name, again.name,
            "a retry gets the same generated name"
        );
        assert_eq!(first.request_hash, again.request_hash);
    }

    #[test]
    fn the_request_hash_covers_the_pod_and_nothing_else() {
        let base = DeployInput {
            labels: map(&[("a", "b")]),
            env: vec![env("A")],
            ..valid()
        };
        let hash = |input: &DeployInput| validate_deploy(input).expect("valid").request_hash;
        let original = hash(&base);

        #[rustfmt::skip]
        let same: Vec<(&str, Edit)> = vec![
            ("dry_run", |i| i.dry_run = true),
            ("wait_for", |i| i.wait_for = WaitFor::Ready),
            ("wait_timeout", |i| i.wait_timeout = Some(Duration::from_secs(5))),
            ("request_id", |i| i.request_id = "other".into()),
        ];
        for (case, edit) in same {
            let mut input = base.clone();
            edit(&mut input);
            assert_eq!(hash(&input), original, "{case} must not change the hash");
        }

        #[rustfmt::skip]
        let different: Vec<(&str, Edit)> = vec![
            ("image", |i| i.image = "nginx:1.28".into()),
            ("image spelling", |i| i.image = "docker.io/library/nginx:1.27".into()),
            ("namespace", |i| i.namespace = "team-b".into()),
            ("name", |i| i.name = "web".into()),
            ("label value", |i| i.labels = map(&[("a", "c")])),
            ("label split", |i| i.labels = map(&[("ab", "")])),
            ("annotation", |i| i.annotations = map(&[("a", "b")])),
            ("env value", |i| i.env[0].value = "w".into()),
            ("ports", |i| i.ports = vec![port("", 80, Protocol::Tcp)]),
            ("protocol", |i| i.ports = vec![port("", 80, Protocol::Udp)]),
            ("command", |i| i.command = vec!["a".into()]),
            ("args", |i| i.args = vec!["a".into()]),
            ("command split", |i| i.command = vec!["a".into(), "b".into()]),
            ("command and args", |i| { i.command = vec!["a".into()]; i.args = vec!["b".into()]; }),
            ("empty arg", |i| i.args = vec![String::new()]),
            ("requests", |i| i.requests = map(&[("cpu", "1")])),
            ("limits", |i| i.limits = map(&[("cpu", "1")])),
            ("restart_policy", |i| i.restart_policy = RestartPolicy::OnFailure),
            ("env value_from", |i| i.env = example_env()),
            ("env value_from optional", |i| {
                i.env = example_env();
                if let Some(EnvSource::SecretKey(key)) = &mut i.env[0].value_from { key.optional = true; }
            }),
            ("workload", |i| { i.ports = example_ports(); i.workload = example_workload(); }),
            ("probe timing", |i| {
                i.ports = example_ports();
                i.workload = example_workload();
                if let Some(probe) = &mut i.workload.probes.liveness { probe.period = Some(Duration::from_secs(7)); }
            }),
            ("probe kind", |i| {
                i.ports = example_ports();
                i.workload = example_workload();
                if let Some(probe) = &mut i.workload.probes.startup { probe.action = Some(ProbeAction::Exec(vec!["/bin/check".into()])); }
            }),
            ("env_from kind", |i| {
                i.ports = example_ports();
                i.workload = example_workload();
                i.workload.env_from[0].source = Some(EnvFromObject::ConfigMap("db-env".into()));
            }),
            ("pull secrets", |i| i.workload.image_pull_secrets = vec!["regcred".into()]),
            ("service_account", |i| i.workload.service_account = "runner".into()),
            ("node_selector", |i| i.workload.node_selector = map(&[("disk", "ssd")])),
            ("toleration", |i| i.workload.tolerations = vec![crate::domain::workload::Toleration {
                key: "k".into(), effect: Some(TaintEffect::NoExecute), toleration_seconds: Some(Duration::from_secs(1)),
                ..Default::default()
            }]),
        ];
        let mut seen = std::collections::BTreeSet::from([original.clone()]);
        for (case, edit) in different {
            let mut input = base.clone();
            edit(&mut input);
            let changed = hash(&input);
            assert!(seen.insert(changed), "{case} must give a hash of its own");
        }
    }

    #[test]
    fn namespace_and_pod_name_helpers() {
        assert_eq!(validate_namespace("namespace", "default"), Ok(()));
        let e = validate_namespace("namespace", "").expect_err("required");
        assert_eq!(e.to_string(), "namespace: is required");
        let e = validate_namespace("namespace", "Default").expect_err("upper case");
        assert_eq!(e.0[0].field, "namespace");
        assert!(
            e.0[0].description.contains("is not a DNS-1123 label"),
            "{e}"
        );

        assert_eq!(validate_pod_name("name", "web-1"), Ok(()));
        assert_eq!(validate_pod_name("name", "web.example-1"), Ok(()));
        let e = validate_pod_name("name", "").expect_err("required");
        assert_eq!(e.to_string(), "name: is required");
        let e = validate_pod_name("name", "Web_1").expect_err("malformed");
        assert!(
            e.to_string()
                .starts_with("name: \"Web_1\" is not a DNS-1123 subdomain"),
            "{e}"
        );
    }
}
