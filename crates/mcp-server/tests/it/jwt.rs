//! JWT settings on the command line of the real binary: the metadata names the public URL
//! and the issuer, the default audience is the resource URL, and settings that cannot work
//! are refused at start.

use std::process::Stdio;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::{HANG, exchange, get, sigterm, spawn, start, start_or_refuse};

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

fn token(aud: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": "https://auth.example.com", "aud": aud, "sub": "erin",
        "scope": "mcp:tools", "exp": now + 600});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// `POST /mcp` with an initialize and `token`: the status code.
async fn initialize(address: &str, token: &str) -> u16 {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}})
    .to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(address, &request).await.0
}

#[tokio::test]
async fn jwt_settings_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let secret = secret.to_str().unwrap();
    let (child, address) = start(&[
        "--jwt-secret-file",
        secret,
        "--jwt-issuer",
        "https://auth.example.com",
        "--public-url",
        "https://mcp.example.com/",
    ])
    .await;
    let (status, body) = get(&address, "/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(status, 200, "{body}");
    let document: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["resource"], "https://mcp.example.com/mcp");
    assert_eq!(
        document["authorization_servers"],
        json!(["https://auth.example.com"])
    );
    // The default audience is the resource URL.
    assert_eq!(
        initialize(&address, &token("https://mcp.example.com/mcp")).await,
        200
    );
    assert_eq!(
        initialize(&address, &token("https://elsewhere.example.com/mcp")).await,
        401
    );
    sigterm(&child);
    drop(child);

    // JWT keys are authentication: a non-loopback address is served.
    let (child, first) = start_or_refuse(&[
        "--listen",
        "0.0.0.0:0",
        "--jwt-secret-file",
        secret,
        "--jwt-audience",
        "mcp",
    ])
    .await
    .unwrap();
    assert!(first.starts_with("listening on http://0.0.0.0:"), "{first}");
    sigterm(&child);
    drop(child);

    let short = dir.path().join("short");
    std::fs::write(&short, "too short").unwrap();
    let refusals = [
        (vec!["--jwt-secret-file", secret], "needs an audience"),
        (
            vec!["--jwt-issuer", "https://auth.example.com"],
            "need keys",
        ),
        (
            vec![
                "--jwt-secret-file",
                short.to_str().unwrap(),
                "--jwt-audience",
                "mcp",
            ],
            "at least 32 bytes",
        ),
        (
            vec!["--jwt-jwks-url", "ftp://keys", "--jwt-audience", "mcp"],
            "must be an https URL",
        ),
        (
            vec![
                "--jwt-jwks-url",
                "http://keys.example.com/jwks",
                "--jwt-audience",
                "mcp",
            ],
            "only to a loopback host",
        ),
        (
            vec![
                "--jwt-jwks-file",
                "/no/such/jwks.json",
                "--jwt-audience",
                "mcp",
            ],
            "/no/such/jwks.json",
        ),
        (
            vec![
                "--jwt-secret-file",
                secret,
                "--jwt-jwks-url",
                "https://a",
                "--jwt-audience",
                "mcp",
            ],
            "cannot be used with",
        ),
    ];
    for (args, why) in refusals {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend(args.iter().copied());
        let (child, first) = spawn(&all, Stdio::piped()).await;
        assert!(first.is_empty(), "{args:?} started: {first}");
        let output = tokio::time::timeout(HANG, child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}
