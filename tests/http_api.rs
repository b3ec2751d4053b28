//! The prototype's HTTP API, as its existing users call it: a small client that follows the
//! prototype's flow (deploy, then poll the status until Running), its error shapes, the
//! Server-Sent Events watch the prototype lacked, and the OpenAPI document; against the real
//! server and a real local control plane.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use support::{RunningDeployer, TestAuth, TestCluster, WAIT, create_namespace, eventually, unique};

/// A server with the HTTP API on, and the base URL of that API.
async fn start() -> (RunningDeployer, String) {
    let auth = TestAuth::shared();
    let config = k8s_deployer::Config {
        http_listen: Some("127.0.0.1:0".parse().expect("an address")),
        ..auth.config(
            None,
            Some(&auth.dir.join(format!("{}.jsonl", unique("http-audit")))),
        )
    };
    let server = RunningDeployer::with(config).start().await;
    let base = format!("http://{}", server.http_addr.expect("an HTTP address"));
    (server, base)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("an HTTP client")
}

fn tester() -> String {
    format!("Bearer {}", TestAuth::shared().tester_token())
}

/// POSTs `body` to /deploy as `authorization`; the status code and the JSON answer.
async fn post_deploy(base: &str, authorization: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(format!("{base}/deploy"))
        .header("authorization", authorization)
        .json(body)
        .send()
        .await
        .expect("POST /deploy");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

async fn get_status(base: &str, authorization: &str, namespace: &str, pod: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{base}/status/{namespace}/{pod}"))
        .header("authorization", authorization)
        .send()
        .await
        .expect("GET /status");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// The prototype's flow, unchanged: deploy with image and namespace only, then poll the
/// status every half second until the pod is Running.
#[tokio::test]
async fn the_prototypes_flow_deploy_then_poll_until_running() {
    let admin = TestCluster::shared().client().await;
    let namespace = create_namespace(&admin, "http-flow", &[]).await;
    let (server, base) = start().await;

    let (code, body) = post_deploy(
        &base,
        &tester(),
        &json!({ "image": "nginx", "namespace": namespace }),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // The name the prototype's clients compute themselves.
    assert_eq!(
        body,
        json!({ "message": "Pod deployment initiated", "pod_name": "pod-nginx", "namespace": namespace })
    );

    let status = eventually("pod-nginx to be Running")
        .until(async || {
            let (code, status) = get_status(&base, &tester(), &namespace, "pod-nginx").await;
            assert_eq!(code, 200, "{status}");
            if status["pod_status"] == "Running" {
                Ok(status)
            } else {
                Err(status)
            }
        })
        .await;
    assert_eq!(status["pod_name"], "pod-nginx");
    assert_eq!(status["namespace"], namespace.as_str());
    assert_eq!(status["container_state"], "Running");
    assert!(
        status["start_time"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
        "{status}"
    );
    assert_eq!(status["Owners"], Value::Null);
    let keys: Vec<&str> = status
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6, "exactly the prototype's fields: {keys:?}");

    // Deploying the same image again: the name is taken.
    let (code, body) = post_deploy(
        &base,
        &tester(),
        &json!({ "image": "nginx", "namespace": namespace }),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("already exists")),
        "{body}"
    );
    server.stop().await.expect("a clean stop");
}

/// Errors come as the prototype sent them, `{"detail": ...}`, with its status codes; and the
/// same authentication and policy as gRPC apply.
#[tokio::test]
async fn errors_take_the_prototypes_shape_and_the_same_security_applies() {
    let admin = TestCluster::shared().client().await;
    let namespace = create_namespace(&admin, "http-errors", &[]).await;
    let (server, base) = start().await;

    let cases = [
        // A namespace that does not exist: 400, as the prototype answered.
        (
            json!({ "image": "nginx", "namespace": "no-such-namespace" }),
            400,
            "no-such-namespace",
        ),
        // The prototype's name for an image can be invalid ('_' in the tag): 400 says so.
        (
            json!({ "image": "nginx:1_27", "namespace": namespace }),
            400,
            "name",
        ),
        // An invalid image.
        (
            json!({ "image": "Nginx", "namespace": namespace, "pod_name": "web" }),
            400,
            "image",
        ),
        // A missing field.
        (json!({ "image": "nginx" }), 400, "namespace"),
    ];
    for (body, code, word) in cases {
        let (got, answer) = post_deploy(&base, &tester(), &body).await;
        assert_eq!(got, code, "{body} -> {answer}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(word), "{body} -> {answer}");
    }

    let (code, answer) = get_status(&base, &tester(), &namespace, "nothing-here").await;
    assert_eq!(code, 404);
    assert_eq!(answer, json!({ "detail": "Pod not found" }));

    // No token: 401 with a challenge; nothing created.
    let response = client()
        .post(format!("{base}/deploy"))
        .json(&json!({ "image": "nginx", "namespace": namespace }))
        .send()
        .await
        .expect("POST /deploy");
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    // A caller the policy gives nothing: 403.
    let mallory = format!(
        "Bearer {}",
        TestAuth::shared().token("mallory", &[], Duration::from_secs(600))
    );
    let (code, answer) = post_deploy(
        &base,
        &mallory,
        &json!({ "image": "nginx", "namespace": namespace }),
    )
    .await;
    assert_eq!(code, 403, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|d| d.contains("mallory")),
        "{answer}"
    );
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    assert!(
        pods.list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "nothing was created"
    );
    server.stop().await.expect("a clean stop");
}

/// What the prototype lacked: the status, live, as Server-Sent Events instead of polling;
/// and an OpenAPI document.
#[tokio::test]
async fn the_watch_streams_server_sent_events_until_the_pod_is_deleted() {
    let admin = TestCluster::shared().client().await;
    let namespace = create_namespace(&admin, "http-watch", &[]).await;
    let (server, base) = start().await;

    let (code, body) = post_deploy(
        &base,
        &tester(),
        &json!({ "image": "fail.invalid/app:1", "namespace": namespace, "pod_name": "broken" }),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    let mut response = client()
        .get(format!("{base}/watch/{namespace}/broken"))
        .header("authorization", tester())
        .send()
        .await
        .expect("GET /watch");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );

    // Read events until the pull failure shows, then delete the pod and read until `end`.
    let mut buffer = String::new();
    let mut events: Vec<(String, Value)> = Vec::new();
    let mut deleted = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    'reading: loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("events keep coming")
            .expect("the event stream");
        let Some(chunk) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut kind = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    kind = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                }
            }
            if kind.is_empty() {
                continue; // a keep-alive comment
            }
            let value: Value = serde_json::from_str(&data).expect("JSON event data");
            events.push((kind.clone(), value.clone()));
            if kind == "status"
                && !deleted
                && value["container_state"]
                    .as_str()
                    .is_some_and(|s| s.contains("ErrImagePull") || s.contains("ImagePullBackOff"))
            {
                Api::<Pod>::namespaced(admin.clone(), &namespace)
                    .delete("broken", &DeleteParams::default())
                    .await
                    .expect("delete the pod");
                deleted = true;
            }
            if kind == "end" {
                break 'reading;
            }
        }
    }
    assert!(deleted, "the pull failure never showed: {events:?}");
    let (first_kind, first) = &events[0];
    assert_eq!(first_kind, "status");
    assert_eq!(first["pod_name"], "broken");
    assert_eq!(first["pod_status"], "Pending");
    let (last_kind, last) = events.last().expect("events");
    assert_eq!(last_kind, "end", "{events:?}");
    assert_eq!(last["reason"], "END_REASON_POD_DELETED", "{last}");

    // The OpenAPI document needs no token.
    let document: Value = client()
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json")
        .json()
        .await
        .expect("JSON");
    for path in [
        "/deploy",
        "/status/{namespace}/{pod_name}",
        "/watch/{namespace}/{pod_name}",
    ] {
        assert!(document["paths"][path].is_object(), "{path}");
    }
    server.stop().await.expect("a clean stop");
}

/// Issue 9, defect 4: the prototype's names for tagged images and registry paths have dots
/// (`nginx-1.27`, `gcr.io-google-containers-pause`), which pod names allow. POST /deploy
/// without a name answers 200 with them, as the prototype did, and the pods exist.
#[tokio::test]
async fn tagged_and_registry_images_deploy_under_the_prototypes_dotted_names() {
    let admin = TestCluster::shared().client().await;
    let namespace = create_namespace(&admin, "http-dots", &[]).await;
    let (server, base) = start().await;

    for (image, name) in [
        ("nginx:1.27", "nginx-1.27"),
        (
            "gcr.io/google-containers/pause",
            "gcr.io-google-containers-pause",
        ),
    ] {
        let (code, body) = post_deploy(
            &base,
            &tester(),
            &json!({ "image": image, "namespace": namespace }),
        )
        .await;
        assert_eq!(code, 200, "{image}: {body}");
        assert_eq!(
            body,
            json!({ "message": "Pod deployment initiated", "pod_name": name, "namespace": namespace })
        );
        let (code, status) = get_status(&base, &tester(), &namespace, name).await;
        assert_eq!(code, 200, "{status}");
        assert_eq!(status["pod_name"], name);
        let pod = Api::<Pod>::namespaced(admin.clone(), &namespace)
            .get(name)
            .await
            .expect("the pod exists");
        assert_eq!(
            pod.spec.expect("a spec").containers[0].image.as_deref(),
            Some(image)
        );
    }
    server.stop().await.expect("a clean stop");
}

/// Issue 9, defect 8: a malformed body is answered 400 in our words, naming the field that is
/// wrong, never with the JSON parser's own text; nothing is created.
#[tokio::test]
async fn malformed_bodies_are_answered_in_our_words_naming_the_field() {
    let admin = TestCluster::shared().client().await;
    let namespace = create_namespace(&admin, "http-body", &[]).await;
    let (server, base) = start().await;

    #[rustfmt::skip]
    let cases = [
        (format!(r#"{{"image": 1, "namespace": "{namespace}"}}"#),
         "body: field `image` must be a string, not integer `1`".to_owned()),
        (format!(r#"{{"image": "nginx", "namespace": ["{namespace}"]}}"#),
         "body: field `namespace` must be a string, not sequence".to_owned()),
        (r#"{"image": "nginx", "namespace": "x", "pod_name": false}"#.to_owned(),
         "body: field `pod_name` must be a string, not boolean `false`".to_owned()),
        (r#"{"image": "nginx"}"#.to_owned(), "body: field `namespace` is required".to_owned()),
        (r#""nginx""#.to_owned(),
         "body: must be a JSON object with the fields image, namespace and pod_name, not string \"nginx\"".to_owned()),
        (r#"{"image": "nginx", "#.to_owned(), "body: is not complete JSON (it ends at line 1 column".to_owned()),
        (r#"{"image": 'nginx'}"#.to_owned(), "body: is not valid JSON at line 1 column".to_owned()),
        (format!(r#"{{"image": "nginx", "namespace": "{namespace}"}} and more"#),
         "body: is not valid JSON at line 1 column".to_owned()),
    ];
    for (body, detail) in cases {
        let response = client()
            .post(format!("{base}/deploy"))
            .header("authorization", tester())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("POST /deploy");
        let code = response.status().as_u16();
        let answer: Value = response.json().await.expect("a JSON answer");
        assert_eq!(code, 400, "{body} -> {answer}");
        let got = answer["detail"].as_str().unwrap_or_default();
        assert!(
            got.starts_with(&detail),
            "{body} -> {got:?}, want {detail:?}"
        );
        for parser_words in ["Failed to deserialize", "invalid type", "expected"] {
            assert!(!got.contains(parser_words), "{body} -> {got:?}");
        }
    }
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    assert!(
        pods.list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "nothing was created"
    );
    server.stop().await.expect("a clean stop");
}
