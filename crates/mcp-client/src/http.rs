//! Plain HTTP calls to the server's other endpoints (the agent API): one JSON request per
//! connection, over `http://` or `https://`.

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::{CONNECT_TIMEOUT, Error};

/// The largest answer read.
const MAX_BODY: usize = 16 << 20;

/// An HTTP answer: its status and its body, parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body: JSON, or a string holding the text.
    pub body: Value,
}

/// Sends `method url` with an optional JSON `body` and bearer `token`; `extra_roots` are
/// trusted for `https://` beside the system's roots.
pub async fn request(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
    extra_roots: &[Vec<u8>],
) -> Result<Answer, Error> {
    let fail = |e: &dyn std::fmt::Display| Error::Connect(format!("{url}: {e}"));
    let uri: Uri = url.parse().map_err(|e| fail(&e))?;
    let authority = uri.authority().map_or("", |a| a.as_str()).to_owned();
    let mut builder = Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json");
    if let Some(token) = token {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let payload = match body {
        Some(body) => {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    let request = builder.body(Full::new(payload)).map_err(|e| fail(&e))?;
    let exchange = async {
        let response = open(&uri, request, extra_roots).await?;
        let status = response.status().as_u16();
        let bytes = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(CONNECT_TIMEOUT, exchange)
        .await
        .map_err(|_| fail(&"no answer in time"))?
        .map_err(|e| fail(&e))?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Answer { status, body })
}

/// Sends `request` to `endpoint` over a new connection (TLS for `https://`); the response,
/// its body still to read. The connection lives as long as the body is read.
pub(crate) async fn open(
    endpoint: &Uri,
    request: Request<Full<Bytes>>,
    extra_roots: &[Vec<u8>],
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let https = match endpoint.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("use an http:// or https:// URL".to_owned()),
    };
    let host = endpoint.host().ok_or("no host")?.to_owned();
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = endpoint.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    if https {
        let name = ServerName::try_from(bare).map_err(|e| e.to_string())?;
        let config = crate::tls::client_config(extra_roots).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        send_on(tls, request).await
    } else {
        send_on(tcp, request).await
    }
}

async fn send_on<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}
