//! The crate's error type and the one place that decides which gRPC status
//! code each failure becomes.

use std::{io, net::SocketAddr, path::PathBuf, time::Duration};

use crate::domain::Violations;

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

    /// A call to the Kubernetes API server failed while doing `action` (our words, safe to
    /// show a caller, e.g. `creating pod "web" in namespace "team-a"`).
    #[error("{action}")]
    KubeApi {
        /// What the service was doing.
        action: String,
        /// The client's error, with the API server's text (logged, never sent).
        #[source]
        source: kube::Error,
    },

    /// The request is malformed; every violation is listed.
    #[error("{0}")]
    InvalidRequest(Violations),

    /// The namespace does not exist.
    #[error("namespace {0:?} not found")]
    NamespaceNotFound(String),

    /// The pod does not exist (or is not managed by this service, for reads).
    #[error("pod {namespace}/{name} not found")]
    PodNotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },

    /// A pod of that name exists and was not created by this request.
    #[error("pod {namespace}/{name} already exists")]
    NameTaken {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },

    /// The pod exists but was not created by this service; it is left alone.
    #[error("pod {namespace}/{name} is not managed by k8s-deployer")]
    NotManaged {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },

    /// The API server refused the pod as too large (HTTP 413, or etcd's "request is too
    /// large" / "trying to send message larger than max" as a 500): a retry cannot succeed.
    #[error(
        "pod {namespace}/{name} is too large for Kubernetes: make env, annotations, command or args smaller"
    )]
    PodTooLarge {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },

    /// The request_id was already used by a request that asked for something else.
    #[error("request_id: {0:?} was already used for a different request")]
    RequestIdReused(String),

    /// While Deploy waited, the pod failed.
    #[error("pod {namespace}/{name} failed: {reason}: {message}")]
    PodFailed {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The machine-readable reason, as in the proto (e.g. IMAGE_PULL_FAILED).
        reason: String,
        /// The pod's message.
        message: String,
    },

    /// Deploy's wait ran out before the pod got where it was asked to.
    #[error("pod {pod} did not become {wanted} within {waited:?}: it is {state}")]
    WaitTimedOut {
        /// namespace/name.
        pod: String,
        /// What was waited for (SCHEDULED, RUNNING, READY).
        wanted: &'static str,
        /// How long.
        waited: Duration,
        /// Its health then, with its reason and message if any ("PENDING, UNSCHEDULABLE: ...").
        state: String,
    },

    /// The namespace is not among those this deployer serves (`--namespace`).
    #[error("namespace {0:?} is not served by this deployer")]
    NamespaceNotServed(String),

    /// The server already serves as many WatchStatus streams as it may.
    #[error("the server already serves its maximum of {0} streams, retry later")]
    TooManyStreams(usize),

    /// The deployer may not list or watch the pods of the namespace.
    #[error("the deployer may not watch pods in namespace {0:?}")]
    WatchForbidden(String),

    /// The pods of the namespace could not be listed (the API server is unreachable or failing).
    #[error("the pods of namespace {0:?} could not be listed, retry later")]
    WatchNotSynced(String),

    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown,

    /// The caller did not prove who it is: no credentials, or credentials that do not verify.
    /// The reason never contains the token.
    #[error("{0}")]
    Unauthenticated(String),

    /// The policy does not allow this caller to do this here (the reason names the subject,
    /// the action and the namespace).
    #[error("{0}")]
    Forbidden(String),

    /// The image policy does not allow this registry or repository.
    #[error("{0}")]
    ImageNotAllowed(String),

    /// The image reference does not have the form the image policy requires (a digest, a tag
    /// that is not denied).
    #[error("{0}")]
    ImageRefused(String),

    /// The namespace's PodSecurity admission rejected the pod.
    #[error(
        "the pod was rejected by the Pod Security admission of namespace {namespace:?}: {reason}"
    )]
    PodSecurityRejected {
        /// Namespace.
        namespace: String,
        /// The admission's reason, e.g. `violates PodSecurity "restricted:latest": ...`.
        reason: String,
    },

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

impl Error {
    /// The gRPC code a caller sees for this error.
    fn code(&self) -> tonic::Code {
        match self {
            Self::KubeApi { source, .. } => kube_error_code(source),
            Self::InvalidRequest(_) | Self::RequestIdReused(_) | Self::PodTooLarge { .. } => {
                tonic::Code::InvalidArgument
            }
            Self::NamespaceNotFound(_) | Self::PodNotFound { .. } => tonic::Code::NotFound,
            Self::NameTaken { .. } => tonic::Code::AlreadyExists,
            Self::NotManaged { .. } | Self::PodFailed { .. } => tonic::Code::FailedPrecondition,
            Self::WaitTimedOut { .. } => tonic::Code::DeadlineExceeded,
            Self::TooManyStreams(_) => tonic::Code::ResourceExhausted,
            Self::NamespaceNotServed(_) | Self::Forbidden(_) | Self::ImageNotAllowed(_) => {
                tonic::Code::PermissionDenied
            }
            Self::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Self::ImageRefused(_) | Self::PodSecurityRejected { .. } => {
                tonic::Code::FailedPrecondition
            }
            Self::ShuttingDown | Self::WatchNotSynced(_) => tonic::Code::Unavailable,
            Self::WatchForbidden(_) => tonic::Code::PermissionDenied,
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
            | Self::TelemetryInit(_)
            | Self::Configuration(_)
            | Self::TlsConfig { .. }
            | Self::AuditLog { .. }
            | Self::Policy(_)
            | Self::AuthSetup(_) => tonic::Code::Internal,
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

/// The gRPC spelling of a status code, as in the gRPC specification.
#[must_use]
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The full cause chain, `outer: inner: innermost`, for logs.
///
/// Some errors (kube's among them) already print their source; a cause whose
/// text is already there is not repeated.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
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

impl Error {
    /// The error for a hub subscription that failed (its detail goes to the log).
    pub(crate) fn from_subscribe(namespace: &str, error: crate::hub::SubscribeError) -> Self {
        use crate::hub::SubscribeError;
        tracing::warn!(namespace, error = %error, "subscription failed");
        match error {
            SubscribeError::Forbidden(_) => Self::WatchForbidden(namespace.to_owned()),
            SubscribeError::NotSynced(_) => Self::WatchNotSynced(namespace.to_owned()),
            SubscribeError::Closed => Self::ShuttingDown,
        }
    }

    /// What a caller is told: our own words only. The API server's text and the cause chain
    /// go to the log.
    fn caller_message(&self, code: tonic::Code) -> String {
        match self {
            Self::KubeApi { action, .. } => format!("{action}: {}", public_message(code)),
            Self::InvalidRequest(_)
            | Self::NamespaceNotFound(_)
            | Self::PodNotFound { .. }
            | Self::NameTaken { .. }
            | Self::NotManaged { .. }
            | Self::RequestIdReused(_)
            | Self::PodTooLarge { .. }
            | Self::PodFailed { .. }
            | Self::WaitTimedOut { .. }
            | Self::TooManyStreams(_)
            | Self::NamespaceNotServed(_)
            | Self::WatchForbidden(_)
            | Self::WatchNotSynced(_)
            | Self::ShuttingDown
            | Self::Unauthenticated(_)
            | Self::Forbidden(_)
            | Self::ImageNotAllowed(_)
            | Self::ImageRefused(_)
            | Self::PodSecurityRejected { .. } => self.to_string(),
            _ => public_message(code).to_owned(),
        }
    }
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
        let message = error.caller_message(code);
        if let Error::InvalidRequest(violations) = &error {
            use tonic_types::{ErrorDetails, StatusExt as _};
            let mut details = ErrorDetails::new();
            for violation in &violations.0 {
                details.add_bad_request_violation(&violation.field, &violation.description);
            }
            return tonic::Status::with_error_details(code, message, details);
        }
        tonic::Status::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn api_error(code: u16, message: &str) -> Error {
        kube_error(kube::Error::Api(
            kube::core::Status::failure(message, "Reason")
                .with_code(code)
                .boxed(),
        ))
    }

    fn kube_error(source: kube::Error) -> Error {
        Error::KubeApi {
            action: "creating pod \"web\" in namespace \"ns\"".to_owned(),
            source,
        }
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
                kube_error(kube::Error::Service("connection refused".into())),
                Code::Unavailable,
            ),
            (
                kube_error(kube::Error::LinesCodecMaxLineLengthExceeded),
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
            (Error::NamespaceNotFound("x".into()), Code::NotFound),
            (
                Error::NameTaken {
                    namespace: "ns".into(),
                    name: "web".into(),
                },
                Code::AlreadyExists,
            ),
            (
                Error::NotManaged {
                    namespace: "ns".into(),
                    name: "web".into(),
                },
                Code::FailedPrecondition,
            ),
            (Error::RequestIdReused("r".into()), Code::InvalidArgument),
            (
                Error::PodTooLarge {
                    namespace: "ns".into(),
                    name: "web".into(),
                },
                Code::InvalidArgument,
            ),
            (
                Error::InvalidRequest(Violations(vec![])),
                Code::InvalidArgument,
            ),
            (Error::TooManyStreams(3), Code::ResourceExhausted),
            (
                Error::Unauthenticated("token expired".into()),
                Code::Unauthenticated,
            ),
            (Error::Forbidden("no rule".into()), Code::PermissionDenied),
            (
                Error::ImageNotAllowed("images.allow".into()),
                Code::PermissionDenied,
            ),
            (
                Error::ImageRefused("images.deniedTags".into()),
                Code::FailedPrecondition,
            ),
            (
                Error::PodSecurityRejected {
                    namespace: "ns".into(),
                    reason: "violates PodSecurity".into(),
                },
                Code::FailedPrecondition,
            ),
            (Error::Configuration("no TLS".into()), Code::Internal),
            (Error::ShuttingDown, Code::Unavailable),
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
        let error = kube_error(kube::Error::Service("connection refused".into()));
        assert_eq!(
            chain(&error),
            "creating pod \"web\" in namespace \"ns\": ServiceError: connection refused"
        );
    }
}
