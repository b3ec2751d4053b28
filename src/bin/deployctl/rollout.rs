//! Following a WatchRollout stream until the rollout waited for is complete or has failed, or
//! the time runs out: the Deployment's counterpart of `follow`'s pod follower, on the same
//! [`Link`] (deadline, reconnection after a lost stream or a server shutdown).
//!
//! The rollout is judged for the generation the command's change produced (or a later one),
//! so that the previous rollout's completion, still in the server's view for a moment after
//! an apply, is never taken for this one.

use std::time::Duration;

use k8s_deployer::proto::deployer::v1 as pb;
use pb::watch_rollout_response::Kind;
use tokio::time::Instant;
use tonic::Streaming;

use crate::connect::DeploymentClient;
use crate::exit::Failure;
use crate::follow::{Link, Source, Stop};
use crate::output::{Output, Success, phase_name, reason_name, rollout_of, rollout_reason_name};

/// How long the Deployment may take to be read again at the end of a rollout.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The WatchRollout stream of a [`RolloutFollower`].
pub(crate) struct RolloutSource<'a> {
    client: &'a mut DeploymentClient,
    request: pb::WatchRolloutRequest,
}

impl Source for RolloutSource<'_> {
    type Message = pb::WatchRolloutResponse;

    async fn open(&mut self) -> Result<Streaming<pb::WatchRolloutResponse>, Failure> {
        self.client
            .watch_rollout(self.request.clone())
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| Failure::from_status(&status))
    }
}

/// The request for the rollout of `name` until it is COMPLETE or FAILED, judged for
/// `generation` or a later one (0: the generation current when the stream opens).
pub(crate) fn rollout_request(
    namespace: &str,
    name: &str,
    generation: i64,
) -> pb::WatchRolloutRequest {
    pb::WatchRolloutRequest {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        until: pb::RolloutUntil::Terminal.into(),
        generation,
    }
}

/// One followed rollout.
pub(crate) struct RolloutFollower<'a> {
    link: Link<RolloutSource<'a>>,
    /// Whether a Deployment that does not exist is NOT_FOUND at once (`rollout status`)
    /// rather than waited for (after an apply, the server's view may lag for a moment).
    must_exist: bool,
    /// The Deployment in its latest state.
    deployment: Option<pb::Deployment>,
}

impl<'a> RolloutFollower<'a> {
    /// A follower of `request` (built with [`rollout_request`]).
    pub(crate) fn new(
        client: &'a mut DeploymentClient,
        request: pb::WatchRolloutRequest,
        deadline: Option<(Instant, Duration)>,
        must_exist: bool,
    ) -> RolloutFollower<'a> {
        RolloutFollower {
            link: Link::new(RolloutSource { client, request }, None, deadline),
            must_exist,
            deployment: None,
        }
    }

    fn request(&self) -> &pb::WatchRolloutRequest {
        &self.link.source().request
    }

    /// Follow the rollout to its conclusion.
    pub(crate) async fn run(mut self, out: &mut Output) -> Result<Success, Failure> {
        loop {
            let message = match self.link.next(out).await {
                Ok(message) => message,
                Err(stop) => return Err(self.stopped(stop)),
            };
            let sequence = message.sequence;
            let phase = message.phase();
            let done = match message.kind {
                Some(Kind::Snapshot(snapshot)) => {
                    self.link.settled();
                    self.snapshot(sequence, snapshot, false, out)
                }
                Some(Kind::Resync(snapshot)) => self.snapshot(sequence, snapshot, true, out),
                Some(Kind::Progress(deployment)) => {
                    out.progress(sequence, &deployment);
                    self.deployment = Some(deployment);
                    self.judge(out)
                }
                Some(Kind::Pod(pod)) => {
                    out.pod(sequence, &pod);
                    None
                }
                Some(Kind::PodDeleted(pod)) => {
                    out.deleted(sequence, &pod);
                    None
                }
                Some(Kind::Event(event)) => {
                    out.rollout_event(sequence, &event);
                    None
                }
                Some(Kind::Heartbeat(_)) | None => None,
                Some(Kind::End(end)) => match end.reason() {
                    pb::EndReason::UntilMet => match self.judge(out) {
                        Some(done) => Some(done),
                        None => Some(self.ended(phase, out).await),
                    },
                    pb::EndReason::DeploymentDeleted => Some(Err(self.deleted())),
                    // POD_DELETED ends WatchStatus streams only.
                    pb::EndReason::ServerShutdown
                    | pb::EndReason::Unspecified
                    | pb::EndReason::PodDeleted => {
                        let why = format!("the server ended the stream ({})", end.message);
                        self.link
                            .reopen(&why, out)
                            .await
                            .err()
                            .map(|stop| Err(self.stopped(stop)))
                    }
                },
            };
            if let Some(done) = done {
                return done;
            }
        }
    }

    fn snapshot(
        &mut self,
        sequence: u64,
        snapshot: pb::RolloutSnapshot,
        resync: bool,
        out: &mut Output,
    ) -> Option<Result<Success, Failure>> {
        if snapshot.not_found && self.must_exist && self.deployment.is_none() {
            let request = self.request();
            return Some(Err(Failure::from_status(&tonic::Status::not_found(
                format!(
                    "deployment {}/{} does not exist",
                    request.namespace, request.name
                ),
            ))));
        }
        out.rollout_snapshot(sequence, &snapshot, resync);
        if snapshot.deployment.is_some() {
            self.deployment = snapshot.deployment;
        }
        self.judge(out)
    }

    /// Whether the Deployment's latest state settles the rollout waited for.
    fn judge(&self, out: &Output) -> Option<Result<Success, Failure>> {
        let deployment = self.deployment.as_ref()?;
        let rollout = rollout_of(deployment);
        if rollout.generation < self.request().generation {
            // The server's view of an older spec: not this rollout's.
            return None;
        }
        match rollout.phase() {
            pb::RolloutPhase::Complete => Some(Ok(self.complete(deployment, out))),
            pb::RolloutPhase::Failed => Some(Err(Failure::rollout_failed(
                rollout_failure(deployment),
                deployment.clone(),
            ))),
            _ => None,
        }
    }

    fn complete(&self, deployment: &pb::Deployment, out: &Output) -> Success {
        let rollout = rollout_of(deployment);
        Success {
            summary: Some(format!(
                "deployment {}/{} successfully rolled out after {:.1}s (revision {}, {}/{} available)",
                deployment.namespace,
                deployment.name,
                out.elapsed().as_secs_f64(),
                rollout.revision,
                rollout.available,
                rollout.desired
            )),
            deployment: Some(deployment.clone()),
            ..Success::default()
        }
    }

    /// The server says `until` is met but the last Deployment seen does not settle it: the
    /// phase changed with a pod's change (a new pod failing), which the stream carries as the
    /// messages' `phase` only. The Deployment's status, read again, says why; failing that,
    /// the phase of the `end` decides.
    async fn ended(&mut self, phase: pb::RolloutPhase, out: &Output) -> Result<Success, Failure> {
        let request = pb::GetDeploymentRequest {
            namespace: self.request().namespace.clone(),
            name: self.request().name.clone(),
        };
        let lookup = self.link.source_mut().client.get_deployment(request);
        let fresh = tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|response| response.into_inner().deployment);
        if let Some(fresh) = fresh {
            self.deployment = Some(fresh);
            if let Some(done) = self.judge(out) {
                return done;
            }
        }
        let mut deployment = self.deployment.clone().unwrap_or_else(|| self.stub());
        let mut rollout = rollout_of(&deployment);
        rollout.phase = phase.into();
        deployment.rollout = Some(rollout);
        match phase {
            pb::RolloutPhase::Failed => Err(Failure::rollout_failed(
                rollout_failure(&deployment),
                deployment,
            )),
            _ => Ok(self.complete(&deployment, out)),
        }
    }

    fn deleted(&self) -> Failure {
        let deployment = self.deployment.clone().unwrap_or_else(|| self.stub());
        Failure::rollout_failed(
            format!(
                "deployment {}/{} was deleted before it rolled out",
                deployment.namespace, deployment.name
            ),
            deployment,
        )
    }

    /// The failure for a [`Stop`], with the Deployment's last known state.
    fn stopped(&self, stop: Stop) -> Failure {
        let mut failure = match stop {
            Stop::TimedOut => {
                let request = self.request();
                let state = self.deployment.as_ref().map_or_else(
                    || "it does not exist".to_owned(),
                    |deployment| {
                        let rollout = rollout_of(deployment);
                        format!("it is {}: {}", phase_name(rollout.phase()), rollout.message)
                    },
                );
                Failure::timed_out(
                    format!(
                        "timed out after {:?} waiting for deployment {}/{} to roll out; {state} \
                         (the rollout goes on)",
                        self.link.limit(),
                        request.namespace,
                        request.name
                    ),
                    None,
                )
            }
            Stop::Failed(failure) => failure,
        };
        failure.deployment = self.deployment.clone().map(Box::new);
        failure
    }

    /// The Deployment by name, when nothing of it was seen.
    fn stub(&self) -> pb::Deployment {
        pb::Deployment {
            namespace: self.request().namespace.clone(),
            name: self.request().name.clone(),
            ..pb::Deployment::default()
        }
    }
}

/// The account of a FAILED rollout: its reason, the new pods' reason and the message, and
/// the older pods that still serve. E.g. `deployment demo/web rollout FAILED:
/// NEW_PODS_FAILING: IMAGE_PULL_FAILED: ...; 3 pods of older revisions are still available`.
pub(crate) fn rollout_failure(deployment: &pb::Deployment) -> String {
    let rollout = rollout_of(deployment);
    let mut text = format!(
        "deployment {}/{} rollout FAILED",
        deployment.namespace, deployment.name
    );
    if let Some(reason) = rollout_reason_name(rollout.reason()) {
        text.push_str(&format!(": {reason}"));
    }
    if let Some(reason) = reason_name(rollout.pod_reason()) {
        text.push_str(&format!(": {reason}"));
    }
    if !rollout.message.is_empty() {
        text.push_str(&format!(": {}", rollout.message));
    }
    match rollout.old_available {
        0 => {}
        1 => text.push_str(
            "; 1 pod of an older revision is still available and serving (degraded, not down)",
        ),
        n => text.push_str(&format!(
            "; {n} pods of older revisions are still available and serving (degraded, not down)"
        )),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_reasons_and_the_old_pods_that_serve() {
        let mut deployment = pb::Deployment {
            namespace: "demo".into(),
            name: "web".into(),
            rollout: Some(pb::RolloutStatus {
                phase: pb::RolloutPhase::Failed.into(),
                reason: pb::RolloutReason::NewPodsFailing.into(),
                pod_reason: pb::Reason::ImagePullFailed.into(),
                message: "deployment \"web\": the pods of its new replica set fail: cannot pull"
                    .into(),
                old_available: 3,
                ..pb::RolloutStatus::default()
            }),
            ..pb::Deployment::default()
        };
        assert_eq!(
            rollout_failure(&deployment),
            "deployment demo/web rollout FAILED: NEW_PODS_FAILING: IMAGE_PULL_FAILED: \
             deployment \"web\": the pods of its new replica set fail: cannot pull; 3 pods of \
             older revisions are still available and serving (degraded, not down)"
        );
        if let Some(rollout) = deployment.rollout.as_mut() {
            rollout.reason = pb::RolloutReason::DeadlineExceeded.into();
            rollout.pod_reason = pb::Reason::Unspecified.into();
            rollout.message = "deployment \"web\" exceeded its progress deadline".into();
            rollout.old_available = 0;
        }
        assert_eq!(
            rollout_failure(&deployment),
            "deployment demo/web rollout FAILED: DEADLINE_EXCEEDED: deployment \"web\" \
             exceeded its progress deadline"
        );
    }

    #[test]
    fn the_stream_asks_for_the_generation_until_terminal() {
        let request = rollout_request("demo", "web", 4);
        assert_eq!(request.until(), pb::RolloutUntil::Terminal);
        assert_eq!((request.generation, request.name.as_str()), (4, "web"));
    }
}
