//! Pods in the cluster: [`build_pod`] turns a [`DeploySpec`] into a Pod object, and
//! [`ClusterPods`] creates, reads, lists and deletes the pods this service manages.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, Namespace, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

use crate::domain::spec::DeploySpec;
use crate::domain::{
    CONTAINER_NAME, IMAGE_ANNOTATION, LabelSelector, MANAGED_BY_LABEL, PodState,
    REQUEST_HASH_ANNOTATION, REQUEST_ID_LABEL,
};
use crate::k8s::convert::pod_state;
use crate::{Error, Result};

/// The Pod object for a validated spec: one container named `app`, the managed-by label,
/// the request id label and the image and request-hash annotations.
#[must_use]
pub fn build_pod(spec: &DeploySpec) -> Pod {
    let mut labels = spec.labels.clone();
    labels.insert(MANAGED_BY_LABEL.0.to_owned(), MANAGED_BY_LABEL.1.to_owned());
    if let Some(id) = &spec.request_id {
        labels.insert(REQUEST_ID_LABEL.to_owned(), id.clone());
    }
    let mut annotations = spec.annotations.clone();
    annotations.insert(IMAGE_ANNOTATION.to_owned(), spec.image.to_string());
    annotations.insert(
        REQUEST_HASH_ANNOTATION.to_owned(),
        spec.request_hash.clone(),
    );

    let quantities = |map: &BTreeMap<String, String>| {
        (!map.is_empty()).then(|| {
            map.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect::<BTreeMap<_, _>>()
        })
    };
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(spec.image.to_string()),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: (!spec.env.is_empty()).then(|| {
            spec.env
                .iter()
                .map(|e| EnvVar {
                    name: e.name.clone(),
                    value: Some(e.value.clone()),
                    ..EnvVar::default()
                })
                .collect()
        }),
        ports: (!spec.ports.is_empty()).then(|| {
            spec.ports
                .iter()
                .map(|p| ContainerPort {
                    name: (!p.name.is_empty()).then(|| p.name.clone()),
                    container_port: i32::try_from(p.number).unwrap_or(i32::MAX),
                    protocol: Some(p.protocol.as_str().to_owned()),
                    ..ContainerPort::default()
                })
                .collect()
        }),
        resources: (!spec.requests.is_empty() || !spec.limits.is_empty()).then(|| {
            ResourceRequirements {
                requests: quantities(&spec.requests),
                limits: quantities(&spec.limits),
                ..ResourceRequirements::default()
            }
        }),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: Some(spec.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some(spec.restart_policy.as_str().to_owned()),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// Whether a pod carries the managed-by label.
#[must_use]
pub fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY_LABEL.0).map(String::as_str) == Some(MANAGED_BY_LABEL.1)
}

/// The managed-by selector, with `extra` on top.
fn managed_selector(extra: Option<&LabelSelector>) -> String {
    let managed = format!("{}={}", MANAGED_BY_LABEL.0, MANAGED_BY_LABEL.1);
    match extra.map(ToString::to_string).filter(|s| !s.is_empty()) {
        Some(extra) => format!("{managed},{extra}"),
        None => managed,
    }
}

fn api_error(action: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::KubeApi { action, source }
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The pods this service manages, through one shared client.
#[derive(Clone)]
pub struct ClusterPods {
    client: kube::Client,
}

impl std::fmt::Debug for ClusterPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPods").finish_non_exhaustive()
    }
}

impl ClusterPods {
    /// Pods through `client`.
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Fails with [`Error::NamespaceNotFound`] unless the namespace exists.
    ///
    /// # Errors
    ///
    /// NamespaceNotFound, or the API error.
    pub async fn require_namespace(&self, namespace: &str) -> Result<()> {
        let found = Api::<Namespace>::all(self.client.clone())
            .get_opt(namespace)
            .await;
        match found {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::NamespaceNotFound(namespace.to_owned())),
            // Namespaces are cluster-scoped: a deployer confined to namespaced Roles may not
            // read them. Then the namespace is taken as existing; the calls that follow fail
            // on their own if it does not.
            Err(error) if status_code(&error) == Some(403) => {
                tracing::debug!(namespace, "may not read namespaces, assuming it exists");
                Ok(())
            }
            Err(error) => Err(api_error(format!("reading namespace {namespace:?}"))(error)),
        }
    }

    /// Create the pod for `spec` (a server-side dry run when the spec says so).
    ///
    /// # Errors
    ///
    /// NamespaceNotFound, NameTaken, or the API error.
    pub async fn create(&self, spec: &DeploySpec) -> Result<PodState> {
        let params = PostParams {
            dry_run: spec.dry_run,
            field_manager: Some("k8s-deployer".to_owned()),
        };
        let action = format!(
            "creating pod {:?} in namespace {:?}",
            spec.name, spec.namespace
        );
        match self
            .pods(&spec.namespace)
            .create(&params, &build_pod(spec))
            .await
        {
            Ok(pod) => Ok(pod_state(&pod)),
            Err(error) if status_code(&error) == Some(409) => Err(Error::NameTaken {
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
            }),
            Err(error) if status_code(&error) == Some(404) => {
                Err(Error::NamespaceNotFound(spec.namespace.clone()))
            }
            Err(error) => Err(api_error(action)(error)),
        }
    }

    /// The managed pod created by the request with this id, if any.
    ///
    /// # Errors
    ///
    /// The API error.
    pub async fn find_by_request_id(
        &self,
        namespace: &str,
        request_id: &str,
    ) -> Result<Option<PodState>> {
        let selector = format!("{},{REQUEST_ID_LABEL}={request_id}", managed_selector(None));
        Ok(self
            .list_labelled(namespace, &selector)
            .await?
            .into_iter()
            .next())
    }

    /// The pods of a namespace that a label selector (in Kubernetes syntax) matches.
    async fn list_labelled(&self, namespace: &str, selector: &str) -> Result<Vec<PodState>> {
        let list = self
            .pods(namespace)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(api_error(format!(
                "listing pods in namespace {namespace:?}"
            )))?;
        Ok(list.items.iter().map(pod_state).collect())
    }

    /// The pod, whether managed or not; `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// The API error.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<PodState>> {
        let pod = self
            .pods(namespace)
            .get_opt(name)
            .await
            .map_err(api_error(format!(
                "reading pod {name:?} in namespace {namespace:?}"
            )))?;
        Ok(pod.as_ref().map(pod_state))
    }

    /// The managed pod; PodNotFound when absent or not managed.
    ///
    /// # Errors
    ///
    /// PodNotFound, or the API error.
    pub async fn get_managed(&self, namespace: &str, name: &str) -> Result<PodState> {
        match self.get(namespace, name).await? {
            Some(pod) if is_managed(&pod.labels) => Ok(pod),
            _ => Err(Error::PodNotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
        }
    }

    /// The managed pods of a namespace that `selector` matches, sorted by name.
    ///
    /// # Errors
    ///
    /// NamespaceNotFound, or the API error.
    pub async fn list(&self, namespace: &str, selector: &LabelSelector) -> Result<Vec<PodState>> {
        self.require_namespace(namespace).await?;
        let mut pods = self
            .list_labelled(namespace, &managed_selector(Some(selector)))
            .await?;
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pods)
    }

    /// Delete a managed pod; refuses pods this service does not manage.
    ///
    /// # Errors
    ///
    /// PodNotFound, NotManaged, or the API error.
    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
        grace: Option<Duration>,
    ) -> Result<PodState> {
        let not_found = || Error::PodNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let current = self.get(namespace, name).await?.ok_or_else(not_found)?;
        if !is_managed(&current.labels) {
            return Err(Error::NotManaged {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        }
        let mut params = DeleteParams::default();
        if let Some(grace) = grace {
            params = params.grace_period(u32::try_from(grace.as_secs()).unwrap_or(u32::MAX));
        }
        // Only the pod we just looked at: a new pod of the same name is not ours to delete.
        params.preconditions = Some(kube::api::Preconditions {
            uid: Some(current.uid.clone()),
            resource_version: None,
        });
        let deleted = self.pods(namespace).delete(name, &params).await;
        match deleted {
            Ok(either) => Ok(either.map_left(|pod| pod_state(&pod)).left_or_else(|_| {
                // Deleted at once (no grace period): report the last state, marked deleting.
                PodState {
                    deleting: true,
                    ..current.clone()
                }
            })),
            Err(error) if matches!(status_code(&error), Some(404 | 409)) => Err(not_found()),
            Err(error) => Err(api_error(format!(
                "deleting pod {name:?} in namespace {namespace:?}"
            ))(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::{DeployInput, EnvVar as DomainEnv, Port, Protocol, RestartPolicy};
    use crate::domain::validate::validate_deploy;

    #[test]
    fn the_pod_carries_the_spec_and_our_bookkeeping() {
        let spec = validate_deploy(&DeployInput {
            image: "nginx:1.27".into(),
            namespace: "team-a".into(),
            name: "web".into(),
            labels: [("tier".to_owned(), "front".to_owned())].into(),
            env: vec![DomainEnv {
                name: "MODE".into(),
                value: "prod".into(),
            }],
            ports: vec![Port {
                name: "http".into(),
                number: 8080,
                protocol: Protocol::Tcp,
            }],
            requests: [("cpu".to_owned(), "100m".to_owned())].into(),
            restart_policy: RestartPolicy::Never,
            request_id: "req-1".into(),
            ..DeployInput::default()
        })
        .expect("a valid request");
        let pod = build_pod(&spec);
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "k8s-deployer");
        assert_eq!(labels["k8s-deployer.io/request-id"], "req-1");
        assert_eq!(labels["tier"], "front");
        let annotations = pod.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations["k8s-deployer.io/image"], "nginx:1.27");
        assert_eq!(
            annotations["k8s-deployer.io/request-hash"],
            spec.request_hash
        );
        let pod_spec = pod.spec.as_ref().expect("spec");
        assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
        let container = &pod_spec.containers[0];
        assert_eq!(container.name, "app");
        assert_eq!(container.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(container.env.as_ref().expect("env")[0].name, "MODE");
        assert_eq!(
            container.ports.as_ref().expect("ports")[0].container_port,
            8080
        );
        let requests = container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .expect("requests");
        assert_eq!(requests["cpu"].0, "100m");
        assert!(is_managed(labels));
    }

    #[test]
    fn the_managed_selector_adds_the_callers() {
        assert_eq!(
            managed_selector(None),
            "app.kubernetes.io/managed-by=k8s-deployer"
        );
        let extra = LabelSelector::parse("tier=front").expect("a selector");
        assert_eq!(
            managed_selector(Some(&extra)),
            "app.kubernetes.io/managed-by=k8s-deployer,tier=front"
        );
    }
}
