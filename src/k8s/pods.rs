//! Pods in the cluster: [`build_pod`] turns a [`DeploySpec`] into a Pod object, and
//! [`ClusterPods`] creates, reads, lists and deletes the pods this service manages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, ConfigMapKeySelector, Container, ContainerPort,
    EnvFromSource, EnvVar, EnvVarSource, ExecAction, GRPCAction, HTTPGetAction, HTTPHeader,
    LocalObjectReference, Namespace, Pod, PodSecurityContext, PodSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretEnvSource, SecretKeySelector, SecurityContext, TCPSocketAction,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

use crate::domain::spec::{DeploySpec, PodSecurityProfile, effective_resources};
use crate::domain::workload::{self, EnvFromObject, EnvSource, ProbeAction, ProbePort, Workload};
use crate::domain::{
    CONTAINER_NAME, IMAGE_ANNOTATION, LabelSelector, MANAGED_BY_LABEL, POD_SECURITY_ANNOTATION,
    PodState, REQUEST_HASH_ANNOTATION, REQUEST_ID_LABEL,
};
use crate::k8s::convert::pod_state;
use crate::k8s::namespaces::{Lookup, NamespaceCache, NamespaceInfo};
use crate::{Error, Result};

/// The Pod object for a validated spec: one container named `app`, the managed-by label,
/// the request id label, the image, request-hash and pod-security annotations, hardened to
/// `profile` (see [`PodSecurityProfile`]) with default resources for what the spec leaves out,
/// and the spec's workload fields (probes, env from Secrets and ConfigMaps, pull secrets,
/// ServiceAccount, node selector, tolerations). The one place that makes a pod: Deployments'
/// templates are built from it too.
#[must_use]
pub fn build_pod(spec: &DeploySpec, profile: PodSecurityProfile) -> Pod {
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
    annotations.insert(
        POD_SECURITY_ANNOTATION.to_owned(),
        profile.as_str().to_owned(),
    );
    let (requests, limits) = effective_resources(&spec.requests, &spec.limits);
    let restricted = profile == PodSecurityProfile::Restricted;
    let runtime_default = || {
        Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        })
    };

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
                    value: e.value_from.is_none().then(|| e.value.clone()),
                    value_from: e.value_from.as_ref().map(env_source),
                })
                .collect()
        }),
        env_from: (!spec.workload.env_from.is_empty())
            .then(|| spec.workload.env_from.iter().map(env_from).collect()),
        readiness_probe: spec.workload.probes.readiness.as_ref().map(probe),
        liveness_probe: spec.workload.probes.liveness.as_ref().map(probe),
        startup_probe: spec.workload.probes.startup.as_ref().map(probe),
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
        resources: Some(ResourceRequirements {
            requests: quantities(&requests),
            limits: quantities(&limits),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: runtime_default(),
            run_as_non_root: restricted.then_some(true),
            ..SecurityContext::default()
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
            // The pod runs someone's image: it gets no credentials to the cluster, whichever
            // ServiceAccount it runs as.
            automount_service_account_token: Some(false),
            service_account_name: non_empty(&spec.workload.service_account),
            image_pull_secrets: pull_secrets(&spec.workload),
            node_selector: (!spec.workload.node_selector.is_empty())
                .then(|| spec.workload.node_selector.clone()),
            tolerations: (!spec.workload.tolerations.is_empty())
                .then(|| spec.workload.tolerations.iter().map(toleration).collect()),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            security_context: Some(PodSecurityContext {
                seccomp_profile: runtime_default(),
                run_as_non_root: restricted.then_some(true),
                ..PodSecurityContext::default()
            }),
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn env_source(source: &EnvSource) -> EnvVarSource {
    match source {
        EnvSource::SecretKey(key) => EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: key.name.clone(),
                key: key.key.clone(),
                optional: Some(key.optional),
            }),
            ..EnvVarSource::default()
        },
        EnvSource::ConfigMapKey(key) => EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: key.name.clone(),
                key: key.key.clone(),
                optional: Some(key.optional),
            }),
            ..EnvVarSource::default()
        },
    }
}

fn env_from(source: &workload::EnvFromSource) -> EnvFromSource {
    let optional = Some(source.optional);
    EnvFromSource {
        prefix: non_empty(&source.prefix),
        secret_ref: match &source.source {
            Some(EnvFromObject::Secret(name)) => Some(SecretEnvSource {
                name: name.clone(),
                optional,
            }),
            _ => None,
        },
        config_map_ref: match &source.source {
            Some(EnvFromObject::ConfigMap(name)) => Some(ConfigMapEnvSource {
                name: name.clone(),
                optional,
            }),
            _ => None,
        },
    }
}

/// A validated port: a number in range, or a name.
fn probe_port(port: &ProbePort) -> IntOrString {
    if port.name.is_empty() {
        IntOrString::Int(i32::try_from(port.number).unwrap_or(i32::MAX))
    } else {
        IntOrString::String(port.name.clone())
    }
}

fn seconds(duration: Option<std::time::Duration>) -> Option<i32> {
    duration.map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
}

/// A threshold; 0 leaves Kubernetes' default.
fn threshold(value: u32) -> Option<i32> {
    (value != 0).then(|| i32::try_from(value).unwrap_or(i32::MAX))
}

fn probe(probe: &workload::Probe) -> Probe {
    let mut built = Probe {
        initial_delay_seconds: seconds(probe.initial_delay),
        period_seconds: seconds(probe.period),
        timeout_seconds: seconds(probe.timeout),
        success_threshold: threshold(probe.success_threshold),
        failure_threshold: threshold(probe.failure_threshold),
        ..Probe::default()
    };
    match &probe.action {
        Some(ProbeAction::HttpGet(http)) => {
            built.http_get = Some(HTTPGetAction {
                path: Some(if http.path.is_empty() {
                    "/".to_owned()
                } else {
                    http.path.clone()
                }),
                port: probe_port(&http.port),
                scheme: Some(http.scheme.as_str().to_owned()),
                http_headers: (!http.headers.is_empty()).then(|| {
                    http.headers
                        .iter()
                        .map(|(name, value)| HTTPHeader {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect()
                }),
                host: None,
            });
        }
        Some(ProbeAction::TcpSocket(port)) => {
            built.tcp_socket = Some(TCPSocketAction {
                port: probe_port(port),
                host: None,
            });
        }
        Some(ProbeAction::Grpc { port, service }) => {
            built.grpc = Some(GRPCAction {
                port: i32::try_from(*port).unwrap_or(i32::MAX),
                service: non_empty(service),
            });
        }
        Some(ProbeAction::Exec(command)) => {
            built.exec = Some(ExecAction {
                command: Some(command.clone()),
            });
        }
        None => {}
    }
    built
}

fn pull_secrets(workload: &Workload) -> Option<Vec<LocalObjectReference>> {
    (!workload.image_pull_secrets.is_empty()).then(|| {
        workload
            .image_pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    })
}

fn toleration(toleration: &workload::Toleration) -> Toleration {
    Toleration {
        key: non_empty(&toleration.key),
        operator: Some(toleration.operator.as_str().to_owned()),
        value: non_empty(&toleration.value),
        effect: toleration.effect.map(|effect| effect.as_str().to_owned()),
        toleration_seconds: toleration
            .toleration_seconds
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
    }
}

/// The namespace label whose level the PodSecurity admission enforces.
pub const POD_SECURITY_ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// The PodSecurity admission's reason, when `error` is its rejection: a 403 whose message
/// reads `pods "x" is forbidden: violates PodSecurity "restricted:latest": ...`. The part
/// from "violates" on is the admission's own explanation, meant for whoever wrote the pod,
/// so it is passed on to the caller (unlike other API server text).
fn pod_security_violation(error: &kube::Error) -> Option<String> {
    match error {
        kube::Error::Api(status) if status.code == 403 => status
            .message
            .find("violates PodSecurity")
            .map(|at| status.message[at..].to_owned()),
        _ => None,
    }
}

/// Whether a pod carries the managed-by label.
#[must_use]
pub fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY_LABEL.0).map(String::as_str) == Some(MANAGED_BY_LABEL.1)
}

/// The managed-by selector, with `extra` on top: the one place that spells it.
pub(crate) fn managed_selector(extra: Option<&LabelSelector>) -> String {
    let managed = format!("{}={}", MANAGED_BY_LABEL.0, MANAGED_BY_LABEL.1);
    match extra.map(ToString::to_string).filter(|s| !s.is_empty()) {
        Some(extra) => format!("{managed},{extra}"),
        None => managed,
    }
}

pub(crate) fn api_error(action: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::KubeApi { action, source }
}

/// Whether the API server refused a write as too large: 413 from its body limit, or a 500
/// carrying etcd's refusal ("etcdserver: request is too large", or gRPC's "trying to send
/// message larger than max"). Never worth a retry, unlike other 500s.
fn is_too_large(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            let message = status.message.to_ascii_lowercase();
            status.code == 413
                || (status.code == 500
                    && (message.contains("larger than max") || message.contains("too large")))
        }
        _ => false,
    }
}

pub(crate) fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// One read of a namespace, for the [`NamespaceCache`].
async fn read_namespace(client: kube::Client, namespace: String) -> Lookup {
    match Api::<Namespace>::all(client).get_opt(&namespace).await {
        Ok(Some(ns)) => Ok(NamespaceInfo::Found {
            enforce: ns
                .metadata
                .labels
                .and_then(|mut labels| labels.remove(POD_SECURITY_ENFORCE_LABEL)),
        }),
        Ok(None) => Ok(NamespaceInfo::Missing),
        // Namespaces are cluster-scoped: a deployer confined to namespaced Roles may not
        // read them. Then the namespace is taken as existing; the calls that follow fail
        // on their own if it does not.
        Err(error) if status_code(&error) == Some(403) => {
            tracing::debug!(namespace = %namespace, "may not read namespaces, assuming it exists");
            Ok(NamespaceInfo::Unreadable)
        }
        Err(error) => Err(Arc::new(error)),
    }
}

/// The pods this service manages, through one shared client.
#[derive(Clone)]
pub struct ClusterPods {
    client: kube::Client,
    namespaces: NamespaceCache,
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
        Self {
            client,
            namespaces: NamespaceCache::default(),
        }
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
        self.pod_security_enforced(namespace).await.map(|_| ())
    }

    /// The value of the namespace's `pod-security.kubernetes.io/enforce` label, if it has one
    /// and the deployer may read it; fails with [`Error::NamespaceNotFound`] unless the
    /// namespace exists. Answered from the namespace cache ([`NamespaceCache`]): at most one
    /// read of a namespace every few seconds, however many calls ask.
    ///
    /// # Errors
    ///
    /// NamespaceNotFound, or the API error.
    pub async fn pod_security_enforced(&self, namespace: &str) -> Result<Option<String>> {
        let read = || read_namespace(self.client.clone(), namespace.to_owned());
        match self.namespaces.lookup(namespace, read).await {
            Ok(NamespaceInfo::Found { enforce }) => Ok(enforce),
            Ok(NamespaceInfo::Missing) => Err(Error::NamespaceNotFound(namespace.to_owned())),
            Ok(NamespaceInfo::Unreadable) => Ok(None),
            Err(source) => Err(Error::NamespaceRead {
                namespace: namespace.to_owned(),
                source,
            }),
        }
    }

    /// Forget what is known of the namespace: the API server just said it does not exist.
    pub fn forget_namespace(&self, namespace: &str) {
        self.namespaces.forget(namespace);
    }

    /// Create the pod for `spec`, hardened to `profile` (a server-side dry run when the spec
    /// says so).
    ///
    /// # Errors
    ///
    /// NamespaceNotFound, NameTaken, PodSecurityRejected, or the API error.
    pub async fn create(&self, spec: &DeploySpec, profile: PodSecurityProfile) -> Result<PodState> {
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
            .create(&params, &build_pod(spec, profile))
            .await
        {
            Ok(pod) => Ok(pod_state(&pod)),
            Err(error) if pod_security_violation(&error).is_some() => {
                Err(Error::PodSecurityRejected {
                    namespace: spec.namespace.clone(),
                    reason: pod_security_violation(&error).unwrap_or_default(),
                })
            }
            Err(error) if status_code(&error) == Some(409) => Err(Error::NameTaken {
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
            }),
            Err(error) if status_code(&error) == Some(404) => {
                Err(Error::NamespaceNotFound(spec.namespace.clone()))
            }
            Err(error) if is_too_large(&error) => {
                tracing::warn!(error = %error, "the API server refused the pod as too large");
                Err(Error::PodTooLarge {
                    namespace: spec.namespace.clone(),
                    name: spec.name.clone(),
                })
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
    use crate::domain::workload::{
        HttpGet, HttpScheme, KeyRef, Probe, Probes, TaintEffect, TolerationOperator,
    };

    #[test]
    fn the_pod_carries_the_workload_fields() {
        let spec = validate_deploy(&DeployInput {
            image: "nginx:1.27".into(),
            namespace: "team-a".into(),
            env: workload::example_env(),
            ports: workload::example_ports(),
            workload: workload::example_workload(),
            ..DeployInput::default()
        })
        .expect("a valid request");
        let pod =
            serde_json::to_value(build_pod(&spec, PodSecurityProfile::Baseline)).expect("JSON");
        let spec = &pod["spec"];
        let container = &spec["containers"][0];
        assert_eq!(
            container["readinessProbe"],
            serde_json::json!({
                "httpGet": {
                    "path": "/healthz?full=1", "port": "http", "scheme": "HTTPS",
                    "httpHeaders": [{"name": "X-Probe", "value": "yes"}],
                },
                "initialDelaySeconds": 2, "periodSeconds": 5, "timeoutSeconds": 3,
                "successThreshold": 2, "failureThreshold": 4,
            })
        );
        assert_eq!(
            container["livenessProbe"],
            serde_json::json!({"tcpSocket": {"port": 8080}})
        );
        assert_eq!(
            container["startupProbe"],
            serde_json::json!({"exec": {"command": ["/bin/check", "--quick"]}, "failureThreshold": 30})
        );
        assert_eq!(
            container["env"],
            serde_json::json!([
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-password", "key": "password", "optional": false}}},
                {"name": "APP_MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "app.mode", "optional": true}}},
            ])
        );
        assert_eq!(
            container["envFrom"],
            serde_json::json!([
                {"prefix": "DB_", "secretRef": {"name": "db-env", "optional": false}},
                {"configMapRef": {"name": "app.config", "optional": true}},
            ])
        );
        assert_eq!(
            spec["imagePullSecrets"],
            serde_json::json!([{"name": "regcred"}, {"name": "other-regcred"}])
        );
        assert_eq!(spec["serviceAccountName"], "runner");
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["nodeSelector"], serde_json::json!({"disktype": "ssd"}));
        assert_eq!(
            spec["tolerations"],
            serde_json::json!([
                {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
                {"operator": "Exists"},
            ])
        );
    }

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
                value_from: None,
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
        let pod = build_pod(&spec, PodSecurityProfile::Baseline);
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
    fn pods_are_hardened_to_their_profile() {
        let spec = validate_deploy(&DeployInput {
            image: "nginx:1.27".into(),
            namespace: "team-a".into(),
            ..DeployInput::default()
        })
        .expect("a valid request");
        for profile in [PodSecurityProfile::Baseline, PodSecurityProfile::Restricted] {
            let pod = build_pod(&spec, profile);
            let annotations = pod.metadata.annotations.as_ref().expect("annotations");
            assert_eq!(
                annotations["k8s-deployer.io/pod-security"],
                profile.as_str()
            );
            let pod_spec = pod.spec.as_ref().expect("spec");
            assert_eq!(pod_spec.automount_service_account_token, Some(false));
            assert_eq!(pod_spec.host_network, Some(false));
            assert_eq!(pod_spec.host_pid, Some(false));
            assert_eq!(pod_spec.host_ipc, Some(false));
            assert!(
                pod_spec.volumes.is_none(),
                "no host paths, no volumes at all"
            );
            let pod_context = pod_spec.security_context.as_ref().expect("pod context");
            assert_eq!(
                pod_context
                    .seccomp_profile
                    .as_ref()
                    .map(|p| p.type_.as_str()),
                Some("RuntimeDefault")
            );
            let container = &pod_spec.containers[0];
            let context = container.security_context.as_ref().expect("context");
            assert_eq!(context.allow_privilege_escalation, Some(false));
            assert_eq!(context.privileged, Some(false));
            assert_eq!(
                context.capabilities.as_ref().and_then(|c| c.drop.clone()),
                Some(vec!["ALL".to_owned()])
            );
            assert!(
                context
                    .capabilities
                    .as_ref()
                    .is_some_and(|c| c.add.is_none())
            );
            assert_eq!(
                context.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
                Some("RuntimeDefault")
            );
            let non_root = (profile == PodSecurityProfile::Restricted).then_some(true);
            assert_eq!(context.run_as_non_root, non_root, "{profile:?}");
            assert_eq!(pod_context.run_as_non_root, non_root, "{profile:?}");
            let resources = container.resources.as_ref().expect("resources");
            let requests = resources.requests.as_ref().expect("requests");
            let limits = resources.limits.as_ref().expect("limits");
            assert_eq!(requests["cpu"].0, "100m");
            assert_eq!(requests["memory"].0, "128Mi");
            assert_eq!(limits["memory"].0, "256Mi");
        }
    }

    #[test]
    fn pod_security_rejections_are_recognised() {
        let rejection = kube::Error::Api(
            kube::core::Status::failure(
                "pods \"web\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true",
                "Forbidden",
            )
            .with_code(403)
            .boxed(),
        );
        assert_eq!(
            pod_security_violation(&rejection).as_deref(),
            Some("violates PodSecurity \"restricted:latest\": runAsNonRoot != true")
        );
        let rbac = kube::Error::Api(
            kube::core::Status::failure("pods is forbidden: User \"x\" cannot create", "Forbidden")
                .with_code(403)
                .boxed(),
        );
        assert_eq!(pod_security_violation(&rbac), None);
    }

    #[test]
    fn size_refusals_are_recognised() {
        let api = |code: u16, message: &str| {
            kube::Error::Api(
                kube::core::Status::failure(message, "Reason")
                    .with_code(code)
                    .boxed(),
            )
        };
        #[rustfmt::skip]
        let cases = [
            (api(413, "Request entity too large: limit is 3145728"), true),
            (api(500, "rpc error: code = ResourceExhausted desc = trying to send message larger than max (2097500 vs. 2097152)"), true),
            (api(500, "etcdserver: request is too large"), true),
            (api(500, "Internal error occurred: connection refused"), false),
            (api(503, "the message is too large to show"), false),
            (api(422, "Pod \"web\" is invalid"), false),
            (kube::Error::Service("too large".into()), false),
        ];
        for (error, want) in cases {
            assert_eq!(is_too_large(&error), want, "{error}");
        }
    }

    #[test]
    fn the_pod_size_estimate_bounds_the_real_json() {
        use crate::domain::validate::pod_size;
        let big = |n: usize, c: char| std::iter::repeat_n(c, n).collect::<String>();
        let many = |n: usize| {
            (0..n)
                .map(|i| (format!("k{i}"), big(i % 7, '"')))
                .collect::<BTreeMap<_, _>>()
        };
        let inputs = [
            DeployInput {
                image: "nginx".into(),
                namespace: "ns".into(),
                ..DeployInput::default()
            },
            DeployInput {
                image: "ghcr.io/org/app:1.2".into(),
                namespace: "team-a".into(),
                name: "web.1".into(),
                labels: (0..50)
                    .map(|i| (format!("l{i}"), format!("v{i}")))
                    .collect(),
                annotations: many(200),
                env: (0..300)
                    .map(|i| DomainEnv {
                        name: format!("V{i}"),
                        value: big(i, if i % 2 == 0 { '\u{1}' } else { 'é' }),
                        value_from: None,
                    })
                    .collect(),
                ports: (1..=40)
                    .map(|n| Port {
                        name: format!("p{n}"),
                        number: n,
                        protocol: Protocol::Sctp,
                    })
                    .collect(),
                command: vec![big(1000, '\\'); 10],
                args: vec![String::new(); 100],
                requests: [("cpu".to_owned(), "250m".to_owned())].into(),
                limits: [("memory".to_owned(), "1Gi".to_owned())].into(),
                restart_policy: RestartPolicy::OnFailure,
                request_id: "req-1".into(),
                ..DeployInput::default()
            },
            // Every workload field, many times, with the longest numbers.
            DeployInput {
                image: "nginx".into(),
                namespace: "ns".into(),
                env: (0..200)
                    .map(|i| DomainEnv {
                        name: format!("S{i}"),
                        value: String::new(),
                        value_from: Some(EnvSource::SecretKey(KeyRef {
                            name: format!("s{i}"),
                            key: big(i % 50 + 1, 'k'),
                            optional: i % 2 == 0,
                        })),
                    })
                    .collect(),
                ports: workload::example_ports(),
                workload: Workload {
                    probes: Probes {
                        readiness: Some(Probe {
                            action: Some(ProbeAction::HttpGet(HttpGet {
                                path: format!("/{}", big(300, 'p')),
                                port: ProbePort {
                                    number: 65535,
                                    name: String::new(),
                                },
                                scheme: HttpScheme::Https,
                                headers: (0..50)
                                    .map(|i| (format!("X-H{i}"), big(i, '"')))
                                    .collect(),
                            })),
                            initial_delay: Some(Duration::from_secs(3600)),
                            period: Some(Duration::from_secs(3600)),
                            timeout: Some(Duration::from_secs(3600)),
                            success_threshold: i32::MAX.unsigned_abs(),
                            failure_threshold: i32::MAX.unsigned_abs(),
                        }),
                        liveness: Some(Probe {
                            action: Some(ProbeAction::Grpc {
                                port: 65535,
                                service: big(100, '\\'),
                            }),
                            failure_threshold: i32::MAX.unsigned_abs(),
                            ..Probe::default()
                        }),
                        startup: Some(Probe {
                            action: Some(ProbeAction::Exec(vec![big(20, '\u{2}'); 30])),
                            ..Probe::default()
                        }),
                    },
                    env_from: (0..100)
                        .map(|i| workload::EnvFromSource {
                            prefix: format!("P{i}_"),
                            source: Some(if i % 2 == 0 {
                                EnvFromObject::Secret(format!("s{i}"))
                            } else {
                                EnvFromObject::ConfigMap(format!("c{i}"))
                            }),
                            optional: true,
                        })
                        .collect(),
                    image_pull_secrets: (0..100).map(|i| format!("pull-{i}")).collect(),
                    service_account: big(253, 'a'),
                    node_selector: (0..50)
                        .map(|i| (format!("n{i}"), format!("v{i}")))
                        .collect(),
                    tolerations: (0..100)
                        .map(|i| workload::Toleration {
                            key: format!("t{i}"),
                            operator: TolerationOperator::Exists,
                            value: String::new(),
                            effect: Some(TaintEffect::PreferNoSchedule),
                            toleration_seconds: None,
                        })
                        .chain((0..100).map(|i| workload::Toleration {
                            key: format!("e{i}"),
                            operator: TolerationOperator::Equal,
                            value: big(63, 'v'),
                            effect: Some(TaintEffect::NoExecute),
                            toleration_seconds: Some(Duration::from_secs(i64::MAX.unsigned_abs())),
                        }))
                        .collect(),
                },
                ..DeployInput::default()
            },
            DeployInput {
                image: "nginx".into(),
                namespace: "ns".into(),
                env: workload::example_env(),
                ports: workload::example_ports(),
                workload: workload::example_workload(),
                ..DeployInput::default()
            },
        ];
        for input in inputs {
            let spec = validate_deploy(&input).expect("valid");
            for profile in [PodSecurityProfile::Baseline, PodSecurityProfile::Restricted] {
                let json = serde_json::to_vec(&build_pod(&spec, profile)).expect("JSON");
                assert!(
                    json.len() <= pod_size(&input),
                    "{} bytes, estimated {}",
                    json.len(),
                    pod_size(&input)
                );
            }
        }
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
