//! Confinement of file paths to the server's data root.

use std::path::{Component, Path, PathBuf};

use crate::ToolError;

/// The directory file tools may read and write in; nothing outside it is reachable, through
/// `..`, an absolute path, or a symbolic link.
#[derive(Debug, Clone)]
pub struct DataRoot {
    root: PathBuf,
}

impl DataRoot {
    /// A data root at `root`, which must exist.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: root.canonicalize()?,
        })
    }

    /// The root, canonical.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Resolves a path given by a client: relative to the root (or absolute and inside it),
    /// without `..`. With `create`, a missing directory is created. The result is canonical
    /// and inside the root, whatever symbolic links lie on the way.
    pub fn resolve(
        &self,
        field: &str,
        requested: &str,
        create: bool,
    ) -> Result<PathBuf, ToolError> {
        let refuse = |why: &str| {
            ToolError::InvalidArguments(format!(
                "`{field}` ({requested:?}) {why}; paths are relative to the server's data root"
            ))
        };
        if requested.is_empty() {
            return Err(refuse("is empty"));
        }
        let given = Path::new(requested);
        if given
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(refuse("contains `..`"));
        }
        let joined = if given.is_absolute() {
            if !given.starts_with(&self.root) {
                return Err(refuse("is outside the data root"));
            }
            given.to_path_buf()
        } else {
            self.root.join(given)
        };
        // The deepest part that exists must already be inside the root, so that creating the
        // rest cannot follow a link out of it.
        let mut existing = joined.as_path();
        while !existing.exists() {
            existing = existing.parent().ok_or_else(|| refuse("does not exist"))?;
        }
        let canonical = existing
            .canonicalize()
            .map_err(|e| ToolError::Failed(format!("`{field}` ({requested:?}): {e}")))?;
        if !canonical.starts_with(&self.root) {
            return Err(refuse(
                "leads outside the data root through a symbolic link",
            ));
        }
        if existing != joined {
            if !create {
                return Err(ToolError::Failed(format!(
                    "`{field}` ({requested:?}) does not exist in the data root"
                )));
            }
            std::fs::create_dir_all(&joined).map_err(|e| {
                ToolError::Failed(format!("cannot create `{field}` ({requested:?}): {e}"))
            })?;
        }
        let resolved = joined
            .canonicalize()
            .map_err(|e| ToolError::Failed(format!("`{field}` ({requested:?}): {e}")))?;
        if !resolved.starts_with(&self.root) {
            return Err(refuse(
                "leads outside the data root through a symbolic link",
            ));
        }
        Ok(resolved)
    }
}
