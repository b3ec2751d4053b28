//! Deployments in the cluster: [`build_deployment`] and [`build_service`] turn a
//! [`DeploymentSpec`] into objects, and [`ClusterDeployments`] applies, reads, scales,
//! restarts, rolls back and deletes the Deployments this service manages.
//!
//! # One field manager, and only apply
//!
//! Every change this service makes to a Deployment or its Service is a server-side apply
//! under the one field manager [`FIELD_MANAGER`], never forced. Scale, restart and rollback
//! are applies too: they start from the configuration this manager applied last, read back
//! from the live object's managed fields ([`applied_config`], what client-go's `Extract*`
//! does), change the one thing they change (`spec.replicas`, the template's `restartedAt`
//! annotation, the template) and apply that. So:
//! - the service never conflicts with itself: a later ApplyDeployment that sets replicas
//!   after a ScaleDeployment is the same manager changing its own field (an Update operation
//!   or a second manager would make that an ABORTED conflict against ourselves);
//! - nothing the service set is dropped by accident: an apply that omits a field its manager
//!   owns removes it, so ApplyDeployment carries forward what scale and restart set and the
//!   request does not say (the current replicas when `replicas` is unset, the template's
//!   `restartedAt`, which would otherwise roll every pod again);
//! - a field another manager (kubectl, an HPA) owns stays theirs: an apply that sets it to
//!   another value is refused by the API server (409) and the caller gets ABORTED naming the
//!   fields and their managers ([`Error::FieldConflict`]).
//!
//! Per-request bookkeeping (the request_id and the request history) lives on the
//! Deployment's metadata, never on the pod template: a new request_id must not roll the pods.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec as KubeDeploymentSpec, DeploymentStrategy, ReplicaSet,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector as KubeSelector, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, Preconditions};
use serde_json::Value;

use crate::domain::deployment::{
    DeploymentSpec, INSTANCE_LABEL, REQUEST_HISTORY_ANNOTATION, is_reserved_key, operation_hash,
    recorded_hash, request_history, same_request,
};
use crate::domain::rollout::{
    CHANGE_CAUSE_ANNOTATION, DeploymentState, DeploymentView, PodOfRollout, REVISION_ANNOTATION,
    ReplicaSetState, Strategy,
};
use crate::domain::spec::PodSecurityProfile;
use crate::domain::status::assess;
use crate::domain::workload::{Reference, ReferenceKind};
use crate::domain::{
    CONTAINER_NAME, LabelSelector, MANAGED_BY_LABEL, POD_SECURITY_ANNOTATION, PodState,
    REQUEST_HASH_ANNOTATION, REQUEST_ID_LABEL,
};
use crate::k8s::convert::{deployment_state, pod_state, replica_set_state, service_state};
use crate::k8s::pods::{api_error, build_pod, is_managed, managed_selector, status_code};
use crate::{Error, Result};

/// The field manager of every apply this service makes.
pub const FIELD_MANAGER: &str = "k8s-deployer";
/// The pod template annotation `kubectl rollout restart` sets, and RestartDeployment too.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The label the Deployment controller adds to a ReplicaSet's template.
const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// ReplicaSet annotations a rollback does not copy onto the Deployment (kubectl's
/// `annotationsToSkip`), besides this service's own.
const ROLLBACK_SKIPPED_ANNOTATIONS: [&str; 5] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
];
/// How often the wait of a deletion looks again.
const DELETE_POLL: Duration = Duration::from_millis(500);

/// The labels that select a Deployment's pods: managed-by and instance.
#[must_use]
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.0.to_owned(), MANAGED_BY_LABEL.1.to_owned()),
        (INSTANCE_LABEL.to_owned(), name.to_owned()),
    ])
}

/// The same selector in Kubernetes syntax.
fn instance_selector(name: &str) -> String {
    format!("{},{INSTANCE_LABEL}={name}", managed_selector(None))
}

/// What ApplyDeployment carries forward from the live Deployment: what scale and restart
/// set and the request leaves unsaid, and the request history.
#[derive(Debug, Clone, Default)]
pub struct Carried {
    /// spec.replicas, when this service set it last.
    pub replicas: Option<i32>,
    /// The template's `restartedAt` annotation.
    pub restarted_at: Option<String>,
    /// The live Deployment's annotations (for the request history).
    pub annotations: BTreeMap<String, String>,
}

impl Carried {
    /// From the live Deployment, if there is one.
    #[must_use]
    pub fn from_live(live: Option<&Deployment>) -> Self {
        let Some(live) = live else {
            return Self::default();
        };
        let owned = applied_config(live);
        Self {
            replicas: owned
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .and_then(|r| i32::try_from(r).ok()),
            restarted_at: live
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(RESTARTED_AT_ANNOTATION).cloned()),
            annotations: live.metadata.annotations.clone().unwrap_or_default(),
        }
    }
}

/// The Deployment object for a validated spec: its pod template is [`build_pod`]'s pod
/// (hardened to `profile`) without the per-request bookkeeping, which goes on the
/// Deployment's metadata with the request history.
#[must_use]
pub fn build_deployment(
    spec: &DeploymentSpec,
    profile: PodSecurityProfile,
    carried: &Carried,
) -> Deployment {
    let pod = build_pod(&spec.pod, profile);
    let name = &spec.pod.name;
    let mut template_labels = pod.metadata.labels.unwrap_or_default();
    template_labels.remove(REQUEST_ID_LABEL);
    template_labels.extend(selector_labels(name));
    let mut template_annotations = pod.metadata.annotations.unwrap_or_default();
    template_annotations.remove(REQUEST_HASH_ANNOTATION);
    if let Some(restarted_at) = &carried.restarted_at {
        template_annotations.insert(RESTARTED_AT_ANNOTATION.to_owned(), restarted_at.clone());
    }

    let mut labels = spec.pod.labels.clone();
    labels.extend(selector_labels(name));
    let mut annotations = spec.pod.annotations.clone();
    if let Some(cause) = &spec.change_cause {
        annotations.insert(CHANGE_CAUSE_ANNOTATION.to_owned(), cause.clone());
    }
    if let Some(id) = &spec.pod.request_id {
        annotations.insert(REQUEST_ID_LABEL.to_owned(), id.clone());
        annotations.insert(
            REQUEST_HISTORY_ANNOTATION.to_owned(),
            request_history(&carried.annotations, id, &spec.request_hash),
        );
    } else if let Some(history) = carried.annotations.get(REQUEST_HISTORY_ANNOTATION) {
        annotations.insert(REQUEST_HISTORY_ANNOTATION.to_owned(), history.clone());
    }
    let strategy = match &spec.strategy {
        Strategy::RollingUpdate => None,
        Strategy::Recreate => Some(DeploymentStrategy {
            type_: Some("Recreate".to_owned()),
            rolling_update: None,
        }),
        Strategy::RollingUpdateWith {
            max_surge,
            max_unavailable,
        } => Some(DeploymentStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: max_surge.as_deref().map(int_or_string),
                max_unavailable: max_unavailable.as_deref().map(int_or_string),
            }),
        }),
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(spec.pod.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(KubeDeploymentSpec {
            replicas: spec.replicas.or(carried.replicas),
            selector: KubeSelector {
                match_labels: Some(selector_labels(name)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(template_annotations),
                    ..ObjectMeta::default()
                }),
                spec: pod.spec,
            },
            strategy,
            progress_deadline_seconds: spec.progress_deadline_seconds,
            ..KubeDeploymentSpec::default()
        }),
        status: None,
    }
}

/// "25%" as a string, "1" as a number, as the API reads them.
fn int_or_string(value: &str) -> IntOrString {
    value
        .parse::<i32>()
        .map_or_else(|_| IntOrString::String(value.to_owned()), IntOrString::Int)
}

/// The ClusterIP Service exposing a Deployment's ports, owned by the Deployment (`owner_uid`)
/// so that the garbage collector removes it with it.
#[must_use]
pub fn build_service(spec: &DeploymentSpec, owner_uid: Option<&str>) -> Service {
    let name = &spec.pod.name;
    let mut labels = spec.pod.labels.clone();
    labels.extend(selector_labels(name));
    let ports = spec
        .pod
        .ports
        .iter()
        .map(|port| {
            let number = i32::try_from(port.number).unwrap_or(i32::MAX);
            ServicePort {
                name: Some(if port.name.is_empty() {
                    format!(
                        "{}-{}",
                        port.protocol.as_str().to_ascii_lowercase(),
                        port.number
                    )
                } else {
                    port.name.clone()
                }),
                port: number,
                target_port: Some(IntOrString::Int(number)),
                protocol: Some(port.protocol.as_str().to_owned()),
                ..ServicePort::default()
            }
        })
        .collect();
    Service {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(spec.pod.namespace.clone()),
            labels: Some(labels),
            owner_references: owner_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".to_owned(),
                    kind: "Deployment".to_owned(),
                    name: name.clone(),
                    uid: uid.to_owned(),
                    controller: None,
                    block_owner_deletion: None,
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(name)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The configuration [`FIELD_MANAGER`] applied last, read back from the object's managed
/// fields: the object cut down to the fields that manager owns through Apply (with the
/// apiVersion, kind, name and namespace an apply needs). Empty but for those when it owns
/// nothing.
#[must_use]
pub fn applied_config(deployment: &Deployment) -> Value {
    let object = serde_json::to_value(deployment).unwrap_or(Value::Null);
    let owned = deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|entry| {
            entry.manager.as_deref() == Some(FIELD_MANAGER)
                && entry.operation.as_deref() == Some("Apply")
                && entry.subresource.as_deref().unwrap_or_default().is_empty()
        })
        .and_then(|entry| entry.fields_v1.as_ref())
        .and_then(|fields| extract(&object, &fields.0));
    let mut config = match owned {
        Some(Value::Object(map)) => Value::Object(map),
        _ => Value::Object(serde_json::Map::new()),
    };
    config["apiVersion"] = Value::from("apps/v1");
    config["kind"] = Value::from("Deployment");
    let metadata = slot(&mut config, &["metadata"]);
    metadata["name"] = Value::from(deployment.metadata.name.clone().unwrap_or_default());
    metadata["namespace"] = Value::from(deployment.metadata.namespace.clone().unwrap_or_default());
    config
}

/// The part of `value` that a managed-fields set (`fieldsV1`) names: `f:<name>` for a field,
/// `k:<json>` for a list item by its keys, `v:<json>` for a set member, `i:<n>` for a list
/// item by position, `.` for the node itself. A node whose set is empty is a leaf, taken
/// whole.
fn extract(value: &Value, fields: &Value) -> Option<Value> {
    let fields = fields.as_object()?;
    let children: Vec<(&String, &Value)> = fields.iter().filter(|(k, _)| *k != ".").collect();
    if children.is_empty() {
        return Some(value.clone());
    }
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, sub) in children {
                if let Some(name) = key.strip_prefix("f:")
                    && let Some(child) = map.get(name)
                    && let Some(part) = extract(child, sub)
                {
                    out.insert(name.to_owned(), part);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                for (key, sub) in &children {
                    if let Some(keys) = key.strip_prefix("k:") {
                        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(keys) else {
                            continue;
                        };
                        if keys.iter().all(|(k, v)| item.get(k) == Some(v))
                            && let Some(mut part) = extract(item, sub)
                        {
                            // An item is identified by its keys: they come with it.
                            if let Value::Object(part) = &mut part {
                                for (k, v) in &keys {
                                    part.insert(k.clone(), v.clone());
                                }
                            }
                            out.push(part);
                        }
                    } else if let Some(member) = key.strip_prefix("v:")
                        && serde_json::from_str::<Value>(member).ok().as_ref() == Some(item)
                    {
                        out.push(item.clone());
                    }
                }
            }
            for (key, sub) in &children {
                if let Some(index) = key.strip_prefix("i:").and_then(|i| i.parse::<usize>().ok())
                    && let Some(item) = items.get(index)
                    && let Some(part) = extract(item, sub)
                {
                    out.push(part);
                }
            }
            Some(Value::Array(out))
        }
        _ => Some(value.clone()),
    }
}

/// The value at `path`, made an object (and its parents) when it is not one.
fn slot<'a>(value: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let mut at = value;
    for key in path {
        if !at.is_object() {
            *at = Value::Object(serde_json::Map::new());
        }
        at = at
            .as_object_mut()
            .map(|map| map.entry((*key).to_owned()).or_insert(Value::Null))
            .unwrap_or_else(|| unreachable!("made an object above"));
    }
    if at.is_null() {
        *at = Value::Object(serde_json::Map::new());
    }
    at
}

/// The fields and managers of a server-side apply conflict, from the Status causes:
/// `.spec.replicas (owned by "kubectl")`. Only the field paths and the manager names are
/// taken from the API server's answer, never its text otherwise.
fn conflicts(error: &kube::Error) -> Option<String> {
    let kube::Error::Api(status) = error else {
        return None;
    };
    if status.code != 409 {
        return None;
    }
    let causes = status.details.as_ref().map(|d| d.causes.as_slice())?;
    let described: Vec<String> = causes
        .iter()
        .filter(|cause| cause.reason == "FieldManagerConflict")
        .map(|cause| {
            let manager = cause.message.split('"').nth(1).unwrap_or("another manager");
            format!("{} is owned by {manager:?}", cause.field)
        })
        .collect();
    (!described.is_empty()).then(|| {
        format!(
            "another field manager owns fields this request sets: {}",
            described.join(", ")
        )
    })
}

/// Whether an object carries the managed-by label and is this Deployment's (instance).
fn is_ours(meta: &ObjectMeta, name: &str) -> bool {
    meta.labels.as_ref().is_some_and(|labels| {
        is_managed(labels) && labels.get(INSTANCE_LABEL).map(String::as_str) == Some(name)
    })
}

/// The result of an apply.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The Deployment after it (for a dry run: as it would be).
    pub view: DeploymentView,
    /// Whether it changed the Deployment or its Service.
    pub changed: bool,
    /// Whether it created the Deployment.
    pub created: bool,
}

/// What a rollback would bring back, for the same admission an apply gets: the image and
/// the Secrets, ConfigMaps and ServiceAccount the old template references. The policy may
/// have changed since that revision was applied, and the caller who rolls back may not be the
/// one who applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFacts {
    /// The image of the template's container.
    pub image: String,
    /// What it references, each named by its field.
    pub references: Vec<Reference>,
    /// The Pod Security profile it was hardened to, as this service recorded it.
    pub pod_security: Option<PodSecurityProfile>,
}

/// The [`TemplateFacts`] of a pod template: the image of its container "app", and what every
/// container, init container and volume references (a template this service wrote has one
/// container and no volumes, but an old revision may carry what another manager added).
#[must_use]
pub fn template_facts(template: &PodTemplateSpec) -> TemplateFacts {
    let spec = template.spec.clone().unwrap_or_default();
    let mut references = Vec::new();
    let mut add = |field: String, kind, name: &str| {
        references.push(Reference {
            field,
            kind,
            name: name.to_owned(),
        });
    };
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("init_containers", c));
    let main = spec.containers.iter().map(|c| ("containers", c));
    for (list, container) in main.chain(init) {
        let at = format!("{list}[{:?}].", container.name);
        for (i, var) in container.env.iter().flatten().enumerate() {
            let source = var.value_from.as_ref();
            if let Some(key) = source.and_then(|s| s.secret_key_ref.as_ref()) {
                add(
                    format!("{at}env[{i}].value_from.secret_key"),
                    ReferenceKind::Secret,
                    &key.name,
                );
            }
            if let Some(key) = source.and_then(|s| s.config_map_key_ref.as_ref()) {
                let field = format!("{at}env[{i}].value_from.config_map_key");
                add(field, ReferenceKind::ConfigMap, &key.name);
            }
        }
        for (i, source) in container.env_from.iter().flatten().enumerate() {
            if let Some(secret) = &source.secret_ref {
                add(
                    format!("{at}env_from[{i}].secret"),
                    ReferenceKind::Secret,
                    &secret.name,
                );
            }
            if let Some(map) = &source.config_map_ref {
                add(
                    format!("{at}env_from[{i}].config_map"),
                    ReferenceKind::ConfigMap,
                    &map.name,
                );
            }
        }
    }
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        let at = format!("volumes[{i}]");
        if let Some(name) = volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref())
        {
            add(format!("{at}.secret"), ReferenceKind::Secret, name);
        }
        if let Some(map) = &volume.config_map {
            add(
                format!("{at}.config_map"),
                ReferenceKind::ConfigMap,
                &map.name,
            );
        }
        for (j, source) in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .enumerate()
        {
            if let Some(secret) = &source.secret {
                add(
                    format!("{at}.projected[{j}].secret"),
                    ReferenceKind::Secret,
                    &secret.name,
                );
            }
            if let Some(map) = &source.config_map {
                add(
                    format!("{at}.projected[{j}].config_map"),
                    ReferenceKind::ConfigMap,
                    &map.name,
                );
            }
        }
    }
    for (i, secret) in spec.image_pull_secrets.iter().flatten().enumerate() {
        add(
            format!("image_pull_secrets[{i}]"),
            ReferenceKind::Secret,
            &secret.name,
        );
    }
    if let Some(account) = spec
        .service_account_name
        .as_deref()
        .filter(|a| !a.is_empty())
    {
        add(
            "service_account".to_owned(),
            ReferenceKind::ServiceAccount,
            account,
        );
    }
    let app = spec
        .containers
        .iter()
        .find(|c| c.name == CONTAINER_NAME)
        .or_else(|| spec.containers.first());
    TemplateFacts {
        image: app.and_then(|c| c.image.clone()).unwrap_or_default(),
        references,
        pod_security: template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(POD_SECURITY_ANNOTATION))
            .and_then(|p| PodSecurityProfile::parse(p)),
    }
}

/// The result of a rollback.
#[derive(Debug, Clone)]
pub struct RolledBack {
    /// The Deployment after it.
    pub view: DeploymentView,
    /// Whether it changed the Deployment.
    pub changed: bool,
    /// The revision whose template is now live.
    pub revision: i64,
    /// What happened.
    pub message: String,
}

/// The Deployments this service manages, through one shared client.
#[derive(Clone)]
pub struct ClusterDeployments {
    client: kube::Client,
}

impl std::fmt::Debug for ClusterDeployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDeployments").finish_non_exhaustive()
    }
}

impl ClusterDeployments {
    /// Deployments through `client`.
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The Deployment, if it exists; [`Error::ObjectNotManaged`] when it is not ours.
    async fn live(&self, namespace: &str, name: &str) -> Result<Option<Deployment>> {
        let live = self
            .api::<Deployment>(namespace)
            .get_opt(name)
            .await
            .map_err(api_error(format!(
                "reading deployment {name:?} in namespace {namespace:?}"
            )))?;
        match live {
            Some(live) if !is_ours(&live.metadata, name) => Err(Error::ObjectNotManaged {
                kind: "Deployment",
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
            live => Ok(live),
        }
    }

    /// The managed Deployment; [`Error::DeploymentNotFound`] when it does not exist.
    async fn managed(&self, namespace: &str, name: &str) -> Result<Deployment> {
        self.live(namespace, name)
            .await?
            .ok_or_else(|| Error::DeploymentNotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
    }

    async fn list_of<K>(&self, namespace: &str, selector: &str) -> Result<Vec<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let list = self
            .api::<K>(namespace)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(api_error(format!(
                "listing {} in namespace {namespace:?}",
                K::plural(&Default::default())
            )))?;
        Ok(list.items)
    }

    /// The ReplicaSets of a Deployment (by its selector; [`DeploymentView::new`] keeps those
    /// it controls).
    async fn replica_sets(&self, namespace: &str, name: &str) -> Result<Vec<ReplicaSet>> {
        self.list_of(namespace, &instance_selector(name)).await
    }

    async fn service(&self, namespace: &str, name: &str) -> Result<Option<Service>> {
        self.api::<Service>(namespace)
            .get_opt(name)
            .await
            .map_err(api_error(format!(
                "reading service {name:?} in namespace {namespace:?}"
            )))
    }

    /// A Deployment with its ReplicaSets, pods and Service, and its rollout assessed.
    async fn view(&self, deployment: &Deployment) -> Result<DeploymentView> {
        let namespace = deployment.metadata.namespace.as_deref().unwrap_or_default();
        let name = deployment.metadata.name.as_deref().unwrap_or_default();
        let selector = instance_selector(name);
        let (replica_sets, pods, service) = tokio::try_join!(
            self.list_of::<ReplicaSet>(namespace, &selector),
            self.list_of::<Pod>(namespace, &selector),
            self.service(namespace, name),
        )?;
        let service = service.filter(|s| is_ours(&s.metadata, name));
        Ok(assemble(deployment, &replica_sets, &pods, service.as_ref()))
    }

    /// The managed Deployment with its rollout.
    ///
    /// # Errors
    ///
    /// DeploymentNotFound, ObjectNotManaged, or the API error.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<DeploymentView> {
        let deployment = self.managed(namespace, name).await?;
        self.view(&deployment).await
    }

    /// The managed Deployments of a namespace that `selector` matches, sorted by name.
    ///
    /// # Errors
    ///
    /// The API error.
    pub async fn list(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<DeploymentView>> {
        let managed = managed_selector(None);
        let wanted = managed_selector(Some(selector));
        let (mut deployments, replica_sets, pods, services) = tokio::try_join!(
            self.list_of::<Deployment>(namespace, &wanted),
            self.list_of::<ReplicaSet>(namespace, &managed),
            self.list_of::<Pod>(namespace, &managed),
            self.list_of::<Service>(namespace, &managed),
        )?;
        deployments.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(deployments
            .iter()
            .filter(|d| is_ours(&d.metadata, d.metadata.name.as_deref().unwrap_or_default()))
            .map(|deployment| {
                let name = deployment.metadata.name.as_deref().unwrap_or_default();
                let mine = |meta: &ObjectMeta| {
                    meta.labels
                        .as_ref()
                        .and_then(|l| l.get(INSTANCE_LABEL))
                        .map(String::as_str)
                        == Some(name)
                };
                let pods: Vec<Pod> = pods.iter().filter(|p| mine(&p.metadata)).cloned().collect();
                let service = services
                    .iter()
                    .find(|s| s.metadata.name.as_deref() == Some(name) && mine(&s.metadata));
                assemble(deployment, &replica_sets, &pods, service)
            })
            .collect())
    }

    /// The (shortened) hash `request_id` was recorded with on the Deployment or one of its
    /// ReplicaSets (the controller copies the Deployment's annotations onto them).
    async fn recorded(&self, live: &Deployment, request_id: &str) -> Result<Option<String>> {
        let annotations = live.metadata.annotations.clone().unwrap_or_default();
        if let Some(hash) = recorded_hash(&annotations, request_id) {
            return Ok(Some(hash));
        }
        let namespace = live.metadata.namespace.as_deref().unwrap_or_default();
        let name = live.metadata.name.as_deref().unwrap_or_default();
        Ok(self
            .replica_sets(namespace, name)
            .await?
            .iter()
            .filter_map(|rs| rs.metadata.annotations.as_ref())
            .find_map(|annotations| recorded_hash(annotations, request_id)))
    }

    /// Whether `request_id` was done already with this hash (a retry: `Ok(true)`); a
    /// request_id used for something else is [`Error::RequestIdReused`].
    async fn already_done(
        &self,
        live: &Deployment,
        request_id: Option<&str>,
        hash: &str,
    ) -> Result<bool> {
        let Some(request_id) = request_id else {
            return Ok(false);
        };
        match self.recorded(live, request_id).await? {
            Some(recorded) if same_request(&recorded, hash) => Ok(true),
            Some(_) => Err(Error::RequestIdReused(request_id.to_owned())),
            None => Ok(false),
        }
    }

    /// Server-side apply of `object` under [`FIELD_MANAGER`], never forced.
    async fn apply_object<K>(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        object: &(impl serde::Serialize + std::fmt::Debug),
        dry_run: bool,
    ) -> Result<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let params = PatchParams {
            dry_run,
            ..PatchParams::apply(FIELD_MANAGER)
        };
        self.api::<K>(namespace)
            .patch(name, &params, &Patch::Apply(object))
            .await
            .map_err(|error| match conflicts(&error) {
                Some(conflicts) => Error::FieldConflict {
                    kind,
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    conflicts,
                },
                None => api_error(format!(
                    "applying {} {name:?} in namespace {namespace:?}",
                    kind.to_ascii_lowercase()
                ))(error),
            })
    }

    /// Create or update the Deployment (and its Service) to `spec`, hardened to `profile`.
    /// A retried request_id changes nothing.
    ///
    /// # Errors
    ///
    /// ObjectNotManaged, RequestIdReused, FieldConflict, or the API error.
    pub async fn apply(
        &self,
        spec: &DeploymentSpec,
        profile: PodSecurityProfile,
    ) -> Result<Applied> {
        let namespace = &spec.pod.namespace;
        let name = &spec.pod.name;
        let dry_run = spec.pod.dry_run;
        let (live, service) =
            tokio::try_join!(self.live(namespace, name), self.service(namespace, name))?;
        let service = match service {
            Some(s) if is_ours(&s.metadata, name) => Some(s),
            Some(_) if spec.expose => {
                return Err(Error::ObjectNotManaged {
                    kind: "Service",
                    namespace: namespace.clone(),
                    name: name.clone(),
                });
            }
            _ => None,
        };
        if let Some(live) = &live {
            Self::refuse_deleting(live)?;
        }
        if let Some(live) = &live
            && self
                .already_done(live, spec.pod.request_id.as_deref(), &spec.request_hash)
                .await?
        {
            return Ok(Applied {
                view: self.view(live).await?,
                changed: false,
                created: false,
            });
        }

        let object = build_deployment(spec, profile, &Carried::from_live(live.as_ref()));
        let applied: Deployment = self
            .apply_object("Deployment", namespace, name, &object, dry_run)
            .await?;
        // What the apply changed: the spec (its generation) or the labels and annotations. Not
        // the resourceVersion, which the controllers' status writes move all through a rollout.
        let written = |meta: &ObjectMeta| {
            (
                meta.generation,
                meta.labels.clone(),
                meta.annotations.clone(),
            )
        };
        let mut changed = !dry_run
            && live.as_ref().map(|l| written(&l.metadata)) != Some(written(&applied.metadata));
        let version = |meta: &ObjectMeta| meta.resource_version.clone();
        if spec.expose {
            let owner = applied.metadata.uid.as_deref().filter(|_| !dry_run);
            let exposed: Service = self
                .apply_object(
                    "Service",
                    namespace,
                    name,
                    &build_service(spec, owner),
                    dry_run,
                )
                .await?;
            changed |= !dry_run
                && service.as_ref().and_then(|s| version(&s.metadata))
                    != version(&exposed.metadata);
        } else if let Some(service) = service
            && !dry_run
        {
            self.delete_service(namespace, name, &service).await?;
            changed = true;
        }
        Ok(Applied {
            view: self.view(&applied).await?,
            changed,
            created: live.is_none() && !dry_run,
        })
    }

    async fn delete_service(&self, namespace: &str, name: &str, service: &Service) -> Result<()> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: service.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api::<Service>(namespace).delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(error) if matches!(status_code(&error), Some(404 | 409)) => Ok(()),
            Err(error) => Err(api_error(format!(
                "deleting service {name:?} in namespace {namespace:?}"
            ))(error)),
        }
    }

    /// Set the number of replicas; `false` when it had that number already.
    ///
    /// # Errors
    ///
    /// DeploymentNotFound, ObjectNotManaged, FieldConflict, or the API error.
    pub async fn scale(
        &self,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> Result<(DeploymentView, bool)> {
        let live = self.managed(namespace, name).await?;
        Self::refuse_deleting(&live)?;
        if live.spec.as_ref().and_then(|s| s.replicas) == Some(replicas) {
            return Ok((self.view(&live).await?, false));
        }
        let mut config = applied_config(&live);
        slot(&mut config, &["spec"])["replicas"] = Value::from(replicas);
        let applied: Deployment = self
            .apply_object("Deployment", namespace, name, &config, false)
            .await?;
        Ok((self.view(&applied).await?, true))
    }

    /// Restart every pod by a rolling update (the template's `restartedAt` set to `now`,
    /// RFC 3339); `false` for a retried request_id.
    ///
    /// # Errors
    ///
    /// DeploymentNotFound, ObjectNotManaged, DeploymentPaused, RequestIdReused,
    /// FieldConflict, or the API error.
    pub async fn restart(
        &self,
        namespace: &str,
        name: &str,
        request_id: Option<&str>,
        now: &str,
    ) -> Result<(DeploymentView, bool)> {
        let live = self.managed(namespace, name).await?;
        Self::refuse_deleting(&live)?;
        self.refuse_paused(&live)?;
        let hash = operation_hash("restart");
        if self.already_done(&live, request_id, &hash).await? {
            return Ok((self.view(&live).await?, false));
        }
        let mut config = applied_config(&live);
        slot(
            &mut config,
            &["spec", "template", "metadata", "annotations"],
        )[RESTARTED_AT_ANNOTATION] = Value::from(now);
        if let Some(id) = request_id {
            record_request(&mut config, &live, id, &hash);
        }
        let applied: Deployment = self
            .apply_object("Deployment", namespace, name, &config, false)
            .await?;
        Ok((self.view(&applied).await?, true))
    }

    /// A Deployment whose deletion has begun is not changed: the garbage collector would
    /// remove it with the change, after the call said it was applied.
    fn refuse_deleting(live: &Deployment) -> Result<()> {
        if live.metadata.deletion_timestamp.is_some() {
            return Err(Error::DeploymentDeleting {
                namespace: live.metadata.namespace.clone().unwrap_or_default(),
                name: live.metadata.name.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn refuse_paused(&self, live: &Deployment) -> Result<()> {
        if live.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
            return Err(Error::DeploymentPaused {
                namespace: live.metadata.namespace.clone().unwrap_or_default(),
                name: live.metadata.name.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Put the template of `to_revision` (0: the highest revision below the current one)
    /// back, as `kubectl rollout undo` does (k8s.io/kubectl `polymorphichelpers/rollback.go`):
    /// the ReplicaSet's template without its `pod-template-hash` label, and its annotations
    /// (the change cause) but kubectl's skipped ones and this service's own.
    ///
    /// # Errors
    ///
    /// DeploymentNotFound, ObjectNotManaged, DeploymentPaused, NoPreviousRevision,
    /// RevisionNotFound, RequestIdReused, FieldConflict, or the API error.
    pub async fn rollback(
        &self,
        namespace: &str,
        name: &str,
        to_revision: i64,
        request_id: Option<&str>,
        admit: impl FnOnce(&TemplateFacts) -> Result<()>,
    ) -> Result<RolledBack> {
        let live = self.managed(namespace, name).await?;
        Self::refuse_deleting(&live)?;
        self.refuse_paused(&live)?;
        let current = deployment_state(&live).revision();
        let hash = operation_hash(&format!("rollback {to_revision}"));
        if self.already_done(&live, request_id, &hash).await? {
            return Ok(RolledBack {
                view: self.view(&live).await?,
                changed: false,
                revision: current,
                message: format!(
                    "already rolled back by request_id {:?}",
                    request_id.unwrap_or_default()
                ),
            });
        }
        let replica_sets: Vec<ReplicaSet> = self
            .replica_sets(namespace, name)
            .await?
            .into_iter()
            .filter(|rs| replica_set_state(rs).owner.as_deref() == Some(name))
            .collect();
        let revision_of = |rs: &ReplicaSet| replica_set_state(rs).revision();
        let target = if to_revision == 0 {
            replica_sets
                .iter()
                .filter(|rs| revision_of(rs) < current)
                .max_by_key(|rs| revision_of(rs))
                .ok_or_else(|| Error::NoPreviousRevision {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })?
        } else {
            replica_sets
                .iter()
                .find(|rs| revision_of(rs) == to_revision)
                .ok_or_else(|| Error::RevisionNotFound {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    revision: to_revision,
                })?
        };
        let revision = revision_of(target);
        let template = target
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let template = without_hash(serde_json::to_value(&template).unwrap_or(Value::Null));
        let live_template = without_hash(
            serde_json::to_value(live.spec.as_ref().map(|s| &s.template)).unwrap_or(Value::Null),
        );
        if template == live_template {
            return Ok(RolledBack {
                view: self.view(&live).await?,
                changed: false,
                revision,
                message: format!(
                    "skipped rollback: the template of revision {revision} is the current one"
                ),
            });
        }

        // The old template is admitted as an apply's would be, before anything changes.
        if let Some(old) = target.spec.as_ref().and_then(|s| s.template.as_ref()) {
            admit(&template_facts(old))?;
        }

        let mut config = applied_config(&live);
        slot(&mut config, &["spec"])["template"] = template;
        let annotations = slot(&mut config, &["metadata", "annotations"]);
        if let Value::Object(annotations) = annotations {
            annotations.remove(CHANGE_CAUSE_ANNOTATION);
            for (key, value) in target.metadata.annotations.iter().flatten() {
                if !is_reserved_key(key) && !ROLLBACK_SKIPPED_ANNOTATIONS.contains(&key.as_str()) {
                    annotations.insert(key.clone(), Value::from(value.clone()));
                }
            }
            annotations.remove(REQUEST_ID_LABEL);
        }
        if let Some(id) = request_id {
            record_request(&mut config, &live, id, &hash);
        }
        let applied: Deployment = self
            .apply_object("Deployment", namespace, name, &config, false)
            .await?;
        Ok(RolledBack {
            view: self.view(&applied).await?,
            changed: true,
            revision,
            message: format!("rolled back to revision {revision}"),
        })
    }

    /// The Deployment and its revisions (its ReplicaSets), oldest first.
    ///
    /// # Errors
    ///
    /// DeploymentNotFound, ObjectNotManaged, or the API error.
    pub async fn revisions(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(DeploymentState, Vec<ReplicaSetState>)> {
        let live = self.managed(namespace, name).await?;
        let mut revisions: Vec<ReplicaSetState> = self
            .replica_sets(namespace, name)
            .await?
            .iter()
            .map(replica_set_state)
            .filter(|rs| rs.owner.as_deref() == Some(name))
            .collect();
        revisions.sort_by_key(ReplicaSetState::revision);
        Ok((deployment_state(&live), revisions))
    }

    /// Delete the Deployment with its ReplicaSets and pods (foreground) and its Service.
    /// `None` when it did not exist and `allow_missing`.
    ///
    /// # Errors
    ///
    /// DeploymentNotFound, ObjectNotManaged, or the API error.
    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
        allow_missing: bool,
    ) -> Result<Option<DeploymentView>> {
        let Some(live) = self.live(namespace, name).await? else {
            return if allow_missing {
                Ok(None)
            } else {
                Err(Error::DeploymentNotFound {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            };
        };
        let mut view = self.view(&live).await?;
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: live.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::foreground()
        };
        match self
            .api::<Deployment>(namespace)
            .delete(name, &params)
            .await
        {
            Ok(_) => {}
            // Gone meanwhile (404), or replaced by another of the same name (409): not ours.
            Err(error) if matches!(status_code(&error), Some(404 | 409)) => {}
            Err(error) => {
                return Err(api_error(format!(
                    "deleting deployment {name:?} in namespace {namespace:?}"
                ))(error));
            }
        }
        if let Some(service) = self.service(namespace, name).await?
            && is_ours(&service.metadata, name)
        {
            self.delete_service(namespace, name, &service).await?;
        }
        view.state.deleting = true;
        Ok(Some(view))
    }

    /// Wait until the Deployment of `uid` (its ReplicaSets and pods first, under foreground
    /// deletion) and its Service are gone, or `until` passes.
    ///
    /// # Errors
    ///
    /// DeletionTimedOut, or the API error.
    pub async fn wait_gone(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        until: tokio::time::Instant,
    ) -> Result<()> {
        let started = tokio::time::Instant::now();
        loop {
            let deployment = self
                .api::<Deployment>(namespace)
                .get_opt(name)
                .await
                .map_err(api_error(format!(
                    "reading deployment {name:?} in namespace {namespace:?}"
                )))?;
            let service = self.service(namespace, name).await?;
            let deployment_gone = deployment.is_none_or(|d| d.metadata.uid.as_deref() != Some(uid));
            let service_gone = service.is_none_or(|s| !is_ours(&s.metadata, name));
            if deployment_gone && service_gone {
                return Ok(());
            }
            if tokio::time::Instant::now() + DELETE_POLL > until {
                return Err(Error::DeletionTimedOut {
                    deployment: format!("{namespace}/{name}"),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(DELETE_POLL).await;
        }
    }
}

/// Record `request_id` in an applied configuration: the Deployment's request-id annotation
/// and its request history (kept from the live object).
fn record_request(config: &mut Value, live: &Deployment, request_id: &str, hash: &str) {
    let annotations = live.metadata.annotations.clone().unwrap_or_default();
    let slot = slot(config, &["metadata", "annotations"]);
    slot[REQUEST_ID_LABEL] = Value::from(request_id);
    slot[REQUEST_HISTORY_ANNOTATION] = Value::from(request_history(&annotations, request_id, hash));
}

/// A pod template as JSON without the `pod-template-hash` label, to compare templates as
/// kubectl's `equalIgnoreHash` does.
fn without_hash(mut template: Value) -> Value {
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    template
}

/// The view of a Deployment from the objects read.
fn assemble(
    deployment: &Deployment,
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
    service: Option<&Service>,
) -> DeploymentView {
    let states: Vec<PodState> = pods.iter().map(pod_state).collect();
    let assessments: Vec<_> = states.iter().map(assess).collect();
    let pods: Vec<PodOfRollout<'_>> = states
        .iter()
        .zip(&assessments)
        .map(|(state, assessment)| PodOfRollout { state, assessment })
        .collect();
    DeploymentView::new(
        deployment_state(deployment),
        replica_sets.iter().map(replica_set_state),
        service.map(service_state),
        &pods,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::deployment::{DeploymentInput, validate_deployment};
    use crate::domain::spec::{DeployInput, Port, Protocol};

    fn spec() -> DeploymentSpec {
        validate_deployment(&DeploymentInput {
            pod: DeployInput {
                image: "nginx:1.27".into(),
                namespace: "team-a".into(),
                name: "web".into(),
                request_id: "req-1".into(),
                ports: vec![
                    Port {
                        name: String::new(),
                        number: 8080,
                        protocol: Protocol::Tcp,
                    },
                    Port {
                        name: "dns".into(),
                        number: 53,
                        protocol: Protocol::Udp,
                    },
                ],
                ..DeployInput::default()
            },
            replicas: Some(3),
            expose: true,
            ..DeploymentInput::default()
        })
        .expect("valid")
    }

    #[test]
    fn the_template_carries_no_request_bookkeeping() {
        let deployment =
            build_deployment(&spec(), PodSecurityProfile::Baseline, &Carried::default());
        let meta = &deployment.metadata;
        let annotations = meta.annotations.as_ref().expect("annotations");
        assert_eq!(annotations[REQUEST_ID_LABEL], "req-1");
        assert!(annotations[REQUEST_HISTORY_ANNOTATION].starts_with("req-1="));
        let spec = deployment.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.selector.match_labels, Some(selector_labels("web")));
        let template = spec.template.metadata.as_ref().expect("template metadata");
        let labels = template.labels.as_ref().expect("labels");
        assert!(!labels.contains_key(REQUEST_ID_LABEL));
        assert_eq!(labels[INSTANCE_LABEL], "web");
        let annotations = template.annotations.as_ref().expect("annotations");
        assert!(!annotations.contains_key(REQUEST_HASH_ANNOTATION));
        let pod = spec.template.spec.as_ref().expect("pod spec");
        assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn what_scale_and_restart_set_is_carried_forward() {
        let mut spec = spec();
        spec.replicas = None;
        let carried = Carried {
            replicas: Some(5),
            restarted_at: Some("2025-01-01T00:00:00Z".into()),
            annotations: BTreeMap::new(),
        };
        let deployment = build_deployment(&spec, PodSecurityProfile::Baseline, &carried);
        let spec = deployment.spec.expect("spec");
        assert_eq!(spec.replicas, Some(5));
        let annotations = spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .expect("annotations");
        assert_eq!(annotations[RESTARTED_AT_ANNOTATION], "2025-01-01T00:00:00Z");
    }

    #[test]
    fn the_service_names_its_ports() {
        let service = build_service(&spec(), Some("uid-1"));
        let ports = service.spec.and_then(|s| s.ports).expect("ports");
        let names: Vec<_> = ports.iter().filter_map(|p| p.name.clone()).collect();
        assert_eq!(names, ["tcp-8080", "dns"]);
        let owner = &service.metadata.owner_references.expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Deployment", "uid-1")
        );
    }

    #[test]
    fn the_applied_configuration_is_what_the_manager_owns() {
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "ns", "resourceVersion": "7",
                "annotations": { "mine": "1", "theirs": "2" },
                "managedFields": [
                    { "manager": "k8s-deployer", "operation": "Apply", "apiVersion": "apps/v1",
                      "fieldsType": "FieldsV1", "fieldsV1": {
                        "f:metadata": { "f:annotations": { "f:mine": {} } },
                        "f:spec": { "f:replicas": {}, "f:template": { "f:spec": {
                            "f:containers": { "k:{\"name\":\"app\"}": {
                                ".": {}, "f:image": {}, "f:name": {} } } } } } } },
                    { "manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1",
                      "fieldsType": "FieldsV1", "fieldsV1": {
                        "f:metadata": { "f:annotations": { "f:theirs": {} } } } }
                ]
            },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "a": "b" } },
                "template": { "spec": { "containers": [
                    { "name": "app", "image": "nginx", "imagePullPolicy": "Always" },
                    { "name": "sidecar", "image": "envoy" }
                ] } }
            }
        }))
        .expect("a deployment");
        let config = applied_config(&deployment);
        assert_eq!(
            config,
            serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": "web", "namespace": "ns", "annotations": { "mine": "1" } },
                "spec": { "replicas": 2, "template": { "spec": { "containers": [
                    { "name": "app", "image": "nginx" }
                ] } } }
            })
        );
    }

    #[test]
    fn apply_conflicts_name_fields_and_managers() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 409, "reason": "Conflict",
            "message": "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas",
            "details": { "causes": [{
                "reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl-edit\" using apps/v1",
                "field": ".spec.replicas"
            }] }
        }))
        .expect("a status");
        let error = kube::Error::Api(Box::new(status));
        assert_eq!(
            conflicts(&error).as_deref(),
            Some(
                "another field manager owns fields this request sets: .spec.replicas is owned by \"kubectl-edit\""
            )
        );
    }
}
