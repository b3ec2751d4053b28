//! The prototype's HTTP API, kept for its existing users: `POST /deploy` and
//! `GET /status/{namespace}/{pod_name}` with the prototype's JSON shapes, plus what it lacked:
//! `GET /watch/{namespace}/{pod_name}` as Server-Sent Events and `GET /openapi.json`.
//!
//! It is an adapter, like the gRPC one: every request is authenticated by the same
//! [`Authenticator`] and then handed to the [`DeployerService`] itself, so validation, the
//! policy, the image policy, the pod hardening and the audit trail are the gRPC calls' own.

mod prototype;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt as _};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::auth::PeerInfo;
use crate::auth::layer::Authenticator;
use crate::domain::Caller;
use crate::grpc::DeployerService;
use crate::proto::deployer::v1 as pb;
use crate::proto::deployer::v1::deployer_service_server::DeployerService as _;
use crate::server::tls::Conn;

pub use prototype::{DeployAccepted, DeployBody, PodStatusBody, prototype_pod_name};

/// The OpenAPI document of these endpoints.
pub const OPENAPI: &str = include_str!("http/openapi.json");

/// What the handlers share.
#[derive(Clone)]
struct Api {
    service: DeployerService,
    auth: Arc<Authenticator>,
}

/// The HTTP API's routes, over `service`, with callers authenticated by `auth`.
pub fn router(service: DeployerService, auth: Arc<Authenticator>) -> axum::Router {
    axum::Router::new()
        .route("/deploy", post(deploy))
        .route("/status/{namespace}/{pod_name}", get(status))
        .route("/watch/{namespace}/{pod_name}", get(watch))
        .route("/openapi.json", get(openapi))
        .with_state(Api { service, auth })
}

/// An error as the prototype answered it: a status code and `{"detail": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "detail": self.detail })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The HTTP status of a gRPC code, as Google's API design guide maps them.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        Self::new(http_status(status.code()), status.message())
    }
}

/// The authenticated caller of an HTTP request, and where it came from.
struct Authenticated {
    caller: Caller,
    peer: PeerInfo,
}

impl FromRequestParts<Api> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let started = Instant::now();
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<PeerInfo>>()
            .map(|info| info.0.clone())
            .unwrap_or_default();
        match api.auth.authenticate(&parts.headers, Some(&peer)).await {
            Ok(caller) => Ok(Self { caller, peer }),
            Err(error) => {
                let status = api
                    .auth
                    .refuse(parts.uri.path(), peer.remote_addr, &error, started);
                Err(status.into())
            }
        }
    }
}

impl Authenticated {
    /// A gRPC request for the service, carrying this caller as the gRPC layer would.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(self.caller.clone());
        request.extensions_mut().insert(self.peer.clone());
        request
    }
}

/// `POST /deploy`: creates the pod, named as the prototype named it when no name is given.
async fn deploy(
    State(api): State<Api>,
    who: Authenticated,
    body: axum::body::Bytes,
) -> Result<Json<DeployAccepted>, ApiError> {
    let body: DeployBody =
        json_body(&body).map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))?;
    let name = match &body.pod_name {
        Some(name) if !name.is_empty() => name.clone(),
        _ => prototype_pod_name(&body.image),
    };
    let request = pb::DeployRequest {
        image: body.image.clone(),
        namespace: body.namespace.clone(),
        name,
        ..pb::DeployRequest::default()
    };
    match api.service.deploy(who.request(request)).await {
        Ok(response) => {
            let pod = response.into_inner().pod.unwrap_or_default();
            Ok(Json(DeployAccepted {
                message: "Pod deployment initiated".to_owned(),
                pod_name: pod.name,
                namespace: pod.namespace,
            }))
        }
        // The prototype answered 400 for a namespace that does not exist.
        Err(status) if status.code() == Code::NotFound => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, status.message()))
        }
        Err(status) => Err(status.into()),
    }
}

/// A JSON request body, or what is wrong with it in our words, naming the field:
/// `body: field `image` must be a string, not integer `1``. The parser's own text is not
/// passed on: it speaks of Rust types and serde, not of the API.
fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| body_problem(&error.path().to_string(), error.inner()))?;
    // Anything after the value is refused, as serde_json::from_slice does.
    deserializer
        .end()
        .map_err(|error| body_problem(".", &error))?;
    Ok(value)
}

/// What is wrong with a body, at `path` (`.` for the whole body).
fn body_problem(path: &str, error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("at line {} column {}", error.line(), error.column());
    match error.classify() {
        Category::Io => "body: could not be read".to_owned(),
        Category::Eof => format!("body: is not complete JSON (it ends {at})"),
        Category::Syntax => format!("body: is not valid JSON {at}"),
        Category::Data => data_problem(path, &error.to_string()),
    }
}

/// A JSON value of the wrong shape, in our words. serde's messages read `invalid type:
/// integer `1`, expected a string at line 1 column 11` and `missing field `namespace``.
fn data_problem(path: &str, message: &str) -> String {
    let message = message
        .rsplit_once(" at line ")
        .map_or(message, |(message, _)| message);
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return format!("body: field `{field}` is required");
    }
    let shape = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split_once(", expected "));
    match (path, shape) {
        (".", Some((found, _))) => format!(
            "body: must be a JSON object with the fields image, namespace and pod_name, not {found}"
        ),
        (field, Some((found, expected))) => {
            format!("body: field `{field}` must be {expected}, not {found}")
        }
        (".", None) => format!("body: {message}"),
        (field, None) => format!("body: field `{field}`: {message}"),
    }
}

/// `GET /status/{namespace}/{pod_name}`.
async fn status(
    State(api): State<Api>,
    who: Authenticated,
    Path((namespace, pod_name)): Path<(String, String)>,
) -> Result<Json<PodStatusBody>, ApiError> {
    let request = pb::GetStatusRequest {
        namespace,
        name: pod_name,
    };
    match api.service.get_status(who.request(request)).await {
        Ok(response) => Ok(Json(PodStatusBody::from(
            &response.into_inner().pod.unwrap_or_default(),
        ))),
        Err(status) if status.code() == Code::NotFound => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "Pod not found"))
        }
        Err(status) => Err(status.into()),
    }
}

/// `GET /watch/{namespace}/{pod_name}`: the pod's status objects as Server-Sent Events
/// (`event: status`), one per change, from the current one on; `event: end` when the pod is
/// deleted or the server shuts down, `event: error` when the stream fails (the credential
/// expired, say). Comments keep idle connections alive.
async fn watch(
    State(api): State<Api>,
    who: Authenticated,
    Path((namespace, pod_name)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let request = pb::WatchStatusRequest {
        namespace,
        name: pod_name,
        ..pb::WatchStatusRequest::default()
    };
    let stream: ReceiverStream<Result<pb::WatchStatusResponse, tonic::Status>> = api
        .service
        .watch_status(who.request(request))
        .await?
        .into_inner();
    let events = stream
        .filter_map(|message| async move { sse_event(message) })
        .map(Ok);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The SSE event for one WatchStatus message, if it has one.
fn sse_event(message: Result<pb::WatchStatusResponse, tonic::Status>) -> Option<Event> {
    use pb::watch_status_response::Kind;
    let json = |value: serde_json::Value| value.to_string();
    match message {
        Err(status) => Some(Event::default().event("error").data(json(
            serde_json::json!({ "detail": status.message(), "code": crate::error::code_name(status.code()) }),
        ))),
        Ok(message) => match message.kind? {
            Kind::Snapshot(snapshot) | Kind::Resync(snapshot) => {
                let pod = snapshot.pods.first()?;
                Some(status_event(pod))
            }
            Kind::Pod(pod) | Kind::Deleted(pod) => Some(status_event(&pod)),
            Kind::End(end) => Some(Event::default().event("end").data(json(serde_json::json!({
                "reason": end.reason().as_str_name(),
                "message": end.message,
            })))),
            Kind::Event(_) | Kind::Heartbeat(_) => None,
        },
    }
}

fn status_event(pod: &pb::PodStatus) -> Event {
    let body = serde_json::to_string(&PodStatusBody::from(pod)).unwrap_or_default();
    Event::default().event("status").data(body)
}

/// `GET /openapi.json`.
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Serves the HTTP API on the connections `incoming` accepts (plain or TLS, as the gRPC port)
/// until `shutdown` completes.
pub(crate) async fn serve(
    incoming: ReceiverStream<std::io::Result<Conn>>,
    local_addr: SocketAddr,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = Accepted {
        incoming,
        local_addr,
    };
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<PeerInfo>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The accepted connections, as axum's listener.
struct Accepted {
    incoming: ReceiverStream<std::io::Result<Conn>>,
    local_addr: SocketAddr,
}

impl axum::serve::Listener for Accepted {
    type Io = Conn;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Conn, PeerInfo) {
        use tonic::transport::server::Connected as _;
        loop {
            match self.incoming.next().await {
                Some(Ok(conn)) => {
                    let peer = conn.connect_info();
                    return (conn, peer);
                }
                Some(Err(error)) => tracing::warn!(%error, "accepting an HTTP connection failed"),
                // The accepting task ended: nothing more will come.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<PeerInfo> {
        Ok(PeerInfo {
            remote_addr: Some(self.local_addr),
            client_certificate: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Accepted>>
    for PeerInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Accepted>) -> Self {
        stream.remote_addr().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_http_statuses() {
        for (code, status) in [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::ResourceExhausted, 429),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
        ] {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn the_openapi_document_describes_every_route() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3."))
        );
        let paths = document["paths"].as_object().expect("paths");
        for path in [
            "/deploy",
            "/status/{namespace}/{pod_name}",
            "/watch/{namespace}/{pod_name}",
        ] {
            assert!(paths.contains_key(path), "{path} is not documented");
        }
    }
}
