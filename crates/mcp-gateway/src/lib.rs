//! The gateway: other MCP servers' tools served through this one.
//!
//! Each configured upstream ([`config`]) is connected through `mcp-client` (a stdio program
//! run as a child process and restarted with backoff when it exits, or a remote server
//! reconnected with backoff), its tools listed and offered here as `NAME.tool`
//! ([`naming`]), beside the server's own. A call of one is forwarded with its arguments,
//! its progress, its cancellation, and what the upstream asks its client ([`upstream`]).
//! When an upstream's list changes (it says `notifications/tools/list_changed`, or it was
//! restarted), the hub's tools are replaced and clients are told.

#![warn(missing_docs)]

pub mod config;
pub mod naming;
pub mod upstream;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use mcp_protocol::{CallToolResult, Tool, methods};
use mcp_session::Hub;
use mcp_tools::{BoxFuture, DynamicTool, ToolContext, ToolRegistry};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::Upstream;
use crate::naming::Namer;
use crate::upstream::Link;

/// The upstreams of one hub, and the hub's own tools beside theirs.
pub struct Gateway {
    hub: Hub,
    /// The server's own tools, always listed first.
    own: ToolRegistry,
    state: Mutex<State>,
    stop: CancellationToken,
}

#[derive(Default)]
struct State {
    /// The connected upstreams and the tools each listed last, by name.
    links: BTreeMap<String, (Arc<Link>, Vec<Tool>)>,
    /// The upstreams being connected ([`Gateway::keep`]), by name: cancelled when the
    /// upstream is removed or configured anew before it connected.
    connecting: BTreeMap<String, (Upstream, CancellationToken)>,
}

impl Gateway {
    /// A gateway for `hub` (built with `tools_may_change`), whose tools now are its own.
    pub fn new(hub: Hub) -> Arc<Self> {
        Arc::new(Self {
            own: hub.tool_registry(),
            hub,
            state: Mutex::new(State::default()),
            stop: CancellationToken::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connects `upstream`, learns its tools and offers them; then follows its changes
    /// until it is removed or the gateway stops.
    pub async fn add(self: &Arc<Self>, upstream: Upstream) -> Result<(), mcp_client::Error> {
        self.add_unless(upstream, &CancellationToken::new()).await
    }

    /// [`Gateway::add`], unless `cancelled` fires first: then the upstream is not offered.
    async fn add_unless(
        self: &Arc<Self>,
        upstream: Upstream,
        cancelled: &CancellationToken,
    ) -> Result<(), mcp_client::Error> {
        let name = upstream.name.clone();
        let link = Link::connect(upstream).await?;
        let tools = link.list_tools().await?;
        let old = {
            let mut state = self.lock();
            // Checked under the lock that `apply` and `remove` cancel under.
            if cancelled.is_cancelled() {
                None
            } else {
                tracing::info!(upstream = %name, tools = tools.len(), "upstream connected");
                Some(state.links.insert(name.clone(), (Arc::clone(&link), tools)))
            }
        };
        let Some(old) = old else {
            link.close().await;
            return Ok(());
        };
        if let Some((old, _)) = old {
            old.close().await;
        }
        self.publish();
        tokio::spawn(Arc::clone(self).follow(link));
        Ok(())
    }

    /// Connects `upstream` as [`Gateway::add`] does, on a task of its own, trying again
    /// with backoff (up to a minute apart) until it is connected or the gateway stops: a
    /// server starts whether or not its upstreams are there yet. An upstream configured
    /// anew, or removed, before it connected is given up.
    pub fn keep(self: &Arc<Self>, upstream: Upstream) {
        let token = self.stop.child_token();
        let older = self
            .lock()
            .connecting
            .insert(upstream.name.clone(), (upstream.clone(), token.clone()));
        if let Some((_, older)) = older {
            older.cancel();
        }
        tokio::spawn(Arc::clone(self).keeping(upstream, token));
    }

    async fn keeping(self: Arc<Self>, upstream: Upstream, token: CancellationToken) {
        let name = upstream.name.clone();
        let mut delay = std::time::Duration::from_millis(500);
        loop {
            let attempt = tokio::select! {
                () = token.cancelled() => break,
                attempt = self.add_unless(upstream.clone(), &token) => attempt,
            };
            match attempt {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(upstream = %name, error = %e, retry_s = delay.as_secs_f64(), "cannot connect the upstream; trying again");
                }
            }
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(std::time::Duration::from_secs(60));
        }
        let mut state = self.lock();
        if state
            .connecting
            .get(&name)
            .is_some_and(|(_, current)| current == &token)
        {
            state.connecting.remove(&name);
        }
    }

    /// The upstreams being connected, by name.
    pub fn connecting(&self) -> Vec<String> {
        self.lock().connecting.keys().cloned().collect()
    }

    /// Makes the upstreams those of `wanted`: the ones no longer there are stopped, new
    /// and changed ones (re)connected, unchanged ones left running. What a reload of the
    /// configuration does.
    pub async fn apply(self: &Arc<Self>, wanted: Vec<Upstream>) {
        let (current, connecting) = {
            let state = self.lock();
            let current: Vec<(String, Upstream)> = state
                .links
                .iter()
                .map(|(name, (link, _))| (name.clone(), link.config.clone()))
                .collect();
            let connecting: Vec<(String, Upstream)> = state
                .connecting
                .iter()
                .map(|(name, (config, _))| (name.clone(), config.clone()))
                .collect();
            (current, connecting)
        };
        for (name, _) in current.iter().chain(&connecting) {
            if !wanted.iter().any(|u| &u.name == name) {
                self.remove(name).await;
            }
        }
        for upstream in wanted {
            let same =
                |(name, config): &(String, Upstream)| *name == upstream.name && *config == upstream;
            // Connected as configured, or being connected so: left alone.
            let same = current.iter().any(same) || connecting.iter().any(same);
            if !same {
                tracing::info!(upstream = %upstream.name, "upstream added or changed");
                self.keep(upstream);
            }
        }
    }

    /// Stops offering upstream `name` and stops it (or stops connecting it).
    pub async fn remove(&self, name: &str) -> bool {
        let (removed, connecting) = {
            let mut state = self.lock();
            (state.links.remove(name), state.connecting.remove(name))
        };
        if let Some((_, token)) = &connecting {
            token.cancel();
        }
        let Some((link, _)) = removed else {
            return connecting.is_some();
        };
        self.publish();
        link.close().await;
        tracing::info!(upstream = %name, "upstream removed");
        true
    }

    /// The upstreams, by name.
    pub fn links(&self) -> Vec<Arc<Link>> {
        self.lock()
            .links
            .values()
            .map(|(link, _)| Arc::clone(link))
            .collect()
    }

    /// Stops every upstream, all at once.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let links = std::mem::take(&mut self.lock().links);
        let closing = links
            .into_values()
            .map(|(link, _)| async move { link.close().await });
        futures_util::future::join_all(closing).await;
    }

    /// Lists the upstream's tools again whenever it says they changed or it came back
    /// after a restart, until it is replaced or removed.
    async fn follow(self: Arc<Self>, link: Arc<Link>) {
        let mut notifications = link.client().notifications();
        let mut status = link.client().status();
        loop {
            let relist = tokio::select! {
                () = self.stop.cancelled() => return,
                notification = notifications.recv() => match notification {
                    Ok(n) => n.method == methods::TOOLS_LIST_CHANGED,
                    // Missed some: list again to be sure.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                changed = status.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = status.borrow_and_update().clone();
                    match now {
                        mcp_client::Status::Connected => true,
                        mcp_client::Status::Closed(_) => return,
                        mcp_client::Status::Reconnecting { .. } => false,
                    }
                }
            };
            if !self.is_current(&link) {
                return;
            }
            if !relist {
                continue;
            }
            match link.list_tools().await {
                Ok(tools) => {
                    let changed = {
                        let mut state = self.lock();
                        match state.links.get_mut(link.name()) {
                            Some((current, listed)) if Arc::ptr_eq(current, &link) => {
                                let changed = *listed != tools;
                                *listed = tools;
                                changed
                            }
                            _ => return,
                        }
                    };
                    if changed {
                        tracing::info!(upstream = %link.name(), "the upstream's tools changed");
                        self.publish();
                    }
                }
                Err(e) => {
                    tracing::warn!(upstream = %link.name(), error = %e, "cannot list the upstream's tools");
                }
            }
        }
    }

    fn is_current(&self, link: &Arc<Link>) -> bool {
        self.lock()
            .links
            .get(link.name())
            .is_some_and(|(current, _)| Arc::ptr_eq(current, link))
    }

    /// The hub's tools: its own, then every upstream's in name order.
    pub fn registry(&self) -> ToolRegistry {
        let mut registry = self.own.clone();
        let state = self.lock();
        for (link, tools) in state.links.values() {
            let mut namer = Namer::new(link.name());
            for tool in tools {
                let mut descriptor = tool.clone();
                descriptor.name = namer.name(&tool.name);
                let forward = Forward {
                    link: Arc::clone(link),
                    tool: tool.name.clone(),
                };
                if let Err(e) = registry.register_dynamic(descriptor, Arc::new(forward)) {
                    tracing::warn!(upstream = %link.name(), tool = %tool.name, error = %e, "an upstream tool is not offered");
                }
            }
        }
        registry
    }

    /// Offers the tools as they are now.
    fn publish(&self) {
        self.hub.set_tools(self.registry());
    }
}

/// An upstream tool, as offered here.
struct Forward {
    link: Arc<Link>,
    /// Its name upstream.
    tool: String,
}

impl DynamicTool for Forward {
    fn call(&self, arguments: Map<String, Value>, ctx: ToolContext) -> BoxFuture<CallToolResult> {
        let link = Arc::clone(&self.link);
        let tool = self.tool.clone();
        Box::pin(async move { link.call(&tool, arguments, ctx).await })
    }
}
