//! Who a session belongs to, and what its token lets it do.
//!
//! A static bearer token (or no authentication) gives an unrestricted principal: every tool,
//! and the admin endpoints only when the server names it an admin. A JWT access token gives a
//! scoped principal: what its `scope` claim grants, and nothing else.

use std::fmt;
use std::sync::Arc;

use crate::store::ANONYMOUS;

/// The scope that lets a token call every tool.
pub const SCOPE_TOOLS: &str = "mcp:tools";
/// The prefix of the scope that lets a token call one tool: `mcp:tools:<name>`.
pub const SCOPE_TOOL_PREFIX: &str = "mcp:tools:";
/// The scope that opens the admin endpoints.
pub const SCOPE_ADMIN: &str = "mcp:admin";

/// An authenticated caller: the name sessions and agents belong to, and its scopes. Two
/// principals are equal when name and scopes are: when their tokens expire does not count.
#[derive(Clone)]
pub struct Principal {
    name: Arc<str>,
    /// `None`: unrestricted (a static token, or no authentication).
    scopes: Option<Arc<[String]>>,
    /// When the credential that names it stops being accepted (a JWT's `exp`, with the
    /// leeway): a connection authenticated with it ends then.
    expires: Option<std::time::SystemTime>,
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.scopes == other.scopes
    }
}

impl Eq for Principal {}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scopes {
            None => write!(f, "{}", self.name),
            Some(scopes) => write!(f, "{} [{}]", self.name, scopes.join(" ")),
        }
    }
}

impl Default for Principal {
    fn default() -> Self {
        Self::anonymous()
    }
}

impl Principal {
    /// The caller when no authentication is configured.
    pub fn anonymous() -> Self {
        Self::unrestricted(ANONYMOUS)
    }

    /// A caller with no scope restrictions (a static token).
    pub fn unrestricted(name: &str) -> Self {
        Self {
            name: name.into(),
            scopes: None,
            expires: None,
        }
    }

    /// A caller limited to `scopes` (a JWT access token's). Kept sorted and without
    /// repeats, so that two tokens granting the same scopes name the same principal.
    pub fn scoped(name: &str, mut scopes: Vec<String>) -> Self {
        scopes.sort_unstable();
        scopes.dedup();
        Self {
            name: name.into(),
            scopes: Some(scopes.into()),
            expires: None,
        }
    }

    /// The same caller, whose credential stops being accepted at `at`.
    pub fn expiring(mut self, at: std::time::SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// When the credential that names this caller stops being accepted, if it does.
    pub fn expires_at(&self) -> Option<std::time::SystemTime> {
        self.expires
    }

    /// The name sessions and agents belong to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared: a key for per-principal tables that costs no allocation.
    pub(crate) fn key(&self) -> &Arc<str> {
        &self.name
    }

    /// The scopes, when restricted.
    pub fn scopes(&self) -> Option<&[String]> {
        self.scopes.as_deref()
    }

    /// Whether the caller may list and call the tool `tool`: unrestricted, or granted
    /// `mcp:tools` or `mcp:tools:<tool>`.
    pub fn may_call(&self, tool: &str) -> bool {
        match &self.scopes {
            None => true,
            Some(scopes) => scopes.iter().any(|s| {
                s == SCOPE_TOOLS || s.strip_prefix(SCOPE_TOOL_PREFIX).is_some_and(|t| t == tool)
            }),
        }
    }

    /// Whether the token grants `mcp:admin`.
    pub fn has_admin_scope(&self) -> bool {
        self.scopes
            .as_deref()
            .is_some_and(|scopes| scopes.iter().any(|s| s == SCOPE_ADMIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_grant_tools_one_by_one_or_all_and_admin_only_when_named() {
        let static_token = Principal::unrestricted("alice");
        assert!(static_token.may_call("add"));
        assert!(!static_token.has_admin_scope());
        let one = Principal::scoped("bob", vec!["mcp:tools:add".to_owned()]);
        assert!(one.may_call("add"));
        assert!(!one.may_call("add2"));
        assert!(!one.may_call("divide"));
        let all = Principal::scoped("carol", vec!["openid".into(), "mcp:tools".into()]);
        assert!(all.may_call("divide"));
        assert!(!all.has_admin_scope());
        let none = Principal::scoped("dave", vec![]);
        assert!(!none.may_call("add"));
        let admin = Principal::scoped("erin", vec!["mcp:admin".into()]);
        assert!(admin.has_admin_scope());
        assert!(!admin.may_call("add"));
        assert_eq!(format!("{one:?}"), "bob [mcp:tools:add]");
    }

    #[test]
    fn the_same_scopes_in_another_order_are_the_same_principal() {
        let a = Principal::scoped("bob", vec!["mcp:tools".into(), "openid".into()]);
        let b = Principal::scoped(
            "bob",
            vec!["openid".into(), "mcp:tools".into(), "openid".into()],
        );
        assert_eq!(a, b);
        assert_ne!(a, Principal::scoped("bob", vec!["mcp:tools".into()]));
        // When the token expires is not who it is.
        assert_eq!(a, b.expiring(std::time::UNIX_EPOCH));
    }
}
