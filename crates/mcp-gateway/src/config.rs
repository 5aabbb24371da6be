//! What the gateway serves: its upstreams, from `--upstream` flags or a TOML file.
//!
//! A flag is `NAME=COMMAND ARGS...` for a stdio server (the command line split as a shell
//! would, quotes and all, but never run by one) or `NAME=http://...`/`NAME=https://...` for a
//! remote Streamable HTTP server. The file says the same with more room:
//!
//! ```toml
//! [[upstream]]
//! name = "everything"
//! command = ["npx", "-y", "@modelcontextprotocol/server-everything"]
//! env = { LOG_LEVEL = "info" }
//! cwd = "/srv/everything"
//! start = "boot"      # or "lazy": started at its first call, stopped when idle
//! pool = 4            # a stateless server: up to 4 processes, one call each
//!
//! [[upstream]]
//! name = "remote"
//! url = "https://tools.example.com/mcp"
//! token_file = "/etc/mcp/remote.token"
//! ```

use std::path::PathBuf;
use std::time::Duration;

use mcp_client::stdio::Command;
use serde::Deserialize;

/// The longest upstream name: it prefixes every tool name, which MCP limits to 128.
pub const MAX_NAME: usize = 32;

/// The most processes one stateless upstream may run.
pub const MAX_POOL: usize = 64;

/// How long a lazily started upstream stays up without a call, by default.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(300);

/// One upstream server.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Its name: the prefix of its tools (`NAME.tool`), and what its scopes and log lines
    /// say. Letters, digits, `_` and `-`, at most [`MAX_NAME`].
    pub name: String,
    /// How to reach it.
    pub target: Target,
    /// When its processes start.
    pub start: Start,
    /// A stdio server that keeps no state between calls may run in up to this many
    /// processes, each serving one call at a time (so that what it asks its client is
    /// known to belong to that call); 1 (the default): one process serves every call.
    pub pool: usize,
    /// How long a lazily started upstream stays up without a call.
    pub idle: Duration,
}

/// How an upstream is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A program spoken to over its standard input and output.
    Stdio(Command),
    /// A remote server over Streamable HTTP (or a WebSocket, `ws://`/`wss://`).
    Remote {
        /// Its MCP endpoint.
        url: String,
        /// A file holding the bearer token to send, read when the upstream is connected (at
        /// start, or when its entry changes); its reconnections reuse that token.
        token_file: Option<PathBuf>,
    },
}

/// When an upstream's processes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// With the server, and kept up (restarted when they exit).
    #[default]
    Boot,
    /// Its tools are learnt at start (the process started, listed and stopped); a process
    /// starts again at the first call, and stops after [`Upstream::idle`] without one.
    Lazy,
}

/// A configuration that cannot be used, and why.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// The flag is not `NAME=COMMAND...` or `NAME=URL`.
    #[error("--upstream `{0}`: expected NAME=COMMAND [ARGS...] or NAME=https://HOST/PATH")]
    Flag(String),
    /// The name has other characters than letters, digits, `_` and `-`, or is too long.
    #[error(
        "upstream name `{0}`: use 1 to {MAX_NAME} letters, digits, `_` or `-` (it prefixes the upstream's tools: NAME.tool)"
    )]
    Name(String),
    /// Two upstreams have the same name.
    #[error("upstream `{0}` is configured twice")]
    Duplicate(String),
    /// The command line could not be split.
    #[error("upstream `{name}`: cannot split the command line: {why}")]
    CommandLine {
        /// The upstream.
        name: String,
        /// Why.
        why: String,
    },
    /// A file entry has neither or both of `command` and `url`, or a bad field.
    #[error("upstream `{name}`: {why}")]
    Entry {
        /// The upstream.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("the upstreams file: {0}")]
    File(String),
}

impl Upstream {
    /// Parses one `--upstream` flag.
    pub fn from_flag(flag: &str) -> Result<Self, ConfigError> {
        let (name, rest) = flag
            .split_once('=')
            .ok_or_else(|| ConfigError::Flag(flag.to_owned()))?;
        let name = checked_name(name)?;
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(ConfigError::Flag(flag.to_owned()));
        }
        let target = if is_url(rest) {
            Target::Remote {
                url: rest.to_owned(),
                token_file: None,
            }
        } else {
            let words = shell_words::split(rest).map_err(|e| ConfigError::CommandLine {
                name: name.clone(),
                why: e.to_string(),
            })?;
            let Some((program, args)) = words.split_first() else {
                return Err(ConfigError::Flag(flag.to_owned()));
            };
            Target::Stdio(Command::new(
                name.clone(),
                program.clone(),
                args.iter().cloned(),
            ))
        };
        Ok(Self {
            name,
            target,
            start: Start::Boot,
            pool: 1,
            idle: DEFAULT_IDLE,
        })
    }
}

/// The shape of the upstreams file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    upstream: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    token_file: Option<PathBuf>,
    #[serde(default)]
    start: Start,
    pool: Option<usize>,
    idle_seconds: Option<u64>,
}

/// Parses the upstreams file.
pub fn from_toml(text: &str) -> Result<Vec<Upstream>, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| ConfigError::File(e.to_string()))?;
    file.upstream.into_iter().map(entry).collect()
}

fn entry(entry: Entry) -> Result<Upstream, ConfigError> {
    let name = checked_name(&entry.name)?;
    let bad = |why: &str| ConfigError::Entry {
        name: name.clone(),
        why: why.to_owned(),
    };
    let target = match (entry.command, entry.url) {
        (Some(command), None) => {
            let Some((program, args)) = command.split_first() else {
                return Err(bad("`command` is empty"));
            };
            if entry.token_file.is_some() {
                return Err(bad("`token_file` is for a `url`"));
            }
            let mut command = Command::new(name.clone(), program.clone(), args.iter().cloned());
            command.env = entry.env.into_iter().collect();
            command.cwd = entry.cwd;
            Target::Stdio(command)
        }
        (None, Some(url)) => {
            if !is_url(&url) {
                return Err(bad(
                    "`url` must start with http://, https://, ws:// or wss://",
                ));
            }
            if !entry.env.is_empty() || entry.cwd.is_some() {
                return Err(bad("`env` and `cwd` are for a `command`"));
            }
            Target::Remote {
                url,
                token_file: entry.token_file,
            }
        }
        (Some(_), Some(_)) => return Err(bad("give either `command` or `url`, not both")),
        (None, None) => return Err(bad("give a `command` or a `url`")),
    };
    let pool = entry.pool.unwrap_or(1);
    if !(1..=MAX_POOL).contains(&pool) {
        return Err(bad(&format!("`pool` must be 1 to {MAX_POOL}")));
    }
    if pool > 1 && !matches!(target, Target::Stdio(_)) {
        return Err(bad("`pool` is for a `command`"));
    }
    let idle = match entry.idle_seconds {
        Some(0) => return Err(bad("`idle_seconds` must be at least 1")),
        Some(seconds) => Duration::from_secs(seconds),
        None => DEFAULT_IDLE,
    };
    Ok(Upstream {
        name,
        target,
        start: entry.start,
        pool,
        idle,
    })
}

/// Refuses what is configured but not served yet, rather than ignore it: lazy start and
/// pools of processes.
pub fn check_supported(upstream: &Upstream) -> Result<(), ConfigError> {
    let refuse = |why: &str| {
        Err(ConfigError::Entry {
            name: upstream.name.clone(),
            why: why.to_owned(),
        })
    };
    if upstream.start == Start::Lazy {
        return refuse("`start = \"lazy\"` is not supported yet: use \"boot\"");
    }
    if upstream.pool > 1 {
        return refuse("`pool` above 1 is not supported yet");
    }
    Ok(())
}

/// Checks that no two upstreams share a name.
pub fn check_unique(upstreams: &[Upstream]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for upstream in upstreams {
        if !seen.insert(upstream.name.as_str()) {
            return Err(ConfigError::Duplicate(upstream.name.clone()));
        }
    }
    Ok(())
}

fn checked_name(name: &str) -> Result<String, ConfigError> {
    let fine = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if fine {
        Ok(name.to_owned())
    } else {
        Err(ConfigError::Name(
            mcp_protocol::shorten(name, 40).into_owned(),
        ))
    }
}

fn is_url(text: &str) -> bool {
    ["http://", "https://", "ws://", "wss://"]
        .iter()
        .any(|scheme| text.starts_with(scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_names_a_command_line_or_a_url() {
        let stdio = Upstream::from_flag(
            r#"everything=npx -y "@modelcontextprotocol/server-everything" 'a b'"#,
        )
        .unwrap();
        assert_eq!(stdio.name, "everything");
        let Target::Stdio(command) = &stdio.target else {
            panic!("{stdio:?}")
        };
        assert_eq!(command.program, "npx");
        assert_eq!(
            command.args,
            ["-y", "@modelcontextprotocol/server-everything", "a b"]
        );
        assert_eq!(command.name, "everything");
        let remote = Upstream::from_flag("remote=https://tools.example.com/mcp").unwrap();
        assert_eq!(
            remote.target,
            Target::Remote {
                url: "https://tools.example.com/mcp".into(),
                token_file: None
            }
        );
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        for (flag, error) in [
            ("no-equals", ConfigError::Flag("no-equals".into())),
            ("x=", ConfigError::Flag("x=".into())),
            ("a.b=cmd", ConfigError::Name("a.b".into())),
            ("=cmd", ConfigError::Name(String::new())),
            (
                "x=cmd 'unclosed",
                ConfigError::CommandLine {
                    name: "x".into(),
                    why: "missing closing quote".into(),
                },
            ),
        ] {
            assert_eq!(Upstream::from_flag(flag), Err(error), "{flag}");
        }
        let long = format!("{}=cmd", "n".repeat(MAX_NAME + 1));
        assert!(matches!(
            Upstream::from_flag(&long),
            Err(ConfigError::Name(_))
        ));
    }

    #[test]
    fn the_file_says_the_same_with_more_room() {
        let upstreams = from_toml(
            r#"
            [[upstream]]
            name = "everything"
            command = ["npx", "-y", "@modelcontextprotocol/server-everything"]
            env = { LOG_LEVEL = "info" }
            cwd = "/srv"
            start = "lazy"
            pool = 4
            idle_seconds = 60

            [[upstream]]
            name = "remote"
            url = "https://tools.example.com/mcp"
            token_file = "/etc/mcp/remote.token"
            "#,
        )
        .unwrap();
        assert_eq!(upstreams.len(), 2);
        let Target::Stdio(command) = &upstreams[0].target else {
            panic!()
        };
        assert_eq!(command.env, [("LOG_LEVEL".to_owned(), "info".to_owned())]);
        assert_eq!(command.cwd.as_deref(), Some(std::path::Path::new("/srv")));
        assert_eq!(upstreams[0].start, Start::Lazy);
        assert_eq!(upstreams[0].pool, 4);
        assert_eq!(upstreams[0].idle, Duration::from_secs(60));
        assert_eq!(upstreams[1].start, Start::Boot);
        assert_eq!(upstreams[1].pool, 1);
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let error = |text: &str| from_toml(text).unwrap_err().to_string();
        expect_test::expect![[r#"upstream `a`: give either `command` or `url`, not both"#]]
            .assert_eq(&error(
                "[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\nurl = \"https://h/mcp\"",
            ));
        expect_test::expect![[r#"upstream `a`: give a `command` or a `url`"#]]
            .assert_eq(&error("[[upstream]]\nname = \"a\""));
        expect_test::expect![[r#"upstream `a`: `pool` must be 1 to 64"#]].assert_eq(&error(
            "[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\npool = 0",
        ));
        expect_test::expect![[r#"upstream `a`: `pool` is for a `command`"#]].assert_eq(&error(
            "[[upstream]]\nname = \"a\"\nurl = \"https://h/mcp\"\npool = 2",
        ));
        expect_test::expect![[
            r#"upstream `a`: `url` must start with http://, https://, ws:// or wss://"#
        ]]
        .assert_eq(&error("[[upstream]]\nname = \"a\"\nurl = \"ftp://h\""));
        assert!(
            error("[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\nshell = true")
                .contains("unknown field `shell`")
        );
        let twice = [
            Upstream::from_flag("a=x").unwrap(),
            Upstream::from_flag("a=y").unwrap(),
        ];
        assert_eq!(
            check_unique(&twice),
            Err(ConfigError::Duplicate("a".into()))
        );
    }
}
