//! Exit codes, in one place: what a CI job can rely on. `--help` prints [`help_table`], and
//! `--output json` names the same outcomes in its final `result` record.
//!
//! The codes sort failures by what the caller should do next: fix the input (2), look at the
//! pod or the rollout (3), wait longer or look at the cluster's capacity (4), get the rights or change the
//! image reference (5), retry later or fix the address (6), check the name (7).

use std::fmt;

use k8s_deployer::proto::deployer::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt as _;

/// The command succeeded; with a wait, the condition was met.
pub(crate) const SUCCESS: u8 = 0;
/// Anything not listed below (ALREADY_EXISTS, RESOURCE_EXHAUSTED, INTERNAL, ...).
pub(crate) const OTHER: u8 = 1;
/// Bad input: a usage error, or INVALID_ARGUMENT from the server.
pub(crate) const BAD_INPUT: u8 = 2;
/// The pod failed (or was deleted) before reaching the wanted state; for the Deployment
/// commands, the rollout FAILED (or the Deployment was deleted) before it was complete.
pub(crate) const POD_FAILED: u8 = 3;
/// `--timeout` passed first, or the server answered DEADLINE_EXCEEDED.
pub(crate) const TIMEOUT: u8 = 4;
/// Refused: UNAUTHENTICATED, PERMISSION_DENIED, FAILED_PRECONDITION (policy, admission),
/// ABORTED (another field manager owns a field an apply sets).
pub(crate) const REFUSED: u8 = 5;
/// The server could not be reached: connection or TLS failure, UNAVAILABLE.
pub(crate) const UNREACHABLE: u8 = 6;
/// NOT_FOUND: the pod, Deployment, revision or namespace does not exist.
pub(crate) const NOT_FOUND: u8 = 7;
/// Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
pub(crate) const INTERRUPTED: u8 = 130;
/// Stdout was closed by its reader (128 + SIGPIPE, as for a program killed by it).
pub(crate) const BROKEN_PIPE: u8 = 141;

/// Every exit code: (code, outcome name used in JSON output, meaning).
pub(crate) const TABLE: &[(u8, &str, &str)] = &[
    (
        SUCCESS,
        "ok",
        "success; with --wait or --until, the condition was met",
    ),
    (
        OTHER,
        "error",
        "any other error (ALREADY_EXISTS, RESOURCE_EXHAUSTED, INTERNAL, ...)",
    ),
    (
        BAD_INPUT,
        "bad_input",
        "bad input: a usage error, or INVALID_ARGUMENT (the message names the field)",
    ),
    (
        POD_FAILED,
        "pod_failed",
        "the pod failed (FAILED, e.g. IMAGE_PULL_FAILED; or deleted) before the wait was met; \
         for deployment commands the rollout FAILED (NEW_PODS_FAILING, DEADLINE_EXCEEDED, \
         REPLICA_FAILURE; outcome rollout_failed) or the Deployment was deleted",
    ),
    (
        TIMEOUT,
        "timeout",
        "timed out: --timeout passed first, or DEADLINE_EXCEEDED",
    ),
    (
        REFUSED,
        "refused",
        "refused before anything ran: UNAUTHENTICATED, PERMISSION_DENIED, FAILED_PRECONDITION \
         (image policy, PodSecurity admission, a pod or Deployment not managed by k8s-deployer, \
         a paused Deployment, no previous revision), ABORTED (another field manager owns a \
         field the apply sets)",
    ),
    (
        UNREACHABLE,
        "unreachable",
        "the server could not be reached: connection refused, DNS, TLS handshake, UNAVAILABLE",
    ),
    (
        NOT_FOUND,
        "not_found",
        "NOT_FOUND: the pod, Deployment, revision or namespace does not exist",
    ),
    (INTERRUPTED, "interrupted", "interrupted (Ctrl-C)"),
    (
        BROKEN_PIPE,
        "broken_pipe",
        "stdout was closed by its reader (as with SIGPIPE)",
    ),
];

/// The outcome `--output json` reports for a failed rollout (exit code [`POD_FAILED`]).
pub(crate) const ROLLOUT_FAILED: &str = "rollout_failed";

/// The outcome name of an exit code, as `--output json` reports it.
pub(crate) fn outcome(code: u8) -> &'static str {
    TABLE
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or("error", |(_, name, _)| name)
}

/// The exit code table for `--help`.
pub(crate) fn help_table() -> String {
    let mut text = String::from("Exit codes:\n");
    for (code, _, meaning) in TABLE {
        text.push_str(&format!("  {code:>3}  {meaning}\n"));
    }
    text.push_str(
        "\nA pod or rollout failure (3) is seen while following the pod or the rollout; a \
         refusal (5) is the server's answer to the call itself, before any pod runs.",
    );
    text
}

/// Why a command did not succeed, with the exit code it gives.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The exit code.
    pub(crate) exit: u8,
    /// The gRPC code, when the server (or the transport) gave one.
    pub(crate) code: Option<Code>,
    /// What went wrong, for people.
    pub(crate) message: String,
    /// Every field violation the server listed (google.rpc.BadRequest).
    pub(crate) violations: Vec<String>,
    /// The last known status of the pod concerned, if any.
    pub(crate) pod: Option<Box<pb::PodStatus>>,
    /// The last known state of the Deployment concerned, if any.
    pub(crate) deployment: Option<Box<pb::Deployment>>,
}

impl Failure {
    fn new(exit: u8, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            code: None,
            message: message.into(),
            violations: Vec::new(),
            pod: None,
            deployment: None,
        }
    }

    /// Input this program rejects before calling the server.
    pub(crate) fn bad_input(message: impl Into<String>) -> Failure {
        Failure::new(BAD_INPUT, message)
    }

    /// The server could not be reached at all.
    pub(crate) fn unreachable(message: impl Into<String>) -> Failure {
        Failure {
            code: Some(Code::Unavailable),
            ..Failure::new(UNREACHABLE, message)
        }
    }

    /// The pod failed or went away before the wanted state.
    pub(crate) fn pod_failed(message: impl Into<String>, pod: pb::PodStatus) -> Failure {
        Failure {
            pod: Some(Box::new(pod)),
            ..Failure::new(POD_FAILED, message)
        }
    }

    /// The rollout failed, or the Deployment went away, before it was complete.
    pub(crate) fn rollout_failed(
        message: impl Into<String>,
        deployment: pb::Deployment,
    ) -> Failure {
        Failure {
            deployment: Some(Box::new(deployment)),
            ..Failure::new(POD_FAILED, message)
        }
    }

    /// The outcome `--output json` reports: as [`outcome`], but `rollout_failed` for a
    /// failed rollout.
    pub(crate) fn outcome(&self) -> &'static str {
        if self.exit == POD_FAILED && self.deployment.is_some() && self.pod.is_none() {
            ROLLOUT_FAILED
        } else {
            outcome(self.exit)
        }
    }

    /// Our own `--timeout` passed.
    pub(crate) fn timed_out(message: impl Into<String>, pod: Option<pb::PodStatus>) -> Failure {
        Failure {
            pod: pod.map(Box::new),
            ..Failure::new(TIMEOUT, message)
        }
    }

    /// Ctrl-C.
    pub(crate) fn interrupted() -> Failure {
        Failure::new(INTERRUPTED, "interrupted")
    }

    /// The server's answer to a call. Every call deployctl makes has `wait_for` NONE, so a
    /// FAILED_PRECONDITION is always a refusal of the request (image policy, PodSecurity
    /// admission, a pod not managed here), never a pod that failed: that is seen on the
    /// WatchStatus stream and gives [`POD_FAILED`].
    pub(crate) fn from_status(status: &tonic::Status) -> Failure {
        let violations = status
            .get_error_details()
            .bad_request()
            .map(|bad| {
                bad.field_violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect()
            })
            .unwrap_or_default();
        let message = if status.message().is_empty() {
            code_name(status.code()).to_lowercase().replace('_', " ")
        } else {
            status.message().to_owned()
        };
        Failure {
            code: Some(status.code()),
            violations,
            ..Failure::new(exit_code(status.code()), message)
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{}: {}", code_name(code), self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The exit code of a gRPC status code.
pub(crate) fn exit_code(code: Code) -> u8 {
    match code {
        Code::Ok => SUCCESS,
        Code::InvalidArgument | Code::OutOfRange => BAD_INPUT,
        Code::DeadlineExceeded => TIMEOUT,
        Code::Unauthenticated
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::Aborted => REFUSED,
        Code::Unavailable => UNREACHABLE,
        Code::NotFound => NOT_FOUND,
        Code::Cancelled
        | Code::Unknown
        | Code::AlreadyExists
        | Code::ResourceExhausted
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss => OTHER,
    }
}

/// The canonical name of a gRPC code, as in the .proto and in grpcurl's output.
pub(crate) use k8s_deployer::error::code_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_distinct_row() {
        let mut codes: Vec<u8> = TABLE.iter().map(|(code, _, _)| *code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len(), "a code appears twice");
        for code in [
            SUCCESS,
            OTHER,
            BAD_INPUT,
            POD_FAILED,
            TIMEOUT,
            REFUSED,
            UNREACHABLE,
            NOT_FOUND,
            INTERRUPTED,
            BROKEN_PIPE,
        ] {
            assert!(codes.contains(&code), "{code} is not in the table");
            assert!(help_table().contains(&format!("{code:>3}  ")), "{code}");
        }
    }

    #[test]
    fn grpc_codes_map_to_exit_codes() {
        for (code, exit) in [
            (Code::Ok, SUCCESS),
            (Code::InvalidArgument, BAD_INPUT),
            (Code::DeadlineExceeded, TIMEOUT),
            (Code::Unauthenticated, REFUSED),
            (Code::PermissionDenied, REFUSED),
            (Code::FailedPrecondition, REFUSED),
            (Code::Aborted, REFUSED),
            (Code::Unavailable, UNREACHABLE),
            (Code::NotFound, NOT_FOUND),
            (Code::AlreadyExists, OTHER),
            (Code::ResourceExhausted, OTHER),
            (Code::Internal, OTHER),
        ] {
            assert_eq!(exit_code(code), exit, "{code:?}");
        }
    }

    #[test]
    fn a_status_keeps_its_message_and_code() {
        let failure = Failure::from_status(&tonic::Status::invalid_argument(
            "image: \"Nginx:1\" is not a valid reference",
        ));
        assert_eq!(failure.exit, BAD_INPUT);
        assert_eq!(
            failure.to_string(),
            "INVALID_ARGUMENT: image: \"Nginx:1\" is not a valid reference"
        );
        assert_eq!(outcome(failure.exit), "bad_input");
    }

    #[test]
    fn a_failed_rollout_is_exit_3_with_its_own_outcome() {
        let failure = Failure::rollout_failed("NEW_PODS_FAILING", pb::Deployment::default());
        assert_eq!(
            (failure.exit, failure.outcome()),
            (POD_FAILED, ROLLOUT_FAILED)
        );
        let pod = Failure::pod_failed("IMAGE_PULL_FAILED", pb::PodStatus::default());
        assert_eq!(pod.outcome(), "pod_failed");
        let conflict = Failure::from_status(&tonic::Status::aborted("conflict with kubectl"));
        assert_eq!((conflict.exit, conflict.outcome()), (REFUSED, "refused"));
    }
}
