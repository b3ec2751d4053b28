//! WatchStatus: a hub subscription turned into a numbered gRPC stream with heartbeats, an
//! `until` condition, and a final message on shutdown.

use std::collections::BTreeMap;
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
use crate::hub::{Filter, Subscription, Update};
use crate::proto::deployer::v1 as pb;
use crate::{Error, Result};

/// Messages buffered between a stream's task and the transport. When the caller reads
/// slower than this, the task waits, and the hub resyncs it later instead of waiting.
const STREAM_BUFFER: usize = 16;

type Sink = mpsc::Sender<std::result::Result<pb::WatchStatusResponse, Status>>;

impl DeployerService {
    pub(super) async fn watch(
        &self,
        namespace: &str,
        filter: Filter,
        until: pb::Until,
        expires_at: Option<SystemTime>,
    ) -> Result<ReceiverStream<std::result::Result<pb::WatchStatusResponse, Status>>> {
        if *self.shutdown.borrow() {
            return Err(Error::ShuttingDown);
        }
        let permit = Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| Error::TooManyStreams(self.settings.max_streams))?;
        self.pods.require_namespace(namespace).await?;
        let subscription = self
            .hub
            .subscribe(namespace, filter.clone())
            .await
            .map_err(|error| super::subscribe_failed(namespace, error))?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let stream = StatusStream {
            filter,
            until,
            heartbeat: self.settings.heartbeat,
            sequence: 0,
            health: BTreeMap::new(),
            expires_at: expires_at.and_then(instant_of),
            tx,
            _permit: permit,
        };
        let span = tracing::info_span!("watch_status", namespace = %namespace);
        let task = stream
            .run(subscription, self.shutdown.clone())
            .instrument(span);
        let mut tasks = self.stream_tasks();
        // Streams that ended are collected here, so the set holds only the open ones.
        while let Some(ended) = tasks.try_join_next() {
            log_stream_end(ended);
        }
        tasks.spawn(task);
        Ok(ReceiverStream::new(rx))
    }

    fn stream_tasks(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.stream_tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wait for the tasks of the open streams to end, then stop the hub. Call it once the
    /// shutdown signal given to [`DeployerService::new`] has turned true and the server has
    /// drained: each stream has then sent its final message, or its caller is gone. A stream
    /// still running after [`STREAMS_DRAIN`] (a caller that neither reads nor leaves) is
    /// aborted.
    pub async fn shutdown(&self) {
        let mut tasks = std::mem::take(&mut *self.stream_tasks());
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
        self.hub.shutdown().await;
    }
}

/// How long [`DeployerService::shutdown`] waits for the streams' tasks to end.
const STREAMS_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A stream's task that panicked is a bug worth a log.
fn log_stream_end(ended: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended
        && error.is_panic()
    {
        tracing::error!(%error, "a WatchStatus stream's task panicked");
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

/// One open WatchStatus stream.
struct StatusStream {
    filter: Filter,
    until: pb::Until,
    heartbeat: std::time::Duration,
    sequence: u64,
    /// The health of every pod the caller knows of.
    health: BTreeMap<String, Health>,
    /// When the caller's credential expires: the stream ends then, with UNAUTHENTICATED.
    expires_at: Option<Instant>,
    tx: Sink,
    _permit: OwnedSemaphorePermit,
}

/// Why the stream stops: after a final message, or because the caller left.
enum Stop {
    Ended,
    CallerGone,
}

impl StatusStream {
    async fn run(mut self, mut subscription: Subscription, mut shutdown: signal::Receiver<bool>) {
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + self.heartbeat, self.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            // Biased: an expired credential, a shutdown or a departed caller is acted on before
            // any further update is sent.
            let step = tokio::select! {
                biased;
                () = expiry(self.expires_at) => self.expired().await,
                () = async {
                    // The guard this returns must not live across the next await.
                    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
                } => self.end(pb::EndReason::ServerShutdown, "the server is shutting down").await,
                () = self.tx.closed() => Err(Stop::CallerGone),
                update = subscription.updates.recv() => match update {
                    Some(update) => self.forward(update).await,
                    None => self.end(pb::EndReason::ServerShutdown, "the server is shutting down").await,
                },
                _ = heartbeat.tick() => {
                    let time = crate::grpc::convert::timestamp(Some(jiff::Timestamp::now()));
                    self.send(pb::watch_status_response::Kind::Heartbeat(pb::Heartbeat { time })).await
                },
            };
            heartbeat.reset();
            if let Err(stop) = step {
                break stop;
            }
        };
        match outcome {
            Stop::Ended => tracing::debug!(messages = self.sequence, "stream ended"),
            Stop::CallerGone => tracing::debug!(messages = self.sequence, "caller left"),
        }
    }

    async fn send(
        &mut self,
        kind: pb::watch_status_response::Kind,
    ) -> std::result::Result<(), Stop> {
        self.sequence += 1;
        let message = pb::WatchStatusResponse {
            sequence: self.sequence,
            kind: Some(kind),
        };
        // A caller that stops reading must not keep its stream past its credential's expiry.
        tokio::select! {
            biased;
            sent = self.tx.send(Ok(message)) => return sent.map_err(|_| Stop::CallerGone),
            () = expiry(self.expires_at) => {}
        }
        self.expired().await
    }

    /// The caller's credential expired: end with UNAUTHENTICATED, as a new call would get.
    async fn expired(&mut self) -> std::result::Result<(), Stop> {
        tracing::info!(
            messages = self.sequence,
            "credential expired: ending the stream"
        );
        let status = Status::unauthenticated("the credential expired while the stream was open");
        // A caller that is not reading gets a moment for the status, then the stream closes.
        let _ = tokio::time::timeout(EXPIRY_NOTICE, self.tx.send(Err(status))).await;
        Err(Stop::Ended)
    }

    async fn end(&mut self, reason: pb::EndReason, message: &str) -> std::result::Result<(), Stop> {
        self.send(pb::watch_status_response::Kind::End(pb::End {
            reason: reason.into(),
            message: message.to_owned(),
        }))
        .await?;
        Err(Stop::Ended)
    }

    async fn forward(&mut self, update: Update) -> std::result::Result<(), Stop> {
        use pb::watch_status_response::Kind;
        let mut deleted_by_name = false;
        let kind = match update {
            Update::Snapshot { pods, not_found } | Update::Resync { pods, not_found } => {
                let first = self.sequence == 0;
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
        self.send(kind).await?;
        if deleted_by_name {
            return self
                .end(pb::EndReason::PodDeleted, "the pod was deleted")
                .await;
        }
        if self.until_met() {
            return self
                .end(
                    pb::EndReason::UntilMet,
                    "the watched pods reached the requested state",
                )
                .await;
        }
        Ok(())
    }

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
