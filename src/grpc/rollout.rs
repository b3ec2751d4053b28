//! WatchRollout: a [`RolloutHub`] subscription turned into a numbered gRPC stream, on the
//! machinery WatchStatus uses (`watch.rs`); and [`wait_rollout`], the wait behind
//! ApplyDeployment's `wait_for`, on the same hub.

use std::sync::Arc;

use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::watch::{self, Outgoing, Outlet, Stop, WatchStream};
use super::{CallInfo, DeployerService, convert, deadline, method};
use crate::domain::rollout::{DeploymentView, RolloutGoal, rollout_outcome};
use crate::domain::validate::validate_pod_name;
use crate::domain::{Caller, Violations};
use crate::grpc::convert::deployment::{rollout_failure, rollout_phase_name};
use crate::hub::rollout::{RolloutHub, RolloutSnapshot, RolloutUpdate};
use crate::policy::Action;
use crate::proto::deployer::v1 as pb;
use crate::{Error, Result};

/// The WatchRollout streams of the server: what any implementation of
/// `deployer.v1.DeploymentService` calls for WatchRollout (and for ApplyDeployment's wait, via
/// [`RolloutStreams::hub`] and [`wait_rollout`]). Cheap to clone.
#[derive(Clone)]
pub struct RolloutStreams {
    /// Authentication, policy, audit, settings, the streams' limit and tasks, and the
    /// shutdown signal: the same as WatchStatus's.
    deployer: DeployerService,
    hub: RolloutHub,
}

impl std::fmt::Debug for RolloutStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutStreams").finish_non_exhaustive()
    }
}

/// The stream WatchRollout answers with.
pub type WatchRolloutStream = Outgoing<pb::WatchRolloutResponse>;

impl RolloutStreams {
    /// The streams of `hub`, served with `deployer`'s policy, audit and limits. They share
    /// `deployer`'s maximum of open streams and its shutdown signal, and
    /// [`DeployerService::shutdown`] waits for them as for WatchStatus's.
    #[must_use]
    pub fn new(deployer: DeployerService, hub: RolloutHub) -> Self {
        Self { deployer, hub }
    }

    /// The rollout hub.
    #[must_use]
    pub fn hub(&self) -> &RolloutHub {
        &self.hub
    }

    /// Stop the rollout hub (its actors and their watches). Call it in the server's shutdown,
    /// once the shutdown signal has turned true, before [`DeployerService::shutdown`].
    pub async fn shutdown(&self) {
        self.hub.shutdown().await;
    }

    /// `WatchRollout`, audited, with the policy's `status` action.
    ///
    /// # Errors
    ///
    /// As the proto says: INVALID_ARGUMENT, PERMISSION_DENIED, RESOURCE_EXHAUSTED,
    /// UNAVAILABLE.
    #[tracing::instrument(skip_all, fields(
        namespace = %request.get_ref().namespace,
        name = %request.get_ref().name,
    ))]
    pub async fn watch_rollout(
        &self,
        request: Request<pb::WatchRolloutRequest>,
    ) -> std::result::Result<Response<WatchRolloutStream>, Status> {
        let deployer = &self.deployer;
        let call = CallInfo::new(method::WATCH_ROLLOUT, &request);
        let caller = call.caller().cloned();
        let limit = deployer.call_limit(&request);
        let request = request.into_inner();
        let work = deadline::bounded(limit, deadline::RETRY, async {
            let caller = deployer.admit(caller, Action::Status, &request.namespace)?;
            self.open(&caller, &request).await
        });
        deployer
            .audited(call, work, |_| None)
            .await
            .map(Response::new)
    }

    async fn open(
        &self,
        caller: &Caller,
        request: &pb::WatchRolloutRequest,
    ) -> Result<WatchRolloutStream> {
        // Every malformed field is reported at once.
        let mut violations = Violations::default();
        if let Err(invalid) = validate_pod_name("name", &request.name) {
            violations.extend(invalid);
        }
        let until = convert::until::<pb::RolloutUntil>(request.until)
            .map_err(|invalid| violations.extend(invalid))
            .ok();
        if request.generation < 0 {
            violations.push("generation", "must not be negative");
        }
        let (Some(until), true) = (until, violations.0.is_empty()) else {
            return Err(Error::InvalidRequest(violations));
        };
        let deployer = &self.deployer;
        let permit = deployer.stream_slot()?;
        deployer.pods.require_namespace(&request.namespace).await?;
        let subscription = self
            .hub
            .subscribe(&request.namespace, &request.name)
            .await
            .map_err(|error| super::subscribe_failed(&request.namespace, error))?;
        let (outlet, outgoing) =
            Outlet::new(deployer.settings.heartbeat, caller.expires_at, permit);
        let stream = RolloutStream {
            until,
            generation: (request.generation > 0).then_some(request.generation),
            phase: pb::RolloutPhase::Unspecified,
            existed: false,
            outlet,
        };
        let span = tracing::info_span!(
            "watch_rollout",
            namespace = %request.namespace,
            name = %request.name
        );
        deployer.stream_tasks.spawn(
            watch::run(stream, subscription.updates, deployer.shutdown.clone()).instrument(span),
        );
        Ok(outgoing)
    }
}

/// One open WatchRollout stream.
struct RolloutStream {
    until: pb::RolloutUntil,
    /// The generation `until` is judged for: the request's, else the Deployment's when the
    /// stream opened (or when it appeared, if it did not exist yet).
    generation: Option<i64>,
    /// The rollout's phase as last sent, stamped on every message.
    phase: pb::RolloutPhase,
    /// The Deployment has been seen on this stream.
    existed: bool,
    outlet: Outlet<pb::WatchRolloutResponse>,
}

impl WatchStream for RolloutStream {
    type Update = RolloutUpdate;
    type Kind = pb::watch_rollout_response::Kind;
    type Message = pb::WatchRolloutResponse;

    fn outlet(&mut self) -> &mut Outlet<Self::Message> {
        &mut self.outlet
    }

    fn message(&self, sequence: u64, kind: Self::Kind) -> Self::Message {
        pb::WatchRolloutResponse {
            sequence,
            phase: self.phase.into(),
            kind: Some(kind),
        }
    }

    fn heartbeat(heartbeat: pb::Heartbeat) -> Self::Kind {
        Self::Kind::Heartbeat(heartbeat)
    }

    fn end(end: pb::End) -> Self::Kind {
        Self::Kind::End(end)
    }

    async fn forward(&mut self, update: RolloutUpdate) -> std::result::Result<(), Stop> {
        use pb::watch_rollout_response::Kind;
        let (kind, view) = match update {
            RolloutUpdate::Snapshot(snapshot) | RolloutUpdate::Resync(snapshot) => {
                let gone = self.existed && snapshot.deployment.is_none();
                let view = self.seen(&snapshot);
                let message = pb::RolloutSnapshot::from(&snapshot);
                let kind = if self.outlet.first() {
                    Kind::Snapshot(message)
                } else {
                    Kind::Resync(message)
                };
                watch::send(self, kind).await?;
                // The resync replaces a deletion this slow reader missed.
                if gone {
                    return self.deleted().await;
                }
                return self.until_met(view.as_deref()).await;
            }
            RolloutUpdate::Progress(view) => {
                self.seen_view(&view);
                (
                    Kind::Progress(pb::Deployment::from(view.as_ref())),
                    Some(view),
                )
            }
            RolloutUpdate::Pod(pod) => (Kind::Pod(pb::PodStatus::from(pod.as_ref())), None),
            RolloutUpdate::PodDeleted(pod) => {
                (Kind::PodDeleted(pb::PodStatus::from(pod.as_ref())), None)
            }
            RolloutUpdate::Event(event) => {
                (Kind::Event(pb::RolloutEvent::from(event.as_ref())), None)
            }
            RolloutUpdate::Deleted(_) => return self.deleted().await,
        };
        watch::send(self, kind).await?;
        self.until_met(view.as_deref()).await
    }
}

impl RolloutStream {
    /// Take in the Deployment of a snapshot; its view, if it exists.
    fn seen(&mut self, snapshot: &RolloutSnapshot) -> Option<Arc<DeploymentView>> {
        match &snapshot.deployment {
            Some(view) => self.seen_view(view),
            None => self.phase = pb::RolloutPhase::Unspecified,
        }
        snapshot.deployment.clone()
    }

    fn seen_view(&mut self, view: &DeploymentView) {
        self.existed = true;
        self.phase = view.rollout.phase.into();
        self.generation.get_or_insert(view.state.generation);
    }

    async fn deleted(&mut self) -> std::result::Result<(), Stop> {
        watch::end(
            self,
            pb::EndReason::DeploymentDeleted,
            "the deployment was deleted",
        )
        .await
    }

    /// End the stream when `view` meets `until` for the generation followed.
    async fn until_met(&mut self, view: Option<&DeploymentView>) -> std::result::Result<(), Stop> {
        let (Some(view), Some(generation)) = (view, self.generation) else {
            return Ok(());
        };
        let outcome = rollout_outcome(
            &view.state,
            &view.rollout,
            generation,
            RolloutGoal::RolledOut,
        );
        let message = match (self.until, outcome) {
            (pb::RolloutUntil::RolledOut | pb::RolloutUntil::Terminal, Some(Ok(()))) => {
                view.rollout.message.clone()
            }
            (pb::RolloutUntil::Terminal, Some(Err(()))) => rollout_failure(&view.rollout),
            _ => return Ok(()),
        };
        watch::end(self, pb::EndReason::UntilMet, &message).await
    }
}

/// Wait until the rollout of `generation` (or a later one) of Deployment `namespace/name`
/// is over as `goal` asks, following it on `hub` (no watch of its own): its view then. With a
/// `uid`, only that object counts: an earlier Deployment of the same name that the hub may
/// still hold (deleted, then created again) is neither taken for this one's success nor its
/// deletion for this one's.
///
/// # Errors
///
/// [`Error::RolloutFailed`] (FAILED_PRECONDITION, with [`rollout_failure`]'s account) when
/// the rollout FAILED; [`Error::RolloutWaitTimedOut`] (DEADLINE_EXCEEDED) at `until`;
/// [`Error::DeploymentGone`] when it is deleted meanwhile; UNAVAILABLE or PERMISSION_DENIED
/// when its namespace cannot be followed, or the server stops.
pub async fn wait_rollout(
    hub: &RolloutHub,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    generation: i64,
    goal: RolloutGoal,
    until: Instant,
) -> Result<DeploymentView> {
    let started = Instant::now();
    let this_one = |view: &DeploymentView| uid.is_none_or(|uid| view.state.uid == uid);
    let mut last: Option<Arc<DeploymentView>> = None;
    let timed_out = |last: Option<&DeploymentView>| Error::RolloutWaitTimedOut {
        deployment: format!("{namespace}/{name}"),
        wanted: match goal {
            RolloutGoal::RolledOut => "ROLLED_OUT",
            RolloutGoal::Available => "AVAILABLE",
        },
        waited: until.saturating_duration_since(started),
        state: last.map_or_else(
            || "it was not seen".to_owned(),
            |view| {
                format!(
                    "it is {}: {}",
                    rollout_phase_name(view.rollout.phase),
                    view.rollout.message
                )
            },
        ),
    };
    let mut subscription = tokio::time::timeout_at(until, hub.subscribe(namespace, name))
        .await
        .map_err(|_| timed_out(None))?
        .map_err(|error| super::subscribe_failed(namespace, error))?;
    loop {
        let update = match tokio::time::timeout_at(until, subscription.updates.recv()).await {
            Ok(Some(update)) => update,
            Ok(None) => return Err(Error::ShuttingDown),
            Err(_) => return Err(timed_out(last.as_deref())),
        };
        let view = match update {
            RolloutUpdate::Snapshot(snapshot) | RolloutUpdate::Resync(snapshot) => {
                match snapshot.deployment {
                    Some(view) if this_one(&view) => view,
                    // Not seen yet (the watch lags the apply), or another object of that name.
                    Some(_) => continue,
                    None if last.is_none() => continue,
                    // Gone while a resync was due.
                    None => return Err(gone(namespace, name)),
                }
            }
            RolloutUpdate::Progress(view) if this_one(&view) => view,
            RolloutUpdate::Deleted(view) if this_one(&view) => return Err(gone(namespace, name)),
            RolloutUpdate::Progress(_) | RolloutUpdate::Deleted(_) => continue,
            RolloutUpdate::Pod(_) | RolloutUpdate::PodDeleted(_) | RolloutUpdate::Event(_) => {
                continue;
            }
        };
        match rollout_outcome(&view.state, &view.rollout, generation, goal) {
            Some(Ok(())) => return Ok(view.as_ref().clone()),
            Some(Err(())) => {
                return Err(Error::RolloutFailed {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    failure: rollout_failure(&view.rollout),
                });
            }
            None => last = Some(view),
        }
    }
}

fn gone(namespace: &str, name: &str) -> Error {
    Error::DeploymentGone {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}
