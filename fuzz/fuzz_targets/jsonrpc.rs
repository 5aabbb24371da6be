//! The JSON-RPC decoder: any text parses or is refused with an error object, and what
//! parses writes back to text that parses to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_protocol::{Incoming, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Incoming::Single(Ok(message))) = parse(text) {
        let written = message.to_text();
        match parse(&written) {
            Ok(Incoming::Single(Ok(again))) => assert_eq!(again, message, "{written}"),
            other => panic!("{written} parsed as {other:?}"),
        }
    }
});
