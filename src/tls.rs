//! TLS for outgoing connections (`https://`, `wss://`) of every protocol: rustls with the ring
//! provider, the bundled Mozilla roots (webpki-roots, so it works on a bare container), plus
//! the certificate authorities of a PEM file from config (`[tls] ca_file`) for private
//! deployments and tests.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A client TLS setup, shared by every connection of a runtime.
pub type ClientTls = Arc<rustls::ClientConfig>;

/// Why the TLS setup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read or holds no certificate.
    #[error("ca_file {path}: {message}")]
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

/// An HTTP client that uses `tls` for `https://`.
pub fn http_client(tls: &ClientTls) -> reqwest::Client {
    ensure_provider();
    reqwest::Client::builder().tls_backend_preconfigured((**tls).clone()).build().unwrap_or_else(|e| {
        tracing::error!("cannot set up TLS for HTTP ({e}); https:// will not work");
        reqwest::Client::new()
    })
}
