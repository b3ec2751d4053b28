//! The connection to the server: URL, TLS (with a client certificate for mutual TLS), and the
//! bearer token sent with every call.

use std::path::Path;
use std::time::Duration;

use k8s_deployer::proto::deployer::v1::deployer_service_client::DeployerServiceClient;
use k8s_deployer::proto::deployer::v1::deployment_service_client::DeploymentServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::args::Connection;
use k8s_deployer::error::chain;

use crate::exit::Failure;

/// How long connecting (TCP and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The generated client of the pod calls, sending the bearer token with every call.
pub(crate) type Client = DeployerServiceClient<InterceptedService<Channel, Bearer>>;

/// The generated client of the Deployment calls, sending the bearer token with every call.
pub(crate) type DeploymentClient = DeploymentServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call, when there is a token.
#[derive(Clone)]
pub(crate) struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connect to the server for the pod calls; the channel reconnects by itself after a lost
/// connection.
pub(crate) async fn connect(connection: &Connection) -> Result<Client, Failure> {
    let (channel, bearer) = channel(connection).await?;
    Ok(DeployerServiceClient::with_interceptor(channel, bearer))
}

/// Connect to the server for the Deployment calls (the same server, another service).
pub(crate) async fn connect_deployments(
    connection: &Connection,
) -> Result<DeploymentClient, Failure> {
    let (channel, bearer) = channel(connection).await?;
    Ok(DeploymentServiceClient::with_interceptor(channel, bearer))
}

/// The channel to the server, and the token to send on it.
async fn channel(connection: &Connection) -> Result<(Channel, Bearer), Failure> {
    let url = server_url(&connection.server, connection.plaintext)?;
    let bearer = Bearer(bearer_value(connection)?);
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|_| Failure::bad_input(format!("--server: {url:?} is not a valid URL")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // Keep long watches alive through proxies and notice a dead server.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if !connection.plaintext {
        let mut tls = ClientTlsConfig::new().timeout(CONNECT_TIMEOUT);
        tls = match &connection.ca_file {
            Some(path) => tls.ca_certificate(Certificate::from_pem(read(path, "--ca-file")?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&connection.tls_cert, &connection.tls_key) {
            tls = tls.identity(Identity::from_pem(
                read(cert, "--tls-cert")?,
                read(key, "--tls-key")?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|error| Failure::bad_input(format!("TLS settings: {}", chain(&error))))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| Failure::unreachable(format!("cannot reach {url}: {}", chain(&error))))?;
    Ok((channel, bearer))
}

/// The URL to dial: the scheme must agree with --plaintext, so that a token is never sent in
/// plain text by mistake, nor TLS skipped silently.
fn server_url(server: &str, plaintext: bool) -> Result<String, Failure> {
    let url = match server.split_once("://") {
        Some(_) => server.to_owned(),
        None if plaintext => format!("http://{server}"),
        None => format!("https://{server}"),
    };
    if url.starts_with("http://") && !plaintext {
        return Err(Failure::bad_input(format!(
            "--server {url} is plain http: add --plaintext to talk without TLS, or use https://"
        )));
    }
    if url.starts_with("https://") && plaintext {
        return Err(Failure::bad_input(format!(
            "--server {url} is https but --plaintext was given: use http:// with --plaintext"
        )));
    }
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(Failure::bad_input(format!(
            "--server {url}: the scheme must be https:// (or http:// with --plaintext)"
        )));
    }
    Ok(url)
}

/// The `authorization` value, if a token was given. Errors never include the token.
fn bearer_value(connection: &Connection) -> Result<Option<MetadataValue<Ascii>>, Failure> {
    let token = match (&connection.token, &connection.token_file) {
        (Some(token), _) => token.expose().trim().to_owned(),
        (None, Some(path)) => {
            let text = read(path, "--token-file")?;
            let token = String::from_utf8(text).map_err(|_| {
                Failure::bad_input(format!(
                    "--token-file {}: the token is not UTF-8 text",
                    path.display()
                ))
            })?;
            token.trim().to_owned()
        }
        (None, None) => return Ok(None),
    };
    if token.is_empty() {
        return Err(Failure::bad_input("the token is empty"));
    }
    format!("Bearer {token}")
        .parse()
        .map(Some)
        .map_err(|_| Failure::bad_input("the token has characters a header cannot carry"))
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|error| Failure::bad_input(format!("{flag} {}: {error}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_must_agree_with_plaintext() {
        assert_eq!(
            server_url("http://127.0.0.1:1", true).ok(),
            Some("http://127.0.0.1:1".to_owned())
        );
        assert_eq!(
            server_url("127.0.0.1:1", true).ok(),
            Some("http://127.0.0.1:1".to_owned())
        );
        assert_eq!(
            server_url("deployer.example:443", false).ok(),
            Some("https://deployer.example:443".to_owned())
        );
        assert!(server_url("http://127.0.0.1:1", false).is_err());
        assert!(server_url("https://127.0.0.1:1", true).is_err());
        assert!(server_url("ftp://127.0.0.1:1", false).is_err());
    }
}
