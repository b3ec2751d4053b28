//! What an ApplyDeployment asks for: [`DeploymentInput`] as received, and [`DeploymentSpec`]
//! once [`validate_deployment`] has accepted it; and the request history that makes applies,
//! restarts and rollbacks idempotent ([`request_history`], [`recorded_hash`]).
//!
//! The pod template is a Deploy request's pod: it is validated by the same rules
//! ([`validate_deploy`]), so every pod rule applies to Deployments unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::domain::names::{DNS1123_LABEL_MAX_LEN, is_dns1123_label};
use crate::domain::rollout::{RolloutGoal, Strategy};
use crate::domain::spec::{DEFAULT_WAIT_TIMEOUT, DeployInput, DeploySpec, RestartPolicy};
use crate::domain::validate::validate_deploy;
use crate::domain::{RESERVED_PREFIX, Violations};

/// The label that ties a Deployment, its pod template, ReplicaSets, pods and Service together
/// (with the managed-by label, it is the Deployment's selector).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Annotation recording the request_ids (with their hashes) of the latest changes made to a
/// Deployment by this service; the Deployment controller copies it onto the new ReplicaSet.
pub const REQUEST_HISTORY_ANNOTATION: &str = "k8s-deployer.io/request-history";
/// Most request_ids the history keeps.
pub const REQUEST_HISTORY_LEN: usize = 20;
/// Hex digits of a request hash kept in the history.
const HISTORY_HASH_LEN: usize = 16;
/// Most replicas a Deployment may ask for.
pub const MAX_REPLICAS: u32 = 1000;
/// Longest change cause.
const MAX_CHANGE_CAUSE_LEN: usize = 1024;

/// An ApplyDeployment request as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentInput {
    /// The pod template, as a Deploy request (its wait fields unused but `wait_timeout`).
    pub pod: DeployInput,
    /// Desired replicas; `None` to keep the current number (1 for a new Deployment).
    pub replicas: Option<u32>,
    /// The strategy as received: its type and bounds as written (empty for the default).
    pub strategy: StrategyInput,
    /// Progress deadline; `None` for Kubernetes' default.
    pub progress_deadline: Option<Duration>,
    /// Create a Service too.
    pub expose: bool,
    /// Why the change is made; empty for none.
    pub change_cause: String,
    /// What to wait for; `None` not to wait.
    pub wait_for: Option<RolloutGoal>,
}

/// A strategy as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrategyInput {
    /// Recreate rather than rolling update.
    pub recreate: bool,
    /// Max surge as written; empty for the default.
    pub max_surge: String,
    /// Max unavailable as written; empty for the default.
    pub max_unavailable: String,
}

/// A validated ApplyDeployment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSpec {
    /// The pod template's spec; `name` is the Deployment's (a DNS-1123 label).
    pub pod: DeploySpec,
    /// Desired replicas, `None` to keep the current number.
    pub replicas: Option<i32>,
    /// The strategy.
    pub strategy: Strategy,
    /// Progress deadline in seconds.
    pub progress_deadline_seconds: Option<i32>,
    /// Create a Service too.
    pub expose: bool,
    /// Why the change is made.
    pub change_cause: Option<String>,
    /// What to wait for, and for how long at most.
    pub wait: Option<(RolloutGoal, Duration)>,
    /// A stable hash of everything that defines the Deployment, to recognise a retry.
    pub request_hash: String,
}

/// Check an ApplyDeployment request and settle the name. Every violation is reported.
pub fn validate_deployment(input: &DeploymentInput) -> Result<DeploymentSpec, Violations> {
    let mut violations = Violations::default();
    let pod = validate_deploy(&input.pod)
        .map_err(|v| violations.extend(v))
        .ok();
    if !input.pod.name.is_empty()
        && input.pod.name.len() <= DNS1123_LABEL_MAX_LEN
        && let Err(e) = is_dns1123_label(&input.pod.name)
    {
        violations.push("name", format!("{e} (it names the Service too)"));
    } else if input.pod.name.len() > DNS1123_LABEL_MAX_LEN {
        violations.push(
            "name",
            format!(
                "must be at most {DNS1123_LABEL_MAX_LEN} characters (it names the Service too)"
            ),
        );
    }
    if input.pod.labels.contains_key(INSTANCE_LABEL) {
        violations.push(
            format!("labels[{INSTANCE_LABEL:?}]"),
            format!("key {INSTANCE_LABEL:?} is reserved for k8s-deployer (it selects the pods)"),
        );
    }
    if input.pod.restart_policy != RestartPolicy::Always {
        violations.push(
            "restart_policy",
            "must be unspecified or ALWAYS: a Deployment's pods always restart",
        );
    }
    if let Some(replicas) = input.replicas
        && replicas > MAX_REPLICAS
    {
        violations.push(
            "replicas",
            format!("must be at most {MAX_REPLICAS}, not {replicas}"),
        );
    }
    let strategy = check_strategy(&mut violations, &input.strategy);
    let progress_deadline_seconds = input.progress_deadline.and_then(|deadline| {
        let seconds = i32::try_from(deadline.as_secs()).ok();
        match seconds {
            Some(seconds) if deadline.subsec_nanos() == 0 && seconds >= 1 => Some(seconds),
            _ => {
                violations.push(
                    "progress_deadline",
                    format!(
                        "must be whole seconds, at least 1s, not {:?}",
                        deadline.as_secs_f64()
                    ),
                );
                None
            }
        }
    });
    if input.expose && input.pod.ports.is_empty() {
        violations.push("expose", "needs at least one port in ports");
    }
    if input.change_cause.len() > MAX_CHANGE_CAUSE_LEN {
        violations.push(
            "change_cause",
            format!("must be at most {MAX_CHANGE_CAUSE_LEN} bytes"),
        );
    }
    let (Some(pod), true) = (pod, violations.is_empty()) else {
        return Err(violations);
    };
    let replicas = input.replicas.and_then(|r| i32::try_from(r).ok());
    let change_cause = (!input.change_cause.is_empty()).then(|| input.change_cause.clone());
    let wait = input
        .wait_for
        .map(|goal| (goal, input.pod.wait_timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT)));
    let request_hash = deployment_hash(
        &pod.request_hash,
        replicas,
        &strategy,
        progress_deadline_seconds,
        input.expose,
        change_cause.as_deref(),
    );
    Ok(DeploymentSpec {
        pod,
        replicas,
        strategy,
        progress_deadline_seconds,
        expose: input.expose,
        change_cause,
        wait,
        request_hash,
    })
}

/// A count ("1") or a percentage ("25%", at most 100%).
fn int_or_percent(value: &str) -> Result<u32, String> {
    let (digits, percent) = match value.strip_suffix('%') {
        Some(digits) => (digits, true),
        None => (value, false),
    };
    let number: u32 = digits
        .parse()
        .map_err(|_| format!("{value:?} is not a count (\"1\") or a percentage (\"25%\")"))?;
    if percent && number > 100 {
        return Err(format!("{value:?}: a percentage is at most 100%"));
    }
    Ok(number)
}

fn check_strategy(violations: &mut Violations, input: &StrategyInput) -> Strategy {
    let given = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    if input.recreate {
        for (field, value) in [
            ("strategy.max_surge", &input.max_surge),
            ("strategy.max_unavailable", &input.max_unavailable),
        ] {
            if !value.is_empty() {
                violations.push(field, "must be empty with RECREATE");
            }
        }
        return Strategy::Recreate;
    }
    let mut parse = |field: &str, value: &str| {
        if value.is_empty() {
            return None;
        }
        int_or_percent(value)
            .map_err(|e| violations.push(field, e))
            .ok()
    };
    let surge = parse("strategy.max_surge", &input.max_surge);
    let unavailable = parse("strategy.max_unavailable", &input.max_unavailable);
    if surge == Some(0) && unavailable == Some(0) {
        violations.push(
            "strategy.max_unavailable",
            "must not be 0 when max_surge is 0: the rollout could not make progress",
        );
    }
    match (given(&input.max_surge), given(&input.max_unavailable)) {
        (None, None) => Strategy::RollingUpdate,
        (max_surge, max_unavailable) => Strategy::RollingUpdateWith {
            max_surge,
            max_unavailable,
        },
    }
}

/// SHA-256 of the pod's request hash and the Deployment's own fields, in hex.
fn deployment_hash(
    pod_hash: &str,
    replicas: Option<i32>,
    strategy: &Strategy,
    progress_deadline_seconds: Option<i32>,
    expose: bool,
    change_cause: Option<&str>,
) -> String {
    let strategy = match strategy {
        Strategy::RollingUpdate => "rolling".to_owned(),
        Strategy::RollingUpdateWith {
            max_surge,
            max_unavailable,
        } => format!("rolling {max_surge:?} {max_unavailable:?}"),
        Strategy::Recreate => "recreate".to_owned(),
    };
    // Debug formatting quotes and escapes every part, so that no two requests encode alike.
    let encoded = format!(
        "k8s-deployer deployment v1 {pod_hash:?} {replicas:?} {strategy:?} \
         {progress_deadline_seconds:?} {expose:?} {change_cause:?}"
    );
    hex(&Sha256::digest(encoded.as_bytes()))
}

/// The hash a restart or a rollback is recorded with in the request history.
#[must_use]
pub fn operation_hash(operation: &str) -> String {
    hex(&Sha256::digest(
        format!("k8s-deployer operation v1 {operation:?}").as_bytes(),
    ))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// The request history of an object's annotations with `request_id` recorded last (and an
/// earlier entry for it dropped), at most [`REQUEST_HISTORY_LEN`] entries: `id=hash,...`.
#[must_use]
pub fn request_history(
    annotations: &BTreeMap<String, String>,
    request_id: &str,
    hash: &str,
) -> String {
    let mut entries: Vec<&str> = annotations
        .get(REQUEST_HISTORY_ANNOTATION)
        .map(|history| {
            history
                .split(',')
                .filter(|entry| {
                    entry
                        .split_once('=')
                        .is_some_and(|(id, _)| id != request_id)
                })
                .collect()
        })
        .unwrap_or_default();
    let short = &hash[..hash.len().min(HISTORY_HASH_LEN)];
    let entry = format!("{request_id}={short}");
    entries.push(&entry);
    let skip = entries.len().saturating_sub(REQUEST_HISTORY_LEN);
    entries[skip..].join(",")
}

/// The (shortened) hash `request_id` was recorded with in these annotations' history, if any.
#[must_use]
pub fn recorded_hash(annotations: &BTreeMap<String, String>, request_id: &str) -> Option<String> {
    annotations
        .get(REQUEST_HISTORY_ANNOTATION)?
        .split(',')
        .filter_map(|entry| entry.split_once('='))
        .find(|(id, _)| *id == request_id)
        .map(|(_, hash)| hash.to_owned())
}

/// Whether a recorded (shortened) hash is the one of `hash`.
#[must_use]
pub fn same_request(recorded: &str, hash: &str) -> bool {
    !recorded.is_empty() && hash.starts_with(recorded)
}

/// Whether a key is one this service reserves (its own bookkeeping).
#[must_use]
pub fn is_reserved_key(key: &str) -> bool {
    key.to_ascii_lowercase().starts_with(RESERVED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> DeploymentInput {
        DeploymentInput {
            pod: DeployInput {
                image: "nginx:1.27".into(),
                namespace: "team-a".into(),
                name: "web".into(),
                ..DeployInput::default()
            },
            ..DeploymentInput::default()
        }
    }

    #[test]
    fn each_rule_names_its_field() {
        type Edit = fn(&mut DeploymentInput);
        #[rustfmt::skip]
        let cases: &[(&str, Edit)] = &[
            ("name", |i| i.pod.name = "web.app".into()),
            ("name", |i| i.pod.name = "a".repeat(64)),
            ("restart_policy", |i| i.pod.restart_policy = RestartPolicy::Never),
            ("replicas", |i| i.replicas = Some(1001)),
            ("strategy.max_surge", |i| i.strategy.max_surge = "101%".into()),
            ("strategy.max_surge", |i| i.strategy.max_surge = "x".into()),
            ("strategy.max_unavailable", |i| {
                i.strategy.max_surge = "0".into();
                i.strategy.max_unavailable = "0%".into();
            }),
            ("strategy.max_surge", |i| {
                i.strategy.recreate = true;
                i.strategy.max_surge = "1".into();
            }),
            ("progress_deadline", |i| i.progress_deadline = Some(Duration::from_millis(1500))),
            ("progress_deadline", |i| i.progress_deadline = Some(Duration::ZERO)),
            ("expose", |i| i.expose = true),
            ("labels[\"app.kubernetes.io/instance\"]", |i| {
                i.pod.labels.insert(INSTANCE_LABEL.into(), "x".into());
            }),
            ("image", |i| i.pod.image = "Nginx:".into()),
        ];
        for (field, edit) in cases {
            let mut input = valid();
            edit(&mut input);
            let violations = validate_deployment(&input).expect_err(field);
            assert!(
                violations.0.iter().any(|v| v.field == *field),
                "{field}: {violations}"
            );
        }
    }

    #[test]
    fn a_valid_request_keeps_what_it_asked_for() {
        let mut input = valid();
        input.replicas = Some(3);
        input.strategy.max_surge = "1".into();
        input.progress_deadline = Some(Duration::from_secs(30));
        input.change_cause = "v2".into();
        input.wait_for = Some(RolloutGoal::RolledOut);
        let spec = validate_deployment(&input).expect("valid");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.strategy,
            Strategy::RollingUpdateWith {
                max_surge: Some("1".into()),
                max_unavailable: None
            }
        );
        assert_eq!(spec.progress_deadline_seconds, Some(30));
        assert_eq!(
            spec.wait,
            Some((RolloutGoal::RolledOut, DEFAULT_WAIT_TIMEOUT))
        );
        // The hash covers the Deployment's fields, not the wait.
        let mut other = input.clone();
        other.wait_for = None;
        assert_eq!(
            validate_deployment(&other).expect("valid").request_hash,
            spec.request_hash
        );
        other.replicas = Some(4);
        assert_ne!(
            validate_deployment(&other).expect("valid").request_hash,
            spec.request_hash
        );
    }

    #[test]
    fn the_history_keeps_the_latest_ids() {
        let mut annotations = BTreeMap::new();
        for i in 0..25 {
            let history = request_history(&annotations, &format!("r{i}"), &"ab".repeat(32));
            annotations.insert(REQUEST_HISTORY_ANNOTATION.to_owned(), history);
        }
        assert_eq!(recorded_hash(&annotations, "r0"), None);
        let recorded = recorded_hash(&annotations, "r24").expect("recorded");
        assert!(same_request(&recorded, &"ab".repeat(32)));
        assert!(!same_request(&recorded, &"cd".repeat(32)));
        let history = request_history(&annotations, "r10", &"cd".repeat(32));
        assert!(history.ends_with("r10=cdcdcdcdcdcdcdcd"), "{history}");
        assert_eq!(history.matches("r10=").count(), 1);
    }
}
