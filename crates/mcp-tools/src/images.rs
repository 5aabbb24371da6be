//! The `process_images` tool: thumbnails for every image in a directory, on all cores, with
//! progress, cancellation between images, and every failure written to `errors.json`.

use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use mcp_protocol::LoggingLevel;

use crate::context::rate_message;
use crate::paths::write_atomically;
use crate::{DataRoot, ProgressUpdate, Tool, ToolContext, ToolError};

/// The name of the failure report written into the output directory.
pub const ERRORS_FILE: &str = "errors.json";
/// The largest image (in either dimension) the tool decodes; larger ones are failures, which
/// protects the server from decompression bombs.
pub(crate) const MAX_IMAGE_DIMENSION: u32 = 16_384;
/// The most memory one decode may allocate.
pub(crate) const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// The arguments of `process_images`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagesParams {
    /// The directory of images, relative to the server's data root.
    pub input_dir: String,
    /// Where to write the thumbnails and `errors.json`, relative to the data root; created
    /// when missing.
    pub output_dir: String,
    /// The thumbnails' largest side, in pixels (default 128, at most 4096); the aspect ratio
    /// is kept.
    #[serde(default = "default_max_size")]
    pub max_size: u32,
}

fn default_max_size() -> u32 {
    128
}

/// One file that could not be turned into a thumbnail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileError {
    /// The file's name in the input directory.
    pub file: String,
    /// Why it failed.
    pub error: String,
}

/// The result of `process_images`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagesSummary {
    /// The job's label, as used in progress messages.
    pub job: String,
    /// Files found in the input directory.
    pub total: u64,
    /// Files handled (thumbnail written or failed); less than `total` when stopped.
    pub processed: u64,
    /// Thumbnails written.
    pub thumbnails: u64,
    /// Files that failed; each is listed in the errors file.
    pub failed: u64,
    /// Wall time, in milliseconds.
    pub duration_ms: u64,
    /// Files handled per second.
    pub items_per_second: f64,
    /// The output directory, relative to the data root.
    pub output_dir: String,
    /// The failure report, relative to the data root.
    pub errors_file: String,
}

/// Writes thumbnails with the `image` crate on a shared pool of worker threads.
pub struct ProcessImages {
    root: DataRoot,
    pool: Arc<rayon::ThreadPool>,
}

impl ProcessImages {
    /// The tool, confined to `root`, decoding on `pool`.
    pub fn new(root: DataRoot, pool: Arc<rayon::ThreadPool>) -> Self {
        Self { root, pool }
    }
}

impl Tool for ProcessImages {
    type Params = ImagesParams;
    type Output = ImagesSummary;

    /// A task when the client takes tasks: it may run long.
    fn task_support(&self) -> crate::TaskSupport {
        crate::TaskSupport::Optional
    }

    fn name(&self) -> &str {
        "process_images"
    }

    fn description(&self) -> &str {
        "Makes a thumbnail (largest side `max_size` px) of every image in `input_dir` and writes it to `output_dir` under the same name, using all cores. \
         Files that cannot be decoded are listed with the reason in `output_dir/errors.json`. Paths are relative to the server's data root. \
         Reports progress with rate and ETA; when cancelled, stops between images and keeps what was written."
    }

    async fn call(
        &self,
        p: ImagesParams,
        mut ctx: ToolContext,
    ) -> Result<ImagesSummary, ToolError> {
        if p.max_size == 0 || p.max_size > 4096 {
            return Err(ToolError::InvalidArguments(format!(
                "`max_size` is {}; it must be between 1 and 4096",
                p.max_size
            )));
        }
        let principal = &ctx.principal;
        let input = self
            .root
            .open_dir(principal, "input_dir", &p.input_dir, false)?;
        let output = self
            .root
            .open_dir(principal, "output_dir", &p.output_dir, true)?;
        if input.is(&output) {
            return Err(ToolError::InvalidArguments(
                "`output_dir` must differ from `input_dir`: thumbnails would overwrite the originals".to_owned(),
            ));
        }
        let label = format!("images {}", ctx.call_label);
        let Some(permit) = ctx.heavy_slot(&label).await else {
            return Err(ToolError::Cancelled);
        };
        let cancel = ctx.cancel.clone();
        let log = ctx.log.clone();
        let progress = Mutex::new(ctx.progress);
        let pool = Arc::clone(&self.pool);
        let max_size = p.max_size;
        let job = move || -> Result<(ImagesSummary, bool), ToolError> {
            let _permit = permit;
            let started = tokio::time::Instant::now();
            let files = list_files(&input.dir)?;
            let total = files.len() as u64;
            let report = |done: u64, force: bool| {
                // Workers skip the report when another one is reporting: it is throttled anyway.
                let guard = if force {
                    progress.lock().ok()
                } else {
                    progress.try_lock().ok()
                };
                if let Some(mut progress) = guard
                    && (force || progress.is_due())
                {
                    progress.report(ProgressUpdate {
                        progress: done as f64,
                        total: Some(total as f64),
                        message: Some(rate_message(&label, done, total, started.elapsed())),
                    });
                }
            };
            report(0, true);
            let done = AtomicU64::new(0);
            let results: Vec<Option<Result<(), FileError>>> = pool.install(|| {
                files
                    .par_iter()
                    .map(|file| {
                        if cancel.is_cancelled() {
                            return None;
                        }
                        let result = thumbnail(file, &input.dir, &output.dir, max_size);
                        if let Err(failure) = &result {
                            log.log(
                                LoggingLevel::Debug,
                                format!("{}: {}", failure.file, failure.error),
                            );
                        }
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        report(n, n == total);
                        Some(result)
                    })
                    .collect()
            });
            let mut errors: Vec<FileError> = results
                .iter()
                .flatten()
                .filter_map(|r| r.clone().err())
                .collect();
            errors.sort_by(|a, b| a.file.cmp(&b.file));
            let processed = results.iter().flatten().count() as u64;
            let cancelled = processed < total;
            write_errors(&output.dir, &errors)?;
            let elapsed = started.elapsed();
            let summary = ImagesSummary {
                job: label.clone(),
                total,
                processed,
                thumbnails: processed - errors.len() as u64,
                failed: errors.len() as u64,
                duration_ms: elapsed.as_millis() as u64,
                items_per_second: if elapsed.as_secs_f64() > 0.0 {
                    (processed as f64 / elapsed.as_secs_f64()).round()
                } else {
                    0.0
                },
                output_dir: output.shown.display().to_string(),
                errors_file: output.shown.join(ERRORS_FILE).display().to_string(),
            };
            Ok((summary, cancelled))
        };
        let (summary, cancelled) = tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| ToolError::Failed(format!("the image worker failed: {e}")))??;
        if cancelled {
            return Err(ToolError::Stopped(format!(
                "{} stopped after {} of {} files ({} thumbnails written, {} failed, listed in {})",
                summary.job,
                summary.processed,
                summary.total,
                summary.thumbnails,
                summary.failed,
                summary.errors_file
            )));
        }
        Ok(summary)
    }

    fn render(&self, s: &ImagesSummary) -> String {
        format!(
            "{}: {} of {} files in {:.3} s ({} files/s): {} thumbnails written to {}, {} failed (listed in {}).",
            s.job,
            s.processed,
            s.total,
            s.duration_ms as f64 / 1000.0,
            s.items_per_second,
            s.thumbnails,
            s.output_dir,
            s.failed,
            s.errors_file
        )
    }
}

/// The regular files of `dir`, by name. Subdirectories and links are skipped.
fn list_files(dir: &cap_std::fs::Dir) -> Result<Vec<OsString>, ToolError> {
    let entries = dir
        .entries()
        .map_err(|e| ToolError::Failed(format!("cannot read the input directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| ToolError::Failed(format!("cannot read the input directory: {e}")))?;
        // `file_type` does not follow symbolic links, so a link to a file is skipped.
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            files.push(entry.file_name());
        }
    }
    files.sort();
    Ok(files)
}

fn thumbnail(
    file: &OsStr,
    input: &cap_std::fs::Dir,
    output: &cap_std::fs::Dir,
    max_size: u32,
) -> Result<(), FileError> {
    let name = file.to_string_lossy().into_owned();
    let fail = |error: String| FileError {
        file: name.clone(),
        error,
    };
    // Opened through the input directory's handle: it cannot lead out of it.
    let source = input
        .open(file)
        .map_err(|e| fail(format!("cannot open: {e}")))?
        .into_std();
    let mut reader = image::ImageReader::new(std::io::BufReader::new(source))
        .with_guessed_format()
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_DIMENSION);
    limits.max_image_height = Some(MAX_IMAGE_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let format = reader.format().ok_or_else(|| {
        fail("not an image in a supported format (PNG, JPEG, GIF, BMP, WebP)".to_owned())
    })?;
    let image = reader
        .decode()
        .map_err(|e| fail(format!("cannot decode: {e}")))?;
    let thumb = image.thumbnail(max_size, max_size);
    // JPEG has no alpha channel; everything else keeps what it has.
    let thumb = if format == image::ImageFormat::Jpeg {
        image::DynamicImage::ImageRgb8(thumb.to_rgb8())
    } else {
        thumb
    };
    let encode = |format| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        thumb
            .write_to(&mut bytes, format)
            .map(|()| bytes.into_inner())
    };
    let bytes = encode(format)
        .or_else(|_| encode(image::ImageFormat::Png))
        .map_err(|e| fail(format!("cannot encode the thumbnail: {e}")))?;
    write_atomically(output, file, &bytes)
        .map_err(|e| fail(format!("cannot write the thumbnail: {e}")))
}

fn write_errors(output: &cap_std::fs::Dir, errors: &[FileError]) -> Result<(), ToolError> {
    let text = serde_json::to_string_pretty(errors)
        .map_err(|e| ToolError::Failed(format!("cannot encode the errors: {e}")))?;
    write_atomically(output, OsStr::new(ERRORS_FILE), text.as_bytes())
        .map_err(|e| ToolError::Failed(format!("cannot write {ERRORS_FILE}: {e}")))
}
