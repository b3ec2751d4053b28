//! How Deployments, their rollouts and revisions are shown: the progress line, the tables of
//! `deployment get`, `deployment list` and `rollout history`, and their JSON form. Field
//! names of the JSON types are stable, as the pods' are.

use std::collections::BTreeMap;

use console::Style;
use k8s_deployer::proto::deployer::v1 as pb;
use serde::Serialize;

use super::{ConditionJson, age, enum_name, reason_name, rfc3339, timestamp};

/// `COMPLETE`, `FAILED`, ... (`UNSPECIFIED` before the Deployment exists).
pub(crate) fn phase_name(phase: pb::RolloutPhase) -> &'static str {
    enum_name(phase.as_str_name(), "ROLLOUT_PHASE_")
}

/// `NEW_PODS_FAILING`, ...; `None` when unspecified.
pub(crate) fn rollout_reason_name(reason: pb::RolloutReason) -> Option<&'static str> {
    match reason {
        pb::RolloutReason::Unspecified => None,
        other => Some(enum_name(other.as_str_name(), "ROLLOUT_REASON_")),
    }
}

pub(super) fn phase_style(phase: pb::RolloutPhase) -> Style {
    match phase {
        pb::RolloutPhase::Complete => Style::new().green(),
        pb::RolloutPhase::Failed => Style::new().red(),
        pb::RolloutPhase::Paused => Style::new().yellow(),
        pb::RolloutPhase::Observing | pb::RolloutPhase::Progressing => Style::new().cyan(),
        pb::RolloutPhase::Unspecified => Style::new().dim(),
    }
}

/// The rollout of a Deployment, or an empty one when the server sent none.
pub(crate) fn rollout_of(deployment: &pb::Deployment) -> pb::RolloutStatus {
    deployment.rollout.clone().unwrap_or_default()
}

/// The progress line: `web: PROGRESSING 2/3 updated, 1 available (revision 2)`.
pub(crate) fn progress_line(deployment: &pb::Deployment) -> String {
    let rollout = rollout_of(deployment);
    format!(
        "{}: {} {}/{} updated, {} available (revision {})",
        deployment.name,
        phase_name(rollout.phase()),
        rollout.updated,
        rollout.desired,
        rollout.available,
        rollout.revision
    )
}

/// `Kind/name` of an Event's object, e.g. `ReplicaSet/web-5d8f7`.
pub(super) fn event_subject(event: &pb::RolloutEvent) -> String {
    format!("{}/{}", event.kind, event.name)
}

fn dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

fn strategy_text(strategy: Option<&pb::DeploymentStrategy>) -> String {
    let Some(strategy) = strategy else {
        return "rolling update".to_owned();
    };
    match strategy.r#type() {
        pb::StrategyType::Recreate => "recreate".to_owned(),
        pb::StrategyType::RollingUpdate | pb::StrategyType::Unspecified => format!(
            "rolling update, max surge {}, max unavailable {}",
            if strategy.max_surge.is_empty() {
                "25%"
            } else {
                &strategy.max_surge
            },
            if strategy.max_unavailable.is_empty() {
                "25%"
            } else {
                &strategy.max_unavailable
            },
        ),
    }
}

fn protocol_name(protocol: pb::Protocol) -> &'static str {
    enum_name(protocol.as_str_name(), "PROTOCOL_")
}

/// `web 10.96.0.12 http:80→80/TCP`.
fn service_text(service: &pb::ExposedService) -> String {
    let ports: Vec<String> = service
        .ports
        .iter()
        .map(|port| {
            format!(
                "{}:{}→{}/{}",
                port.name,
                port.port,
                port.target_port,
                protocol_name(port.protocol())
            )
        })
        .collect();
    format!(
        "{} {} {}",
        service.name,
        dash(&service.cluster_ip),
        ports.join(" ")
    )
}

/// The rows of `deployment get`, the phase `coloured` for a terminal.
pub(super) fn deployment_table(deployment: &pb::Deployment, coloured: bool) -> String {
    let rollout = rollout_of(deployment);
    let phase = phase_name(rollout.phase());
    let mut phase_text = if coloured {
        phase_style(rollout.phase())
            .bold()
            .apply_to(phase)
            .to_string()
    } else {
        phase.to_owned()
    };
    if let Some(reason) = rollout_reason_name(rollout.reason()) {
        phase_text.push_str(&format!(" ({reason})"));
    }
    let mut rows: Vec<(&str, String)> = vec![
        (
            "deployment",
            format!("{}/{}", deployment.namespace, deployment.name),
        ),
        ("image", dash(&deployment.image)),
        (
            "replicas",
            format!(
                "{} desired, {} updated, {} ready, {} available",
                rollout.desired, rollout.updated, rollout.ready, rollout.available
            ),
        ),
        ("rollout", phase_text),
        ("message", dash(&rollout.message)),
    ];
    if let Some(reason) = reason_name(rollout.pod_reason()) {
        rows.push(("pod reason", reason.to_owned()));
    }
    rows.push((
        "revision",
        format!(
            "{} (generation {}, observed {})",
            rollout.revision, rollout.generation, rollout.observed_generation
        ),
    ));
    if rollout.old_available > 0 {
        rows.push((
            "old pods",
            format!("{} available, still serving", rollout.old_available),
        ));
    }
    rows.push(("strategy", strategy_text(deployment.strategy.as_ref())));
    if let Some(deadline) = &deployment.progress_deadline {
        rows.push((
            "deadline",
            format!("{}s without progress", deadline.seconds),
        ));
    }
    if deployment.paused {
        rows.push(("paused", "yes".to_owned()));
    }
    rows.push((
        "service",
        deployment
            .service
            .as_ref()
            .map_or_else(|| "-".to_owned(), service_text),
    ));
    rows.push((
        "created",
        timestamp(deployment.created.as_ref()).map_or_else(|| "-".to_owned(), |t| t.to_string()),
    ));
    rows.push(("request ID", dash(&deployment.request_id)));
    rows.push((
        "conditions",
        dash(
            &rollout
                .conditions
                .iter()
                .map(|c| format!("{}={}", c.r#type, c.status))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ));
    for rs in &rollout.replica_sets {
        rows.push((
            "replica set",
            format!(
                "{}  revision {}  {}  {}/{} ready{}",
                rs.name,
                rs.revision,
                rs.image,
                rs.ready,
                rs.replicas,
                if rs.current { "  current" } else { "" }
            ),
        ));
    }
    if deployment.deleting {
        rows.push(("deleting", "yes".to_owned()));
    }
    let mut out = String::new();
    for (key, value) in rows {
        out.push_str(&format!("{key:<11} {value}\n"));
    }
    out
}

/// The table of `deployment list` (empty for no Deployments).
pub(super) fn deployments_table(deployments: &[pb::Deployment], coloured: bool) -> String {
    if deployments.is_empty() {
        return String::new();
    }
    let width = deployments
        .iter()
        .map(|d| d.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:<12} {:<7} {:<10} {:<9} {:<8} {:<6} IMAGE\n",
        "NAME", "PHASE", "READY", "UP-TO-DATE", "AVAILABLE", "REVISION", "AGE"
    );
    let now = jiff::Timestamp::now();
    for deployment in deployments {
        let rollout = rollout_of(deployment);
        let phase = format!("{:<12}", phase_name(rollout.phase()));
        out.push_str(&format!(
            "{:<width$}  {} {:<7} {:<10} {:<9} {:<8} {:<6} {}\n",
            deployment.name,
            if coloured {
                phase_style(rollout.phase()).apply_to(phase).to_string()
            } else {
                phase
            },
            format!("{}/{}", rollout.ready, rollout.desired),
            rollout.updated,
            rollout.available,
            rollout.revision,
            age(deployment.created.as_ref(), now),
            deployment.image
        ));
    }
    out
}

/// The table of `rollout history`, oldest first (empty for no revisions).
pub(super) fn revisions_table(revisions: &[pb::Revision]) -> String {
    if revisions.is_empty() {
        return String::new();
    }
    let image_width = revisions
        .iter()
        .map(|r| r.image.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let cause_width = revisions
        .iter()
        .map(|r| r.change_cause.chars().count())
        .max()
        .unwrap_or(12)
        .max(12);
    let mut out = format!(
        "{:<8}  {:<image_width$}  {:<cause_width$}  CREATED\n",
        "REVISION", "IMAGE", "CHANGE-CAUSE"
    );
    for revision in revisions {
        out.push_str(&format!(
            "{:<8}  {:<image_width$}  {:<cause_width$}  {}\n",
            revision.revision,
            revision.image,
            dash(&revision.change_cause),
            timestamp(revision.created.as_ref()).map_or_else(
                || "-".to_owned(),
                |t| t
                    .round(jiff::Unit::Second)
                    .map_or_else(|_| t.to_string(), |t| t.to_string())
            ),
        ));
    }
    out
}

/// A Deployment in JSON output (`deployment` of the deployment records and of `result`).
#[derive(Debug, Serialize)]
pub(crate) struct DeploymentJson {
    namespace: String,
    name: String,
    uid: String,
    resource_version: String,
    image: String,
    replicas: i32,
    strategy: StrategyJson,
    progress_deadline_seconds: Option<i64>,
    paused: bool,
    created: Option<String>,
    request_id: Option<String>,
    labels: BTreeMap<String, String>,
    deleting: bool,
    service: Option<ServiceJson>,
    rollout: RolloutJson,
}

/// A Deployment's update strategy in JSON output.
#[derive(Debug, Serialize)]
struct StrategyJson {
    /// ROLLING_UPDATE or RECREATE.
    r#type: &'static str,
    /// null: Kubernetes' default (25%).
    max_surge: Option<String>,
    max_unavailable: Option<String>,
}

/// A rollout in JSON output.
#[derive(Debug, Serialize)]
struct RolloutJson {
    generation: i64,
    observed_generation: i64,
    revision: i64,
    desired: i32,
    updated: i32,
    ready: i32,
    available: i32,
    unavailable: i32,
    terminating: i32,
    /// OBSERVING, PROGRESSING, COMPLETE, FAILED, PAUSED.
    phase: &'static str,
    /// e.g. UPDATING_REPLICAS, ROLLED_OUT, NEW_PODS_FAILING; null when unspecified.
    reason: Option<&'static str>,
    /// kubectl's wording.
    message: String,
    /// NEW_PODS_FAILING: how the new pods fail, e.g. IMAGE_PULL_FAILED.
    pod_reason: Option<&'static str>,
    /// Available pods of older revisions (still serving during a failed rollout).
    old_available: i32,
    new_replica_set: Option<String>,
    conditions: Vec<ConditionJson>,
    replica_sets: Vec<ReplicaSetJson>,
}

/// A ReplicaSet in JSON output.
#[derive(Debug, Serialize)]
struct ReplicaSetJson {
    name: String,
    revision: i64,
    image: String,
    replicas: i32,
    ready: i32,
    available: i32,
    current: bool,
    created: Option<String>,
}

/// An exposed Service in JSON output.
#[derive(Debug, Serialize)]
struct ServiceJson {
    name: String,
    cluster_ip: Option<String>,
    ports: Vec<ServicePortJson>,
}

/// A Service port in JSON output.
#[derive(Debug, Serialize)]
struct ServicePortJson {
    name: String,
    port: u32,
    target_port: u32,
    /// TCP, UDP or SCTP.
    protocol: &'static str,
}

/// A revision in JSON output (`revision` of the `revision` records).
#[derive(Debug, Serialize)]
pub(crate) struct RevisionJson {
    revision: i64,
    image: String,
    change_cause: Option<String>,
    created: Option<String>,
    replica_set: String,
    replicas: i32,
    current: bool,
    request_id: Option<String>,
}

/// An Event of a rollout in JSON output (`event` of its `event` records).
#[derive(Debug, Serialize)]
pub(crate) struct RolloutEventJson {
    /// Deployment, ReplicaSet or Pod.
    kind: String,
    name: String,
    /// Normal or Warning.
    r#type: String,
    reason: String,
    message: String,
    count: i32,
    source: String,
    last_time: Option<String>,
}

fn some(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

impl From<&pb::Deployment> for DeploymentJson {
    fn from(deployment: &pb::Deployment) -> DeploymentJson {
        let rollout = rollout_of(deployment);
        let strategy = deployment.strategy.clone().unwrap_or_default();
        DeploymentJson {
            namespace: deployment.namespace.clone(),
            name: deployment.name.clone(),
            uid: deployment.uid.clone(),
            resource_version: deployment.resource_version.clone(),
            image: deployment.image.clone(),
            replicas: deployment.replicas,
            strategy: StrategyJson {
                r#type: match strategy.r#type() {
                    pb::StrategyType::Recreate => "RECREATE",
                    pb::StrategyType::RollingUpdate | pb::StrategyType::Unspecified => {
                        "ROLLING_UPDATE"
                    }
                },
                max_surge: some(&strategy.max_surge),
                max_unavailable: some(&strategy.max_unavailable),
            },
            progress_deadline_seconds: deployment.progress_deadline.map(|d| d.seconds),
            paused: deployment.paused,
            created: rfc3339(deployment.created.as_ref()),
            request_id: some(&deployment.request_id),
            labels: deployment
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            deleting: deployment.deleting,
            service: deployment.service.as_ref().map(|service| ServiceJson {
                name: service.name.clone(),
                cluster_ip: some(&service.cluster_ip),
                ports: service
                    .ports
                    .iter()
                    .map(|port| ServicePortJson {
                        name: port.name.clone(),
                        port: port.port,
                        target_port: port.target_port,
                        protocol: protocol_name(port.protocol()),
                    })
                    .collect(),
            }),
            rollout: RolloutJson {
                generation: rollout.generation,
                observed_generation: rollout.observed_generation,
                revision: rollout.revision,
                desired: rollout.desired,
                updated: rollout.updated,
                ready: rollout.ready,
                available: rollout.available,
                unavailable: rollout.unavailable,
                terminating: rollout.terminating,
                phase: phase_name(rollout.phase()),
                reason: rollout_reason_name(rollout.reason()),
                message: rollout.message.clone(),
                pod_reason: reason_name(rollout.pod_reason()),
                old_available: rollout.old_available,
                new_replica_set: some(&rollout.new_replica_set),
                conditions: rollout.conditions.iter().map(ConditionJson::from).collect(),
                replica_sets: rollout
                    .replica_sets
                    .iter()
                    .map(|rs| ReplicaSetJson {
                        name: rs.name.clone(),
                        revision: rs.revision,
                        image: rs.image.clone(),
                        replicas: rs.replicas,
                        ready: rs.ready,
                        available: rs.available,
                        current: rs.current,
                        created: rfc3339(rs.created.as_ref()),
                    })
                    .collect(),
            },
        }
    }
}

impl From<&pb::Revision> for RevisionJson {
    fn from(revision: &pb::Revision) -> RevisionJson {
        RevisionJson {
            revision: revision.revision,
            image: revision.image.clone(),
            change_cause: some(&revision.change_cause),
            created: rfc3339(revision.created.as_ref()),
            replica_set: revision.replica_set.clone(),
            replicas: revision.replicas,
            current: revision.current,
            request_id: some(&revision.request_id),
        }
    }
}

impl From<&pb::RolloutEvent> for RolloutEventJson {
    fn from(event: &pb::RolloutEvent) -> RolloutEventJson {
        RolloutEventJson {
            kind: event.kind.clone(),
            name: event.name.clone(),
            r#type: event.r#type.clone(),
            reason: event.reason.clone(),
            message: event.message.clone(),
            count: event.count,
            source: event.source.clone(),
            last_time: rfc3339(event.last_time.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// web, rolling out revision 2: 2 of 3 updated, 1 available, 2 old pods still serving.
    fn rolling() -> pb::Deployment {
        pb::Deployment {
            namespace: "demo".into(),
            name: "web".into(),
            image: "nginx:1.27".into(),
            replicas: 3,
            rollout: Some(pb::RolloutStatus {
                generation: 2,
                observed_generation: 2,
                revision: 2,
                desired: 3,
                updated: 2,
                ready: 1,
                available: 1,
                phase: pb::RolloutPhase::Progressing.into(),
                reason: pb::RolloutReason::UpdatingReplicas.into(),
                message: "Waiting for deployment \"web\" rollout to finish: 2 out of 3 new \
                          replicas have been updated..."
                    .into(),
                old_available: 2,
                replica_sets: vec![pb::ReplicaSetSummary {
                    name: "web-2".into(),
                    revision: 2,
                    image: "nginx:1.27".into(),
                    replicas: 2,
                    current: true,
                    ..pb::ReplicaSetSummary::default()
                }],
                ..pb::RolloutStatus::default()
            }),
            ..pb::Deployment::default()
        }
    }

    #[test]
    fn the_progress_line_counts_updated_and_available_pods() {
        assert_eq!(
            progress_line(&rolling()),
            "web: PROGRESSING 2/3 updated, 1 available (revision 2)"
        );
        assert_eq!(
            progress_line(&pb::Deployment {
                name: "web".into(),
                ..pb::Deployment::default()
            }),
            "web: UNSPECIFIED 0/0 updated, 0 available (revision 0)"
        );
    }

    #[test]
    fn json_deployments_use_short_enum_names() {
        let mut deployment = rolling();
        if let Some(rollout) = deployment.rollout.as_mut() {
            rollout.phase = pb::RolloutPhase::Failed.into();
            rollout.reason = pb::RolloutReason::NewPodsFailing.into();
            rollout.pod_reason = pb::Reason::ImagePullFailed.into();
        }
        let json = serde_json::to_value(DeploymentJson::from(&deployment)).expect("json");
        assert_eq!(json["rollout"]["phase"], "FAILED");
        assert_eq!(json["rollout"]["reason"], "NEW_PODS_FAILING");
        assert_eq!(json["rollout"]["pod_reason"], "IMAGE_PULL_FAILED");
        assert_eq!(json["rollout"]["old_available"], 2);
        assert_eq!(json["rollout"]["replica_sets"][0]["current"], true);
        assert_eq!(json["strategy"]["type"], "ROLLING_UPDATE");
        assert_eq!(json["strategy"]["max_surge"], serde_json::Value::Null);
        assert_eq!(json["service"], serde_json::Value::Null);
    }

    #[test]
    fn history_is_a_table_oldest_first() {
        let revisions = [
            pb::Revision {
                revision: 1,
                image: "nginx:1.27".into(),
                ..pb::Revision::default()
            },
            pb::Revision {
                revision: 2,
                image: "fail.invalid/app:1".into(),
                change_cause: "try the new app".into(),
                created: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 5,
                }),
                current: true,
                ..pb::Revision::default()
            },
        ];
        let table = revisions_table(&revisions);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        for (line, words) in lines.iter().zip([
            &["REVISION", "IMAGE", "CHANGE-CAUSE", "CREATED"][..],
            &["1", "nginx:1.27", "-"],
            &[
                "2",
                "fail.invalid/app:1",
                "try the new app",
                "2023-11-14T22:13:20Z",
            ],
        ]) {
            for word in words {
                assert!(line.contains(word), "{word:?} not in {line:?}");
            }
        }
        assert!(revisions_table(&[]).is_empty());
    }

    #[test]
    fn get_shows_the_old_pods_that_still_serve() {
        let table = deployment_table(&rolling(), false);
        assert!(
            table.contains("rollout     PROGRESSING (UPDATING_REPLICAS)"),
            "{table}"
        );
        assert!(
            table.contains("old pods    2 available, still serving"),
            "{table}"
        );
        assert!(table.contains("replica set web-2  revision 2"), "{table}");
        let list = deployments_table(&[rolling()], false);
        assert!(
            list.lines().nth(1).is_some_and(|l| l.starts_with("web ")),
            "{list}"
        );
    }
}
