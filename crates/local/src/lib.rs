//! manuel-local: the embedded adapters (SQLite, files, tantivy, pdfium, the extractive answerer,
//! a local identity provider) and the server that runs every function's router on one machine.

pub mod answer;
pub mod chunk;
pub mod config;
pub mod embedding;
pub mod extractive;
mod idempotency_store;
pub mod identity;
pub mod index;
pub mod ingest;
pub mod key_migration;
pub mod listener;
pub mod objects;
mod question_words;
pub mod reader;
pub mod render_worker;
pub mod secrets;
pub mod server;
#[cfg(feature = "speech")]
pub mod speech;
pub mod store;
pub(crate) mod text;
pub mod uploads;
pub mod usage_store;
pub mod worker;
