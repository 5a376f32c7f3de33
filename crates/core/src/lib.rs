//! manuel-core: domain types, ports, policies and the HTTP middleware shared by every function.
//! Nothing here knows about AWS or Lambda.

pub mod answer_text;
pub mod audio;
pub mod auth;
pub mod cache;
pub mod charge;
pub mod config;
pub mod deadline;
pub mod domain;
pub mod error;
pub mod failure;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod ingestion;
pub mod json;
pub mod media_type;
pub mod ogg_opus;
pub mod page_token;
pub mod ports;
pub mod request_id;
pub mod resilience;
pub mod security;
pub mod spoken;
pub mod storage_keys;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod test_pdf;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod url_policy;
pub mod usage;
pub mod validation;

pub use error::{ApiError, PortError};
