//! Command-line configuration.
//!
//! Every flag has a long name and an environment variable twin, so the
//! service can be configured either way; the flag wins when both are set.
//! Defaults let the service start with no configuration at all.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
};

use clap::Parser;

use crate::audit::AuditSink;
use crate::domain::spec::PodSecurityProfile;
use crate::telemetry::LogFormat;

/// Address the gRPC server listens on when none is configured.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50051));

/// Seconds that open calls get to finish after shutdown begins, when none is configured.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Heartbeat interval of idle WatchStatus streams, in seconds, when none is configured.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 15;

/// Most WatchStatus streams at once, when not configured.
pub const DEFAULT_MAX_STREAMS: usize = 10_000;

/// Seconds a call may wait for Kubernetes when the caller sets no deadline, when not
/// configured.
pub const DEFAULT_CALL_TIMEOUT_SECS: u64 = 10;

/// Clock-skew allowance, in seconds, for a token's `exp` and `nbf`, when not configured.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 30;

/// Claim holding a token's groups, when not configured.
pub const DEFAULT_JWT_GROUPS_CLAIM: &str = "groups";

/// Log filter used when none is configured.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Configuration of the k8s-deployer service.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "k8s-deployer", version, about, long_about = None)]
pub struct Config {
    /// Address and port the gRPC server listens on (use port 0 for any free port).
    #[arg(long, env = "DEPLOYER_LISTEN", default_value_t = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Plain-text address that serves only gRPC health (`grpc.health.v1`), for probes that
    /// cannot do TLS, such as the kubelet's native gRPC probes. Unset: none.
    #[arg(long, env = "DEPLOYER_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,

    /// Address of the prototype's HTTP API (`POST /deploy`, `GET /status/{ns}/{pod}`,
    /// `GET /watch/{ns}/{pod}` as Server-Sent Events, `GET /openapi.json`), with the same
    /// TLS, authentication, policy and audit as gRPC. Unset: not served.
    #[arg(long, env = "DEPLOYER_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,

    /// TLS certificate chain (PEM) of the gRPC server. Reloaded when the file changes.
    #[arg(
        long,
        env = "DEPLOYER_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) of the gRPC server. Reloaded when the file changes.
    #[arg(
        long,
        env = "DEPLOYER_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) for mutual TLS: a client certificate they sign authenticates its
    /// subject (common name as the subject, organisations as groups).
    #[arg(
        long,
        env = "DEPLOYER_TLS_CLIENT_CA",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve gRPC in plain text, without TLS. For local development only: bearer tokens then
    /// cross the network in the clear, and a warning is logged.
    #[arg(long, env = "DEPLOYER_PLAINTEXT", conflicts_with = "tls_cert")]
    pub plaintext: bool,

    /// Policy file (YAML): who may do what in which namespaces, and which images may run.
    /// Required: without rules every call would be denied.
    #[arg(long, env = "DEPLOYER_POLICY", value_name = "PATH")]
    pub policy: Option<PathBuf>,

    /// JWKS file with the keys that sign callers' tokens (RS256, ES256); read again when a
    /// token names an unknown key.
    #[arg(
        long,
        env = "DEPLOYER_JWKS_FILE",
        value_name = "PATH",
        conflicts_with = "jwks_url"
    )]
    pub jwks_file: Option<PathBuf>,

    /// JWKS URL (an OIDC provider's `jwks_uri`, or the API server's `/openid/v1/jwks` for
    /// ServiceAccount tokens); fetched again when a token names an unknown key.
    #[arg(long, env = "DEPLOYER_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,

    /// Extra CA certificates (PEM) to trust when fetching the JWKS URL.
    #[arg(
        long,
        env = "DEPLOYER_JWKS_CA_FILE",
        value_name = "PATH",
        requires = "jwks_url"
    )]
    pub jwks_ca_file: Option<PathBuf>,

    /// File with a bearer token to send when fetching the JWKS URL (read at every fetch, so a
    /// rotated projected token is picked up); the API server wants one.
    #[arg(
        long,
        env = "DEPLOYER_JWKS_TOKEN_FILE",
        value_name = "PATH",
        requires = "jwks_url"
    )]
    pub jwks_token_file: Option<PathBuf>,

    /// File holding the shared secret for HS256 tokens. HS256 is refused unless this is set.
    #[arg(long, env = "DEPLOYER_JWT_HS256_SECRET_FILE", value_name = "PATH")]
    pub jwt_hs256_secret_file: Option<PathBuf>,

    /// Required issuer (`iss`) of callers' tokens.
    #[arg(long, env = "DEPLOYER_JWT_ISSUER", value_name = "ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Accepted audiences (`aud`) of callers' tokens, comma-separated; a token must name one.
    #[arg(
        long = "jwt-audience",
        env = "DEPLOYER_JWT_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUD"
    )]
    pub jwt_audiences: Vec<String>,

    /// Clock-skew allowance, in seconds, for a token's expiry and not-before times (at most
    /// an hour: more would be no expiry check at all, and overflows jsonwebtoken's arithmetic).
    #[arg(long = "jwt-leeway", env = "DEPLOYER_JWT_LEEWAY", default_value_t = DEFAULT_JWT_LEEWAY_SECS, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub jwt_leeway_secs: u64,

    /// Claim holding a token's groups (a string or a list of strings).
    #[arg(long, env = "DEPLOYER_JWT_GROUPS_CLAIM", default_value = DEFAULT_JWT_GROUPS_CLAIM, value_name = "CLAIM")]
    pub jwt_groups_claim: String,

    /// Require authentication for gRPC health and reflection too (by default they are open,
    /// since probes and tools such as grpcurl's `list` send no credentials).
    #[arg(long, env = "DEPLOYER_AUTH_ALL_SERVICES")]
    pub auth_all_services: bool,

    /// Where audit records (one JSON line per call) go: stderr, stdout, or a file path.
    #[arg(long, env = "DEPLOYER_AUDIT_LOG", default_value_t = AuditSink::Stderr, value_name = "SINK")]
    pub audit_log: AuditSink,

    /// Least Pod Security profile of deployed pods: a request may ask for more, not less;
    /// the policy's namespace setting and the namespace's `pod-security.kubernetes.io/enforce`
    /// label may make it stricter.
    #[arg(long, env = "DEPLOYER_POD_SECURITY", default_value = "baseline", value_parser = parse_profile, value_name = "PROFILE")]
    pub pod_security: PodSecurityProfile,

    /// Kubeconfig file to use; several files may be given separated by ':' as
    /// with kubectl. When unset, the in-cluster service account is used if the
    /// process runs in a pod, otherwise ~/.kube/config.
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of the current context.
    #[arg(long, env = "DEPLOYER_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,

    /// Namespaces this deployer serves, comma-separated; their watches start with the server
    /// and health is SERVING only once they have synced. Requests for other namespaces are
    /// refused with PERMISSION_DENIED. Empty: every namespace, watched from first use.
    #[arg(
        long = "namespace",
        env = "DEPLOYER_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS"
    )]
    pub namespaces: Vec<String>,

    /// Seconds between heartbeats on an idle WatchStatus stream.
    #[arg(long = "heartbeat-interval", env = "DEPLOYER_HEARTBEAT_INTERVAL", default_value_t = DEFAULT_HEARTBEAT_SECS, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub heartbeat_secs: u64,

    /// Most WatchStatus streams served at once; more get RESOURCE_EXHAUSTED.
    #[arg(long = "max-streams", env = "DEPLOYER_MAX_STREAMS", default_value_t = DEFAULT_MAX_STREAMS, value_name = "N")]
    pub max_streams: usize,

    /// Seconds a call may wait for Kubernetes when the caller sets no shorter deadline: past
    /// it the call answers UNAVAILABLE. Deploy with wait_for gets its wait_timeout on top.
    #[arg(long = "call-timeout", env = "DEPLOYER_CALL_TIMEOUT", default_value_t = DEFAULT_CALL_TIMEOUT_SECS, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub call_timeout_secs: u64,

    /// Seconds that open calls and streams get to finish after SIGTERM, once health reports
    /// NOT_SERVING; connections still open then are closed.
    #[arg(
        long = "shutdown-timeout",
        env = "DEPLOYER_SHUTDOWN_TIMEOUT",
        default_value_t = DEFAULT_SHUTDOWN_TIMEOUT_SECS,
        value_name = "SECONDS"
    )]
    pub shutdown_timeout_secs: u64,

    /// Log filter in tracing's EnvFilter syntax, e.g. "info,k8s_deployer=debug".
    #[arg(
        long = "log",
        env = "DEPLOYER_LOG",
        default_value = DEFAULT_LOG_FILTER,
        value_name = "FILTER"
    )]
    pub log_filter: String,

    /// Log output format.
    #[arg(long, env = "DEPLOYER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

fn parse_profile(s: &str) -> Result<PodSecurityProfile, String> {
    PodSecurityProfile::parse(s).ok_or_else(|| {
        format!(
            "{s:?} is not a profile: expected baseline or restricted (privileged is not offered)"
        )
    })
}

impl Default for Config {
    /// The configuration the service runs with when given no flags and no
    /// environment variables.
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            health_listen: None,
            http_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            plaintext: false,
            policy: None,
            jwks_file: None,
            jwks_url: None,
            jwks_ca_file: None,
            jwks_token_file: None,
            jwt_hs256_secret_file: None,
            jwt_issuer: None,
            jwt_audiences: Vec::new(),
            jwt_leeway_secs: DEFAULT_JWT_LEEWAY_SECS,
            jwt_groups_claim: DEFAULT_JWT_GROUPS_CLAIM.to_owned(),
            auth_all_services: false,
            audit_log: AuditSink::Stderr,
            pod_security: PodSecurityProfile::Baseline,
            kubeconfig: None,
            context: None,
            namespaces: Vec::new(),
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
            max_streams: DEFAULT_MAX_STREAMS,
            call_timeout_secs: DEFAULT_CALL_TIMEOUT_SECS,
            shutdown_timeout_secs: DEFAULT_SHUTDOWN_TIMEOUT_SECS,
            log_filter: DEFAULT_LOG_FILTER.to_owned(),
            log_format: LogFormat::Plain,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    /// Parses `args` as the command line would, but ignoring the environment,
    /// so that the tests do not depend on the variables of whoever runs them.
    fn parse_without_env(args: &[&str]) -> Result<Config, clap::Error> {
        let command = Config::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command.try_get_matches_from(args)?;
        Config::from_arg_matches(&matches)
    }

    #[test]
    fn command_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn no_flags_give_the_default_config() {
        let config = parse_without_env(&["k8s-deployer"]).expect("no flags parse");
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(config.log_filter, "info");
        assert_eq!(config.log_format, LogFormat::Plain);
        assert_eq!(config.kubeconfig, None);
        assert_eq!(config.context, None);
    }

    #[test]
    fn flags_override_defaults() {
        let config = parse_without_env(&[
            "k8s-deployer",
            "--listen",
            "0.0.0.0:0",
            "--kubeconfig",
            "/tmp/kubeconfig",
            "--context",
            "kind-dev",
            "--log",
            "debug,hyper=info",
            "--log-format",
            "json",
        ])
        .expect("valid flags parse");
        assert_eq!(config.listen.to_string(), "0.0.0.0:0");
        assert_eq!(config.kubeconfig, Some(PathBuf::from("/tmp/kubeconfig")));
        assert_eq!(config.context.as_deref(), Some("kind-dev"));
        assert_eq!(config.log_filter, "debug,hyper=info");
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn security_flags_parse() {
        let config = parse_without_env(&[
            "k8s-deployer",
            "--tls-cert",
            "/tls/tls.crt",
            "--tls-key",
            "/tls/tls.key",
            "--tls-client-ca",
            "/tls/ca.crt",
            "--policy",
            "/etc/policy.yaml",
            "--jwks-url",
            "https://kubernetes.default.svc/openid/v1/jwks",
            "--jwt-issuer",
            "https://issuer",
            "--jwt-audience",
            "k8s-deployer,ci",
            "--auth-all-services",
            "--audit-log",
            "/var/log/audit.jsonl",
            "--pod-security",
            "restricted",
            "--health-listen",
            "0.0.0.0:8081",
        ])
        .expect("valid flags parse");
        assert_eq!(config.tls_cert, Some(PathBuf::from("/tls/tls.crt")));
        assert_eq!(config.tls_client_ca, Some(PathBuf::from("/tls/ca.crt")));
        assert_eq!(config.jwt_audiences, ["k8s-deployer", "ci"]);
        assert!(config.auth_all_services);
        assert!(!config.plaintext);
        assert_eq!(
            config.audit_log,
            AuditSink::File(PathBuf::from("/var/log/audit.jsonl"))
        );
        assert_eq!(config.pod_security, PodSecurityProfile::Restricted);
        assert_eq!(
            config.health_listen.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:8081")
        );
    }

    #[test]
    fn invalid_values_are_rejected() {
        let cases: &[&[&str]] = &[
            &["k8s-deployer", "--listen", "localhost"],
            &["k8s-deployer", "--listen", "127.0.0.1"],
            &["k8s-deployer", "--log-format", "yaml"],
            &["k8s-deployer", "--no-such-flag"],
            &["k8s-deployer", "--tls-cert", "/c"],
            &["k8s-deployer", "--tls-key", "/k"],
            &[
                "k8s-deployer",
                "--tls-cert",
                "/c",
                "--tls-key",
                "/k",
                "--plaintext",
            ],
            &[
                "k8s-deployer",
                "--jwks-file",
                "/j",
                "--jwks-url",
                "http://x",
            ],
            &["k8s-deployer", "--pod-security", "privileged"],
            &["k8s-deployer", "--audit-log", ""],
            &["k8s-deployer", "--heartbeat-interval", "100000000000"],
            &["k8s-deployer", "--call-timeout", "0"],
        ];
        for args in cases {
            assert!(
                parse_without_env(args).is_err(),
                "{args:?} should be rejected"
            );
        }
    }

    #[test]
    fn every_flag_has_an_environment_twin_and_help() {
        let expected = [
            ("listen", "DEPLOYER_LISTEN"),
            ("health_listen", "DEPLOYER_HEALTH_LISTEN"),
            ("http_listen", "DEPLOYER_HTTP_LISTEN"),
            ("tls_cert", "DEPLOYER_TLS_CERT"),
            ("tls_key", "DEPLOYER_TLS_KEY"),
            ("tls_client_ca", "DEPLOYER_TLS_CLIENT_CA"),
            ("plaintext", "DEPLOYER_PLAINTEXT"),
            ("policy", "DEPLOYER_POLICY"),
            ("jwks_file", "DEPLOYER_JWKS_FILE"),
            ("jwks_url", "DEPLOYER_JWKS_URL"),
            ("jwks_ca_file", "DEPLOYER_JWKS_CA_FILE"),
            ("jwks_token_file", "DEPLOYER_JWKS_TOKEN_FILE"),
            ("jwt_hs256_secret_file", "DEPLOYER_JWT_HS256_SECRET_FILE"),
            ("jwt_issuer", "DEPLOYER_JWT_ISSUER"),
            ("jwt_audiences", "DEPLOYER_JWT_AUDIENCE"),
            ("jwt_leeway_secs", "DEPLOYER_JWT_LEEWAY"),
            ("jwt_groups_claim", "DEPLOYER_JWT_GROUPS_CLAIM"),
            ("auth_all_services", "DEPLOYER_AUTH_ALL_SERVICES"),
            ("audit_log", "DEPLOYER_AUDIT_LOG"),
            ("pod_security", "DEPLOYER_POD_SECURITY"),
            ("kubeconfig", "KUBECONFIG"),
            ("context", "DEPLOYER_CONTEXT"),
            ("namespaces", "DEPLOYER_NAMESPACES"),
            ("heartbeat_secs", "DEPLOYER_HEARTBEAT_INTERVAL"),
            ("max_streams", "DEPLOYER_MAX_STREAMS"),
            ("call_timeout_secs", "DEPLOYER_CALL_TIMEOUT"),
            ("shutdown_timeout_secs", "DEPLOYER_SHUTDOWN_TIMEOUT"),
            ("log_filter", "DEPLOYER_LOG"),
            ("log_format", "DEPLOYER_LOG_FORMAT"),
        ];
        let command = Config::command();
        let args: Vec<_> = command
            .get_arguments()
            .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
            .collect();
        assert_eq!(
            args.len(),
            expected.len(),
            "a flag is missing from this table"
        );
        for (id, env) in expected {
            let arg = args
                .iter()
                .find(|arg| arg.get_id() == id)
                .unwrap_or_else(|| panic!("no flag {id}"));
            assert!(arg.get_long().is_some(), "{id} has no long name");
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env), "{id}");
            assert!(arg.get_help().is_some(), "{id} has no doc comment");
        }
    }
}
