//! Who is calling: the identity that authentication established and that the policy judges.

use std::time::SystemTime;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token (a JWT) in the `authorization` metadata.
    BearerToken,
    /// A client certificate presented in the TLS handshake (mutual TLS).
    ClientCertificate,
}

impl Credential {
    /// The name used in logs and audit records.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BearerToken => "bearer_token",
            Self::ClientCertificate => "client_certificate",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The subject: a token's `sub` claim, or a client certificate's subject common name.
    pub subject: String,
    /// The groups: from the token's groups claim (and, for Kubernetes ServiceAccount tokens,
    /// the groups Kubernetes gives service accounts), or the client certificate's
    /// organisations.
    pub groups: Vec<String>,
    /// When the credential stops being valid: the token's `exp`, or the certificate's
    /// `notAfter`. Open streams end then.
    pub expires_at: Option<SystemTime>,
    /// How the caller authenticated.
    pub credential: Credential,
}
