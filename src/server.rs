//! Bootstrap and shutdown of the gRPC server.
//!
//! [`Server::bind`] builds the Kubernetes client and binds the listener;
//! [`Server::run`] serves gRPC health and reflection until a shutdown future
//! completes. Health reports NOT_SERVING until the Kubernetes API server has
//! answered once, and again from the moment shutdown begins.

pub mod tls;

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::{ServingStatus, server::HealthReporter};
use tonic_reflection::server::{v1, v1alpha};
use tracing::Instrument as _;

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::auth::layer::{AuthLayer, Authenticator};
use crate::auth::{JwksSource, JwtSettings, JwtVerifier};
use crate::grpc::deployments::DeploymentService;
use crate::grpc::rollout::RolloutStreams;
use crate::grpc::{DeployerService, ServiceSettings};
use crate::hub::StatusHub;
use crate::hub::rollout::RolloutHub;
use crate::k8s::{ClusterDeployments, ClusterFeed, ClusterPods};
use crate::policy::Policy;
use crate::proto::deployer::v1::deployer_service_server::DeployerServiceServer;
use crate::proto::deployer::v1::deployment_service_server::DeploymentServiceServer;
use crate::server::tls::{TlsFiles, TlsSource};
use crate::{Config, Result, StartupError, error, k8s, proto};

/// First delay between two attempts to reach the API server.
const READINESS_INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest delay between two attempts to reach the API server.
const READINESS_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Once serving, how often the API server is asked for its version, to tell whether it answers.
const APISERVER_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long one of those probes may take.
const APISERVER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the API server may go unanswering before `deployer.v1.DeployerService` health
/// says NOT_SERVING.
pub const APISERVER_UNREACHABLE_AFTER: Duration = Duration::from_secs(5);

/// Health service names reported by the server: the whole server ("") and the
/// deployer and Deployment services.
const HEALTH_SERVICES: [&str; 3] = ["", proto::DEPLOYER_SERVICE, proto::DEPLOYMENT_SERVICE];

/// How long a forced stop (a second signal) waits for the audit writer to take what is queued.
const FORCED_AUDIT_FLUSH: Duration = Duration::from_secs(1);
/// How often an idle HTTP/2 connection is pinged.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// An unknown key id makes the JWKS be fetched again, at most this often.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);

/// A bound, not yet serving, k8s-deployer server.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    health_listener: Option<TcpListener>,
    /// The HTTP API's listener and the address it is bound to.
    http_listener: Option<(TcpListener, SocketAddr)>,
    tls: Option<Arc<TlsSource>>,
    auth: Arc<Authenticator>,
    policy: Arc<Policy>,
    audit: Arc<AuditLog>,
    client: kube::Client,
    shutdown_timeout: Duration,
    settings: ServiceSettings,
}

/// The TLS files of the configuration: none only when plain text is asked for.
fn tls_files(config: &Config) -> Result<Option<TlsFiles>, StartupError> {
    match (&config.tls_cert, &config.tls_key, config.plaintext) {
        (Some(cert), Some(key), false) => Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.tls_client_ca.clone(),
        })),
        (None, None, true) => {
            tracing::warn!(
                "serving gRPC in PLAIN TEXT (--plaintext): bearer tokens cross the network \
                 unencrypted; use this for local development only"
            );
            Ok(None)
        }
        (_, _, true) => Err(StartupError::Configuration(
            "--plaintext cannot be combined with --tls-cert and --tls-key".to_owned(),
        )),
        _ => Err(StartupError::Configuration(
            "TLS is required: give --tls-cert and --tls-key (or --plaintext, for local \
             development only)"
                .to_owned(),
        )),
    }
}

/// Whether a bearer token may be sent to the JWKS `url`: over https, or plain http to a
/// loopback address only.
fn jwks_url_is_safe_for_a_token(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Token verification, when the configuration accepts bearer tokens.
async fn jwt_verifier(config: &Config) -> Result<Option<JwtVerifier>, StartupError> {
    let jwks = match (&config.jwks_file, &config.jwks_url) {
        (Some(path), None) => Some(JwksSource::File(path.clone())),
        (None, Some(url)) => {
            if config.jwks_token_file.is_some() && !jwks_url_is_safe_for_a_token(url) {
                return Err(StartupError::Configuration(format!(
                    "--jwks-token-file would send the token in plain text to {url}: use https \
                     (plain http only to a loopback address)"
                )));
            }
            Some(JwksSource::Url {
                url: url.clone(),
                ca_file: config.jwks_ca_file.clone(),
                token_file: config.jwks_token_file.clone(),
            })
        }
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(StartupError::Configuration(
                "give one of --jwks-file and --jwks-url, not both".to_owned(),
            ));
        }
    };
    let hs256_secret = match &config.jwt_hs256_secret_file {
        Some(path) => {
            let secret = std::fs::read(path).map_err(|source| {
                StartupError::Configuration(format!(
                    "reading the HS256 secret file {}: {source}",
                    path.display()
                ))
            })?;
            // A trailing newline is an accident of how the file was written, not key material.
            let secret = secret.trim_ascii_end().to_vec();
            if secret.len() < 32 {
                return Err(StartupError::Configuration(format!(
                    "the HS256 secret in {} must be at least 32 bytes",
                    path.display()
                )));
            }
            Some(secret)
        }
        None => None,
    };
    if jwks.is_none() && hs256_secret.is_none() {
        return Ok(None);
    }
    let Some(issuer) = config.jwt_issuer.clone() else {
        return Err(StartupError::Configuration(
            "--jwt-issuer is required to accept bearer tokens".to_owned(),
        ));
    };
    if config.jwt_audiences.is_empty() {
        return Err(StartupError::Configuration(
            "--jwt-audience is required to accept bearer tokens".to_owned(),
        ));
    }
    let mut settings = JwtSettings::new(issuer, config.jwt_audiences.clone());
    settings.jwks = jwks;
    settings.hs256_secret = hs256_secret;
    settings.leeway = Duration::from_secs(config.jwt_leeway_secs);
    settings.groups_claim.clone_from(&config.jwt_groups_claim);
    settings.min_refresh_interval = JWKS_MIN_REFRESH;
    JwtVerifier::new(settings)
        .await
        .map(Some)
        .map_err(StartupError::AuthSetup)
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
    pub async fn bind(config: &Config) -> Result<Self, StartupError> {
        let tls = tls_files(config)?
            .map(TlsSource::load)
            .transpose()?
            .map(Arc::new);
        let Some(policy_path) = &config.policy else {
            return Err(StartupError::Configuration(
                "--policy is required: without a policy every call would be denied".to_owned(),
            ));
        };
        let policy = Arc::new(Policy::load(policy_path).map_err(StartupError::Policy)?);
        if policy.rule_count() == 0 {
            tracing::warn!(policy = %policy_path.display(), "the policy has no rules: every call will be denied");
        }
        let audit = Arc::new(AuditLog::open(config.audit_log.clone())?);
        let jwt = jwt_verifier(config).await?;
        let client_certificates = config.tls_client_ca.is_some();
        if jwt.is_none() && !client_certificates {
            return Err(StartupError::Configuration(
                "no way to authenticate callers: give --jwks-file, --jwks-url or \
                 --jwt-hs256-secret-file for bearer tokens, or --tls-client-ca for client \
                 certificates"
                    .to_owned(),
            ));
        }
        let auth = Arc::new(Authenticator::new(
            jwt,
            client_certificates,
            config.auth_all_services,
            Arc::clone(&audit),
        ));

        let client = k8s::client(config.kubeconfig.as_deref(), config.context.as_deref()).await?;
        let (listener, local_addr) = bind(config.listen).await?;
        let health_listener = match config.health_listen {
            Some(addr) => Some(bind(addr).await?.0),
            None => None,
        };
        let http_listener = match config.http_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self {
            listener,
            local_addr,
            health_listener,
            http_listener,
            tls,
            auth,
            policy,
            audit,
            client,
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout_secs),
            settings: ServiceSettings {
                namespaces: config.namespaces.iter().cloned().collect(),
                heartbeat: Duration::from_secs(config.heartbeat_secs),
                max_streams: config.max_streams,
                pod_security: config.pod_security,
                call_timeout: Duration::from_secs(config.call_timeout_secs),
            },
        })
    }

    /// The address of the HTTP API, when one is configured.
    #[must_use]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// The address of the plain-text health port, when one is configured.
    #[must_use]
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
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
    pub async fn run<F>(self, shutdown: F) -> Result<(), StartupError>
    where
        F: Future<Output = ()> + Send,
    {
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::NotServing).await;
        let (reflection_v1, reflection_v1alpha) = reflection_services()?;

        let feed = Arc::new(ClusterFeed::new(self.client.clone()));
        let hub = StatusHub::new(feed.clone());
        // Its pods and Events come from the status hub's watches; its own Deployment and
        // ReplicaSet watches start with a namespace's first rollout subscriber.
        let rollout_hub = RolloutHub::new(feed, hub.clone());
        // Turned true when shutdown begins: every open stream ends with a final message.
        let (streams_stop, streams_stop_rx) = watch::channel(false);
        let deployer = DeployerService::new(
            ClusterPods::new(self.client.clone()),
            hub.clone(),
            self.policy,
            Arc::clone(&self.audit),
            self.settings.clone(),
            streams_stop_rx,
        );
        let rollouts = RolloutStreams::new(deployer.clone(), rollout_hub);

        let deployments = DeploymentService::new(
            deployer.clone(),
            ClusterDeployments::new(self.client.clone()),
            rollouts.clone(),
        );

        let (readiness_stop, readiness_stop_rx) = watch::channel(false);
        let served: Vec<String> = self.settings.namespaces.iter().cloned().collect();
        let readiness =
            spawn_readiness(self.client, hub, served, health.clone(), readiness_stop_rx);
        let tls_reload = self.tls.as_ref().map(tls::TlsSource::spawn_reload);
        let health_port = self
            .health_listener
            .map(|listener| SidePort::health(listener, health_service.clone()));
        let http_api = self.http_listener.map(|(listener, local)| {
            SidePort::http(
                listener,
                local,
                deployer.clone(),
                Arc::clone(&self.auth),
                self.tls.clone(),
            )
        });
        let running = Running {
            health,
            readiness_stop,
            readiness,
            streams_stop,
            tls_reload,
            http_api,
            health_port,
            deployer: deployer.clone(),
            rollouts: rollouts.clone(),
            audit: self.audit,
            shutdown_timeout: self.shutdown_timeout,
        };

        let (drain, drain_rx) = oneshot::channel::<()>();
        let mut serve: Serving = Box::pin(
            tonic::transport::Server::builder()
                // Pings find dead peers, whose streams would otherwise hold a slot for ever.
                .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
                .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
                .layer(AuthLayer::new(self.auth))
                .layer(crate::grpc::limits::MessageLimitLayer)
                .add_service(health_service)
                .add_service(DeployerServiceServer::new(deployer))
                .add_service(DeploymentServiceServer::new(deployments))
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .serve_with_incoming_shutdown(tls::incoming(self.listener, self.tls), async move {
                    // A dropped sender also means: stop.
                    let _ = drain_rx.await;
                }),
        );
        tokio::select! {
            served = &mut serve => {
                // The server failed on its own: nothing is left to drain there, only the rest
                // to stop.
                running.shutdown(None).await?;
                served.map_err(StartupError::Transport)
            }
            () = shutdown => running.shutdown(Some(MainPort { drain, serve })).await,
        }
    }

    /// Runs the server until SIGTERM or SIGINT (ctrl-c), then shuts down
    /// gracefully as [`Server::run`] does. A second signal during the
    /// graceful shutdown stops at once and returns [`StartupError::ForcedShutdown`].
    ///
    /// # Errors
    ///
    /// Fails when the signal handlers cannot be installed, when the server
    /// fails, or on a second signal.
    pub async fn run_until_signalled(self) -> Result<(), StartupError> {
        let mut signals = ShutdownSignals::install()?;
        let (first_tx, first_rx) = oneshot::channel::<()>();
        let watch_signals = async move {
            let name = signals.recv().await;
            tracing::info!(signal = name, "shutdown requested");
            let _ = first_tx.send(());
            let name = signals.recv().await;
            tracing::warn!(signal = name, "second signal: stopping without draining");
        };
        let audit = Arc::clone(&self.audit);
        tokio::select! {
            result = self.run(async move { let _ = first_rx.await; }) => result,
            () = watch_signals => {
                // Even a forced stop writes the audit records already queued, briefly bounded:
                // they record calls that were answered.
                if tokio::time::timeout(FORCED_AUDIT_FLUSH, audit.close()).await.is_err() {
                    tracing::warn!("the audit sink did not take the last records in time");
                }
                Err(StartupError::ForcedShutdown)
            }
        }
    }
}

/// Binds a listener to `addr`, and tells the address it got.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartupError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?;
    Ok((listener, local))
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// The gRPC reflection services, `v1` and `v1alpha`, over our descriptors and health's.
fn reflection_services() -> Result<
    (
        v1::ServerReflectionServer<impl v1::ServerReflection>,
        v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
    ),
    StartupError,
> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(StartupError::Reflection)?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(StartupError::Reflection)?;
    Ok((v1, v1alpha))
}

/// A port served beside the gRPC one (the plain-text health port, the HTTP API): its task
/// and how to ask it to stop.
struct SidePort {
    drain: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl SidePort {
    /// The plain-text health port: health only, for probes that cannot do TLS.
    fn health(listener: TcpListener, health_service: HealthServer<impl Health>) -> Self {
        let (drain, drained) = oneshot::channel::<()>();
        let serve = tonic::transport::Server::builder()
            .add_service(health_service)
            .serve_with_incoming_shutdown(tls::incoming(listener, None), async move {
                let _ = drained.await;
            });
        let task = tokio::spawn(
            async move {
                if let Err(error) = serve.await {
                    tracing::error!(error = %error::chain(&error), "the health port failed");
                }
            }
            .instrument(tracing::info_span!("health_port")),
        );
        Self { drain, task }
    }

    /// The prototype's HTTP API, over the same service, with the same TLS and callers.
    fn http(
        listener: TcpListener,
        local: SocketAddr,
        deployer: DeployerService,
        auth: Arc<Authenticator>,
        tls: Option<Arc<TlsSource>>,
    ) -> Self {
        let router = crate::http::router(deployer, auth);
        let incoming = tls::incoming(listener, tls);
        let (drain, drained) = oneshot::channel::<()>();
        let task = tokio::spawn(
            async move {
                let drained = async move {
                    let _ = drained.await;
                };
                if let Err(error) = crate::http::serve(incoming, local, router, drained).await {
                    tracing::error!(%error, "the HTTP API failed");
                }
            }
            .instrument(tracing::info_span!("http_api")),
        );
        Self { drain, task }
    }

    /// Asks the port to stop and waits up to `grace` for its open calls; past that, they are
    /// cut.
    async fn stop(self, grace: Duration) {
        let _ = self.drain.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            abort.abort();
        }
    }
}

/// The future that serves the gRPC port.
type Serving = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// The gRPC port while it serves: how to ask it to drain, and the future that serves it.
struct MainPort {
    drain: oneshot::Sender<()>,
    serve: Serving,
}

/// Everything `run` started that shutdown has to stop, in one place.
struct Running {
    health: HealthReporter,
    readiness_stop: watch::Sender<bool>,
    readiness: JoinHandle<()>,
    streams_stop: watch::Sender<bool>,
    tls_reload: Option<JoinHandle<()>>,
    http_api: Option<SidePort>,
    health_port: Option<SidePort>,
    deployer: DeployerService,
    rollouts: RolloutStreams,
    audit: Arc<AuditLog>,
    shutdown_timeout: Duration,
}

impl Running {
    /// The one shutdown path, for a requested stop (`main` is the gRPC port to drain) and
    /// for a gRPC server that failed on its own (`main` is `None`).
    async fn shutdown(self, main: Option<MainPort>) -> Result<(), StartupError> {
        tracing::info!("shutting down: reporting NOT_SERVING, then draining connections");
        // The readiness task must be gone before NOT_SERVING is set, or it could still flip
        // health back to SERVING.
        let _ = self.readiness_stop.send(true);
        stop_readiness(self.readiness).await;
        set_health(&self.health, ServingStatus::NotServing).await;
        // Every open stream ends with a final message.
        self.streams_stop.send_replace(true);

        let mut result = Ok(());
        if let Some(MainPort { drain, serve }) = main {
            let _ = drain.send(());
            // Long-lived streams (a health Watch, say) would hold the drain open for ever:
            // past the timeout, dropping the server future closes whatever connections remain.
            match tokio::time::timeout(self.shutdown_timeout, serve).await {
                Ok(served) => result = served.map_err(StartupError::Transport),
                Err(_) => tracing::warn!(
                    timeout = ?self.shutdown_timeout,
                    "open calls did not finish in time: closing their connections"
                ),
            }
        }
        if let Some(http_api) = self.http_api {
            // Open SSE watches have ended with the streams; a caller still holding one past
            // the timeout is cut.
            http_api.stop(self.shutdown_timeout).await;
        }
        if let Some(health_port) = self.health_port {
            // Health calls are short; a health Watch stream would hold it open: cut it.
            health_port.stop(Duration::from_secs(1)).await;
        }
        // Every stream has ended or been cut with its connection: its task, the hubs' actors
        // and their watches stop now, the rollout hub first since it follows the status hub.
        self.rollouts.shutdown().await;
        self.deployer.shutdown().await;
        if let Some(tls_reload) = self.tls_reload {
            tls_reload.abort();
        }
        // Last, once no call is left to record one: every audit record queued is written.
        if tokio::time::timeout(self.shutdown_timeout, self.audit.close())
            .await
            .is_err()
        {
            tracing::warn!("the audit sink did not take the last records in time");
        }
        tracing::info!("server stopped");
        result
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
                follow_apiserver(&client, &health, &mut stop).await;
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

/// Once serving: reports `deployer.v1.DeployerService` NOT_SERVING while the API server has not
/// answered for [`APISERVER_UNREACHABLE_AFTER`], and SERVING again once it answers, until
/// `stop`. The whole server ("") stays SERVING: every replica shares the API server, so
/// failing readiness everywhere would only turn the calls' informative UNAVAILABLE answers
/// into connection errors, and a restart would not bring the API server back.
async fn follow_apiserver(
    client: &kube::Client,
    health: &HealthReporter,
    stop: &mut watch::Receiver<bool>,
) {
    let mut last_answer = tokio::time::Instant::now();
    let mut reachable = true;
    let mut tick = tokio::time::interval(APISERVER_PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let probe = async {
            tick.tick().await;
            tokio::time::timeout(APISERVER_PROBE_TIMEOUT, k8s::apiserver_version(client)).await
        };
        let answered = tokio::select! {
            probe = probe => match probe {
                Ok(Ok(_)) => true,
                // An HTTP answer, even an error, is an API server that answers.
                Ok(Err(crate::Error::KubeApi { source: kube::Error::Api(_), .. })) => true,
                Ok(Err(_)) | Err(_) => false,
            },
            _ = stop.wait_for(|stop| *stop) => return,
        };
        if answered {
            last_answer = tokio::time::Instant::now();
        }
        let now_reachable = answered || last_answer.elapsed() < APISERVER_UNREACHABLE_AFTER;
        if now_reachable == reachable {
            continue;
        }
        reachable = now_reachable;
        let status = if reachable {
            tracing::info!("the Kubernetes API server answers again: DeployerService SERVING");
            ServingStatus::Serving
        } else {
            tracing::warn!(
                unanswered_for = ?last_answer.elapsed(),
                "the Kubernetes API server does not answer: DeployerService NOT_SERVING"
            );
            ServingStatus::NotServing
        };
        for service in [proto::DEPLOYER_SERVICE, proto::DEPLOYMENT_SERVICE] {
            health.set_service_status(service, status).await;
        }
    }
}

/// The process signals that ask the server to stop.
struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self, StartupError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).map_err(StartupError::Signal)?,
            interrupt: signal(SignalKind::interrupt()).map_err(StartupError::Signal)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_goes_only_over_https_or_to_loopback() {
        for (url, safe) in [
            ("https://kubernetes.default.svc/openid/v1/jwks", true),
            ("http://127.0.0.1:8080/jwks", true),
            ("http://localhost/jwks", true),
            ("http://[::1]:80/jwks", true),
            ("http://issuer.example/jwks", false),
            ("http://10.0.0.1/jwks", false),
            ("http://127.0.0.1.evil.example/jwks", false),
            ("ftp://127.0.0.1/jwks", false),
        ] {
            assert_eq!(jwks_url_is_safe_for_a_token(url), safe, "{url}");
        }
    }
}
