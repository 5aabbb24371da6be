//! Reading a modern request's `_meta`, and what a modern result carries.

use serde_json::{Map, Value, json};

use super::*;

fn params(meta: Value) -> Value {
    json!({"name": "add", "_meta": meta})
}

#[test]
fn a_complete_meta_is_read_with_its_optional_fields() {
    let p = params(json!({
        PROTOCOL_VERSION: "2026-07-28",
        CLIENT_CAPABILITIES: {"sampling": {}, "extensions": {"io.modelcontextprotocol/tasks": {}}},
        CLIENT_INFO: {"name": "c", "version": "1"},
        LOG_LEVEL: "warning",
        "progressToken": 7
    }));
    let meta = RequestMeta::read(Some(&p)).unwrap();
    assert_eq!(meta.version, ProtocolVersion::V2026_07_28);
    assert!(meta.declares("sampling"));
    assert!(!meta.declares("elicitation"));
    assert!(meta.declares("io.modelcontextprotocol/tasks"));
    assert_eq!(meta.log_level, Some(LoggingLevel::Warning));
    assert_eq!(meta.client_info.unwrap().name, "c");
    assert_eq!(meta.progress_token, Some(crate::RequestId::Number(7)));
    assert!(names_a_version(Some(&p)));
}

#[test]
fn missing_or_malformed_required_fields_are_invalid_params() {
    let cases = [
        json!({}),
        json!({"_meta": 3}),
        params(json!({CLIENT_CAPABILITIES: {}})),
        params(json!({PROTOCOL_VERSION: 2026, CLIENT_CAPABILITIES: {}})),
        params(json!({PROTOCOL_VERSION: "2026-07-28"})),
        params(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: []})),
        params(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: {}, LOG_LEVEL: "loud"})),
    ];
    for p in cases {
        let error = RequestMeta::read(Some(&p)).unwrap_err();
        assert_eq!(
            error.code,
            crate::error_codes::INVALID_PARAMS,
            "{p}: {error:?}"
        );
    }
    assert!(RequestMeta::read(None).is_err());
    assert!(!names_a_version(Some(&json!({"_meta": {}}))));
}

#[test]
fn an_unknown_or_legacy_version_is_unsupported_per_request_naming_what_is() {
    for requested in ["v999.0.0", "2025-11-25"] {
        let p = params(json!({PROTOCOL_VERSION: requested, CLIENT_CAPABILITIES: {}}));
        let error = RequestMeta::read(Some(&p)).unwrap_err();
        assert_eq!(error.code, codes::UNSUPPORTED_PROTOCOL_VERSION);
        let data = error.data.unwrap();
        assert_eq!(data["requested"], requested);
        assert_eq!(data["supported"][0], "2026-07-28");
        assert!(
            data["supported"]
                .as_array()
                .unwrap()
                .contains(&json!("2025-11-25"))
        );
    }
}

#[test]
fn a_complete_result_says_so_names_the_server_and_may_be_cached() {
    let server = Implementation {
        name: "s".to_owned(),
        version: "1".to_owned(),
        title: None,
        extra: Map::new(),
    };
    let mut result = Map::new();
    result.insert("_meta".to_owned(), json!({"other": 1}));
    complete(
        &mut result,
        &server,
        Some(Cache {
            ttl_ms: 60_000,
            public: true,
        }),
    );
    assert_eq!(
        Value::Object(result),
        json!({
            "resultType": "complete",
            "_meta": {"other": 1, SERVER_INFO: {"name": "s", "version": "1"}},
            "ttlMs": 60_000,
            "cacheScope": "public"
        })
    );
}

#[test]
fn initialize_never_negotiates_a_modern_revision() {
    assert_eq!(
        ProtocolVersion::negotiate("2026-07-28"),
        ProtocolVersion::V2025_11_25
    );
    assert_eq!(
        ProtocolVersion::negotiate("2025-06-18"),
        ProtocolVersion::V2025_06_18
    );
    assert!(is_removed("initialize") && is_removed("ping") && !is_removed("tools/call"));
    let error = missing_capability("sampling");
    assert_eq!(
        error.data.unwrap(),
        json!({"requiredCapabilities": {"sampling": {}}})
    );
}

#[test]
fn header_values_decode_from_their_base64_sentinel() {
    assert_eq!(decode_header_value("us-west1").as_deref(), Some("us-west1"));
    assert_eq!(
        decode_header_value("=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(),
        Some("Hello, 世界")
    );
    assert_eq!(
        decode_header_value("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=").as_deref(),
        Some("=?base64?literal?=")
    );
    assert_eq!(decode_header_value("=?base64?not base64!?="), None);
    assert_eq!(decode_header_value("=?base64?/w==?="), None, "not UTF-8");
}

#[test]
fn header_values_encode_only_when_they_must_and_read_back() {
    for (value, encoded) in [
        ("us-west1", "us-west1"),
        ("Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?="),
        (" padded ", "=?base64?IHBhZGRlZCA=?="),
        ("line1\nline2", "=?base64?bGluZTEKbGluZTI=?="),
        ("=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="),
    ] {
        assert_eq!(encode_header_value(value), encoded, "{value:?}");
        assert_eq!(decode_header_value(encoded).as_deref(), Some(value));
    }
}

#[test]
fn annotated_parameters_are_found_at_their_path_and_compared_by_type() {
    let schema = json!({"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "limits": {"type": "object", "properties": {
            "rows": {"type": "integer", "x-mcp-header": "Rows"}
        }},
        "plain": {"type": "string"}
    }});
    let mut found = header_params(&schema);
    found.sort();
    assert_eq!(
        found,
        [
            (
                vec!["limits".to_owned(), "rows".to_owned()],
                "Rows".to_owned()
            ),
            (vec!["region".to_owned()], "Region".to_owned()),
        ]
    );
    assert!(header_matches("42", &json!(42.0)) && header_matches("42.0", &json!(42)));
    assert!(!header_matches("43", &json!(42)));
    assert!(header_matches("true", &json!(true)) && !header_matches("True", &json!(true)));
    assert!(header_matches("a b", &json!("a b")) && !header_matches("a", &json!(["a"])));
    assert_eq!(header_text(&json!(42)).as_deref(), Some("42"));
    assert_eq!(header_text(&json!(false)).as_deref(), Some("false"));
    assert_eq!(header_text(&json!({"a": 1})), None);
}
