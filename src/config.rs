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

/// Log filter used when none is configured.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Configuration of the k8s-deployer service.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "k8s-deployer", version, about, long_about = None)]
pub struct Config {
    /// Address and port the gRPC server listens on (use port 0 for any free port).
    #[arg(long, env = "DEPLOYER_LISTEN", default_value_t = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,

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
          value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_secs: u64,

    /// Most WatchStatus streams served at once; more get RESOURCE_EXHAUSTED.
    #[arg(long = "max-streams", env = "DEPLOYER_MAX_STREAMS", default_value_t = DEFAULT_MAX_STREAMS, value_name = "N")]
    pub max_streams: usize,

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

impl Default for Config {
    /// The configuration the service runs with when given no flags and no
    /// environment variables.
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            kubeconfig: None,
            context: None,
            namespaces: Vec::new(),
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
            max_streams: DEFAULT_MAX_STREAMS,
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
    fn invalid_values_are_rejected() {
        let cases: &[&[&str]] = &[
            &["k8s-deployer", "--listen", "localhost"],
            &["k8s-deployer", "--listen", "127.0.0.1"],
            &["k8s-deployer", "--log-format", "yaml"],
            &["k8s-deployer", "--no-such-flag"],
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
            ("kubeconfig", "KUBECONFIG"),
            ("context", "DEPLOYER_CONTEXT"),
            ("namespaces", "DEPLOYER_NAMESPACES"),
            ("heartbeat_secs", "DEPLOYER_HEARTBEAT_INTERVAL"),
            ("max_streams", "DEPLOYER_MAX_STREAMS"),
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
