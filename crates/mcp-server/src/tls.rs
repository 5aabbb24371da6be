//! TLS for https and wss on the listening port, with rustls. The certificate and key are
//! PEM files; [`Tls::reload`] (SIGHUP in the binary) reads them again: new handshakes use
//! the new certificate, and connections already open carry on untouched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The server's certificate, reloadable.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Current>,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate or key could not be used; the text names the file and the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file is unreadable, not PEM, or holds no certificate: fix
    /// `--tls-cert`.
    #[error("{0}")]
    Certificate(String),
    /// The key file is unreadable, not a PEM private key rustls can sign with, or does not
    /// match the certificate: fix `--tls-key`.
    #[error("{0}")]
    Key(String),
    /// rustls refused its own configuration (no protocol version in common): a build
    /// problem, not a file's.
    #[error("TLS configuration: {0}")]
    Config(String),
}

impl Tls {
    /// Reads the certificate chain and key; fails with a message naming the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let current = Arc::new(Current(RwLock::new(Arc::new(read(cert, key)?))));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        // WebSocket upgrades need HTTP/1.1, which is all this server speaks.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again. On failure the certificate in use stays, and the error says
    /// what is wrong with the new files.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = read(&self.cert, &self.key)?;
        *self
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }
}

fn read(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let bad_cert = |e: &dyn std::fmt::Display| {
        TlsError::Certificate(format!("--tls-cert {}: {e}", cert.display()))
    };
    let bad_key =
        |e: &dyn std::fmt::Display| TlsError::Key(format!("--tls-key {}: {e}", key.display()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad_cert(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_cert(&e))?;
    if chain.is_empty() {
        return Err(bad_cert(&"no certificate in it"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| bad_key(&e))?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| bad_key(&e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        bad_key(&format_args!(
            "does not match --tls-cert {}: {e}",
            cert.display()
        ))
    })?;
    Ok(certified)
}
