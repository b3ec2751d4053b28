//! The transport: TCP connections, in plain text or TLS (rustls, ring), with optional client
//! certificates, and the certificate files reloaded when they change on disk.
//!
//! Connections are accepted here rather than by tonic's own TLS support so that the
//! certificate can be replaced without a restart: a background task looks at the files'
//! modification times every second and loads changed files, which new connections get from
//! then on. A file that fails to load is reported and the previous certificate stays in use.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing::Instrument as _;

use crate::auth::PeerInfo;
use crate::{Result, StartupError};

/// How often the TLS files are looked at for a change.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How long a client gets to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for the server to take them.
const ACCEPT_BUFFER: usize = 64;
/// TLS handshakes in progress at once; more connections wait to be accepted, so that a flood
/// of slow handshakes cannot take unbounded memory.
const MAX_HANDSHAKES: usize = 256;

/// The files of the server's TLS identity, and the CA of client certificates for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates. When set, a client certificate is
    /// verified against them if one is presented; a client may still present none and use a
    /// bearer token instead.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [
            Some(self.cert.as_path()),
            Some(self.key.as_path()),
            self.client_ca.as_deref(),
        ]
        .into_iter()
        .flatten()
    }

    /// The modification times of the files, to notice a change.
    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.paths()
            .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// Builds the rustls server configuration from the files.
    fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, StartupError> {
        let tls_error = |path: &Path, reason: String| StartupError::TlsConfig {
            path: path.to_owned(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(Iterator::collect::<std::result::Result<Vec<_>, _>>)
            .map_err(|e| tls_error(&self.cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(tls_error(&self.cert, "no certificate in the file".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| tls_error(&self.key, e.to_string()))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&self.cert, e.to_string()))?;
        let builder = match &self.client_ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                let cas = CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect::<std::result::Result<Vec<_>, _>>)
                    .map_err(|e| tls_error(path, e.to_string()))?;
                let (added, _) = roots.add_parsable_certificates(cas);
                if added == 0 {
                    return Err(tls_error(
                        path,
                        "no usable CA certificate in the file".into(),
                    ));
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| tls_error(path, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| tls_error(&self.key, e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The TLS configuration in use, rebuilt when its files change.
///
/// A background task ([`TlsSource::spawn_reload`]) watches the files; accepting a connection
/// only reads the configuration in use, and never touches the disk.
#[derive(Debug)]
pub(crate) struct TlsSource {
    files: TlsFiles,
    /// The configuration new connections get. A std lock: held for an `Arc` clone or swap
    /// only, never across an await.
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// The files' modification times when last looked at; only the reload task uses it.
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl TlsSource {
    /// Loads the files once; errors here stop the start-up.
    pub(crate) fn load(files: TlsFiles) -> Result<Self, StartupError> {
        let stamps = files.stamps();
        let config = files.server_config()?;
        Ok(Self {
            files,
            current: RwLock::new(config),
            stamps: Mutex::new(stamps),
        })
    }

    /// The configuration for a new connection.
    fn config(&self) -> Arc<rustls::ServerConfig> {
        // Poisoning cannot leave half an `Arc` behind: the configuration in it is whole.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reloads the configuration if a file changed since the last look; returns whether a
    /// new configuration is in use. A file that does not load is reported and the previous
    /// configuration stays.
    fn reload_if_changed(&self) -> bool {
        let stamps = self.files.stamps();
        let mut seen = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        if stamps == *seen {
            return false;
        }
        // Remember these times even on failure: a half-written file is retried when it
        // changes again, not on every look.
        *seen = stamps;
        match self.files.server_config() {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
                tracing::info!(cert = %self.files.cert.display(), "TLS files changed: reloaded");
                true
            }
            Err(error) => {
                tracing::error!(
                    error = %crate::error::chain(&error),
                    "TLS files changed but do not load: keeping the previous certificate"
                );
                false
            }
        }
    }

    /// Starts the task that looks at the files every [`RELOAD_INTERVAL`] and reloads them
    /// when they change. It runs until aborted.
    pub(crate) fn spawn_reload(self: &Arc<Self>) -> JoinHandle<()> {
        let source = Arc::clone(self);
        let span = tracing::info_span!("tls_reload", cert = %source.files.cert.display());
        tokio::spawn(
            async move {
                let mut ticks = tokio::time::interval(RELOAD_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let source = Arc::clone(&source);
                    // Stat and parse the files off the async workers.
                    if let Err(error) =
                        tokio::task::spawn_blocking(move || source.reload_if_changed()).await
                    {
                        tracing::error!(%error, "the TLS reload failed");
                    }
                }
            }
            .instrument(span),
        )
    }
}

/// An accepted connection, plain or TLS.
#[derive(Debug)]
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Self::Plain(tcp) => PeerInfo {
                remote_addr: tcp.peer_addr().ok(),
                client_certificate: None,
            },
            Self::Tls(tls) => {
                let (tcp, session) = tls.get_ref();
                PeerInfo {
                    remote_addr: tcp.peer_addr().ok(),
                    client_certificate: session
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| leaf.clone().into_owned()),
                }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Accepts connections on `listener` (completing the TLS handshake when `tls` is set) and
/// hands them over as a stream for tonic's `serve_with_incoming`. The accepting task ends
/// when the stream is dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Option<Arc<TlsSource>>,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(ACCEPT_BUFFER);
    let span = tracing::info_span!("accept", tls = tls.is_some());
    tokio::spawn(accept_loop(listener, tls, tx).instrument(span));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<TlsSource>>,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    // Handshakes in progress; aborted when this task ends.
    let mut handshakes = JoinSet::new();
    let handshake_permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        // With TLS, a connection is accepted only once a handshake may start.
        let permit = match &tls {
            Some(_) => tokio::select! {
                permit = Arc::clone(&handshake_permits).acquire_owned() => permit.ok(),
                () = tx.closed() => break,
            },
            None => None,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => break,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => continue,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Running out of file descriptors, say: pause rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        match &tls {
            None => {
                if tx.send(Ok(Conn::Plain(tcp))).await.is_err() {
                    break;
                }
            }
            Some(source) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(source.config());
                let tx = tx.clone();
                handshakes.spawn(
                    async move {
                        let _permit = permit;
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                let _ = tx.send(Ok(Conn::Tls(Box::new(stream)))).await;
                            }
                            // A failed handshake concerns that client only (wrong CA, plain
                            // text on the TLS port): the server goes on.
                            Ok(Err(error)) => {
                                tracing::info!(%remote, %error, "TLS handshake failed");
                            }
                            Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                        }
                    }
                    .in_current_span(),
                );
            }
        }
    }
    handshakes.abort_all();
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    /// A self-signed certificate and its key, PEM.
    fn identity() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("a certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `text` to `path` and dates it `stamp` seconds after the epoch, so that
    /// a change shows whatever the file system's timestamp granularity.
    fn write(path: &Path, text: &str, stamp: u64) {
        std::fs::write(path, text).expect("write");
        File::options()
            .write(true)
            .open(path)
            .and_then(|file| file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(stamp)))
            .expect("set the modification time");
    }

    #[test]
    fn the_reload_takes_changed_files_and_keeps_the_last_good_ones() {
        let dir = std::env::temp_dir().join(format!("tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: None,
        };
        let (cert, key) = identity();
        write(&files.cert, &cert, 1_000);
        write(&files.key, &key, 1_000);
        let source = TlsSource::load(files.clone()).expect("loads");
        let first = source.config();

        // Nothing changed: the configuration in use stays.
        assert!(!source.reload_if_changed());
        assert!(Arc::ptr_eq(&first, &source.config()));

        // A renewed certificate is taken.
        let (cert, key) = identity();
        write(&files.key, &key, 2_000);
        write(&files.cert, &cert, 2_000);
        assert!(source.reload_if_changed());
        let second = source.config();
        assert!(!Arc::ptr_eq(&first, &second));

        // A broken one is not: the last good configuration stays, and is not retried until
        // the files change again.
        write(&files.cert, "not a certificate", 3_000);
        assert!(!source.reload_if_changed());
        assert!(Arc::ptr_eq(&second, &source.config()));
        assert!(!source.reload_if_changed());

        let _ = std::fs::remove_dir_all(&dir);
    }
}
