//! Security, as callers and operators meet it, against the service on 127.0.0.1 and a real
//! local control plane: who may call (bearer tokens, client certificates), what they may do
//! (the policy file, the image policy), the transport (TLS, mutual TLS, reloads), the pods'
//! hardening and the namespace's PodSecurity admission, and the audit trail.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_deployer::Config;
use k8s_deployer::proto::deployer::v1 as pb;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use support::{
    DeployerClient, Pki, RunningDeployer, TestAuth, TestCluster, client_with_token,
    create_namespace, es256_key, eventually, now_secs, pods_in, unique,
};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The policy of most tests here: tester may do anything (but reference no Secret, ConfigMap
/// or ServiceAccount); alice may deploy, read and list in the sec-team-* namespaces, with pods
/// that reference a few named objects; the viewers group may list anywhere; the client
/// certificate "cert-client" may list and read. Images: Docker Hub's official images and
/// registry.k8s.io, never tagged latest.
const POLICY: &str = r#"
rules:
  - name: tester-everything
    subjects: [tester]
    namespaces: ["*"]
    actions: ["*"]
  - name: alice-deploys-to-team
    subjects: [alice]
    namespaces: ["sec-team-*"]
    actions: [deploy, status, list]
    references:
      secrets: [db-password, "regcred-*"]
      configMaps: [settings]
      serviceAccounts: [runner]
  - name: viewers-list
    groups: [viewers]
    namespaces: ["*"]
    actions: [list]
  - name: certificate-clients-read
    subjects: [cert-client]
    namespaces: ["*"]
    actions: [list, status]
images:
  allow: ["docker.io/library/*", "registry.k8s.io/**"]
  deniedTags: [latest]
"#;

/// A server started for one test, with its own policy and audit file.
struct Secured {
    deployer: RunningDeployer,
    audit: PathBuf,
}

impl Secured {
    async fn start(policy: &str, tweak: impl FnOnce(&mut Config)) -> Secured {
        let auth = TestAuth::shared();
        let name = unique("secured");
        let policy_path = auth.dir.join(format!("{name}-policy.yaml"));
        std::fs::write(&policy_path, policy).expect("write the policy");
        let audit = auth.dir.join(format!("{name}-audit.jsonl"));
        let mut config = auth.config(Some(&policy_path), Some(&audit));
        tweak(&mut config);
        let deployer = RunningDeployer::with(config).serving().await;
        Secured { deployer, audit }
    }

    fn client(&self, token: &str) -> DeployerClient {
        self.deployer.client_with_token(token)
    }

    /// Every audit record written so far, once there are at least `count`.
    async fn audit_records(&self, count: usize) -> Vec<serde_json::Value> {
        audit_records_once(&self.audit, |records| records.len() >= count).await
    }
}

fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each audit line is JSON"))
        .collect()
}

/// The audit records once `ready` holds for them: a call's record is written by the audit
/// writer just after the call returns.
async fn audit_records_once(
    path: &Path,
    ready: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    eventually("the audit records of the calls")
        .every(Duration::from_millis(20))
        .until(async || {
            let records = audit_records(path);
            if ready(&records) {
                Ok(records)
            } else {
                Err(records)
            }
        })
        .await
}

fn token(subject: &str, groups: &[&str]) -> String {
    TestAuth::shared().token(subject, groups, Duration::from_secs(3600))
}

fn list(namespace: &str) -> pb::ListPodsRequest {
    pb::ListPodsRequest {
        namespace: namespace.to_owned(),
        ..pb::ListPodsRequest::default()
    }
}

fn deploy_request(namespace: &str, image: &str) -> pb::DeployRequest {
    pb::DeployRequest {
        image: image.to_owned(),
        namespace: namespace.to_owned(),
        ..pb::DeployRequest::default()
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA key made by openssl: its PEM and its public JWK with `kid`.
fn rs256_key(dir: &Path, kid: &str) -> (String, serde_json::Value) {
    let path = dir.join(format!("{kid}.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "openssl genpkey: {made:?}");
    let modulus = std::process::Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&path)
        .output()
        .expect("run openssl");
    let text = String::from_utf8(modulus.stdout).expect("text");
    let hex = text.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let jwk = serde_json::json!({
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
        "n": b64(&n), "e": "AQAB",
    });
    (std::fs::read_to_string(&path).expect("the key"), jwk)
}

/// Writes a JWKS file of the shared test key plus `extra`.
fn write_jwks(path: &Path, extra: &[serde_json::Value]) {
    let mut keys: Vec<serde_json::Value> = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(&TestAuth::shared().jwks).expect("the shared jwks"),
    )
    .expect("json")["keys"]
        .as_array()
        .expect("keys")
        .clone();
    keys.extend_from_slice(extra);
    std::fs::write(path, serde_json::json!({ "keys": keys }).to_string()).expect("write jwks");
}

fn claims(subject: &str) -> serde_json::Value {
    let now = now_secs();
    serde_json::json!({
        "iss": support::TEST_ISSUER, "aud": support::TEST_AUDIENCE, "sub": subject,
        "iat": now, "exp": now + 600,
    })
}

fn sign(
    alg: jsonwebtoken::Algorithm,
    kid: &str,
    key: &jsonwebtoken::EncodingKey,
    claims: &serde_json::Value,
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

/// Every kind of bad token is refused with UNAUTHENTICATED, and the message never repeats the
/// token; good RS256 and ES256 tokens are accepted.
#[tokio::test]
async fn bad_tokens_are_unauthenticated_and_good_ones_accepted() {
    let auth = TestAuth::shared();
    let (rsa_pem, rsa_jwk) = rs256_key(&auth.dir, &unique("rsa"));
    let rsa_kid = rsa_jwk["kid"].as_str().expect("kid").to_owned();
    let jwks = auth.dir.join(format!("{}-jwks.json", unique("rsa")));
    write_jwks(&jwks, &[rsa_jwk]);
    let server = Secured::start(POLICY, |config| config.jwks_file = Some(jwks.clone())).await;
    let namespace = "default";

    let rsa = jsonwebtoken::EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).expect("rsa key");
    let (other_pem, _) = es256_key("other");
    let other = jsonwebtoken::EncodingKey::from_ec_pem(other_pem.as_bytes()).expect("ec key");
    let now = now_secs();
    let with = |changes: serde_json::Value| {
        let mut claims = claims("tester");
        for (k, v) in changes.as_object().expect("an object") {
            claims[k] = v.clone();
        }
        claims
    };
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("tester").to_string().as_bytes())
    );
    let hs256 = sign(
        jsonwebtoken::Algorithm::HS256,
        &auth.kid,
        &jsonwebtoken::EncodingKey::from_secret(b"a shared secret nobody configured here"),
        &claims("tester"),
    );

    let cases: Vec<(&str, String)> = vec![
        ("malformed", "not-a-jwt".to_owned()),
        (
            "expired",
            auth.sign(with(serde_json::json!({ "exp": now - 300 }))),
        ),
        (
            "not yet valid",
            auth.sign(with(serde_json::json!({ "nbf": now + 600 }))),
        ),
        (
            "wrong issuer",
            auth.sign(with(serde_json::json!({ "iss": "https://evil.example" }))),
        ),
        (
            "wrong audience",
            auth.sign(with(serde_json::json!({ "aud": "someone-else" }))),
        ),
        (
            "no subject",
            auth.sign(with(serde_json::json!({ "sub": null }))),
        ),
        // Signed by another key under the trusted key's id.
        (
            "wrong signature",
            sign(
                jsonwebtoken::Algorithm::ES256,
                &auth.kid,
                &other,
                &claims("tester"),
            ),
        ),
        (
            "unknown kid",
            sign(
                jsonwebtoken::Algorithm::ES256,
                "nobody-knows-me",
                &other,
                &claims("tester"),
            ),
        ),
        ("HS256 without a configured secret", hs256),
        ("alg none", alg_none),
        // An RSA key id on an ES256 header: the key type must match the algorithm.
        (
            "algorithm and key type disagree",
            sign(
                jsonwebtoken::Algorithm::ES256,
                &rsa_kid,
                &other,
                &claims("tester"),
            ),
        ),
    ];
    for (case, bad) in &cases {
        let refused = server
            .client(bad)
            .list_pods(list(namespace))
            .await
            .expect_err(case);
        assert_eq!(refused.code(), Code::Unauthenticated, "{case}: {refused:?}");
        assert!(
            !refused.message().contains(bad.as_str()),
            "{case}: the token is repeated"
        );
        assert!(!refused.message().is_empty(), "{case}: a reason is given");
    }

    // No token at all.
    let anonymous =
        pb::deployer_service_client::DeployerServiceClient::new(server.deployer.channel.clone())
            .list_pods(list(namespace))
            .await
            .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");

    // Good tokens, both algorithms.
    let es256 = auth.tester_token();
    let rs256 = sign(
        jsonwebtoken::Algorithm::RS256,
        &rsa_kid,
        &rsa,
        &claims("tester"),
    );
    for good in [&es256, &rs256] {
        server
            .client(good)
            .list_pods(list(namespace))
            .await
            .expect("a valid token is accepted");
    }

    // Every refusal was audited, and no token appears in the audit trail.
    let records = server.audit_records(cases.len() + 3).await;
    let refused = records
        .iter()
        .filter(|r| r["code"] == "UNAUTHENTICATED")
        .count();
    assert_eq!(refused, cases.len() + 1, "{records:#?}");
    let text = std::fs::read_to_string(&server.audit).expect("the audit file");
    for (case, bad) in &cases {
        if bad.len() > 20 {
            assert!(
                !text.contains(bad.as_str()),
                "{case}: token in the audit trail"
            );
        }
    }
    assert!(!text.contains(&es256) && !text.contains(&rs256));
}

/// A token signed by a key added to the JWKS after start-up is accepted once the server has
/// read the JWKS again, which an unknown key id makes it do.
#[tokio::test]
async fn a_rotated_key_is_picked_up_on_an_unknown_kid() {
    let auth = TestAuth::shared();
    let jwks = auth.dir.join(format!("{}-jwks.json", unique("rotation")));
    write_jwks(&jwks, &[]);
    let server = Secured::start(POLICY, |config| config.jwks_file = Some(jwks.clone())).await;

    let kid = unique("rotated");
    let (pem, jwk) = es256_key(&kid);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).expect("ec key");
    let rotated = sign(
        jsonwebtoken::Algorithm::ES256,
        &kid,
        &key,
        &claims("tester"),
    );
    let before = server
        .client(&rotated)
        .list_pods(list("default"))
        .await
        .expect_err("unknown key");
    assert_eq!(before.code(), Code::Unauthenticated);

    write_jwks(&jwks, &[jwk]);
    // Reloads are rate-limited; the new key is accepted within the limit.
    eventually("the new key to be picked up")
        .until(
            async || match server.client(&rotated).list_pods(list("default")).await {
                Ok(_) => Ok(()),
                Err(status) => {
                    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                    Err(status)
                }
            },
        )
        .await;
}

/// The policy decides, before the API server is asked: a namespace, an action, a caller
/// without any rule; groups count as subjects do.
#[tokio::test]
async fn the_policy_decides_who_may_do_what_where() {
    let admin = TestCluster::shared().client().await;
    let team = create_namespace(&admin, "sec-team", &[]).await;
    let other = create_namespace(&admin, "sec-other", &[]).await;
    let server = Secured::start(POLICY, |_| {}).await;
    let alice = token("alice", &[]);

    // Allowed: alice deploys to her team's namespace.
    let created = server
        .client(&alice)
        .deploy(deploy_request(&team, "nginx:1.27"))
        .await
        .expect("alice may deploy to sec-team-*")
        .into_inner();
    let name = created.pod.expect("a pod").name;

    // A namespace the policy does not give her: nothing is created there.
    let denied = server
        .client(&alice)
        .deploy(deploy_request(&other, "nginx:1.27"))
        .await
        .expect_err("not her namespace");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    for word in ["alice", "deploy", &other] {
        assert!(
            denied.message().contains(word),
            "{word} in {:?}",
            denied.message()
        );
    }
    assert!(
        pods_in(&admin, &other).await.is_empty(),
        "nothing is created"
    );

    // An action the policy does not give her.
    let denied = server
        .client(&alice)
        .delete_pod(pb::DeletePodRequest {
            namespace: team.clone(),
            name: name.clone(),
            ..pb::DeletePodRequest::default()
        })
        .await
        .expect_err("alice may not delete");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("delete"), "{denied:?}");
    assert_eq!(
        pods_in(&admin, &team).await.len(),
        1,
        "the pod is still there"
    );

    // A group rule: viewers may list, and only list.
    let viewer = token("val", &["viewers"]);
    let listed = server
        .client(&viewer)
        .list_pods(list(&team))
        .await
        .expect("viewers list");
    assert_eq!(listed.into_inner().pods.len(), 1);
    let denied = server
        .client(&viewer)
        .deploy(deploy_request(&team, "nginx:1.27"))
        .await
        .expect_err("viewers do not deploy");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = server
        .client(&viewer)
        .watch_status(pb::WatchStatusRequest {
            namespace: team.clone(),
            name: name.clone(),
            ..pb::WatchStatusRequest::default()
        })
        .await
        .expect_err("viewers do not watch");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // No rule at all: deny by default, even for reads.
    let denied = server
        .client(&token("mallory", &["strangers"]))
        .list_pods(list(&team))
        .await
        .expect_err("no rule for mallory");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("mallory"), "{denied:?}");
}

/// The image policy: registries outside the allowed ones are PERMISSION_DENIED, denied tags
/// and missing digests FAILED_PRECONDITION, each naming its rule; nothing is created.
#[tokio::test]
async fn the_image_policy_refuses_registries_tags_and_undigested_images() {
    let admin = TestCluster::shared().client().await;
    let namespace = create_namespace(&admin, "sec-images", &[]).await;
    let server = Secured::start(POLICY, |_| {}).await;
    let mut client = server.client(&TestAuth::shared().tester_token());

    let cases = [
        (
            "quay.io/evil/miner:1.0",
            Code::PermissionDenied,
            "images.allow",
        ),
        (
            "ghcr.io/acme/app:2.0",
            Code::PermissionDenied,
            "images.allow",
        ),
        (
            "nginx:latest",
            Code::FailedPrecondition,
            "images.deniedTags",
        ),
        // No tag and no digest means latest.
        ("nginx", Code::FailedPrecondition, "images.deniedTags"),
    ];
    for (image, code, rule) in cases {
        let refused = client
            .deploy(deploy_request(&namespace, image))
            .await
            .expect_err(image);
        assert_eq!(refused.code(), code, "{image}: {refused:?}");
        assert!(refused.message().contains(rule), "{image}: {refused:?}");
    }
    assert!(
        pods_in(&admin, &namespace).await.is_empty(),
        "nothing is created"
    );
    for image in [
        "nginx:1.27",
        "docker.io/library/redis:7",
        "registry.k8s.io/pause:3.10",
    ] {
        client
            .deploy(deploy_request(&namespace, image))
            .await
            .expect(image);
    }

    // With digests required.
    let digest_policy = POLICY.replace("deniedTags: [latest]", "requireDigest: true");
    let strict = Secured::start(&digest_policy, |_| {}).await;
    let mut client = strict.client(&TestAuth::shared().tester_token());
    let refused = client
        .deploy(deploy_request(&namespace, "nginx:1.27"))
        .await
        .expect_err("no digest");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("images.requireDigest"),
        "{refused:?}"
    );
    let digest = format!("nginx@sha256:{}", "a".repeat(64));
    client
        .deploy(deploy_request(&namespace, &digest))
        .await
        .expect("with a digest");
}

/// A WatchStatus stream opened with a token that expires while it is open ends with
/// UNAUTHENTICATED at expiry.
#[tokio::test]
async fn a_stream_ends_with_unauthenticated_when_its_token_expires() {
    let admin = TestCluster::shared().client().await;
    let namespace = create_namespace(&admin, "sec-expiry", &[]).await;
    let server = Secured::start(POLICY, |config| config.heartbeat_secs = 1).await;
    let short = TestAuth::shared().token("tester", &[], Duration::from_secs(4));
    let mut stream = server
        .client(&short)
        .watch_status(pb::WatchStatusRequest {
            namespace: namespace.clone(),
            label_selector: "app=none".to_owned(),
            ..pb::WatchStatusRequest::default()
        })
        .await
        .expect("the token is valid when the stream opens")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("a first message")
        .expect("open");
    assert!(matches!(
        first.kind,
        Some(pb::watch_status_response::Kind::Snapshot(_))
    ));

    let ended = eventually("the stream to end once its token expired")
        .every(Duration::ZERO)
        .until(async || match stream.message().await {
            // Heartbeats while the token is valid.
            Ok(Some(message)) => Err(message),
            other => Ok(other),
        })
        .await;
    let status = ended.expect_err("it ends with an error status");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

/// Connects to `addr` over TLS trusting `ca`, with a client certificate if given, and lists
/// pods with `token` if given. Any failure (handshake, transport, status) is an error.
async fn list_over_tls(
    addr: std::net::SocketAddr,
    ca: &str,
    identity: Option<&(String, String)>,
    token: Option<&str>,
) -> Result<pb::ListPodsResponse, tonic::Status> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("a uri")
        .tls_config(tls)
        .expect("a TLS config");
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let request = list("default");
    match token {
        Some(token) => client_with_token(channel, token).list_pods(request).await,
        None => {
            pb::deployer_service_client::DeployerServiceClient::new(channel)
                .list_pods(request)
                .await
        }
    }
    .map(tonic::Response::into_inner)
}

/// TLS: plain text is refused; a token over TLS works; a client certificate from the client
/// CA authenticates its common name, one from another CA is refused; a replaced certificate
/// is served to new connections without a restart.
#[tokio::test]
async fn tls_is_required_and_client_certificates_identify_callers() {
    let auth = TestAuth::shared();
    let dir = auth.dir.join(unique("pki"));
    std::fs::create_dir_all(&dir).expect("a folder");
    let server_pki = Pki::new("server-ca");
    let client_pki = Pki::new("client-ca");
    let rogue_pki = Pki::new("rogue-ca");
    let (cert, key) = server_pki.server();
    let (cert_path, key_path, ca_path) = (
        dir.join("tls.crt"),
        dir.join("tls.key"),
        dir.join("client-ca.crt"),
    );
    std::fs::write(&cert_path, &cert).expect("cert");
    std::fs::write(&key_path, &key).expect("key");
    std::fs::write(&ca_path, &client_pki.ca_pem).expect("ca");

    // This server speaks TLS only: the test connects with its own TLS settings.
    let audit = dir.join("audit.jsonl");
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let config = Config {
        plaintext: false,
        tls_cert: Some(cert_path.clone()),
        tls_key: Some(key_path.clone()),
        tls_client_ca: Some(ca_path),
        ..auth.config(Some(&policy), Some(&audit))
    };
    let server = RunningDeployer::with(config).start().await;
    let addr = server.addr;
    let tester = auth.tester_token();

    // Plain text to the TLS port gets nowhere.
    // (The client may fail to connect, or connect and fail on the call: either way, no answer.)
    let plain = match Channel::from_shared(format!("http://{addr}"))
        .expect("a uri")
        .connect()
        .await
    {
        Ok(channel) => client_with_token(channel, &tester)
            .list_pods(list("default"))
            .await
            .map(|_| ())
            .map_err(|status| status.to_string()),
        Err(error) => Err(error.to_string()),
    };
    assert!(plain.is_err(), "plain text was served");

    // A token over TLS.
    list_over_tls(addr, &server_pki.ca_pem, None, Some(&tester))
        .await
        .expect("a token over TLS");
    // TLS alone proves nothing about the caller.
    let anonymous = list_over_tls(addr, &server_pki.ca_pem, None, None)
        .await
        .expect_err("no credentials");
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");

    // A client certificate from the client CA: its common name is the subject.
    let good = client_pki.client("cert-client", &["team-x"]);
    list_over_tls(addr, &server_pki.ca_pem, Some(&good), None)
        .await
        .expect("a client certificate from the client CA");
    let records = audit_records_once(&audit, |records| {
        records.iter().any(|r| r["subject"] == "cert-client")
    })
    .await;
    let last = records
        .iter()
        .rfind(|r| r["subject"] == "cert-client")
        .expect("an audit record");
    assert_eq!(last["subject"], "cert-client");
    assert_eq!(last["groups"], serde_json::json!(["team-x"]));
    assert_eq!(last["credential"], "client_certificate");
    assert_eq!(last["code"], "OK");
    // Another subject name, not in the policy: authenticated, then denied.
    let stranger = client_pki.client("someone-else", &[]);
    let denied = list_over_tls(addr, &server_pki.ca_pem, Some(&stranger), None)
        .await
        .expect_err("no rule for someone-else");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // A certificate that expires while its connection stays open: refused from then on,
    // although the handshake accepted it.
    let expiring = client_pki.client_until(
        "cert-client",
        &[],
        Some(time::OffsetDateTime::now_utc() + time::Duration::seconds(3)),
    );
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .expect("a uri")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&server_pki.ca_pem))
                .domain_name("localhost")
                .identity(Identity::from_pem(&expiring.0, &expiring.1)),
        )
        .expect("a TLS config")
        .connect()
        .await
        .expect("connect while the certificate is valid");
    let mut on_one_connection = pb::deployer_service_client::DeployerServiceClient::new(channel);
    on_one_connection
        .list_pods(list("default"))
        .await
        .expect("valid now");
    // Accepted until it expires; from then on, every call is refused.
    let expired = eventually("the certificate to expire")
        .until(
            async || match on_one_connection.list_pods(list("default")).await {
                Ok(_) => Err("the call is still accepted"),
                Err(status) => Ok(status),
            },
        )
        .await;
    assert_eq!(expired.code(), Code::Unauthenticated, "{expired:?}");
    assert!(expired.message().contains("expired"), "{expired:?}");

    // The same name from a CA the server does not trust: the handshake fails.
    let rogue = rogue_pki.client("cert-client", &[]);
    let refused = list_over_tls(addr, &server_pki.ca_pem, Some(&rogue), None).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA was accepted"
    );
    assert_ne!(
        refused.as_ref().map_err(tonic::Status::code).err(),
        Some(Code::PermissionDenied)
    );

    // Replace the server's certificate with one from another CA: new connections get it.
    let renewed_pki = Pki::new("renewed-ca");
    let (cert, key) = renewed_pki.server();
    std::fs::write(&key_path, &key).expect("key");
    std::fs::write(&cert_path, &cert).expect("cert");
    eventually("the renewed certificate to be served")
        .until(async || list_over_tls(addr, &renewed_pki.ca_pem, None, Some(&tester)).await)
        .await;
    let old = list_over_tls(addr, &server_pki.ca_pem, None, Some(&tester)).await;
    assert!(old.is_err(), "the old certificate is still served");

    server.stop().await.expect("a clean stop");
}

/// Pods are hardened, to the restricted profile where the namespace enforces it; a pod
/// weaker than the namespace enforces is rejected by the real PodSecurity admission and the
/// caller gets FAILED_PRECONDITION with the admission's reason.
#[tokio::test]
async fn pods_are_hardened_and_pod_security_admission_is_honoured() {
    let admin = TestCluster::shared().client().await;
    let restricted = create_namespace(
        &admin,
        "sec-restricted",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )
    .await;
    let open = create_namespace(&admin, "sec-open", &[]).await;
    let server = Secured::start(POLICY, |_| {}).await;
    let mut client = server.client(&TestAuth::shared().tester_token());

    // The namespace enforces restricted: the pod is made restricted, and admitted.
    let deployed = client
        .deploy(deploy_request(&restricted, "nginx:1.27"))
        .await
        .expect("admitted")
        .into_inner();
    assert_eq!(deployed.pod_security(), pb::PodSecurity::Restricted);
    let name = deployed.pod.expect("a pod").name;
    let pod = Api::<Pod>::namespaced(admin.clone(), &restricted)
        .get(&name)
        .await
        .expect("the pod");
    let spec = pod.spec.expect("a spec");
    assert_eq!(spec.automount_service_account_token, Some(false));
    let context = spec.containers[0]
        .security_context
        .clone()
        .expect("a security context");
    assert_eq!(context.run_as_non_root, Some(true));
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(
        context.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(
        context.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );

    // Asking for less than the namespace enforces: the admission says no, nothing is created.
    let mut weaker = deploy_request(&restricted, "nginx:1.27");
    weaker.pod_security = pb::PodSecurity::Baseline.into();
    let rejected = client
        .deploy(weaker)
        .await
        .expect_err("PodSecurity rejects it");
    assert_eq!(rejected.code(), Code::FailedPrecondition, "{rejected:?}");
    assert!(
        rejected.message().contains("violates PodSecurity"),
        "{rejected:?}"
    );
    assert!(rejected.message().contains("runAsNonRoot"), "{rejected:?}");
    assert_eq!(
        pods_in(&admin, &restricted).await.len(),
        1,
        "only the first pod exists"
    );

    // No label: the server's default, baseline, still hardened, root allowed.
    let deployed = client
        .deploy(deploy_request(&open, "nginx:1.27"))
        .await
        .expect("deployed")
        .into_inner();
    assert_eq!(deployed.pod_security(), pb::PodSecurity::Baseline);
    let name = deployed.pod.expect("a pod").name;
    let pod = Api::<Pod>::namespaced(admin.clone(), &open)
        .get(&name)
        .await
        .expect("the pod");
    let context = pod.spec.expect("spec").containers[0]
        .security_context
        .clone()
        .expect("context");
    assert_eq!(context.run_as_non_root, None);
    assert_eq!(context.allow_privilege_escalation, Some(false));
}

/// A request with every workload field, as a caller would send it to namespace `namespace`,
/// referencing the Secret db-password (a key and all of it), the ConfigMap settings, the pull
/// secret regcred-hub and the ServiceAccount runner.
fn workload_request(namespace: &str) -> pb::DeployRequest {
    use pb::env_from_source::Source as EnvFrom;
    use pb::env_var_source::Source as ValueFrom;
    use pb::probe::Action;
    let key = |name: &str, key: &str| pb::KeyReference {
        name: name.into(),
        key: key.into(),
        optional: false,
    };
    let seconds = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
    pb::DeployRequest {
        env: vec![
            pb::EnvVar {
                name: "DB_PASSWORD".into(),
                value_from: Some(pb::EnvVarSource {
                    source: Some(ValueFrom::SecretKey(key("db-password", "password"))),
                }),
                ..pb::EnvVar::default()
            },
            pb::EnvVar {
                name: "MODE".into(),
                value_from: Some(pb::EnvVarSource {
                    source: Some(ValueFrom::ConfigMapKey(key("settings", "mode"))),
                }),
                ..pb::EnvVar::default()
            },
        ],
        env_from: vec![
            pb::EnvFromSource {
                prefix: "DB_".into(),
                source: Some(EnvFrom::Secret("db-password".into())),
                optional: false,
            },
            pb::EnvFromSource {
                prefix: String::new(),
                source: Some(EnvFrom::ConfigMap("settings".into())),
                optional: true,
            },
        ],
        ports: vec![pb::ContainerPort {
            name: "http".into(),
            container_port: 8080,
            protocol: 0,
        }],
        probes: Some(pb::Probes {
            readiness: Some(pb::Probe {
                action: Some(Action::HttpGet(pb::HttpGetAction {
                    path: "/ready".into(),
                    port_name: "http".into(),
                    headers: vec![pb::HttpHeader {
                        name: "X-Probe".into(),
                        value: "1".into(),
                    }],
                    ..pb::HttpGetAction::default()
                })),
                period: seconds(5),
                success_threshold: 2,
                ..pb::Probe::default()
            }),
            liveness: Some(pb::Probe {
                action: Some(Action::Grpc(pb::GrpcAction {
                    port: 9090,
                    service: "app".into(),
                })),
                initial_delay: seconds(10),
                ..pb::Probe::default()
            }),
            startup: Some(pb::Probe {
                action: Some(Action::Exec(pb::ExecAction {
                    command: vec!["/bin/ready".into()],
                })),
                failure_threshold: 30,
                ..pb::Probe::default()
            }),
        }),
        image_pull_secrets: vec!["regcred-hub".into()],
        service_account: "runner".into(),
        node_selector: [("kubernetes.io/os".to_owned(), "linux".to_owned())].into(),
        tolerations: vec![
            pb::Toleration {
                key: "dedicated".into(),
                value: "apps".into(),
                effect: pb::TaintEffect::NoSchedule.into(),
                ..pb::Toleration::default()
            },
            pb::Toleration {
                key: "node.kubernetes.io/unreachable".into(),
                operator: pb::TolerationOperator::Exists.into(),
                effect: pb::TaintEffect::NoExecute.into(),
                toleration_seconds: seconds(60),
                ..pb::Toleration::default()
            },
        ],
        ..deploy_request(namespace, "nginx:1.27")
    }
}

/// The workload fields reach the pod as created, when the policy lets the caller reference
/// what they name; a reference it does not allow is PERMISSION_DENIED, naming the field, the
/// object and the policy key, before anything reaches the API server (even in a namespace
/// that does not exist), and nothing is created.
#[tokio::test]
async fn workload_fields_reach_the_pod_and_references_need_the_policy() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let admin = TestCluster::shared().client().await;
    let team = create_namespace(&admin, "sec-team", &[]).await;
    // The ServiceAccount admission refuses a pod whose ServiceAccount does not exist (Secrets
    // and ConfigMaps are only looked up by the kubelet).
    let runner: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "runner"}}))
            .expect("a service account");
    Api::<ServiceAccount>::namespaced(admin.clone(), &team)
        .create(&Default::default(), &runner)
        .await
        .expect("create the service account");
    let server = Secured::start(POLICY, |_| {}).await;
    let mut alice = server.client(&token("alice", &[]));

    let deployed = alice
        .deploy(workload_request(&team))
        .await
        .expect("alice may reference these")
        .into_inner();
    let name = deployed.pod.expect("a pod").name;
    let pod = Api::<Pod>::namespaced(admin.clone(), &team)
        .get(&name)
        .await
        .expect("the pod");
    let spec = serde_json::to_value(pod.spec.expect("a spec")).expect("JSON");
    let container = &spec["containers"][0];
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        serde_json::json!({"path": "/ready", "port": "http", "scheme": "HTTP",
                           "httpHeaders": [{"name": "X-Probe", "value": "1"}]})
    );
    assert_eq!(container["readinessProbe"]["periodSeconds"], 5);
    assert_eq!(container["readinessProbe"]["successThreshold"], 2);
    assert_eq!(
        container["livenessProbe"]["grpc"],
        serde_json::json!({"port": 9090, "service": "app"})
    );
    assert_eq!(container["livenessProbe"]["initialDelaySeconds"], 10);
    assert_eq!(
        container["startupProbe"]["exec"]["command"],
        serde_json::json!(["/bin/ready"])
    );
    assert_eq!(container["startupProbe"]["failureThreshold"], 30);
    assert_eq!(
        container["env"],
        serde_json::json!([
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-password", "key": "password", "optional": false}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode", "optional": false}}},
        ])
    );
    assert_eq!(
        container["envFrom"],
        serde_json::json!([
            {"prefix": "DB_", "secretRef": {"name": "db-password", "optional": false}},
            {"configMapRef": {"name": "settings", "optional": true}},
        ])
    );
    assert_eq!(
        spec["imagePullSecrets"],
        serde_json::json!([{"name": "regcred-hub"}])
    );
    assert_eq!(spec["serviceAccountName"], "runner");
    assert_eq!(
        spec["automountServiceAccountToken"], false,
        "still no token"
    );
    assert_eq!(
        spec["nodeSelector"],
        serde_json::json!({"kubernetes.io/os": "linux"})
    );
    let tolerations = spec["tolerations"].as_array().expect("tolerations");
    for wanted in [
        serde_json::json!({"key": "dedicated", "operator": "Equal", "value": "apps", "effect": "NoSchedule"}),
        serde_json::json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}),
    ] {
        // The DefaultTolerationSeconds admission adds tolerations of its own.
        assert!(tolerations.contains(&wanted), "{wanted} in {tolerations:?}");
    }

    // References the policy does not allow: each refused with its field, object and key.
    // The namespace does not exist: had anything reached the API server, the answer would be
    // NOT_FOUND (as it is for the allowed request).
    let missing = unique("sec-team-missing");
    let tester = TestAuth::shared().tester_token();
    type Edit = fn(&mut pb::DeployRequest);
    let cases: [(&str, Edit, &str); 4] = [
        (
            "alice",
            |r| {
                r.env[0].value_from = Some(pb::EnvVarSource {
                    source: Some(pb::env_var_source::Source::SecretKey(pb::KeyReference {
                        name: "admin-token".into(),
                        key: "token".into(),
                        optional: false,
                    })),
                });
            },
            "env[0].value_from.secret_key: the policy does not let \"alice\" reference Secret \"admin-token\" in namespace",
        ),
        (
            "alice",
            |r| r.env_from[1].source = Some(pb::env_from_source::Source::ConfigMap("other".into())),
            "env_from[1].config_map: the policy does not let \"alice\" reference ConfigMap \"other\" in namespace",
        ),
        (
            "alice",
            |r| r.service_account = "builder".into(),
            "service_account: the policy does not let \"alice\" reference ServiceAccount \"builder\" in namespace",
        ),
        // Every action, but no references.
        (
            "tester",
            |_| {},
            "image_pull_secrets[0]: the policy does not let \"tester\" reference Secret \"regcred-hub\"",
        ),
    ];
    for namespace in [&team, &missing] {
        for (who, edit, want) in &cases {
            let mut request = workload_request(namespace);
            edit(&mut request);
            let token = if *who == "alice" {
                token("alice", &[])
            } else {
                tester.clone()
            };
            let refused = server
                .client(&token)
                .deploy(request)
                .await
                .expect_err("not allowed");
            assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
            assert!(refused.message().contains(want), "{want}: {refused:?}");
            let key = if want.contains("Secret") {
                "(rules[].references.secrets)"
            } else if want.contains("ConfigMap") {
                "(rules[].references.configMaps)"
            } else {
                "(rules[].references.serviceAccounts)"
            };
            assert!(refused.message().contains(key), "{key}: {refused:?}");
        }
    }
    // The tester's refusal lists every reference, not just the first.
    let refused = server
        .client(&tester)
        .deploy(workload_request(&team))
        .await
        .expect_err("no references for tester");
    for field in [
        "env[0].value_from.secret_key",
        "env[1].value_from.config_map_key",
        "env_from[0].secret",
        "env_from[1].config_map",
        "image_pull_secrets[0]",
        "service_account",
    ] {
        assert!(
            refused.message().contains(&format!("{field}: ")),
            "{field}: {refused:?}"
        );
    }
    let allowed_elsewhere = alice
        .deploy(workload_request(&missing))
        .await
        .expect_err("no such namespace");
    assert_eq!(
        allowed_elsewhere.code(),
        Code::NotFound,
        "{allowed_elsewhere:?}"
    );
    assert_eq!(
        pods_in(&admin, &team).await.len(),
        1,
        "only the allowed pod exists"
    );
}

/// One audit record per call, field by field, for a success and for a refusal; never a
/// token or an environment value.
#[tokio::test]
async fn the_audit_trail_records_successes_and_refusals_field_by_field() {
    let admin = TestCluster::shared().client().await;
    let team = create_namespace(&admin, "sec-team", &[]).await;
    let other = create_namespace(&admin, "sec-other", &[]).await;
    let server = Secured::start(POLICY, |_| {}).await;
    let alice = token("alice", &["developers"]);
    let mut client = server.client(&alice);

    let before = now_secs();
    let mut request = deploy_request(&team, "nginx:1.27");
    request.name = "audited".to_owned();
    request.request_id = "audit-request-1".to_owned();
    request.env = vec![pb::EnvVar {
        name: "DATABASE_PASSWORD".to_owned(),
        value: "hunter2-do-not-log".to_owned(),
        value_from: None,
    }];
    client.deploy(request).await.expect("deployed");
    let denied = client
        .deploy(deploy_request(&other, "nginx:1.27"))
        .await
        .expect_err("denied");
    assert_eq!(denied.code(), Code::PermissionDenied);

    let records = server.audit_records(2).await;
    assert_eq!(records.len(), 2, "one record per call: {records:#?}");
    let success = &records[0];
    assert_eq!(success["kind"], "audit");
    assert_eq!(success["subject"], "alice");
    assert_eq!(success["groups"], serde_json::json!(["developers"]));
    assert_eq!(success["credential"], "bearer_token");
    assert!(
        success["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{success}"
    );
    assert_eq!(success["method"], "deployer.v1.DeployerService/Deploy");
    assert_eq!(success["namespace"], team.as_str());
    assert_eq!(success["pod"], "audited");
    assert_eq!(success["image"], "nginx:1.27");
    assert_eq!(success["request_id"], "audit-request-1");
    assert_eq!(success["code"], "OK");
    assert_eq!(success["reason"], "");
    assert!(
        success["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{success}"
    );
    let time: jiff::Timestamp = success["time"]
        .as_str()
        .expect("a time")
        .parse()
        .expect("RFC 3339");
    assert!(
        time.as_second() >= before - 1 && time.as_second() <= now_secs() + 1,
        "{time}"
    );

    let refusal = &records[1];
    assert_eq!(refusal["subject"], "alice");
    assert_eq!(refusal["namespace"], other.as_str());
    assert_eq!(refusal["pod"], "");
    assert_eq!(refusal["image"], "nginx:1.27");
    assert_eq!(refusal["code"], "PERMISSION_DENIED");
    assert!(
        refusal["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no rule")),
        "{refusal}"
    );

    let text = std::fs::read_to_string(&server.audit).expect("the audit file");
    assert!(
        !text.contains("hunter2-do-not-log"),
        "an env value in the audit trail"
    );
    assert!(
        !text.contains("DATABASE_PASSWORD"),
        "an env name in the audit trail"
    );
    assert!(!text.contains(&alice), "the token in the audit trail");
}

/// Health and reflection answer without credentials by default, and only with them when
/// --auth-all-services is set.
#[tokio::test]
async fn health_and_reflection_are_open_unless_configured_otherwise() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let open = Secured::start(POLICY, |_| {}).await;
    HealthClient::new(open.deployer.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health is open");

    let closed = Secured::start(POLICY, |config| config.auth_all_services = true).await;
    let refused = HealthClient::new(closed.deployer.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect_err("health needs a token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let bearer = support::Bearer::new(&TestAuth::shared().tester_token());
    HealthClient::with_interceptor(closed.deployer.channel.clone(), bearer)
        .check(HealthCheckRequest::default())
        .await
        .expect("health with a token");
}

/// The plain-text health port serves health and nothing else.
#[tokio::test]
async fn the_health_port_serves_only_health() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let auth = TestAuth::shared();
    let config = Config {
        health_listen: Some("127.0.0.1:0".parse().expect("an address")),
        ..auth.config(None, None)
    };
    let server = RunningDeployer::with(config).start().await;
    let health_addr = server.health_addr.expect("a health port");
    let channel = Channel::from_shared(format!("http://{health_addr}"))
        .expect("a uri")
        .connect()
        .await
        .expect("connect to the health port");
    eventually("the health port to report SERVING")
        .until(async || {
            let status = HealthClient::new(channel.clone())
                .check(HealthCheckRequest::default())
                .await
                .expect("health answers")
                .into_inner()
                .status();
            match status {
                tonic_health::pb::health_check_response::ServingStatus::Serving => Ok(()),
                other => Err(other),
            }
        })
        .await;
    let other = client_with_token(channel, &auth.tester_token())
        .list_pods(list("default"))
        .await
        .expect_err("the deployer is not on the health port");
    assert_eq!(other.code(), Code::Unimplemented, "{other:?}");
    server.stop().await.expect("a clean stop");
}

/// The server does not start half-secured: no TLS without --plaintext, no policy, no way to
/// authenticate, tokens without issuer or audience, an invalid policy.
#[tokio::test]
async fn the_server_refuses_to_start_without_its_security_settings() {
    let auth = TestAuth::shared();
    let good = || Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        kubeconfig: Some(TestCluster::shared().kubeconfig.clone()),
        ..auth.config(None, None)
    };
    let invalid_policy = auth.dir.join("invalid-policy.yaml");
    std::fs::write(
        &invalid_policy,
        "rules:\n  - name: x\n    subjects: [a]\n    namespaces: [ns]\n    actions: [deploi]\n",
    )
    .expect("write");
    let cases: Vec<(&str, Config)> = vec![
        (
            "TLS is required",
            Config {
                plaintext: false,
                ..good()
            },
        ),
        (
            "--policy is required",
            Config {
                policy: None,
                ..good()
            },
        ),
        (
            "no way to authenticate callers",
            Config {
                jwks_file: None,
                ..good()
            },
        ),
        (
            "--jwt-issuer is required",
            Config {
                jwt_issuer: None,
                ..good()
            },
        ),
        (
            "--jwt-audience is required",
            Config {
                jwt_audiences: vec![],
                ..good()
            },
        ),
        (
            "policy",
            Config {
                policy: Some(invalid_policy),
                ..good()
            },
        ),
    ];
    for (expected, config) in cases {
        let error = k8s_deployer::Server::bind(&config)
            .await
            .expect_err(expected);
        let text = k8s_deployer::error::chain(&error);
        assert!(text.contains(expected), "{expected}: {text}");
    }
    k8s_deployer::Server::bind(&good())
        .await
        .expect("the complete configuration starts");
}

/// The operator's profile is a floor: a request for less than `--pod-security` (or the
/// policy's namespace setting) is PERMISSION_DENIED, before anything is created.
#[tokio::test]
async fn a_request_cannot_weaken_the_operators_pod_security() {
    let admin = TestCluster::shared().client().await;
    let namespace = create_namespace(&admin, "sec-floor", &[]).await;
    let server = Secured::start(POLICY, |config| {
        config.pod_security = k8s_deployer::domain::spec::PodSecurityProfile::Restricted;
    })
    .await;
    let mut client = server.client(&TestAuth::shared().tester_token());
    let mut weaker = deploy_request(&namespace, "nginx:1.27");
    weaker.pod_security = pb::PodSecurity::Baseline.into();
    let refused = client.deploy(weaker).await.expect_err("below the floor");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("pod_security"), "{refused:?}");
    assert!(
        pods_in(&admin, &namespace).await.is_empty(),
        "nothing is created"
    );
    let deployed = client
        .deploy(deploy_request(&namespace, "nginx:1.27"))
        .await
        .expect("the floor applies")
        .into_inner();
    assert_eq!(deployed.pod_security(), pb::PodSecurity::Restricted);
}
