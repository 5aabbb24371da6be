//! A small HTTP(S) GET, for the JWKS of an authorization server: one request per connection,
//! a time limit, a size limit, and the system's root certificates for `https://`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The body of `url`, at most `limit` bytes, within `timeout`; or why not.
pub(crate) async fn get(url: &str, limit: usize, timeout: Duration) -> Result<Vec<u8>, String> {
    tokio::time::timeout(timeout, fetch(url, limit))
        .await
        .map_err(|_| format!("GET {url}: no answer within {} s", timeout.as_secs()))?
}

async fn fetch(url: &str, limit: usize) -> Result<Vec<u8>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("GET {url}: {e}");
    let uri: Uri = url.parse().map_err(|e| fail(&e))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(fail(&"only http and https URLs are supported")),
    };
    let host = uri.host().ok_or_else(|| fail(&"no host"))?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare, port))
        .await
        .map_err(|e| fail(&e))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or(host.clone());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if https {
        let name = ServerName::try_from(bare.to_owned()).map_err(|e| fail(&e))?;
        let tls = tokio_rustls::TlsConnector::from(client_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| fail(&e))?;
        exchange(tls, &authority, &path, limit)
            .await
            .map_err(|e| fail(&e))
    } else {
        exchange(tcp, &authority, &path, limit)
            .await
            .map_err(|e| fail(&e))
    }
}

async fn exchange<S>(
    stream: S,
    authority: &str,
    path: &str,
    limit: usize,
) -> Result<Vec<u8>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let request = Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::USER_AGENT, "mcp-server")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        driver.abort();
        return Err(format!("status {status}"));
    }
    let body = Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| format!("cannot read the body (at most {limit} bytes): {e}"))?
        .to_bytes();
    driver.abort();
    Ok(body.to_vec())
}

/// TLS for outgoing requests: the system's roots, loaded once.
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A certificate the store cannot use is skipped, as browsers do.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no root certificates found on this system".to_owned());
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}
