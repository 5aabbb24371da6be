//! https and wss on one port with the real binary, and the certificate reloaded on SIGHUP
//! without dropping the connections already open.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::ChildStderr;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::{HANG, sigterm, spawn};

/// A self-signed certificate for `localhost`, written as PEM to `dir`; its DER, to trust.
fn certificate(dir: &Path) -> CertificateDer<'static> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    // Written aside, then renamed, as a deployment would, so no reload sees half a file.
    for (name, text) in [("cert.pem", cert.pem()), ("key.pem", key.serialize_pem())] {
        std::fs::write(dir.join(format!("{name}.new")), text).unwrap();
        std::fs::rename(dir.join(format!("{name}.new")), dir.join(name)).unwrap();
    }
    cert.der().clone()
}

/// A TLS connection to the server that trusts only `root`.
async fn tls(
    address: &str,
    root: &CertificateDer<'static>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(address).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        HANG,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .unwrap()
}

/// `GET /healthz` over https; the status line.
async fn healthz(address: &str, root: &CertificateDer<'static>) -> std::io::Result<String> {
    let mut stream = tls(address, root).await?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    // The server closes without close_notify once the answer is out; what came is enough.
    let _ = tokio::time::timeout(HANG, stream.read_to_end(&mut response))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Reads the server's log until a line contains `needle`.
async fn wait_for_log(lines: &mut Lines<BufReader<ChildStderr>>, needle: &str) -> String {
    loop {
        let line = tokio::time::timeout(HANG, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the log ended before {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

type Wss = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;

async fn rpc(socket: &mut Wss, message: Value) -> Value {
    socket.send(Frame::text(message.to_string())).await.unwrap();
    loop {
        let frame = tokio::time::timeout(HANG, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Frame::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value.get("id") == message.get("id") {
                return value;
            }
        }
    }
}

#[tokio::test]
async fn https_and_wss_share_the_port_and_sighup_reloads_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = certificate(dir.path());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let (mut child, line) = spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        Stdio::piped(),
    )
    .await;
    let address = line
        .trim_end()
        .strip_prefix("listening on https://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();

    assert_eq!(healthz(&address, &first).await.unwrap(), "HTTP/1.1 200 OK");
    // Plain http on the TLS port gets no answer.
    let mut plain = TcpStream::connect(&address).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(HANG, plain.read_to_end(&mut answer))
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    // wss on the same port.
    let mut request = format!(
        "wss://localhost:{}/mcp",
        address.rsplit(':').next().unwrap()
    )
    .into_client_request()
    .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mcp".parse().unwrap());
    let (mut socket, _) =
        tokio_tungstenite::client_async(request, tls(&address, &first).await.unwrap())
            .await
            .unwrap();
    let init = rpc(&mut socket, json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}))
    .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");

    // A new certificate, and SIGHUP.
    let second = certificate(dir.path());
    hangup(&child);
    wait_for_log(&mut log, "TLS certificate reloaded").await;
    assert_eq!(healthz(&address, &second).await.unwrap(), "HTTP/1.1 200 OK");
    assert!(
        healthz(&address, &first).await.is_err(),
        "the old certificate is still served"
    );
    // The connection made before the reload carries on.
    let sum = rpc(
        &mut socket,
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"add","arguments":{"a":2,"b":3}}}),
    )
    .await;
    assert_eq!(sum["result"]["structuredContent"]["result"], 5, "{sum}");

    // A broken file is refused, and the certificate in use stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    hangup(&child);
    let error = wait_for_log(&mut log, "cannot reload the TLS certificate").await;
    assert!(error.contains("cert.pem"), "{error}");
    assert_eq!(healthz(&address, &second).await.unwrap(), "HTTP/1.1 200 OK");

    drop(socket);
    sigterm(&child);
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

fn hangup(child: &tokio::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_missing_or_mismatched_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path());
    let cert = dir.path().join("cert.pem");
    let other = tempfile::tempdir().unwrap();
    certificate(other.path());
    let cases = [
        (
            dir.path().join("missing.pem"),
            dir.path().join("key.pem"),
            "missing.pem",
        ),
        (cert.clone(), other.path().join("key.pem"), "does not match"),
    ];
    for (cert, key, why) in cases {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-server"))
            .args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(why), "{why}: {stderr}");
    }
}
