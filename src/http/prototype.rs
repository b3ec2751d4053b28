//! The prototype's JSON shapes, and its pod naming.

use serde::{Deserialize, Serialize};

use crate::proto::deployer::v1 as pb;

/// `POST /deploy`'s body.
#[derive(Debug, Clone, Deserialize)]
pub struct DeployBody {
    /// The image.
    pub image: String,
    /// The namespace.
    pub namespace: String,
    /// The pod's name; when absent, derived from the image as the prototype did.
    #[serde(default)]
    pub pod_name: Option<String>,
}

/// `POST /deploy`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployAccepted {
    /// Always "Pod deployment initiated".
    pub message: String,
    /// The pod's name.
    pub pod_name: String,
    /// The namespace.
    pub namespace: String,
}

/// An owner of a pod.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwnerBody {
    /// Kind, e.g. ReplicaSet.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// `GET /status/...`'s answer, and each event of `GET /watch/...`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodStatusBody {
    /// The pod's name.
    pub pod_name: String,
    /// The namespace.
    pub namespace: String,
    /// The pod's phase: Pending, Running, Succeeded, Failed or Unknown.
    pub pod_status: String,
    /// The first container's state: "Running", "Waiting: <reason>" or
    /// "Terminated: <reason>"; null before the kubelet reports one.
    pub container_state: Option<String>,
    /// When the kubelet started the pod (ISO 8601), or null.
    pub start_time: Option<String>,
    /// The pod's owners, or null when it has none.
    #[serde(rename = "Owners")]
    pub owners: Option<Vec<OwnerBody>>,
}

impl From<&pb::PodStatus> for PodStatusBody {
    fn from(pod: &pb::PodStatus) -> Self {
        use pb::container_state::State;
        let container_state = pod
            .containers
            .first()
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.state.as_ref())
            .map(|state| match state {
                State::Running(_) => "Running".to_owned(),
                State::Waiting(w) => format!("Waiting: {}", w.reason),
                State::Terminated(t) => format!("Terminated: {}", t.reason),
            });
        let start_time = pod.start_time.as_ref().and_then(|t| {
            jiff::Timestamp::new(t.seconds, t.nanos)
                .ok()
                .map(|t| t.to_string())
        });
        let owners = (!pod.owners.is_empty()).then(|| {
            pod.owners
                .iter()
                .map(|o| OwnerBody {
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                })
                .collect()
        });
        Self {
            pod_name: pod.name.clone(),
            namespace: pod.namespace.clone(),
            pod_status: pod.phase.clone(),
            container_state,
            start_time,
            owners,
        }
    }
}

/// The pod name the prototype gave an image, which its clients compute themselves: the image
/// with ':' and '/' replaced by '-', lower-cased, prefixed with "pod-" when it contains no
/// '-'. Dots stay (`nginx:1.27` gives `nginx-1.27`, `gcr.io/google-containers/pause` gives
/// `gcr.io-google-containers-pause`), which pod names allow: they are DNS-1123 subdomains.
/// A name still invalid (a tag with '_', say) is refused by Deploy's validation, naming it.
#[must_use]
pub fn prototype_pod_name(image: &str) -> String {
    let name = image.replace([':', '/'], "-").to_lowercase();
    if name.contains('-') {
        name
    } else {
        format!("pod-{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_derived_as_the_prototype_did() {
        for (image, name) in [
            ("nginx", "pod-nginx"),
            ("nginx:latest", "nginx-latest"),
            ("library/redis", "library-redis"),
            ("ghcr.io/Org/App:V2", "ghcr.io-org-app-v2"),
            ("busybox:1.36", "busybox-1.36"),
            ("nginx:1.27", "nginx-1.27"),
            (
                "gcr.io/google-containers/pause",
                "gcr.io-google-containers-pause",
            ),
            ("localhost:5000/app:v1", "localhost-5000-app-v1"),
        ] {
            assert_eq!(prototype_pod_name(image), name, "{image}");
            // Every one is a name Kubernetes, and so Deploy, accepts.
            assert_eq!(
                crate::domain::validate::validate_pod_name("pod_name", name),
                Ok(()),
                "{image}"
            );
        }
    }

    #[test]
    fn statuses_take_the_prototypes_shape() {
        let waiting = pb::PodStatus {
            name: "pod-nginx".into(),
            namespace: "demo".into(),
            phase: "Pending".into(),
            containers: vec![pb::ContainerStatus {
                state: Some(pb::ContainerState {
                    state: Some(pb::container_state::State::Waiting(pb::Waiting {
                        reason: "ImagePullBackOff".into(),
                        message: String::new(),
                    })),
                }),
                ..pb::ContainerStatus::default()
            }],
            ..pb::PodStatus::default()
        };
        let body = serde_json::to_value(PodStatusBody::from(&waiting)).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "pod_name": "pod-nginx", "namespace": "demo", "pod_status": "Pending",
                "container_state": "Waiting: ImagePullBackOff", "start_time": null, "Owners": null,
            })
        );
        let running = pb::PodStatus {
            phase: "Running".into(),
            start_time: Some(prost_types::Timestamp {
                seconds: 1_764_000_000,
                nanos: 0,
            }),
            owners: vec![pb::Owner {
                kind: "ReplicaSet".into(),
                name: "web-5d9c".into(),
                controller: true,
            }],
            containers: vec![pb::ContainerStatus {
                state: Some(pb::ContainerState {
                    state: Some(pb::container_state::State::Running(pb::Running {
                        started_at: None,
                    })),
                }),
                ..pb::ContainerStatus::default()
            }],
            ..waiting
        };
        let body = PodStatusBody::from(&running);
        assert_eq!(body.container_state.as_deref(), Some("Running"));
        assert_eq!(body.start_time.as_deref(), Some("2025-11-24T16:00:00Z"));
        assert_eq!(
            body.owners,
            Some(vec![OwnerBody {
                kind: "ReplicaSet".into(),
                name: "web-5d9c".into()
            }])
        );
    }
}
