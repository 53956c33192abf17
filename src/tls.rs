//! TLS: for outgoing connections (`https://`, `wss://`) of every protocol, rustls with the
//! ring provider, the bundled Mozilla roots (webpki-roots, so it works on a bare container),
//! plus the certificate authorities of a PEM file from config (`[tls] ca_file`) for private
//! deployments and tests; and for listeners that serve HTTPS themselves, a certificate and key.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A client TLS setup, shared by every connection of a runtime.
pub type ClientTls = Arc<rustls::ClientConfig>;

/// Why the TLS setup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the setup.
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Makes ring the process's rustls provider, for whatever builds a TLS setup on its own (a
/// plain `reqwest::Client::new()` in a program that embeds rhaibot, or in its tests).
pub fn ensure_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The client setup: bundled roots, plus every certificate in `ca_file` when given.
pub fn client(ca_file: Option<&Path>) -> Result<ClientTls, TlsError> {
    ensure_provider();
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let fail = |message: String| TlsError::CaFile { path: path.display().to_string(), message };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(format!("cannot read: {e}")))?
            .collect::<Result<_, _>>()
            .map_err(|e| fail(format!("not a PEM certificate file: {e}")))?;
        if certs.is_empty() {
            return Err(fail("holds no certificate".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| fail(format!("a certificate was refused: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP client for a protocol's connections (events over SSE, the official platform's token
/// and uploads) that uses `tls` for `https://`. Like the API client and the WebSocket ones, it
/// connects directly: proxies from the environment are not used, so every connection of a bot
/// leaves from the same address (the official platform checks it against an allow list).
pub fn http_client(tls: &ClientTls) -> reqwest::Client {
    ensure_provider();
    let builder = reqwest::Client::builder().tls_backend_preconfigured((**tls).clone()).no_proxy();
    builder.build().unwrap_or_else(|e| {
        tracing::error!("cannot set up TLS for HTTP ({e}); https:// will not work");
        reqwest::Client::new()
    })
}

/// A TLS acceptor serving the certificate chain of `cert_file` with the private key of
/// `key_file` (both PEM), for a listener that terminates HTTPS itself.
pub fn server(cert_file: &Path, key_file: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use rustls::pki_types::PrivateKeyDer;
    ensure_provider();
    let fail = |path: &Path, message: String| TlsError::CaFile { path: path.display().to_string(), message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| fail(cert_file, format!("cannot read: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(cert_file, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(fail(cert_file, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| fail(key_file, format!("no private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Setup(format!("certificate and key do not go together: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
