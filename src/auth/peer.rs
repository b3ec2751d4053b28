//! Who is at the other end of a connection, as the transport saw it.
//!
//! The transport (`server::tls`) fills it in for every accepted connection; the
//! authentication layer, the gRPC service and the HTTP API read it. It lives here, with the
//! rest of "who is calling", so that those modules do not depend on the server that
//! assembles them.

use std::net::SocketAddr;

use rustls_pki_types::CertificateDer;

/// Who is at the other end of a connection; in the extensions of every request.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The client certificate (leaf, DER), verified against the client CA during the handshake.
    pub client_certificate: Option<CertificateDer<'static>>,
}
