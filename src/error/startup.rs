//! What keeps the server from starting, or stops it other than by a clean shutdown: the
//! configuration, the files it names, the listeners, the Kubernetes client, logging.
//!
//! None of these ever reaches a caller: `main` reports them to the operator with their cause
//! chain ([`super::chain`]).

use std::{io, net::SocketAddr, path::PathBuf};

/// Why the server could not start, or why it stopped other than by a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A kubeconfig file could not be read or parsed.
    #[error("reading kubeconfig {}", path.display())]
    KubeconfigRead {
        /// The file that failed.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: kube::config::KubeconfigError,
    },

    /// A client configuration could not be built from the kubeconfig (for
    /// instance the requested context does not exist).
    #[error("loading Kubernetes client configuration from kubeconfig")]
    KubeconfigLoad(#[source] kube::config::KubeconfigError),

    /// Neither an in-cluster configuration nor a kubeconfig was usable.
    #[error("inferring Kubernetes client configuration")]
    KubeConfigInfer(#[source] kube::config::InferConfigError),

    /// The Kubernetes client could not be built from its configuration.
    #[error("building the Kubernetes client")]
    KubeClient(#[source] kube::Error),

    /// The configuration is incomplete or contradictory.
    #[error("{0}")]
    Configuration(String),

    /// A TLS file could not be loaded.
    #[error("loading TLS file {}: {reason}", path.display())]
    TlsConfig {
        /// The file.
        path: PathBuf,
        /// Why it does not load.
        reason: String,
    },

    /// The audit log file could not be opened.
    #[error("opening the audit log {}", path.display())]
    AuditLog {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },

    /// The policy file is missing or invalid.
    #[error("loading the policy")]
    Policy(#[source] crate::policy::PolicyError),

    /// The token verification could not be set up (the JWKS does not load, say).
    #[error("setting up token verification")]
    AuthSetup(#[source] crate::auth::AuthError),

    /// The gRPC listener could not be bound.
    #[error("binding the gRPC listener to {addr}")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// What went wrong.
        #[source]
        source: io::Error,
    },

    /// The gRPC server failed while serving.
    #[error("serving gRPC")]
    Transport(#[source] tonic::transport::Error),

    /// The gRPC reflection service could not be built from the descriptor set.
    #[error("building the gRPC reflection service")]
    Reflection(#[source] tonic_reflection::server::Error),

    /// The process signal handlers could not be installed.
    #[error("installing signal handlers")]
    Signal(#[source] io::Error),

    /// A second shutdown signal arrived before the graceful shutdown finished.
    #[error("second shutdown signal received, stopped without draining")]
    ForcedShutdown,

    /// The log filter does not parse.
    #[error("invalid log filter {filter:?}")]
    LogFilter {
        /// The filter as given.
        filter: String,
        /// Why it does not parse.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },

    /// The tracing subscriber could not be installed.
    #[error("installing the tracing subscriber")]
    TelemetryInit(#[source] tracing_subscriber::util::TryInitError),
}

#[cfg(test)]
mod tests {
    use super::StartupError;
    use crate::error::chain;

    #[test]
    fn chain_includes_every_cause() {
        let error = StartupError::Bind {
            addr: "127.0.0.1:1".parse().expect("valid address"),
            source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use"),
        };
        assert_eq!(
            chain(&error),
            "binding the gRPC listener to 127.0.0.1:1: address in use"
        );
    }
}
