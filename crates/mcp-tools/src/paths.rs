//! Confinement of file paths to the server's data root, and of each principal to its own
//! part of it.
//!
//! Paths are checked and used in one step: every file operation goes through a directory
//! handle (`cap_std::fs::Dir`) opened under the root, which resolves what follows inside it
//! and refuses anything that leads out (`..`, an absolute path, a symbolic link), at the
//! moment of use, so a link planted between a check and a use cannot redirect it. Files are
//! written to a new temporary name in their directory and renamed over the target: a
//! symbolic link already there is replaced, never written through.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::Dir;

use crate::ToolError;

/// The directory file tools may read and write in; nothing outside it is reachable, through
/// `..`, an absolute path, or a symbolic link. With authentication, each principal has a
/// directory of its own under it ([`DataRoot::per_principal`]).
#[derive(Debug, Clone)]
pub struct DataRoot {
    root: PathBuf,
    dir: Arc<Dir>,
    per_principal: bool,
}

/// A directory under the data root, opened: what a file tool reads from or writes to.
#[derive(Debug)]
pub struct Folder {
    /// The handle every operation goes through.
    pub dir: Dir,
    /// Its path relative to the data root, for messages.
    pub shown: PathBuf,
    /// Its path relative to its principal's area, normalized (no `.`), to compare two.
    key: PathBuf,
}

impl Folder {
    /// Whether `self` and `other` are the same directory.
    pub fn is(&self, other: &Folder) -> bool {
        use cap_std::fs::MetadataExt as _;
        match (self.dir.dir_metadata(), other.dir.dir_metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => self.key == other.key,
        }
    }
}

impl DataRoot {
    /// A data root at `root`, which must exist; every principal shares it, as the one local
    /// principal does without authentication.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        let root = root.canonicalize()?;
        let dir = Dir::open_ambient_dir(&root, cap_std::ambient_authority())?;
        Ok(Self {
            root,
            dir: Arc::new(dir),
            per_principal: false,
        })
    }

    /// Gives each principal a directory of its own under the root (`<root>/<principal>`, the
    /// name made safe), where its paths are resolved: no principal reaches another's files.
    pub fn per_principal(mut self, on: bool) -> Self {
        self.per_principal = on;
        self
    }

    /// The root, canonical.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Opens a directory given by a client for `principal`: relative to its area (or
    /// absolute and inside it), without `..`. With `create`, a missing directory is created.
    pub fn open_dir(
        &self,
        principal: &str,
        field: &str,
        requested: &str,
        create: bool,
    ) -> Result<Folder, ToolError> {
        let refuse = |why: &str| {
            ToolError::InvalidArguments(format!(
                "`{field}` ({requested:?}) {why}; paths are relative to your directory in the server's data root"
            ))
        };
        if requested.is_empty() {
            return Err(refuse("is empty"));
        }
        let (area, area_path) = self.area(principal)?;
        let given = Path::new(requested);
        if given
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(refuse("contains `..`"));
        }
        let relative = if given.is_absolute() {
            given
                .strip_prefix(self.root.join(&area_path))
                .map_err(|_| refuse("is outside the data root"))?
        } else {
            given
        };
        let key: PathBuf = relative
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        let target = if key.as_os_str().is_empty() {
            Path::new(".")
        } else {
            key.as_path()
        };
        let failed = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                refuse("leads outside the data root through a symbolic link")
            }
            std::io::ErrorKind::NotFound => ToolError::Failed(format!(
                "`{field}` ({requested:?}) does not exist in the data root"
            )),
            _ => ToolError::Failed(format!("`{field}` ({requested:?}): {e}")),
        };
        // Created first when asked; whether what is there may be used is for the opening to
        // say (a link out of the root makes the creation fail as "exists", the opening as
        // "outside").
        let created = match create {
            true => area.create_dir_all(target),
            false => Ok(()),
        };
        let dir = area.open_dir(target).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotADirectory || area.is_file(target) {
                refuse("is not a directory")
            } else {
                match (e.kind(), created) {
                    // Not there because it could not be made: say why.
                    (std::io::ErrorKind::NotFound, Err(why)) => failed(why),
                    _ => failed(e),
                }
            }
        })?;
        Ok(Folder {
            dir,
            shown: area_path.join(&key),
            key,
        })
    }

    /// The directory `principal` works in, and its path relative to the root.
    fn area(&self, principal: &str) -> Result<(Dir, PathBuf), ToolError> {
        let failed = |e: std::io::Error| {
            ToolError::Failed(format!("cannot open the data root's directory: {e}"))
        };
        if !self.per_principal {
            return Ok((self.dir.try_clone().map_err(failed)?, PathBuf::new()));
        }
        let name = area_name(principal);
        self.dir.create_dir_all(&name).map_err(failed)?;
        let dir = self.dir.open_dir(&name).map_err(failed)?;
        Ok((dir, PathBuf::from(name)))
    }
}

/// A principal's directory name: the name itself when it is plainly safe (letters, digits,
/// `-`, `_`, `.`, `@`, not starting with `.`, at most 64 bytes); otherwise its safe
/// characters with every other byte as `%XX`, cut at 64 bytes and followed by a digest of
/// the whole name, so that two names never share a directory.
pub(crate) fn area_name(principal: &str) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@');
    if !principal.is_empty()
        && principal.len() <= 64
        && !principal.starts_with('.')
        && principal.bytes().all(safe)
    {
        return principal.to_owned();
    }
    let mut name = String::from("~");
    for b in principal.bytes() {
        if name.len() >= 64 {
            break;
        }
        if safe(b) && b != b'.' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    // FNV-1a: stable across releases, unlike the standard library's hasher.
    let digest = principal.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{name}-{digest:016x}")
}

/// Writes `bytes` as `name` in `dir`: to a new temporary file there first, then renamed over
/// `name`, so that a reader never sees half a file and a symbolic link named `name` is
/// replaced rather than written through.
pub(crate) fn write_atomically(
    dir: &Dir,
    name: &std::ffi::OsStr,
    bytes: &[u8],
) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let partial = format!(
        ".{}.{}-{}.partial",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut options = cap_std::fs::OpenOptions::new();
    // `create_new` never follows a link: a name planted in the meantime fails the write.
    options.write(true).create_new(true);
    let written = dir.open_with(&partial, &options).and_then(|mut file| {
        file.write_all(bytes)?;
        file.flush()
    });
    let renamed = written.and_then(|()| dir.rename(&partial, dir, name));
    if renamed.is_err() {
        let _ = dir.remove_file(&partial);
    }
    renamed
}

#[cfg(test)]
mod tests;
