//! Command line and environment of manuel-local.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "manuel-local",
    version,
    about = "The Manuel API on one machine, with embedded components"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the server (the default).
    Serve(ServeConfig),
    /// Print an ID token for a user, signed with this server's key.
    Token(TokenConfig),
    /// Internal: read and embed one manual given on stdin (the server starts these).
    #[command(hide = true)]
    IngestWorker(crate::worker::WorkerConfig),
    /// Internal: draw one page of a PDF given on stdin (the server starts these).
    #[command(hide = true)]
    RenderWorker(crate::render_worker::RenderWorkerConfig),
}

#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "MANUEL_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "MANUEL_PORT", default_value_t = 3000)]
    pub port: u16,
    /// Where manuals, the database, the index and the keys live.
    #[arg(long, env = "MANUEL_DATA_DIR", default_value = "./.manuel")]
    pub data_dir: PathBuf,
    /// Path of libpdfium.so (installed by `make setup`).
    #[arg(
        long,
        env = "MANUEL_PDFIUM_LIB",
        default_value = "./.tools/pdfium/libpdfium.so"
    )]
    pub pdfium_lib: PathBuf,
    /// The sentence-embedding model for hybrid retrieval, a directory with `model.onnx` and
    /// `tokenizer.json` (installed by `make setup`).
    #[arg(
        long,
        env = "MANUEL_EMBEDDING_MODEL",
        default_value = "./.tools/models/all-MiniLM-L6-v2-int8"
    )]
    pub embedding_model: PathBuf,
    /// The ONNX Runtime library that runs the embedding model (installed by `make setup`).
    #[arg(
        long,
        env = "MANUEL_ONNXRUNTIME",
        default_value = "./.tools/onnxruntime/libonnxruntime.so"
    )]
    pub onnxruntime: PathBuf,
    /// Whisper tiny.en for spoken questions (installed by `make setup`); loaded on the first
    /// spoken question. Ignored in builds without the `speech` feature.
    #[arg(
        long,
        env = "MANUEL_SPEECH_MODEL",
        default_value = "./.tools/models/whisper-tiny.en"
    )]
    pub speech_model: PathBuf,
    /// The largest manual accepted, in MiB.
    #[arg(long, env = "MANUEL_MAX_UPLOAD_MB", default_value_t = 25)]
    pub max_upload_mb: usize,
    /// The largest manual accepted through an upload link (`POST /api/manuals/upload-url`), in MiB.
    #[arg(long, env = "MANUEL_MAX_UPLOAD_LINK_MB", default_value_t = 100)]
    pub max_upload_link_mb: usize,
    /// Manuals ingested at the same time, each in its own worker process (at most one per user).
    #[arg(long, env = "MANUEL_INGEST_WORKERS", default_value_t = 2)]
    pub ingest_workers: usize,
    /// Connections open at the same time; past it new ones are closed at once (and logged).
    #[arg(long, env = "MANUEL_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's header, or stay idle between
    /// requests, before it is closed.
    #[arg(long, env = "MANUEL_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 15)]
    pub header_read_timeout_seconds: u64,
    /// Base URL that download and upload links point at (defaults to http://<host>:<port>).
    #[arg(long, env = "MANUEL_PUBLIC_URL")]
    pub public_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TokenConfig {
    /// The user the token is for (its `sub`).
    #[arg(long)]
    pub user: String,
    /// How long the token stays valid.
    #[arg(long, default_value_t = 3600)]
    pub ttl_seconds: u64,
    /// The server's data directory (the key lives there).
    #[arg(long, env = "MANUEL_DATA_DIR", default_value = "./.manuel")]
    pub data_dir: PathBuf,
}
