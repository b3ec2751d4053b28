//! The gRPC face of the service: [`DeployerService`] implements `deployer.v1.DeployerService`
//! on top of the Kubernetes adapter ([`ClusterPods`]) and the [`StatusHub`].

pub mod convert;
mod deploy;
mod watch;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch as signal};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::domain::validate::{validate_namespace, validate_pod_name};
use crate::domain::{FieldViolation, LabelSelector, PodState, Violations};
use crate::hub::{Filter, PodView, StatusHub};
use crate::k8s::ClusterPods;
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
}

/// `deployer.v1.DeployerService`.
#[derive(Clone)]
pub struct DeployerService {
    pods: ClusterPods,
    hub: StatusHub,
    settings: Arc<ServiceSettings>,
    streams: Arc<Semaphore>,
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
        settings: ServiceSettings,
        shutdown: signal::Receiver<bool>,
    ) -> Self {
        let streams = Arc::new(Semaphore::new(settings.max_streams));
        Self {
            pods,
            hub,
            settings: Arc::new(settings),
            streams,
            shutdown,
        }
    }

    /// Refuse namespaces this deployer does not serve, and malformed ones.
    fn check_namespace(&self, namespace: &str) -> Result<()> {
        validate_namespace("namespace", namespace).map_err(Error::InvalidRequest)?;
        if !self.settings.namespaces.is_empty() && !self.settings.namespaces.contains(namespace) {
            return Err(Error::NamespaceNotServed(namespace.to_owned()));
        }
        Ok(())
    }
}

/// One structured log line per call, with its outcome and duration.
async fn logged<T>(
    method: &'static str,
    namespace: &str,
    name: &str,
    call: impl Future<Output = Result<T>>,
) -> std::result::Result<T, Status> {
    let started = Instant::now();
    let result = call.await;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(value) => {
            tracing::info!(method, namespace, name, elapsed_ms, code = "OK", "call");
            Ok(value)
        }
        Err(error) => {
            let status = Status::from(error);
            tracing::info!(method, namespace, name, elapsed_ms, code = ?status.code(), "call");
            Err(status)
        }
    }
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
    async fn deploy(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> std::result::Result<Response<pb::DeployResponse>, Status> {
        let deadline = deploy::caller_deadline(request.metadata());
        let request = request.into_inner();
        let (namespace, name) = (request.namespace.clone(), request.name.clone());
        logged("Deploy", &namespace, &name, self.deploy(request, deadline))
            .await
            .map(Response::new)
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> std::result::Result<Response<pb::GetStatusResponse>, Status> {
        let request = request.into_inner();
        logged("GetStatus", &request.namespace, &request.name, async {
            self.check_namespace(&request.namespace)?;
            validate_pod_name("name", &request.name).map_err(Error::InvalidRequest)?;
            let state = self
                .pods
                .get_managed(&request.namespace, &request.name)
                .await?;
            Ok(pb::GetStatusResponse {
                pod: Some(pod_status(state)),
            })
        })
        .await
        .map(Response::new)
    }

    async fn list_pods(
        &self,
        request: Request<pb::ListPodsRequest>,
    ) -> std::result::Result<Response<pb::ListPodsResponse>, Status> {
        let request = request.into_inner();
        logged("ListPods", &request.namespace, "", async {
            self.check_namespace(&request.namespace)?;
            let selector = LabelSelector::parse(&request.label_selector)
                .map_err(|rule| invalid("label_selector", rule))?;
            let pods = self.pods.list(&request.namespace, &selector).await?;
            Ok(pb::ListPodsResponse {
                pods: pods.into_iter().map(pod_status).collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn delete_pod(
        &self,
        request: Request<pb::DeletePodRequest>,
    ) -> std::result::Result<Response<pb::DeletePodResponse>, Status> {
        let request = request.into_inner();
        logged("DeletePod", &request.namespace, &request.name, async {
            self.check_namespace(&request.namespace)?;
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
        })
        .await
        .map(Response::new)
    }

    type WatchStatusStream = ReceiverStream<std::result::Result<pb::WatchStatusResponse, Status>>;

    async fn watch_status(
        &self,
        request: Request<pb::WatchStatusRequest>,
    ) -> std::result::Result<Response<Self::WatchStatusStream>, Status> {
        let request = request.into_inner();
        let target = if request.name.is_empty() {
            request.label_selector.clone()
        } else {
            request.name.clone()
        };
        logged("WatchStatus", &request.namespace, &target, async {
            self.check_namespace(&request.namespace)?;
            let filter = match (request.name.is_empty(), request.label_selector.is_empty()) {
                (false, true) => {
                    validate_pod_name("name", &request.name).map_err(Error::InvalidRequest)?;
                    Filter::Name(request.name.clone())
                }
                (true, false) => Filter::Selector(
                    LabelSelector::parse(&request.label_selector)
                        .map_err(|rule| invalid("label_selector", rule))?,
                ),
                _ => {
                    return Err(invalid(
                        "name",
                        "exactly one of name and label_selector must be set",
                    ));
                }
            };
            let until = pb::Until::try_from(request.until).unwrap_or(pb::Until::Unspecified);
            self.watch(&request.namespace, filter, until).await
        })
        .await
        .map(Response::new)
    }
}
