//! Drawing a cited page (`POST /api/pdf-page`) in a worker process: manuel-local runs itself as
//! `manuel-local render-worker`, hands it the PDF and the highlight on stdin and reads the PNG
//! back from stdout. pdfium parses and draws in the worker only, so a PDF that makes it crash,
//! allocate without end or draw for minutes costs one worker and one request, never the server:
//!
//! - the worker caps its own data segment (`RLIMIT_DATA`) at `RENDER_MAX_MEMORY_MB` and its CPU
//!   time before it reads a byte, and writes no core dump;
//! - the server kills it after `RENDER_MAX_SECONDS` and reads at most a bounded PNG.
//!
//! Such a page answers 422 (the limit is named); the server's memory only ever holds the PDF,
//! which it holds anyway to send it, and one bounded PNG.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::Args;
use manuel_core::config::{ConfigError, Env};
use manuel_core::ports::{PageRenderer, RenderError, RenderedPage};
use manuel_manuals::pdfium::PdfiumRenderer;
use serde::{Deserialize, Serialize};

/// The largest PNG read back: a 4000 × 4000 page (the renderer's largest) of noise, compressed
/// by nothing, is 64 MB.
const MAX_PNG_BYTES: u64 = 80 << 20;
/// The longest first line of a worker's output.
const MAX_HEADER_BYTES: u64 = 4096;

/// `manuel-local render-worker`: what the server passes to a worker.
#[derive(Args, Debug, Clone)]
pub struct RenderWorkerConfig {
    #[arg(long)]
    pub pdfium_lib: PathBuf,
    /// 1-based.
    #[arg(long)]
    pub page: u32,
    #[arg(long)]
    pub scale: f32,
    /// The highlight's colour and opacity: `r,g,b,a`.
    #[arg(long)]
    pub rgba: String,
    /// Bytes of the PDF on stdin, followed by `highlight_bytes` of UTF-8 highlight text.
    #[arg(long)]
    pub pdf_bytes: u64,
    #[arg(long)]
    pub highlight_bytes: u64,
    #[arg(long)]
    pub max_memory_mb: u64,
    #[arg(long)]
    pub max_seconds: u64,
}

/// The first line of a worker's output; `Drawn` is followed by `png_bytes` of PNG.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Outcome {
    Drawn {
        width: u32,
        height: u32,
        page_count: u32,
        highlights: u32,
        png_bytes: u64,
    },
    NoSuchPage {
        page_count: u32,
    },
    Encrypted,
    Damaged,
    Unavailable {
        message: String,
    },
}

/// The worker process's main.
pub fn run_render_worker(config: &RenderWorkerConfig) -> ExitCode {
    let outcome = draw(config);
    let mut out = std::io::stdout().lock();
    let written = match outcome {
        Ok(page) => write_line(
            &mut out,
            &Outcome::Drawn {
                width: page.width,
                height: page.height,
                page_count: page.page_count,
                highlights: page.highlights,
                png_bytes: page.png.len() as u64,
            },
        )
        .and_then(|()| out.write_all(&page.png)),
        Err(error) => write_line(&mut out, &Outcome::from(error)),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn draw(config: &RenderWorkerConfig) -> Result<RenderedPage, RenderError> {
    let unavailable = |message: String| RenderError::Unavailable(message);
    limit_this_process(config.max_memory_mb << 20, config.max_seconds)
        .map_err(|error| unavailable(format!("cannot set resource limits: {error}")))?;
    let mut pdf = Vec::new();
    let mut highlight = Vec::new();
    let mut stdin = std::io::stdin().lock();
    (&mut stdin)
        .take(config.pdf_bytes)
        .read_to_end(&mut pdf)
        .and_then(|_| {
            (&mut stdin)
                .take(config.highlight_bytes)
                .read_to_end(&mut highlight)
        })
        .map_err(|error| unavailable(format!("cannot read the request: {error}")))?;
    let highlight = String::from_utf8(highlight)
        .map_err(|_| unavailable("the highlight is not UTF-8".to_owned()))?;
    let channels: Vec<u8> = config
        .rgba
        .split(',')
        .filter_map(|channel| channel.parse().ok())
        .collect();
    let [r, g, b, a] = <[u8; 4]>::try_from(channels.as_slice())
        .map_err(|_| unavailable("the colour is not r,g,b,a".to_owned()))?;
    let renderer = PdfiumRenderer::load(&config.pdfium_lib).map_err(unavailable)?;
    renderer.render(
        &pdf,
        config.page,
        config.scale,
        (!highlight.is_empty()).then_some(highlight.as_str()),
        [r, g, b, a],
    )
}

impl From<RenderError> for Outcome {
    fn from(error: RenderError) -> Self {
        match error {
            RenderError::NoSuchPage { page_count } => Self::NoSuchPage { page_count },
            RenderError::Encrypted => Self::Encrypted,
            RenderError::Damaged => Self::Damaged,
            RenderError::Unavailable(message) | RenderError::Exceeded(message) => {
                Self::Unavailable { message }
            }
        }
    }
}

fn write_line(out: &mut impl Write, outcome: &Outcome) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, outcome)?;
    out.write_all(b"\n")
}

/// The worker's data segment (heap and anonymous mappings) and CPU time, and no core dumps.
fn limit_this_process(memory_bytes: u64, seconds: u64) -> std::io::Result<()> {
    use rlimit::Resource;
    Resource::DATA.set(memory_bytes, memory_bytes)?;
    let cpu = seconds.saturating_add(2);
    Resource::CPU.set(cpu, cpu)?;
    Resource::CORE.set(0, 0)
}

/// What a page's drawing may take: `RENDER_MAX_MEMORY_MB` (512) and `RENDER_MAX_SECONDS` (20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderLimits {
    pub max_memory_mb: u64,
    pub max_seconds: u64,
}

impl RenderLimits {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            max_memory_mb: env.number_in("RENDER_MAX_MEMORY_MB", 512, 16..=65_536)?,
            max_seconds: env.number_in("RENDER_MAX_SECONDS", 20, 1..=600)?,
        })
    }
}

/// The server's side: each page drawn by a new worker.
pub struct ContainedRenderer {
    /// The manuel-local executable (the server's own).
    pub program: PathBuf,
    pub pdfium_lib: PathBuf,
    pub limits: RenderLimits,
}

impl PageRenderer for ContainedRenderer {
    fn render(
        &self,
        pdf: &[u8],
        page: u32,
        scale: f32,
        highlight: Option<&str>,
        rgba: [u8; 4],
    ) -> Result<RenderedPage, RenderError> {
        let highlight = highlight.unwrap_or_default();
        let mut child = std::process::Command::new(&self.program)
            .arg("render-worker")
            .arg("--pdfium-lib")
            .arg(&self.pdfium_lib)
            .args(["--page", &page.to_string(), "--scale", &scale.to_string()])
            .arg("--rgba")
            .arg(rgba.map(|c| c.to_string()).join(","))
            .args(["--pdf-bytes", &pdf.len().to_string()])
            .args(["--highlight-bytes", &highlight.len().to_string()])
            .args(["--max-memory-mb", &self.limits.max_memory_mb.to_string()])
            .args(["--max-seconds", &self.limits.max_seconds.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| {
                RenderError::Unavailable(format!("cannot start the render worker: {error}"))
            })?;
        let result = self.exchange(&mut child, pdf, highlight);
        // Reaped here whatever happened, so no worker outlives its request.
        let _ = child.kill();
        let _ = child.wait();
        result
    }
}

impl ContainedRenderer {
    fn exchange(
        &self,
        child: &mut Child,
        pdf: &[u8],
        highlight: &str,
    ) -> Result<RenderedPage, RenderError> {
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(RenderError::Unavailable(
                "the render worker has no pipes".to_owned(),
            ));
        };
        let (done, outcome) = mpsc::channel();
        // Writing and reading on threads of their own, the PDF lent rather than copied: the
        // wait below is what bounds the time. The scope ends only once both are done, which the
        // kill on a timeout guarantees (both pipes close).
        std::thread::scope(|threads| {
            threads.spawn(move || {
                // A worker that died early closes its end; its (missing) output says why.
                let _ = stdin
                    .write_all(pdf)
                    .and_then(|()| stdin.write_all(highlight.as_bytes()));
            });
            threads.spawn(move || {
                let _ = done.send(read_outcome(stdout));
            });
            let limit = Duration::from_secs(self.limits.max_seconds);
            let result = match outcome.recv_timeout(limit) {
                Ok(Some(result)) => result,
                Ok(None) => {
                    let status = child.wait().ok();
                    tracing::warn!(?status, "the render worker ended without a page");
                    Err(RenderError::Exceeded(format!(
                        "the PDF library failed while drawing it (it may need more than RENDER_MAX_MEMORY_MB = {} MB)",
                        self.limits.max_memory_mb
                    )))
                }
                Err(_) => {
                    tracing::warn!(
                        seconds = limit.as_secs(),
                        "the render worker took too long; stopped"
                    );
                    Err(RenderError::Exceeded(format!(
                        "drawing it took longer than RENDER_MAX_SECONDS = {} s",
                        limit.as_secs()
                    )))
                }
            };
            // Whatever the outcome, the worker goes before the threads are joined.
            let _ = child.kill();
            result
        })
    }
}

/// The worker's answer, or `None` when its output ended early or made no sense.
fn read_outcome(stdout: std::process::ChildStdout) -> Option<Result<RenderedPage, RenderError>> {
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = Vec::new();
    (&mut reader)
        .take(MAX_HEADER_BYTES)
        .read_until(b'\n', &mut line)
        .ok()?;
    Some(match serde_json::from_slice::<Outcome>(&line).ok()? {
        Outcome::Drawn {
            width,
            height,
            page_count,
            highlights,
            png_bytes,
        } => {
            if png_bytes > MAX_PNG_BYTES {
                return None;
            }
            let mut png = Vec::new();
            (&mut reader).take(png_bytes).read_to_end(&mut png).ok()?;
            if png.len() as u64 != png_bytes {
                return None;
            }
            Ok(RenderedPage {
                png,
                width,
                height,
                page_count,
                highlights,
            })
        }
        Outcome::NoSuchPage { page_count } => Err(RenderError::NoSuchPage { page_count }),
        Outcome::Encrypted => Err(RenderError::Encrypted),
        Outcome::Damaged => Err(RenderError::Damaged),
        Outcome::Unavailable { message } => Err(RenderError::Unavailable(message)),
    })
}
