//! The command line: subcommands, flags and their environment twins.
//!
//! Every flag has a long name and an environment variable twin (the flag wins when both are
//! set). The connection flags have the names and variables of the server's flags where they
//! mean the same thing (`--tls-cert`, `DEPLOYER_TLS_CERT`, ...). Only the syntax of values is
//! checked here; what they mean (a valid image reference, label key, quantity, ...) is the
//! server's to judge, and it names the field when it refuses one.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_deployer::domain::WaitFor;
use k8s_deployer::proto::deployer::v1 as pb;

use crate::exit;

/// Where the server is when `--server` is not given.
pub(crate) const DEFAULT_SERVER: &str = "https://127.0.0.1:50051";

/// The command line of deployctl.
#[derive(Debug, Parser)]
#[command(
    name = "deployctl",
    version,
    about = "Deploy container images to Kubernetes through k8s-deployer, and follow their status live",
    long_about = None,
    after_help = exit::help_table(),
    propagate_version = true
)]
pub(crate) struct Cli {
    /// How to reach the server and who to be.
    #[command(flatten)]
    pub(crate) connection: Connection,

    /// How to show what happens.
    #[arg(
        long,
        short = 'o',
        env = "DEPLOYER_OUTPUT",
        value_enum,
        default_value_t = OutputFormat::Auto,
        global = true,
        help_heading = "Output and time"
    )]
    pub(crate) output: OutputFormat,

    /// Longest the command may take, e.g. 90s, 2m, 1h30m. Default: 5m for deploy --wait and
    /// delete --wait, no limit for watch, 30s for a single call.
    #[arg(
        long,
        env = "DEPLOYER_TIMEOUT",
        value_parser = parse_duration,
        value_name = "DURATION",
        global = true,
        help_heading = "Output and time"
    )]
    pub(crate) timeout: Option<Duration>,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How to reach the server.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection")]
pub(crate) struct Connection {
    /// URL of the k8s-deployer server: https://HOST:PORT, or http://HOST:PORT with
    /// --plaintext. HOST:PORT alone takes the scheme from --plaintext.
    #[arg(
        long,
        env = "DEPLOYER_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL",
        global = true
    )]
    pub(crate) server: String,

    /// Talk to the server in plain text (http), without TLS. For local development only: the
    /// token then crosses the network in the clear.
    #[arg(
        long,
        env = "DEPLOYER_PLAINTEXT",
        conflicts_with_all = ["ca_file", "tls_cert"],
        global = true
    )]
    pub(crate) plaintext: bool,

    /// CA certificates (PEM) to trust for the server's certificate, instead of the system's.
    #[arg(long, env = "DEPLOYER_CA_FILE", value_name = "PATH", global = true)]
    pub(crate) ca_file: Option<PathBuf>,

    /// Client certificate chain (PEM) for mutual TLS: the server takes its common name as
    /// the caller, its organisations as groups.
    #[arg(
        long,
        env = "DEPLOYER_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key",
        global = true
    )]
    pub(crate) tls_cert: Option<PathBuf>,

    /// Private key (PEM) of the client certificate.
    #[arg(
        long,
        env = "DEPLOYER_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert",
        global = true
    )]
    pub(crate) tls_key: Option<PathBuf>,

    /// Bearer token (a JWT) sent as "authorization: Bearer <token>". Prefer --token-file or
    /// the environment: a flag's value is visible to other users of the machine. Never
    /// printed.
    #[arg(
        long,
        env = "DEPLOYER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        conflicts_with = "token_file",
        global = true
    )]
    pub(crate) token: Option<Secret>,

    /// File holding the bearer token (surrounding whitespace is ignored), e.g. a projected
    /// ServiceAccount token.
    #[arg(long, env = "DEPLOYER_TOKEN_FILE", value_name = "PATH", global = true)]
    pub(crate) token_file: Option<PathBuf>,
}

/// A value that must never be printed: its Debug form is redacted.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(value.to_owned()))
    }
}

/// How results are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// A live status line when stdout is a terminal, plain lines otherwise.
    Auto,
    /// One line per status change or event.
    Plain,
    /// One JSON object per line; the last is always {"type":"result",...}.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Deploy an image as a pod; with --wait, follow it until it is scheduled, running or
    /// ready, fails, or --timeout passes.
    #[command(after_help = exit::help_table())]
    Deploy(Box<DeployArgs>),
    /// Show the status of one pod.
    #[command(after_help = exit::help_table())]
    Status(PodArgs),
    /// List the managed pods of a namespace.
    #[command(after_help = exit::help_table())]
    List(ListArgs),
    /// Delete one pod; with --wait, follow it until it is gone.
    #[command(after_help = exit::help_table())]
    Delete(DeleteArgs),
    /// Follow the status and events of one pod, or of the pods a label selector matches.
    #[command(after_help = exit::help_table())]
    Watch(WatchArgs),
    /// Apply, roll out, scale, restart, roll back, show and delete Deployments.
    #[command(subcommand, visible_alias = "deployments")]
    Deployment(DeploymentCommand),
}

/// The namespace every command works in.
#[derive(Debug, Args)]
pub(crate) struct Namespace {
    /// Namespace of the pods or Deployments.
    #[arg(long, short = 'n', env = "DEPLOYER_NAMESPACE", value_name = "NS")]
    pub(crate) namespace: String,
}

/// `deploy`.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The image, e.g. nginx:1.27 or ghcr.io/org/app@sha256:...
    #[arg(value_name = "IMAGE")]
    pub(crate) image: String,

    /// Where to deploy.
    #[command(flatten)]
    pub(crate) namespace: Namespace,

    /// Pod name (a DNS-1123 subdomain, dots allowed). Default: the image's last path
    /// component and a random suffix, e.g. nginx-7xk2q.
    #[arg(long, env = "DEPLOYER_POD_NAME", value_name = "NAME")]
    pub(crate) name: Option<String>,

    /// The container.
    #[command(flatten)]
    pub(crate) template: Template,

    /// Restart policy of the container.
    #[arg(long, env = "DEPLOYER_POD_RESTART", value_enum, value_name = "POLICY")]
    pub(crate) restart: Option<Restart>,

    /// Idempotency key: a retried deploy with the same ID and request gets the same pod, never
    /// a second one (a UUID fits).
    #[arg(long, env = "DEPLOYER_REQUEST_ID", value_name = "ID")]
    pub(crate) request_id: Option<String>,

    /// What to wait for after the pod is created, following it live.
    #[arg(
        long,
        env = "DEPLOYER_WAIT",
        value_enum,
        default_value_t = Wait::None,
        value_name = "CONDITION"
    )]
    pub(crate) wait: Wait,

    /// Validate the request and run it through the API server's admission without creating
    /// anything (server-side dry run); --wait is then ignored.
    #[arg(long, env = "DEPLOYER_DRY_RUN")]
    pub(crate) dry_run: bool,
}

/// The container and pod template flags `deploy` and `deployment apply` share.
#[derive(Debug, Args)]
pub(crate) struct Template {
    /// Environment variable of the container, NAME=VALUE; repeat for more. (Its environment
    /// twin holds one, since a value may contain commas.)
    #[arg(
        long = "env",
        short = 'e',
        env = "DEPLOYER_POD_ENV",
        value_parser = parse_key_value,
        value_name = "NAME=VALUE"
    )]
    pub(crate) env: Vec<(String, String)>,

    /// Container port, [NAME:]PORT[/tcp|udp|sctp], e.g. 8080 or http:8080/tcp; repeat or
    /// separate with commas.
    #[arg(
        long = "port",
        short = 'p',
        env = "DEPLOYER_POD_PORTS",
        value_delimiter = ',',
        value_parser = parse_port,
        value_name = "PORT"
    )]
    pub(crate) ports: Vec<pb::ContainerPort>,

    /// Label of the pod (of a Deployment and its pods), KEY=VALUE; repeat or separate with commas.
    #[arg(
        long = "label",
        env = "DEPLOYER_POD_LABELS",
        value_delimiter = ',',
        value_parser = parse_key_value,
        value_name = "KEY=VALUE"
    )]
    pub(crate) labels: Vec<(String, String)>,

    /// Annotation of the pod (of a Deployment and its pod template), KEY=VALUE; repeat for more.
    #[arg(
        long = "annotation",
        env = "DEPLOYER_POD_ANNOTATION",
        value_parser = parse_key_value,
        value_name = "KEY=VALUE"
    )]
    pub(crate) annotations: Vec<(String, String)>,

    /// Resource request, RESOURCE=QUANTITY (cpu, memory, ephemeral-storage), e.g. cpu=250m;
    /// repeat or separate with commas.
    #[arg(
        long = "request",
        env = "DEPLOYER_POD_REQUESTS",
        value_delimiter = ',',
        value_parser = parse_key_value,
        value_name = "RESOURCE=QUANTITY"
    )]
    pub(crate) requests: Vec<(String, String)>,

    /// Resource limit, RESOURCE=QUANTITY, e.g. memory=512Mi; repeat or separate with commas.
    #[arg(
        long = "limit",
        env = "DEPLOYER_POD_LIMITS",
        value_delimiter = ',',
        value_parser = parse_key_value,
        value_name = "RESOURCE=QUANTITY"
    )]
    pub(crate) limits: Vec<(String, String)>,

    /// Entrypoint override, one word per flag (--command sh --command -c); the image's
    /// ENTRYPOINT when unset. Arguments go after `--`.
    #[arg(long = "command", env = "DEPLOYER_POD_COMMAND", value_name = "WORD")]
    pub(crate) command: Vec<String>,

    /// Pod Security profile to harden the pod (template) to; the server's floor when unset.
    #[arg(long, env = "DEPLOYER_POD_PROFILE", value_enum, value_name = "PROFILE")]
    pub(crate) pod_security: Option<Profile>,

    /// Arguments of the container (the image's CMD when none).
    #[arg(last = true, value_name = "ARG")]
    pub(crate) args: Vec<String>,
}

/// What `deploy --wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Wait {
    /// Do not wait: done once the pod is created.
    None,
    /// The scheduler has bound the pod to a node.
    Scheduled,
    /// Every container runs (phase Running), and the pod has not failed.
    Running,
    /// The pod is Ready.
    Ready,
}

impl Wait {
    /// The condition, as the server's contract names it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Wait::None => "NONE",
            Wait::Scheduled => "SCHEDULED",
            Wait::Running => "RUNNING",
            Wait::Ready => "READY",
        }
    }
}

impl From<Wait> for WaitFor {
    fn from(wait: Wait) -> WaitFor {
        match wait {
            Wait::None => WaitFor::None,
            Wait::Scheduled => WaitFor::Scheduled,
            Wait::Running => WaitFor::Running,
            Wait::Ready => WaitFor::Ready,
        }
    }
}

/// Restart policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Restart {
    /// Restart whenever the container exits.
    Always,
    /// Restart when it exits with a non-zero code.
    OnFailure,
    /// Never restart: the pod ends Succeeded or Failed.
    Never,
}

impl From<Restart> for pb::RestartPolicy {
    fn from(restart: Restart) -> pb::RestartPolicy {
        match restart {
            Restart::Always => pb::RestartPolicy::Always,
            Restart::OnFailure => pb::RestartPolicy::OnFailure,
            Restart::Never => pb::RestartPolicy::Never,
        }
    }
}

/// Pod Security Standards profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Profile {
    /// Hardened, passes the baseline level.
    Baseline,
    /// Hardened and non-root, passes the restricted level.
    Restricted,
}

impl From<Profile> for pb::PodSecurity {
    fn from(profile: Profile) -> pb::PodSecurity {
        match profile {
            Profile::Baseline => pb::PodSecurity::Baseline,
            Profile::Restricted => pb::PodSecurity::Restricted,
        }
    }
}

/// `status`.
#[derive(Debug, Args)]
pub(crate) struct PodArgs {
    /// Name of the pod.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,

    /// Where the pod is.
    #[command(flatten)]
    pub(crate) namespace: Namespace,
}

/// `list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Where the pods are.
    #[command(flatten)]
    pub(crate) namespace: Namespace,

    /// Kubernetes label selector, e.g. app=web,tier!=db.
    #[arg(long, short = 'l', env = "DEPLOYER_SELECTOR", value_name = "SELECTOR")]
    pub(crate) selector: Option<String>,
}

/// `delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Name of the pod.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,

    /// Where the pod is.
    #[command(flatten)]
    pub(crate) namespace: Namespace,

    /// Grace period, e.g. 0s to delete at once; the pod's own (30s by default) when unset.
    #[arg(long, env = "DEPLOYER_GRACE_PERIOD", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) grace_period: Option<Duration>,

    /// Follow the pod until it is gone.
    #[arg(long, env = "DEPLOYER_DELETE_WAIT")]
    pub(crate) wait: bool,
}

/// `watch`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["name", "selector"]))]
pub(crate) struct WatchArgs {
    /// Name of the pod (it need not exist yet).
    #[arg(value_name = "NAME")]
    pub(crate) name: Option<String>,

    /// Where the pods are.
    #[command(flatten)]
    pub(crate) namespace: Namespace,

    /// Watch the managed pods this label selector matches instead of one pod.
    #[arg(long, short = 'l', env = "DEPLOYER_SELECTOR", value_name = "SELECTOR")]
    pub(crate) selector: Option<String>,

    /// Stop when every watched pod is ready, or when every one is terminal (FAILED,
    /// SUCCEEDED or DELETED). Unset: follow until the pod is deleted, --timeout or Ctrl-C.
    #[arg(long, env = "DEPLOYER_UNTIL", value_enum, value_name = "CONDITION")]
    pub(crate) until: Option<Until>,
}

/// When `watch` stops by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Until {
    /// Every watched pod is READY (exit 3 if one fails first).
    Ready,
    /// Every watched pod is FAILED, SUCCEEDED or DELETED (exit 3 if one ended FAILED).
    Terminal,
}

/// `deployment ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum DeploymentCommand {
    /// Create or update a Deployment (server-side apply), then follow its rollout until it is
    /// complete, fails, or --timeout passes (5m by default).
    #[command(after_help = exit::help_table())]
    Apply(Box<ApplyArgs>),
    /// Follow, undo, list or restart rollouts.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Restart every pod by a rolling update (as `kubectl rollout restart`).
    #[command(after_help = exit::help_table())]
    Restart(RestartArgs),
    /// Set the number of replicas.
    #[command(after_help = exit::help_table())]
    Scale(ScaleArgs),
    /// Show one Deployment with its rollout status and ReplicaSets.
    #[command(after_help = exit::help_table())]
    Get(DeploymentName),
    /// List the managed Deployments of a namespace.
    #[command(after_help = exit::help_table())]
    List(ListArgs),
    /// Delete a Deployment with its ReplicaSets, pods and Service; with --wait, until gone.
    #[command(after_help = exit::help_table())]
    Delete(DeploymentDeleteArgs),
}

/// `deployment rollout ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum RolloutCommand {
    /// Follow the current rollout until it is complete (exit 0) or fails (exit 3).
    #[command(after_help = exit::help_table())]
    Status(DeploymentName),
    /// Put a previous revision's pod template back (the one before the current by default).
    #[command(after_help = exit::help_table())]
    Undo(UndoArgs),
    /// List the revisions, oldest first.
    #[command(after_help = exit::help_table())]
    History(DeploymentName),
    /// Restart every pod by a rolling update (as `kubectl rollout restart`).
    #[command(after_help = exit::help_table())]
    Restart(RestartArgs),
}

/// One Deployment, by name.
#[derive(Debug, Args)]
pub(crate) struct DeploymentName {
    /// Name of the Deployment.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,

    /// Where it is.
    #[command(flatten)]
    pub(crate) namespace: Namespace,
}

/// Follow the rollout a change started, for `scale`, `restart` and `undo`.
#[derive(Debug, Args)]
pub(crate) struct FollowFlag {
    /// Follow the rollout this change starts until it is complete or fails, as `rollout
    /// status` does.
    #[arg(long)]
    pub(crate) wait: bool,
}

/// `deployment apply`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("rolling").multiple(true).args(["max_surge", "max_unavailable"]))]
pub(crate) struct ApplyArgs {
    /// The image, e.g. nginx:1.27 or ghcr.io/org/app@sha256:...
    #[arg(value_name = "IMAGE")]
    pub(crate) image: String,

    /// Where to deploy.
    #[command(flatten)]
    pub(crate) namespace: Namespace,

    /// Deployment name (a DNS-1123 label: it names the Service too). Default: derived from
    /// the image, as for deploy; give it to update the same Deployment later.
    #[arg(long, env = "DEPLOYER_DEPLOYMENT_NAME", value_name = "NAME")]
    pub(crate) name: Option<String>,

    /// Desired pods, 0 to 1000. Default: 1 for a new Deployment, the current number for an
    /// existing one (so that a scale is not undone).
    #[arg(long, env = "DEPLOYER_REPLICAS", value_name = "N")]
    pub(crate) replicas: Option<u32>,

    /// The container and pod template.
    #[command(flatten)]
    pub(crate) template: Template,

    /// Rolling update: pods above --replicas during an update, a count or a percentage
    /// (default 25%).
    #[arg(long, env = "DEPLOYER_MAX_SURGE", value_parser = parse_count_or_percent, value_name = "N|N%")]
    pub(crate) max_surge: Option<String>,

    /// Rolling update: pods below --replicas during an update, a count or a percentage
    /// (default 25%).
    #[arg(long, env = "DEPLOYER_MAX_UNAVAILABLE", value_parser = parse_count_or_percent, value_name = "N|N%")]
    pub(crate) max_unavailable: Option<String>,

    /// Stop every old pod before starting new ones, instead of a rolling update.
    #[arg(long, env = "DEPLOYER_RECREATE", conflicts_with = "rolling")]
    pub(crate) recreate: bool,

    /// How long a rollout may make no progress before it fails, in whole seconds (default
    /// 600s).
    #[arg(long, env = "DEPLOYER_PROGRESS_DEADLINE", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) progress_deadline: Option<Duration>,

    /// Also keep a ClusterIP Service of the same name for the ports (an apply without it
    /// deletes the Service an earlier one made).
    #[arg(long, env = "DEPLOYER_EXPOSE")]
    pub(crate) expose: bool,

    /// Why this change is made; shown by `rollout history`.
    #[arg(long, env = "DEPLOYER_CHANGE_CAUSE", value_name = "TEXT")]
    pub(crate) change_cause: Option<String>,

    /// Idempotency key: an apply retried with the same ID and spec changes nothing more (a
    /// UUID fits).
    #[arg(long, env = "DEPLOYER_REQUEST_ID", value_name = "ID")]
    pub(crate) request_id: Option<String>,

    /// Run the apply through the API server's admission without changing anything
    /// (server-side dry run); nothing is followed.
    #[arg(long, env = "DEPLOYER_DRY_RUN")]
    pub(crate) dry_run: bool,

    /// Do not follow the rollout: done once the apply is accepted.
    #[arg(long, env = "DEPLOYER_NO_WAIT")]
    pub(crate) no_wait: bool,
}

/// `deployment scale`.
#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    /// The Deployment.
    #[command(flatten)]
    pub(crate) deployment: DeploymentName,

    /// Desired pods, 0 to 1000.
    #[arg(long, env = "DEPLOYER_REPLICAS", value_name = "N")]
    pub(crate) replicas: u32,

    /// Whether to follow the rollout.
    #[command(flatten)]
    pub(crate) follow: FollowFlag,
}

/// `deployment restart` and `deployment rollout restart`.
#[derive(Debug, Args)]
pub(crate) struct RestartArgs {
    /// The Deployment.
    #[command(flatten)]
    pub(crate) deployment: DeploymentName,

    /// Idempotency key: a restart retried with the same ID restarts nothing more.
    #[arg(long, env = "DEPLOYER_REQUEST_ID", value_name = "ID")]
    pub(crate) request_id: Option<String>,

    /// Whether to follow the rollout.
    #[command(flatten)]
    pub(crate) follow: FollowFlag,
}

/// `deployment rollout undo`.
#[derive(Debug, Args)]
pub(crate) struct UndoArgs {
    /// The Deployment.
    #[command(flatten)]
    pub(crate) deployment: DeploymentName,

    /// The revision to go back to (see `rollout history`); the one before the current when
    /// unset.
    #[arg(long, env = "DEPLOYER_TO_REVISION", value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub(crate) to_revision: Option<i64>,

    /// Idempotency key: an undo retried with the same ID rolls back nothing more.
    #[arg(long, env = "DEPLOYER_REQUEST_ID", value_name = "ID")]
    pub(crate) request_id: Option<String>,

    /// Whether to follow the rollout.
    #[command(flatten)]
    pub(crate) follow: FollowFlag,
}

/// `deployment delete`.
#[derive(Debug, Args)]
pub(crate) struct DeploymentDeleteArgs {
    /// The Deployment.
    #[command(flatten)]
    pub(crate) deployment: DeploymentName,

    /// Answer once the Deployment, its ReplicaSets, pods and Service are gone.
    #[arg(long, env = "DEPLOYER_DELETE_WAIT")]
    pub(crate) wait: bool,
}

/// `N` or `N%` (a count or a percentage, as a rolling update's max surge and max
/// unavailable); the server judges the bounds.
pub(crate) fn parse_count_or_percent(text: &str) -> Result<String, String> {
    let digits = text.strip_suffix('%').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "expected a count or a percentage (e.g. 1 or 25%), got {text:?}"
        ))
    }
}

/// `KEY=VALUE` (the value may be empty and may contain '=').
pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// `[NAME:]PORT[/tcp|udp|sctp]`.
pub(crate) fn parse_port(text: &str) -> Result<pb::ContainerPort, String> {
    let (rest, protocol) = match text.rsplit_once('/') {
        Some((rest, protocol)) => {
            let protocol = match protocol.to_ascii_lowercase().as_str() {
                "tcp" => pb::Protocol::Tcp,
                "udp" => pb::Protocol::Udp,
                "sctp" => pb::Protocol::Sctp,
                other => return Err(format!("unknown protocol {other:?} (tcp, udp or sctp)")),
            };
            (rest, protocol)
        }
        None => (text, pb::Protocol::Tcp),
    };
    let (name, number) = match rest.split_once(':') {
        Some((name, number)) => (name, number),
        None => ("", rest),
    };
    let port: u32 = number
        .parse()
        .ok()
        .filter(|port| (1..=65_535).contains(port))
        .ok_or_else(|| format!("{number:?} is not a port number (1 to 65535)"))?;
    Ok(pb::ContainerPort {
        name: name.to_owned(),
        container_port: port,
        protocol: protocol.into(),
    })
}

/// A duration: a number with a unit (ms, s, m, h), several in a row (1h30m), or a bare
/// number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (e.g. 90s, 2m, 1h30m, 500ms)");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        for (text, seconds) in [
            ("90s", 90.0),
            ("2m", 120.0),
            ("1h30m", 5400.0),
            ("500ms", 0.5),
            ("45", 45.0),
            ("1m30s", 90.0),
        ] {
            assert_eq!(
                parse_duration(text).map(|d| d.as_secs_f64()),
                Ok(seconds),
                "{text}"
            );
        }
        for bad in ["", "s", "1x", "m5", "1.5s", "-3s", "3 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports_parse() {
        let port = parse_port("http:8080/udp").expect("a port");
        assert_eq!(
            (port.name.as_str(), port.container_port, port.protocol()),
            ("http", 8080, pb::Protocol::Udp)
        );
        let port = parse_port("80").expect("a port");
        assert_eq!(
            (port.name.as_str(), port.container_port, port.protocol()),
            ("", 80, pb::Protocol::Tcp)
        );
        for bad in ["0", "65536", "x", "80/quic", ":", "http:"] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_values_parse() {
        assert_eq!(
            parse_key_value("A=b=c"),
            Ok(("A".to_owned(), "b=c".to_owned()))
        );
        assert_eq!(parse_key_value("A="), Ok(("A".to_owned(), String::new())));
        assert!(parse_key_value("A").is_err());
        assert!(parse_key_value("=b").is_err());
    }

    #[test]
    fn the_token_is_never_in_debug_output() {
        let cli = Cli::try_parse_from([
            "deployctl",
            "--token",
            "very-secret-token",
            "status",
            "web",
            "-n",
            "demo",
        ])
        .expect("parses");
        assert!(!format!("{cli:?}").contains("very-secret-token"));
    }

    #[test]
    fn apply_takes_the_deploy_flags_and_a_strategy() {
        let cli = Cli::try_parse_from([
            "deployctl",
            "deployment",
            "apply",
            "nginx:1.27",
            "-n",
            "demo",
            "--name",
            "web",
            "--replicas",
            "3",
            "--env",
            "A=1",
            "--port",
            "http:80",
            "--label",
            "tier=front",
            "--max-surge",
            "1",
            "--max-unavailable",
            "0",
            "--progress-deadline",
            "1m",
            "--expose",
            "--change-cause",
            "first",
            "--timeout",
            "2m",
            "--",
            "--verbose",
        ])
        .expect("parses");
        let Command::Deployment(DeploymentCommand::Apply(apply)) = cli.command else {
            panic!("not an apply: {cli:?}");
        };
        assert_eq!(apply.replicas, Some(3));
        assert_eq!(apply.max_surge.as_deref(), Some("1"));
        assert_eq!(apply.max_unavailable.as_deref(), Some("0"));
        assert_eq!(apply.progress_deadline, Some(Duration::from_secs(60)));
        assert!(apply.expose && !apply.recreate && !apply.no_wait);
        assert_eq!(apply.template.args, ["--verbose"]);
        assert_eq!(apply.template.ports[0].container_port, 80);
        assert_eq!(cli.timeout, Some(Duration::from_secs(120)));
    }

    #[test]
    fn recreate_excludes_the_rolling_update_settings() {
        let apply = [
            "deployctl",
            "deployment",
            "apply",
            "app:1",
            "-n",
            "demo",
            "--recreate",
        ];
        assert!(Cli::try_parse_from(apply).is_ok());
        for extra in [["--max-surge", "1"], ["--max-unavailable", "25%"]] {
            let args: Vec<&str> = apply.iter().chain(extra.iter()).copied().collect();
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
        for bad in ["x", "25%%", "%", "-1", "1.5"] {
            assert!(parse_count_or_percent(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_count_or_percent("25%"), Ok("25%".to_owned()));
    }

    #[test]
    fn the_rollout_commands_parse() {
        let parse = |args: &[&str]| {
            let mut all = vec!["deployctl", "deployment"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|cli| cli.command)
        };
        assert!(matches!(
            parse(&["rollout", "status", "web", "-n", "demo"]),
            Ok(Command::Deployment(DeploymentCommand::Rollout(
                RolloutCommand::Status(_)
            )))
        ));
        let Ok(Command::Deployment(DeploymentCommand::Rollout(RolloutCommand::Undo(undo)))) =
            parse(&[
                "rollout",
                "undo",
                "web",
                "-n",
                "demo",
                "--to-revision",
                "2",
                "--wait",
            ])
        else {
            panic!("undo does not parse");
        };
        assert_eq!((undo.to_revision, undo.follow.wait), (Some(2), true));
        assert!(parse(&["rollout", "undo", "web", "-n", "demo", "--to-revision", "0"]).is_err());
        assert!(parse(&["rollout", "history", "web", "-n", "demo"]).is_ok());
        assert!(parse(&["rollout", "restart", "web", "-n", "demo"]).is_ok());
        assert!(parse(&["restart", "web", "-n", "demo", "--request-id", "r1"]).is_ok());
        assert!(
            parse(&["scale", "web", "-n", "demo"]).is_err(),
            "--replicas is required"
        );
        assert!(parse(&["scale", "web", "-n", "demo", "--replicas", "0"]).is_ok());
        assert!(parse(&["get", "web", "-n", "demo"]).is_ok());
        assert!(parse(&["list", "-n", "demo", "-l", "tier=front"]).is_ok());
        assert!(parse(&["delete", "web", "-n", "demo", "--wait"]).is_ok());
        assert!(parse(&["frobnicate", "web", "-n", "demo"]).is_err());
    }

    #[test]
    fn watch_needs_a_name_or_a_selector_not_both() {
        assert!(Cli::try_parse_from(["deployctl", "watch", "-n", "demo"]).is_err());
        assert!(
            Cli::try_parse_from(["deployctl", "watch", "web", "-l", "a=b", "-n", "demo"]).is_err()
        );
        assert!(Cli::try_parse_from(["deployctl", "watch", "web", "-n", "demo"]).is_ok());
    }
}
