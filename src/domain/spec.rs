//! What a Deploy asks for: [`DeployInput`] as the caller sent it, and [`DeploySpec`] once
//! [`validate`](crate::domain::validate::validate_deploy) has accepted it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::domain::image::ImageReference;
use crate::domain::workload::{EnvSource, Reference, Workload, references};

/// A Deploy request as received, before any check. Empty strings mean "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployInput {
    /// Image reference, as typed by the caller.
    pub image: String,
    /// Namespace.
    pub namespace: String,
    /// Pod name; empty to generate one.
    pub name: String,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Extra annotations.
    pub annotations: BTreeMap<String, String>,
    /// Environment variables, in order.
    pub env: Vec<EnvVar>,
    /// Container ports.
    pub ports: Vec<Port>,
    /// Entrypoint override.
    pub command: Vec<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Resource requests, by resource name ("cpu", "memory", "ephemeral-storage").
    pub requests: BTreeMap<String, String>,
    /// Resource limits, by resource name.
    pub limits: BTreeMap<String, String>,
    /// Restart policy.
    pub restart_policy: RestartPolicy,
    /// Idempotency key; empty for none.
    pub request_id: String,
    /// Server-side dry run.
    pub dry_run: bool,
    /// What to wait for before answering.
    pub wait_for: WaitFor,
    /// Longest wait; `None` for the default.
    pub wait_timeout: Option<Duration>,
    /// The Pod Security profile asked for; `None` to let the service choose.
    pub pod_security: Option<PodSecurityProfile>,
    /// Probes, env from Secrets and ConfigMaps, pull secrets, ServiceAccount, scheduling.
    pub workload: Workload,
}

/// A validated Deploy request: every field is well-formed and the pod name is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploySpec {
    /// The parsed image reference.
    pub image: ImageReference,
    /// Namespace (a DNS-1123 label).
    pub namespace: String,
    /// The pod name, given or generated (a DNS-1123 label).
    pub name: String,
    /// Whether `name` was generated.
    pub generated_name: bool,
    /// Extra labels (valid, none reserved).
    pub labels: BTreeMap<String, String>,
    /// Extra annotations (valid, none reserved).
    pub annotations: BTreeMap<String, String>,
    /// Environment variables (valid, unique names).
    pub env: Vec<EnvVar>,
    /// Container ports (valid, unique per protocol).
    pub ports: Vec<Port>,
    /// Entrypoint override.
    pub command: Vec<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Resource requests (valid quantities).
    pub requests: BTreeMap<String, String>,
    /// Resource limits (valid quantities, none below its request).
    pub limits: BTreeMap<String, String>,
    /// Restart policy.
    pub restart_policy: RestartPolicy,
    /// Idempotency key, if any (a valid label value).
    pub request_id: Option<String>,
    /// Server-side dry run.
    pub dry_run: bool,
    /// What to wait for, and for how long at most.
    pub wait: Option<(WaitFor, Duration)>,
    /// The Pod Security profile asked for; `None` to let the service choose
    /// ([`resolve_profile`]).
    pub pod_security: Option<PodSecurityProfile>,
    /// A stable hash of everything that defines the pod (not the name when generated, not
    /// dry_run or the wait), to recognise a retry of the same request.
    pub request_hash: String,
    /// Probes, env from Secrets and ConfigMaps, pull secrets, ServiceAccount, scheduling (all
    /// valid).
    pub workload: Workload,
}

impl DeploySpec {
    /// Every Secret, ConfigMap and ServiceAccount the pod references, with the field that
    /// does: what the policy must allow before the pod is sent.
    #[must_use]
    pub fn references(&self) -> Vec<Reference> {
        references(&self.env, &self.workload)
    }
}

/// An environment variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Value; empty when `value_from` is set.
    pub value: String,
    /// Take the value from a key of a Secret or ConfigMap instead.
    pub value_from: Option<EnvSource>,
}

/// A container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Optional IANA service name; empty for none.
    pub name: String,
    /// Port number, as received (validated to 1..=65535).
    pub number: u32,
    /// Protocol.
    pub protocol: Protocol,
}

/// Network protocol of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The Kubernetes spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

/// Restart policy of the pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    /// Always restart (the default).
    #[default]
    Always,
    /// Restart on a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// The Kubernetes spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::OnFailure => "OnFailure",
            Self::Never => "Never",
        }
    }
}

/// What Deploy waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum WaitFor {
    /// Nothing: answer once created.
    #[default]
    None,
    /// Bound to a node.
    Scheduled,
    /// Phase Running.
    Running,
    /// Ready.
    Ready,
}

/// How long Deploy waits when the request names no timeout.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// The Pod Security Standards level a deployed pod is hardened to. Both levels drop every
/// capability, forbid privilege escalation and host namespaces, use the RuntimeDefault
/// seccomp profile and do not mount a ServiceAccount token; `Restricted` also requires a
/// non-root user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PodSecurityProfile {
    /// The Pod Security Standards' baseline level (and more: see above).
    Baseline,
    /// The Pod Security Standards' restricted level.
    Restricted,
}

impl PodSecurityProfile {
    /// The Pod Security Standards' name of the level, as in the
    /// `pod-security.kubernetes.io/enforce` label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }

    /// Parse a level name; `privileged` is not a profile this service creates pods with.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "baseline" => Some(Self::Baseline),
            "restricted" => Some(Self::Restricted),
            _ => None,
        }
    }
}

/// The profile a pod gets, or the floor a request asked to go below.
///
/// The operator's settings are a floor: the service's default and the policy's setting for
/// the namespace. A request may ask for more than the floor, never less (`Err(floor)`).
/// Without a request, the pod gets the strictest of the floor and the level the namespace's
/// `pod-security.kubernetes.io/enforce` label enforces, so that PodSecurity admits it.
///
/// A request may ask for less than the namespace's label enforces (but not less than the
/// floor): it is sent as asked, and the namespace's PodSecurity admission rejects it, which
/// the caller sees with the admission's reason.
///
/// # Errors
///
/// The floor, when the request asks for less.
pub fn resolve_profile(
    requested: Option<PodSecurityProfile>,
    default: PodSecurityProfile,
    policy: Option<PodSecurityProfile>,
    namespace_enforce: Option<&str>,
) -> Result<PodSecurityProfile, PodSecurityProfile> {
    let floor = policy.map_or(default, |policy| policy.max(default));
    match requested {
        Some(requested) if requested < floor => Err(floor),
        Some(requested) => Ok(requested),
        // "privileged" (or no label) enforces nothing beyond what every profile already does.
        None => Ok(namespace_enforce
            .and_then(PodSecurityProfile::parse)
            .map_or(floor, |enforced| enforced.max(floor))),
    }
}

/// CPU request of a container that asks for no CPU.
pub const DEFAULT_CPU_REQUEST: &str = "100m";
/// Memory request of a container that asks for no memory.
pub const DEFAULT_MEMORY_REQUEST: &str = "128Mi";
/// Memory limit of a container that asks for no memory.
pub const DEFAULT_MEMORY_LIMIT: &str = "256Mi";

/// The requests and limits a pod gets: the caller's, with defaults for what it left out.
///
/// - CPU: a request of [`DEFAULT_CPU_REQUEST`] when neither request nor limit is given; no
///   default CPU limit, since a CPU limit throttles a container even on an idle node.
/// - Memory: [`DEFAULT_MEMORY_REQUEST`] and [`DEFAULT_MEMORY_LIMIT`] when neither is given;
///   a request alone gets a limit equal to it, so that a container cannot grow past what it
///   asked for and take memory from its neighbours.
/// - A limit alone is left as is: Kubernetes then sets the request to the limit.
#[must_use]
pub fn effective_resources(
    requests: &BTreeMap<String, String>,
    limits: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let (mut requests, mut limits) = (requests.clone(), limits.clone());
    if !requests.contains_key("cpu") && !limits.contains_key("cpu") {
        requests.insert("cpu".to_owned(), DEFAULT_CPU_REQUEST.to_owned());
    }
    match (
        requests.get("memory").cloned(),
        limits.contains_key("memory"),
    ) {
        (None, false) => {
            requests.insert("memory".to_owned(), DEFAULT_MEMORY_REQUEST.to_owned());
            limits.insert("memory".to_owned(), DEFAULT_MEMORY_LIMIT.to_owned());
        }
        (Some(request), false) => {
            limits.insert("memory".to_owned(), request);
        }
        (_, true) => {}
    }
    (requests, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PodSecurityProfile::{Baseline, Restricted};

    /// requested, default, policy, namespace label, expected.
    type ProfileCase = (
        Option<PodSecurityProfile>,
        PodSecurityProfile,
        Option<PodSecurityProfile>,
        Option<&'static str>,
        Result<PodSecurityProfile, PodSecurityProfile>,
    );
    type Pairs = &'static [(&'static str, &'static str)];

    #[test]
    fn the_profile_is_the_requested_one_or_the_strictest_setting() {
        #[rustfmt::skip]
        let cases: &[ProfileCase] = &[
            // requested, default,  policy,           label,              result
            (None,             Baseline,   None,             None,               Ok(Baseline)),
            (None,             Restricted, None,             None,               Ok(Restricted)),
            (None,             Baseline,   Some(Restricted), None,               Ok(Restricted)),
            (None,             Baseline,   None,             Some("restricted"), Ok(Restricted)),
            (None,             Baseline,   None,             Some("baseline"),   Ok(Baseline)),
            (None,             Baseline,   None,             Some("privileged"), Ok(Baseline)),
            (None,             Restricted, Some(Baseline),   Some("privileged"), Ok(Restricted)),
            (None,             Baseline,   None,             Some("nonsense"),   Ok(Baseline)),
            (Some(Restricted), Baseline,   None,             None,               Ok(Restricted)),
            // Below the namespace's label but not the floor: sent, PodSecurity decides.
            (Some(Baseline),   Baseline,   None,             Some("restricted"), Ok(Baseline)),
            // Below the operator's floor: refused.
            (Some(Baseline),   Restricted, None,             None,               Err(Restricted)),
            (Some(Baseline),   Baseline,   Some(Restricted), Some("restricted"), Err(Restricted)),
        ];
        for (requested, default, policy, label, expected) in cases {
            assert_eq!(
                resolve_profile(*requested, *default, *policy, *label),
                *expected,
                "{requested:?} {default:?} {policy:?} {label:?}"
            );
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn resources_get_defaults_for_what_is_left_out() {
        #[rustfmt::skip]
        let cases: &[(Pairs, Pairs, Pairs, Pairs)] = &[
            // requests, limits -> requests, limits
            (&[], &[],
             &[("cpu", "100m"), ("memory", "128Mi")], &[("memory", "256Mi")]),
            (&[("cpu", "2")], &[],
             &[("cpu", "2"), ("memory", "128Mi")], &[("memory", "256Mi")]),
            (&[], &[("cpu", "1")],
             &[("memory", "128Mi")], &[("cpu", "1"), ("memory", "256Mi")]),
            (&[("memory", "1Gi")], &[],
             &[("cpu", "100m"), ("memory", "1Gi")], &[("memory", "1Gi")]),
            (&[], &[("memory", "64Mi")],
             &[("cpu", "100m")], &[("memory", "64Mi")]),
            (&[("memory", "1Gi")], &[("memory", "2Gi")],
             &[("cpu", "100m"), ("memory", "1Gi")], &[("memory", "2Gi")]),
        ];
        for (requests, limits, want_requests, want_limits) in cases {
            let (got_requests, got_limits) = effective_resources(&map(requests), &map(limits));
            assert_eq!(got_requests, map(want_requests), "{requests:?} {limits:?}");
            assert_eq!(got_limits, map(want_limits), "{requests:?} {limits:?}");
        }
    }
}
