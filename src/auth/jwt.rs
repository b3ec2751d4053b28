//! Bearer tokens: verifying a compact JWS (RS256, ES256, HS256) and reading the caller from
//! its claims.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};
use tracing::debug;

use super::{
    AuthError, clip,
    jwks::{JwksSource, KeyKind, KeyStore, Lookup, algorithm_name},
};
use crate::domain::{Caller, Credential};

/// Tokens longer than this are refused before any parsing; real ones are a few kilobytes.
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// The subject prefix of Kubernetes ServiceAccount tokens: `system:serviceaccount:<ns>:<name>`.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// The group Kubernetes puts every ServiceAccount in.
const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";

/// How bearer tokens are verified.
#[derive(Clone)]
pub struct JwtSettings {
    /// Where the RS256/ES256 public keys come from; without it RS256 and ES256 are refused.
    pub jwks: Option<JwksSource>,
    /// The HS256 shared secret; HS256 is refused unless it is set.
    pub hs256_secret: Option<Vec<u8>>,
    /// The issuer; a token's `iss` must equal it exactly.
    pub issuer: String,
    /// Accepted audiences (at least one); a token's `aud` (a string or an array) must hold one.
    pub audiences: Vec<String>,
    /// Clock-skew allowance for `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim holding the caller's groups: a string or an array of strings.
    pub groups_claim: String,
    /// A token naming a key the JWKS lacks reloads the JWKS at most this often.
    pub min_refresh_interval: Duration,
}

impl JwtSettings {
    /// The default clock-skew allowance.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
    /// The default groups claim.
    pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
    /// The default minimum time between JWKS reloads.
    pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

    /// Settings for `issuer` and `audiences` with the defaults and no keys; set `jwks` and/or
    /// `hs256_secret` before use.
    #[must_use]
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            jwks: None,
            hs256_secret: None,
            issuer: issuer.into(),
            audiences,
            leeway: Self::DEFAULT_LEEWAY,
            groups_claim: Self::DEFAULT_GROUPS_CLAIM.to_owned(),
            min_refresh_interval: Self::DEFAULT_MIN_REFRESH_INTERVAL,
        }
    }

    fn check(&self) -> Result<(), AuthError> {
        let invalid = |why: &str| Err(AuthError::Settings(why.to_owned()));
        if self.issuer.is_empty() {
            return invalid("issuer is empty");
        }
        if self.audiences.is_empty() {
            return invalid("no audience is configured");
        }
        if self.audiences.iter().any(String::is_empty) {
            return invalid("an audience is empty");
        }
        if self.groups_claim.is_empty() {
            return invalid("groups claim name is empty");
        }
        match (&self.jwks, &self.hs256_secret) {
            (None, None) => invalid("neither a jwks nor an hs256 secret is configured"),
            (_, Some(secret)) if secret.is_empty() => invalid("hs256 secret is empty"),
            _ => Ok(()),
        }
    }
}

// By hand, so that the HS256 secret never reaches a log.
impl fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSettings")
            .field("jwks", &self.jwks)
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .field("groups_claim", &self.groups_claim)
            .field("min_refresh_interval", &self.min_refresh_interval)
            .finish()
    }
}

/// Verifies bearer tokens and turns them into [`Caller`]s.
///
/// Cheap to clone: clones share the keys, so a JWKS reload triggered through one is seen by
/// all.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audiences: Vec<String>,
    /// The claim checks (iss, aud, exp, nbf, leeway, required claims), done by the library;
    /// `algorithms` is set per token to the one algorithm its key verifies.
    validation: Validation,
    groups_claim: String,
    hs256: Option<DecodingKey>,
    jwks: Option<KeyStore>,
}

/// The algorithms a token may use, each tied to where its key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenAlgorithm {
    /// Verified with a JWKS key.
    Asymmetric(KeyKind),
    /// Verified with the configured secret only.
    Hs256,
}

impl JwtVerifier {
    /// Checks the settings and loads the JWKS once (a file must read and parse, a URL must
    /// fetch), so that configuration errors show at start-up.
    ///
    /// # Errors
    ///
    /// [`AuthError::Settings`] for inconsistent settings, [`AuthError::JwksUnavailable`] when
    /// the JWKS cannot be loaded or holds no usable key.
    pub async fn new(settings: JwtSettings) -> Result<Self, AuthError> {
        settings.check()?;
        let validation = claim_validation(&settings);
        let jwks = match settings.jwks {
            Some(source) => Some(KeyStore::new(source, settings.min_refresh_interval).await?),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: settings.issuer,
                audiences: settings.audiences,
                validation,
                groups_claim: settings.groups_claim,
                hs256: settings
                    .hs256_secret
                    .as_deref()
                    .map(DecodingKey::from_secret),
                jwks,
            }),
        })
    }

    /// Verifies a compact JWS and returns the caller it names.
    ///
    /// # Errors
    ///
    /// One [`AuthError`] variant per reason: malformed token, algorithm not allowed, unknown
    /// key, bad signature, expired, not yet valid, wrong issuer or audience, missing claim.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let result = self.verify_inner(token).await;
        if let Err(err) = &result {
            debug!(reason = %err, "bearer token refused");
        }
        result
    }

    async fn verify_inner(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(malformed("token is too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(_payload), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("not three dot-separated parts"));
        };
        // The header is read here, before the library sees the token, so that a refused `alg`
        // is named (the library has no variant for `none`, say) and a key is picked by our
        // rules; the claims are left to the library.
        let header = json_object(header_b64, "header")?;
        let algorithm = allowed_algorithm(&header)?;
        if header.contains_key("crit") {
            // RFC 7515 §4.1.11: extensions marked critical must be understood; none are.
            return Err(malformed("critical header parameters are not supported"));
        }
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(malformed("kid is not a string")),
        };
        // Told apart here, as the library reports an undecodable signature and undecodable
        // claims alike: a signature that is not even base64url proves nothing.
        if URL_SAFE_NO_PAD.decode(signature_b64).is_err() {
            return Err(AuthError::BadSignature);
        }

        let claims = match algorithm {
            TokenAlgorithm::Hs256 => {
                // Never a JWKS key: with no secret, an attacker could otherwise sign HS256 with
                // a published RSA key as the "secret" (key confusion).
                let Some(secret) = &self.inner.hs256 else {
                    return Err(AuthError::AlgorithmNotAllowed("HS256".into()));
                };
                self.decode(token, secret, Algorithm::HS256)?
            }
            TokenAlgorithm::Asymmetric(kind) => self.decode_with_jwks(token, kind, kid).await?,
        };
        self.caller_from_claims(&claims)
    }

    /// Verifies the signature with `key` and checks the claims (the library does both, the
    /// signature first), returning the claims.
    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        algorithm: Algorithm,
    ) -> Result<Map<String, Value>, AuthError> {
        let mut validation = self.inner.validation.clone();
        validation.algorithms = vec![algorithm];
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|error| refusal(error.kind()))
    }

    async fn decode_with_jwks(
        &self,
        token: &str,
        kind: KeyKind,
        kid: Option<&str>,
    ) -> Result<Map<String, Value>, AuthError> {
        let alg = algorithm_name(kind.algorithm());
        let Some(store) = &self.inner.jwks else {
            return Err(AuthError::AlgorithmNotAllowed(alg.into()));
        };
        let mut keys = store.current();
        let mut reloaded = false;
        loop {
            match keys.find(kid, kind) {
                Lookup::Found(key) => return self.decode(token, key, kind.algorithm()),
                Lookup::WrongKind => {
                    return Err(AuthError::KeyAlgorithmMismatch {
                        kid: clip(kid.unwrap_or_default(), 64),
                        alg,
                    });
                }
                // Keys rotate: a kid we do not know may be one published since the last load.
                Lookup::Missing if !reloaded => match store.refresh(&keys).await? {
                    Some(newer) => {
                        keys = newer;
                        reloaded = true;
                    }
                    None => break,
                },
                Lookup::Missing => break,
            }
        }
        Err(AuthError::UnknownKey {
            kid: kid.map(|kid| clip(kid, 64)),
        })
    }

    /// The caller named by claims the library has verified and checked.
    fn caller_from_claims(&self, claims: &Map<String, Value>) -> Result<Caller, AuthError> {
        let inner = &*self.inner;
        // RFC 7519 makes `iss` one string; the library also accepts an array that holds ours.
        if !claims.get("iss").is_some_and(Value::is_string) {
            return Err(AuthError::WrongIssuer);
        }

        // Not among the library's required claims: an empty or non-string subject names no
        // one, and it is read here anyway.
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(AuthError::MissingClaim("sub"));
            }
            Some(_) => return Err(malformed("sub is not a string")),
        };

        let mut groups = groups(claims.get(&inner.groups_claim))
            .ok_or_else(|| malformed("groups claim is not a string or an array of strings"))?;
        if let Some(namespace) = service_account_namespace(&subject) {
            groups.push(SERVICE_ACCOUNTS_GROUP.to_owned());
            groups.push(format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"));
        }
        dedup_in_order(&mut groups);

        // The library required `exp` and checked it is a time that has not passed.
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .and_then(|exp| Duration::try_from_secs_f64(exp).ok())
            .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
            .ok_or_else(|| malformed("exp is out of range"))?;

        Ok(Caller {
            subject,
            groups,
            expires_at: Some(expires_at),
            credential: Credential::BearerToken,
        })
    }
}

/// The claim checks every token gets, whatever its algorithm.
fn claim_validation(settings: &JwtSettings) -> Validation {
    let mut validation = Validation::default();
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.leeway = settings.leeway.as_secs();
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&settings.audiences);
    validation
}

/// Our reason for a token the library refused. Its texts are not used: some quote the token.
fn refusal(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => AuthError::MissingClaim("exp"),
            "iss" => AuthError::MissingClaim("iss"),
            "aud" => AuthError::MissingClaim("aud"),
            _ => malformed("a required claim is missing"),
        },
        ErrorKind::InvalidClaimFormat(claim) => match claim.as_str() {
            "exp" => malformed("exp is not a number"),
            "nbf" => malformed("nbf is not a number"),
            _ => malformed("a claim has the wrong type"),
        },
        // The signature was checked first, and decoded (`verify_inner`): these concern the
        // header or the claims.
        ErrorKind::Base64(_) => malformed("claims are not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => malformed("header or claims do not parse"),
        ErrorKind::InvalidToken => malformed("not a jwt"),
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        // The key cannot be used (e.g. an RSA exponent the verifier refuses): the token is not
        // proven.
        other => {
            debug!(error = ?other, "signature could not be checked");
            AuthError::BadSignature
        }
    }
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.inner.issuer)
            .field("audiences", &self.inner.audiences)
            .field("jwks", &self.inner.jwks.is_some())
            .field("hs256", &self.inner.hs256.is_some())
            .finish_non_exhaustive()
    }
}

fn malformed(why: &str) -> AuthError {
    AuthError::MalformedToken(why.to_owned())
}

/// Decodes one base64url part of a token into a JSON object.
fn json_object(part: &str, name: &str) -> Result<Map<String, Value>, AuthError> {
    // Fixed texts only: the decoders' own messages may quote bytes of the token.
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(&format!("{name} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(malformed(&format!("{name} is not a json object"))),
    }
}

/// The token's algorithm, if this service accepts it with the keys it has.
fn allowed_algorithm(header: &Map<String, Value>) -> Result<TokenAlgorithm, AuthError> {
    let Some(alg) = header.get("alg") else {
        return Err(malformed("header has no alg"));
    };
    let Some(alg) = alg.as_str() else {
        return Err(malformed("alg is not a string"));
    };
    // Exact, case-sensitive names (RFC 7518); anything else, "none" first of all, is refused
    // here, before a key is even looked at.
    match alg {
        "RS256" => Ok(TokenAlgorithm::Asymmetric(KeyKind::Rsa)),
        "ES256" => Ok(TokenAlgorithm::Asymmetric(KeyKind::EcP256)),
        "HS256" => Ok(TokenAlgorithm::Hs256),
        other => Err(AuthError::AlgorithmNotAllowed(clip(other, 32))),
    }
}

/// The groups in a groups claim; `None` when it is neither a string nor strings.
fn groups(claim: Option<&Value>) -> Option<Vec<String>> {
    match claim {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(group)) => Some(vec![group.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(_) => None,
    }
    .map(|mut groups| {
        groups.retain(|group| !group.is_empty());
        groups
    })
}

/// The namespace of a Kubernetes ServiceAccount subject (`system:serviceaccount:<ns>:<name>`).
fn service_account_namespace(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    // The same shape Kubernetes accepts: two non-empty parts, no further colon.
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some(namespace)
}

fn dedup_in_order(groups: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    groups.retain(|group| seen.insert(group.clone()));
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    };
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{JwtSettings, JwtVerifier};
    use crate::auth::{
        AuthError, JwksSource,
        test_keys::{self, TempFile},
    };
    use crate::domain::{Caller, Credential};

    /// A table row: what the case is, the claims to sign, what verifying should give.
    type Case<T> = (&'static str, Value, Result<T, AuthError>);

    const ISSUER: &str = "https://issuer.example";
    const AUDIENCE: &str = "k8s-deployer";
    const SECRET: &[u8] = b"an hs256 secret for the unit tests only";

    fn now() -> i64 {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        i64::try_from(since_epoch.as_secs()).expect("seconds fit i64")
    }

    /// Claims that pass every check; tests change one thing at a time.
    fn claims() -> Value {
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now(),
            "exp": now() + 600,
        })
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        if let Some(object) = claims.as_object_mut() {
            object.remove(name);
        }
        claims
    }

    fn settings() -> JwtSettings {
        let mut settings =
            JwtSettings::new(ISSUER, vec!["another-service".into(), AUDIENCE.into()]);
        // Tests that need the rate limit set it; the others reload whenever asked.
        settings.min_refresh_interval = Duration::ZERO;
        settings
    }

    fn rsa_a() -> EncodingKey {
        EncodingKey::from_rsa_pem(test_keys::RSA_A_PEM.as_bytes()).expect("rsa key a")
    }

    fn rsa_b() -> EncodingKey {
        EncodingKey::from_rsa_pem(test_keys::RSA_B_PEM.as_bytes()).expect("rsa key b")
    }

    fn ec_a() -> EncodingKey {
        EncodingKey::from_ec_pem(test_keys::EC_A_PEM.as_bytes()).expect("ec key a")
    }

    fn secret() -> EncodingKey {
        EncodingKey::from_secret(SECRET)
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).expect("sign test token")
    }

    /// A token from raw parts, for shapes no JWT library would produce; signed with `key`
    /// when given, otherwise with an empty signature.
    fn raw_token(header: &str, payload: &str, key: Option<(&EncodingKey, Algorithm)>) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.as_bytes()),
            URL_SAFE_NO_PAD.encode(payload.as_bytes())
        );
        let signature = match key {
            Some((key, alg)) => {
                jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign")
            }
            None => String::new(),
        };
        format!("{message}.{signature}")
    }

    async fn hs256_verifier() -> JwtVerifier {
        let mut settings = settings();
        settings.hs256_secret = Some(SECRET.to_vec());
        JwtVerifier::new(settings).await.expect("hs256 verifier")
    }

    /// A verifier reading `keys` from a JWKS file; the file lives as long as the guard.
    async fn jwks_verifier(keys: &[Value], settings: JwtSettings) -> (JwtVerifier, TempFile) {
        let file = TempFile::new("jwks.json", &test_keys::jwks(keys));
        let settings = JwtSettings {
            jwks: Some(JwksSource::File(file.path().into())),
            ..settings
        };
        (
            JwtVerifier::new(settings).await.expect("jwks verifier"),
            file,
        )
    }

    fn expected_caller(claims: &Value, groups: &[&str]) -> Caller {
        let exp = claims["exp"].as_u64().expect("integer exp");
        Caller {
            subject: claims["sub"].as_str().expect("sub").to_owned(),
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(exp)),
            credential: Credential::BearerToken,
        }
    }

    #[tokio::test]
    async fn verifier_is_shareable_and_its_future_is_send() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<JwtVerifier>();
        // An interceptor or tower layer awaits `verify` on a multi-threaded runtime, which
        // needs the future to be `Send`; `tokio::spawn` checks that.
        let verifier = hs256_verifier().await;
        let token = sign(Algorithm::HS256, None, &secret(), &claims());
        let caller = tokio::spawn(async move { verifier.verify(&token).await })
            .await
            .expect("task ran");
        assert!(caller.is_ok(), "{caller:?}");
    }

    #[tokio::test]
    async fn accepts_rs256_es256_and_hs256() {
        let (jwks, _file) = jwks_verifier(
            &[test_keys::rsa_a_jwk("rsa-a"), test_keys::ec_a_jwk("ec-a")],
            settings(),
        )
        .await;
        let hs256 = hs256_verifier().await;
        let claims = claims();
        let table = [
            (
                "rs256",
                &jwks,
                sign(Algorithm::RS256, Some("rsa-a"), &rsa_a(), &claims),
            ),
            (
                "es256",
                &jwks,
                sign(Algorithm::ES256, Some("ec-a"), &ec_a(), &claims),
            ),
            // Without a kid: the only key of the token's type.
            (
                "es256 no kid",
                &jwks,
                sign(Algorithm::ES256, None, &ec_a(), &claims),
            ),
            (
                "hs256",
                &hs256,
                sign(Algorithm::HS256, None, &secret(), &claims),
            ),
        ];
        for (name, verifier, token) in table {
            let caller = verifier.verify(&token).await;
            assert_eq!(caller, Ok(expected_caller(&claims, &[])), "{name}");
        }
    }

    #[tokio::test]
    async fn refuses_algorithms_outside_the_allow_list() {
        let mut settings = settings();
        settings.hs256_secret = Some(SECRET.to_vec());
        let (verifier, _file) = jwks_verifier(&[test_keys::rsa_a_jwk("rsa-a")], settings).await;
        let payload = claims().to_string();
        let long = "X".repeat(500);
        for alg in [
            "none", "None", "NONE", "RS384", "PS256", "ES384", "EdDSA", "HS512", "rs256", "",
        ] {
            let token = raw_token(&json!({"alg": alg}).to_string(), &payload, None);
            let err = verifier.verify(&token).await;
            assert_eq!(
                err,
                Err(AuthError::AlgorithmNotAllowed(alg.into())),
                "{alg}"
            );
        }
        // A caller cannot fill the logs through the header.
        let token = raw_token(&json!({"alg": long}).to_string(), &payload, None);
        match verifier.verify(&token).await {
            Err(AuthError::AlgorithmNotAllowed(alg)) => assert!(alg.len() < 40, "{alg}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn hs256_needs_a_configured_secret() {
        // Without a secret, HS256 is refused outright; in particular a token "signed" with the
        // published RSA key as HMAC secret (the RS256-to-HS256 key confusion) gets nowhere.
        let (verifier, _file) = jwks_verifier(&[test_keys::rsa_a_jwk("rsa-a")], settings()).await;
        let claims = claims();
        let confused = EncodingKey::from_secret(test_keys::RSA_A_N.as_bytes());
        for key in [confused, secret()] {
            let token = sign(Algorithm::HS256, Some("rsa-a"), &key, &claims);
            let err = verifier.verify(&token).await;
            assert_eq!(err, Err(AuthError::AlgorithmNotAllowed("HS256".into())));
        }
    }

    #[tokio::test]
    async fn rs256_and_es256_need_a_jwks() {
        let verifier = hs256_verifier().await;
        let claims = claims();
        let rs256 = sign(Algorithm::RS256, None, &rsa_a(), &claims);
        let es256 = sign(Algorithm::ES256, None, &ec_a(), &claims);
        assert_eq!(
            verifier.verify(&rs256).await,
            Err(AuthError::AlgorithmNotAllowed("RS256".into()))
        );
        assert_eq!(
            verifier.verify(&es256).await,
            Err(AuthError::AlgorithmNotAllowed("ES256".into()))
        );
    }

    #[tokio::test]
    async fn refuses_malformed_tokens() {
        let verifier = hs256_verifier().await;
        let payload = claims().to_string();
        let hs256 = Some((&secret(), Algorithm::HS256));
        let signed = sign(Algorithm::HS256, None, &secret(), &claims());
        let table = [
            ("empty", String::new()),
            ("one part", "abc".to_owned()),
            ("two parts", "abc.def".to_owned()),
            ("four parts", format!("{signed}.abc")),
            ("header not base64url", format!("!!{signed}")),
            ("header not json", raw_token("not json", &payload, hs256)),
            (
                "header not an object",
                raw_token("[\"HS256\"]", &payload, hs256),
            ),
            (
                "header without alg",
                raw_token(r#"{"typ":"JWT"}"#, &payload, hs256),
            ),
            (
                "alg not a string",
                raw_token(r#"{"alg":256}"#, &payload, hs256),
            ),
            (
                "critical extension",
                raw_token(r#"{"alg":"HS256","crit":["exp"]}"#, &payload, hs256),
            ),
            (
                "kid not a string",
                raw_token(r#"{"alg":"HS256","kid":1}"#, &payload, hs256),
            ),
            // Correctly signed, but the payload is not a claims object.
            (
                "payload not json",
                raw_token(r#"{"alg":"HS256"}"#, "not json", hs256),
            ),
            (
                "payload an array",
                raw_token(r#"{"alg":"HS256"}"#, "[1]", hs256),
            ),
            ("too long", format!("{signed}{}", "A".repeat(70_000))),
        ];
        for (name, token) in table {
            let err = verifier.verify(&token).await;
            assert!(
                matches!(err, Err(AuthError::MalformedToken(_))),
                "{name}: {err:?}"
            );
            let text = err.err().map(|err| err.to_string()).unwrap_or_default();
            assert!(
                token.is_empty() || !text.contains(&token),
                "{name}: token in error"
            );
        }
    }

    #[tokio::test]
    async fn checks_each_claim_and_reports_which_failed() {
        let verifier = hs256_verifier().await;
        let base = claims();
        let now = now();
        let table: Vec<Case<()>> = vec![
            (
                "expired",
                with(base.clone(), "exp", json!(now - 100)),
                Err(AuthError::Expired),
            ),
            // The default leeway is 30 s.
            (
                "expired within leeway",
                with(base.clone(), "exp", json!(now - 10)),
                Ok(()),
            ),
            (
                "fractional exp",
                with(base.clone(), "exp", json!(now as f64 + 600.5)),
                Ok(()),
            ),
            (
                "no exp",
                without(base.clone(), "exp"),
                Err(AuthError::MissingClaim("exp")),
            ),
            // The library takes an exp that is not a number for none.
            (
                "exp not a number",
                with(base.clone(), "exp", json!("tomorrow")),
                Err(AuthError::MissingClaim("exp")),
            ),
            (
                "nbf not a number",
                with(base.clone(), "nbf", json!("tomorrow")),
                Err(AuthError::MalformedToken("nbf is not a number".into())),
            ),
            (
                "nbf in the future",
                with(base.clone(), "nbf", json!(now + 100)),
                Err(AuthError::NotYetValid),
            ),
            (
                "nbf within leeway",
                with(base.clone(), "nbf", json!(now + 10)),
                Ok(()),
            ),
            (
                "nbf in the past",
                with(base.clone(), "nbf", json!(now - 100)),
                Ok(()),
            ),
            (
                "wrong issuer",
                with(base.clone(), "iss", json!("https://evil.example")),
                Err(AuthError::WrongIssuer),
            ),
            // Exact match: no normalising of a trailing slash or case.
            (
                "issuer with slash",
                with(base.clone(), "iss", json!(format!("{ISSUER}/"))),
                Err(AuthError::WrongIssuer),
            ),
            (
                "issuer not a string",
                with(base.clone(), "iss", json!([ISSUER])),
                Err(AuthError::WrongIssuer),
            ),
            (
                "no issuer",
                without(base.clone(), "iss"),
                Err(AuthError::MissingClaim("iss")),
            ),
            (
                "wrong audience",
                with(base.clone(), "aud", json!("kubernetes")),
                Err(AuthError::WrongAudience),
            ),
            (
                "audience array",
                with(base.clone(), "aud", json!(["kubernetes", AUDIENCE])),
                Ok(()),
            ),
            (
                "audience array without ours",
                with(base.clone(), "aud", json!(["kubernetes", "vault"])),
                Err(AuthError::WrongAudience),
            ),
            (
                "empty audience array",
                with(base.clone(), "aud", json!([])),
                Err(AuthError::WrongAudience),
            ),
            (
                "no audience",
                without(base.clone(), "aud"),
                Err(AuthError::MissingClaim("aud")),
            ),
            (
                "no subject",
                without(base.clone(), "sub"),
                Err(AuthError::MissingClaim("sub")),
            ),
            (
                "empty subject",
                with(base.clone(), "sub", json!("")),
                Err(AuthError::MissingClaim("sub")),
            ),
            (
                "subject not a string",
                with(base.clone(), "sub", json!(42)),
                Err(AuthError::MalformedToken("sub is not a string".into())),
            ),
        ];
        for (name, claims, expected) in table {
            let token = sign(Algorithm::HS256, None, &secret(), &claims);
            let result = verifier.verify(&token).await.map(|_| ());
            assert_eq!(result, expected, "{name}");
        }
    }

    #[tokio::test]
    async fn leeway_is_configurable() {
        let mut settings = settings();
        settings.hs256_secret = Some(SECRET.to_vec());
        settings.leeway = Duration::ZERO;
        let verifier = JwtVerifier::new(settings).await.expect("verifier");
        let token = sign(
            Algorithm::HS256,
            None,
            &secret(),
            &with(claims(), "exp", json!(now() - 5)),
        );
        assert_eq!(verifier.verify(&token).await, Err(AuthError::Expired));
    }

    #[tokio::test]
    async fn refuses_bad_signatures() {
        let (verifier, _file) = jwks_verifier(
            &[test_keys::rsa_a_jwk("k1"), test_keys::ec_a_jwk("ec")],
            settings(),
        )
        .await;
        let claims = claims();
        // Signed by another key that claims the published kid.
        let impostor = sign(Algorithm::RS256, Some("k1"), &rsa_b(), &claims);
        assert_eq!(
            verifier.verify(&impostor).await,
            Err(AuthError::BadSignature)
        );

        // A genuine token whose claims were swapped afterwards.
        let genuine = sign(Algorithm::ES256, Some("ec"), &ec_a(), &claims);
        let forged_claims = URL_SAFE_NO_PAD.encode(
            with(claims.clone(), "sub", json!("admin"))
                .to_string()
                .as_bytes(),
        );
        let parts: Vec<&str> = genuine.split('.').collect();
        let tampered = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
        assert_eq!(
            verifier.verify(&tampered).await,
            Err(AuthError::BadSignature)
        );

        // Signature not even base64url.
        let garbled = format!("{}.{}.@@@", parts[0], parts[1]);
        assert_eq!(
            verifier.verify(&garbled).await,
            Err(AuthError::BadSignature)
        );

        let hs256 = hs256_verifier().await;
        let other_secret = EncodingKey::from_secret(b"another secret");
        let token = sign(Algorithm::HS256, None, &other_secret, &claims);
        assert_eq!(hs256.verify(&token).await, Err(AuthError::BadSignature));
    }

    #[tokio::test]
    async fn key_type_must_match_the_algorithm() {
        let (verifier, _file) = jwks_verifier(&[test_keys::rsa_a_jwk("k1")], settings()).await;
        let claims = claims();
        // The kid names an RSA key; an ES256 token may not use it.
        let es256 = sign(Algorithm::ES256, Some("k1"), &ec_a(), &claims);
        assert_eq!(
            verifier.verify(&es256).await,
            Err(AuthError::KeyAlgorithmMismatch {
                kid: "k1".into(),
                alg: "ES256"
            })
        );
        // Without a kid there is no EC key to pick at all.
        let es256 = sign(Algorithm::ES256, None, &ec_a(), &claims);
        assert_eq!(
            verifier.verify(&es256).await,
            Err(AuthError::UnknownKey { kid: None })
        );
    }

    #[tokio::test]
    async fn unknown_kid_reloads_the_jwks_file() {
        let (verifier, file) = jwks_verifier(&[test_keys::rsa_a_jwk("a")], settings()).await;
        let claims = claims();
        let rotated = sign(Algorithm::RS256, Some("b"), &rsa_b(), &claims);
        // The file is re-read, but key b is not published yet.
        assert_eq!(
            verifier.verify(&rotated).await,
            Err(AuthError::UnknownKey {
                kid: Some("b".into())
            })
        );
        file.write(&test_keys::jwks(&[
            test_keys::rsa_a_jwk("a"),
            test_keys::rsa_b_jwk("b"),
        ]));
        assert_eq!(
            verifier.verify(&rotated).await,
            Ok(expected_caller(&claims, &[]))
        );
        // Key a still works; clones share the reloaded keys.
        let old = sign(Algorithm::RS256, Some("a"), &rsa_a(), &claims);
        assert!(verifier.clone().verify(&old).await.is_ok());
    }

    #[tokio::test]
    async fn unknown_kid_reloads_at_most_once_per_interval() {
        let mut settings = settings();
        settings.min_refresh_interval = Duration::from_secs(3600);
        let (verifier, file) = jwks_verifier(&[test_keys::rsa_a_jwk("a")], settings).await;
        // Key b is in the file now, but the start-up load was too recent to read it again.
        file.write(&test_keys::jwks(&[
            test_keys::rsa_a_jwk("a"),
            test_keys::rsa_b_jwk("b"),
        ]));
        let rotated = sign(Algorithm::RS256, Some("b"), &rsa_b(), &claims());
        assert_eq!(
            verifier.verify(&rotated).await,
            Err(AuthError::UnknownKey {
                kid: Some("b".into())
            })
        );
    }

    #[tokio::test]
    async fn a_broken_jwks_file_keeps_the_old_keys() {
        let (verifier, file) = jwks_verifier(&[test_keys::rsa_a_jwk("a")], settings()).await;
        file.write("{ truncated");
        let claims = claims();
        let unknown = sign(Algorithm::RS256, Some("b"), &rsa_b(), &claims);
        assert!(matches!(
            verifier.verify(&unknown).await,
            Err(AuthError::JwksUnavailable(_))
        ));
        let known = sign(Algorithm::RS256, Some("a"), &rsa_a(), &claims);
        assert_eq!(
            verifier.verify(&known).await,
            Ok(expected_caller(&claims, &[]))
        );
    }

    #[tokio::test]
    async fn groups_come_from_the_groups_claim() {
        let verifier = hs256_verifier().await;
        let base = claims();
        let table: Vec<Case<Vec<&str>>> = vec![
            ("none", base.clone(), Ok(vec![])),
            (
                "null",
                with(base.clone(), "groups", Value::Null),
                Ok(vec![]),
            ),
            (
                "string",
                with(base.clone(), "groups", json!("deployers")),
                Ok(vec!["deployers"]),
            ),
            (
                "array",
                with(
                    base.clone(),
                    "groups",
                    json!(["team-a", "deployers", "team-a", ""]),
                ),
                Ok(vec!["team-a", "deployers"]),
            ),
            (
                "not strings",
                with(base.clone(), "groups", json!(["team-a", 7])),
                Err(AuthError::MalformedToken(
                    "groups claim is not a string or an array of strings".into(),
                )),
            ),
            (
                "an object",
                with(base.clone(), "groups", json!({"team": "a"})),
                Err(AuthError::MalformedToken(
                    "groups claim is not a string or an array of strings".into(),
                )),
            ),
            (
                "service account",
                with(
                    with(
                        base.clone(),
                        "sub",
                        json!("system:serviceaccount:team-a:ci"),
                    ),
                    "groups",
                    json!(["ci"]),
                ),
                Ok(vec![
                    "ci",
                    "system:serviceaccounts",
                    "system:serviceaccounts:team-a",
                ]),
            ),
            (
                "service account already in the group",
                with(
                    with(
                        base.clone(),
                        "sub",
                        json!("system:serviceaccount:team-a:ci"),
                    ),
                    "groups",
                    json!("system:serviceaccounts"),
                ),
                Ok(vec![
                    "system:serviceaccounts",
                    "system:serviceaccounts:team-a",
                ]),
            ),
            (
                "not quite a service account",
                with(base.clone(), "sub", json!("system:serviceaccount:team-a")),
                Ok(vec![]),
            ),
            (
                "service account name with a colon",
                with(
                    base.clone(),
                    "sub",
                    json!("system:serviceaccount:team-a:ci:x"),
                ),
                Ok(vec![]),
            ),
        ];
        for (name, claims, expected) in table {
            let token = sign(Algorithm::HS256, None, &secret(), &claims);
            let groups = verifier.verify(&token).await.map(|caller| caller.groups);
            let expected =
                expected.map(|groups| groups.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(groups, expected, "{name}");
        }
    }

    #[tokio::test]
    async fn the_groups_claim_is_configurable() {
        let mut settings = settings();
        settings.hs256_secret = Some(SECRET.to_vec());
        settings.groups_claim = "roles".into();
        let verifier = JwtVerifier::new(settings).await.expect("verifier");
        let claims = with(
            with(claims(), "roles", json!(["admin"])),
            "groups",
            json!(["ignored"]),
        );
        let token = sign(Algorithm::HS256, None, &secret(), &claims);
        assert_eq!(
            verifier.verify(&token).await,
            Ok(expected_caller(&claims, &["admin"]))
        );
    }

    #[tokio::test]
    async fn start_up_refuses_inconsistent_settings() {
        let with_secret = || JwtSettings {
            hs256_secret: Some(SECRET.to_vec()),
            ..settings()
        };
        let table = [
            ("no keys", settings()),
            (
                "empty secret",
                JwtSettings {
                    hs256_secret: Some(Vec::new()),
                    ..settings()
                },
            ),
            (
                "empty issuer",
                JwtSettings {
                    issuer: String::new(),
                    ..with_secret()
                },
            ),
            (
                "no audience",
                JwtSettings {
                    audiences: Vec::new(),
                    ..with_secret()
                },
            ),
            (
                "empty audience",
                JwtSettings {
                    audiences: vec![String::new()],
                    ..with_secret()
                },
            ),
            (
                "empty groups claim",
                JwtSettings {
                    groups_claim: String::new(),
                    ..with_secret()
                },
            ),
        ];
        for (name, settings) in table {
            let err = JwtVerifier::new(settings).await.err();
            assert!(
                matches!(err, Some(AuthError::Settings(_))),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn settings_debug_hides_the_secret() {
        let settings = JwtSettings {
            hs256_secret: Some(SECRET.to_vec()),
            ..settings()
        };
        let text = format!("{settings:?}");
        assert!(text.contains("[redacted]"), "{text}");
        assert!(!text.contains("secret for the unit tests"), "{text}");
        assert!(!text.contains(&format!("{:?}", SECRET.to_vec())), "{text}");
    }

    /// A tiny HTTP/1.1 server for JWKS fetches: answers every request with the current
    /// status and body, one connection per request, and counts them.
    struct JwksServer {
        url: String,
        requests: Arc<AtomicUsize>,
        response: Arc<Mutex<(u16, String)>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl JwksServer {
        async fn start(status: u16, body: String) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            let url = format!(
                "http://{}/openid/v1/jwks",
                listener.local_addr().expect("addr")
            );
            let requests = Arc::new(AtomicUsize::new(0));
            let response = Arc::new(Mutex::new((status, body)));
            let task = tokio::spawn({
                let requests = Arc::clone(&requests);
                let response = Arc::clone(&response);
                async move {
                    while let Ok((mut stream, _)) = listener.accept().await {
                        let mut request = Vec::new();
                        let mut buffer = [0_u8; 1024];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buffer).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => request.extend_from_slice(&buffer[..n]),
                            }
                        }
                        requests.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = response.lock().expect("response lock").clone();
                        let reply = format!(
                            "HTTP/1.1 {status} Test\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(reply.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                }
            });
            Self {
                url,
                requests,
                response,
                task,
            }
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }

        fn serve(&self, body: String) {
            *self.response.lock().expect("response lock") = (200, body);
        }

        fn source(&self) -> JwksSource {
            JwksSource::Url {
                url: self.url.clone(),
                ca_file: None,
                token_file: None,
            }
        }
    }

    impl Drop for JwksServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    #[tokio::test]
    async fn unknown_kid_refetches_the_jwks_url() {
        let server = JwksServer::start(200, test_keys::jwks(&[test_keys::rsa_a_jwk("a")])).await;
        let settings = JwtSettings {
            jwks: Some(server.source()),
            ..settings()
        };
        let verifier = JwtVerifier::new(settings).await.expect("verifier");
        assert_eq!(server.requests(), 1, "fetched once at start-up");

        let claims = claims();
        let known = sign(Algorithm::RS256, Some("a"), &rsa_a(), &claims);
        assert!(verifier.verify(&known).await.is_ok());
        assert_eq!(server.requests(), 1, "a known kid needs no fetch");

        let rotated = sign(Algorithm::RS256, Some("b"), &rsa_b(), &claims);
        assert_eq!(
            verifier.verify(&rotated).await,
            Err(AuthError::UnknownKey {
                kid: Some("b".into())
            })
        );
        assert_eq!(server.requests(), 2, "an unknown kid re-fetches");

        server.serve(test_keys::jwks(&[
            test_keys::rsa_a_jwk("a"),
            test_keys::rsa_b_jwk("b"),
        ]));
        assert_eq!(
            verifier.verify(&rotated).await,
            Ok(expected_caller(&claims, &[]))
        );
        assert_eq!(server.requests(), 3);
        assert!(verifier.verify(&rotated).await.is_ok());
        assert_eq!(server.requests(), 3, "the new key is kept");
    }

    #[tokio::test]
    async fn a_jwks_url_that_fails_is_a_start_up_error() {
        let server = JwksServer::start(404, "not found".into()).await;
        let not_found = JwtSettings {
            jwks: Some(server.source()),
            ..settings()
        };
        match JwtVerifier::new(not_found).await {
            Err(AuthError::JwksUnavailable(why)) => assert!(why.contains("404"), "{why}"),
            other => panic!("{other:?}"),
        }

        let unreachable = JwtSettings {
            jwks: Some(JwksSource::Url {
                url: "http://127.0.0.1:1/jwks".into(),
                ca_file: None,
                token_file: None,
            }),
            ..settings()
        };
        let err = JwtVerifier::new(unreachable).await.err();
        assert!(
            matches!(err, Some(AuthError::JwksUnavailable(_))),
            "{err:?}"
        );

        let bad_ca = JwtSettings {
            jwks: Some(JwksSource::Url {
                url: server.url.clone(),
                ca_file: Some("/nonexistent/k8s-deployer/ca.pem".into()),
                token_file: None,
            }),
            ..settings()
        };
        let err = JwtVerifier::new(bad_ca).await.err();
        assert!(
            matches!(err, Some(AuthError::JwksUnavailable(_))),
            "{err:?}"
        );
    }
}
