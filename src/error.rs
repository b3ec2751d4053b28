//! The crate's error types and the one place that decides which gRPC status
//! code each failure becomes.
//!
//! Two types, because they meet different readers: [`enum@Error`] is what a call can fail
//! with, and maps to the `tonic::Status` its caller gets; [`StartupError`] is what keeps the
//! server from starting (or running), and goes to the operator through `main`.

mod startup;

use std::time::Duration;

use crate::domain::Violations;

pub use startup::StartupError;

/// Result with the crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call failed: every variant is something a caller can meet, and maps to the gRPC
/// status it is answered with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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

    /// A namespace could not be read. The cause is shared by every call that waited for the
    /// same read (see `k8s::namespaces`), hence the `Arc`.
    #[error("reading namespace {namespace:?}")]
    NamespaceRead {
        /// The namespace.
        namespace: String,
        /// The client's error (logged, never sent).
        #[source]
        source: std::sync::Arc<kube::Error>,
    },

    /// Kubernetes did not answer within the call's limit (the caller's deadline or
    /// `--call-timeout`); `retry` tells the caller what that means for it.
    #[error("Kubernetes did not answer within {}: {retry}", seconds(*after))]
    CallTimedOut {
        /// How long the call waited.
        after: Duration,
        /// What the caller should assume and do.
        retry: &'static str,
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

    /// While a caller waited for a rollout, it FAILED.
    #[error("the rollout of deployment {namespace}/{name} failed: {failure}")]
    RolloutFailed {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The rollout's reason and message, e.g. "NEW_PODS_FAILING: IMAGE_PULL_FAILED: ...".
        failure: String,
    },

    /// A rollout's wait ran out before the rollout got where it was asked to (it goes on).
    #[error("deployment {deployment} did not become {wanted} within {}: {state}", seconds(*waited))]
    RolloutWaitTimedOut {
        /// namespace/name.
        deployment: String,
        /// What was waited for (ROLLED_OUT, AVAILABLE).
        wanted: &'static str,
        /// How long.
        waited: Duration,
        /// Where the rollout was ("PROGRESSING: Waiting for deployment ..."), or that the
        /// Deployment was not seen.
        state: String,
    },

    /// The Deployment was deleted while a caller waited for its rollout.
    #[error("deployment {namespace}/{name} was deleted while waiting for its rollout")]
    DeploymentGone {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
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
    /// The Deployment does not exist (or is not managed by this service, for reads).
    #[error("deployment {namespace}/{name} not found")]
    DeploymentNotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },

    /// An object of that name exists that this service does not manage; it is left alone.
    #[error("{kind} {namespace}/{name} exists and is not managed by k8s-deployer")]
    ObjectNotManaged {
        /// "Deployment" or "Service".
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },

    /// Server-side apply found fields of the spec owned by another field manager; nothing
    /// changed (the apply is never forced).
    #[error("{kind} {namespace}/{name}: {conflicts}; nothing was changed")]
    FieldConflict {
        /// "Deployment" or "Service".
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The fields and their managers, in our words from the Status causes.
        conflicts: String,
    },

    /// The Deployment is being deleted: a change would go with it.
    #[error("deployment {namespace}/{name} is being deleted: apply it again once it is gone")]
    DeploymentDeleting {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },

    /// The Deployment is paused: the change would not roll out.
    #[error("deployment {namespace}/{name} is paused: resume it first")]
    DeploymentPaused {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },

    /// A rollback found no revision before the current one.
    #[error("deployment {namespace}/{name} has no previous revision to roll back to")]
    NoPreviousRevision {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },

    /// A rollback named a revision that does not exist.
    #[error("deployment {namespace}/{name} has no revision {revision}")]
    RevisionNotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The revision asked for.
        revision: i64,
    },

    /// DeleteDeployment's wait ran out before everything was gone; the deletion goes on.
    #[error("deployment {deployment} was not gone within {}; the deletion goes on", seconds(*waited))]
    DeletionTimedOut {
        /// namespace/name.
        deployment: String,
        /// How long.
        waited: Duration,
    },
}

impl Error {
    /// The gRPC code a caller sees for this error.
    fn code(&self) -> tonic::Code {
        match self {
            Self::KubeApi { source, .. } => kube_error_code(source),
            Self::NamespaceRead { source, .. } => kube_error_code(source),
            Self::InvalidRequest(_) | Self::RequestIdReused(_) | Self::PodTooLarge { .. } => {
                tonic::Code::InvalidArgument
            }
            Self::NamespaceNotFound(_) | Self::PodNotFound { .. } => tonic::Code::NotFound,
            Self::NameTaken { .. } => tonic::Code::AlreadyExists,
            Self::NotManaged { .. } | Self::PodFailed { .. } | Self::RolloutFailed { .. } => {
                tonic::Code::FailedPrecondition
            }
            Self::WaitTimedOut { .. } | Self::RolloutWaitTimedOut { .. } => {
                tonic::Code::DeadlineExceeded
            }
            Self::DeploymentGone { .. } => tonic::Code::NotFound,
            Self::TooManyStreams(_) => tonic::Code::ResourceExhausted,
            Self::NamespaceNotServed(_) | Self::Forbidden(_) | Self::ImageNotAllowed(_) => {
                tonic::Code::PermissionDenied
            }
            Self::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Self::ImageRefused(_) | Self::PodSecurityRejected { .. } => {
                tonic::Code::FailedPrecondition
            }
            Self::ShuttingDown | Self::WatchNotSynced(_) | Self::CallTimedOut { .. } => {
                tonic::Code::Unavailable
            }
            Self::WatchForbidden(_) => tonic::Code::PermissionDenied,
            Self::DeploymentNotFound { .. } | Self::RevisionNotFound { .. } => {
                tonic::Code::NotFound
            }
            Self::ObjectNotManaged { .. }
            | Self::DeploymentDeleting { .. }
            | Self::DeploymentPaused { .. }
            | Self::NoPreviousRevision { .. } => tonic::Code::FailedPrecondition,
            Self::FieldConflict { .. } => tonic::Code::Aborted,
            Self::DeletionTimedOut { .. } => tonic::Code::DeadlineExceeded,
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

/// A duration as callers read it: `10s`, `2.5s`.
fn seconds(duration: Duration) -> String {
    format!("{}s", (duration.as_secs_f64() * 10.0).round() / 10.0)
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
    /// What a caller is told: our own words only. The API server's text and the cause chain
    /// go to the log.
    fn caller_message(&self, code: tonic::Code) -> String {
        match self {
            Self::KubeApi { action, .. } => format!("{action}: {}", public_message(code)),
            Self::NamespaceRead { .. } => format!("{self}: {}", public_message(code)),
            Self::InvalidRequest(_)
            | Self::NamespaceNotFound(_)
            | Self::PodNotFound { .. }
            | Self::NameTaken { .. }
            | Self::NotManaged { .. }
            | Self::RequestIdReused(_)
            | Self::PodTooLarge { .. }
            | Self::PodFailed { .. }
            | Self::WaitTimedOut { .. }
            | Self::RolloutFailed { .. }
            | Self::RolloutWaitTimedOut { .. }
            | Self::DeploymentGone { .. }
            | Self::CallTimedOut { .. }
            | Self::TooManyStreams(_)
            | Self::NamespaceNotServed(_)
            | Self::WatchForbidden(_)
            | Self::WatchNotSynced(_)
            | Self::ShuttingDown
            | Self::Unauthenticated(_)
            | Self::Forbidden(_)
            | Self::ImageNotAllowed(_)
            | Self::ImageRefused(_)
            | Self::PodSecurityRejected { .. }
            | Self::DeploymentNotFound { .. }
            | Self::ObjectNotManaged { .. }
            | Self::FieldConflict { .. }
            | Self::DeploymentDeleting { .. }
            | Self::DeploymentPaused { .. }
            | Self::NoPreviousRevision { .. }
            | Self::RevisionNotFound { .. }
            | Self::DeletionTimedOut { .. } => self.to_string(),
        }
    }
}

/// What the caller is told. Logging the failure, with its cause chain, is the caller of this
/// conversion's job (the gRPC service logs one line per call), so that it is logged once.
impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let code = error.code();
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
                Error::RolloutFailed {
                    namespace: "ns".into(),
                    name: "web".into(),
                    failure: "NEW_PODS_FAILING: IMAGE_PULL_FAILED: ...".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                Error::RolloutWaitTimedOut {
                    deployment: "ns/web".into(),
                    wanted: "ROLLED_OUT",
                    waited: Duration::from_secs(5),
                    state: "PROGRESSING".into(),
                },
                Code::DeadlineExceeded,
            ),
            (
                Error::DeploymentGone {
                    namespace: "ns".into(),
                    name: "web".into(),
                },
                Code::NotFound,
            ),
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
            (Error::ShuttingDown, Code::Unavailable),
            (
                Error::DeploymentNotFound {
                    namespace: "ns".into(),
                    name: "web".into(),
                },
                Code::NotFound,
            ),
            (
                Error::ObjectNotManaged {
                    kind: "Service",
                    namespace: "ns".into(),
                    name: "web".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                Error::FieldConflict {
                    kind: "Deployment",
                    namespace: "ns".into(),
                    name: "web".into(),
                    conflicts: ".spec.replicas is owned by \"kubectl\"".into(),
                },
                Code::Aborted,
            ),
            (
                Error::DeletionTimedOut {
                    deployment: "ns/web".into(),
                    waited: Duration::from_secs(1),
                },
                Code::DeadlineExceeded,
            ),
            (
                Error::CallTimedOut {
                    after: Duration::from_secs(10),
                    retry: "retry later",
                },
                Code::Unavailable,
            ),
            (
                Error::NamespaceRead {
                    namespace: "ns".into(),
                    source: std::sync::Arc::new(kube::Error::Service("refused".into())),
                },
                Code::Unavailable,
            ),
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
        // The deployer's own credentials rejected: nothing of the API server's answer is told.
        let status = tonic::Status::from(api_error(401, "token for system:serviceaccount:x:y"));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(
            status.message(),
            "creating pod \"web\" in namespace \"ns\": internal error"
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
