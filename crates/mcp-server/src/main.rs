//! The `mcp-server` binary: parses the command line, installs logging, binds, serves, and
//! shuts down gracefully on SIGINT or SIGTERM. SIGHUP reloads the TLS certificate.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser as _;
use mcp_server::Cli;

/// mimalloc instead of the system allocator: a small call allocates and frees a few dozen
/// blocks, often on different worker threads, and glibc's allocator was a fifth of the
/// server's instructions (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    mcp_server::logging::init(&cli.log_format);
    tokio::spawn(mcp_server::logging::report_dropped());
    let config = cli.config().context("invalid configuration")?;
    if !config.auth.is_enabled() && !cli.listen.ip().is_loopback() {
        if !cli.insecure_no_auth {
            anyhow::bail!(
                "refusing to serve {} without authentication: anyone who can reach it could use it. \
                 Configure --auth-token, --auth-tokens-file or JWT keys (--jwt-jwks-url, --jwt-jwks-file, --jwt-secret-file), listen on a loopback address, \
                 or pass --insecure-no-auth",
                cli.listen
            );
        }
        tracing::warn!(
            listen = %cli.listen,
            "INSECURE: serving a non-loopback address without authentication (--insecure-no-auth); anyone who can reach it can use it"
        );
    }
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // The first line on stdout is a contract: scripts and tests read the real port from it.
    let (http, ws) = if config.tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {http}://{local}").context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    drop(stdout);
    tracing::info!(%local, version = env!("CARGO_PKG_VERSION"), "listening; MCP endpoint {ws}://{local}/mcp");
    if let Some(tls) = config.tls.clone() {
        tokio::spawn(reload_on_hangup(tls));
    }
    mcp_server::serve(listener, config, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Reloads the certificate and key at every SIGHUP; a bad file leaves the old ones in use.
async fn reload_on_hangup(tls: std::sync::Arc<mcp_server::Tls>) {
    #[cfg(unix)]
    {
        let Some(mut hangups) = mcp_server::hangups("the certificate will not be reloaded") else {
            return;
        };
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: cannot reload the TLS certificate; keeping the one in use")
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop(tls);
}

/// Completes on the first SIGINT or SIGTERM. A second signal exits at once.
///
/// The same signal streams serve both signals, so a second signal sent right after the first
/// cannot slip between them.
async fn shutdown_signal() {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for signals; stop the server with SIGKILL");
            std::future::pending::<()>().await;
            return;
        }
    };
    signals.next().await;
    tracing::info!("signal received; shutting down (send another to exit at once)");
    tokio::spawn(async move {
        signals.next().await;
        tracing::warn!("second signal; exiting now");
        std::process::exit(130);
    });
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Self> {
        Ok(Self {})
    }

    #[cfg(unix)]
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
