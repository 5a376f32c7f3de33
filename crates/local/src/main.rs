use std::process::ExitCode;

use clap::Parser;
use manuel_local::config::{Cli, Command};
use manuel_local::identity::LocalIdentity;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(config)) => {
            match LocalIdentity::load_or_create(&config.data_dir)
                .and_then(|identity| identity.issue_token(&config.user, config.ttl_seconds))
            {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            }
        }
        Some(Command::Serve(config)) => serve(config),
        Some(Command::IngestWorker(config)) => manuel_local::worker::run_worker(&config),
        Some(Command::RenderWorker(config)) => {
            manuel_local::render_worker::run_render_worker(&config)
        }
        None => serve(cli.serve),
    }
}

fn serve(config: manuel_local::config::ServeConfig) -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tantivy=warn")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    let result = runtime.block_on(manuel_local::server::run(config));
    // Blocking work still running (a transcription, an index write) is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("manuel-local: {error}");
    ExitCode::FAILURE
}
