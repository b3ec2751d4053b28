//! What a Deploy asks for: [`DeployInput`] as the caller sent it, and [`DeploySpec`] once
//! [`validate`](crate::domain::validate::validate_deploy) has accepted it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::domain::image::ImageReference;

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
    /// A stable hash of everything that defines the pod (not the name when generated, not
    /// dry_run or the wait), to recognise a retry of the same request.
    pub request_hash: String,
}

/// An environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
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
