//! The catalog: what a hub offers, its tools and the providers of resources, prompts and
//! completions that the binary registered.

use std::sync::{Arc, PoisonError, RwLock};

use mcp_protocol::{
    CompleteParams, CompleteResult, Completion, ErrorObject, GetPromptParams, Prompt, Resource,
    ResourceContents, ResourceTemplate,
};
use mcp_tools::{Provider, ToolRegistry};

/// The tools and providers of one hub.
pub(crate) struct Catalog {
    /// Replaced whole when the tools change ([`Catalog::set_tools`]): a call holds the
    /// registry it started with.
    tools: RwLock<Arc<ToolRegistry>>,
    providers: Vec<Arc<dyn Provider>>,
    prompts: bool,
    completions: bool,
    tools_may_change: bool,
}

impl Catalog {
    pub(crate) fn new(
        tools: ToolRegistry,
        providers: Vec<Arc<dyn Provider>>,
        tools_may_change: bool,
    ) -> Self {
        let prompts = providers.iter().any(|p| p.offers_prompts());
        let completions = providers.iter().any(|p| p.offers_completions());
        Self {
            tools: RwLock::new(Arc::new(tools)),
            providers,
            prompts,
            completions,
            tools_may_change,
        }
    }

    /// Whether the tools may change while the hub runs.
    pub(crate) fn tools_may_change(&self) -> bool {
        self.tools_may_change
    }

    /// The tools, as they are now.
    pub(crate) fn tools(&self) -> Arc<ToolRegistry> {
        Arc::clone(&self.tools.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the tools.
    pub(crate) fn set_tools(&self, tools: ToolRegistry) {
        *self.tools.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tools);
    }

    /// Whether a provider offers prompts: the capability and the methods exist only then.
    pub(crate) fn offers_prompts(&self) -> bool {
        self.prompts
    }

    /// Whether a provider offers completions.
    pub(crate) fn offers_completions(&self) -> bool {
        self.completions
    }

    pub(crate) fn resources(&self) -> impl Iterator<Item = Resource> + '_ {
        self.providers.iter().flat_map(|p| p.resources())
    }

    pub(crate) fn templates(&self) -> impl Iterator<Item = ResourceTemplate> + '_ {
        self.providers.iter().flat_map(|p| p.resource_templates())
    }

    /// A provider's resource, by the first provider that has it.
    pub(crate) fn read(&self, uri: &str) -> Option<ResourceContents> {
        self.providers.iter().find_map(|p| p.read(uri))
    }

    pub(crate) fn is_resource(&self, uri: &str) -> bool {
        self.providers.iter().any(|p| p.is_resource(uri))
    }

    pub(crate) fn prompts(&self) -> Vec<Prompt> {
        self.providers.iter().flat_map(|p| p.prompts()).collect()
    }

    /// Renders a prompt, which may ask `client` first; -32602 for a prompt no provider has.
    pub(crate) fn render_prompt(
        &self,
        params: GetPromptParams,
        client: &mcp_tools::Client,
    ) -> Result<mcp_tools::PromptFuture, ErrorObject> {
        let name = params.name.clone();
        self.providers
            .iter()
            .find_map(|p| p.render_prompt(params.clone(), client.clone()))
            .ok_or_else(|| {
                ErrorObject::invalid_params(format!(
                    "unknown prompt `{}`: see prompts/list",
                    mcp_protocol::shorten(&name, 80)
                ))
            })
    }

    pub(crate) fn complete(&self, params: &CompleteParams) -> CompleteResult {
        self.providers
            .iter()
            .find_map(|p| p.complete(params))
            .unwrap_or(CompleteResult {
                completion: Completion {
                    values: Vec::new(),
                    total: Some(0),
                    has_more: Some(false),
                },
            })
    }
}
