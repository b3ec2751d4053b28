//! deployctl, the command-line client, run as a user or a CI job runs it: the built binary,
//! against the service on 127.0.0.1:0 and a real local control plane. What it prints, and
//! the exit codes a CI job relies on.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use k8s_deployer::Config;
use k8s_deployer::proto::deployer::v1 as pb;
use support::{
    Pki, RunningDeployer, TestAuth, TestCluster, WAIT, create_namespace, pods_in, serving_deployer,
    unique,
};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

/// What one run of deployctl gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Every stdout line as JSON; panics on one that is not.
    fn json(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{self:#?}"))
            })
            .collect()
    }
}

/// deployctl with a clean environment (no DEPLOYER_* variables from outside), its stdout a
/// pipe (so plain or JSON output), killed if the test ends first.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployctl"));
    command
        .env_clear()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(args: &[&str]) -> Run {
    let output = tokio::time::timeout(WAIT, command(args).output())
        .await
        .unwrap_or_else(|_| panic!("deployctl {args:?} did not end within {WAIT:?}"))
        .expect("run deployctl");
    Run {
        code: output.status.code().expect("an exit code, not a signal"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// The connection flags for `server`, calling with `token`.
fn connection(server: &RunningDeployer, token: &str) -> Vec<String> {
    vec![
        "--server".into(),
        format!("http://{}", server.addr),
        "--plaintext".into(),
        "--token".into(),
        token.into(),
    ]
}

/// deployctl against `server` as the tester.
async fn deployctl(server: &RunningDeployer, args: &[&str]) -> Run {
    deployctl_as(server, &TestAuth::shared().tester_token(), args).await
}

async fn deployctl_as(server: &RunningDeployer, token: &str, args: &[&str]) -> Run {
    let mut all = connection(server, token);
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run(&all.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// The index of the first line containing all of `words`.
fn line_with(lines: &[&str], words: &[&str]) -> Option<usize> {
    lines
        .iter()
        .position(|line| words.iter().all(|w| line.contains(w)))
}

#[tokio::test]
async fn help_documents_every_exit_code() {
    let help = run(&["--help"]).await;
    assert_eq!(help.code, 0, "{help:#?}");
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);
    for code in 0..=7 {
        assert!(
            help.stdout.contains(&format!("\n    {code}  ")),
            "exit code {code} is not documented:\n{}",
            help.stdout
        );
    }
    let deploy = run(&["deploy", "--help"]).await;
    for flag in [
        "--wait",
        "--timeout",
        "--request",
        "--env",
        "--port",
        "--label",
        "--request-id",
        "--dry-run",
        "DEPLOYER_TOKEN",
        "Exit codes:",
    ] {
        assert!(deploy.stdout.contains(flag), "{flag}:\n{}", deploy.stdout);
    }
}

/// The everyday case: deploy and wait for Ready. Plain output (stdout is a pipe) shows the pod
/// on its way, then READY, then a summary; the pod really is ready.
#[tokio::test]
async fn deploy_and_wait_until_ready_shows_the_progression() {
    let (server, _admin, ns) = serving_deployer("cli-ready").await;
    let run = deployctl(
        &server,
        &[
            "deploy",
            "nginx:1.27",
            "-n",
            &ns,
            "--name",
            "web",
            "--env",
            "GREETING=hello, world",
            "--port",
            "http:80/tcp",
            "--wait",
            "ready",
            "--timeout",
            "2m",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let lines = run.lines();
    let created = line_with(&lines, &["created", &format!("{ns}/web"), "nginx:1.27"])
        .unwrap_or_else(|| panic!("no creation line: {run:#?}"));
    let on_its_way = lines
        .iter()
        .position(|l| l.contains(" pod ") && (l.contains("PENDING") || l.contains("PROGRESSING")))
        .unwrap_or_else(|| panic!("the pod is never shown on its way: {run:#?}"));
    let ready = line_with(
        &lines,
        &[" pod ", "web", "Running", "READY", "app:running,ready"],
    )
    .unwrap_or_else(|| panic!("the pod is never shown READY: {run:#?}"));
    assert!(created < on_its_way && on_its_way < ready, "{run:#?}");
    let last = lines.last().expect("a summary");
    assert!(
        last.starts_with("✓") && last.contains(&format!("pod {ns}/web is READY")),
        "{run:#?}"
    );
    assert!(run.stderr.is_empty(), "{run:#?}");

    let pod = server
        .client()
        .get_status(pb::GetStatusRequest {
            namespace: ns.clone(),
            name: "web".into(),
        })
        .await
        .expect("the pod exists")
        .into_inner()
        .pod
        .expect("a status");
    assert_eq!(pod.health(), pb::Health::Ready);
}

/// `--output json`: every line is a JSON object with a type; the stream's records follow the
/// deployment; the last is the result, saying READY.
#[tokio::test]
async fn json_output_is_one_object_per_line_ending_with_the_result() {
    let (server, _admin, ns) = serving_deployer("cli-json").await;
    let run = deployctl(
        &server,
        &[
            "deploy",
            "nginx:1.27",
            "-n",
            &ns,
            "--label",
            "app=json-test",
            "--wait",
            "ready",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let records = run.json();
    let types: Vec<&str> = records
        .iter()
        .map(|r| r["type"].as_str().expect("every record has a type"))
        .collect();
    assert_eq!(types.first(), Some(&"deployed"), "{types:?}");
    assert_eq!(types.last(), Some(&"result"), "{types:?}");
    assert!(types.contains(&"snapshot"), "{types:?}");
    let deployed = &records[0];
    assert_eq!(deployed["created"], true);
    let name = deployed["pod"]["name"].as_str().expect("a generated name");
    assert!(name.starts_with("nginx-"), "{name}");
    assert_eq!(deployed["pod"]["labels"]["app"], "json-test");

    // Stream records carry the server's growing sequence numbers and the same pod.
    let sequences: Vec<u64> = records.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    for record in records.iter().filter(|r| r["type"] == "pod") {
        assert_eq!(record["pod"]["name"], name, "{record}");
        assert!(record["pod"]["health"].is_string(), "{record}");
    }

    let result = records.last().expect("the result");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["exit_code"], 0, "{result}");
    assert_eq!(result["outcome"], "ok", "{result}");
    assert_eq!(result["pod"]["health"], "READY", "{result}");
    assert_eq!(result["pod"]["phase"], "Running", "{result}");
    assert_eq!(
        result["pod"]["containers"][0]["state"], "running",
        "{result}"
    );
    assert!(result["pod"]["node"].is_string(), "{result}");
}

/// An image that cannot be pulled: exit 3, with the reason where a CI log shows it.
#[tokio::test]
async fn a_pod_that_fails_exits_3_with_its_reason() {
    let (server, _admin, ns) = serving_deployer("cli-fail").await;
    let run = deployctl(
        &server,
        &[
            "deploy",
            "fail.invalid/app:1",
            "-n",
            &ns,
            "--name",
            "broken",
            "--wait",
            "ready",
        ],
    )
    .await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.stderr.contains(&format!(
            "pod {ns}/broken is FAILED before it was READY: IMAGE_PULL_FAILED"
        )),
        "{run:#?}"
    );
    assert!(run.stderr.contains("fail.invalid/app:1"), "{run:#?}");
    assert!(
        line_with(
            &run.lines(),
            &[" pod ", "broken", "FAILED", "IMAGE_PULL_FAILED"]
        )
        .is_some(),
        "{run:#?}"
    );

    // The same in JSON: the result names the outcome and carries the failed pod.
    let json = deployctl(
        &server,
        &[
            "deploy",
            "fail.invalid/app:1",
            "-n",
            &ns,
            "--wait",
            "running",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(json.code, 3, "{json:#?}");
    let result = json.json().pop().expect("a result");
    assert_eq!(result["outcome"], "pod_failed", "{result}");
    assert_eq!(result["pod"]["reason"], "IMAGE_PULL_FAILED", "{result}");
}

/// A pod that can never be scheduled: our --timeout ends the wait with exit 4 and the state
/// the pod was left in.
#[tokio::test]
async fn a_wait_that_runs_out_exits_4() {
    let (server, admin, ns) = serving_deployer("cli-timeout").await;
    let run = deployctl(
        &server,
        &[
            "deploy",
            "nginx:1.27",
            "-n",
            &ns,
            "--name",
            "huge",
            "--request",
            "cpu=64",
            "--wait",
            "ready",
            "--timeout",
            "4s",
        ],
    )
    .await;
    assert_eq!(run.code, 4, "{run:#?}");
    assert!(
        run.stderr.contains(&format!(
            "timed out after 4s waiting for pod {ns}/huge to be READY; it is PENDING"
        )),
        "{run:#?}"
    );
    // The pod is left in place, as the server's own wait leaves it.
    let pods = pods_in(&admin, &ns).await;
    assert_eq!(pods.len(), 1, "{pods:?}");
}

/// Bad input: refused by the server with INVALID_ARGUMENT naming the field, or by deployctl
/// itself as a usage error; exit 2 either way and nothing created.
#[tokio::test]
async fn bad_input_exits_2_naming_the_field() {
    let (server, admin, ns) = serving_deployer("cli-invalid").await;
    let run = deployctl(
        &server,
        &["deploy", "Nginx:1", "-n", &ns, "--wait", "ready"],
    )
    .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("INVALID_ARGUMENT: image: \"Nginx:1\""),
        "{run:#?}"
    );
    for usage in [
        vec!["deploy", "nginx:1.27", "-n", &ns, "--port", "0"],
        vec!["deploy", "nginx:1.27", "-n", &ns, "--env", "NO_VALUE"],
        vec!["deploy", "nginx:1.27", "-n", &ns, "--timeout", "soon"],
        vec![
            "deploy",
            "nginx:1.27",
            "-n",
            &ns,
            "--label",
            "a=1",
            "--label",
            "a=2",
        ],
        vec!["deploy", "nginx:1.27"],
        vec!["watch", "-n", &ns],
    ] {
        let run = deployctl(&server, &usage).await;
        assert_eq!(run.code, 2, "{usage:?}: {run:#?}");
        assert!(!run.stderr.is_empty(), "{usage:?}: {run:#?}");
    }
    assert!(pods_in(&admin, &ns).await.is_empty());
}

/// Refusals exit 5: a bad token, a caller the policy does not know, an image reference the
/// image policy refuses. The token never appears in the output.
#[tokio::test]
async fn refusals_exit_5_without_showing_the_token() {
    let (server, admin, ns) = serving_deployer("cli-refused").await;
    let bad = "not-a-jwt-but-a-secret-all-the-same";
    let run = deployctl_as(&server, bad, &["list", "-n", &ns]).await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert!(run.stderr.contains("UNAUTHENTICATED"), "{run:#?}");
    assert!(
        !run.stdout.contains(bad) && !run.stderr.contains(bad),
        "{run:#?}"
    );

    let stranger = TestAuth::shared().token("stranger", &[], Duration::from_secs(600));
    let run = deployctl_as(
        &server,
        &stranger,
        &["deploy", "nginx:1.27", "-n", &ns, "--wait", "ready"],
    )
    .await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert!(run.stderr.contains("PERMISSION_DENIED"), "{run:#?}");
    assert!(!run.stderr.contains(&stranger), "{run:#?}");

    // The image policy: a denied tag is FAILED_PRECONDITION, a refusal before any pod runs.
    let auth = TestAuth::shared();
    let policy = auth.dir.join(format!("{}.yaml", unique("no-latest")));
    std::fs::write(
        &policy,
        "rules:\n  - name: tester\n    subjects: [tester]\n    namespaces: [\"*\"]\n    \
         actions: [\"*\"]\nimages:\n  allow: [\"**\"]\n  deniedTags: [latest]\n",
    )
    .expect("a policy");
    let strict = RunningDeployer::with(auth.config(Some(&policy), None))
        .serving()
        .await;
    let run = deployctl(
        &strict,
        &["deploy", "nginx:latest", "-n", &ns, "--wait", "ready"],
    )
    .await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert!(
        run.stderr.contains("FAILED_PRECONDITION") && run.stderr.contains("deniedTags"),
        "{run:#?}"
    );
    assert!(pods_in(&admin, &ns).await.is_empty());
}

/// Nothing listens: exit 6, saying where it tried.
#[tokio::test]
async fn an_address_where_nothing_listens_exits_6() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    let run = run(&[
        "--server",
        &format!("http://{addr}"),
        "--plaintext",
        "--token",
        "whatever",
        "status",
        "web",
        "-n",
        "default",
    ])
    .await;
    assert_eq!(run.code, 6, "{run:#?}");
    assert!(
        run.stderr.contains(&format!("cannot reach http://{addr}")),
        "{run:#?}"
    );
}

/// status, list, watch and delete, once each, as a user goes through them; then the deleted
/// pod is NOT_FOUND (exit 7).
#[tokio::test]
async fn status_list_watch_and_delete() {
    let (server, _admin, ns) = serving_deployer("cli-calls").await;
    let deployed = deployctl(
        &server,
        &[
            "deploy",
            "nginx:1.27",
            "-n",
            &ns,
            "--name",
            "web",
            "--label",
            "tier=front",
            "--wait",
            "ready",
        ],
    )
    .await;
    assert_eq!(deployed.code, 0, "{deployed:#?}");

    let status = deployctl(&server, &["status", "web", "-n", &ns]).await;
    assert_eq!(status.code, 0, "{status:#?}");
    for row in [
        format!("pod         {ns}/web"),
        "health      READY".to_owned(),
        "phase       Running".to_owned(),
        "image       nginx:1.27".to_owned(),
        "container   app:running,ready".to_owned(),
    ] {
        assert!(status.stdout.contains(&row), "{row}: {status:#?}");
    }

    let list = deployctl(&server, &["list", "-n", &ns, "-l", "tier=front"]).await;
    assert_eq!(list.code, 0, "{list:#?}");
    let lines = list.lines();
    assert!(lines[0].starts_with("NAME"), "{list:#?}");
    assert!(
        line_with(&lines, &["web", "READY", "Running", "1/1", "nginx:1.27"]).is_some(),
        "{list:#?}"
    );
    let none = deployctl(&server, &["list", "-n", &ns, "-l", "tier=back"]).await;
    assert_eq!(none.code, 0, "{none:#?}");
    assert!(none.stdout.is_empty(), "{none:#?}");
    assert!(none.stderr.contains("No managed pods"), "{none:#?}");

    // Already ready: the stream's snapshot meets --until at once.
    let ready = deployctl(&server, &["watch", "web", "-n", &ns, "--until", "ready"]).await;
    assert_eq!(ready.code, 0, "{ready:#?}");
    assert!(ready.stdout.contains("is READY"), "{ready:#?}");

    // A watch without --until follows the pod until it is deleted.
    let mut args = connection(&server, &TestAuth::shared().tester_token());
    args.extend(["watch".into(), "web".into(), "-n".into(), ns.clone()]);
    let mut watching = command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .spawn()
        .expect("start the watch");
    let mut stdout = BufReader::new(watching.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(WAIT, stdout.next_line())
        .await
        .expect("the watch shows the pod")
        .expect("read")
        .expect("a line");
    assert!(first.contains("web") && first.contains("READY"), "{first}");

    let deleted = deployctl(&server, &["delete", "web", "-n", &ns]).await;
    assert_eq!(deleted.code, 0, "{deleted:#?}");
    assert!(
        deleted.stdout.contains(&format!("deleting {ns}/web")),
        "{deleted:#?}"
    );

    let mut rest = vec![first];
    while let Some(line) = tokio::time::timeout(WAIT, stdout.next_line())
        .await
        .expect("the watch goes on")
        .expect("read")
    {
        rest.push(line);
    }
    let status = tokio::time::timeout(WAIT, watching.wait())
        .await
        .expect("the watch ends with the pod")
        .expect("its status");
    assert_eq!(status.code(), Some(0), "{rest:#?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("deleted") && l.contains("DELETED")),
        "{rest:#?}"
    );
    assert!(
        rest.last()
            .is_some_and(|l| l.contains(&format!("pod {ns}/web was deleted"))),
        "{rest:#?}"
    );

    // Gone now: NOT_FOUND, exit 7, for status and for delete.
    let gone = deployctl(&server, &["status", "web", "-n", &ns]).await;
    assert_eq!(gone.code, 7, "{gone:#?}");
    assert!(gone.stderr.contains("NOT_FOUND"), "{gone:#?}");
    let again = deployctl(&server, &["delete", "web", "-n", &ns]).await;
    assert_eq!(again.code, 7, "{again:#?}");
}

/// `delete --wait` follows the pod until it is gone, so that the next step can rely on it.
#[tokio::test]
async fn delete_and_wait_until_gone() {
    let (server, admin, ns) = serving_deployer("cli-delete").await;
    let deployed = deployctl(
        &server,
        &[
            "deploy",
            "nginx:1.27",
            "-n",
            &ns,
            "--name",
            "short",
            "--wait",
            "running",
        ],
    )
    .await;
    assert_eq!(deployed.code, 0, "{deployed:#?}");
    assert!(deployed.stdout.contains("is RUNNING"), "{deployed:#?}");
    let deleted = deployctl(&server, &["delete", "short", "-n", &ns, "--wait"]).await;
    assert_eq!(deleted.code, 0, "{deleted:#?}");
    assert!(
        deleted.stdout.contains(&format!("pod {ns}/short is gone")),
        "{deleted:#?}"
    );
    assert!(pods_in(&admin, &ns).await.is_empty());
}

/// A selector watch until every pod is ready, in JSON.
#[tokio::test]
async fn watch_a_selector_until_every_pod_is_ready() {
    let (server, _admin, ns) = serving_deployer("cli-selector").await;
    for name in ["one", "two"] {
        let run = deployctl(
            &server,
            &[
                "deploy",
                "nginx:1.27",
                "-n",
                &ns,
                "--name",
                name,
                "--label",
                "app=pair",
            ],
        )
        .await;
        assert_eq!(run.code, 0, "{run:#?}");
    }
    let run = deployctl(
        &server,
        &[
            "watch", "-l", "app=pair", "-n", &ns, "--until", "ready", "-o", "json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let records = run.json();
    assert_eq!(records[0]["type"], "snapshot", "{records:#?}");
    let result = records.last().expect("a result");
    assert_eq!(result["ok"], true, "{result}");
    assert!(
        result["message"]
            .as_str()
            .is_some_and(|m| m.contains("every one of 2 pods is READY")),
        "{result}"
    );

    // A crash-looping pod under the same selector never gets there: exit 3.
    let run = deployctl(
        &server,
        &[
            "deploy",
            "crash.invalid/app:1",
            "-n",
            &ns,
            "--name",
            "crashy",
            "--label",
            "app=pair",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let run = deployctl(
        &server,
        &["watch", "-l", "app=pair", "-n", &ns, "--until", "ready"],
    )
    .await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(run.stderr.contains("crashy"), "{run:#?}");
}

/// The server shuts down while a watch is open: deployctl reconnects, as the contract asks,
/// and carries on with the server that takes its place.
#[tokio::test]
async fn a_watch_reconnects_after_a_server_shutdown() {
    let cluster = TestCluster::shared();
    let admin = cluster.client().await;
    let ns = create_namespace(&admin, "cli-reconnect", &[]).await;
    let auth = TestAuth::shared();
    let first = RunningDeployer::with(auth.config(None, None)).start().await;
    let addr = first.addr;
    let token = auth.tester_token();
    let server_url = format!("http://{addr}");
    let args = [
        "--server",
        &server_url,
        "--plaintext",
        "--token",
        &token,
        "watch",
        "later",
        "-n",
        &ns,
        "--until",
        "ready",
        "--timeout",
        "2m",
    ];
    let mut watching = command(&args).spawn().expect("start the watch");
    let mut stdout = BufReader::new(watching.stdout.take().expect("stdout")).lines();
    let first_line = tokio::time::timeout(WAIT, stdout.next_line())
        .await
        .expect("the watch starts")
        .expect("read")
        .expect("a line");
    assert!(first_line.contains("does not exist yet"), "{first_line}");

    first.stop().await.expect("a clean stop");
    let second = RunningDeployer::with(auth.config(None, None))
        .listen(addr)
        .start()
        .await;
    let mut client = support::tester_client(
        tonic::transport::Channel::from_shared(server_url.clone())
            .expect("a uri")
            .connect()
            .await
            .expect("connect to the second server"),
    );
    client
        .deploy(pb::DeployRequest {
            image: "nginx:1.27".into(),
            namespace: ns.clone(),
            name: "later".into(),
            ..pb::DeployRequest::default()
        })
        .await
        .expect("deploy through the second server");

    let mut lines = vec![first_line];
    while let Some(line) = tokio::time::timeout(WAIT, stdout.next_line())
        .await
        .expect("the watch goes on")
        .expect("read")
    {
        lines.push(line);
    }
    let output = tokio::time::timeout(WAIT, watching.wait_with_output())
        .await
        .expect("the watch ends")
        .expect("its output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{lines:#?}\n{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert!(
        lines.last().is_some_and(|l| l.contains("is READY")),
        "{lines:#?}"
    );
    second.stop().await.expect("a clean stop");
}

/// Over TLS, trusting the server's CA, authenticated by a client certificate alone; without
/// the CA the server's certificate is not trusted (exit 6).
#[tokio::test]
async fn over_tls_with_a_client_certificate() {
    let auth = TestAuth::shared();
    let dir = auth.dir.join(unique("cli-pki"));
    std::fs::create_dir_all(&dir).expect("a folder");
    let server_ca = Pki::new("cli-server-ca");
    let client_ca = Pki::new("cli-client-ca");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write a PEM file");
        path
    };
    let (cert, key) = server_ca.server();
    let (client_cert, client_key) = client_ca.client(support::TESTER, &[]);
    let config = Config {
        plaintext: false,
        tls_cert: Some(write("tls.crt", &cert)),
        tls_key: Some(write("tls.key", &key)),
        tls_client_ca: Some(write("client-ca.crt", &client_ca.ca_pem)),
        ..auth.config(None, None)
    };
    let server = RunningDeployer::with(config).start().await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let ca_file = write("server-ca.crt", &server_ca.ca_pem);
    let (client_cert, client_key) = (
        write("client.crt", &client_cert),
        write("client.key", &client_key),
    );
    let path = |p: &Path| p.display().to_string();

    let trusted = run(&[
        "--server",
        &url,
        "--ca-file",
        &path(&ca_file),
        "--tls-cert",
        &path(&client_cert),
        "--tls-key",
        &path(&client_key),
        "list",
        "-n",
        "default",
    ])
    .await;
    assert_eq!(trusted.code, 0, "{trusted:#?}");

    // The system's CAs do not know the test CA.
    let untrusted = run(&["--server", &url, "list", "-n", "default"]).await;
    assert_eq!(untrusted.code, 6, "{untrusted:#?}");
    assert!(untrusted.stderr.contains("certificate"), "{untrusted:#?}");
    server.stop().await.expect("a clean stop");
}

/// A Deployment's life through deployctl, as a CI job lives it: apply 3 replicas and follow
/// the rollout to COMPLETE (exit 0); update to an image that cannot be pulled, in JSON (exit 3
/// naming NEW_PODS_FAILING and IMAGE_PULL_FAILED, the old pods still serving); undo and follow
/// (exit 0); the history lists the revisions; get, status and delete answer as they should.
#[tokio::test]
async fn a_deployment_rolls_out_fails_fast_and_rolls_back() {
    let (server, _admin, ns) = serving_deployer("cli-rollout").await;
    let web = format!("{ns}/web");
    let applied = deployctl(
        &server,
        &[
            "deployment",
            "apply",
            "nginx:1.27",
            "-n",
            &ns,
            "--name",
            "web",
            "--replicas",
            "3",
            "--port",
            "http:80",
            "--change-cause",
            "first release",
            "--timeout",
            "3m",
        ],
    )
    .await;
    assert_eq!(applied.code, 0, "{applied:#?}");
    let lines = applied.lines();
    let created = line_with(
        &lines,
        &["created deployment", &web, "nginx:1.27", "3 replicas"],
    )
    .unwrap_or_else(|| panic!("no creation line: {applied:#?}"));
    let complete = line_with(
        &lines,
        &[
            "web: COMPLETE 3/3 updated, 3 available (revision 1)",
            "successfully rolled out",
        ],
    )
    .unwrap_or_else(|| panic!("the rollout is never shown COMPLETE: {applied:#?}"));
    assert!(created < complete, "{applied:#?}");
    let last = lines.last().expect("a summary");
    assert!(
        last.starts_with("✓")
            && last.contains(&format!("deployment {web} successfully rolled out")),
        "{applied:#?}"
    );

    // An image that cannot be pulled: the rollout fails fast, and says the old pods serve.
    let failed = deployctl(
        &server,
        &[
            "deployment",
            "apply",
            "fail.invalid/app:1",
            "-n",
            &ns,
            "--name",
            "web",
            "--port",
            "http:80",
            "--change-cause",
            "broken release",
            "--timeout",
            "3m",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(failed.code, 3, "{failed:#?}");
    assert!(
        failed.stderr.contains(&format!(
            "deployment {web} rollout FAILED: NEW_PODS_FAILING: IMAGE_PULL_FAILED"
        )) && failed
            .stderr
            .contains("3 pods of older revisions are still available"),
        "{failed:#?}"
    );
    let records = failed.json();
    assert_eq!(records[0]["type"], "applied", "{failed:#?}");
    assert_eq!(records[0]["changed"], true, "{failed:#?}");
    assert_eq!(
        (&records[1]["type"], &records[1]["seq"]),
        (&serde_json::json!("snapshot"), &serde_json::json!(1)),
        "{failed:#?}"
    );
    // The new revision is shown on its way before it fails.
    let phase_of = |r: &serde_json::Value| r["deployment"]["rollout"]["phase"].clone();
    assert!(
        records
            .iter()
            .any(|r| (r["type"] == "snapshot" || r["type"] == "progress")
                && (phase_of(r) == "OBSERVING" || phase_of(r) == "PROGRESSING")),
        "{failed:#?}"
    );
    let result = records.last().expect("the result");
    assert_eq!(result["outcome"], "rollout_failed", "{result}");
    let rollout = &result["deployment"]["rollout"];
    assert_eq!(rollout["phase"], "FAILED", "{result}");
    assert_eq!(rollout["reason"], "NEW_PODS_FAILING", "{result}");
    assert_eq!(rollout["pod_reason"], "IMAGE_PULL_FAILED", "{result}");
    assert_eq!(rollout["old_available"], 3, "{result}");

    // Back to the first template, followed until it is rolled out again.
    let undone = deployctl(
        &server,
        &[
            "deployment",
            "rollout",
            "undo",
            "web",
            "-n",
            &ns,
            "--wait",
            "--timeout",
            "3m",
        ],
    )
    .await;
    assert_eq!(undone.code, 0, "{undone:#?}");
    assert!(
        line_with(
            &undone.lines(),
            &[&format!("deployment {web}: rolled back to revision 1")]
        )
        .is_some(),
        "{undone:#?}"
    );
    assert!(
        undone
            .lines()
            .last()
            .is_some_and(|l| l.contains("successfully rolled out")),
        "{undone:#?}"
    );

    // The rollback made the first template the newest revision (3); 2 is the broken one.
    let history = deployctl(
        &server,
        &["deployment", "rollout", "history", "web", "-n", &ns],
    )
    .await;
    assert_eq!(history.code, 0, "{history:#?}");
    let lines = history.lines();
    assert!(lines[0].starts_with("REVISION"), "{history:#?}");
    assert!(
        line_with(&lines, &["2 ", "fail.invalid/app:1", "broken release"]).is_some(),
        "{history:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("3 ") && l.contains("nginx:1.27")),
        "{history:#?}"
    );

    let status = deployctl(
        &server,
        &["deployment", "rollout", "status", "web", "-n", &ns],
    )
    .await;
    assert_eq!(status.code, 0, "{status:#?}");
    let get = deployctl(
        &server,
        &["deployment", "get", "web", "-n", &ns, "-o", "json"],
    )
    .await;
    assert_eq!(get.code, 0, "{get:#?}");
    let got = &get.json()[0];
    assert_eq!(got["type"], "deployment", "{got}");
    assert_eq!(got["deployment"]["image"], "nginx:1.27", "{got}");
    assert_eq!(got["deployment"]["rollout"]["revision"], 3, "{got}");
    let missing = deployctl(
        &server,
        &["deployment", "rollout", "status", "nope", "-n", &ns],
    )
    .await;
    assert_eq!(missing.code, 7, "{missing:#?}");

    let scaled = deployctl(
        &server,
        &[
            "deployment",
            "scale",
            "web",
            "-n",
            &ns,
            "--replicas",
            "2",
            "--wait",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(scaled.code, 0, "{scaled:#?}");
    let records = scaled.json();
    assert_eq!(
        (&records[0]["type"], &records[0]["changed"]),
        (&serde_json::json!("scaled"), &serde_json::json!(true)),
        "{scaled:#?}"
    );
    let result = records.last().expect("the result");
    assert_eq!(
        result["deployment"]["rollout"]["phase"], "COMPLETE",
        "{result}"
    );
    assert_eq!(result["deployment"]["rollout"]["available"], 2, "{result}");

    let deleted = deployctl(
        &server,
        &["deployment", "delete", "web", "-n", &ns, "--wait"],
    )
    .await;
    assert_eq!(deleted.code, 0, "{deleted:#?}");
    let list = deployctl(&server, &["deployment", "list", "-n", &ns]).await;
    assert_eq!((list.code, list.stdout.as_str()), (0, ""), "{list:#?}");
}
