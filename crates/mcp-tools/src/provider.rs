//! Providers: what a server offers besides its tools (resources, prompts, completions),
//! registered by whoever builds the server.

use std::future::Future;
use std::pin::Pin;

use mcp_protocol::{
    CompleteParams, CompleteResult, ErrorObject, GetPromptParams, GetPromptResult, Prompt,
    Resource, ResourceContents, ResourceTemplate,
};

use crate::Client;

/// A prompt being rendered, which may ask the client first.
pub type PromptFuture =
    Pin<Box<dyn Future<Output = Result<GetPromptResult, ErrorObject>> + Send + 'static>>;

/// A source of resources, prompts and completions.
///
/// Every method has a default that offers nothing, so a provider implements only what it
/// has. The server declares the `prompts` and `completions` capabilities, and serves their
/// methods, only when a registered provider says it offers them.
pub trait Provider: Send + Sync + 'static {
    /// The resources it lists in `resources/list`.
    fn resources(&self) -> Vec<Resource> {
        Vec::new()
    }

    /// The resource templates it lists in `resources/templates/list`.
    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        Vec::new()
    }

    /// The contents of resource `uri`; `None` when it is not this provider's.
    fn read(&self, uri: &str) -> Option<ResourceContents> {
        let _ = uri;
        None
    }

    /// Whether a client may subscribe to `uri` (a resource of this provider's).
    fn is_resource(&self, uri: &str) -> bool {
        self.read(uri).is_some()
    }

    /// Whether it offers prompts (`prompts/list` and `prompts/get`).
    fn offers_prompts(&self) -> bool {
        false
    }

    /// The prompts it lists in `prompts/list`.
    fn prompts(&self) -> Vec<Prompt> {
        Vec::new()
    }

    /// Renders prompt `params.name`; `None` when it is not this provider's, an error (with
    /// the words the client sees) when its arguments do not fit.
    fn get_prompt(&self, params: &GetPromptParams) -> Option<Result<GetPromptResult, ErrorObject>> {
        let _ = params;
        None
    }

    /// Renders prompt `params.name`, asking `client` first if it needs to (an elicitation,
    /// say): in a 2025 session the client is asked and answers; a 2026-07-28 request gets an
    /// input-required round. `None` when it is not this provider's. By default, what
    /// [`Provider::get_prompt`] renders.
    fn render_prompt(&self, params: GetPromptParams, client: Client) -> Option<PromptFuture> {
        let _ = client;
        let rendered = self.get_prompt(&params)?;
        Some(Box::pin(std::future::ready(rendered)))
    }

    /// Whether it offers argument completion (`completion/complete`).
    fn offers_completions(&self) -> bool {
        false
    }

    /// Completes an argument; `None` when the reference is not this provider's.
    fn complete(&self, params: &CompleteParams) -> Option<CompleteResult> {
        let _ = params;
        None
    }
}
