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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;

use crate::domain::Caller;
use crate::error::code_name;
use crate::{Result, StartupError};

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
    /// Deployment name (DeploymentService calls; for ApplyDeployment, the Deployment
    /// applied, once known).
    pub deployment: String,
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
    #[serde(skip_serializing_if = "str::is_empty")]
    deployment: &'a str,
    selector: &'a str,
    image: &'a str,
    request_id: &'a str,
    code: &'static str,
    reason: &'a str,
    latency_ms: f64,
}

/// Records waiting for the writer; past this many, new records are dropped (and counted).
const AUDIT_BUFFER: usize = 4096;

/// At most one warning about dropped records per this interval.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// What the writer is sent.
enum Message {
    /// One encoded record, newline included.
    Record(Vec<u8>),
    /// Write what is queued, flush, stop, then say so.
    Close(oneshot::Sender<()>),
}

/// The audit sink, shared by every call.
///
/// A call never waits for the sink: [`AuditLog::record`] hands the record to a bounded queue
/// that one writer thread empties, in order, flushing whenever it has caught up. When the
/// queue is full (the sink is slower than the calls, or stuck), the record is dropped and
/// counted, and a warning says so at most every [`DROP_WARNING_INTERVAL`]: a stuck audit
/// disk must not stall deployments. [`AuditLog::close`], at shutdown, writes every record
/// still queued.
pub struct AuditLog {
    sink: AuditSink,
    records: mpsc::Sender<Message>,
    dropped: AtomicU64,
    /// Milliseconds since `started` at the last warning about dropped records; 0 for none.
    last_drop_warning: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("sink", &self.sink)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the sink (a file is created if needed and appended to) and starts its writer.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be opened or the writer thread cannot be started.
    pub fn open(sink: AuditSink) -> Result<Self, StartupError> {
        let out: Box<dyn Write + Send> = match &sink {
            AuditSink::Stderr => Box::new(std::io::stderr()),
            AuditSink::Stdout => Box::new(std::io::stdout()),
            AuditSink::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| StartupError::AuditLog {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        Self::start(sink, out, AUDIT_BUFFER)
    }

    fn start(
        sink: AuditSink,
        out: Box<dyn Write + Send>,
        capacity: usize,
    ) -> Result<Self, StartupError> {
        let (records, queue) = mpsc::channel(capacity);
        let span = tracing::info_span!("audit_writer", sink = %sink);
        // A thread, not a task: writing to a file or a pipe blocks, and must not block the
        // runtime's workers.
        std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || span.in_scope(|| write_records(queue, out)))
            .map_err(|source| StartupError::AuditLog {
                path: PathBuf::from(sink.to_string()),
                source,
            })?;
        Ok(Self {
            sink,
            records,
            dropped: AtomicU64::new(0),
            last_drop_warning: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Queues one record for the writer; never waits. A record that does not fit (or comes
    /// after [`AuditLog::close`]) is dropped and counted; a failing sink is reported in the
    /// log. The call is not failed for either.
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
            deployment: &event.subject.deployment,
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
        if let Err(error) = self.records.try_send(Message::Record(line)) {
            self.count_dropped(match error {
                TrySendError::Full(_) => "the audit sink is not keeping up",
                TrySendError::Closed(_) => "the audit log is closed",
            });
        }
    }

    /// How many records were dropped so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes every record queued so far, flushes the sink and stops the writer. Records
    /// made after this are dropped (and counted).
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.records.send(Message::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }

    fn count_dropped(&self, why: &'static str) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.last_drop_warning.load(Ordering::Relaxed);
        let interval = u64::try_from(DROP_WARNING_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let due = last == 0 || now.saturating_sub(last) >= interval;
        // One caller wins the right to warn; the others only count.
        if due
            && self
                .last_drop_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(sink = %self.sink, dropped_total = total, why, "audit records dropped");
        }
    }
}

/// The writer: takes records off the queue in order and writes them, flushing whenever the
/// queue is empty, until it is closed or every sender is gone.
fn write_records(mut queue: mpsc::Receiver<Message>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    let mut closing: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(message) = queue.blocking_recv() {
        match message {
            Message::Record(line) => {
                if let Err(error) = out.write_all(&line) {
                    tracing::error!(%error, "an audit record could not be written");
                }
            }
            Message::Close(done) => {
                // What is queued behind it is still written; nothing more is taken.
                queue.close();
                closing.push(done);
            }
        }
        if queue.is_empty()
            && let Err(error) = out.flush()
        {
            tracing::error!(%error, "the audit sink could not be flushed");
        }
    }
    if let Err(error) = out.flush() {
        tracing::error!(%error, "the audit sink could not be flushed");
    }
    for done in closing {
        let _ = done.send(());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
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

    #[tokio::test]
    async fn a_record_is_one_json_line_with_every_field() {
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
        log.close().await;
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

    /// A sink that takes nothing until the test lets it, then keeps what it is given.
    struct GatedSink {
        entered: std::sync::mpsc::Sender<()>,
        gate: std::sync::mpsc::Receiver<()>,
        open: bool,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for GatedSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.open {
                let _ = self.entered.send(());
                let _ = self.gate.recv();
                self.open = true;
            }
            self.written
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn event(subject: &AuditSubject) -> AuditEvent<'_> {
        AuditEvent {
            caller: None,
            source: None,
            method: "ListPods",
            subject,
            code: tonic::Code::Ok,
            reason: "",
            latency: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn a_stuck_sink_drops_records_instead_of_holding_up_calls() {
        let (release, gate) = std::sync::mpsc::channel();
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = GatedSink {
            entered: entered_tx,
            gate,
            open: false,
            written: Arc::clone(&written),
        };
        let log = AuditLog::start(AuditSink::Stderr, Box::new(sink), 2).expect("starts");
        let subject = AuditSubject::default();
        log.record(&event(&subject));
        entered
            .recv_timeout(Duration::from_secs(30))
            .expect("the writer takes the first record");
        // The writer is stuck on the first record: two more fit in the queue, and the calls
        // making the other eight return at once, their records dropped.
        for _ in 0..10 {
            log.record(&event(&subject));
        }
        let dropped = log.dropped();
        assert_eq!(dropped, 8);

        release.send(()).expect("the writer waits");
        log.close().await;
        let lines = written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .count();
        assert_eq!(lines, 3, "every record not dropped is written");

        // After close, nothing is taken any more.
        log.record(&event(&subject));
        assert_eq!(log.dropped(), dropped + 1);
    }
}
