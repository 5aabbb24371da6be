//! JWT access tokens: the server as an OAuth 2.1 resource server. Signatures (RS256 from a
//! JWKS file, ES256 from a JWKS URL, HS256 from a secret), `exp`, `nbf`, `iss` and `aud` are
//! checked; `sub` is the principal; scopes gate tools and admin; a 401 points to the
//! protected-resource metadata (RFC 9728).
//!
//! `keys/rs256-test-only.pem` is a key made for these tests and nothing else.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_server::jwt::{Jwt, JwtConfig, KeySource};
use mcp_server::{Auth, Config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::auth::{bearer, request, status_of};
use crate::support::{Client, HANG, TestServer, exchange, http};

const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "https://mcp.example.com/mcp";
const RSA_KEY: &[u8] = include_bytes!("keys/rs256-test-only.pem");
const RSA_JWKS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/e2e/keys/rs256-test-only.jwks.json"
);
const SECRET: &[u8] = b"a-shared-secret-of-at-least-32-bytes!";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims valid for an hour, for `sub`, with `scope`.
fn claims(sub: &str, scope: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": scope,
           "iat": now(), "exp": now() + 3600})
}

fn rs256(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-test-1".to_owned());
    let key = EncodingKey::from_rsa_pem(RSA_KEY).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

async fn server_with(keys: KeySource) -> TestServer {
    let jwt = Jwt::new(JwtConfig {
        keys,
        issuer: Some(ISSUER.to_owned()),
        audiences: vec![AUDIENCE.to_owned()],
        extra_tries_per_second: mcp_server::jwt::EXTRA_TRIES_PER_SECOND,
    })
    .unwrap();
    TestServer::with_config(Config {
        auth: Auth::default().with_jwt(jwt),
        ..Config::default()
    })
    .await
}

fn initialize() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}})
}

/// The `WWW-Authenticate` header of a response head.
fn challenge(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("www-authenticate: "))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_jwt_is_accepted_only_when_signature_time_issuer_and_audience_hold() {
    let server = server_with(KeySource::JwksFile(RSA_JWKS.into())).await;
    let good = rs256(&claims("alice", "mcp:tools"));
    let (status, text) = request(
        &server,
        "POST /mcp HTTP/1.1",
        Some(&good),
        Some(&initialize()),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let upgrade =
        Client::connect_with_headers(&server, "/mcp", &[("Authorization", &bearer(&good))]).await;
    assert_eq!(status_of(upgrade), 101);
    // A browser's way: the token as a subprotocol.
    let (mut client, _) =
        Client::connect_with(&server, "/mcp", Some(&format!("mcp, mcp.auth.{good}")))
            .await
            .unwrap();
    client.initialize("2025-11-25").await;
    let sum = client.call(2, "add", json!({"a": 2, "b": 3})).await;
    assert_eq!(sum["structuredContent"]["result"], 5, "{sum}");
    drop(client);

    let mut tampered: Vec<String> = good.split('.').map(str::to_owned).collect();
    tampered[1] = URL_SAFE_NO_PAD.encode(claims("mallory", "mcp:tools mcp:admin").to_string());
    let hour = 3600;
    let bad = [
        (
            rs256(&json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() - hour})),
            "expired",
        ),
        (
            rs256(
                &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() + hour, "nbf": now() + hour}),
            ),
            "not valid yet",
        ),
        (
            rs256(
                &json!({"iss": ISSUER, "aud": "https://other.example.com/mcp", "sub": "alice", "exp": now() + hour}),
            ),
            "audience",
        ),
        (
            rs256(
                &json!({"iss": "https://evil.example.com", "aud": AUDIENCE, "sub": "alice", "exp": now() + hour}),
            ),
            "issuer",
        ),
        (
            rs256(&json!({"iss": ISSUER, "sub": "alice", "exp": now() + hour})),
            "`aud`",
        ),
        (tampered.join("."), "signature"),
        // The same claims signed with a secret: no HS256 key is configured here.
        (hs256(&claims("alice", "mcp:tools"), SECRET), "no HS256 key"),
        ("not.a.jwt".to_owned(), "malformed"),
    ];
    for (token, why) in bad {
        let head = format!(
            "POST /mcp HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}",
            initialize().to_string().len()
        );
        let (status, head, body) = exchange(&server, &head, &initialize().to_string()).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert!(body.contains(why), "{why}: {body}");
        let challenge = challenge(&head);
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        let upgrade =
            Client::connect_with_headers(&server, "/mcp", &[("Authorization", &bearer(&token))])
                .await;
        assert_eq!(status_of(upgrade), 401, "{why}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_401_points_to_the_protected_resource_metadata() {
    let server = server_with(KeySource::Secret(SECRET.to_vec())).await;
    let (status, head, _) = http(&server, "GET /mcp HTTP/1.1").await;
    assert_eq!(status, 401);
    let base = format!("http://{}", server.addr);
    let expected = format!(
        "Bearer realm=\"mcp\", resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\""
    );
    assert_eq!(challenge(&head), expected);
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let (status, head, body) = http(&server, &format!("GET {path} HTTP/1.1")).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let document: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(document["resource"], format!("{base}/mcp"));
        assert_eq!(document["authorization_servers"], json!([ISSUER]));
        assert_eq!(
            document["scopes_supported"],
            json!(["mcp:tools", "mcp:admin"])
        );
        assert_eq!(document["bearer_methods_supported"], json!(["header"]));
    }
    server.shutdown().await;

    // With static tokens only there is no authorization server to name.
    let server = TestServer::with_config(Config {
        auth: Auth::new(&["alice=alice-token-0123456789".to_owned()], None).unwrap(),
        ..Config::default()
    })
    .await;
    let (status, _, _) = http(
        &server,
        "GET /.well-known/oauth-protected-resource HTTP/1.1",
    )
    .await;
    assert_eq!(status, 404);
    let (_, head, _) = http(&server, "GET /mcp HTTP/1.1").await;
    assert_eq!(challenge(&head), "Bearer realm=\"mcp\"");
    server.shutdown().await;
}

#[tokio::test]
async fn scopes_gate_tools_and_admin() {
    let server = server_with(KeySource::Secret(SECRET.to_vec())).await;
    let only_add = hs256(&claims("bob", "openid mcp:tools:add"), SECRET);
    let (mut client, _) =
        Client::connect_with_headers(&server, "/mcp", &[("Authorization", &bearer(&only_add))])
            .await
            .unwrap();
    client.initialize("2025-11-25").await;
    let list = client
        .request(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add"], "{list}");
    let sum = client.call(3, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(sum["structuredContent"]["result"], 2, "{sum}");
    let refused = client
        .request(json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"divide","arguments":{"a":1,"b":1}}}))
        .await;
    assert_eq!(refused["error"]["code"], -32005, "{refused}");
    assert_eq!(
        refused["error"]["data"]["scope"], "mcp:tools:divide",
        "{refused}"
    );
    drop(client);

    // The agent API asks the same of the token.
    let (status, body) = request(
        &server,
        "POST /agent HTTP/1.1",
        Some(&only_add),
        Some(&json!({"name": "a"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let agent = serde_json::from_str::<Value>(&body).unwrap()["agentId"].clone();
    let call = |tool: &str| json!({"agentId": agent, "request": {"method": tool, "params": {"a": 4, "b": 2}}});
    let (status, body) = request(
        &server,
        "POST /mcp HTTP/1.1",
        Some(&only_add),
        Some(&call("add")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(
        &server,
        "POST /mcp HTTP/1.1",
        Some(&only_add),
        Some(&call("divide")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("mcp:tools:divide"), "{body}");

    // Admin needs `mcp:admin`.
    let broadcast = json!({"message": "maintenance at noon"});
    let (status, body) = request(
        &server,
        "POST /admin/broadcast HTTP/1.1",
        Some(&only_add),
        Some(&broadcast),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let admin = hs256(&claims("carol", "mcp:admin"), SECRET);
    let (status, body) = request(
        &server,
        "POST /admin/broadcast HTTP/1.1",
        Some(&admin),
        Some(&broadcast),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A token signed with another secret is no token.
    let forged = hs256(
        &claims("carol", "mcp:admin"),
        b"another-secret-of-at-least-32-bytes!!",
    );
    let (status, body) = request(
        &server,
        "POST /admin/broadcast HTTP/1.1",
        Some(&forged),
        Some(&broadcast),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature"), "{body}");
    server.shutdown().await;
}

/// An ES256 key: its PEM for signing, and its public JWK with `kid`.
fn es256_key(kid: &str) -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let jwk = json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    (key, jwk)
}

fn es256(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// An authorization server's JWKS endpoint: answers every GET with the current set and
/// reports each request it serves.
async fn jwks_endpoint(keys: Arc<Mutex<Vec<Value>>>) -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let (served, served_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buffer).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..n]);
            }
            let body = json!({"keys": *keys.lock().unwrap()}).to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            // Reported before the answer, so that a test that saw its token's answer has seen
            // the report of every fetch that answer waited for.
            let _ = served.send(());
            stream.write_all(response.as_bytes()).await.unwrap();
        }
    });
    (url, served_rx)
}

#[tokio::test]
async fn keys_from_a_jwks_url_are_fetched_and_rotated() {
    let (key_a, jwk_a) = es256_key("a");
    let (key_b, jwk_b) = es256_key("b");
    let keys = Arc::new(Mutex::new(vec![jwk_a.clone()]));
    let (url, mut served) = jwks_endpoint(Arc::clone(&keys)).await;
    let server = server_with(KeySource::JwksUrl(url)).await;
    // The server fetched the set before it took any request.
    tokio::time::timeout(HANG, served.recv())
        .await
        .unwrap()
        .unwrap();
    let initialize = initialize();
    let claims = claims("dave", "mcp:tools");
    let token_a = es256(&key_a, "a", &claims);
    let (status, body) = request(
        &server,
        "POST /mcp HTTP/1.1",
        Some(&token_a),
        Some(&initialize),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The authorization server rotates in key b: a token signed with it makes the server
    // fetch the set again.
    *keys.lock().unwrap() = vec![jwk_a, jwk_b];
    let token_b = es256(&key_b, "b", &claims);
    let (status, body) = request(
        &server,
        "POST /mcp HTTP/1.1",
        Some(&token_b),
        Some(&initialize),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::timeout(HANG, served.recv())
        .await
        .unwrap()
        .unwrap();
    // Made-up key ids do not make it fetch again at once.
    let (key_c, _) = es256_key("c");
    let token_c = es256(&key_c, "c", &claims);
    let (status, body) = request(
        &server,
        "POST /mcp HTTP/1.1",
        Some(&token_c),
        Some(&initialize),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("no ES256 key with id `c`"), "{body}");
    assert!(served.try_recv().is_err(), "a refetch within the limit");
    server.shutdown().await;
}

/// Issue 19, item 6: a connection authenticated with a JWT was served after the token
/// expired. It is closed with 1008 "token expired" once `exp` and the leeway have passed,
/// and a resumable client comes back with a fresh token.
#[tokio::test]
async fn a_websocket_connection_ends_when_its_token_expires() {
    let server = server_with(KeySource::Secret(SECRET.to_vec())).await;
    // Past `exp` already, but within the 30 s leeway: accepted, for a second more.
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "scope": "mcp:tools",
                        "exp": now() - 29});
    let token = hs256(&claims, SECRET);
    let (mut client, _) =
        Client::connect_with_headers(&server, "/mcp", &[("Authorization", &bearer(&token))])
            .await
            .unwrap();
    client.initialize("2025-11-25").await;
    let (code, reason) = tokio::time::timeout(HANG, client.expect_close())
        .await
        .expect("the connection outlived its token");
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    // A fresh token connects again.
    let fresh = hs256(&self::claims("alice", "mcp:tools"), SECRET);
    let (mut client, _) =
        Client::connect_with_headers(&server, "/mcp", &[("Authorization", &bearer(&fresh))])
            .await
            .unwrap();
    client.initialize("2025-11-25").await;
    let sum = client.call(2, "add", json!({"a": 2, "b": 3})).await;
    assert_eq!(sum["structuredContent"]["result"], 5, "{sum}");
    server.shutdown().await;
}

/// Issue 19, item 6: an HTTP session started with a wide token kept its scopes for later
/// requests made with a narrower one.
#[tokio::test]
async fn an_http_session_is_used_only_with_the_scopes_it_was_started_with() {
    let server = server_with(KeySource::Secret(SECRET.to_vec())).await;
    let wide = hs256(&claims("alice", "mcp:tools"), SECRET);
    let narrow = hs256(&claims("alice", "mcp:tools:add"), SECRET);
    let body = initialize().to_string();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nAuthorization: Bearer {wide}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}",
        body.len()
    );
    let (status, head, text) = exchange(&server, &head, &body).await;
    assert_eq!(status, 200, "{text}");
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .expect("a session id")
        .to_owned();
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
                      "params":{"name":"multiply","arguments":{"a":2,"b":3}}})
    .to_string();
    let with = |token: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {session}\r\n\
             MCP-Protocol-Version: 2025-11-25\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}",
            call.len()
        )
    };
    let (status, _, text) = exchange(&server, &with(&narrow), &call).await;
    assert_eq!(
        status, 403,
        "the narrower token used the wider session: {text}"
    );
    assert!(text.contains("scopes"), "{text}");
    let (status, _, text) = exchange(&server, &with(&wide), &call).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"result\""), "{text}");
    server.shutdown().await;
}
