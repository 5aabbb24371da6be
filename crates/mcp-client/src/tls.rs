//! TLS for `wss://` and `https://`: the system's roots, plus any the caller trusts.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::Error;

/// A client configuration (rustls with ring) trusting the system's roots and `extra` (DER).
pub(crate) fn client_config(extra: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    for der in extra {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| Error::Connect(format!("an extra root certificate: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Connect(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
