//! How an upstream's tools are named here: `NAME.tool`.
//!
//! MCP tool names are 1 to 128 characters of `A-Z a-z 0-9 _ - .`; an upstream may use
//! others (spaces, slashes, non-ASCII letters). Each character outside the set becomes `_`,
//! the name is cut to fit after the prefix, and a name that then equals one already given
//! (two upstream tools that differ only in such characters) gets `_2`, `_3`... So every
//! upstream tool has exactly one name here, the same on every listing of the same list, and
//! the gateway keeps the upstream's own name to call it by.

use std::collections::HashSet;

/// The longest tool name MCP allows.
pub const MAX_TOOL_NAME: usize = 128;

/// Gives the tools of one upstream their names here, in the upstream's order.
pub struct Namer<'a> {
    upstream: &'a str,
    given: HashSet<String>,
}

impl<'a> Namer<'a> {
    /// Names for the tools of upstream `upstream` (a name [`crate::config`] accepted).
    pub fn new(upstream: &'a str) -> Self {
        Self {
            upstream,
            given: HashSet::new(),
        }
    }

    /// The name here of the upstream's tool `tool`: `NAME.tool`, made safe and unique.
    pub fn name(&mut self, tool: &str) -> String {
        let safe: String = tool
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = if safe.is_empty() {
            "_".to_owned()
        } else {
            safe
        };
        let room = MAX_TOOL_NAME - self.upstream.len() - 1;
        let base = format!("{}.{}", self.upstream, cut(&safe, room));
        let mut name = base.clone();
        let mut n = 1;
        while self.given.contains(&name) {
            n += 1;
            let suffix = format!("_{n}");
            name = format!(
                "{}.{}{suffix}",
                self.upstream,
                cut(&safe, room - suffix.len())
            );
        }
        self.given.insert(name.clone());
        name
    }
}

/// The first `max` bytes of an ASCII string.
fn cut(text: &str, max: usize) -> &str {
    &text[..text.len().min(max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_safe_and_unique() {
        let mut namer = Namer::new("up");
        assert_eq!(namer.name("add"), "up.add");
        assert_eq!(namer.name("get-weather.v2"), "up.get-weather.v2");
        assert_eq!(namer.name("read file"), "up.read_file");
        // Differs from the last only in a character made safe.
        assert_eq!(namer.name("read/file"), "up.read_file_2");
        assert_eq!(namer.name("read:file"), "up.read_file_3");
        assert_eq!(namer.name("résumé"), "up.r_sum_");
        assert_eq!(namer.name(""), "up._");
    }

    #[test]
    fn long_names_are_cut_to_fit_and_stay_unique() {
        let upstream = "u".repeat(32);
        let mut namer = Namer::new(&upstream);
        let long = "t".repeat(200);
        let first = namer.name(&long);
        let second = namer.name(&format!("{long}x"));
        assert_eq!(first.len(), MAX_TOOL_NAME);
        assert_eq!(second.len(), MAX_TOOL_NAME);
        assert!(second.ends_with("_2"), "{second}");
        assert_ne!(first, second);
    }
}
