//! Failed asynchronous work: the message that ends in the dead-letter queue after its retries,
//! and the record error-processor keeps of it (the errors table of DESIGN.md §4).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The dead-letter message (documented in MONITORING.md). The payload itself is not copied:
/// `payload_ref` says where it is (an S3 URI or the original event's id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureReport {
    pub service: String,
    pub operation: String,
    /// `unavailable`, `timeout`, `throttled`, `failed`, `invalid_input`, `configuration`,
    /// `access_denied`, `data_integrity`.
    pub error_kind: String,
    pub message: String,
    #[serde(default)]
    pub request_id: Option<String>,
    /// [`crate::telemetry::user_hash`] of the user concerned, never the id itself.
    #[serde(default)]
    pub user_hash: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    pub time: DateTime<Utc>,
    #[serde(default)]
    pub payload_ref: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// High and critical errors page someone; the others are only stored.
    pub const fn alerts(self) -> bool {
        matches!(self, Self::High | Self::Critical)
    }
}

/// One occurrence of a classified error, as error-processor stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorOccurrence {
    pub fingerprint: String,
    pub severity: Severity,
    pub service: String,
    pub operation: String,
    pub error_kind: String,
    /// The message with ids, numbers and quoted values replaced, as grouped.
    pub normalized_message: String,
    /// One original message, for whoever reads the record.
    pub sample: String,
    pub request_id: Option<String>,
    pub seen_at: DateTime<Utc>,
    /// The record could not be read as a failure report.
    pub malformed: bool,
}
