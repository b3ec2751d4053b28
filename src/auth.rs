//! Authentication: who is calling.
//!
//! A caller proves who it is in one of two ways, and either way becomes a [`Caller`]:
//!
//! - a bearer token (a JWT) in the `authorization` metadata: [`bearer_token`] takes it out of
//!   the header, [`JwtVerifier`] checks its signature (RS256/ES256 against a JWKS, HS256
//!   against a shared secret) and its claims;
//! - a client certificate, already verified by the TLS handshake against the client CA:
//!   [`caller_from_certificate`] reads the identity from its subject, as Kubernetes does.
//!
//! Every [`AuthError`] says why in a few lower-case words that are safe to log; none ever
//! contains the token.
//!
//! [`Caller`]: crate::domain::Caller

mod certificate;
mod jwks;
mod jwt;
pub mod layer;
mod peer;
#[cfg(test)]
mod test_keys;

pub use certificate::caller_from_certificate;
pub use jwks::JwksSource;
pub use jwt::{JwtSettings, JwtVerifier};
pub use peer::PeerInfo;

/// Why a caller could not be authenticated, or the verifier could not be set up.
///
/// Strings rather than source errors, so that one reload failure can be handed to every
/// caller waiting on it and tests can compare errors; the texts keep the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` metadata (or an empty one).
    #[error("no bearer token")]
    MissingToken,

    /// A bearer token was sent to a server configured without any way to verify one.
    #[error("this server accepts no bearer tokens")]
    TokensNotAccepted,

    /// The client certificate's `notAfter` has passed (it was valid when the connection was
    /// made; a connection can outlive it).
    #[error("client certificate expired")]
    CertificateExpired,

    /// The `authorization` metadata is not `Bearer <token>`.
    #[error("authorization metadata is not \"Bearer <token>\"")]
    MalformedHeader,

    /// The token is not a well-formed compact JWS; says which part is wrong.
    #[error("malformed token: {0}")]
    MalformedToken(String),

    /// The token's `alg` is not one this service accepts with the keys it has (`none`,
    /// anything but RS256/ES256/HS256, HS256 without a secret, RS256/ES256 without a JWKS).
    #[error("algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),

    /// No key in the JWKS fits the token, even after a reload.
    #[error("no signing key for {}", kid_text(.kid.as_deref()))]
    UnknownKey {
        /// The token's `kid`, if it has one (truncated).
        kid: Option<String>,
    },

    /// The JWKS key named by the token's `kid` is of another type than the token's algorithm
    /// (e.g. an RSA key for an ES256 token).
    #[error("signing key {kid:?} cannot verify {alg}")]
    KeyAlgorithmMismatch {
        /// The token's `kid` (truncated).
        kid: String,
        /// The token's algorithm.
        alg: &'static str,
    },

    /// The signature does not verify with the key.
    #[error("bad signature")]
    BadSignature,

    /// The token's `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,

    /// The token's `nbf` is still in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,

    /// The token's `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,

    /// The token's `aud` holds none of the configured audiences.
    #[error("wrong audience")]
    WrongAudience,

    /// A required claim is absent (or, for `sub`, empty).
    #[error("missing claim {0:?}")]
    MissingClaim(&'static str),

    /// The JWKS could not be loaded or holds no usable key; says where and why.
    #[error("jwks unavailable: {0}")]
    JwksUnavailable(String),

    /// The client certificate does not name a caller; says why.
    #[error("client certificate: {0}")]
    Certificate(String),

    /// The verifier settings are inconsistent; says which one.
    #[error("invalid jwt settings: {0}")]
    Settings(String),
}

fn kid_text(kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!("kid {kid:?}"),
        None => "a token without kid".to_owned(),
    }
}

/// At most `max` characters of a token-supplied value, for errors and logs: a caller must not
/// be able to fill logs through a header field.
fn clip(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_owned(),
    }
}

/// Extracts the token from the value of the `authorization` metadata: `Bearer <token>`, the
/// scheme in any case, surrounding whitespace ignored.
///
/// # Errors
///
/// [`AuthError::MissingToken`] when there is no value or it is blank,
/// [`AuthError::MalformedHeader`] for another scheme, no token, or a token with whitespace in
/// it.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(AuthError::MissingToken);
    }
    let Some((scheme, token)) = value.split_once(|c: char| c.is_ascii_whitespace()) else {
        return Err(AuthError::MalformedHeader);
    };
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(|c: char| c.is_whitespace())
    {
        return Err(AuthError::MalformedHeader);
    }
    Ok(token)
}

impl AuthError {
    /// Whether the failure is the server's (its signing keys cannot be loaded) rather than
    /// the caller's credentials.
    #[must_use]
    pub fn is_server_side(&self) -> bool {
        matches!(self, Self::JwksUnavailable(_) | Self::Settings(_))
    }
}

#[cfg(test)]
mod tests {
    use super::{AuthError, bearer_token, clip};

    #[test]
    fn bearer_token_parsing() {
        let table: &[(Option<&str>, Result<&str, AuthError>)] = &[
            (None, Err(AuthError::MissingToken)),
            (Some(""), Err(AuthError::MissingToken)),
            (Some("   "), Err(AuthError::MissingToken)),
            (Some("Bearer abc.def.ghi"), Ok("abc.def.ghi")),
            (Some("bearer abc"), Ok("abc")),
            (Some("BEARER abc"), Ok("abc")),
            (Some("Bearer    abc"), Ok("abc")),
            (Some("  Bearer abc  "), Ok("abc")),
            (Some("Bearer\tabc"), Ok("abc")),
            (Some("Bearer"), Err(AuthError::MalformedHeader)),
            (Some("Bearer "), Err(AuthError::MalformedHeader)),
            (Some("Basic dXNlcjpwYXNz"), Err(AuthError::MalformedHeader)),
            (Some("Bearerabc"), Err(AuthError::MalformedHeader)),
            (Some("Bearer abc def"), Err(AuthError::MalformedHeader)),
            (Some("abc.def.ghi"), Err(AuthError::MalformedHeader)),
        ];
        for (header, expected) in table {
            assert_eq!(&bearer_token(*header), expected, "{header:?}");
        }
    }

    #[test]
    fn error_texts_are_short_and_lower_case() {
        let table = [
            (AuthError::MissingToken, "no bearer token"),
            (
                AuthError::AlgorithmNotAllowed("none".into()),
                "algorithm \"none\" is not allowed",
            ),
            (
                AuthError::UnknownKey {
                    kid: Some("k1".into()),
                },
                "no signing key for kid \"k1\"",
            ),
            (
                AuthError::UnknownKey { kid: None },
                "no signing key for a token without kid",
            ),
            (
                AuthError::KeyAlgorithmMismatch {
                    kid: "k1".into(),
                    alg: "ES256",
                },
                "signing key \"k1\" cannot verify ES256",
            ),
            (AuthError::MissingClaim("sub"), "missing claim \"sub\""),
            (AuthError::Expired, "token expired"),
        ];
        for (err, text) in table {
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn clip_bounds_token_supplied_text() {
        assert_eq!(clip("short", 8), "short");
        assert_eq!(clip("exactly8", 8), "exactly8");
        assert_eq!(clip("longer than eight", 8), "longer t...");
        // Never splits a character.
        assert_eq!(clip("ééééé", 2), "éé...");
    }
}
