//! Your own tool with all mcp-server does: `cargo run -p mcp-examples --bin count-primes`.

use mcp_server::Server;
use mcp_server::tools::{ProgressUpdate, Tool, ToolContext, ToolError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The arguments of `count_primes`.
#[derive(Deserialize, JsonSchema)]
struct Below {
    /// Count the primes below this number.
    below: u64,
}

#[derive(Serialize, JsonSchema)]
struct Count {
    below: u64,
    primes: u64,
}

struct CountPrimes;

impl Tool for CountPrimes {
    type Params = Below;
    type Output = Count;
    fn name(&self) -> &str {
        "count_primes"
    }
    fn description(&self) -> &str {
        "Counts the primes below `below`, reporting progress; stops when cancelled."
    }
    async fn call(&self, Below { below }: Below, ctx: ToolContext) -> Result<Count, ToolError> {
        let (mut progress, mut primes) = (ctx.progress, 0);
        for n in 2..below {
            primes += u64::from((2..).take_while(|d| d * d <= n).all(|d| n % d != 0));
            if n % 4096 == 0 {
                // Between chunks: report, let other calls run, stop if cancelled.
                let message = format!("{n} of {below}, {primes} primes so far");
                progress.report(ProgressUpdate::of(n as f64, below as f64, message));
                tokio::task::yield_now().await;
                if ctx.cancel.is_cancelled() {
                    return Err(ToolError::Cancelled);
                }
            }
        }
        Ok(Count { below, primes })
    }
}

#[tokio::main]
#[allow(clippy::print_stdout)] // The address is its one line of output.
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1);
    let addr = addr.as_deref().unwrap_or("127.0.0.1:8090");
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let server = Server::new().tool(CountPrimes);
    Ok(server.serve(listener, tokio::signal::ctrl_c()).await?)
}
