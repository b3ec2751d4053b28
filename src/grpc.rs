//! The gRPC face of the service: [`DeployerService`] implements `deployer.v1.DeployerService`
//! on top of the Kubernetes adapter ([`ClusterPods`]) and the [`StatusHub`];
//! [`deployments::DeploymentService`] implements `deployer.v1.DeploymentService` beside it.

pub mod convert;
mod deadline;
mod deploy;
pub mod deployments;
pub mod limits;
pub mod rollout;
mod watch;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch as signal};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::audit::{AuditEvent, AuditLog, AuditSubject};
use crate::auth::PeerInfo;
use crate::domain::spec::PodSecurityProfile;
use crate::domain::validate::{validate_namespace, validate_pod_name};
use crate::domain::{Caller, FieldViolation, LabelSelector, PodState, Violations};
use crate::error::code_name;
use crate::hub::{Filter, PodView, StatusHub, SubscribeError};
use crate::k8s::ClusterPods;
use crate::policy::{Action, Policy};
use crate::proto::deployer::v1 as pb;
use crate::{Error, Result};

/// Settings of the service that come from the configuration.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Namespaces served; empty for all.
    pub namespaces: BTreeSet<String>,
    /// Heartbeat interval of idle WatchStatus streams.
    pub heartbeat: Duration,
    /// Most WatchStatus streams open at once.
    pub max_streams: usize,
    /// Pod Security profile of pods when nothing asks for a stricter one.
    pub pod_security: PodSecurityProfile,
    /// Longest a call waits on Kubernetes when the caller's deadline is later or unset.
    pub call_timeout: Duration,
}

/// The error for a hub subscription that failed; its detail goes to the log.
fn subscribe_failed(namespace: &str, error: SubscribeError) -> Error {
    tracing::debug!(namespace, error = %error, "subscription failed");
    match error {
        SubscribeError::Forbidden(_) => Error::WatchForbidden(namespace.to_owned()),
        SubscribeError::NotSynced(_) => Error::WatchNotSynced(namespace.to_owned()),
        SubscribeError::Closed => Error::ShuttingDown,
    }
}

/// `deployer.v1.DeployerService`.
#[derive(Clone)]
pub struct DeployerService {
    pods: ClusterPods,
    hub: StatusHub,
    policy: Arc<Policy>,
    audit: Arc<AuditLog>,
    settings: Arc<ServiceSettings>,
    streams: Arc<Semaphore>,
    /// The tasks of the open streams, awaited by [`DeployerService::shutdown`].
    stream_tasks: watch::StreamTasks,
    shutdown: signal::Receiver<bool>,
}

impl std::fmt::Debug for DeployerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployerService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl DeployerService {
    /// The service. `shutdown` turning true ends every open stream with a final message.
    #[must_use]
    pub fn new(
        pods: ClusterPods,
        hub: StatusHub,
        policy: Arc<Policy>,
        audit: Arc<AuditLog>,
        settings: ServiceSettings,
        shutdown: signal::Receiver<bool>,
    ) -> Self {
        let streams = Arc::new(Semaphore::new(settings.max_streams));
        Self {
            pods,
            hub,
            policy,
            audit,
            settings: Arc::new(settings),
            streams,
            stream_tasks: watch::StreamTasks::default(),
            shutdown,
        }
    }

    /// When a call must be over: the caller's deadline (a little before) or the server's own
    /// limit, whichever comes first.
    fn call_limit<T>(&self, request: &Request<T>) -> tokio::time::Instant {
        deadline::call_limit(
            deadline::caller_deadline(request.metadata()),
            self.settings.call_timeout,
        )
    }

    /// Refuse namespaces this deployer does not serve, and malformed ones.
    fn check_namespace(&self, namespace: &str) -> Result<()> {
        validate_namespace("namespace", namespace).map_err(Error::InvalidRequest)?;
        if !self.settings.namespaces.is_empty() && !self.settings.namespaces.contains(namespace) {
            return Err(Error::NamespaceNotServed(namespace.to_owned()));
        }
        Ok(())
    }

    /// The caller, once the namespace is well-formed and served and the policy allows the
    /// caller `action` there; nothing has reached the API server yet.
    fn admit(&self, caller: Result<Caller>, action: Action, namespace: &str) -> Result<Caller> {
        let caller = caller?;
        self.check_namespace(namespace)?;
        self.authorize(&caller, action, namespace)?;
        Ok(caller)
    }

    /// Refuse, before anything reaches the API server, what the policy does not allow.
    fn authorize(&self, caller: &Caller, action: Action, namespace: &str) -> Result<()> {
        match self.policy.authorize(caller, action, namespace) {
            Ok(rule) => {
                tracing::debug!(subject = %caller.subject, action = %action, namespace, rule, "allowed");
                Ok(())
            }
            Err(denied) => Err(Error::Forbidden(denied.to_string())),
        }
    }

    /// Runs a call and accounts for it: one log line and one audit record, with its outcome
    /// and latency. `pod_of` names the pod a successful call was about, when the request did
    /// not (Deploy with a generated name).
    ///
    /// The log line is the only one for the call: at info when it succeeded, at warn when it
    /// failed for a reason a caller can act on, at error when it failed internally, then with
    /// the full cause chain (which the caller is never sent). The handler's span carries
    /// what the call was about.
    async fn audited<T>(
        &self,
        mut call: CallInfo,
        work: impl Future<Output = Result<T>>,
        pod_of: impl FnOnce(&T) -> Option<String>,
    ) -> std::result::Result<T, Status> {
        let started = Instant::now();
        let result = work.await;
        let latency = started.elapsed();
        let elapsed_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let method = call.method;
        let subject = call.caller.as_ref().map(|c| c.subject.as_str());
        let (result, code, reason) = match result {
            Ok(value) => {
                if let Some(name) = pod_of(&value) {
                    tracing::Span::current().record("name", name.as_str());
                    // A DeploymentService call names a Deployment, the others a pod.
                    if call.method.starts_with(deployments::SERVICE_PREFIX) {
                        call.subject.deployment = name;
                    } else {
                        call.subject.pod = name;
                    }
                }
                tracing::info!(method, subject, elapsed_ms, code = "OK", "call");
                (Ok(value), tonic::Code::Ok, String::new())
            }
            Err(error) => {
                let cause = crate::error::chain(&error);
                let status = Status::from(error);
                let code = status.code();
                let code_text = code_name(code);
                if code == tonic::Code::Internal {
                    tracing::error!(method, subject, elapsed_ms, code = code_text, error = %cause, "call failed");
                } else {
                    tracing::warn!(method, subject, elapsed_ms, code = code_text, error = %cause, "call failed");
                }
                let reason = match code {
                    tonic::Code::Unauthenticated
                    | tonic::Code::PermissionDenied
                    | tonic::Code::FailedPrecondition => status.message().to_owned(),
                    _ => String::new(),
                };
                (Err(status), code, reason)
            }
        };
        self.audit.record(&AuditEvent {
            caller: call.caller.as_ref(),
            source: call.source,
            method: call.method,
            subject: &call.subject,
            code,
            reason: &reason,
            latency,
        });
        result
    }
}

/// A request that names what it is about, for the audit trail.
trait Audited {
    fn subject(&self) -> AuditSubject;
}

impl Audited for pb::DeployRequest {
    fn subject(&self) -> AuditSubject {
        AuditSubject {
            namespace: self.namespace.clone(),
            pod: self.name.clone(),
            image: self.image.clone(),
            request_id: self.request_id.clone(),
            ..AuditSubject::default()
        }
    }
}

impl Audited for pb::GetStatusRequest {
    fn subject(&self) -> AuditSubject {
        AuditSubject {
            namespace: self.namespace.clone(),
            pod: self.name.clone(),
            ..AuditSubject::default()
        }
    }
}

impl Audited for pb::ListPodsRequest {
    fn subject(&self) -> AuditSubject {
        AuditSubject {
            namespace: self.namespace.clone(),
            selector: self.label_selector.clone(),
            ..AuditSubject::default()
        }
    }
}

impl Audited for pb::DeletePodRequest {
    fn subject(&self) -> AuditSubject {
        AuditSubject {
            namespace: self.namespace.clone(),
            pod: self.name.clone(),
            ..AuditSubject::default()
        }
    }
}

impl Audited for pb::WatchStatusRequest {
    fn subject(&self) -> AuditSubject {
        AuditSubject {
            namespace: self.namespace.clone(),
            pod: self.name.clone(),
            selector: self.label_selector.clone(),
            ..AuditSubject::default()
        }
    }
}

/// Who made a call, from where, and what it was about.
struct CallInfo {
    method: &'static str,
    caller: Option<Caller>,
    source: Option<SocketAddr>,
    subject: AuditSubject,
}

impl CallInfo {
    fn new<T: Audited>(method: &'static str, request: &Request<T>) -> Self {
        Self {
            method,
            subject: request.get_ref().subject(),
            caller: request.extensions().get::<Caller>().cloned(),
            source: request
                .extensions()
                .get::<PeerInfo>()
                .and_then(|peer| peer.remote_addr),
        }
    }

    /// The authenticated caller. The authentication layer guarantees one; its absence
    /// (a server assembled without the layer) fails closed.
    fn caller(&self) -> Result<&Caller> {
        self.caller
            .as_ref()
            .ok_or_else(|| Error::Unauthenticated("no credentials".to_owned()))
    }
}

/// The full names of the methods, as audit records and logs give them.
mod method {
    pub(super) const DEPLOY: &str = "deployer.v1.DeployerService/Deploy";
    pub(super) const GET_STATUS: &str = "deployer.v1.DeployerService/GetStatus";
    pub(super) const LIST_PODS: &str = "deployer.v1.DeployerService/ListPods";
    pub(super) const DELETE_POD: &str = "deployer.v1.DeployerService/DeletePod";
    pub(super) const WATCH_STATUS: &str = "deployer.v1.DeployerService/WatchStatus";
    pub(super) const WATCH_ROLLOUT: &str = "deployer.v1.DeploymentService/WatchRollout";
}

fn invalid(field: &str, description: impl Into<String>) -> Error {
    Error::InvalidRequest(Violations(vec![FieldViolation {
        field: field.to_owned(),
        description: description.into(),
    }]))
}

/// A pod state, assessed, as the proto's status.
fn pod_status(state: PodState) -> pb::PodStatus {
    pb::PodStatus::from(&PodView::new(state))
}

#[tonic::async_trait]
impl pb::deployer_service_server::DeployerService for DeployerService {
    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
        request_id = %request.get_ref().request_id,
    ))]
    async fn deploy(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> std::result::Result<Response<pb::DeployResponse>, Status> {
        let deadline = deadline::caller_deadline(request.metadata());
        let call = CallInfo::new(method::DEPLOY, &request);
        let caller = call.caller().cloned();
        let request = request.into_inner();
        let work = async move { self.deploy(&caller?, request, deadline).await };
        self.audited(call, work, |response| {
            response.pod.as_ref().map(|pod| pod.name.clone())
        })
        .await
        .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
    ))]
    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> std::result::Result<Response<pb::GetStatusResponse>, Status> {
        let call = CallInfo::new(method::GET_STATUS, &request);
        let caller = call.caller().cloned();
        let limit = self.call_limit(&request);
        let request = request.into_inner();
        let work = deadline::bounded(limit, deadline::RETRY, async {
            self.admit(caller, Action::Status, &request.namespace)?;
            validate_pod_name("name", &request.name).map_err(Error::InvalidRequest)?;
            let state = self
                .pods
                .get_managed(&request.namespace, &request.name)
                .await?;
            Ok(pb::GetStatusResponse {
                pod: Some(pod_status(state)),
            })
        });
        self.audited(call, work, |_| None).await.map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        label_selector = %request.get_ref().label_selector,
    ))]
    async fn list_pods(
        &self,
        request: Request<pb::ListPodsRequest>,
    ) -> std::result::Result<Response<pb::ListPodsResponse>, Status> {
        let call = CallInfo::new(method::LIST_PODS, &request);
        let caller = call.caller().cloned();
        let limit = self.call_limit(&request);
        let request = request.into_inner();
        let work = deadline::bounded(limit, deadline::RETRY, async {
            self.admit(caller, Action::List, &request.namespace)?;
            let selector = LabelSelector::parse(&request.label_selector)
                .map_err(|rule| invalid("label_selector", rule))?;
            let pods = self.pods.list(&request.namespace, &selector).await?;
            Ok(pb::ListPodsResponse {
                pods: pods.into_iter().map(pod_status).collect(),
            })
        });
        self.audited(call, work, |_| None).await.map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
    ))]
    async fn delete_pod(
        &self,
        request: Request<pb::DeletePodRequest>,
    ) -> std::result::Result<Response<pb::DeletePodResponse>, Status> {
        let call = CallInfo::new(method::DELETE_POD, &request);
        let caller = call.caller().cloned();
        let limit = self.call_limit(&request);
        let request = request.into_inner();
        let work = deadline::bounded(limit, deadline::RETRY_DELETE, async {
            self.admit(caller, Action::Delete, &request.namespace)?;
            validate_pod_name("name", &request.name).map_err(Error::InvalidRequest)?;
            let grace = match &request.grace_period {
                Some(d) => Some(
                    convert::duration(d)
                        .ok_or_else(|| invalid("grace_period", "must not be negative"))?,
                ),
                None => None,
            };
            let state = self
                .pods
                .delete(&request.namespace, &request.name, grace)
                .await?;
            Ok(pb::DeletePodResponse {
                pod: Some(pod_status(state)),
            })
        });
        self.audited(call, work, |_| None).await.map(Response::new)
    }

    type WatchStatusStream = ReceiverStream<std::result::Result<pb::WatchStatusResponse, Status>>;

    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
        label_selector = %request.get_ref().label_selector,
    ))]
    async fn watch_status(
        &self,
        request: Request<pb::WatchStatusRequest>,
    ) -> std::result::Result<Response<Self::WatchStatusStream>, Status> {
        let call = CallInfo::new(method::WATCH_STATUS, &request);
        let caller = call.caller().cloned();
        let limit = self.call_limit(&request);
        let request = request.into_inner();
        let work = deadline::bounded(limit, deadline::RETRY, async {
            let caller = self.admit(caller, Action::Status, &request.namespace)?;
            // Every malformed field is reported at once, as for Deploy.
            let mut violations = Violations::default();
            let filter = match (request.name.is_empty(), request.label_selector.is_empty()) {
                (false, true) => validate_pod_name("name", &request.name)
                    .map(|()| Filter::Name(request.name.clone()))
                    .map_err(|v| violations.extend(v))
                    .ok(),
                (true, false) => LabelSelector::parse(&request.label_selector)
                    .map(Filter::Selector)
                    .map_err(|rule| violations.push("label_selector", rule))
                    .ok(),
                _ => {
                    violations.push("name", "exactly one of name and label_selector must be set");
                    None
                }
            };
            let until = convert::until(request.until)
                .map_err(|v| violations.extend(v))
                .ok();
            let (Some(filter), Some(until)) = (filter, until) else {
                return Err(Error::InvalidRequest(violations));
            };
            self.watch(&request.namespace, filter, until, caller.expires_at)
                .await
        });
        self.audited(call, work, |_| None).await.map(Response::new)
    }
}
