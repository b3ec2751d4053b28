//! Following a WatchStatus stream until what the command waits for happens, a pod fails, or
//! the time runs out; reconnecting when the server ends the stream for a shutdown, as the
//! contract asks of clients.
//!
//! The reading, the deadline and the reconnection are [`Link`]'s, for any server stream (a
//! [`Source`]): the pod [`Follower`] here and the rollout follower (`rollout`) share it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_deployer::domain::{Health, WaitFor};
use k8s_deployer::proto::deployer::v1 as pb;
use pb::watch_status_response::Kind;
use tokio::time::Instant;
use tonic::{Code, Streaming};

use crate::args::Wait;
use crate::connect::Client;
use crate::exit::{self, Failure};
use crate::output::{Output, Success, health_name, reason_name};

/// Pauses before each attempt to open the stream again after losing it; then we give up.
const RECONNECT_BACKOFF: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// What the followed stream is for.
#[derive(Debug, Clone)]
pub(crate) enum Goal {
    /// `deploy --wait`: the pod with this UID reaches `wanted`. Judged exactly as the server
    /// judges Deploy's `wait_for` (met first, then a terminal health is a failure), so that
    /// `--wait ready` means what `wait_for: READY` means.
    Deployed {
        /// The condition.
        wanted: Wait,
        /// The pod Deploy answered with: another pod of the same name is not it.
        uid: String,
    },
    /// `watch --until ready`: the server ends the stream once every pod is READY; a pod
    /// that fails (or, by name, is deleted) first is a failure.
    Ready,
    /// `watch --until terminal`: the server ends the stream once every pod is FAILED,
    /// SUCCEEDED or DELETED; a pod that ended FAILED makes it a failure.
    Terminal,
    /// `watch` alone: until the pod (by name) is deleted.
    Follow,
    /// `delete --wait`: until the pod is gone.
    Gone,
}

impl Goal {
    /// The `until` to ask the server for.
    pub(crate) fn until(&self) -> pb::Until {
        match self {
            Goal::Ready => pb::Until::Ready,
            Goal::Terminal => pb::Until::Terminal,
            Goal::Deployed { .. } | Goal::Follow | Goal::Gone => pb::Until::None,
        }
    }

    fn wanted(&self) -> &'static str {
        match self {
            Goal::Deployed { wanted, .. } => wanted.name(),
            Goal::Ready => "READY",
            Goal::Terminal => "terminal",
            Goal::Follow => "deleted (or the timeout)",
            Goal::Gone => "gone",
        }
    }

    /// Whether a pod message is about the pod this goal concerns.
    fn concerns(&self, pod: &pb::PodStatus) -> bool {
        match self {
            Goal::Deployed { uid, .. } => uid.is_empty() || pod.uid == *uid,
            _ => true,
        }
    }
}

/// A server stream that can be opened (again): what [`Link`] follows.
pub(crate) trait Source {
    /// The stream's messages.
    type Message;
    /// Open the stream.
    async fn open(&mut self) -> Result<Streaming<Self::Message>, Failure>;
}

/// Why a [`Link`] gave no message.
pub(crate) enum Stop {
    /// The deadline passed.
    TimedOut,
    /// The server refused the stream or broke it with an error that reconnecting will not
    /// cure, or reconnecting failed.
    Failed(Failure),
}

/// A followed server stream: read under a deadline, and opened again (after a pause, a few
/// times) when it breaks or closes without an `end`.
pub(crate) struct Link<S: Source> {
    source: S,
    stream: Option<Streaming<S::Message>>,
    /// When to give up, and the `--timeout` it came from (for the message).
    deadline: Option<(Instant, Duration)>,
    /// Reconnection attempts since the last stream that opened.
    attempts: usize,
}

impl<S: Source> Link<S> {
    /// A link to `source`, opened on the first read (or already `opened` by the caller).
    pub(crate) fn new(
        source: S,
        opened: Option<Streaming<S::Message>>,
        deadline: Option<(Instant, Duration)>,
    ) -> Link<S> {
        Link {
            source,
            stream: opened,
            deadline,
            attempts: 0,
        }
    }

    /// What the stream is opened from.
    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    /// What the stream is opened from, to make other calls with its client.
    pub(crate) fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The `--timeout` the deadline came from.
    pub(crate) fn limit(&self) -> Duration {
        self.deadline.map_or(Duration::ZERO, |(_, limit)| limit)
    }

    /// The stream's first message (its snapshot) arrived: it opened well, so the next loss
    /// starts the back-off again.
    pub(crate) fn settled(&mut self) {
        self.attempts = 0;
    }

    /// The next message, reopening the stream when it is lost.
    pub(crate) async fn next(&mut self, out: &mut Output) -> Result<S::Message, Stop> {
        let deadline = self.deadline;
        loop {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => {
                    let opened = bounded(deadline, self.source.open()).await?;
                    self.stream.insert(opened.map_err(Stop::Failed)?)
                }
            };
            match bounded(deadline, stream.message()).await? {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => self.reopen("the stream closed without an end", out).await?,
                Err(status) if status.code() == Code::Unavailable => {
                    let why = format!("the stream broke ({})", status.message());
                    self.reopen(&why, out).await?;
                }
                Err(status) => return Err(Stop::Failed(Failure::from_status(&status))),
            }
        }
    }

    /// The stream is lost (or the server ended it for a shutdown): open it again, after a
    /// pause, a few times.
    pub(crate) async fn reopen(&mut self, why: &str, out: &mut Output) -> Result<(), Stop> {
        self.stream = None;
        loop {
            let Some(pause) = RECONNECT_BACKOFF.get(self.attempts).copied() else {
                return Err(Stop::Failed(Failure::unreachable(format!(
                    "{why}, and {} attempts to reconnect failed",
                    RECONNECT_BACKOFF.len()
                ))));
            };
            self.attempts += 1;
            out.note(&format!("{why}; reconnecting in {pause:?}"));
            let wake = Instant::now() + pause;
            if let Some((at, _)) = self.deadline
                && wake >= at
            {
                tokio::time::sleep_until(at).await;
                return Err(Stop::TimedOut);
            }
            tokio::time::sleep_until(wake).await;
            match bounded(self.deadline, self.source.open()).await? {
                Ok(stream) => {
                    self.stream = Some(stream);
                    return Ok(());
                }
                Err(failure) if failure.exit == exit::UNREACHABLE => continue,
                Err(failure) => return Err(Stop::Failed(failure)),
            }
        }
    }
}

/// `future`'s output, unless the deadline passes first.
async fn bounded<T>(
    deadline: Option<(Instant, Duration)>,
    future: impl Future<Output = T>,
) -> Result<T, Stop> {
    match deadline {
        Some((at, _)) => tokio::time::timeout_at(at, future)
            .await
            .map_err(|_| Stop::TimedOut),
        None => Ok(future.await),
    }
}

/// The WatchStatus stream of a [`Follower`].
pub(crate) struct PodSource<'a> {
    client: &'a mut Client,
    request: pb::WatchStatusRequest,
}

impl Source for PodSource<'_> {
    type Message = pb::WatchStatusResponse;

    async fn open(&mut self) -> Result<Streaming<pb::WatchStatusResponse>, Failure> {
        open(self.client, &self.request).await
    }
}

/// One followed WatchStatus stream: its goal, and the pods.
pub(crate) struct Follower<'a> {
    link: Link<PodSource<'a>>,
    goal: Goal,
    /// The latest status of each watched pod.
    pods: BTreeMap<String, pb::PodStatus>,
}

/// The request for a WatchStatus stream of one pod, or of a selector's pods.
pub(crate) fn watch_request(
    namespace: &str,
    name: Option<&str>,
    selector: Option<&str>,
    goal: &Goal,
) -> pb::WatchStatusRequest {
    pb::WatchStatusRequest {
        namespace: namespace.to_owned(),
        name: name.unwrap_or_default().to_owned(),
        label_selector: selector.unwrap_or_default().to_owned(),
        until: goal.until().into(),
    }
}

/// Open a WatchStatus stream.
pub(crate) async fn open(
    client: &mut Client,
    request: &pb::WatchStatusRequest,
) -> Result<Streaming<pb::WatchStatusResponse>, Failure> {
    client
        .watch_status(request.clone())
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| Failure::from_status(&status))
}

impl<'a> Follower<'a> {
    /// A follower of `request` (built with [`watch_request`] for the same goal).
    pub(crate) fn new(
        client: &'a mut Client,
        request: pb::WatchStatusRequest,
        goal: Goal,
        deadline: Option<(Instant, Duration)>,
    ) -> Follower<'a> {
        Follower {
            link: Link::new(PodSource { client, request }, None, deadline),
            goal,
            pods: BTreeMap::new(),
        }
    }

    fn request(&self) -> &pb::WatchStatusRequest {
        &self.link.source().request
    }

    /// Follow the stream (`opened` if the caller opened it already) to its conclusion.
    pub(crate) async fn run(
        mut self,
        opened: Option<Streaming<pb::WatchStatusResponse>>,
        out: &mut Output,
    ) -> Result<Success, Failure> {
        self.link.stream = opened;
        loop {
            let message = match self.link.next(out).await {
                Ok(message) => message,
                Err(Stop::TimedOut) => return Err(self.timed_out()),
                Err(Stop::Failed(mut failure)) => {
                    failure.pod = self.last_pod().map(Box::new);
                    return Err(failure);
                }
            };
            let sequence = message.sequence;
            let done = match message.kind {
                Some(Kind::Snapshot(snapshot)) => {
                    self.link.settled();
                    self.snapshot(sequence, snapshot, false, out)
                }
                Some(Kind::Resync(snapshot)) => self.snapshot(sequence, snapshot, true, out),
                Some(Kind::Pod(pod)) => {
                    if !self.goal.concerns(&pod) {
                        continue;
                    }
                    out.pod(sequence, &pod);
                    self.pods.insert(pod.name.clone(), pod.clone());
                    self.judge(&pod, out)
                }
                Some(Kind::Deleted(pod)) => {
                    if !self.goal.concerns(&pod) {
                        continue;
                    }
                    out.deleted(sequence, &pod);
                    self.pods.remove(&pod.name);
                    self.on_deleted(pod, out)
                }
                Some(Kind::Event(event)) => {
                    out.event(sequence, &event);
                    None
                }
                Some(Kind::Heartbeat(_)) | None => None,
                Some(Kind::End(end)) => match end.reason() {
                    pb::EndReason::UntilMet => Some(self.until_met(out)),
                    pb::EndReason::PodDeleted => Some(self.pod_deleted(out)),
                    // DEPLOYMENT_DELETED ends WatchRollout streams only.
                    pb::EndReason::ServerShutdown
                    | pb::EndReason::Unspecified
                    | pb::EndReason::DeploymentDeleted => {
                        let why = format!("the server ended the stream ({})", end.message);
                        match self.link.reopen(&why, out).await {
                            Ok(()) => None,
                            Err(Stop::TimedOut) => Some(Err(self.timed_out())),
                            Err(Stop::Failed(mut failure)) => {
                                failure.pod = self.last_pod().map(Box::new);
                                Some(Err(failure))
                            }
                        }
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
        mut snapshot: pb::Snapshot,
        resync: bool,
        out: &mut Output,
    ) -> Option<Result<Success, Failure>> {
        snapshot.pods.retain(|pod| self.goal.concerns(pod));
        out.snapshot(sequence, &snapshot, resync);
        self.pods = snapshot
            .pods
            .iter()
            .map(|pod| (pod.name.clone(), pod.clone()))
            .collect();
        snapshot.pods.iter().find_map(|pod| self.judge(pod, out))
    }

    /// Whether this pod's new status settles the goal.
    fn judge(&self, pod: &pb::PodStatus, out: &Output) -> Option<Result<Success, Failure>> {
        let health = pod.health();
        match &self.goal {
            Goal::Deployed { wanted, .. } => {
                let domain_health = domain_health(health);
                if WaitFor::from(*wanted).is_met(&pod.phase, !pod.node.is_empty(), domain_health) {
                    Some(Ok(Success {
                        summary: Some(reached(pod, wanted.name(), out)),
                        pod: Some(pod.clone()),
                        ..Success::default()
                    }))
                } else if domain_health.is_terminal() {
                    Some(Err(self.failed(pod, "")))
                } else {
                    None
                }
            }
            Goal::Ready if matches!(health, pb::Health::Failed | pb::Health::Succeeded) => {
                Some(Err(self.failed(pod, "")))
            }
            _ => None,
        }
    }

    fn on_deleted(&self, pod: pb::PodStatus, out: &Output) -> Option<Result<Success, Failure>> {
        let by_name = !self.request().name.is_empty();
        match &self.goal {
            Goal::Deployed { .. } => Some(Err(self.failed(&pod, "was deleted "))),
            Goal::Ready if by_name => Some(Err(self.failed(&pod, "was deleted "))),
            Goal::Gone => Some(Ok(Success {
                summary: Some(format!(
                    "pod {}/{} is gone after {:.1}s",
                    pod.namespace,
                    pod.name,
                    out.elapsed().as_secs_f64()
                )),
                pod: Some(pod),
                ..Success::default()
            })),
            _ => None,
        }
    }

    fn until_met(&self, out: &Output) -> Result<Success, Failure> {
        if let Goal::Terminal = self.goal
            && let Some(failed) = self
                .pods
                .values()
                .find(|pod| pod.health() == pb::Health::Failed)
        {
            return Err(self.failed(failed, "ended "));
        }
        let summary = match self.pods.len() {
            1 => self
                .pods
                .values()
                .next()
                .map(|pod| reached(pod, health_name(pod.health()), out)),
            n => Some(format!(
                "{}: every one of {n} pods is {} after {:.1}s",
                self.target(),
                self.goal.wanted(),
                out.elapsed().as_secs_f64()
            )),
        };
        Ok(Success {
            summary,
            pod: self.last_pod(),
            ..Success::default()
        })
    }

    fn pod_deleted(&self, out: &Output) -> Result<Success, Failure> {
        let gone = pb::PodStatus {
            namespace: self.request().namespace.clone(),
            name: self.request().name.clone(),
            health: pb::Health::Deleted.into(),
            reason: pb::Reason::Deleted.into(),
            ..pb::PodStatus::default()
        };
        match self.goal {
            Goal::Deployed { .. } | Goal::Ready => Err(self.failed(&gone, "was deleted ")),
            Goal::Terminal | Goal::Follow | Goal::Gone => Ok(Success {
                summary: Some(format!(
                    "{} was deleted after {:.1}s",
                    self.target(),
                    out.elapsed().as_secs_f64()
                )),
                pod: Some(gone),
                ..Success::default()
            }),
        }
    }

    fn timed_out(&self) -> Failure {
        let waited = self.link.limit();
        let state = match self.pods.len() {
            0 => "it does not exist".to_owned(),
            1 => format!(
                "it is {}",
                self.pods.values().next().map(state_of).unwrap_or_default()
            ),
            n => {
                let states: Vec<String> = self
                    .pods
                    .values()
                    .map(|pod| format!("{} {}", pod.name, state_of(pod)))
                    .collect();
                format!("{n} pods: {}", states.join("; "))
            }
        };
        Failure::timed_out(
            format!(
                "timed out after {waited:?} waiting for {} to be {}; {state}",
                self.target(),
                self.goal.wanted()
            ),
            self.last_pod(),
        )
    }

    fn failed(&self, pod: &pb::PodStatus, how: &str) -> Failure {
        let how = if how.is_empty() {
            format!("is {}", health_name(pod.health()))
        } else {
            format!("{how}{}", health_name(pod.health()))
        };
        let mut message = format!(
            "pod {}/{} {how} before it was {}",
            pod.namespace,
            pod.name,
            self.goal.wanted()
        );
        if let Goal::Terminal = self.goal {
            message = format!("pod {}/{} {how}", pod.namespace, pod.name);
        }
        if let Some(reason) = reason_name(pod.reason()) {
            message.push_str(&format!(": {reason}"));
        }
        if !pod.message.is_empty() {
            message.push_str(&format!(": {}", pod.message));
        }
        Failure::pod_failed(message, pod.clone())
    }

    fn target(&self) -> String {
        if self.request().name.is_empty() {
            format!(
                "the pods matching {:?} in {}",
                self.request().label_selector,
                self.request().namespace
            )
        } else {
            format!("pod {}/{}", self.request().namespace, self.request().name)
        }
    }

    fn last_pod(&self) -> Option<pb::PodStatus> {
        if self.pods.len() == 1 {
            self.pods.values().next().cloned()
        } else {
            None
        }
    }
}

/// The server's health of a pod, as the library's rules take it. A health this client does
/// not know (a newer server's, or none) is taken as PENDING: neither met nor terminal, so
/// the wait goes on until the pod reports one it knows, or the time runs out.
fn domain_health(health: pb::Health) -> Health {
    match health {
        pb::Health::Unspecified | pb::Health::Pending => Health::Pending,
        pb::Health::Progressing => Health::Progressing,
        pb::Health::Ready => Health::Ready,
        pb::Health::Degraded => Health::Degraded,
        pb::Health::Failed => Health::Failed,
        pb::Health::Succeeded => Health::Succeeded,
        pb::Health::Deleted => Health::Deleted,
    }
}

/// `PENDING (UNSCHEDULABLE: 0/2 nodes are available ...)`.
fn state_of(pod: &pb::PodStatus) -> String {
    let mut state = health_name(pod.health()).to_owned();
    if let Some(reason) = reason_name(pod.reason()) {
        state.push_str(&format!(" ({reason}"));
        if !pod.message.is_empty() {
            state.push_str(&format!(": {}", pod.message));
        }
        state.push(')');
    }
    state
}

/// The summary of a met condition: `pod demo/web is READY after 2.1s (node n, IP i)`.
fn reached(pod: &pb::PodStatus, condition: &str, out: &Output) -> String {
    let mut text = format!(
        "pod {}/{} is {condition} after {:.1}s",
        pod.namespace,
        pod.name,
        out.elapsed().as_secs_f64()
    );
    let mut place = Vec::new();
    if !pod.node.is_empty() {
        place.push(format!("node {}", pod.node));
    }
    if !pod.pod_ip.is_empty() {
        place.push(format!("IP {}", pod.pod_ip));
    }
    if !place.is_empty() {
        text.push_str(&format!(" ({})", place.join(", ")));
    }
    text
}
