//! What every Lambda binary does at init and around its handler: JSON logs, EMF metrics, the
//! TLS provider, one SDK configuration, configuration read and checked from the environment,
//! and the adapters built once. `main.rs` of each function only picks what it needs.

mod init;

pub use init::{Init, TransferMode, run_http, serve_http};
pub use manuel_core::config::Env;
