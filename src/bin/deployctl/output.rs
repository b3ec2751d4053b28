//! What deployctl shows, in three modes:
//!
//! - live (stdout is a terminal, `--output auto`): a spinner line showing the pod's phase,
//!   health, reason, container state and the latest Event, a history line above it per
//!   change of health and per Warning event, and a ✓/✗ summary line at the end;
//! - plain (stdout is not a terminal, or `--output plain`): one line per status change or
//!   event, prefixed with the seconds since the command started, then the summary;
//! - json (`--output json`): one JSON object per line, each with a `type`; the last is always
//!   the `result`. Field names are stable: see [`PodJson`], [`EventJson`], [`ResultJson`].
//!
//! Errors go to stderr in every mode, as `deployctl: CODE: message`.
//!
//! The Deployment commands show the same way: a rollout's pods and their changes as a pod
//! watch shows them, and the rollout itself as a progress line (see `deployment`).

mod deployment;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::time::{Duration, Instant};

use console::{Style, style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use k8s_deployer::proto::deployer::v1 as pb;
use pb::container_state::State;
use serde::Serialize;

use crate::args::OutputFormat;
use crate::exit::{self, Failure, code_name};
use deployment::{
    DeploymentJson, RevisionJson, RolloutEventJson, deployment_table, deployments_table,
    event_subject, phase_style, revisions_table,
};
pub(crate) use deployment::{phase_name, progress_line, rollout_of, rollout_reason_name};

/// How a command ended well.
#[derive(Debug, Default)]
pub(crate) struct Success {
    /// The summary line, if the command has one (✓ ... in live mode).
    pub(crate) summary: Option<String>,
    /// The pod concerned, in its last known state.
    pub(crate) pod: Option<pb::PodStatus>,
    /// The Deployment concerned, in its last known state.
    pub(crate) deployment: Option<pb::Deployment>,
}

/// A change a Deployment command made (or would make, or found made already).
#[derive(Debug)]
pub(crate) struct Change<'a> {
    /// The JSON record's type: applied, scaled, restarted, rolled_back, deleting.
    pub(crate) kind: &'static str,
    /// What happened, for people: "created deployment demo/web (...)".
    pub(crate) text: String,
    /// Whether the call changed anything.
    pub(crate) changed: bool,
    /// apply: whether it created the Deployment.
    pub(crate) created: Option<bool>,
    /// apply: a dry run.
    pub(crate) dry_run: Option<bool>,
    /// apply: the pod security profile the template was hardened to.
    pub(crate) pod_security: Option<String>,
    /// undo: the revision whose template is now live.
    pub(crate) rolled_back_to: Option<i64>,
    /// The Deployment after the change.
    pub(crate) deployment: &'a pb::Deployment,
}

/// The three ways of showing things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Spinner and colours on a terminal.
    Live,
    /// One line per change.
    Plain,
    /// One JSON object per line.
    Json,
}

impl Mode {
    /// The mode for `--output`, given whether stdout is a terminal.
    pub(crate) fn choose(format: OutputFormat, stdout_is_terminal: bool) -> Mode {
        match format {
            OutputFormat::Auto if stdout_is_terminal => Mode::Live,
            OutputFormat::Auto | OutputFormat::Plain => Mode::Plain,
            OutputFormat::Json => Mode::Json,
        }
    }
}

/// One command's output: the bookkeeping every mode shares, and the renderer of the mode
/// chosen at the start.
pub(crate) struct Output {
    progress: Progress,
    renderer: Box<dyn Renderer>,
}

/// What the command has seen so far, for the renderers to read.
struct Progress {
    started: Instant,
    /// What the status line waits for before any pod is known.
    target: String,
    /// The latest status of each watched pod, by name.
    pods: BTreeMap<String, pb::PodStatus>,
    /// This command created the pod it follows (so "not found yet" is old news).
    deployed: bool,
    /// The Deployment whose rollout is followed, in its latest state.
    deployment: Option<pb::Deployment>,
}

/// Deploy's answer, as the renderers show it.
struct Deployed<'a> {
    pod: &'a pb::PodStatus,
    created: bool,
    dry_run: bool,
    /// "created", "found (same request_id)" or "dry run: would create".
    what: &'static str,
    /// baseline or restricted.
    profile: String,
}

/// How one mode shows what happens. [`Output`] keeps the pods and calls these in order.
trait Renderer {
    /// Deploy answered.
    fn deployed(&mut self, progress: &Progress, deployed: &Deployed<'_>);
    /// A snapshot or resync (`kind`) arrived; its pods are shown one by one after this.
    fn snapshot(
        &mut self,
        _progress: &Progress,
        _sequence: u64,
        _snapshot: &pb::Snapshot,
        _kind: &'static str,
    ) {
    }
    /// A pod (`kind` pod or deleted) arrived on the stream, before it is shown.
    fn streamed(&mut self, _sequence: u64, _pod: &pb::PodStatus, _kind: &'static str) {}
    /// A pod's status, now among the progress's pods.
    fn show(&mut self, _progress: &Progress, _pod: &pb::PodStatus, _kind: &str) {}
    /// A pod is no longer followed.
    fn forget(&mut self, _name: &str) {}
    /// A Kubernetes Event about a watched pod.
    fn event(&mut self, progress: &Progress, sequence: u64, event: &pb::PodEvent);
    /// Something changed: redraw what shows the current state.
    fn refresh(&mut self, _progress: &Progress) {}
    /// Something the user should know that is not the pod's status.
    fn note(&self, text: &str) {
        eprintln!("deployctl: {text}");
    }
    /// One pod in full (`status`).
    fn status(&mut self, pod: &pb::PodStatus);
    /// The pods of a namespace (`list`).
    fn list(&mut self, namespace: &str, pods: &[pb::PodStatus]);
    /// Deletion began (`delete`).
    fn deleting(&mut self, progress: &Progress, pod: &pb::PodStatus);
    /// The end: the summary or the error.
    fn finish(&mut self, progress: &Progress, result: &Result<Success, Failure>, exit: u8);
    /// A Deployment command's change.
    fn change(&mut self, progress: &Progress, change: &Change<'_>);
    /// A rollout snapshot or resync (`kind`) arrived; its pods are shown one by one after this.
    fn rollout_snapshot(
        &mut self,
        progress: &Progress,
        sequence: u64,
        snapshot: &pb::RolloutSnapshot,
        kind: &'static str,
    );
    /// The Deployment of a followed rollout changed (now in `progress`).
    fn progress(&mut self, progress: &Progress, sequence: u64, deployment: &pb::Deployment);
    /// A Kubernetes Event about the Deployment, one of its ReplicaSets or pods.
    fn rollout_event(&mut self, progress: &Progress, sequence: u64, event: &pb::RolloutEvent);
    /// One Deployment in full (`deployment get`).
    fn deployment(&mut self, deployment: &pb::Deployment);
    /// The Deployments of a namespace (`deployment list`).
    fn deployments(&mut self, namespace: &str, deployments: &[pb::Deployment]);
    /// A Deployment's revisions (`rollout history`).
    fn revisions(&mut self, name: &str, revisions: &[pb::Revision]);
}

impl Output {
    /// A renderer in `mode`, its clock started now.
    pub(crate) fn new(mode: Mode) -> Output {
        let renderer: Box<dyn Renderer> = match mode {
            Mode::Live => Box::new(Live::default()),
            Mode::Plain => Box::new(Plain::default()),
            Mode::Json => Box::new(Json),
        };
        Output {
            progress: Progress {
                started: Instant::now(),
                target: String::new(),
                pods: BTreeMap::new(),
                deployed: false,
                deployment: None,
            },
            renderer,
        }
    }

    /// Time since the command started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.progress.started.elapsed()
    }

    /// Deploy answered.
    pub(crate) fn deployed(&mut self, response: &pb::DeployResponse, dry_run: bool) {
        let Some(pod) = &response.pod else { return };
        self.progress.deployed = true;
        self.progress.target = pod.name.clone();
        let profile = profile_name(response.pod_security);
        let what = if dry_run {
            "dry run: would create"
        } else if response.created {
            "created"
        } else {
            "found (same request_id)"
        };
        let deployed = Deployed {
            pod,
            created: response.created,
            dry_run,
            what,
            profile,
        };
        self.renderer.deployed(&self.progress, &deployed);
    }

    /// A stream is about to be followed; `target` says what for the status line.
    pub(crate) fn following(&mut self, target: &str) {
        self.progress.target = target.to_owned();
        self.renderer.refresh(&self.progress);
    }

    /// A snapshot (first message) or resync (full state after a gap).
    pub(crate) fn snapshot(&mut self, sequence: u64, snapshot: &pb::Snapshot, resync: bool) {
        let kind = if resync { "resync" } else { "snapshot" };
        self.renderer
            .snapshot(&self.progress, sequence, snapshot, kind);
        self.replace_pods(&snapshot.pods);
    }

    /// The pods of a snapshot replace those known: forget the others, show these.
    fn replace_pods(&mut self, pods: &[pb::PodStatus]) {
        let gone: Vec<String> = self
            .progress
            .pods
            .keys()
            .filter(|name| !pods.iter().any(|p| &p.name == *name))
            .cloned()
            .collect();
        for name in gone {
            self.progress.pods.remove(&name);
            self.renderer.forget(&name);
        }
        for pod in pods {
            self.show(pod, "pod");
        }
        self.renderer.refresh(&self.progress);
    }

    /// A Deployment command's change.
    pub(crate) fn change(&mut self, change: &Change<'_>) {
        self.progress.target = change.deployment.name.clone();
        self.renderer.change(&self.progress, change);
    }

    /// A rollout's snapshot (first message) or resync (full state after a gap).
    pub(crate) fn rollout_snapshot(
        &mut self,
        sequence: u64,
        snapshot: &pb::RolloutSnapshot,
        resync: bool,
    ) {
        let kind = if resync { "resync" } else { "snapshot" };
        self.progress.deployment = snapshot.deployment.clone();
        self.renderer
            .rollout_snapshot(&self.progress, sequence, snapshot, kind);
        self.replace_pods(&snapshot.pods);
    }

    /// The Deployment of the followed rollout changed.
    pub(crate) fn progress(&mut self, sequence: u64, deployment: &pb::Deployment) {
        self.progress.deployment = Some(deployment.clone());
        self.renderer.progress(&self.progress, sequence, deployment);
        self.renderer.refresh(&self.progress);
    }

    /// An Event about the followed rollout's Deployment, ReplicaSets or pods.
    pub(crate) fn rollout_event(&mut self, sequence: u64, event: &pb::RolloutEvent) {
        self.renderer.rollout_event(&self.progress, sequence, event);
        self.renderer.refresh(&self.progress);
    }

    /// One Deployment in full (`deployment get`).
    pub(crate) fn deployment(&mut self, deployment: &pb::Deployment) {
        self.renderer.deployment(deployment);
    }

    /// The Deployments of a namespace (`deployment list`).
    pub(crate) fn deployments(&mut self, namespace: &str, deployments: &[pb::Deployment]) {
        self.renderer.deployments(namespace, deployments);
    }

    /// A Deployment's revisions (`rollout history`).
    pub(crate) fn revisions(&mut self, name: &str, revisions: &[pb::Revision]) {
        self.renderer.revisions(name, revisions);
    }

    /// A pod was created or changed.
    pub(crate) fn pod(&mut self, sequence: u64, pod: &pb::PodStatus) {
        self.renderer.streamed(sequence, pod, "pod");
        self.show(pod, "pod");
        self.renderer.refresh(&self.progress);
    }

    /// A pod is gone.
    pub(crate) fn deleted(&mut self, sequence: u64, pod: &pb::PodStatus) {
        self.renderer.streamed(sequence, pod, "deleted");
        self.show(pod, "deleted");
        self.progress.pods.remove(&pod.name);
        self.renderer.refresh(&self.progress);
    }

    /// A Kubernetes Event about a watched pod.
    pub(crate) fn event(&mut self, sequence: u64, event: &pb::PodEvent) {
        self.renderer.event(&self.progress, sequence, event);
        self.renderer.refresh(&self.progress);
    }

    /// Something the user should know that is not the pod's status (a reconnection).
    pub(crate) fn note(&mut self, text: &str) {
        self.renderer.note(text);
    }

    /// One pod in full (`status`).
    pub(crate) fn status(&mut self, pod: &pb::PodStatus) {
        self.renderer.status(pod);
    }

    /// The pods of a namespace (`list`).
    pub(crate) fn list(&mut self, namespace: &str, pods: &[pb::PodStatus]) {
        self.renderer.list(namespace, pods);
    }

    /// Deletion began (`delete`).
    pub(crate) fn deleting(&mut self, pod: &pb::PodStatus) {
        self.progress.target = pod.name.clone();
        self.renderer.deleting(&self.progress, pod);
    }

    /// The end: the summary or the error, and in JSON the `result` record. Returns the exit
    /// code.
    pub(crate) fn finish(&mut self, result: &Result<Success, Failure>) -> u8 {
        let exit = match result {
            Ok(_) => exit::SUCCESS,
            Err(failure) => failure.exit,
        };
        self.renderer.finish(&self.progress, result, exit);
        exit
    }

    /// Record a pod's status and show it.
    fn show(&mut self, pod: &pb::PodStatus, kind: &str) {
        self.progress.pods.insert(pod.name.clone(), pod.clone());
        self.renderer.show(&self.progress, pod, kind);
    }
}

/// A live status line on a terminal, with history lines above it and colours.
#[derive(Default)]
struct Live {
    bar: Option<ProgressBar>,
    /// The last (health, reason) shown per pod, so that a change that shows nothing new
    /// prints nothing.
    shown: HashMap<String, String>,
    /// The latest Event, for the status line.
    latest_event: Option<String>,
    /// The last (phase, reason, revision) of the followed rollout shown.
    rollout_shown: Option<String>,
}

impl Live {
    fn bar(&mut self) -> &ProgressBar {
        self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            let template =
                ProgressStyle::with_template("{spinner:.cyan} {wide_msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(template);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
    }

    /// A line above the live status line (or a plain line while there is none).
    fn history(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => emit(format_args!("{text}\n")),
        }
    }

    /// A Warning as a history line; any Event on the status line.
    fn any_event(&mut self, event: &EventLine<'_>) {
        if event.r#type == "Warning" {
            self.history(&format!(
                "  {} {}  {}: {}{}",
                style("⚠").yellow(),
                event.subject,
                style(event.reason).yellow(),
                event.message,
                count_text(event.count)
            ));
        }
        self.latest_event = Some(format!("{}: {}", event.reason, event.message));
    }

    /// A history line when the rollout's phase, reason or revision changed.
    fn rollout_history(&mut self, deployment: &pb::Deployment) {
        let rollout = rollout_of(deployment);
        let key = format!(
            "{:?} {:?} {}",
            rollout.phase(),
            rollout.reason(),
            rollout.revision
        );
        if self.rollout_shown.as_ref() == Some(&key) {
            return;
        }
        self.rollout_shown = Some(key);
        let phase = phase_name(rollout.phase());
        let mut text = format!(
            "  {} {}: {}",
            phase_style(rollout.phase()).apply_to("→"),
            deployment.name,
            phase_style(rollout.phase()).bold().apply_to(phase)
        );
        if let Some(reason) = rollout_reason_name(rollout.reason()) {
            text.push_str(&format!(" {}", style(reason).bold()));
        }
        text.push_str(&format!(" (revision {})", rollout.revision));
        if !rollout.message.is_empty() {
            text.push_str(&format!("  {}", style(&rollout.message).dim()));
        }
        self.history(&text);
    }
}

impl Renderer for Live {
    fn deployed(&mut self, _progress: &Progress, deployed: &Deployed<'_>) {
        let pod = deployed.pod;
        self.history(&format!(
            "{} {} pod {}/{} ({}, pod security {})",
            style("✓").green(),
            deployed.what,
            pod.namespace,
            style(&pod.name).bold(),
            pod.image,
            deployed.profile
        ));
    }

    /// A history line when the pod's health or reason changed.
    fn show(&mut self, progress: &Progress, pod: &pb::PodStatus, _kind: &str) {
        let key = format!("{:?} {:?}", pod.health(), pod.reason());
        if self.shown.get(&pod.name) == Some(&key) {
            return;
        }
        self.shown.insert(pod.name.clone(), key);
        let mut text = format!(
            "  {} {}",
            health_style(pod.health()).apply_to("→"),
            health_text(pod.health(), true)
        );
        if let Some(reason) = reason_name(pod.reason()) {
            text.push_str(&format!(" {}", style(reason).bold()));
        }
        if !pod.node.is_empty() && pod.health() == pb::Health::Ready {
            text.push_str(&format!("  on {}, IP {}", pod.node, pod.pod_ip));
        } else if !pod.message.is_empty() {
            text.push_str(&format!("  {}", style(&pod.message).dim()));
        }
        if progress.pods.len() > 1 || progress.target != pod.name {
            text = format!("  {}{}", pod.name, text);
        }
        self.history(&text);
    }

    fn forget(&mut self, name: &str) {
        self.shown.remove(name);
    }

    fn event(&mut self, _progress: &Progress, _sequence: u64, event: &pb::PodEvent) {
        self.any_event(&EventLine::from(event));
    }

    /// Redraw the live status line.
    fn refresh(&mut self, progress: &Progress) {
        let mut parts: Vec<String> = Vec::new();
        if let Some(deployment) = &progress.deployment {
            let rollout = rollout_of(deployment);
            parts.push(
                phase_style(rollout.phase())
                    .apply_to(progress_line(deployment))
                    .to_string(),
            );
        }
        match progress.pods.len() {
            _ if progress.deployment.is_some() => {}
            0 => parts.push(format!("waiting for {}", progress.target)),
            1 => {
                if let Some(pod) = progress.pods.values().next() {
                    parts.push(style(&pod.name).bold().to_string());
                    if !pod.phase.is_empty() {
                        parts.push(pod.phase.clone());
                    }
                    parts.push(health_text(pod.health(), true));
                    if let Some(reason) = reason_name(pod.reason()) {
                        parts.push(reason.to_owned());
                    }
                    let containers = containers_text(pod);
                    if containers != "-" {
                        parts.push(containers);
                    }
                }
            }
            n => {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for pod in progress.pods.values() {
                    *counts
                        .entry(enum_name(pod.health().as_str_name(), "HEALTH_"))
                        .or_default() += 1;
                }
                let counts: Vec<String> = counts
                    .into_iter()
                    .map(|(health, count)| format!("{count} {health}"))
                    .collect();
                parts.push(format!("{n} pods: {}", counts.join(", ")));
            }
        }
        if let Some(event) = &self.latest_event {
            parts.push(style(event).dim().to_string());
        }
        let message = parts.join(" · ");
        self.bar().set_message(message);
    }

    fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("deployctl: {text}")),
            None => eprintln!("deployctl: {text}"),
        }
    }

    fn status(&mut self, pod: &pb::PodStatus) {
        emit(format_args!("{}", status_table(pod, true)));
    }

    fn list(&mut self, namespace: &str, pods: &[pb::PodStatus]) {
        list_table(namespace, pods, true);
    }

    fn deleting(&mut self, _progress: &Progress, pod: &pb::PodStatus) {
        self.history(&format!(
            "{} deleting pod {}/{}",
            style("●").cyan(),
            pod.namespace,
            style(&pod.name).bold()
        ));
    }

    fn change(&mut self, _progress: &Progress, change: &Change<'_>) {
        let mark = if change.changed {
            style("✓").green()
        } else {
            style("=").dim()
        };
        self.history(&format!("{mark} {}", change.text));
    }

    fn rollout_snapshot(
        &mut self,
        _progress: &Progress,
        _sequence: u64,
        snapshot: &pb::RolloutSnapshot,
        _kind: &'static str,
    ) {
        if let Some(deployment) = &snapshot.deployment {
            self.rollout_history(deployment);
        }
    }

    fn progress(&mut self, _progress: &Progress, _sequence: u64, deployment: &pb::Deployment) {
        self.rollout_history(deployment);
    }

    fn rollout_event(&mut self, _progress: &Progress, _sequence: u64, event: &pb::RolloutEvent) {
        self.any_event(&EventLine::from(event));
    }

    fn deployment(&mut self, deployment: &pb::Deployment) {
        emit(format_args!("{}", deployment_table(deployment, true)));
    }

    fn deployments(&mut self, namespace: &str, deployments: &[pb::Deployment]) {
        show_deployments(namespace, deployments, true);
    }

    fn revisions(&mut self, name: &str, revisions: &[pb::Revision]) {
        show_revisions(name, revisions);
    }

    fn finish(&mut self, _progress: &Progress, result: &Result<Success, Failure>, _exit: u8) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        match result {
            Ok(success) => {
                if let Some(summary) = &success.summary {
                    emit(format_args!("{} {summary}\n", style("✓").green().bold()));
                }
            }
            Err(failure) => report(
                &format!(
                    "{} {failure}",
                    Style::new().for_stderr().red().bold().apply_to("✗")
                ),
                failure,
            ),
        }
    }
}

/// One line per change, each prefixed with the seconds since the start.
#[derive(Default)]
struct Plain {
    /// The last line shown per pod, so that a change that shows nothing new prints nothing.
    shown: HashMap<String, String>,
    /// The last rollout line shown, for the same reason.
    rollout_shown: Option<String>,
}

impl Plain {
    /// `rollout  web: PROGRESSING 2/3 updated, 1 available (revision 2)  Waiting for ...`,
    /// unless it would repeat the last one.
    fn rollout_line(&mut self, progress: &Progress, kind: &str, deployment: &pb::Deployment) {
        let rollout = rollout_of(deployment);
        let text = format!("{}  {}", progress_line(deployment), rollout.message);
        if self.rollout_shown.as_ref() != Some(&text) {
            line(progress, &format!("{kind:<8} {text}"));
            self.rollout_shown = Some(text);
        }
    }
}

/// `event    ReplicaSet/web-5d8  Normal  SuccessfulCreate: Created pod: ...`.
fn plain_event(progress: &Progress, event: &EventLine<'_>) {
    line(
        progress,
        &format!(
            "{:<8} {}  {:<7} {}: {}{}",
            "event",
            event.subject,
            event.r#type,
            event.reason,
            event.message,
            count_text(event.count)
        ),
    );
}

impl Renderer for Plain {
    fn deployed(&mut self, progress: &Progress, deployed: &Deployed<'_>) {
        let pod = deployed.pod;
        line(
            progress,
            &format!(
                "{:<8} {}/{}  {}  pod security {}",
                deployed.what, pod.namespace, pod.name, pod.image, deployed.profile
            ),
        );
    }

    fn snapshot(
        &mut self,
        progress: &Progress,
        _: u64,
        snapshot: &pb::Snapshot,
        kind: &'static str,
    ) {
        if snapshot.not_found && !progress.deployed {
            line(
                progress,
                &format!(
                    "{kind:<8} {} does not exist yet; waiting for it",
                    progress.target
                ),
            );
        }
    }

    /// A line, unless it would repeat the pod's last one.
    fn show(&mut self, progress: &Progress, pod: &pb::PodStatus, kind: &str) {
        let text = format!(
            "{kind:<8} {}  {:<9} {:<11} {:<18} {}{}",
            pod.name,
            if pod.phase.is_empty() {
                "-"
            } else {
                &pod.phase
            },
            enum_name(pod.health().as_str_name(), "HEALTH_"),
            reason_name(pod.reason()).unwrap_or("-"),
            containers_text(pod),
            if pod.message.is_empty() {
                String::new()
            } else {
                format!("  {}", pod.message)
            }
        );
        if self.shown.get(&pod.name) != Some(&text) {
            self.shown.insert(pod.name.clone(), text.clone());
            line(progress, &text);
        }
    }

    fn forget(&mut self, name: &str) {
        self.shown.remove(name);
    }

    fn event(&mut self, progress: &Progress, _sequence: u64, event: &pb::PodEvent) {
        plain_event(progress, &EventLine::from(event));
    }

    fn change(&mut self, progress: &Progress, change: &Change<'_>) {
        line(progress, &change.text);
    }

    fn rollout_snapshot(
        &mut self,
        progress: &Progress,
        _sequence: u64,
        snapshot: &pb::RolloutSnapshot,
        kind: &'static str,
    ) {
        match &snapshot.deployment {
            Some(deployment) => self.rollout_line(progress, kind, deployment),
            None if snapshot.not_found && !progress.deployed => line(
                progress,
                &format!(
                    "{kind:<8} deployment {} does not exist yet; waiting for it",
                    progress.target
                ),
            ),
            None => {}
        }
    }

    fn progress(&mut self, progress: &Progress, _sequence: u64, deployment: &pb::Deployment) {
        self.rollout_line(progress, "rollout", deployment);
    }

    fn rollout_event(&mut self, progress: &Progress, _sequence: u64, event: &pb::RolloutEvent) {
        plain_event(progress, &EventLine::from(event));
    }

    fn deployment(&mut self, deployment: &pb::Deployment) {
        emit(format_args!("{}", deployment_table(deployment, false)));
    }

    fn deployments(&mut self, namespace: &str, deployments: &[pb::Deployment]) {
        show_deployments(namespace, deployments, false);
    }

    fn revisions(&mut self, name: &str, revisions: &[pb::Revision]) {
        show_revisions(name, revisions);
    }

    fn status(&mut self, pod: &pb::PodStatus) {
        emit(format_args!("{}", status_table(pod, false)));
    }

    fn list(&mut self, namespace: &str, pods: &[pb::PodStatus]) {
        list_table(namespace, pods, false);
    }

    fn deleting(&mut self, progress: &Progress, pod: &pb::PodStatus) {
        line(
            progress,
            &format!("deleting {}/{}", pod.namespace, pod.name),
        );
    }

    fn finish(&mut self, _progress: &Progress, result: &Result<Success, Failure>, _exit: u8) {
        match result {
            Ok(success) => {
                if let Some(summary) = &success.summary {
                    emit(format_args!("✓ {summary}\n"));
                }
            }
            Err(failure) => report(&format!("deployctl: {failure}"), failure),
        }
    }
}

/// One JSON object per line; the last is the `result`.
struct Json;

impl Renderer for Json {
    fn deployed(&mut self, _progress: &Progress, deployed: &Deployed<'_>) {
        record(
            "deployed",
            None,
            DeployedBody {
                created: deployed.created,
                dry_run: deployed.dry_run,
                pod_security: deployed.profile.clone(),
                pod: PodJson::from(deployed.pod),
            },
        );
    }

    fn snapshot(
        &mut self,
        _: &Progress,
        sequence: u64,
        snapshot: &pb::Snapshot,
        kind: &'static str,
    ) {
        record(
            kind,
            Some(sequence),
            SnapshotBody {
                not_found: snapshot.not_found,
                pods: snapshot.pods.iter().map(PodJson::from).collect(),
            },
        );
    }

    fn streamed(&mut self, sequence: u64, pod: &pb::PodStatus, kind: &'static str) {
        record(kind, Some(sequence), PodBody::from(pod));
    }

    fn event(&mut self, _progress: &Progress, sequence: u64, event: &pb::PodEvent) {
        record(
            "event",
            Some(sequence),
            EventBody {
                event: EventJson::from(event),
            },
        );
    }

    fn status(&mut self, pod: &pb::PodStatus) {
        record("pod", None, PodBody::from(pod));
    }

    fn list(&mut self, _namespace: &str, pods: &[pb::PodStatus]) {
        for pod in pods {
            record("pod", None, PodBody::from(pod));
        }
    }

    fn deleting(&mut self, _progress: &Progress, pod: &pb::PodStatus) {
        record("deleting", None, PodBody::from(pod));
    }

    fn change(&mut self, _progress: &Progress, change: &Change<'_>) {
        record(
            change.kind,
            None,
            ChangeBody {
                changed: change.changed,
                created: change.created,
                dry_run: change.dry_run,
                pod_security: change.pod_security.clone(),
                rolled_back_to: change.rolled_back_to,
                message: change.text.clone(),
                deployment: DeploymentJson::from(change.deployment),
            },
        );
    }

    fn rollout_snapshot(
        &mut self,
        _progress: &Progress,
        sequence: u64,
        snapshot: &pb::RolloutSnapshot,
        kind: &'static str,
    ) {
        record(
            kind,
            Some(sequence),
            RolloutSnapshotBody {
                not_found: snapshot.not_found,
                deployment: snapshot.deployment.as_ref().map(DeploymentJson::from),
                pods: snapshot.pods.iter().map(PodJson::from).collect(),
            },
        );
    }

    fn progress(&mut self, _progress: &Progress, sequence: u64, deployment: &pb::Deployment) {
        record(
            "progress",
            Some(sequence),
            DeploymentBody {
                deployment: DeploymentJson::from(deployment),
            },
        );
    }

    fn rollout_event(&mut self, _progress: &Progress, sequence: u64, event: &pb::RolloutEvent) {
        record(
            "event",
            Some(sequence),
            RolloutEventBody {
                event: RolloutEventJson::from(event),
            },
        );
    }

    fn deployment(&mut self, deployment: &pb::Deployment) {
        record(
            "deployment",
            None,
            DeploymentBody {
                deployment: DeploymentJson::from(deployment),
            },
        );
    }

    fn deployments(&mut self, _namespace: &str, deployments: &[pb::Deployment]) {
        for deployment in deployments {
            self.deployment(deployment);
        }
    }

    fn revisions(&mut self, _name: &str, revisions: &[pb::Revision]) {
        for revision in revisions {
            record(
                "revision",
                None,
                RevisionBody {
                    revision: RevisionJson::from(revision),
                },
            );
        }
    }

    fn finish(&mut self, progress: &Progress, result: &Result<Success, Failure>, exit: u8) {
        let (message, code, violations, pod, deployment, outcome) = match result {
            Ok(success) => (
                success.summary.clone().unwrap_or_default(),
                None,
                Vec::new(),
                success.pod.as_ref(),
                success.deployment.as_ref(),
                exit::outcome(exit),
            ),
            Err(failure) => (
                failure.message.clone(),
                failure.code.map(code_name),
                failure.violations.clone(),
                failure.pod.as_deref(),
                failure.deployment.as_deref(),
                failure.outcome(),
            ),
        };
        json(&ResultJson {
            r#type: "result",
            time: now(),
            ok: result.is_ok(),
            exit_code: exit,
            outcome,
            code,
            message,
            violations,
            pod: pod.map(PodJson::from),
            deployment: deployment.map(DeploymentJson::from),
            elapsed_ms: u64::try_from(progress.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        if let Err(failure) = result {
            report(&format!("deployctl: {failure}"), failure);
        }
    }
}

/// ` (x3)` for an Event seen three times; empty for one seen once.
fn count_text(count: i32) -> String {
    if count > 1 {
        format!(" (x{count})")
    } else {
        String::new()
    }
}

/// What the live and plain modes show of an Event, of a pod or of a rollout.
struct EventLine<'a> {
    /// The pod's name, or `Kind/name` of a rollout's object.
    subject: String,
    r#type: &'a str,
    reason: &'a str,
    message: &'a str,
    count: i32,
}

impl<'a> From<&'a pb::PodEvent> for EventLine<'a> {
    fn from(event: &'a pb::PodEvent) -> EventLine<'a> {
        EventLine {
            subject: event.pod.clone(),
            r#type: &event.r#type,
            reason: &event.reason,
            message: &event.message,
            count: event.count,
        }
    }
}

impl<'a> From<&'a pb::RolloutEvent> for EventLine<'a> {
    fn from(event: &'a pb::RolloutEvent) -> EventLine<'a> {
        EventLine {
            subject: event_subject(event),
            r#type: &event.r#type,
            reason: &event.reason,
            message: &event.message,
            count: event.count,
        }
    }
}

/// The table of `deployment list` on stdout; with none, a note on stderr instead.
fn show_deployments(namespace: &str, deployments: &[pb::Deployment], coloured: bool) {
    if deployments.is_empty() {
        eprintln!("No managed Deployments in namespace {namespace}.");
    } else {
        emit(format_args!("{}", deployments_table(deployments, coloured)));
    }
}

/// The table of `rollout history` on stdout; with none, a note on stderr instead.
fn show_revisions(name: &str, revisions: &[pb::Revision]) {
    if revisions.is_empty() {
        eprintln!("No revisions of deployment {name}.");
    } else {
        emit(format_args!("{}", revisions_table(revisions)));
    }
}

/// A failure on stderr: `headline`, then every violation when there are several.
fn report(headline: &str, failure: &Failure) {
    let mut text = headline.to_owned();
    if failure.violations.len() > 1 {
        for violation in &failure.violations {
            text.push_str(&format!("\n  - {violation}"));
        }
    }
    eprintln!("{text}");
}

/// The rows of `status`, the health `coloured` for a terminal.
fn status_table(pod: &pb::PodStatus, coloured: bool) -> String {
    let dash = |text: &str| {
        if text.is_empty() {
            "-".to_owned()
        } else {
            text.to_owned()
        }
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("pod", format!("{}/{}", pod.namespace, pod.name)),
        ("health", health_text(pod.health(), coloured)),
        ("reason", dash(reason_name(pod.reason()).unwrap_or(""))),
        ("message", dash(&pod.message)),
        ("phase", dash(&pod.phase)),
        ("image", dash(&pod.image)),
        ("node", dash(&pod.node)),
        ("pod IP", dash(&pod.pod_ip)),
        (
            "created",
            timestamp(pod.created.as_ref()).map_or_else(|| "-".to_owned(), |t| t.to_string()),
        ),
        ("request ID", dash(&pod.request_id)),
        (
            "conditions",
            dash(
                &pod.conditions
                    .iter()
                    .map(|c| format!("{}={}", c.r#type, c.status))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ),
    ];
    for container in &pod.containers {
        rows.push(("container", container_text(container)));
    }
    if pod.deleting {
        rows.push(("deleting", "yes".to_owned()));
    }
    let mut out = String::new();
    for (key, value) in rows {
        out.push_str(&format!("{key:<11} {value}\n"));
    }
    out
}

/// The table of `list` on stdout, the health `coloured` for a terminal; with no pods, a
/// note on stderr instead.
fn list_table(namespace: &str, pods: &[pb::PodStatus], coloured: bool) {
    if pods.is_empty() {
        // As kubectl does: stdout stays empty for scripts.
        eprintln!("No managed pods in namespace {namespace}.");
        return;
    }
    let width = pods.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<width$}  {:<12} {:<19} {:<9} {:<5} {:<8} {:<6} IMAGE\n",
        "NAME", "HEALTH", "REASON", "PHASE", "READY", "RESTARTS", "AGE"
    );
    let now = jiff::Timestamp::now();
    for pod in pods {
        let ready = pod.containers.iter().filter(|c| c.ready).count();
        let restarts: i32 = pod.containers.iter().map(|c| c.restart_count).sum();
        let age = age(pod.created.as_ref(), now);
        let health = format!("{:<12}", enum_name(pod.health().as_str_name(), "HEALTH_"));
        out.push_str(&format!(
            "{:<width$}  {} {:<19} {:<9} {:<5} {:<8} {:<6} {}\n",
            pod.name,
            if coloured {
                health_style(pod.health()).apply_to(health).to_string()
            } else {
                health
            },
            reason_name(pod.reason()).unwrap_or("-"),
            if pod.phase.is_empty() {
                "-"
            } else {
                &pod.phase
            },
            format!("{ready}/{}", pod.containers.len()),
            restarts,
            age,
            pod.image
        ));
    }
    emit(format_args!("{out}"));
}

/// A plain line, with the seconds since the start.
fn line(progress: &Progress, text: &str) {
    emit(format_args!(
        "{:>6.1}s  {text}\n",
        progress.started.elapsed().as_secs_f64()
    ));
}

/// One JSON record of `kind`, with the stream's sequence number when it came from one.
fn record(kind: &'static str, seq: Option<u64>, body: impl Serialize) {
    json(&Record {
        r#type: kind,
        seq,
        time: now(),
        body,
    });
}

fn json(value: &impl Serialize) {
    match serde_json::to_string(value) {
        Ok(line) => emit(format_args!("{line}\n")),
        Err(error) => eprintln!("deployctl: cannot encode JSON output: {error}"),
    }
}

/// Write to stdout. When its reader has gone (`deployctl watch ... | head`), stop as a
/// program killed by SIGPIPE would, rather than panic or follow a stream nobody reads.
fn emit(text: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush())
        && error.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(i32::from(exit::BROKEN_PIPE));
    }
}

/// `HEALTH_READY` → `READY`.
fn enum_name<'a>(name: &'a str, prefix: &str) -> &'a str {
    name.strip_prefix(prefix).unwrap_or(name)
}

/// The reason without its prefix, `None` when unspecified.
pub(crate) fn reason_name(reason: pb::Reason) -> Option<&'static str> {
    match reason {
        pb::Reason::Unspecified => None,
        other => Some(enum_name(other.as_str_name(), "REASON_")),
    }
}

/// The health without its prefix.
pub(crate) fn health_name(health: pb::Health) -> &'static str {
    enum_name(health.as_str_name(), "HEALTH_")
}

fn health_style(health: pb::Health) -> Style {
    match health {
        pb::Health::Ready | pb::Health::Succeeded => Style::new().green(),
        pb::Health::Failed => Style::new().red(),
        pb::Health::Degraded => Style::new().yellow(),
        pb::Health::Pending | pb::Health::Progressing => Style::new().cyan(),
        pb::Health::Deleted | pb::Health::Unspecified => Style::new().dim(),
    }
}

fn health_text(health: pb::Health, coloured: bool) -> String {
    let name = health_name(health);
    if coloured {
        health_style(health).bold().apply_to(name).to_string()
    } else {
        name.to_owned()
    }
}

/// `app:waiting(ContainerCreating)`, `app:running,ready`, `app:terminated(Error,exit=1)`.
/// `-` while no container reports a state.
fn containers_text(pod: &pb::PodStatus) -> String {
    if pod
        .containers
        .iter()
        .all(|c| c.state.as_ref().and_then(|s| s.state.as_ref()).is_none())
    {
        return "-".to_owned();
    }
    pod.containers
        .iter()
        .map(container_text)
        .collect::<Vec<_>>()
        .join(" ")
}

fn container_text(container: &pb::ContainerStatus) -> String {
    let state = match container.state.as_ref().and_then(|s| s.state.as_ref()) {
        Some(State::Waiting(waiting)) => format!("waiting({})", waiting.reason),
        Some(State::Running(_)) => "running".to_owned(),
        Some(State::Terminated(done)) => {
            format!("terminated({},exit={})", done.reason, done.exit_code)
        }
        None => "unknown".to_owned(),
    };
    let mut text = format!("{}:{state}", container.name);
    if container.ready {
        text.push_str(",ready");
    }
    if container.restart_count > 0 {
        text.push_str(&format!(",restarts={}", container.restart_count));
    }
    text
}

fn timestamp(time: Option<&prost_types::Timestamp>) -> Option<jiff::Timestamp> {
    let time = time?;
    jiff::Timestamp::new(time.seconds, time.nanos).ok()
}

fn rfc3339(time: Option<&prost_types::Timestamp>) -> Option<String> {
    timestamp(time).map(|t| t.to_string())
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// `3m` since `time`, `-` without one.
fn age(time: Option<&prost_types::Timestamp>, now: jiff::Timestamp) -> String {
    timestamp(time).map_or_else(
        || "-".to_owned(),
        |created| {
            let seconds = now.as_second().saturating_sub(created.as_second());
            short_duration(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
        },
    )
}

/// `baseline` or `restricted`, the profile a response says a pod (template) was hardened to.
pub(crate) fn profile_name(pod_security: i32) -> String {
    enum_name(
        pb::PodSecurity::try_from(pod_security)
            .map_or("POD_SECURITY_UNSPECIFIED", |p| p.as_str_name()),
        "POD_SECURITY_",
    )
    .to_lowercase()
}

/// `45s`, `3m`, `2h`, `5d`.
fn short_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86_400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// One JSON line: its type, the stream's sequence number (records of a WatchStatus stream
/// only), the time it was printed, then the fields of its type.
#[derive(Debug, Serialize)]
struct Record<T> {
    r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    time: String,
    #[serde(flatten)]
    body: T,
}

/// `deployed`.
#[derive(Debug, Serialize)]
struct DeployedBody {
    created: bool,
    dry_run: bool,
    /// baseline or restricted.
    pod_security: String,
    pod: PodJson,
}

/// `snapshot` and `resync`.
#[derive(Debug, Serialize)]
struct SnapshotBody {
    not_found: bool,
    pods: Vec<PodJson>,
}

/// `pod`, `deleted`, `deleting`.
#[derive(Debug, Serialize)]
struct PodBody {
    pod: PodJson,
}

impl From<&pb::PodStatus> for PodBody {
    fn from(pod: &pb::PodStatus) -> PodBody {
        PodBody {
            pod: PodJson::from(pod),
        }
    }
}

/// `event`.
#[derive(Debug, Serialize)]
struct EventBody {
    event: EventJson,
}

/// `applied`, `scaled`, `restarted`, `rolled_back`, `deleting` (Deployments).
#[derive(Debug, Serialize)]
struct ChangeBody {
    changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
    /// baseline or restricted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_security: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rolled_back_to: Option<i64>,
    message: String,
    deployment: DeploymentJson,
}

/// `snapshot` and `resync` of a rollout.
#[derive(Debug, Serialize)]
struct RolloutSnapshotBody {
    not_found: bool,
    deployment: Option<DeploymentJson>,
    pods: Vec<PodJson>,
}

/// `progress` and `deployment`.
#[derive(Debug, Serialize)]
struct DeploymentBody {
    deployment: DeploymentJson,
}

/// `event` of a rollout.
#[derive(Debug, Serialize)]
struct RolloutEventBody {
    event: RolloutEventJson,
}

/// `revision`.
#[derive(Debug, Serialize)]
struct RevisionBody {
    revision: RevisionJson,
}

/// A pod in JSON output (`pod` of the `deployed`, `pod`, `deleted`, `deleting` and `result`
/// records, and `pods` of `snapshot` and `resync`).
#[derive(Debug, Serialize)]
pub(crate) struct PodJson {
    namespace: String,
    name: String,
    uid: String,
    resource_version: String,
    /// PENDING, PROGRESSING, READY, DEGRADED, FAILED, SUCCEEDED, DELETED.
    health: &'static str,
    /// e.g. IMAGE_PULL_FAILED; null when there is nothing to say.
    reason: Option<&'static str>,
    message: String,
    /// Pending, Running, Succeeded, Failed, Unknown ("" before the first status).
    phase: String,
    image: String,
    request_id: Option<String>,
    node: Option<String>,
    pod_ip: Option<String>,
    /// Ready containers / all containers, and restarts of all containers.
    ready_containers: usize,
    containers_total: usize,
    restarts: i32,
    deleting: bool,
    created: Option<String>,
    start_time: Option<String>,
    labels: BTreeMap<String, String>,
    conditions: Vec<ConditionJson>,
    containers: Vec<ContainerJson>,
}

/// A pod condition in JSON output.
#[derive(Debug, Serialize)]
pub(crate) struct ConditionJson {
    r#type: String,
    status: String,
    reason: String,
    message: String,
}

impl From<&pb::Condition> for ConditionJson {
    fn from(condition: &pb::Condition) -> ConditionJson {
        ConditionJson {
            r#type: condition.r#type.clone(),
            status: condition.status.clone(),
            reason: condition.reason.clone(),
            message: condition.message.clone(),
        }
    }
}

/// A container in JSON output.
#[derive(Debug, Serialize)]
pub(crate) struct ContainerJson {
    name: String,
    image: String,
    ready: bool,
    started: bool,
    restart_count: i32,
    /// waiting, running, terminated or unknown.
    state: &'static str,
    /// The waiting or terminated reason (ContainerCreating, ErrImagePull, Error, ...).
    reason: Option<String>,
    message: Option<String>,
    exit_code: Option<i32>,
}

impl From<&pb::PodStatus> for PodJson {
    fn from(pod: &pb::PodStatus) -> PodJson {
        let some = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        PodJson {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            resource_version: pod.resource_version.clone(),
            health: health_name(pod.health()),
            reason: reason_name(pod.reason()),
            message: pod.message.clone(),
            phase: pod.phase.clone(),
            image: pod.image.clone(),
            request_id: some(&pod.request_id),
            node: some(&pod.node),
            pod_ip: some(&pod.pod_ip),
            ready_containers: pod.containers.iter().filter(|c| c.ready).count(),
            containers_total: pod.containers.len(),
            restarts: pod.containers.iter().map(|c| c.restart_count).sum(),
            deleting: pod.deleting,
            created: rfc3339(pod.created.as_ref()),
            start_time: rfc3339(pod.start_time.as_ref()),
            labels: pod
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            conditions: pod.conditions.iter().map(ConditionJson::from).collect(),
            containers: pod.containers.iter().map(ContainerJson::from).collect(),
        }
    }
}

impl From<&pb::ContainerStatus> for ContainerJson {
    fn from(container: &pb::ContainerStatus) -> ContainerJson {
        let (state, reason, message, exit_code) =
            match container.state.as_ref().and_then(|s| s.state.as_ref()) {
                Some(State::Waiting(w)) => (
                    "waiting",
                    Some(w.reason.clone()),
                    Some(w.message.clone()),
                    None,
                ),
                Some(State::Running(_)) => ("running", None, None, None),
                Some(State::Terminated(t)) => (
                    "terminated",
                    Some(t.reason.clone()),
                    Some(t.message.clone()),
                    Some(t.exit_code),
                ),
                None => ("unknown", None, None, None),
            };
        ContainerJson {
            name: container.name.clone(),
            image: container.image.clone(),
            ready: container.ready,
            started: container.started,
            restart_count: container.restart_count,
            state,
            reason: reason.filter(|r| !r.is_empty()),
            message: message.filter(|m| !m.is_empty()),
            exit_code,
        }
    }
}

/// A Kubernetes Event in JSON output (`event` of the `event` record).
#[derive(Debug, Serialize)]
pub(crate) struct EventJson {
    namespace: String,
    pod: String,
    /// Normal or Warning.
    r#type: String,
    reason: String,
    message: String,
    count: i32,
    source: String,
    first_time: Option<String>,
    last_time: Option<String>,
}

impl From<&pb::PodEvent> for EventJson {
    fn from(event: &pb::PodEvent) -> EventJson {
        EventJson {
            namespace: event.namespace.clone(),
            pod: event.pod.clone(),
            r#type: event.r#type.clone(),
            reason: event.reason.clone(),
            message: event.message.clone(),
            count: event.count,
            source: event.source.clone(),
            first_time: rfc3339(event.first_time.as_ref()),
            last_time: rfc3339(event.last_time.as_ref()),
        }
    }
}

/// The last record of every command in JSON output.
#[derive(Debug, Serialize)]
pub(crate) struct ResultJson {
    r#type: &'static str,
    time: String,
    /// True exactly when exit_code is 0.
    ok: bool,
    exit_code: u8,
    /// ok, error, bad_input, pod_failed (rollout_failed for a rollout), timeout, refused,
    /// unreachable, not_found, interrupted (one per exit code).
    outcome: &'static str,
    /// The gRPC code, e.g. INVALID_ARGUMENT; null when the server gave none.
    code: Option<&'static str>,
    message: String,
    /// Every field violation the server listed (INVALID_ARGUMENT).
    violations: Vec<String>,
    /// The pod concerned, in its last known state.
    pod: Option<PodJson>,
    /// Deployment commands: the Deployment concerned, in its last known state (absent for
    /// the pod commands).
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment: Option<DeploymentJson>,
    elapsed_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(health: pb::Health, reason: pb::Reason) -> pb::PodStatus {
        pb::PodStatus {
            namespace: "demo".into(),
            name: "web".into(),
            health: health.into(),
            reason: reason.into(),
            phase: "Pending".into(),
            containers: vec![pb::ContainerStatus {
                name: "app".into(),
                state: Some(pb::ContainerState {
                    state: Some(State::Waiting(pb::Waiting {
                        reason: "ErrImagePull".into(),
                        message: "cannot pull".into(),
                    })),
                }),
                ..pb::ContainerStatus::default()
            }],
            ..pb::PodStatus::default()
        }
    }

    #[test]
    fn json_pods_use_short_enum_names() {
        let json = serde_json::to_value(PodJson::from(&pod(
            pb::Health::Failed,
            pb::Reason::ImagePullFailed,
        )))
        .expect("json");
        assert_eq!(json["health"], "FAILED");
        assert_eq!(json["reason"], "IMAGE_PULL_FAILED");
        assert_eq!(json["containers"][0]["state"], "waiting");
        assert_eq!(json["containers"][0]["reason"], "ErrImagePull");
        assert_eq!(json["node"], serde_json::Value::Null);
        let ready = serde_json::to_value(PodJson::from(&pod(
            pb::Health::Ready,
            pb::Reason::Unspecified,
        )))
        .expect("json");
        assert_eq!(ready["reason"], serde_json::Value::Null);
    }

    #[test]
    fn containers_read_as_one_word_each() {
        assert_eq!(
            containers_text(&pod(pb::Health::Failed, pb::Reason::ImagePullFailed)),
            "app:waiting(ErrImagePull)"
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(short_duration(Duration::from_secs(59)), "59s");
        assert_eq!(short_duration(Duration::from_secs(61)), "1m");
        assert_eq!(short_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(short_duration(Duration::from_secs(200_000)), "2d");
    }

    #[test]
    fn a_change_record_carries_only_its_own_details() {
        let deployment = pb::Deployment {
            namespace: "demo".into(),
            name: "web".into(),
            ..pb::Deployment::default()
        };
        let scaled = serde_json::to_value(Record {
            r#type: "scaled",
            seq: None,
            time: now(),
            body: ChangeBody {
                changed: true,
                created: None,
                dry_run: None,
                pod_security: None,
                rolled_back_to: None,
                message: "scaled deployment demo/web to 5 replicas".into(),
                deployment: DeploymentJson::from(&deployment),
            },
        })
        .expect("json");
        assert_eq!(scaled["type"], "scaled");
        assert_eq!(scaled["changed"], true);
        assert_eq!(scaled["deployment"]["name"], "web");
        for absent in [
            "seq",
            "created",
            "dry_run",
            "pod_security",
            "rolled_back_to",
        ] {
            assert!(scaled.get(absent).is_none(), "{absent}: {scaled}");
        }
    }

    #[test]
    fn a_result_names_the_deployment_only_for_deployment_commands() {
        let result = |deployment: Option<DeploymentJson>| {
            serde_json::to_value(ResultJson {
                r#type: "result",
                time: now(),
                ok: false,
                exit_code: exit::POD_FAILED,
                outcome: exit::ROLLOUT_FAILED,
                code: None,
                message: String::new(),
                violations: Vec::new(),
                pod: None,
                deployment,
                elapsed_ms: 0,
            })
            .expect("json")
        };
        assert!(result(None).get("deployment").is_none());
        let with = result(Some(DeploymentJson::from(&pb::Deployment::default())));
        assert_eq!(with["deployment"]["rollout"]["phase"], "UNSPECIFIED");
        assert_eq!(with["pod"], serde_json::Value::Null);
    }

    #[test]
    fn auto_is_live_only_on_a_terminal() {
        assert_eq!(Mode::choose(OutputFormat::Auto, true), Mode::Live);
        assert_eq!(Mode::choose(OutputFormat::Auto, false), Mode::Plain);
        assert_eq!(Mode::choose(OutputFormat::Plain, true), Mode::Plain);
        assert_eq!(Mode::choose(OutputFormat::Json, true), Mode::Json);
    }
}
