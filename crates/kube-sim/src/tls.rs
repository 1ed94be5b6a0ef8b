//! Optional HTTPS with a self-signed certificate generated at start, and bearer-token
//! authentication, so the clients' TLS and token paths are exercised too.
//!
//! The certificate names `localhost` and `127.0.0.1`; the kubeconfig carries it as the cluster's
//! certificate authority, so clients verify it rather than skipping verification. TLS handshakes
//! run in their own tasks, so a slow client does not hold up other connections. Client
//! certificates are not supported.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate could not be generated.
    #[error("failed to generate the self-signed certificate")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("failed to configure TLS")]
    Config(#[from] rustls::Error),
}

/// A self-signed server certificate and the acceptor that uses it.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The certificate in PEM, for kubeconfigs.
    pub certificate_pem: String,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Generates a certificate for `localhost` and `127.0.0.1`.
    ///
    /// # Errors
    ///
    /// When generation or the rustls configuration fails.
    pub fn self_signed() -> Result<Self, TlsError> {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])?;
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            certificate_pem: certified.cert.pem(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// A listener that hands out connections once their TLS handshake is done.
pub struct TlsListener {
    address: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts TCP connections on `tcp` and runs their handshakes in the background.
    #[must_use]
    pub fn new(tcp: TcpListener, material: &TlsMaterial) -> Self {
        let address = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, ready) = mpsc::channel(64);
        let acceptor = material.acceptor.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = tcp.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Self { address, ready }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task never ends; if it did, wait forever rather than spin.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.address)
    }
}
