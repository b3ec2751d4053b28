//! TEMPORARY: `deployer.v1.DeploymentService` with WatchRollout only, so that the rollout
//! stream is served and tested before the real service (`grpc/deployments.rs`) is merged. At
//! the merge this file goes, and the real service's `watch_rollout` calls
//! [`RolloutStreams::watch_rollout`].

use tonic::{Request, Response, Status};

use crate::grpc::rollout::{RolloutStreams, WatchRolloutStream};
use crate::proto::deployer::v1 as pb;

/// `deployer.v1.DeploymentService`, WatchRollout only.
#[derive(Debug, Clone)]
pub struct RolloutOnlyService {
    streams: RolloutStreams,
}

impl RolloutOnlyService {
    /// The service over `streams`.
    #[must_use]
    pub fn new(streams: RolloutStreams) -> Self {
        Self { streams }
    }
}

type Answer<T> = std::result::Result<Response<T>, Status>;

fn not_yet<T>() -> Answer<T> {
    Err(Status::unimplemented("not implemented in this build"))
}

#[tonic::async_trait]
impl pb::deployment_service_server::DeploymentService for RolloutOnlyService {
    async fn apply_deployment(
        &self,
        _: Request<pb::ApplyDeploymentRequest>,
    ) -> Answer<pb::ApplyDeploymentResponse> {
        not_yet()
    }

    async fn get_deployment(
        &self,
        _: Request<pb::GetDeploymentRequest>,
    ) -> Answer<pb::GetDeploymentResponse> {
        not_yet()
    }

    async fn list_deployments(
        &self,
        _: Request<pb::ListDeploymentsRequest>,
    ) -> Answer<pb::ListDeploymentsResponse> {
        not_yet()
    }

    async fn scale_deployment(
        &self,
        _: Request<pb::ScaleDeploymentRequest>,
    ) -> Answer<pb::ScaleDeploymentResponse> {
        not_yet()
    }

    async fn restart_deployment(
        &self,
        _: Request<pb::RestartDeploymentRequest>,
    ) -> Answer<pb::RestartDeploymentResponse> {
        not_yet()
    }

    async fn rollback_deployment(
        &self,
        _: Request<pb::RollbackDeploymentRequest>,
    ) -> Answer<pb::RollbackDeploymentResponse> {
        not_yet()
    }

    async fn list_revisions(
        &self,
        _: Request<pb::ListRevisionsRequest>,
    ) -> Answer<pb::ListRevisionsResponse> {
        not_yet()
    }

    async fn delete_deployment(
        &self,
        _: Request<pb::DeleteDeploymentRequest>,
    ) -> Answer<pb::DeleteDeploymentResponse> {
        not_yet()
    }

    type WatchRolloutStream = WatchRolloutStream;

    async fn watch_rollout(
        &self,
        request: Request<pb::WatchRolloutRequest>,
    ) -> Answer<Self::WatchRolloutStream> {
        self.streams.watch_rollout(request).await
    }
}
