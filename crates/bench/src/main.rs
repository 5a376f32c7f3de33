//! `manuel-bench`: the Rust half of `make bench` (scripts/bench.sh runs it and writes the report).
//!
//!   manuel-bench routes  [--iterations N] [--warmup N] [--out FILE]
//!       warm in-process cost of every HTTP route, with zero-latency fakes behind the routers
//!   manuel-bench lambdas --bin-dir DIR --moto URL [--starts N] [--warm N] [--only NAME]... [--out FILE]
//!       cold starts (spawn → first response) and peak RSS of the Lambda binaries in DIR
//!   manuel-bench stream --bin-dir DIR --moto URL [--questions N] [--out FILE]
//!       first byte and first word of POST /api/query/stream through the streaming query function
//!
//! Each writes JSON (to FILE, or stdout) and a line per measurement on stderr.
// A benchmark that cannot set itself up has nothing to report: failing loudly is right here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fakes;
mod lambdas;
mod large_manual;
mod routes;
mod stats;
mod stream;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
#[command(name = "manuel-bench", about = "Measurements for make bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Warm in-process cost per HTTP route (zero-latency fakes, real token verification).
    Routes {
        #[arg(long, default_value_t = 5000)]
        iterations: usize,
        #[arg(long, default_value_t = 500)]
        warmup: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Cold starts and peak RSS of the Lambda binaries against a local Runtime API and moto.
    Lambdas {
        #[arg(long)]
        bin_dir: PathBuf,
        #[arg(long)]
        moto: String,
        #[arg(long, default_value_t = 20)]
        starts: usize,
        #[arg(long, default_value_t = 1000)]
        warm: usize,
        /// Only these binaries (repeatable); all six by default.
        #[arg(long)]
        only: Vec<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// First byte and first word of a streamed answer through the streaming query function, at
    /// Bedrock's pace; then one 2,000-token answer.
    Stream {
        #[arg(long)]
        bin_dir: PathBuf,
        #[arg(long)]
        moto: String,
        #[arg(long, default_value_t = 10)]
        questions: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn write(out: Option<PathBuf>, value: &serde_json::Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    match out {
        Some(path) => std::fs::write(path, text),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::Routes {
            iterations,
            warmup,
            out,
        } => {
            let verification = routes::token_verification(iterations)?;
            let results = routes::run(iterations, warmup).await?;
            write(
                out,
                &json!({"token_verification": verification, "routes": results}),
            )?;
        }
        Command::Lambdas {
            bin_dir,
            moto,
            starts,
            warm,
            only,
            out,
        } => {
            let results = lambdas::run(&bin_dir, &moto, starts, warm, &only).await?;
            let large_manual =
                if only.is_empty() || only.iter().any(|name| name == "manuel-process-manual") {
                    Some(large_manual::run(&bin_dir, &moto).await?)
                } else {
                    None
                };
            write(
                out,
                &json!({"functions": results, "process_manual_largest_manual": large_manual}),
            )?;
        }
        Command::Stream {
            bin_dir,
            moto,
            questions,
            out,
        } => {
            write(out, &stream::run(&bin_dir, &moto, questions).await)?;
        }
    }
    Ok(())
}
