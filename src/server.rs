//! Bootstrap and shutdown of the gRPC server.
//!
//! [`Server::bind`] builds the Kubernetes client and binds the listener;
//! [`Server::run`] serves gRPC health and reflection until a shutdown future
//! completes. Health reports NOT_SERVING until the Kubernetes API server has
//! answered once, and again from the moment shutdown begins.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tonic::transport::server::TcpIncoming;
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::Instrument as _;

use std::any::Any;
use std::sync::Arc;

use crate::grpc::{DeployerService, ServiceSettings};
use crate::hub::{StatusHub, WatchStarter};
use crate::k8s::{ClusterPods, NamespaceWatch};
use crate::proto::deployer::v1::deployer_service_server::DeployerServiceServer;
use crate::{Config, Error, Result, error, k8s, proto};

/// First delay between two attempts to reach the API server.
const READINESS_INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest delay between two attempts to reach the API server.
const READINESS_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Health service names reported by the server: the whole server ("") and the
/// deployer service.
const HEALTH_SERVICES: [&str; 2] = ["", proto::DEPLOYER_SERVICE];

/// A bound, not yet serving, k8s-deployer server.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    client: kube::Client,
    shutdown_timeout: Duration,
    settings: ServiceSettings,
}

impl Server {
    /// Builds the Kubernetes client from `config` and binds the gRPC listener
    /// to `config.listen`. Port 0 binds any free port; [`Server::local_addr`]
    /// tells which.
    ///
    /// The API server is not contacted yet: that happens in [`Server::run`],
    /// which keeps retrying, so the service can start before the cluster is up.
    ///
    /// # Errors
    ///
    /// Fails when no Kubernetes configuration can be loaded or the address
    /// cannot be bound.
    pub async fn bind(config: &Config) -> Result<Self> {
        let client = k8s::client(config.kubeconfig.as_deref(), config.context.as_deref()).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            listener,
            local_addr,
            client,
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout_secs),
            settings: ServiceSettings {
                namespaces: config.namespaces.iter().cloned().collect(),
                heartbeat: Duration::from_secs(config.heartbeat_secs),
                max_streams: config.max_streams,
            },
        })
    }

    /// The address the server is bound to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves gRPC health (`grpc.health.v1`) and reflection (`v1` and
    /// `v1alpha`) until `shutdown` completes, then stops gracefully.
    ///
    /// Health starts as NOT_SERVING for "" and `deployer.v1.DeployerService`
    /// and becomes SERVING once the Kubernetes API server has answered; the
    /// check is retried with backoff until then. When `shutdown` completes,
    /// health goes back to NOT_SERVING first, then the server stops accepting
    /// connections and waits for open calls to finish.
    ///
    /// # Errors
    ///
    /// Fails when the reflection service cannot be built or the server fails
    /// while serving.
    pub async fn run<F>(self, shutdown: F) -> Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::NotServing).await;

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(Error::Reflection)?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(Error::Reflection)?;

        let client = self.client.clone();
        let start_watch: WatchStarter = Arc::new(move |namespace, updates| {
            Box::new(NamespaceWatch::start(&client, namespace, updates)) as Box<dyn Any + Send>
        });
        let hub = StatusHub::new(start_watch);
        // Turned true when shutdown begins: every open stream ends with a final message.
        let (streams_stop_tx, streams_stop_rx) = watch::channel(false);
        let deployer = DeployerService::new(
            ClusterPods::new(self.client.clone()),
            hub.clone(),
            self.settings.clone(),
            streams_stop_rx,
        );

        let (stop_tx, stop_rx) = watch::channel(false);
        let served: Vec<String> = self.settings.namespaces.iter().cloned().collect();
        let readiness = spawn_readiness(self.client, hub, served, health.clone(), stop_rx);

        let (drain_tx, drain_rx) = oneshot::channel::<()>();
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let serve = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(DeployerServiceServer::new(deployer))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(incoming, async move {
                // A dropped sender also means: stop.
                let _ = drain_rx.await;
            });
        tokio::pin!(serve);

        let served_until_error = tokio::select! {
            result = &mut serve => Some(result),
            () = shutdown => None,
        };
        if let Some(result) = served_until_error {
            let _ = stop_tx.send(true);
            stop_readiness(readiness).await;
            return result.map_err(Error::Transport);
        }

        tracing::info!("shutting down: reporting NOT_SERVING, then draining connections");
        // The readiness task must be gone before NOT_SERVING is set, or it
        // could still flip health back to SERVING.
        let _ = stop_tx.send(true);
        stop_readiness(readiness).await;
        set_health(&health, ServingStatus::NotServing).await;
        streams_stop_tx.send_replace(true);

        let _ = drain_tx.send(());
        // Long-lived streams (a health Watch, say) would hold the drain open for ever: past
        // the timeout, dropping the server future closes whatever connections remain.
        match tokio::time::timeout(self.shutdown_timeout, serve).await {
            Ok(served) => served.map_err(Error::Transport)?,
            Err(_) => tracing::warn!(
                timeout = ?self.shutdown_timeout,
                "open calls did not finish in time: closing their connections"
            ),
        }
        tracing::info!("server stopped");
        Ok(())
    }

    /// Runs the server until SIGTERM or SIGINT (ctrl-c), then shuts down
    /// gracefully as [`Server::run`] does. A second signal during the
    /// graceful shutdown stops at once and returns [`Error::ForcedShutdown`].
    ///
    /// # Errors
    ///
    /// Fails when the signal handlers cannot be installed, when the server
    /// fails, or on a second signal.
    pub async fn run_until_signalled(self) -> Result<()> {
        let mut signals = ShutdownSignals::install()?;
        let (first_tx, first_rx) = oneshot::channel::<()>();
        let watch_signals = async move {
            let name = signals.recv().await;
            tracing::info!(signal = name, "shutdown requested");
            let _ = first_tx.send(());
            let name = signals.recv().await;
            tracing::warn!(signal = name, "second signal: stopping without draining");
        };
        tokio::select! {
            result = self.run(async move { let _ = first_rx.await; }) => result,
            () = watch_signals => Err(Error::ForcedShutdown),
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Sets every reported health service to `status`.
async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for service in HEALTH_SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// Spawns the task that waits for the API server to answer, then reports
/// SERVING. It gives up when `stop` turns true.
fn spawn_readiness(
    client: kube::Client,
    hub: StatusHub,
    namespaces: Vec<String>,
    health: HealthReporter,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let span = tracing::info_span!("apiserver_readiness");
    tokio::spawn(wait_for_apiserver(client, hub, namespaces, health, stop).instrument(span))
}

/// Waits for the readiness task to end; it ends promptly once stop is sent.
async fn stop_readiness(readiness: JoinHandle<()>) {
    if let Err(error) = readiness.await {
        tracing::error!(%error, "the API server readiness task failed");
    }
}

async fn wait_for_apiserver(
    client: kube::Client,
    hub: StatusHub,
    namespaces: Vec<String>,
    health: HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = READINESS_INITIAL_BACKOFF;
    let mut attempt: u32 = 1;
    loop {
        let result = tokio::select! {
            result = k8s::apiserver_version(&client) => result,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        match result {
            Ok(version) => {
                tracing::info!(
                    kubernetes_version = %version,
                    attempt,
                    "connected to the Kubernetes API server"
                );
                // The namespaces served from start-up must have synced first.
                let synced = async {
                    for namespace in &namespaces {
                        hub.watch_and_sync(namespace).await;
                    }
                };
                tokio::select! {
                    () = synced => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                tracing::info!(
                    namespaces = namespaces.len(),
                    "watches synced, reporting SERVING"
                );
                set_health(&health, ServingStatus::Serving).await;
                return;
            }
            Err(error) => {
                tracing::warn!(
                    error = %error::chain(&error),
                    attempt,
                    retry_in = ?backoff,
                    "Kubernetes API server not reachable yet"
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        backoff = (backoff * 2).min(READINESS_MAX_BACKOFF);
        attempt = attempt.saturating_add(1);
    }
}

/// The process signals that ask the server to stop.
struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).map_err(Error::Signal)?,
            interrupt: signal(SignalKind::interrupt()).map_err(Error::Signal)?,
        })
    }

    /// Waits for the next signal and returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
