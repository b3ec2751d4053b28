//! Test support: a real local Kubernetes control plane, started by `tests/cluster/cluster.sh`
//! (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback), and
//! helpers to wait for what it reports. Nothing here mocks the Kubernetes API: a test that
//! cannot start its cluster panics with the script's output, it never skips.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::await_condition;
use kube::{Client, Config};

/// How long a test waits for the cluster to reach a state. Generous: the tests assert what
/// happens, never how fast (speed belongs in benchmarks).
pub const WAIT: Duration = Duration::from_secs(120);

/// One local control plane, in its own folder and on its own loopback ports.
#[derive(Debug)]
pub struct TestCluster {
    /// The cluster's private folder (certificates, logs, pids, kubeconfig).
    pub dir: PathBuf,
    /// The admin kubeconfig (system:masters).
    pub kubeconfig: PathBuf,
    /// The folder of the cluster binaries (kubectl among them).
    pub bin: PathBuf,
}

/// The checkout the tests run in. Read at run time (cargo sets it for every test): several
/// checkouts share one target folder here, and cargo may reuse a test binary that another
/// checkout of the same sources built, with that checkout's path compiled in.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn cluster_script() -> PathBuf {
    repo_root().join("tests/cluster/cluster.sh")
}

impl TestCluster {
    /// The cluster shared by every test of this test binary, started on first use and torn
    /// down by the script's watchdog when this process exits.
    pub fn shared() -> &'static TestCluster {
        static SHARED: OnceLock<TestCluster> = OnceLock::new();
        SHARED.get_or_init(|| TestCluster::start("shared"))
    }

    /// Start a new cluster that belongs to this process. Panics with the script's output
    /// when the cluster cannot start.
    pub fn start(label: &str) -> TestCluster {
        let dir =
            std::env::temp_dir().join(format!("k8s-deployer-test-{}-{label}", std::process::id()));
        let output = Command::new(cluster_script())
            .arg("up")
            .arg("--dir")
            .arg(&dir)
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .output()
            .expect("cannot run tests/cluster/cluster.sh");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the local cluster did not start ({}):\n{}\n{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        let vars: BTreeMap<&str, &str> = stdout
            .lines()
            .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
            .collect();
        let var = |name: &str| {
            PathBuf::from(
                vars.get(name)
                    .unwrap_or_else(|| panic!("cluster.sh up printed no {name}:\n{stdout}")),
            )
        };
        TestCluster {
            kubeconfig: var("KUBECONFIG"),
            bin: var("K8S_DEPLOYER_CLUSTER_BIN"),
            dir,
        }
    }

    /// The admin client configuration of this cluster.
    pub async fn config(&self) -> Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read the kubeconfig");
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("load the kubeconfig")
    }

    /// A client with the admin credentials. One per test: a client belongs to the runtime
    /// it was made in, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> Client {
        Client::try_from(self.config().await).expect("build a client")
    }

    /// The admin kubeconfig with its user's credentials replaced by a bearer token.
    fn token_kubeconfig(&self, token: &str) -> Kubeconfig {
        let mut kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read the kubeconfig");
        for user in &mut kubeconfig.auth_infos {
            user.auth_info = Some(AuthInfo {
                token: Some(token.to_owned().into()),
                ..AuthInfo::default()
            });
        }
        kubeconfig
    }

    /// A client that authenticates with a bearer token instead of the admin certificate.
    pub async fn client_with_token(&self, token: &str) -> Client {
        let config = Config::from_custom_kubeconfig(
            self.token_kubeconfig(token),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("load the token kubeconfig");
        Client::try_from(config).expect("build a token client")
    }

    /// A kubeconfig file (in the cluster's folder) that authenticates with a bearer token.
    pub fn kubeconfig_with_token(&self, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{}.kubeconfig", unique("token")));
        // JSON is valid YAML, which is what kubeconfig files are.
        let text =
            serde_json::to_string(&self.token_kubeconfig(token)).expect("serialise the kubeconfig");
        std::fs::write(&path, text).expect("write the token kubeconfig");
        path
    }

    /// Run the cluster's own kubectl with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// The pids of the cluster's processes, by component, as the script recorded them.
    pub fn pids(&self) -> BTreeMap<String, u32> {
        read_dir_values(&self.dir.join("pids"))
    }

    /// The loopback ports the cluster's components listen on, by component.
    pub fn ports(&self) -> BTreeMap<String, u16> {
        let text = std::fs::read_to_string(self.dir.join("ports")).expect("read ports");
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, port)| (name.to_owned(), port.parse().expect("a port number")))
            .collect()
    }

    /// `cluster.sh restart` of one component, kept down for `down_seconds` first.
    pub fn restart(&self, component: &str, down_seconds: u32) -> std::process::Output {
        Command::new(cluster_script())
            .arg("restart")
            .arg(component)
            .arg("--dir")
            .arg(&self.dir)
            .arg("--down-seconds")
            .arg(down_seconds.to_string())
            .output()
            .expect("run cluster.sh restart")
    }

    /// `cluster.sh down` for this cluster.
    pub fn down(&self) -> std::process::Output {
        Command::new(cluster_script())
            .arg("down")
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .expect("run cluster.sh down")
    }
}

fn read_dir_values(dir: &Path) -> BTreeMap<String, u32> {
    std::fs::read_dir(dir)
        .expect("read the pids folder")
        .map(|entry| {
            let entry = entry.expect("a pid file");
            let pid = std::fs::read_to_string(entry.path()).expect("read a pid file");
            (
                entry.file_name().to_string_lossy().into_owned(),
                pid.trim().parse().expect("a pid"),
            )
        })
        .collect()
}

/// A name no other test uses, for namespaces and pods.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Create a namespace with the given labels and return its name.
pub async fn create_namespace(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> String {
    let name = unique(prefix);
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": labels }
    }))
    .expect("a namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the namespace");
    name
}

/// A deployer serving on the shared cluster (the shared test credentials), an admin client,
/// and a fresh namespace named after `prefix`.
pub async fn serving_deployer(prefix: &str) -> (RunningDeployer, Client, String) {
    let admin = TestCluster::shared().client().await;
    let namespace = create_namespace(&admin, prefix, &[]).await;
    let server = RunningDeployer::with(k8s_deployer::Config::default())
        .serving()
        .await;
    (server, admin, namespace)
}

/// Create `pod` in a new namespace of its own; return the namespace and its pods API.
pub async fn create_pod_in_new_namespace(
    client: &Client,
    prefix: &str,
    pod: &Pod,
) -> (String, Api<Pod>) {
    let ns = create_namespace(client, prefix, &[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), pod)
        .await
        .expect("create the pod");
    (ns, pods)
}

/// The pods of a namespace, as the admin sees them.
pub async fn pods_in(admin: &Client, namespace: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(admin.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
}

/// A pod with one container named `app` running `image`.
pub fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "app", "image": image }] }
    }))
    .expect("a pod")
}

/// Wait until `condition` holds for the pod; on time-out, panic with what the pod looks like.
pub async fn wait_for_pod(
    api: &Api<Pod>,
    name: &str,
    what: &str,
    condition: impl Fn(&Pod) -> bool,
) -> Pod {
    let waited = tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), name, |pod: Option<&Pod>| {
            pod.is_some_and(&condition)
        }),
    )
    .await;
    match waited {
        Ok(Ok(Some(pod))) => pod,
        Ok(other) => panic!("watching pod {name} for {what} failed: {other:?}"),
        Err(_) => {
            let now = api.get_opt(name).await;
            panic!(
                "pod {name} did not reach {what} within {WAIT:?}; it is now: {:#?}",
                now.map(|p| p.map(|p| p.status))
            )
        }
    }
}

/// Wait until the pod no longer exists.
pub async fn wait_for_pod_gone(api: &Api<Pod>, name: &str) {
    let gone = tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), name, |pod: Option<&Pod>| pod.is_none()),
    )
    .await;
    assert!(
        matches!(gone, Ok(Ok(None))),
        "pod {name} still exists after {WAIT:?}: {gone:?}"
    );
}

/// Wait until an Event about the named pod satisfies `condition`, and return it.
pub async fn wait_for_event(
    client: &Client,
    namespace: &str,
    pod: &str,
    what: &str,
    condition: impl Fn(&Event) -> bool,
) -> Event {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    eventually(&format!("an event {what} for pod {pod}"))
        .until(async || {
            let list = events.list(&params).await.expect("list events");
            match list.items.iter().find(|e| condition(e)) {
                Some(event) => Ok(event.clone()),
                None => Err(list
                    .items
                    .into_iter()
                    .map(|e| (e.type_, e.reason, e.message))
                    .collect::<Vec<_>>()),
            }
        })
        .await
}

/// The waiting reason of the pod's first container, if it is waiting.
pub fn waiting_reason(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .as_deref()
}

/// The status of the pod condition of this type ("True", "False", "Unknown").
pub fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// A k8s-deployer server running in this test process, against a cluster. The one way tests
/// start a server: [`RunningDeployer::with`] a configuration, then [`DeployerBuilder::start`]
/// (or [`DeployerBuilder::serving`], which also waits for SERVING).
pub struct RunningDeployer {
    /// Where it serves gRPC.
    pub addr: std::net::SocketAddr,
    /// The plain-text health port, if configured.
    pub health_addr: Option<std::net::SocketAddr>,
    /// The HTTP API, if configured.
    pub http_addr: Option<std::net::SocketAddr>,
    /// A plain-text channel to it (connected on first use when the server speaks TLS, so
    /// unusable then: such tests connect with their own TLS settings).
    pub channel: tonic::transport::Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: AbortOnDrop,
}

/// The server's task, aborted when the test lets go of it.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), k8s_deployer::StartupError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How to start a [`RunningDeployer`]: on 127.0.0.1:0, against the shared cluster, with the
/// shared [`TestAuth`] security settings unless the configuration has a policy of its own.
pub struct DeployerBuilder {
    config: k8s_deployer::Config,
    kubeconfig: Option<PathBuf>,
    listen: std::net::SocketAddr,
}

impl DeployerBuilder {
    /// Against another cluster, or as another identity (a kubeconfig with a token, or one
    /// pointing at a dead cluster). Without it: the configuration's kubeconfig, else the
    /// shared cluster's.
    pub fn kubeconfig(self, kubeconfig: &Path) -> DeployerBuilder {
        DeployerBuilder {
            kubeconfig: Some(kubeconfig.to_path_buf()),
            ..self
        }
    }

    /// Serve gRPC on this address rather than on a free loopback port.
    pub fn listen(self, listen: std::net::SocketAddr) -> DeployerBuilder {
        DeployerBuilder { listen, ..self }
    }

    /// Bind and run the server; does not wait for SERVING.
    pub async fn start(self) -> RunningDeployer {
        let kubeconfig = self
            .kubeconfig
            .or(self.config.kubeconfig.clone())
            .unwrap_or_else(|| TestCluster::shared().kubeconfig.clone());
        let config = with_test_security(k8s_deployer::Config {
            listen: self.listen,
            kubeconfig: Some(kubeconfig),
            ..self.config
        });
        let server = k8s_deployer::Server::bind(&config)
            .await
            .expect("bind the server");
        let (addr, health_addr, http_addr) = (
            server.local_addr(),
            server.health_addr(),
            server.http_addr(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let endpoint =
            tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("a uri");
        let channel = if config.plaintext {
            endpoint.connect().await.expect("connect to the server")
        } else {
            endpoint.connect_lazy()
        };
        RunningDeployer {
            addr,
            health_addr,
            http_addr,
            channel,
            stop: Some(stop),
            task: AbortOnDrop(task),
        }
    }

    /// Start the server and wait until its health is SERVING.
    pub async fn serving(self) -> RunningDeployer {
        let server = self.start().await;
        server.wait_serving().await;
        server
    }
}

impl RunningDeployer {
    /// A server with `config` (see [`DeployerBuilder`] for what is set for tests).
    pub fn with(config: k8s_deployer::Config) -> DeployerBuilder {
        DeployerBuilder {
            config,
            kubeconfig: None,
            listen: "127.0.0.1:0".parse().expect("an address"),
        }
    }

    /// Wait until health reports SERVING for the whole server.
    pub async fn wait_serving(&self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        // With a token, in case health is not open (--auth-all-services).
        let mut health = tonic_health::pb::health_client::HealthClient::with_interceptor(
            self.channel.clone(),
            Bearer::new(&TestAuth::shared().tester_token()),
        );
        eventually("the server to report SERVING")
            .until(async || {
                let status = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(|r| r.into_inner().status());
                match status {
                    Ok(ServingStatus::Serving) => Ok(()),
                    other => Err(other),
                }
            })
            .await;
    }

    /// A generated client of the deployer service, calling as [`TESTER`].
    pub fn client(&self) -> DeployerClient {
        tester_client(self.channel.clone())
    }

    /// A generated client of the deployer service, calling with `token`.
    pub fn client_with_token(&self, token: &str) -> DeployerClient {
        client_with_token(self.channel.clone(), token)
    }

    /// A generated client of the Deployment service, calling as [`TESTER`].
    pub fn deployments(&self) -> DeploymentsClient {
        deployments_client_with_token(self.channel.clone(), &TestAuth::shared().tester_token())
    }

    /// A generated client of the Deployment service, calling with `token`.
    pub fn deployments_with_token(&self, token: &str) -> DeploymentsClient {
        deployments_client_with_token(self.channel.clone(), token)
    }

    /// Begin the server's graceful shutdown, without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Begin the server's graceful shutdown (unless begun already), let go of this
    /// channel, and wait for the shutdown to end.
    pub async fn stop(mut self) -> Result<(), k8s_deployer::StartupError> {
        self.begin_stop();
        let RunningDeployer {
            channel, mut task, ..
        } = self;
        drop(channel);
        tokio::time::timeout(WAIT, &mut task.0)
            .await
            .expect("the server stops in time")
            .expect("the server task")
    }
}

/// Wait for something to happen: `eventually("the pod to be READY").until(async || ...)`
/// runs the check until it returns `Ok` (pausing [`Eventually::every`] between tries), for
/// up to [`WAIT`] or [`Eventually::within`]; then it panics, naming what was awaited and the
/// last `Err` the check returned. A check that hangs is cut off at the deadline too.
pub fn eventually(what: &str) -> Eventually {
    Eventually {
        what: what.to_owned(),
        within: WAIT,
        every: Duration::from_millis(200),
    }
}

/// A wait being set up; see [`eventually`].
pub struct Eventually {
    what: String,
    within: Duration,
    every: Duration,
}

impl Eventually {
    /// Wait this long rather than [`WAIT`].
    pub fn within(self, within: Duration) -> Eventually {
        Eventually { within, ..self }
    }

    /// Pause this long between tries (zero for a check that itself waits, such as reading
    /// the next message of a stream).
    pub fn every(self, every: Duration) -> Eventually {
        Eventually { every, ..self }
    }

    /// Run `check` until it returns `Ok`, and return what it returned.
    pub async fn until<T, E: std::fmt::Debug>(
        self,
        mut check: impl AsyncFnMut() -> Result<T, E>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + self.within;
        let mut last = None;
        while let Ok(result) = tokio::time::timeout_at(deadline, check()).await {
            match result {
                Ok(value) => return value,
                Err(state) => last = Some(state),
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(self.every).await;
        }
        match last {
            Some(state) => panic!(
                "waited {:?} for {}; the last try found: {state:#?}",
                self.within, self.what
            ),
            None => panic!(
                "waited {:?} for {}; the first try did not finish",
                self.within, self.what
            ),
        }
    }
}

/// Certificates for TLS tests: a CA, the server's certificate for localhost and 127.0.0.1,
/// and client certificates.
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&key).expect("a CA");
        Pki {
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) for the server.
    pub fn server(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    /// (certificate PEM, key PEM) for a client `common_name` in `organisations`.
    pub fn client(&self, common_name: &str, organisations: &[&str]) -> (String, String) {
        self.client_until(common_name, organisations, None)
    }

    /// As [`Pki::client`], valid until `not_after` when given.
    pub fn client_until(
        &self,
        common_name: &str,
        organisations: &[&str],
        not_after: Option<time::OffsetDateTime>,
    ) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        for organisation in organisations {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *organisation);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(not_after) = not_after {
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
            params.not_after = not_after;
        }
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

/// `config` with the shared [`TestAuth`] security settings, unless it has a policy of its own
/// (then it is taken to be complete).
pub fn with_test_security(config: k8s_deployer::Config) -> k8s_deployer::Config {
    if config.policy.is_some() {
        return config;
    }
    let secure = TestAuth::shared().config(None, None);
    k8s_deployer::Config {
        listen: config.listen,
        kubeconfig: config.kubeconfig,
        namespaces: config.namespaces,
        heartbeat_secs: config.heartbeat_secs,
        call_timeout_secs: config.call_timeout_secs,
        max_streams: config.max_streams,
        shutdown_timeout_secs: config.shutdown_timeout_secs,
        ..secure
    }
}

/// Create ServiceAccount `account` in `namespace`, bound by a namespaced Role to `verbs` on
/// pods there, and return a token for it minted with the TokenRequest API.
pub async fn service_account_token(
    admin: &Client,
    namespace: &str,
    account: &str,
    verbs: &[&str],
) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    let pp = PostParams::default();
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": { "name": account },
        "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": verbs }]
    }))
    .expect("a role");
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": { "name": account },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account },
        "subjects": [{ "kind": "ServiceAccount", "name": account, "namespace": namespace }]
    }))
    .expect("a role binding");
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": account } }))
            .expect("a service account");
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    accounts.create(&pp, &sa).await.expect("create the SA");
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&pp, &role)
        .await
        .expect("create the role");
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(&pp, &binding)
        .await
        .expect("create the binding");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let minted = accounts
        .create_token_request(account, &pp, &request)
        .await
        .expect("mint a token with the TokenRequest API");
    minted.status.expect("a token").token
}

/// Issuer and audience of the tokens the test servers accept.
pub const TEST_ISSUER: &str = "https://issuer.k8s-deployer.test";
/// Audience of the tokens the test servers accept.
pub const TEST_AUDIENCE: &str = "k8s-deployer";
/// The subject the default test policy allows everything, everywhere.
pub const TESTER: &str = "tester";

/// Test credentials: an ES256 signing key whose public half the test servers trust (as a
/// JWKS file), a policy that allows [`TESTER`] everything, and the tokens they sign.
pub struct TestAuth {
    /// Folder of the files below.
    pub dir: PathBuf,
    /// The JWKS the servers verify tokens against.
    pub jwks: PathBuf,
    /// A policy allowing TESTER every action in every namespace, every image, and every
    /// Secret, ConfigMap and ServiceAccount reference.
    pub policy: PathBuf,
    /// The key id of the signing key.
    pub kid: String,
    key_pem: String,
}

impl TestAuth {
    /// The credentials shared by the tests of this process.
    pub fn shared() -> &'static TestAuth {
        static AUTH: OnceLock<TestAuth> = OnceLock::new();
        AUTH.get_or_init(|| TestAuth::create(&unique("auth")))
    }

    /// New credentials in a folder of their own.
    pub fn create(label: &str) -> TestAuth {
        let dir = std::env::temp_dir().join(format!("k8s-deployer-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder for the test credentials");
        let kid = format!("{label}-key");
        let (key_pem, jwk) = es256_key(&kid);
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string()).expect("jwks");
        let policy = dir.join("policy.yaml");
        std::fs::write(
            &policy,
            format!(
                "rules:\n  - name: tester-everything\n    subjects: [{TESTER}]\n    \
                 namespaces: [\"*\"]\n    actions: [\"*\"]\n    \
                 references: {{secrets: [\"*\"], configMaps: [\"*\"], serviceAccounts: [\"*\"]}}\n"
            ),
        )
        .expect("policy");
        TestAuth {
            dir,
            jwks,
            policy,
            kid,
            key_pem,
        }
    }

    /// A token for `subject` in `groups`, valid for `ttl` from now.
    pub fn token(&self, subject: &str, groups: &[&str], ttl: Duration) -> String {
        let now = now_secs();
        self.sign(serde_json::json!({
            "iss": TEST_ISSUER,
            "aud": TEST_AUDIENCE,
            "sub": subject,
            "groups": groups,
            "iat": now,
            "exp": now + i64::try_from(ttl.as_secs()).expect("a short ttl"),
        }))
    }

    /// A token for [`TESTER`], valid for an hour.
    pub fn tester_token(&self) -> String {
        self.token(TESTER, &[], Duration::from_secs(3600))
    }

    /// Signs any claims with this key (ES256, with this key's kid).
    pub fn sign(&self, claims: serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key =
            jsonwebtoken::EncodingKey::from_ec_pem(self.key_pem.as_bytes()).expect("an EC key");
        jsonwebtoken::encode(&header, &claims, &key).expect("sign a token")
    }

    /// The configuration of a test server that trusts these credentials, in plain text, with
    /// `policy` (or the allow-TESTER-everything one), its audit records in `audit`.
    pub fn config(&self, policy: Option<&Path>, audit: Option<&Path>) -> k8s_deployer::Config {
        k8s_deployer::Config {
            plaintext: true,
            policy: Some(policy.unwrap_or(&self.policy).to_path_buf()),
            jwks_file: Some(self.jwks.clone()),
            jwt_issuer: Some(TEST_ISSUER.to_owned()),
            jwt_audiences: vec![TEST_AUDIENCE.to_owned()],
            audit_log: match audit {
                Some(path) => k8s_deployer::audit::AuditSink::File(path.to_path_buf()),
                None => k8s_deployer::audit::AuditSink::File(self.dir.join("audit.jsonl")),
            },
            ..k8s_deployer::Config::default()
        }
    }

    /// The same as command-line flags, for the binary.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--plaintext".into(),
            format!("--policy={}", self.policy.display()),
            format!("--jwks-file={}", self.jwks.display()),
            format!("--jwt-issuer={TEST_ISSUER}"),
            format!("--jwt-audience={TEST_AUDIENCE}"),
            format!("--audit-log={}", self.dir.join("audit.jsonl").display()),
        ]
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("a sane clock")
}

/// A new P-256 key: its PKCS#8 PEM, and its public JWK with `kid`.
pub fn es256_key(kid: &str) -> (String, serde_json::Value) {
    use base64::Engine as _;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
    // The uncompressed point: 0x04, then x and y, 32 bytes each.
    let point = key.public_key_raw();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    (key.serialize_pem(), jwk)
}

/// Sends a bearer token with every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// `Authorization: Bearer <token>`.
    pub fn new(token: &str) -> Bearer {
        Bearer(format!("Bearer {token}").parse().expect("an ASCII token"))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A deployer client that authenticates with a bearer token.
pub type DeployerClient =
    k8s_deployer::proto::deployer::v1::deployer_service_client::DeployerServiceClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
    >;

/// A client on `channel` calling as [`TESTER`].
pub fn tester_client(channel: tonic::transport::Channel) -> DeployerClient {
    client_with_token(channel, &TestAuth::shared().tester_token())
}

/// A client on `channel` calling with `token`.
pub fn client_with_token(channel: tonic::transport::Channel, token: &str) -> DeployerClient {
    k8s_deployer::proto::deployer::v1::deployer_service_client::DeployerServiceClient::with_interceptor(
        channel,
        Bearer::new(token),
    )
}

/// The generated client of the Deployment service, with a bearer token.
pub type DeploymentsClient =
    k8s_deployer::proto::deployer::v1::deployment_service_client::DeploymentServiceClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
    >;

/// A Deployment service client on `channel` calling with `token`.
pub fn deployments_client_with_token(
    channel: tonic::transport::Channel,
    token: &str,
) -> DeploymentsClient {
    k8s_deployer::proto::deployer::v1::deployment_service_client::DeploymentServiceClient::with_interceptor(
        channel,
        Bearer::new(token),
    )
}

impl TestCluster {
    /// `cluster.sh etcd-delete`: delete one key in etcd behind the apiserver's back. Panics
    /// with the script's output when the key is not there.
    pub fn etcd_delete(&self, key: &str) {
        self.etcd(&["etcd-delete", key]);
    }

    /// `cluster.sh etcd-compact`: compact etcd's history up to its current revision, so that
    /// a watch from before it can only be answered 410 Gone.
    pub fn etcd_compact(&self) {
        self.etcd(&["etcd-compact"]);
    }

    fn etcd(&self, args: &[&str]) {
        let output = Command::new(cluster_script())
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .expect("run cluster.sh");
        assert!(
            output.status.success(),
            "cluster.sh {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

// --- The API server's own count of the watches it serves ---------------------------------

/// The API server's metrics, fetched as the admin: GET /metrics.
pub async fn apiserver_metrics(admin: &Client) -> String {
    // kube builds a plain GET of a path through its request builder (a list with no
    // parameters), so the test needs no HTTP crate of its own.
    let request = kube::core::Request::new("/metrics")
        .list(&ListParams::default())
        .expect("a GET /metrics request");
    admin
        .request_text(request)
        .await
        .expect("the API server's /metrics")
}

/// The sum of a metric's samples whose labels include every `(name, value)` in `labels`.
/// Enough of the Prometheus text format for the API server's gauges: `name{k="v",...} value`.
pub fn metric_sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let prefix = format!("{metric}{{");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.rsplit_once("} "))
        .filter(|(sample_labels, _)| {
            let sample: Vec<(&str, &str)> = sample_labels
                .split("\",")
                .filter_map(|pair| pair.split_once("=\""))
                .map(|(key, value)| (key, value.trim_end_matches('"')))
                .collect();
            labels.iter().all(|wanted| sample.contains(wanted))
        })
        .map(|(_, value)| value.trim().parse::<f64>().expect("a sample value"))
        .sum()
}

/// How many watches scoped to a namespace the API server is serving, per resource (e.g.
/// "pods", "deployments"), read until the numbers hold still for three readings a second
/// apart (a watch being opened or renewed shows up a moment late). The cluster's own
/// components watch cluster-wide, so they are not in this count; a deployer's namespace
/// watches are.
pub async fn namespaced_watches(admin: &Client, resources: &[&str]) -> BTreeMap<String, u64> {
    let mut readings: Vec<BTreeMap<String, u64>> = Vec::new();
    eventually("the API server's count of namespaced watches to settle")
        .every(Duration::from_secs(1))
        .until(async || {
            let text = apiserver_metrics(admin).await;
            assert!(
                text.contains("apiserver_longrunning_requests{"),
                "the API server no longer reports apiserver_longrunning_requests"
            );
            let counts: BTreeMap<String, u64> = resources
                .iter()
                .map(|resource| {
                    let labels = [
                        ("resource", *resource),
                        ("scope", "namespace"),
                        ("verb", "WATCH"),
                    ];
                    let watches = metric_sum(&text, "apiserver_longrunning_requests", &labels);
                    // A gauge of open requests: a small whole number.
                    ((*resource).to_owned(), watches.round() as u64)
                })
                .collect();
            readings.push(counts);
            match &readings[..] {
                [.., a, b, c] if a == b && b == c => Ok(c.clone()),
                _ => Err(readings.clone()),
            }
        })
        .await
}

/// The next message of a gRPC stream named `label` that has delivered `received` so far.
/// Panics if none comes within [`WAIT`], if the stream fails, or if it ends.
pub async fn next_message<M: prost::Message + Default + 'static>(
    label: &str,
    stream: &mut tonic::Streaming<M>,
    received: u64,
) -> M {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap_or_else(|_| panic!("{label}: no message within {WAIT:?}"))
        .unwrap_or_else(|status| panic!("{label}: the stream failed: {status:?}"))
        .unwrap_or_else(|| panic!("{label}: the stream ended after {received} messages"))
}
