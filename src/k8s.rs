//! The Kubernetes adapter: how the service gets its client and checks that
//! the API server answers.
//!
//! Nothing here knows about gRPC or protobuf types.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{Error, Result, StartupError};

pub mod convert;
pub mod deployments;
pub mod namespaces;
pub mod pods;
pub mod watch;

pub use deployments::ClusterDeployments;
pub use pods::ClusterPods;

/// The User-Agent of every request to the API server, so that operators find the service's
/// requests in audit logs and API Priority and Fairness.
pub const USER_AGENT: &str = concat!("k8s-deployer/", env!("CARGO_PKG_VERSION"));

/// Longest wait for any answer (or, in a watch, the next bytes) from the API server.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
pub use watch::ClusterFeed;

/// Where the client configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConfigSource {
    /// Kubeconfig files named explicitly, merged in order as kubectl does.
    Files {
        paths: Vec<PathBuf>,
        context: Option<String>,
    },
    /// The default kubeconfig (`~/.kube/config`) with a chosen context.
    DefaultFile { context: String },
    /// The pod's service account when running in a cluster, otherwise the
    /// default kubeconfig with its current context.
    Inferred,
}

impl ConfigSource {
    /// An explicit kubeconfig wins over everything, then an explicit context;
    /// only with neither is the in-cluster configuration tried.
    fn choose(kubeconfig: Option<&Path>, context: Option<&str>) -> Self {
        let paths: Vec<PathBuf> = kubeconfig
            .map(|list| {
                std::env::split_paths(list)
                    .filter(|path| !path.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let context = context.filter(|name| !name.is_empty()).map(str::to_owned);
        match (paths.is_empty(), context) {
            (false, context) => Self::Files { paths, context },
            (true, Some(context)) => Self::DefaultFile { context },
            (true, None) => Self::Inferred,
        }
    }
}

/// Builds the Kubernetes client.
///
/// `kubeconfig` is a path, or a list of paths joined like `PATH`, to
/// kubeconfig files; `context` selects a context other than the current one.
/// With neither, the in-cluster service account is used when the process runs
/// in a pod and `~/.kube/config` otherwise.
///
/// This only reads configuration; it does not contact the API server (see
/// [`apiserver_version`]).
///
/// # Errors
///
/// Fails when no configuration can be loaded or the client cannot be built
/// from it.
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, StartupError> {
    let config = match ConfigSource::choose(kubeconfig, context) {
        ConfigSource::Files { paths, context } => {
            let merged = merge_kubeconfigs(&paths)?;
            let options = KubeConfigOptions {
                context,
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(merged, &options)
                .await
                .map_err(StartupError::KubeconfigLoad)?
        }
        ConfigSource::DefaultFile { context } => {
            let options = KubeConfigOptions {
                context: Some(context),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(StartupError::KubeconfigLoad)?
        }
        ConfigSource::Inferred => match kube::Config::incluster() {
            Ok(config) => config,
            Err(in_cluster) => {
                tracing::debug!(
                    error = %in_cluster,
                    "not running in a cluster, falling back to the default kubeconfig"
                );
                kube::Config::infer()
                    .await
                    .map_err(StartupError::KubeConfigInfer)?
            }
        },
    };
    tracing::debug!(cluster_url = %config.cluster_url, "Kubernetes client configured");
    // No retries inside the client: kube would retry 429/503/504 up to 15 times with back-off
    // of up to 1000 s, far past any caller's deadline. Callers get RESOURCE_EXHAUSTED or
    // UNAVAILABLE at once and retry on their terms; the watches have their own back-off.
    let mut config = config;
    config.default_retry = false;
    // A request the API server accepted but never answers (seen while it restarts) would hang
    // for ever: bound every read, counted from when the request is sent. Watches are renewed
    // by the server well within it (see `k8s::watch`).
    config.read_timeout = Some(READ_TIMEOUT);
    config.reset_reader_on_write = true;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    // HTTP/1.1 only, one TLS connection per concurrent request (pooled and reused when idle):
    // kube 5 offers no HTTP/2. Its client builder wraps the TLS connector with `enable_http1()`
    // alone (so ALPN never offers h2) and builds its hyper and hyper-util clients with the
    // `http1` feature only; no `Config` field changes that. HTTP/2 would mean assembling our
    // own client stack from kube's parts (connector, timeouts, auth, base URI, headers,
    // tracing) and keeping it in step with kube's, which is not worth it here: what made many
    // connections (a namespace read per opened stream) now comes from `k8s::namespaces`.
    kube::Client::try_from(config).map_err(StartupError::KubeClient)
}

/// Reads and merges kubeconfig files; the first file to set a value wins.
fn merge_kubeconfigs(paths: &[PathBuf]) -> Result<Kubeconfig, StartupError> {
    paths
        .iter()
        .try_fold(Kubeconfig::default(), |merged, path| {
            let read_error = |source| StartupError::KubeconfigRead {
                path: path.clone(),
                source,
            };
            let next = Kubeconfig::read_from(path).map_err(read_error)?;
            merged.merge(next).map_err(read_error)
        })
}

/// Asks the API server for its version, which proves it is reachable and that
/// the credentials are accepted. Returns the version, e.g. `v1.35.0`.
///
/// # Errors
///
/// Fails when the API server cannot be reached or rejects the request.
pub async fn apiserver_version(client: &kube::Client) -> Result<String> {
    let info = client
        .apiserver_version()
        .await
        .map_err(|source| Error::KubeApi {
            action: "reading the API server version".to_owned(),
            source,
        })?;
    Ok(info.git_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str], context: Option<&str>) -> ConfigSource {
        ConfigSource::Files {
            paths: paths.iter().map(PathBuf::from).collect(),
            context: context.map(str::to_owned),
        }
    }

    #[test]
    fn config_source_precedence() {
        let cases = [
            (None, None, ConfigSource::Inferred),
            (Some(""), None, ConfigSource::Inferred),
            (None, Some(""), ConfigSource::Inferred),
            (
                None,
                Some("kind-dev"),
                ConfigSource::DefaultFile {
                    context: "kind-dev".to_owned(),
                },
            ),
            (Some("/k/a"), None, files(&["/k/a"], None)),
            (Some("/k/a"), Some("ctx"), files(&["/k/a"], Some("ctx"))),
            (Some("/k/a:/k/b"), None, files(&["/k/a", "/k/b"], None)),
            (Some(":/k/b:"), None, files(&["/k/b"], None)),
        ];
        for (kubeconfig, context, expected) in cases {
            assert_eq!(
                ConfigSource::choose(kubeconfig.map(Path::new), context),
                expected,
                "kubeconfig {kubeconfig:?}, context {context:?}"
            );
        }
    }

    #[tokio::test]
    async fn missing_kubeconfig_names_the_file() {
        let error = client(Some(Path::new("/nonexistent/kubeconfig")), None)
            .await
            .map(drop)
            .expect_err("a missing file cannot be loaded");
        assert!(
            matches!(&error, StartupError::KubeconfigRead { path, .. } if path == Path::new("/nonexistent/kubeconfig")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn unknown_context_is_rejected() {
        let dir = std::env::temp_dir().join(format!("k8s-deployer-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
             clusters:\n- name: a\n  cluster:\n    server: https://127.0.0.1:6443\n\
             contexts:\n- name: a\n  context:\n    cluster: a\n    user: a\n\
             users:\n- name: a\n  user:\n    token: t\n",
        )
        .expect("write kubeconfig");

        let ok = client(Some(&path), None).await.map(drop);
        let missing = client(Some(&path), Some("no-such-context")).await.map(drop);
        std::fs::remove_dir_all(&dir).expect("clean up");

        ok.expect("current context loads");
        assert!(
            matches!(missing, Err(StartupError::KubeconfigLoad(_))),
            "{missing:?}"
        );
    }
}
