//! The crate's error type and the one place that decides which gRPC status
//! code each failure becomes.

use std::{io, net::SocketAddr, path::PathBuf};

/// Result with the crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can fail in k8s-deployer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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

    /// A call to the Kubernetes API server failed.
    #[error("Kubernetes API call failed")]
    KubeApi(#[source] kube::Error),

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

impl Error {
    /// The gRPC code a caller sees for this error.
    fn code(&self) -> tonic::Code {
        match self {
            Self::KubeApi(source) => kube_error_code(source),
            Self::KubeconfigRead { .. }
            | Self::KubeconfigLoad(_)
            | Self::KubeConfigInfer(_)
            | Self::KubeClient(_)
            | Self::Bind { .. }
            | Self::Transport(_)
            | Self::Reflection(_)
            | Self::Signal(_)
            | Self::ForcedShutdown
            | Self::LogFilter { .. }
            | Self::TelemetryInit(_) => tonic::Code::Internal,
        }
    }
}

/// Maps an error from the Kubernetes client to the gRPC code that tells the
/// caller what to do about it.
fn kube_error_code(error: &kube::Error) -> tonic::Code {
    use tonic::Code;
    match error {
        kube::Error::Api(status) => match status.code {
            400 | 422 => Code::InvalidArgument,
            // The deployer's own credentials were rejected: nothing the
            // caller can fix.
            401 => Code::Internal,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            409 => Code::AlreadyExists,
            429 => Code::ResourceExhausted,
            504 => Code::DeadlineExceeded,
            500..=599 => Code::Unavailable,
            _ => Code::Internal,
        },
        // The API server could not be reached or the connection broke.
        kube::Error::HyperError(_) | kube::Error::Service(_) => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// A fixed, caller-safe message per code: the API server's own text and the
/// error chain are logged, never sent to callers.
fn public_message(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::InvalidArgument => "the request was rejected by Kubernetes as invalid",
        Code::PermissionDenied => "the deployer is not allowed to perform this operation",
        Code::NotFound => "the requested object does not exist",
        Code::AlreadyExists => "the object already exists",
        Code::ResourceExhausted => "Kubernetes is throttling requests, retry later",
        Code::DeadlineExceeded => "Kubernetes did not answer in time",
        Code::Unavailable => "Kubernetes is unavailable, retry later",
        _ => "internal error",
    }
}

/// The full cause chain, `outer: inner: innermost`, for logs.
///
/// Some errors (kube's among them) already print their source; a cause whose
/// text is already there is not repeated.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let code = error.code();
        let cause = chain(&error);
        if code == tonic::Code::Internal {
            tracing::error!(error = %cause, "request failed");
        } else {
            tracing::warn!(error = %cause, code = ?code, "request failed");
        }
        tonic::Status::new(code, public_message(code))
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn api_error(code: u16, message: &str) -> Error {
        Error::KubeApi(kube::Error::Api(
            kube::core::Status::failure(message, "Reason")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn errors_map_to_grpc_codes() {
        let cases = [
            (api_error(400, "bad"), Code::InvalidArgument),
            (api_error(422, "invalid"), Code::InvalidArgument),
            (api_error(401, "who"), Code::Internal),
            (api_error(403, "forbidden"), Code::PermissionDenied),
            (api_error(404, "gone"), Code::NotFound),
            (api_error(409, "exists"), Code::AlreadyExists),
            (api_error(429, "slow down"), Code::ResourceExhausted),
            (api_error(500, "oops"), Code::Unavailable),
            (api_error(503, "down"), Code::Unavailable),
            (api_error(504, "late"), Code::DeadlineExceeded),
            (api_error(410, "expired"), Code::Internal),
            (
                Error::KubeApi(kube::Error::Service("connection refused".into())),
                Code::Unavailable,
            ),
            (
                Error::KubeApi(kube::Error::LinesCodecMaxLineLengthExceeded),
                Code::Internal,
            ),
            (Error::KubeClient(kube::Error::TlsRequired), Code::Internal),
            (
                Error::KubeconfigLoad(kube::config::KubeconfigError::CurrentContextNotSet),
                Code::Internal,
            ),
            (
                Error::Bind {
                    addr: "127.0.0.1:1".parse().expect("valid address"),
                    source: io::Error::from(io::ErrorKind::AddrInUse),
                },
                Code::Internal,
            ),
            (Error::ForcedShutdown, Code::Internal),
        ];
        for (error, code) in cases {
            let description = error.to_string();
            let status = tonic::Status::from(error);
            assert_eq!(status.code(), code, "{description}");
        }
    }

    #[test]
    fn api_server_text_is_not_sent_to_callers() {
        let secret = "pods \"db-0\" is forbidden: User \"system:serviceaccount:x:y\"";
        for code in [403, 404, 500, 410] {
            let status = tonic::Status::from(api_error(code, secret));
            assert!(
                !status.message().contains("forbidden"),
                "{code}: {status:?}"
            );
            assert!(!status.message().contains("serviceaccount"), "{code}");
            assert!(!status.message().is_empty(), "{code}");
        }
    }

    #[test]
    fn internal_errors_get_a_generic_message() {
        let status = tonic::Status::from(Error::Bind {
            addr: "127.0.0.1:50051".parse().expect("valid address"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        });
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn chain_includes_every_cause() {
        let error = Error::Bind {
            addr: "127.0.0.1:1".parse().expect("valid address"),
            source: io::Error::new(io::ErrorKind::AddrInUse, "address in use"),
        };
        assert_eq!(
            chain(&error),
            "binding the gRPC listener to 127.0.0.1:1: address in use"
        );
    }

    #[test]
    fn chain_does_not_repeat_causes_already_printed() {
        let error = Error::KubeApi(kube::Error::Service("connection refused".into()));
        assert_eq!(
            chain(&error),
            "Kubernetes API call failed: ServiceError: connection refused"
        );
    }
}
