//! `deployer.v1.DeploymentService`: [`DeploymentService`] applies, reads, scales, restarts,
//! rolls back and deletes the Deployments this service manages, through the Kubernetes
//! adapter ([`ClusterDeployments`]), with the same authentication, policy, pod admission,
//! call limits and audit trail as [`DeployerService`].

use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::audit::AuditSubject;
use crate::domain::deployment::{
    DeploymentInput, DeploymentSpec, MAX_REPLICAS, validate_deployment,
};
use crate::domain::names::is_dns1123_label;
use crate::domain::rollout::{DeploymentView, RolloutGoal};
use crate::domain::spec::{DEFAULT_WAIT_TIMEOUT, PodSecurityProfile, resolve_profile};
use crate::domain::{Caller, ImageReference, LabelSelector, Violations};
use crate::grpc::convert::deployment::change_cause;
use crate::grpc::convert::{duration, timestamp};
use crate::grpc::deadline::{self, DEADLINE_MARGIN, RETRY, bounded, call_limit};
use crate::grpc::rollout::{RolloutStreams, WatchRolloutStream, wait_rollout};
use crate::grpc::{Audited, CallInfo, DeployerService, invalid};
use crate::k8s::ClusterDeployments;
use crate::k8s::deployments::TemplateFacts;
use crate::policy::Action;
use crate::proto::deployer::v1 as pb;
use crate::{Error, Result};

/// What a caller whose apply ran out should do.
const RETRY_APPLY: &str = "the Deployment may or may not have been changed; retry with the \
     same request_id, which changes nothing more if it was";
/// The same for the other calls that change a Deployment.
const RETRY_CHANGE: &str = "the Deployment may or may not have been changed; check it, or retry \
     with the same request_id";
/// The same for DeleteDeployment.
const RETRY_DELETE: &str =
    "the Deployment may or may not have been deleted; retry with allow_missing";
/// Longest wait a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// What the full names of this service's methods start with.
pub(super) const SERVICE_PREFIX: &str = "deployer.v1.DeploymentService/";

/// The full names of the methods, as audit records and logs give them.
mod method {
    pub(super) const APPLY: &str = "deployer.v1.DeploymentService/ApplyDeployment";
    pub(super) const GET: &str = "deployer.v1.DeploymentService/GetDeployment";
    pub(super) const LIST: &str = "deployer.v1.DeploymentService/ListDeployments";
    pub(super) const SCALE: &str = "deployer.v1.DeploymentService/ScaleDeployment";
    pub(super) const RESTART: &str = "deployer.v1.DeploymentService/RestartDeployment";
    pub(super) const ROLLBACK: &str = "deployer.v1.DeploymentService/RollbackDeployment";
    pub(super) const REVISIONS: &str = "deployer.v1.DeploymentService/ListRevisions";
    pub(super) const DELETE: &str = "deployer.v1.DeploymentService/DeleteDeployment";
}

/// `deployer.v1.DeploymentService`.
#[derive(Clone)]
pub struct DeploymentService {
    deployer: DeployerService,
    deployments: ClusterDeployments,
    rollouts: RolloutStreams,
}

impl std::fmt::Debug for DeploymentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentService").finish_non_exhaustive()
    }
}

/// The name of an existing Deployment: required, a DNS-1123 label.
fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid("name", "is required"));
    }
    is_dns1123_label(name).map_err(|e| invalid("name", e))
}

/// A wait's timeout: unset for the default, else more than zero and at most an hour.
fn wait_timeout(value: Option<&prost_types::Duration>) -> Result<Duration> {
    let Some(value) = value else {
        return Ok(DEFAULT_WAIT_TIMEOUT);
    };
    match duration(value) {
        Some(timeout) if !timeout.is_zero() && timeout <= MAX_WAIT => Ok(timeout),
        _ => Err(invalid(
            "wait_timeout",
            "must be greater than zero and at most 1 hour",
        )),
    }
}

/// When a wait of `timeout` must end: then, or a little before the caller's deadline.
fn wait_limit(deadline: Option<Instant>, timeout: Duration) -> Instant {
    let limit = Instant::now() + timeout;
    deadline
        .map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d))
        .map_or(limit, |d| d.min(limit))
}

fn deployment(view: &DeploymentView) -> Option<pb::Deployment> {
    Some(pb::Deployment::from(view))
}

impl DeploymentService {
    /// The service, beside `deployer` (whose policy, audit log and settings it shares).
    #[must_use]
    pub fn new(
        deployer: DeployerService,
        deployments: ClusterDeployments,
        rollouts: RolloutStreams,
    ) -> Self {
        Self {
            deployer,
            deployments,
            rollouts,
        }
    }

    async fn apply(
        &self,
        caller: &Caller,
        request: pb::ApplyDeploymentRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::ApplyDeploymentResponse> {
        let input = DeploymentInput::try_from(request).map_err(Error::InvalidRequest)?;
        let spec = validate_deployment(&input).map_err(Error::InvalidRequest)?;
        self.deployer
            .admit_pods(caller, Action::Deploy, &spec.pod)?;

        let limit = call_limit(deadline, self.deployer.settings.call_timeout);
        let (applied, profile) = bounded(limit, RETRY_APPLY, async {
            let profile = self.profile(&spec).await?;
            let applied = self.deployments.apply(&spec, profile).await?;
            Ok((applied, profile))
        })
        .await?;
        tracing::info!(
            namespace = %spec.pod.namespace, name = %spec.pod.name, image = %spec.pod.image,
            changed = applied.changed, created = applied.created, dry_run = spec.pod.dry_run,
            "deployment applied"
        );
        let view = match spec.wait {
            Some((goal, timeout)) if !spec.pod.dry_run => {
                self.wait_rollout(applied.view, goal, wait_limit(deadline, timeout))
                    .await?
            }
            _ => applied.view,
        };
        Ok(pb::ApplyDeploymentResponse {
            deployment: deployment(&view),
            changed: applied.changed,
            created: applied.created,
            pod_security: pb::PodSecurity::from(profile).into(),
        })
    }

    /// The profile of the template's pods, refused up front when the namespace's PodSecurity
    /// admission would refuse them: for a Deployment it only warns, and the pods would then
    /// fail one by one at creation (a ReplicaFailure), far from the caller.
    async fn profile(&self, spec: &DeploymentSpec) -> Result<PodSecurityProfile> {
        let namespace = &spec.pod.namespace;
        let enforced = self.deployer.pods.pod_security_enforced(namespace).await?;
        let profile = self.deployer.profile_for(&spec.pod, enforced.as_deref())?;
        if let Some(level) = enforced.as_deref().and_then(PodSecurityProfile::parse)
            && profile < level
        {
            return Err(Error::PodSecurityRejected {
                namespace: namespace.clone(),
                reason: format!(
                    "violates PodSecurity \"{}:latest\": the pod template is hardened to {} only",
                    level.as_str(),
                    profile.as_str()
                ),
            });
        }
        Ok(profile)
    }

    /// Wait until the rollout of `view`'s generation is over as `goal` asks, FAILED, or
    /// `until` passes, following the Deployment on the rollout hub (the namespace's shared
    /// watches; no watch of its own).
    async fn wait_rollout(
        &self,
        view: DeploymentView,
        goal: RolloutGoal,
        until: Instant,
    ) -> Result<DeploymentView> {
        let uid = Some(view.state.uid.as_str()).filter(|uid| !uid.is_empty());
        wait_rollout(
            self.rollouts.hub(),
            &view.state.namespace,
            &view.state.name,
            uid,
            view.state.generation,
            goal,
            until,
        )
        .await
    }

    async fn delete(
        &self,
        request: &pb::DeleteDeploymentRequest,
        limit: Instant,
        deadline: Option<Instant>,
    ) -> Result<pb::DeleteDeploymentResponse> {
        validate_name(&request.name)?;
        let timeout = wait_timeout(request.wait_timeout.as_ref())?;
        let (namespace, name) = (&request.namespace, &request.name);
        let deleted = bounded(
            limit,
            RETRY_DELETE,
            self.deployments
                .delete(namespace, name, request.allow_missing),
        )
        .await?;
        if let Some(view) = &deleted
            && request.wait
        {
            self.deployments
                .wait_gone(
                    namespace,
                    name,
                    &view.state.uid,
                    wait_limit(deadline, timeout),
                )
                .await?;
        }
        Ok(pb::DeleteDeploymentResponse {
            deployment: deleted.as_ref().and_then(deployment),
        })
    }
}

impl Audited for pb::ApplyDeploymentRequest {
    fn subject(&self) -> AuditSubject {
        AuditSubject {
            namespace: self.namespace.clone(),
            deployment: self.name.clone(),
            image: self.image.clone(),
            request_id: self.request_id.clone(),
            ..AuditSubject::default()
        }
    }
}

/// The audit subject of requests that name a Deployment (and maybe carry a request_id).
macro_rules! audited_by_name {
    ($($request:ty => $request_id:expr),+ $(,)?) => {$(
        impl Audited for $request {
            fn subject(&self) -> AuditSubject {
                let request_id: fn(&Self) -> String = $request_id;
                AuditSubject {
                    namespace: self.namespace.clone(),
                    deployment: self.name.clone(),
                    request_id: request_id(self),
                    ..AuditSubject::default()
                }
            }
        }
    )+};
}

audited_by_name! {
    pb::GetDeploymentRequest => |_| String::new(),
    pb::ScaleDeploymentRequest => |_| String::new(),
    pb::RestartDeploymentRequest => |r| r.request_id.clone(),
    pb::RollbackDeploymentRequest => |r| r.request_id.clone(),
    pb::ListRevisionsRequest => |_| String::new(),
    pb::DeleteDeploymentRequest => |_| String::new(),
    pb::WatchRolloutRequest => |_| String::new(),
}

impl Audited for pb::ListDeploymentsRequest {
    fn subject(&self) -> AuditSubject {
        AuditSubject {
            namespace: self.namespace.clone(),
            selector: self.label_selector.clone(),
            ..AuditSubject::default()
        }
    }
}

/// An optional request_id, checked as Deploy checks it.
fn request_id(value: &str) -> Result<Option<&str>> {
    if value.is_empty() {
        return Ok(None);
    }
    crate::domain::names::validate_label_value(value)
        .map_err(|e| invalid("request_id", e))
        .map(|()| Some(value))
}

/// The current time, RFC 3339 to the second, as `kubectl rollout restart` writes it.
fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

#[tonic::async_trait]
impl pb::deployment_service_server::DeploymentService for DeploymentService {
    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
        request_id = %request.get_ref().request_id,
    ))]
    async fn apply_deployment(
        &self,
        request: Request<pb::ApplyDeploymentRequest>,
    ) -> std::result::Result<Response<pb::ApplyDeploymentResponse>, Status> {
        let deadline = deadline::caller_deadline(request.metadata());
        let call = CallInfo::new(method::APPLY, &request);
        let caller = call.caller().cloned();
        let request = request.into_inner();
        let work = async move { self.apply(&caller?, request, deadline).await };
        self.deployer
            .audited(call, work, |response| {
                response.deployment.as_ref().map(|d| d.name.clone())
            })
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
    ))]
    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> std::result::Result<Response<pb::GetDeploymentResponse>, Status> {
        let call = CallInfo::new(method::GET, &request);
        let caller = call.caller().cloned();
        let limit = self.deployer.call_limit(&request);
        let request = request.into_inner();
        let work = bounded(limit, RETRY, async {
            self.deployer
                .admit(caller, Action::Status, &request.namespace)?;
            validate_name(&request.name)?;
            let view = self
                .deployments
                .get(&request.namespace, &request.name)
                .await?;
            Ok(pb::GetDeploymentResponse {
                deployment: deployment(&view),
            })
        });
        self.deployer
            .audited(call, work, |_| None)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        label_selector = %request.get_ref().label_selector,
    ))]
    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> std::result::Result<Response<pb::ListDeploymentsResponse>, Status> {
        let call = CallInfo::new(method::LIST, &request);
        let caller = call.caller().cloned();
        let limit = self.deployer.call_limit(&request);
        let request = request.into_inner();
        let work = bounded(limit, RETRY, async {
            self.deployer
                .admit(caller, Action::List, &request.namespace)?;
            let selector = LabelSelector::parse(&request.label_selector)
                .map_err(|rule| invalid("label_selector", rule))?;
            self.deployer
                .pods
                .require_namespace(&request.namespace)
                .await?;
            let views = self.deployments.list(&request.namespace, &selector).await?;
            Ok(pb::ListDeploymentsResponse {
                deployments: views.iter().map(pb::Deployment::from).collect(),
            })
        });
        self.deployer
            .audited(call, work, |_| None)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
        replicas = request.get_ref().replicas,
    ))]
    async fn scale_deployment(
        &self,
        request: Request<pb::ScaleDeploymentRequest>,
    ) -> std::result::Result<Response<pb::ScaleDeploymentResponse>, Status> {
        let call = CallInfo::new(method::SCALE, &request);
        let caller = call.caller().cloned();
        let limit = self.deployer.call_limit(&request);
        let request = request.into_inner();
        let work = bounded(limit, RETRY_CHANGE, async {
            self.deployer
                .admit(caller, Action::Scale, &request.namespace)?;
            let mut violations = Violations::default();
            if let Err(Error::InvalidRequest(v)) = validate_name(&request.name) {
                violations.extend(v);
            }
            let replicas = i32::try_from(request.replicas)
                .ok()
                .filter(|_| request.replicas <= MAX_REPLICAS);
            let Some(replicas) = replicas.filter(|_| violations.is_empty()) else {
                if request.replicas > MAX_REPLICAS {
                    violations.push(
                        "replicas",
                        format!("must be at most {MAX_REPLICAS}, not {}", request.replicas),
                    );
                }
                return Err(Error::InvalidRequest(violations));
            };
            let (view, changed) = self
                .deployments
                .scale(&request.namespace, &request.name, replicas)
                .await?;
            Ok(pb::ScaleDeploymentResponse {
                deployment: deployment(&view),
                changed,
            })
        });
        self.deployer
            .audited(call, work, |_| None)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
        request_id = %request.get_ref().request_id,
    ))]
    async fn restart_deployment(
        &self,
        request: Request<pb::RestartDeploymentRequest>,
    ) -> std::result::Result<Response<pb::RestartDeploymentResponse>, Status> {
        let call = CallInfo::new(method::RESTART, &request);
        let caller = call.caller().cloned();
        let limit = self.deployer.call_limit(&request);
        let request = request.into_inner();
        let work = bounded(limit, RETRY_CHANGE, async {
            self.deployer
                .admit(caller, Action::Restart, &request.namespace)?;
            validate_name(&request.name)?;
            let request_id = request_id(&request.request_id)?;
            let (view, changed) = self
                .deployments
                .restart(
                    &request.namespace,
                    &request.name,
                    request_id,
                    &now_rfc3339(),
                )
                .await?;
            Ok(pb::RestartDeploymentResponse {
                deployment: deployment(&view),
                changed,
            })
        });
        self.deployer
            .audited(call, work, |_| None)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
        to_revision = request.get_ref().to_revision,
        request_id = %request.get_ref().request_id,
    ))]
    async fn rollback_deployment(
        &self,
        request: Request<pb::RollbackDeploymentRequest>,
    ) -> std::result::Result<Response<pb::RollbackDeploymentResponse>, Status> {
        let call = CallInfo::new(method::ROLLBACK, &request);
        let caller = call.caller().cloned();
        let limit = self.deployer.call_limit(&request);
        let request = request.into_inner();
        let work = bounded(limit, RETRY_CHANGE, async {
            let caller = self
                .deployer
                .admit(caller, Action::Rollback, &request.namespace)?;
            let caller_ref = &caller;
            validate_name(&request.name)?;
            if request.to_revision < 0 {
                return Err(invalid("to_revision", "must not be negative"));
            }
            let request_id = request_id(&request.request_id)?;
            // The revision's template comes back only if it would be admitted today, for this
            // caller: its image under the image policy, its hardening under the Pod Security
            // floor, its references under the policy's.
            let admit = |facts: &TemplateFacts| {
                let image = ImageReference::parse(&facts.image).map_err(|problem| {
                    Error::ImageNotAllowed(format!(
                        "the image {:?} of that revision: {problem}",
                        facts.image
                    ))
                })?;
                self.deployer.check_image(&image)?;
                let namespace = &request.namespace;
                let floor_refusal = |hardened: &str, floor: PodSecurityProfile| {
                    Error::Forbidden(format!(
                        "the pods of that revision are hardened to {hardened}, weaker than {}, \
                         the least this server allows in namespace {namespace:?}",
                        floor.as_str()
                    ))
                };
                let Some(profile) = facts.pod_security else {
                    let default = self.deployer.settings.pod_security;
                    let floor = self
                        .deployer
                        .policy
                        .pod_security(namespace)
                        .map_or(default, |policy| policy.max(default));
                    return Err(floor_refusal("no profile this service recorded", floor));
                };
                resolve_profile(
                    Some(profile),
                    self.deployer.settings.pod_security,
                    self.deployer.policy.pod_security(namespace),
                    None,
                )
                .map_err(|floor| floor_refusal(profile.as_str(), floor))?;
                self.deployer.check_references(
                    caller_ref,
                    Action::Rollback,
                    &request.namespace,
                    facts.references.clone(),
                )
            };
            let rolled_back = self
                .deployments
                .rollback(
                    &request.namespace,
                    &request.name,
                    request.to_revision,
                    request_id,
                    admit,
                )
                .await?;
            Ok(pb::RollbackDeploymentResponse {
                deployment: deployment(&rolled_back.view),
                changed: rolled_back.changed,
                rolled_back_to: rolled_back.revision,
                message: rolled_back.message,
            })
        });
        self.deployer
            .audited(call, work, |_| None)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
    ))]
    async fn list_revisions(
        &self,
        request: Request<pb::ListRevisionsRequest>,
    ) -> std::result::Result<Response<pb::ListRevisionsResponse>, Status> {
        let call = CallInfo::new(method::REVISIONS, &request);
        let caller = call.caller().cloned();
        let limit = self.deployer.call_limit(&request);
        let request = request.into_inner();
        let work = bounded(limit, RETRY, async {
            self.deployer
                .admit(caller, Action::Status, &request.namespace)?;
            validate_name(&request.name)?;
            let (state, revisions) = self
                .deployments
                .revisions(&request.namespace, &request.name)
                .await?;
            let current = state.revision();
            Ok(pb::ListRevisionsResponse {
                revisions: revisions
                    .iter()
                    .map(|rs| pb::Revision {
                        revision: rs.revision(),
                        image: rs.image.clone(),
                        change_cause: change_cause(rs),
                        created: timestamp(rs.created),
                        replica_set: rs.name.clone(),
                        replicas: rs.desired,
                        current: rs.revision() == current,
                        request_id: rs
                            .annotations
                            .get(crate::domain::REQUEST_ID_LABEL)
                            .cloned()
                            .unwrap_or_default(),
                    })
                    .collect(),
            })
        });
        self.deployer
            .audited(call, work, |_| None)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
    ))]
    async fn delete_deployment(
        &self,
        request: Request<pb::DeleteDeploymentRequest>,
    ) -> std::result::Result<Response<pb::DeleteDeploymentResponse>, Status> {
        let deadline = deadline::caller_deadline(request.metadata());
        let call = CallInfo::new(method::DELETE, &request);
        let caller = call.caller().cloned();
        let limit = self.deployer.call_limit(&request);
        let request = request.into_inner();
        let work = async {
            self.deployer
                .admit(caller, Action::Delete, &request.namespace)?;
            self.delete(&request, limit, deadline).await
        };
        self.deployer
            .audited(call, work, |_| None)
            .await
            .map(Response::new)
    }

    type WatchRolloutStream = WatchRolloutStream;

    async fn watch_rollout(
        &self,
        request: Request<pb::WatchRolloutRequest>,
    ) -> std::result::Result<Response<Self::WatchRolloutStream>, Status> {
        self.rollouts.watch_rollout(request).await
    }
}
