//! The tutorial dialect: any frames from either side are translated or
//! refused, never a panic. Each input line goes to the client side (odd lines) or the
//! session side (even lines).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use mcp_protocol::dialect::{Dialect, Tutorial};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut dialect = Dialect::Tutorial(Tutorial::new("fuzz"));
    dialect.open(now);
    for (i, line) in text.split('\n').enumerate() {
        if i % 2 == 0 {
            dialect.on_client(line, now);
        } else {
            dialect.on_session(line, now);
        }
    }
});
