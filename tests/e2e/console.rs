//! The web console's files: served to anyone (the page asks for the token), under a strict
//! Content-Security-Policy, with the right types. The page itself is driven in Chromium by
//! `cargo xtask e2e` (tests/browser).

use mcp_server::{Auth, Config};

use crate::support::{TestServer, http};

#[tokio::test]
async fn the_console_is_served_without_a_token_under_a_strict_policy() {
    let server = TestServer::with_config(Config {
        auth: Auth::new(&["alice=alice-token-0123456789".to_owned()], None).unwrap(),
        ..Config::default()
    })
    .await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/mcp.js", "text/javascript"),
        ("/console/forms.js", "text/javascript"),
        ("/console/style.css", "text/css"),
    ] {
        let (status, head, body) = http(&server, &format!("GET {path} HTTP/1.1")).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'"),
            "{path}: {head}"
        );
        assert!(!body.is_empty());
    }
    let (_, _, page) = http(&server, "GET / HTTP/1.1").await;
    // Nothing inline: the policy would refuse it.
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "{page}"
    );
    // Other paths still need the token, and the console's files take GET only.
    assert_eq!(http(&server, "GET /console/other.js HTTP/1.1").await.0, 401);
    assert_eq!(
        http(&server, "POST / HTTP/1.1\r\nContent-Length: 0")
            .await
            .0,
        405
    );
    server.shutdown().await;
}
