//! The server's HTTP request handling: any bytes on a connection (request lines, headers,
//! bodies, upgrades, Streamable HTTP, the agent API, admin) get answers or a closed
//! connection, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mcp_server::fuzzing::http_connection(data);
});
