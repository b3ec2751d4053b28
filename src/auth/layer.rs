//! The authentication layer in front of every gRPC service: it establishes the [`Caller`] of
//! each request (from a bearer token, or else from a client certificate) and puts it in the
//! request's extensions, or answers UNAUTHENTICATED itself. Health and reflection pass
//! unauthenticated unless configured otherwise.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use crate::audit::{AuditEvent, AuditLog, AuditSubject};
use crate::auth::{AuthError, JwtVerifier, PeerInfo, bearer_token, caller_from_certificate};
use crate::domain::Caller;

/// Path prefixes of the services that stay open unless every service must authenticate.
const OPEN_SERVICES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Longest part of a refused request's path that is logged and audited.
const MAX_LOGGED_METHOD: usize = 128;

/// How callers prove who they are.
#[derive(Debug)]
pub struct Authenticator {
    /// Bearer token verification, when tokens are accepted.
    jwt: Option<JwtVerifier>,
    /// Whether client certificates are verified (a client CA is configured).
    client_certificates: bool,
    /// Whether health and reflection need authentication too.
    all_services: bool,
    audit: Arc<AuditLog>,
}

impl Authenticator {
    /// Callers authenticate with tokens that `jwt` verifies, if set, and with client
    /// certificates, if `client_certificates`.
    #[must_use]
    pub fn new(
        jwt: Option<JwtVerifier>,
        client_certificates: bool,
        all_services: bool,
        audit: Arc<AuditLog>,
    ) -> Self {
        Self {
            jwt,
            client_certificates,
            all_services,
            audit,
        }
    }

    /// Accounts for a refused authentication (one log line, one audit record) and returns
    /// what the caller is told: UNAUTHENTICATED with the reason, or UNAVAILABLE when the
    /// server cannot load its keys (the token may be fine; no detail of our configuration).
    pub fn refuse(
        &self,
        path: &str,
        remote: Option<std::net::SocketAddr>,
        error: &AuthError,
        started: Instant,
    ) -> tonic::Status {
        // The path is the caller's: keep a bounded, printable part of it.
        let method: String = path
            .trim_start_matches('/')
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_LOGGED_METHOD)
            .collect();
        let reason = error.to_string();
        let status = if error.is_server_side() {
            tracing::error!(method, remote = ?remote, %reason, "cannot verify tokens");
            tonic::Status::unavailable("the token signing keys are unavailable, retry later")
        } else {
            tracing::info!(method, remote = ?remote, %reason, "unauthenticated call refused");
            tonic::Status::unauthenticated(reason.clone())
        };
        self.audit.record(&AuditEvent {
            caller: None,
            source: remote,
            method: &method,
            subject: &AuditSubject::default(),
            code: status.code(),
            reason: &reason,
            latency: started.elapsed(),
        });
        status
    }

    fn is_open(&self, path: &str) -> bool {
        !self.all_services && OPEN_SERVICES.iter().any(|open| path.starts_with(open))
    }

    /// The caller of a request: its bearer token decides when it sends one (a bad token is
    /// refused, never passed over for the certificate); else its verified client certificate.
    ///
    /// # Errors
    ///
    /// Why the caller is not authenticated.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<&PeerInfo>,
    ) -> Result<Caller, AuthError> {
        if let Some(header) = headers.get(http::header::AUTHORIZATION) {
            let header = header.to_str().map_err(|_| AuthError::MalformedHeader)?;
            let token = bearer_token(Some(header))?;
            return match &self.jwt {
                Some(jwt) => jwt.verify(token).await,
                None => Err(AuthError::TokensNotAccepted),
            };
        }
        if self.client_certificates
            && let Some(certificate) = peer.and_then(|p| p.client_certificate.as_ref())
        {
            let caller = caller_from_certificate(certificate)?;
            // The handshake checked the certificate when the connection was made; a
            // long-lived connection can outlive it.
            if caller.expires_at.is_some_and(|at| at <= SystemTime::now()) {
                return Err(AuthError::CertificateExpired);
            }
            return Ok(caller);
        }
        Err(AuthError::MissingToken)
    }
}

/// The [`tower::Layer`] that puts an [`AuthService`] in front of the services.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// The layer.
    #[must_use]
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

/// Authenticates each request before `S` sees it.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for AuthService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The clone is not ready yet; the service polled ready is the one that is used.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = Arc::clone(&self.auth);
        Box::pin(async move {
            if auth.is_open(request.uri().path()) {
                return inner.call(request).await;
            }
            let started = Instant::now();
            let peer = request.extensions().get::<PeerInfo>().cloned();
            match auth.authenticate(request.headers(), peer.as_ref()).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(error) => {
                    let remote = peer.as_ref().and_then(|p| p.remote_addr);
                    let status = auth.refuse(request.uri().path(), remote, &error, started);
                    Ok(status.into_http())
                }
            }
        })
    }
}
