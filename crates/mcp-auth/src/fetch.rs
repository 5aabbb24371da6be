//! Fetching a JWKS document: one GET over `http://` or `https://` (rustls with the system's
//! roots), with a time limit and a size limit, on hyper directly.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long a fetch may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest document read: a JWKS is a few kilobytes.
const MAX_BODY: usize = 1 << 20;

/// The body of a successful (2xx) `GET url`; otherwise why not, in words.
pub(crate) async fn get(url: &str) -> Result<Bytes, String> {
    tokio::time::timeout(TIMEOUT, get_now(url))
        .await
        .map_err(|_| format!("GET {url}: no answer within {} s", TIMEOUT.as_secs()))?
        .map_err(|e| format!("GET {url}: {e}"))
}

async fn get_now(url: &str) -> Result<Bytes, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("only http:// and https:// URLs are fetched".to_owned()),
    };
    let host = uri.host().ok_or("the URL has no host")?;
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            hyper::header::HOST,
            uri.authority().map_or(host, |a| a.as_str()),
        )
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    if https {
        let name = ServerName::try_from(bare).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        exchange(tls, request).await
    } else {
        exchange(tcp, request).await
    }
}

async fn exchange<S>(stream: S, request: Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?
        .to_bytes();
    connection.abort();
    if !status.is_success() {
        return Err(format!("status {}", status.as_u16()));
    }
    Ok(body)
}

/// rustls with ring, trusting the system's roots.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
