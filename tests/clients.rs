//! The clients a newcomer is given, run for real against the service on 127.0.0.1:0 and a real
//! local control plane: the Python and Go examples (`examples/*/run.sh` generate their code
//! from the proto, deploy and follow the pod) and every command of the README's grpcurl
//! walkthrough, taken from README.md itself so that it cannot drift from what works.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::{RunningDeployer, TestAuth, TestCluster, WAIT, create_namespace};
use tokio::process::Command;

/// A command's exit status and its stdout and stderr, together for assertions and messages.
struct Ran {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (out, err) = (&self.stdout, &self.stderr);
        write!(
            f,
            "exit {:?}\n--- stdout\n{out}\n--- stderr\n{err}",
            self.code
        )
    }
}

fn repo() -> PathBuf {
    support::repo_root()
}

/// Runs `command` and waits for it, for at most `limit` (then it is killed and the test fails).
async fn run(mut command: Command, what: &str, limit: Duration) -> Ran {
    command.kill_on_drop(true).current_dir(repo());
    let output = tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Ran {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `examples/<language>/run.sh` deploying `image` into `namespace` and following it. The first
/// run may install the tools (when `make setup` has not) and build the Go client.
async fn run_example(language: &str, addr: &str, namespace: &str, image: &str) -> Ran {
    let mut command = Command::new(repo().join("examples").join(language).join("run.sh"));
    command
        .args(["--addr", addr, "--namespace", namespace, "--image", image])
        .args(["--timeout", &WAIT.as_secs().to_string()])
        .env("DEPLOYER_TOKEN", TestAuth::shared().tester_token());
    let what = format!("examples/{language}/run.sh --image {image}");
    run(command, &what, Duration::from_secs(600)).await
}

/// Both examples: READY for an image that runs, IMAGE_PULL_FAILED for one that cannot be pulled.
async fn check_example(language: &str, admin: &kube::Client, addr: &str) {
    let namespace = create_namespace(admin, language, &[]).await;
    let ran = run_example(language, addr, &namespace, "nginx:1.27").await;
    assert!(ran.success, "{language} example, nginx:1.27: {ran}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with(&format!("deployed {namespace}/nginx-"))),
        "{language} example: the first line names the pod deployed: {ran}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" pod ") && l.contains(" Running ") && l.contains(" READY ")),
        "{language} example: a status line shows the pod Running and READY: {ran}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" end ") && l.contains("UNTIL_MET")),
        "{language} example: the stream ends UNTIL_MET: {ran}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with(&format!("READY: {namespace}/nginx-"))),
        "{language} example: the last line says READY: {ran}"
    );

    let ran = run_example(language, addr, &namespace, "fail.invalid/app:1").await;
    assert_eq!(
        ran.code,
        Some(1),
        "{language} example, fail.invalid/app:1: {ran}"
    );
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.contains(" FAILED ") && l.contains("IMAGE_PULL_FAILED")),
        "{language} example: a status line shows FAILED, IMAGE_PULL_FAILED: {ran}"
    );
    assert!(
        ran.stderr.contains("FAILED: IMAGE_PULL_FAILED: "),
        "{language} example: the failure's reason is printed: {ran}"
    );
}

/// The shell commands between `<!-- grpcurl-walkthrough -->` and `<!-- /grpcurl-walkthrough -->`
/// in README.md: a command is a line, with its `\` continuations and its `<<EOF` here-document.
fn walkthrough_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let (_, rest) = readme
        .split_once("<!-- grpcurl-walkthrough -->")
        .expect("README.md has <!-- grpcurl-walkthrough -->");
    let (block, _) = rest
        .split_once("<!-- /grpcurl-walkthrough -->")
        .expect("README.md has <!-- /grpcurl-walkthrough -->");
    let (_, code) = block
        .split_once("```sh\n")
        .expect("the walkthrough is a ```sh block");
    let (code, _) = code.split_once("```").expect("the ```sh block ends");

    let mut commands = Vec::new();
    let mut lines = code.lines();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut command = line.to_owned();
        while command.ends_with('\\') {
            command.push('\n');
            command.push_str(lines.next().expect("a continuation line"));
        }
        if command.contains("<<EOF") {
            loop {
                let next = lines.next().expect("the here-document ends with EOF");
                command.push('\n');
                command.push_str(next);
                if next == "EOF" {
                    break;
                }
            }
        }
        commands.push(command);
    }
    commands
}

/// The JSON messages grpcurl printed, one after the other.
fn json_messages(ran: &Ran) -> Vec<Value> {
    serde_json::Deserializer::from_str(&ran.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("grpcurl printed no JSON ({e}): {ran}"))
}

/// Checks what one walkthrough command printed; returns which step it was, or panics.
fn check_walkthrough_step(command: &str, ran: &Ran, namespace: &str) -> &'static str {
    let first_line = command.lines().next().unwrap_or_default();
    let one = || -> Value {
        let messages = json_messages(ran);
        assert_eq!(messages.len(), 1, "one response: {ran}");
        messages.into_iter().next().unwrap_or_default()
    };
    if first_line.ends_with(" list") {
        assert!(
            ran.stdout
                .lines()
                .any(|l| l == "deployer.v1.DeployerService"),
            "{ran}"
        );
        "list"
    } else if first_line.ends_with(" describe deployer.v1.DeployerService") {
        for rpc in [
            "Deploy",
            "GetStatus",
            "ListPods",
            "DeletePod",
            "WatchStatus",
        ] {
            assert!(
                ran.stdout.contains(&format!("rpc {rpc} ( ")),
                "describe shows {rpc}: {ran}"
            );
        }
        assert!(
            ran.stdout
                .contains("returns ( stream .deployer.v1.WatchStatusResponse )"),
            "{ran}"
        );
        "describe service"
    } else if first_line.ends_with(" describe deployer.v1.DeployRequest") {
        assert!(ran.stdout.contains("string image = 1;"), "{ran}");
        "describe message"
    } else if first_line.contains("deployer.v1.DeployerService/Deploy ") {
        let response = one();
        assert_eq!(response["pod"]["namespace"], namespace, "{ran}");
        assert_eq!(response["pod"]["name"], "hello", "{ran}");
        assert_eq!(response["created"], true, "{ran}");
        "Deploy"
    } else if first_line.contains("deployer.v1.DeployerService/WatchStatus ") {
        let messages = json_messages(ran);
        for (i, message) in messages.iter().enumerate() {
            assert_eq!(
                message["sequence"],
                (i + 1).to_string(),
                "sequence numbers: {ran}"
            );
        }
        assert!(
            messages
                .first()
                .is_some_and(|m| m.get("snapshot").is_some()),
            "{ran}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m["pod"]["health"] == "HEALTH_READY"),
            "the pod becomes READY: {ran}"
        );
        let last = messages.last().expect("messages");
        assert_eq!(last["end"]["reason"], "END_REASON_UNTIL_MET", "{ran}");
        "WatchStatus"
    } else if first_line.contains("deployer.v1.DeployerService/GetStatus ") {
        let response = one();
        assert_eq!(response["pod"]["name"], "hello", "{ran}");
        assert_eq!(response["pod"]["health"], "HEALTH_READY", "{ran}");
        assert_eq!(response["pod"]["phase"], "Running", "{ran}");
        "GetStatus"
    } else if first_line.contains("deployer.v1.DeployerService/ListPods ") {
        let names: Vec<Value> = one()["pods"]
            .as_array()
            .map(|pods| pods.iter().map(|p| p["name"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(names, ["hello"], "{ran}");
        "ListPods"
    } else if first_line.contains("deployer.v1.DeployerService/DeletePod ") {
        let response = one();
        assert_eq!(response["pod"]["name"], "hello", "{ran}");
        assert_eq!(response["pod"]["deleting"], true, "{ran}");
        "DeletePod"
    } else if first_line.contains(" grpc.health.v1.Health/Check") {
        assert_eq!(one()["status"], "SERVING", "{ran}");
        "health"
    } else {
        panic!("the walkthrough has a command this test does not check; teach it:\n{command}")
    }
}

/// Runs the README's grpcurl walkthrough, command by command, with $ADDR, $TOKEN and $NS set
/// and the pinned grpcurl on PATH, as a reader would after the README's setup lines.
async fn check_walkthrough(admin: &kube::Client, addr: &str) {
    let namespace = create_namespace(admin, "grpcurl", &[]).await;
    let mut setup = Command::new(repo().join("scripts/setup.sh"));
    setup.arg("proto-tools");
    let tools = run(
        setup,
        "scripts/setup.sh proto-tools",
        Duration::from_secs(600),
    )
    .await;
    assert!(tools.success, "scripts/setup.sh proto-tools: {tools}");
    let grpcurl = tools
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("export K8S_DEPLOYER_GRPCURL="))
        .map(|path| PathBuf::from(path.trim_matches('\'')))
        .expect("setup.sh proto-tools names grpcurl");
    let path = format!(
        "{}:{}",
        grpcurl.parent().expect("grpcurl's folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let commands = walkthrough_commands();
    let mut steps = Vec::new();
    for command in &commands {
        let mut bash = Command::new("bash");
        bash.args(["-euo", "pipefail", "-c", command])
            .env("PATH", &path)
            .env("ADDR", addr)
            .env("TOKEN", TestAuth::shared().tester_token())
            .env("NS", &namespace);
        let ran = run(bash, command, WAIT).await;
        assert!(
            ran.success,
            "the walkthrough's command failed:\n{command}\n{ran}"
        );
        steps.push(check_walkthrough_step(command, &ran, &namespace));
    }
    assert_eq!(
        steps,
        [
            "list",
            "describe service",
            "describe message",
            "Deploy",
            "WatchStatus",
            "GetStatus",
            "ListPods",
            "DeletePod",
            "health"
        ],
        "the walkthrough's steps, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_and_the_readme_walkthrough_work_against_the_server() {
    let cluster = TestCluster::shared();
    let admin = cluster.client().await;
    let server = RunningDeployer::with(k8s_deployer::Config::default())
        .serving()
        .await;
    let addr = server.addr.to_string();
    tokio::join!(
        check_example("python", &admin, &addr),
        check_example("go", &admin, &addr),
        check_walkthrough(&admin, &addr),
    );
}
