//! The audit trail: one JSON line per call of the DeployerService (and per refused
//! authentication), written to its own sink so it can be shipped apart from the logs.
//!
//! A record holds who called (subject, groups, how they authenticated, from where), what they
//! asked (method, namespace, pod, image, request id), the outcome (gRPC code, and for refusals
//! the reason) and the latency. It never holds a token, a certificate, or environment values.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::domain::Caller;
use crate::error::code_name;
use crate::{Error, Result};

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    /// The process's standard error (the default: logs go to standard output).
    Stderr,
    /// The process's standard output, mixed with the logs.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

impl FromStr for AuditSink {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "" => Err("must be stderr, stdout or a file path".to_owned()),
            "stderr" | "-" => Ok(Self::Stderr),
            "stdout" => Ok(Self::Stdout),
            path => Ok(Self::File(PathBuf::from(path))),
        }
    }
}

impl std::fmt::Display for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stderr => f.write_str("stderr"),
            Self::Stdout => f.write_str("stdout"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What a call was about; the parts a method does not have stay empty.
#[derive(Debug, Clone, Default)]
pub struct AuditSubject {
    /// Namespace.
    pub namespace: String,
    /// Pod name (for Deploy, the pod created, once known).
    pub pod: String,
    /// Label selector (ListPods, WatchStatus).
    pub selector: String,
    /// Image (Deploy).
    pub image: String,
    /// Idempotency key (Deploy).
    pub request_id: String,
}

/// One finished call.
#[derive(Debug)]
pub struct AuditEvent<'a> {
    /// The authenticated caller; `None` when authentication failed.
    pub caller: Option<&'a Caller>,
    /// The client's address.
    pub source: Option<SocketAddr>,
    /// The RPC, e.g. `Deploy`.
    pub method: &'a str,
    /// What the call was about.
    pub subject: &'a AuditSubject,
    /// The outcome.
    pub code: tonic::Code,
    /// Why it was refused, for refusals (UNAUTHENTICATED, PERMISSION_DENIED,
    /// FAILED_PRECONDITION); empty otherwise.
    pub reason: &'a str,
    /// How long the call took.
    pub latency: Duration,
}

#[derive(Serialize)]
struct Record<'a> {
    time: String,
    kind: &'static str,
    subject: Option<&'a str>,
    groups: &'a [String],
    credential: Option<&'static str>,
    source: Option<String>,
    method: &'a str,
    namespace: &'a str,
    pod: &'a str,
    selector: &'a str,
    image: &'a str,
    request_id: &'a str,
    code: &'static str,
    reason: &'a str,
    latency_ms: f64,
}

/// The audit sink, shared by every call.
pub struct AuditLog {
    sink: AuditSink,
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the sink (a file is created if needed and appended to).
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be opened.
    pub fn open(sink: AuditSink) -> Result<Self> {
        let out: Box<dyn Write + Send> = match &sink {
            AuditSink::Stderr => Box::new(std::io::stderr()),
            AuditSink::Stdout => Box::new(std::io::stdout()),
            AuditSink::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| Error::AuditLog {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        Ok(Self {
            sink,
            out: Mutex::new(out),
        })
    }

    /// Writes one record. A failing sink is reported in the log; the call is not failed for
    /// it.
    pub fn record(&self, event: &AuditEvent<'_>) {
        let record = Record {
            time: jiff::Timestamp::now().to_string(),
            kind: "audit",
            subject: event.caller.map(|c| c.subject.as_str()),
            groups: event.caller.map_or(&[], |c| c.groups.as_slice()),
            credential: event.caller.map(|c| c.credential.as_str()),
            source: event.source.map(|s| s.to_string()),
            method: event.method,
            namespace: &event.subject.namespace,
            pod: &event.subject.pod,
            selector: &event.subject.selector,
            image: &event.subject.image,
            request_id: &event.subject.request_id,
            code: code_name(event.code),
            reason: event.reason,
            latency_ms: event.latency.as_secs_f64() * 1000.0,
        };
        let mut line = match serde_json::to_vec(&record) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, "an audit record could not be encoded");
                return;
            }
        };
        line.push(b'\n');
        let mut out = match self.out.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // One write per record, so that records from concurrent calls never interleave.
        if let Err(error) = out.write_all(&line).and_then(|()| out.flush()) {
            tracing::error!(%error, sink = %self.sink, "an audit record could not be written");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::domain::Credential;

    #[test]
    fn sinks_parse() {
        assert_eq!("stderr".parse(), Ok(AuditSink::Stderr));
        assert_eq!("-".parse(), Ok(AuditSink::Stderr));
        assert_eq!("stdout".parse(), Ok(AuditSink::Stdout));
        assert_eq!(
            "/var/log/audit.jsonl".parse(),
            Ok(AuditSink::File(PathBuf::from("/var/log/audit.jsonl")))
        );
        assert!("".parse::<AuditSink>().is_err());
    }

    #[test]
    fn a_record_is_one_json_line_with_every_field() {
        let dir = std::env::temp_dir().join(format!("audit-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = AuditLog::open(AuditSink::File(path.clone())).expect("opens");
        let caller = Caller {
            subject: "alice".into(),
            groups: vec!["dev".into()],
            expires_at: Some(SystemTime::now()),
            credential: Credential::BearerToken,
        };
        let subject = AuditSubject {
            namespace: "team-a".into(),
            pod: "web".into(),
            image: "nginx:1.27".into(),
            request_id: "r1".into(),
            ..AuditSubject::default()
        };
        log.record(&AuditEvent {
            caller: Some(&caller),
            source: Some("127.0.0.1:4000".parse().expect("addr")),
            method: "Deploy",
            subject: &subject,
            code: tonic::Code::Ok,
            reason: "",
            latency: Duration::from_micros(1500),
        });
        log.record(&AuditEvent {
            caller: None,
            source: None,
            method: "ListPods",
            subject: &AuditSubject::default(),
            code: tonic::Code::Unauthenticated,
            reason: "token expired",
            latency: Duration::ZERO,
        });
        let text = std::fs::read_to_string(&path).expect("written");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        let first = &lines[0];
        assert_eq!(first["kind"], "audit");
        assert_eq!(first["subject"], "alice");
        assert_eq!(first["groups"], serde_json::json!(["dev"]));
        assert_eq!(first["credential"], "bearer_token");
        assert_eq!(first["source"], "127.0.0.1:4000");
        assert_eq!(first["method"], "Deploy");
        assert_eq!(first["namespace"], "team-a");
        assert_eq!(first["pod"], "web");
        assert_eq!(first["image"], "nginx:1.27");
        assert_eq!(first["request_id"], "r1");
        assert_eq!(first["code"], "OK");
        assert_eq!(first["latency_ms"], 1.5);
        assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        let second = &lines[1];
        assert_eq!(second["subject"], serde_json::Value::Null);
        assert_eq!(second["code"], "UNAUTHENTICATED");
        assert_eq!(second["reason"], "token expired");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
