//! The JSON Web Key Set that RS256 and ES256 tokens are verified against: parsing, loading
//! from a file or a URL, and reloading when a token names a key we do not have.

use serde::Deserialize as _;
use std::{
    path::PathBuf,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse, RSAKeyParameters,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tracing::{debug, warn};

use super::{AuthError, clip};

/// How long fetching a JWKS from its URL may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest JWKS accepted; real ones are a few kilobytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// RSA moduli outside this range are skipped: smaller ones are too weak to trust, larger ones
/// are beyond what the verifier (the `rsa` crate) accepts.
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file, re-read when a token names an unknown key.
    File(PathBuf),
    /// An HTTP(S) URL, re-fetched when a token names an unknown key.
    Url {
        /// The JWKS address; `http://` is accepted (meant for loopback and tests).
        url: String,
        /// A PEM file of extra CA certificates trusted for `https://` besides the built-in
        /// roots, e.g. the cluster CA for the API server's `/openid/v1/jwks`.
        ca_file: Option<PathBuf>,
        /// A file holding a bearer token to send with the request, read at every fetch so
        /// that a rotated (projected ServiceAccount) token is picked up. The API server wants
        /// one for `/openid/v1/jwks` unless anonymous discovery is allowed.
        token_file: Option<PathBuf>,
    },
}

/// Which signature family a key verifies; a key is only ever used for its own family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    /// An RSA public key, for RS256.
    Rsa,
    /// An EC public key on P-256, for ES256.
    EcP256,
}

impl KeyKind {
    /// The one algorithm this service verifies with keys of this kind.
    pub(super) fn algorithm(self) -> Algorithm {
        match self {
            Self::Rsa => Algorithm::RS256,
            Self::EcP256 => Algorithm::ES256,
        }
    }
}

/// One usable verification key.
struct JwksKey {
    kid: Option<String>,
    kind: KeyKind,
    key: DecodingKey,
}

/// What looking a key up found.
pub(super) enum Lookup<'a> {
    /// The key to verify with.
    Found(&'a DecodingKey),
    /// Keys with the token's `kid` exist, but none of the token's kind.
    WrongKind,
    /// No key fits; with a `kid`, none has it; without one, there is not exactly one key of
    /// the token's kind.
    Missing,
}

/// The usable keys of one JWKS document.
pub(super) struct KeySet {
    keys: Vec<JwksKey>,
}

impl KeySet {
    /// Parses a JWK set (`{"keys":[...]}`). Keys this service cannot use (other key types or
    /// curves, encryption keys, algorithms other than RS256/ES256, weak or malformed keys) are
    /// skipped; a set left with no usable key is an error.
    pub(super) fn parse(json: &[u8]) -> Result<Self, AuthError> {
        // Not `JwkSet` in one go: one key the library cannot read (a key type it does not
        // know, a `kid` that is not a string) would fail the whole set, and every good key
        // with it. The library reads each key on its own instead.
        let document: Value = serde_json::from_slice(json)
            .map_err(|_| AuthError::JwksUnavailable("jwks is not valid json".into()))?;
        let Some(entries) = document.get("keys").and_then(Value::as_array) else {
            return Err(AuthError::JwksUnavailable(
                "jwks has no \"keys\" array".into(),
            ));
        };
        let mut keys = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            match parse_key(entry) {
                Ok(key) => keys.push(key),
                Err(reason) => {
                    let kid = entry
                        .get("kid")
                        .and_then(Value::as_str)
                        .map(|k| clip(k, 64));
                    debug!(index, ?kid, reason, "skipping jwks key");
                }
            }
        }
        if keys.is_empty() {
            return Err(AuthError::JwksUnavailable(
                "jwks has no usable RS256 or ES256 signing key".into(),
            ));
        }
        Ok(Self { keys })
    }

    /// Finds the key for a token of `kind`: by `kid` when the token has one, otherwise the
    /// only key of that kind.
    pub(super) fn find(&self, kid: Option<&str>, kind: KeyKind) -> Lookup<'_> {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|key| key.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Lookup::Missing;
                }
                named
                    .find(|key| key.kind == kind)
                    .map_or(Lookup::WrongKind, |key| Lookup::Found(&key.key))
            }
            None => {
                let mut of_kind = self.keys.iter().filter(|key| key.kind == kind);
                match (of_kind.next(), of_kind.next()) {
                    (Some(only), None) => Lookup::Found(&only.key),
                    // Guessing among several keys would make every one of them a candidate
                    // for every token; a token must name its key then.
                    _ => Lookup::Missing,
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Turns one JWK into a usable key, or says (without key material) why it is skipped.
///
/// The library reads the JWK; what is checked here is what this service requires of a key
/// beyond being well-formed: for signatures, of a type and curve we verify with, restricted
/// to nothing but that algorithm, and not weak.
fn parse_key(entry: &Value) -> Result<JwksKey, String> {
    let jwk = Jwk::deserialize(entry).map_err(|_| "not a well-formed jwk".to_owned())?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(other) => return Err(format!("use is {other:?}, not \"sig\"")),
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            check_rsa(rsa)?;
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            let (Ok(x), Ok(y)) = (URL_SAFE_NO_PAD.decode(&ec.x), URL_SAFE_NO_PAD.decode(&ec.y))
            else {
                return Err("ec x or y is not base64url".into());
            };
            if x.len() != 32 || y.len() != 32 {
                return Err("ec x or y is not 32 bytes".into());
            }
            KeyKind::EcP256
        }
        AlgorithmParameters::EllipticCurve(_) => return Err("ec curve is not P-256".into()),
        // Symmetric ("oct") keys are never taken from a JWKS: HS256 uses only the configured
        // secret, so a published key set can never turn into an HMAC secret.
        AlgorithmParameters::OctetKey(_) => return Err("key type \"oct\" is not used".into()),
        AlgorithmParameters::OctetKeyPair(_) => {
            return Err("key type \"OKP\" is not used".into());
        }
        AlgorithmParameters::Other(other) => {
            return Err(match other.fields.get("kty").and_then(Value::as_str) {
                Some(kty) => format!(
                    "key type {:?} is not used, or its parameters are incomplete",
                    clip(kty, 16)
                ),
                None => "no kty".into(),
            });
        }
        _ => return Err("key type is not used".into()),
    };
    // A key restricted to another algorithm (RS384, PS256, ...) must not verify RS256/ES256;
    // once past this check a key's kind alone decides which algorithm it verifies.
    let wanted = kind.algorithm();
    match &jwk.common.key_algorithm {
        None => {}
        Some(KeyAlgorithm::RS256) if wanted == Algorithm::RS256 => {}
        Some(KeyAlgorithm::ES256) if wanted == Algorithm::ES256 => {}
        Some(alg) => return Err(format!("alg {alg} is not {}", algorithm_name(wanted))),
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "the key does not decode".to_owned())?;
    if kind == KeyKind::EcP256 {
        // Building a verifier parses the point; one that is not on the curve fails here, at
        // load time, instead of turning every token signed "with" it into a bad signature
        // later. The signature is deliberately junk: only whether the verifier could be built
        // matters.
        jsonwebtoken::crypto::verify("AA", b"", &key, Algorithm::ES256)
            .map_err(|_| "ec point is not on P-256".to_owned())?;
    }
    Ok(JwksKey {
        kid: jwk.common.key_id,
        kind,
        key,
    })
}

/// Refuses RSA keys too weak to trust or beyond what the verifier (the `rsa` crate) accepts.
fn check_rsa(rsa: &RSAKeyParameters) -> Result<(), String> {
    let (Ok(n), Ok(e)) = (
        URL_SAFE_NO_PAD.decode(&rsa.n),
        URL_SAFE_NO_PAD.decode(&rsa.e),
    ) else {
        return Err("rsa n or e is not base64url".into());
    };
    let bits = significant_bits(&n);
    if !RSA_MODULUS_BITS.contains(&bits) {
        return Err(format!("rsa modulus has {bits} bits"));
    }
    if significant_bits(&e) < 2 {
        return Err("rsa exponent is too small".into());
    }
    Ok(())
}

/// The number of bits from the most significant set bit of a big-endian integer.
fn significant_bits(bytes: &[u8]) -> usize {
    let mut rest = bytes.iter().skip_while(|&&byte| byte == 0);
    match rest.next() {
        Some(&first) => (8 - first.leading_zeros() as usize) + 8 * rest.count(),
        None => 0,
    }
}

/// The JOSE name of an algorithm.
pub(super) fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::HS256 => "HS256",
        // The verifier never uses the others; a name is still owed for completeness.
        _ => "other",
    }
}

/// Reads or fetches the JWKS document from its source.
struct JwksLoader {
    source: JwksSource,
    /// Built once for a URL source, so connections and the CA set are reused.
    client: Option<reqwest::Client>,
}

impl JwksLoader {
    fn new(source: JwksSource) -> Result<Self, AuthError> {
        let client = match &source {
            JwksSource::File(_) => None,
            JwksSource::Url { ca_file, .. } => Some(http_client(ca_file.as_deref())?),
        };
        Ok(Self { source, client })
    }

    async fn load(&self) -> Result<KeySet, AuthError> {
        let bytes = match (&self.source, &self.client) {
            (JwksSource::File(path), _) => read_file(path.clone()).await?,
            (
                JwksSource::Url {
                    url, token_file, ..
                },
                Some(client),
            ) => fetch(client, url, token_file.as_deref()).await?,
            (JwksSource::Url { .. }, None) => {
                // `new` builds a client for every URL source; this arm only satisfies the match.
                return Err(AuthError::JwksUnavailable("no http client".into()));
            }
        };
        KeySet::parse(&bytes).map_err(|err| match err {
            AuthError::JwksUnavailable(why) => {
                AuthError::JwksUnavailable(format!("{}: {why}", self.describe()))
            }
            other => other,
        })
    }

    fn describe(&self) -> String {
        match &self.source {
            JwksSource::File(path) => path.display().to_string(),
            JwksSource::Url { url, .. } => url.clone(),
        }
    }
}

fn http_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, AuthError> {
    let mut builder = reqwest::Client::builder().timeout(FETCH_TIMEOUT);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|err| {
            AuthError::JwksUnavailable(format!("reading jwks ca file {}: {err}", path.display()))
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
            AuthError::JwksUnavailable(format!("jwks ca file {}: {err}", path.display()))
        })?;
        if certificates.is_empty() {
            return Err(AuthError::JwksUnavailable(format!(
                "jwks ca file {} holds no certificate",
                path.display()
            )));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|err| AuthError::JwksUnavailable(format!("building http client: {}", chain(&err))))
}

async fn read_file(path: PathBuf) -> Result<Vec<u8>, AuthError> {
    let shown = path.display().to_string();
    // A small local file, but still disk I/O: kept off the async worker threads.
    tokio::task::spawn_blocking(move || std::fs::read(&path))
        .await
        .map_err(|err| AuthError::JwksUnavailable(format!("reading {shown}: {err}")))?
        .map_err(|err| AuthError::JwksUnavailable(format!("reading {shown}: {err}")))
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    token_file: Option<&std::path::Path>,
) -> Result<Vec<u8>, AuthError> {
    let unavailable = |err: reqwest::Error| {
        AuthError::JwksUnavailable(format!("fetching {url}: {}", chain(&err)))
    };
    let mut request = client.get(url);
    if let Some(path) = token_file {
        let token = read_file(path.to_path_buf()).await?;
        let token = String::from_utf8(token).map_err(|_| {
            AuthError::JwksUnavailable(format!("jwks token file {} is not text", path.display()))
        })?;
        request = request.bearer_auth(token.trim());
    }
    let mut response = request.send().await.map_err(unavailable)?;
    let status = response.status();
    if !status.is_success() {
        return Err(AuthError::JwksUnavailable(format!(
            "fetching {url}: http status {status}"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(AuthError::JwksUnavailable(format!(
                "fetching {url}: jwks is larger than {MAX_JWKS_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources, for errors (like reqwest's) whose own text leaves out the cause.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The current key set and the single-flight, rate-limited reload behind it.
pub(super) struct KeyStore {
    loader: JwksLoader,
    current: RwLock<Arc<KeySet>>,
    min_refresh_interval: Duration,
    /// Held for a whole reload so that only one runs at a time; holds when the last one
    /// started. A tokio mutex, as the reload awaits I/O while holding it.
    reload_gate: tokio::sync::Mutex<Instant>,
    /// Counts reload attempts, so a caller that waited at the gate can tell that another one
    /// just tried and take its outcome instead of loading again.
    attempts: AtomicU64,
}

impl KeyStore {
    /// Loads the key set once; an unreadable or unusable JWKS is an error here so that a bad
    /// configuration shows at start-up.
    pub(super) async fn new(
        source: JwksSource,
        min_refresh_interval: Duration,
    ) -> Result<Self, AuthError> {
        let loader = JwksLoader::new(source)?;
        let keys = loader.load().await?;
        debug!(source = %loader.describe(), keys = keys.keys.len(), "jwks loaded");
        Ok(Self {
            loader,
            current: RwLock::new(Arc::new(keys)),
            min_refresh_interval,
            // The start-up load counts as a reload for the rate limit.
            reload_gate: tokio::sync::Mutex::new(Instant::now()),
            attempts: AtomicU64::new(0),
        })
    }

    /// The key set in use now.
    pub(super) fn current(&self) -> Arc<KeySet> {
        // The lock only guards an `Arc` swap, which cannot leave it half-written; a poisoned
        // lock still holds a whole key set.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Called when `stale` (the set a caller looked in) lacks the key a token names.
    ///
    /// Returns newer keys to look in again, `Ok(None)` when there are none (a reload ran too
    /// recently, or another caller's reload just failed), or the error of a reload this call
    /// ran that failed; the old keys stay in use then.
    pub(super) async fn refresh(
        &self,
        stale: &Arc<KeySet>,
    ) -> Result<Option<Arc<KeySet>>, AuthError> {
        let attempts_seen = self.attempts.load(Ordering::Acquire);
        let newer = |keys: Arc<KeySet>| (!Arc::ptr_eq(&keys, stale)).then_some(keys);
        if let Some(keys) = newer(self.current()) {
            return Ok(Some(keys));
        }
        let mut last_reload = self.reload_gate.lock().await;
        if self.attempts.load(Ordering::Acquire) != attempts_seen {
            // Another caller reloaded while this one waited at the gate: use what it got.
            return Ok(newer(self.current()));
        }
        if last_reload.elapsed() < self.min_refresh_interval {
            debug!("jwks reload skipped: the last one was too recent");
            return Ok(None);
        }
        *last_reload = Instant::now();
        let result = match self.loader.load().await {
            Ok(keys) => {
                debug!(source = %self.loader.describe(), keys = keys.keys.len(), "jwks reloaded");
                let keys = Arc::new(keys);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&keys);
                Ok(Some(keys))
            }
            Err(err) => {
                warn!(error = %err, "jwks reload failed; keeping the previous keys");
                Err(err)
            }
        };
        // Counted only after the new keys are in place: a caller that sees the new count
        // must also see the new keys, or it would reload again for nothing.
        self.attempts.fetch_add(1, Ordering::Release);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::{JwksSource, KeyKind, KeySet, KeyStore, Lookup, parse_key, significant_bits};
    use crate::auth::{
        AuthError,
        test_keys::{self, TempFile},
    };

    fn parse(value: serde_json::Value) -> Result<KeySet, AuthError> {
        KeySet::parse(value.to_string().as_bytes())
    }

    #[test]
    fn parses_rsa_and_ec_keys_and_skips_the_unusable() {
        let keys = parse(json!({"keys": [
            test_keys::rsa_a_jwk("rsa-a"),
            test_keys::ec_a_jwk("ec-a"),
            // Skipped: symmetric, encryption, another curve, another alg, unknown type.
            {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": test_keys::RSA_A_N, "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
            {"kty": "RSA", "alg": "PS256", "kid": "pss", "n": test_keys::RSA_A_N, "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "AA"},
            {"kid": "no-kty"},
            "not an object",
        ]}))
        .expect("two usable keys");
        assert_eq!(keys.len(), 2);
        assert!(matches!(
            keys.find(Some("rsa-a"), KeyKind::Rsa),
            Lookup::Found(_)
        ));
        assert!(matches!(
            keys.find(Some("ec-a"), KeyKind::EcP256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            keys.find(Some("pss"), KeyKind::Rsa),
            Lookup::Missing
        ));
        assert!(matches!(
            keys.find(Some("oct"), KeyKind::Rsa),
            Lookup::Missing
        ));
    }

    #[test]
    fn skips_malformed_and_weak_keys_for_the_right_reason() {
        let n = test_keys::RSA_A_N;
        let (x, y) = (test_keys::EC_A_X, test_keys::EC_A_Y);
        let table = [
            // Read by the library; what it cannot read is skipped as a whole.
            (json!({"kty": "RSA", "n": n}), "incomplete"),
            (
                json!({"kty": "RSA", "n": "++", "e": "AQAB"}),
                "not base64url",
            ),
            // The first 1032 bits of a 2048-bit modulus: too weak.
            (
                json!({"kty": "RSA", "n": &n[..172], "e": "AQAB"}),
                "1032 bits",
            ),
            (json!({"kty": "RSA", "n": n, "e": "AQ"}), "exponent"),
            (
                json!({"kty": "RSA", "n": n, "e": "AQAB", "use": "enc"}),
                "use",
            ),
            (
                json!({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS512"}),
                "alg",
            ),
            (
                json!({"kty": "RSA", "n": n, "e": "AQAB", "kid": 7}),
                "not a well-formed jwk",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": y}),
                "32 bytes",
            ),
            (
                json!({"kty": "EC", "crv": "P-384", "x": x, "y": y}),
                "P-256",
            ),
            // (x, x) is not a point on the curve.
            (
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": x}),
                "not on P-256",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "alg": "RS256"}),
                "alg",
            ),
            (json!({"kty": "oct", "k": "c2VjcmV0"}), "\"oct\""),
            (json!({"n": n, "e": "AQAB"}), "no kty"),
        ];
        for (jwk, reason) in table {
            match parse_key(&jwk) {
                Err(why) => assert!(why.contains(reason), "{jwk}: {why}"),
                Ok(_) => panic!("{jwk}: accepted"),
            }
        }
        // The same keys, well-formed, are accepted.
        assert!(parse_key(&json!({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256"})).is_ok());
        assert!(
            parse_key(&json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "alg": "ES256"}))
                .is_ok()
        );
    }

    #[test]
    fn rejects_documents_that_are_not_key_sets() {
        for (name, text) in [
            ("not json", "keys"),
            ("no keys array", r#"{"keys": {}}"#),
            ("empty set", r#"{"keys": []}"#),
        ] {
            let err = KeySet::parse(text.as_bytes()).err();
            assert!(
                matches!(err, Some(AuthError::JwksUnavailable(_))),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn lookup_by_kid_and_without_kid() {
        let one_of_each = parse(json!({"keys": [
            test_keys::rsa_a_jwk("shared"),
            test_keys::ec_a_jwk("ec"),
        ]}))
        .expect("valid set");
        // The kid exists but names an RSA key: it is never used for ES256.
        assert!(matches!(
            one_of_each.find(Some("shared"), KeyKind::EcP256),
            Lookup::WrongKind
        ));
        assert!(matches!(
            one_of_each.find(Some("other"), KeyKind::Rsa),
            Lookup::Missing
        ));
        // Without a kid, the only key of the token's kind.
        assert!(matches!(
            one_of_each.find(None, KeyKind::Rsa),
            Lookup::Found(_)
        ));
        assert!(matches!(
            one_of_each.find(None, KeyKind::EcP256),
            Lookup::Found(_)
        ));

        let two_rsa = parse(json!({"keys": [
            test_keys::rsa_a_jwk("a"),
            test_keys::rsa_b_jwk("b"),
        ]}))
        .expect("valid set");
        assert!(matches!(two_rsa.find(None, KeyKind::Rsa), Lookup::Missing));
        assert!(matches!(
            two_rsa.find(None, KeyKind::EcP256),
            Lookup::Missing
        ));
    }

    #[test]
    fn counts_significant_bits() {
        for (bytes, bits) in [
            (&[][..], 0),
            (&[0, 0][..], 0),
            (&[1][..], 1),
            (&[0, 0x80, 0][..], 16),
            (&[0x01, 0, 1][..], 17),
        ] {
            assert_eq!(significant_bits(bytes), bits, "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn start_up_fails_on_a_missing_or_unusable_file() {
        let missing = KeyStore::new(
            JwksSource::File("/nonexistent/k8s-deployer/jwks.json".into()),
            Duration::ZERO,
        )
        .await
        .err();
        assert!(
            matches!(missing, Some(AuthError::JwksUnavailable(_))),
            "{missing:?}"
        );

        let file = TempFile::new("jwks-empty", r#"{"keys":[]}"#);
        let empty = KeyStore::new(JwksSource::File(file.path().into()), Duration::ZERO)
            .await
            .err();
        assert!(
            matches!(empty, Some(AuthError::JwksUnavailable(_))),
            "{empty:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_reload_keeps_the_old_keys() {
        let file = TempFile::new(
            "jwks-reload-fails",
            &test_keys::jwks(&[test_keys::rsa_a_jwk("a")]),
        );
        let store = KeyStore::new(JwksSource::File(file.path().into()), Duration::ZERO)
            .await
            .expect("valid jwks");
        let before = store.current();
        file.write("not json");
        let err = store.refresh(&before).await.err();
        assert!(
            matches!(err, Some(AuthError::JwksUnavailable(_))),
            "{err:?}"
        );
        assert!(
            Arc::ptr_eq(&before, &store.current()),
            "old keys stay in use"
        );
        assert!(matches!(
            store.current().find(Some("a"), KeyKind::Rsa),
            Lookup::Found(_)
        ));
    }

    #[tokio::test]
    async fn concurrent_refreshes_load_once() {
        let file = TempFile::new(
            "jwks-stampede",
            &test_keys::jwks(&[test_keys::rsa_a_jwk("a")]),
        );
        let store = Arc::new(
            KeyStore::new(JwksSource::File(file.path().into()), Duration::ZERO)
                .await
                .expect("valid jwks"),
        );
        let stale = store.current();
        file.write(&test_keys::jwks(&[
            test_keys::rsa_a_jwk("a"),
            test_keys::rsa_b_jwk("b"),
        ]));
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                let stale = Arc::clone(&stale);
                tokio::spawn(async move { store.refresh(&stale).await })
            })
            .collect();
        for waiter in waiters {
            let keys = waiter
                .await
                .expect("task ran")
                .expect("reload succeeded")
                .expect("newer keys");
            assert!(matches!(
                keys.find(Some("b"), KeyKind::Rsa),
                Lookup::Found(_)
            ));
        }
        assert_eq!(
            store.attempts.load(std::sync::atomic::Ordering::Acquire),
            1,
            "one reload served every waiter"
        );
    }
}
