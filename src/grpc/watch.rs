//! The numbered watch streams (WatchStatus here, WatchRollout in `rollout.rs`): a hub
//! subscription turned into a gRPC stream with sequence numbers, heartbeats, an `until`
//! condition, a final message on shutdown, and an end at the caller's credential expiry. What
//! every such stream shares is here ([`WatchStream`], [`run`], [`send`], [`end`],
//! [`Outlet`], [`StreamTasks`]); each stream says what its updates mean.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{OwnedSemaphorePermit, mpsc, watch as signal};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::Instrument as _;

use crate::domain::Health;
use crate::grpc::DeployerService;
use crate::hub::{Filter, Update};
use crate::proto::deployer::v1 as pb;
use crate::{Error, Result};

/// Messages buffered between a stream's task and the transport. When the caller reads
/// slower than this, the task waits, and the hub resyncs it later instead of waiting.
const STREAM_BUFFER: usize = 16;

/// The gRPC stream a caller reads.
pub(super) type Outgoing<M> = ReceiverStream<std::result::Result<M, Status>>;

impl DeployerService {
    pub(super) async fn watch(
        &self,
        namespace: &str,
        filter: Filter,
        until: pb::Until,
        expires_at: Option<SystemTime>,
    ) -> Result<Outgoing<pb::WatchStatusResponse>> {
        let permit = self.stream_slot()?;
        self.pods.require_namespace(namespace).await?;
        let subscription = self
            .hub
            .subscribe(namespace, filter.clone())
            .await
            .map_err(|error| super::subscribe_failed(namespace, error))?;
        let (outlet, outgoing) = Outlet::new(self.settings.heartbeat, expires_at, permit);
        let stream = StatusStream {
            filter,
            until,
            health: BTreeMap::new(),
            outlet,
        };
        let span = tracing::info_span!("watch_status", namespace = %namespace);
        self.stream_tasks
            .spawn(run(stream, subscription.updates, self.shutdown.clone()).instrument(span));
        Ok(outgoing)
    }

    /// A place for one more stream: refused while shutting down, and at the maximum of open
    /// streams (WatchStatus and WatchRollout together).
    pub(super) fn stream_slot(&self) -> Result<OwnedSemaphorePermit> {
        if *self.shutdown.borrow() {
            return Err(Error::ShuttingDown);
        }
        Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| Error::TooManyStreams(self.settings.max_streams))
    }

    /// Wait for the tasks of the open streams to end, then stop the hub. Call it once the
    /// shutdown signal given to [`DeployerService::new`] has turned true and the server has
    /// drained: each stream has then sent its final message, or its caller is gone. A stream
    /// still running after [`STREAMS_DRAIN`] (a caller that neither reads nor leaves) is
    /// aborted.
    pub async fn shutdown(&self) {
        self.stream_tasks.drain().await;
        self.hub.shutdown().await;
    }
}

/// The tasks of the open streams, so that shutdown can wait for their final messages.
#[derive(Clone, Default)]
pub(super) struct StreamTasks(Arc<std::sync::Mutex<JoinSet<()>>>);

impl StreamTasks {
    fn tasks(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Run a stream's task.
    pub(super) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks();
        // Streams that ended are collected here, so the set holds only the open ones.
        while let Some(ended) = tasks.try_join_next() {
            log_stream_end(ended);
        }
        tasks.spawn(task);
    }

    /// Wait up to [`STREAMS_DRAIN`] for the open streams' tasks to end; abort those left.
    pub(super) async fn drain(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks());
        let open = tasks.len();
        let drained = tokio::time::timeout(STREAMS_DRAIN, async {
            while let Some(ended) = tasks.join_next().await {
                log_stream_end(ended);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = tasks.len(),
                open,
                "streams still running after the drain: aborting them"
            );
            tasks.shutdown().await;
        }
    }
}

/// How long [`StreamTasks::drain`] waits for the streams' tasks to end.
const STREAMS_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A stream's task that panicked is a bug worth a log.
fn log_stream_end(ended: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended
        && error.is_panic()
    {
        tracing::error!(%error, "a watch stream's task panicked");
    }
}

/// How long the expiry status waits for room in a stream whose caller is not reading.
const EXPIRY_NOTICE: std::time::Duration = std::time::Duration::from_secs(1);

/// The tokio instant of a wall-clock time (now, if it is past; none, if too far to count).
fn instant_of(time: SystemTime) -> Option<Instant> {
    let left = time.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now().checked_add(left)
}

/// Completes at `at`; never when there is no expiry.
async fn expiry(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where a stream's messages go, with what every stream keeps: its sequence number, its
/// heartbeat interval, when its caller's credential expires, and its place among the open
/// streams.
pub(super) struct Outlet<M> {
    heartbeat: std::time::Duration,
    sequence: u64,
    /// When the caller's credential expires: the stream ends then, with UNAUTHENTICATED.
    expires_at: Option<Instant>,
    tx: mpsc::Sender<std::result::Result<M, Status>>,
    _permit: OwnedSemaphorePermit,
}

impl<M> Outlet<M> {
    /// An outlet, and the gRPC stream its messages go to.
    pub(super) fn new(
        heartbeat: std::time::Duration,
        expires_at: Option<SystemTime>,
        permit: OwnedSemaphorePermit,
    ) -> (Self, Outgoing<M>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let outlet = Self {
            heartbeat,
            sequence: 0,
            expires_at: expires_at.and_then(instant_of),
            tx,
            _permit: permit,
        };
        (outlet, ReceiverStream::new(rx))
    }

    /// No message has been sent yet: the next one is the snapshot.
    pub(super) fn first(&self) -> bool {
        self.sequence == 0
    }
}

/// Why the stream stops: after a final message, or because the caller left.
pub(super) enum Stop {
    Ended,
    CallerGone,
}

/// What makes a numbered stream a WatchStatus or a WatchRollout: the updates it forwards and
/// the messages it sends.
pub(super) trait WatchStream: Send + 'static {
    /// What the hub sends it.
    type Update: Send;
    /// What one of its messages carries (the response's `kind`).
    type Kind: Send;
    /// Its response message.
    type Message: Send + 'static;

    fn outlet(&mut self) -> &mut Outlet<Self::Message>;

    /// Message number `sequence`, carrying `kind`.
    fn message(&self, sequence: u64, kind: Self::Kind) -> Self::Message;

    /// A heartbeat, as a message kind.
    fn heartbeat(heartbeat: pb::Heartbeat) -> Self::Kind;

    /// The final message, as a message kind.
    fn end(end: pb::End) -> Self::Kind;

    /// Send what `update` means to the caller, with [`send`] (and [`end`] when it ends the
    /// stream).
    fn forward(
        &mut self,
        update: Self::Update,
    ) -> impl Future<Output = std::result::Result<(), Stop>> + Send;
}

/// A stream's task: forward the hub's updates, send heartbeats while idle, and end with a
/// final message on shutdown, at the caller's credential expiry (UNAUTHENTICATED), or when
/// the stream itself says so; stop when the caller leaves.
pub(super) async fn run<S: WatchStream>(
    mut stream: S,
    mut updates: mpsc::Receiver<S::Update>,
    mut shutdown: signal::Receiver<bool>,
) {
    let every = stream.outlet().heartbeat;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        let expires_at = stream.outlet().expires_at;
        let tx = stream.outlet().tx.clone();
        // Biased: an expired credential, a shutdown or a departed caller is acted on before
        // any further update is sent.
        let step = tokio::select! {
            biased;
            () = expiry(expires_at) => expired(stream.outlet()).await,
            () = async {
                // The guard this returns must not live across the next await.
                let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
            } => end(&mut stream, pb::EndReason::ServerShutdown, "the server is shutting down").await,
            () = tx.closed() => Err(Stop::CallerGone),
            update = updates.recv() => match update {
                Some(update) => stream.forward(update).await,
                None => end(&mut stream, pb::EndReason::ServerShutdown, "the server is shutting down").await,
            },
            _ = heartbeat.tick() => {
                let time = crate::grpc::convert::timestamp(Some(jiff::Timestamp::now()));
                send(&mut stream, S::heartbeat(pb::Heartbeat { time })).await
            },
        };
        heartbeat.reset();
        if let Err(stop) = step {
            break stop;
        }
    };
    let messages = stream.outlet().sequence;
    match outcome {
        Stop::Ended => tracing::debug!(messages, "stream ended"),
        Stop::CallerGone => tracing::debug!(messages, "caller left"),
    }
}

/// Send the next message, carrying `kind`.
pub(super) async fn send<S: WatchStream>(
    stream: &mut S,
    kind: S::Kind,
) -> std::result::Result<(), Stop> {
    let sequence = stream.outlet().sequence + 1;
    stream.outlet().sequence = sequence;
    let message = stream.message(sequence, kind);
    let outlet = stream.outlet();
    // A caller that stops reading must not keep its stream past its credential's expiry.
    tokio::select! {
        biased;
        sent = outlet.tx.send(Ok(message)) => return sent.map_err(|_| Stop::CallerGone),
        () = expiry(outlet.expires_at) => {}
    }
    expired(outlet).await
}

/// Send the final message; the stream then ends.
pub(super) async fn end<S: WatchStream>(
    stream: &mut S,
    reason: pb::EndReason,
    message: &str,
) -> std::result::Result<(), Stop> {
    let end = pb::End {
        reason: reason.into(),
        message: message.to_owned(),
    };
    send(stream, S::end(end)).await?;
    Err(Stop::Ended)
}

/// The caller's credential expired: end with UNAUTHENTICATED, as a new call would get.
async fn expired<M>(outlet: &mut Outlet<M>) -> std::result::Result<(), Stop> {
    tracing::info!(
        messages = outlet.sequence,
        "credential expired: ending the stream"
    );
    let status = Status::unauthenticated("the credential expired while the stream was open");
    // A caller that is not reading gets a moment for the status, then the stream closes.
    let _ = tokio::time::timeout(EXPIRY_NOTICE, outlet.tx.send(Err(status))).await;
    Err(Stop::Ended)
}

/// One open WatchStatus stream.
struct StatusStream {
    filter: Filter,
    until: pb::Until,
    /// The health of every pod the caller knows of.
    health: BTreeMap<String, Health>,
    outlet: Outlet<pb::WatchStatusResponse>,
}

impl WatchStream for StatusStream {
    type Update = Update;
    type Kind = pb::watch_status_response::Kind;
    type Message = pb::WatchStatusResponse;

    fn outlet(&mut self) -> &mut Outlet<Self::Message> {
        &mut self.outlet
    }

    fn message(&self, sequence: u64, kind: Self::Kind) -> Self::Message {
        pb::WatchStatusResponse {
            sequence,
            kind: Some(kind),
        }
    }

    fn heartbeat(heartbeat: pb::Heartbeat) -> Self::Kind {
        Self::Kind::Heartbeat(heartbeat)
    }

    fn end(end: pb::End) -> Self::Kind {
        Self::Kind::End(end)
    }

    async fn forward(&mut self, update: Update) -> std::result::Result<(), Stop> {
        use pb::watch_status_response::Kind;
        let mut deleted_by_name = false;
        let kind = match update {
            Update::Snapshot { pods, not_found } | Update::Resync { pods, not_found } => {
                let first = self.outlet.first();
                self.health = pods
                    .iter()
                    .map(|p| (p.state.name.clone(), p.assessment.health))
                    .collect();
                let snapshot = pb::Snapshot {
                    pods: pods
                        .iter()
                        .map(|p| pb::PodStatus::from(p.as_ref()))
                        .collect(),
                    not_found,
                };
                if first {
                    Kind::Snapshot(snapshot)
                } else {
                    Kind::Resync(snapshot)
                }
            }
            Update::Pod(view) => {
                self.health
                    .insert(view.state.name.clone(), view.assessment.health);
                Kind::Pod(pb::PodStatus::from(view.as_ref()))
            }
            Update::Deleted(view) => {
                self.health.remove(&view.state.name);
                deleted_by_name = matches!(self.filter, Filter::Name(_));
                Kind::Deleted(pb::PodStatus::from(view.as_ref()))
            }
            Update::Event(event) => Kind::Event(pb::PodEvent::from(event.as_ref())),
        };
        send(self, kind).await?;
        if deleted_by_name {
            return end(self, pb::EndReason::PodDeleted, "the pod was deleted").await;
        }
        if self.until_met() {
            return end(
                self,
                pb::EndReason::UntilMet,
                "the watched pods reached the requested state",
            )
            .await;
        }
        Ok(())
    }
}

impl StatusStream {
    fn until_met(&self) -> bool {
        if self.health.is_empty() {
            return false;
        }
        match self.until {
            pb::Until::Ready => self.health.values().all(|h| *h == Health::Ready),
            pb::Until::Terminal => self.health.values().all(|h| h.is_terminal()),
            pb::Until::Unspecified | pb::Until::None => false,
        }
    }
}
