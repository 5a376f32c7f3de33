//! Ingestion of one manual in a worker process: manuel-local runs itself as
//! `manuel-local ingest-worker`, hands it the manual's bytes on stdin and reads the embedded
//! passages back from stdout, one JSON line each. Reading (pdfium) and embedding (ONNX Runtime)
//! happen in the worker only, so a hostile file can exhaust the worker and nothing else:
//!
//! - the worker caps its own data segment (`RLIMIT_DATA`) and CPU time before it reads a byte;
//! - the server kills it when its resident memory passes `INGEST_MAX_MEMORY_MB` (polled every
//!   50 ms) or when it runs past `INGEST_MAX_SECONDS`, and reads at most a bounded amount of
//!   its output;
//! - the worker exits by itself when its stdin closes, so it never outlives a server that was
//!   killed.
//!
//! Either way the manual ends `failed` with a reason naming the limit; the server's own memory
//! only ever holds the manual's bytes and its (bounded) passages.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use clap::Args;
use manuel_core::PortError;
use manuel_core::domain::{Manual, ProcessingOutcome};
use manuel_core::ingestion::{IngestionLimits, Limit};
use manuel_process_manual::{Indexer, ReadFailure, read_pages};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use crate::chunk::chunk_pages;
use crate::embedding::{self, Embedder};
use crate::index::{LocalIndex, PreparedChunk, prepare};
use crate::reader::PdfiumReader;
use crate::store::SqliteStore;

/// Chunks embedded (and written out) together.
const EMBED_GROUP: usize = 64;
/// How often the server looks at the worker's resident memory.
const MEMORY_POLL: Duration = Duration::from_millis(50);
/// The longest line of output the server reads (one passage and its vectors).
const MAX_LINE_BYTES: u64 = 1 << 20;
/// Exit code of a worker whose server went away.
const ORPHANED: u8 = 3;

/// The reason of a manual whose worker died without saying why, far from its memory limit.
pub const CRASHED: &str = "The manual could not be processed: reading it crashed the document reader. Try another copy of the file.";

/// `manuel-local ingest-worker`: what the server passes to a worker.
#[derive(Args, Debug, Clone)]
pub struct WorkerConfig {
    #[arg(long)]
    pub pdfium_lib: PathBuf,
    #[arg(long)]
    pub embedding_model: PathBuf,
    #[arg(long)]
    pub onnxruntime: PathBuf,
    /// How many bytes of the manual follow on stdin.
    #[arg(long)]
    pub bytes: u64,
    /// The [`IngestionLimits`] as JSON.
    #[arg(long)]
    pub limits: String,
}

/// One line of a worker's output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    /// The text was read: this many pages, and this many passages follow.
    Read {
        pages: u32,
        chunks: u32,
        /// What runs along most pages, removed from their text.
        running_title: String,
    },
    Chunk {
        page: u32,
        text: String,
        /// Little-endian f32 vectors ([`embedding::to_bytes`]), base64.
        vectors: String,
    },
    Done,
    /// The manual cannot be ingested, for good.
    Failed {
        reason: String,
    },
    /// Something the worker needs is missing (the model, the library): worth retrying later.
    Unavailable {
        message: String,
    },
}

/// The worker process's main: reads the manual from stdin, writes [`Message`] lines to stdout.
pub fn run_worker(config: &WorkerConfig) -> ExitCode {
    let limits: IngestionLimits = match serde_json::from_str(&config.limits) {
        Ok(limits) => limits,
        Err(error) => return emit_unavailable(format!("bad limits: {error}")),
    };
    if let Err(error) = limit_this_process(&limits) {
        return emit_unavailable(format!("cannot set resource limits: {error}"));
    }
    let mut bytes = Vec::new();
    let mut stdin = std::io::stdin().lock();
    if let Err(error) = (&mut stdin).take(config.bytes).read_to_end(&mut bytes) {
        return emit_unavailable(format!("cannot read the manual: {error}"));
    }
    drop(stdin);
    // The server keeps stdin open while it waits for us; end of input means it is gone.
    std::thread::spawn(|| {
        let mut rest = [0u8; 64];
        while matches!(std::io::stdin().read(&mut rest), Ok(n) if n > 0) {}
        std::process::exit(i32::from(ORPHANED));
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let outcome = ingest(config, &limits, &bytes, &mut out);
    let last = match outcome {
        Ok(()) => Message::Done,
        Err(message) => message,
    };
    if write_message(&mut out, &last)
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn ingest(
    config: &WorkerConfig,
    limits: &IngestionLimits,
    bytes: &[u8],
    out: &mut impl Write,
) -> Result<(), Message> {
    let reader = PdfiumReader::load(&config.pdfium_lib)
        .map_err(|message| Message::Unavailable { message })?;
    let manual = read_pages(&reader, bytes, limits).map_err(|failure| match failure {
        ReadFailure::Unavailable(message) => Message::Unavailable { message },
        failure => Message::Failed {
            reason: failure.to_string(),
        },
    })?;
    let pages = manual.pages;
    let chunks = chunk_pages(&pages);
    if chunks.len() as u64 > u64::from(limits.max_chunks) {
        return Err(failed(Limit::Chunks, limits));
    }
    let embedder =
        Embedder::load(&config.embedding_model, &config.onnxruntime).map_err(|error| {
            Message::Unavailable {
                message: error.to_string(),
            }
        })?;
    let written = |result: std::io::Result<()>| {
        result.map_err(|error| Message::Unavailable {
            message: format!("cannot write to the server: {error}"),
        })
    };
    written(write_message(
        out,
        &Message::Read {
            pages: u32::try_from(pages.len()).unwrap_or(u32::MAX),
            chunks: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
            running_title: manual.running_title,
        },
    ))?;
    for group in chunks.chunks(EMBED_GROUP) {
        let prepared = prepare(&embedder, group).map_err(|error| Message::Unavailable {
            message: error.to_string(),
        })?;
        for chunk in prepared {
            written(write_message(
                out,
                &Message::Chunk {
                    page: chunk.page,
                    vectors: STANDARD.encode(embedding::to_bytes(&chunk.vectors)),
                    text: chunk.text,
                },
            ))?;
        }
    }
    Ok(())
}

fn failed(limit: Limit, limits: &IngestionLimits) -> Message {
    Message::Failed {
        reason: limit.reason(limits),
    }
}

fn write_message(out: &mut impl Write, message: &Message) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, message)?;
    out.write_all(b"\n")
}

fn emit_unavailable(message: String) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = write_message(&mut out, &Message::Unavailable { message });
    ExitCode::FAILURE
}

/// The worker's own backstops, set before it reads anything: its data segment (heap and
/// anonymous mappings, `RLIMIT_DATA`) at 1.5 times the memory limit plus room for the
/// libraries' start-up (the server's resident-memory watch fires first and names the limit),
/// its CPU time at the wall-time limit on every core plus a little, and no core dumps.
fn limit_this_process(limits: &IngestionLimits) -> std::io::Result<()> {
    use rlimit::Resource;
    let data = limits
        .max_memory_bytes
        .saturating_add(limits.max_memory_bytes / 2)
        .saturating_add(256 << 20);
    Resource::DATA.set(data, data)?;
    // CPU time adds up over threads (ONNX Runtime uses one per core).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let cpu = limits
        .max_wall_time
        .as_secs()
        .saturating_mul(cores)
        .saturating_add(5);
    Resource::CPU.set(cpu, cpu)?;
    Resource::CORE.set(0, 0)
}

/// What the server gives every worker.
#[derive(Clone, Debug)]
pub struct WorkerSetup {
    /// The manuel-local executable (the server's own).
    pub program: PathBuf,
    pub pdfium_lib: PathBuf,
    pub embedding_model: PathBuf,
    pub onnxruntime: PathBuf,
    pub limits: IngestionLimits,
}

/// The server's side: runs each manual's ingestion in a worker and indexes what it returns.
pub struct ContainedIndexer {
    pub setup: WorkerSetup,
    pub index: Arc<LocalIndex>,
    pub store: Arc<SqliteStore>,
    /// Turns true when the server is stopping: running workers are killed and their manuals
    /// stay `processing`, to be resumed at the next start.
    pub stopping: watch::Receiver<bool>,
}

/// How a worker run ended, short of a result.
#[derive(Debug)]
enum Stopped {
    Exceeded(Limit),
    Crashed,
    Interrupted,
    Unavailable(String),
}

/// What a worker produced.
struct Extracted {
    pages: u32,
    chunks: Vec<PreparedChunk>,
    running_title: String,
}

#[async_trait]
impl Indexer for ContainedIndexer {
    async fn index(&self, manual: &Manual, bytes: Bytes) -> Result<ProcessingOutcome, PortError> {
        if self
            .store
            .begin_attempt(&manual.user_id, &manual.id)?
            .is_none()
        {
            // Deleted (or finished) meanwhile: whatever is recorded now is not changed.
            return Err(PortError::Unavailable {
                service: "ingestion",
                message: "the manual is no longer processing".to_owned(),
            });
        }
        let limits = &self.setup.limits;
        let started = Instant::now();
        let extracted = self.run_worker(manual, bytes).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match extracted {
            Ok(Ok(extracted)) => {
                self.index
                    .store(manual, extracted.chunks, &extracted.running_title)
                    .await?;
                Ok(ProcessingOutcome::Ready {
                    pages: extracted.pages,
                })
            }
            Ok(Err(reason)) => Ok(ProcessingOutcome::Failed { reason }),
            Err(Stopped::Exceeded(limit)) => {
                tracing::warn!(manual_id = %manual.id, limit = limit.variable(), elapsed_ms, "ingestion stopped at a limit");
                Ok(ProcessingOutcome::Failed {
                    reason: limit.reason(limits),
                })
            }
            Err(Stopped::Crashed) => {
                tracing::warn!(manual_id = %manual.id, elapsed_ms, "the ingest worker crashed");
                Ok(ProcessingOutcome::Failed {
                    reason: CRASHED.to_owned(),
                })
            }
            Err(Stopped::Interrupted) => {
                self.store.undo_attempt(&manual.user_id, &manual.id)?;
                Err(PortError::Unavailable {
                    service: "ingestion",
                    message: "stopped by the server's shutdown; resumed at the next start"
                        .to_owned(),
                })
            }
            Err(Stopped::Unavailable(message)) => Err(PortError::Unavailable {
                service: "ingest worker",
                message,
            }),
        }
    }
}

impl ContainedIndexer {
    /// `Ok(Ok(..))` the passages, `Ok(Err(reason))` a manual the worker refused.
    async fn run_worker(
        &self,
        manual: &Manual,
        bytes: Bytes,
    ) -> Result<Result<Extracted, String>, Stopped> {
        let setup = &self.setup;
        let limits = setup.limits;
        let mut child = Command::new(&setup.program)
            .arg("ingest-worker")
            .arg("--pdfium-lib")
            .arg(&setup.pdfium_lib)
            .arg("--embedding-model")
            .arg(&setup.embedding_model)
            .arg("--onnxruntime")
            .arg(&setup.onnxruntime)
            .arg("--bytes")
            .arg(bytes.len().to_string())
            .arg("--limits")
            .arg(serde_json::to_string(&limits).map_err(|e| Stopped::Unavailable(e.to_string()))?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                Stopped::Unavailable(format!("cannot start the ingest worker: {error}"))
            })?;
        let pid = child.id();
        tracing::debug!(manual_id = %manual.id, ?pid, "ingest worker started");
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Stopped::Unavailable("the worker has no pipes".to_owned()));
        };
        // Held open until the end: the worker's sign that the server is alive.
        let feed = async move {
            stdin.write_all(&bytes).await?;
            stdin.flush().await?;
            Ok::<_, std::io::Error>(stdin)
        };
        let (lines, mut messages) = mpsc::channel::<Result<Message, Stopped>>(64);
        let output_cap = output_cap(&limits);
        let reading = tokio::spawn(read_messages(stdout, output_cap, lines));
        let mut stopping = self.stopping.clone();
        let stop_requested = async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        };
        tokio::pin!(stop_requested);
        let deadline = tokio::time::Instant::now() + limits.max_wall_time;
        let mut peak_rss = 0u64;
        let mut header: Option<(u32, u32)> = None;
        let mut running_title = String::new();
        let mut chunks: Vec<PreparedChunk> = Vec::new();
        let mut memory_poll = tokio::time::interval(MEMORY_POLL);
        let stop = |child: &mut tokio::process::Child, why: Stopped| {
            let _ = child.start_kill();
            why
        };
        let _stdin = match tokio::time::timeout_at(deadline, feed).await {
            Ok(Ok(stdin)) => Some(stdin),
            // It died before reading everything: its exit tells why.
            Ok(Err(_)) => None,
            Err(_) => return Err(stop(&mut child, Stopped::Exceeded(Limit::WallTime))),
        };
        let result = loop {
            tokio::select! {
                message = messages.recv() => match message {
                    Some(Ok(Message::Read { pages, chunks: count, running_title: title })) => {
                        if count > limits.max_chunks {
                            break Err(stop(&mut child, Stopped::Exceeded(Limit::Chunks)));
                        }
                        header = Some((pages, count));
                        running_title = title;
                        chunks.reserve(count as usize);
                    }
                    Some(Ok(Message::Chunk { page, text, vectors })) => {
                        let Some((pages, count)) = header else {
                            break Err(stop(&mut child, Stopped::Crashed));
                        };
                        let vectors = STANDARD.decode(vectors).ok().and_then(|raw| embedding::from_bytes(&raw));
                        match vectors {
                            Some(vectors) if page >= 1 && page <= pages && chunks.len() < count as usize => {
                                chunks.push(PreparedChunk { page, text, vectors });
                            }
                            _ => break Err(stop(&mut child, Stopped::Crashed)),
                        }
                    }
                    Some(Ok(Message::Done)) => match header {
                        Some((pages, count)) if chunks.len() == count as usize => {
                            break Ok(Ok(Extracted { pages, chunks: std::mem::take(&mut chunks), running_title: std::mem::take(&mut running_title) }));
                        }
                        _ => break Err(stop(&mut child, Stopped::Crashed)),
                    },
                    Some(Ok(Message::Failed { reason })) => break Ok(Err(reason)),
                    Some(Ok(Message::Unavailable { message })) => break Err(Stopped::Unavailable(message)),
                    Some(Err(stopped)) => break Err(stop(&mut child, stopped)),
                    // The output ended without a last word: the worker died.
                    None => break Err(died(&mut child, peak_rss, &limits).await),
                },
                _ = memory_poll.tick() => {
                    let rss = pid.and_then(resident_bytes).unwrap_or(0);
                    peak_rss = peak_rss.max(rss);
                    if rss > limits.max_memory_bytes {
                        break Err(stop(&mut child, Stopped::Exceeded(Limit::Memory)));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    break Err(stop(&mut child, Stopped::Exceeded(Limit::WallTime)));
                }
                () = &mut stop_requested => {
                    break Err(stop(&mut child, Stopped::Interrupted));
                }
            }
        };
        reading.abort();
        // Reaped here, so no worker is left behind whatever the outcome.
        let _ = child.kill().await;
        tracing::debug!(manual_id = %manual.id, peak_rss_mb = peak_rss >> 20, "ingest worker finished");
        result
    }
}

/// The most a worker may write: its passages' text and vectors, with room to spare. A worker
/// that writes more is stopped, so the server never buffers more than this for one manual.
fn output_cap(limits: &IngestionLimits) -> u64 {
    limits
        .max_manual_text_bytes
        .saturating_mul(2)
        .saturating_add(u64::from(limits.max_chunks).saturating_mul(64 * 1024))
}

async fn read_messages(
    stdout: tokio::process::ChildStdout,
    cap: u64,
    lines: mpsc::Sender<Result<Message, Stopped>>,
) {
    let mut reader = tokio::io::BufReader::new(stdout.take(cap));
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .await;
        let message = match read {
            Ok(0) => {
                if reader.get_ref().limit() == 0 {
                    Err(Stopped::Exceeded(Limit::ManualText))
                } else {
                    return;
                }
            }
            Ok(_) if !line.ends_with(b"\n") => Err(if reader.get_ref().limit() == 0 {
                Stopped::Exceeded(Limit::ManualText)
            } else {
                Stopped::Crashed
            }),
            Ok(_) => serde_json::from_slice(&line).map_err(|_| Stopped::Crashed),
            Err(_) => return,
        };
        let last = message.is_err();
        if lines.send(message).await.is_err() || last {
            return;
        }
    }
}

/// Why a worker whose output ended early died: near its memory limit it is taken for memory
/// (the `RLIMIT_DATA` backstop makes allocations fail), otherwise a crash.
async fn died(
    child: &mut tokio::process::Child,
    peak_rss: u64,
    limits: &IngestionLimits,
) -> Stopped {
    let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
    tracing::warn!(
        ?status,
        peak_rss_mb = peak_rss >> 20,
        "the ingest worker ended without a result"
    );
    if peak_rss >= limits.max_memory_bytes / 2 {
        Stopped::Exceeded(Limit::Memory)
    } else {
        Stopped::Crashed
    }
}

/// The resident memory of process `pid` (Linux `/proc`), in bytes.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_single_lines() {
        let mut out = Vec::new();
        write_message(
            &mut out,
            &Message::Chunk {
                page: 2,
                text: "Press\nstart".to_owned(),
                vectors: STANDARD.encode(embedding::to_bytes(&[vec![0.5; embedding::DIMENSIONS]])),
            },
        )
        .unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let Message::Chunk {
            page,
            text,
            vectors,
        } = serde_json::from_slice(&out).unwrap()
        else {
            panic!("not a chunk");
        };
        assert_eq!((page, text.as_str()), (2, "Press\nstart"));
        let vectors = embedding::from_bytes(&STANDARD.decode(vectors).unwrap()).unwrap();
        assert_eq!(vectors, vec![vec![0.5; embedding::DIMENSIONS]]);
    }

    #[test]
    fn resident_memory_is_read_from_proc() {
        let rss = resident_bytes(std::process::id()).unwrap();
        assert!(rss > 1 << 20, "{rss}");
    }
}
