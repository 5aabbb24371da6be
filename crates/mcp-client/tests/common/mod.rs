//! What the client's tests share: the real server on port 0, and a TCP relay that cuts
//! connections on demand, as a network failure would.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use mcp_server::Config;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// A guard against a hung test, never a synchronization device.
pub(crate) const HANG: Duration = Duration::from_secs(30);

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(crate) async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(mcp_server::serve(listener, config, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Polls the metrics until no request runs: the server reaches that by itself once
    /// the calls it was told to cancel have stopped.
    pub(crate) async fn wait_until_idle(&self) {
        let metrics = format!("http://{}/metrics", self.addr);
        let deadline = tokio::time::Instant::now() + HANG;
        loop {
            let answer = mcp_client::http::request(hyper::Method::GET, &metrics, None, None, &[])
                .await
                .unwrap();
            let text = answer.body.as_str().unwrap().to_owned();
            if text.lines().any(|l| l == "mcp_inflight_requests 0") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "calls still run:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(HANG, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A TCP relay that can cut every connection through it, as a network failure would.
pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    cut: watch::Sender<u64>,
}

impl Relay {
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(0u64);
        let cuts = cut.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = listener.accept().await.unwrap();
                let mut cut = cuts.subscribe();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let mut outbound = TcpStream::connect(upstream).await.unwrap();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    pub(crate) fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}
