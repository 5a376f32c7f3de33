//! Failed asynchronous work: the message that ends in the dead-letter queue after its retries,
//! and the record error-processor keeps of it (the errors table).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::PortError;

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

impl FailureReport {
    /// The report of `operation` giving up after `attempts` because of `error`.
    pub fn from_error(operation: &str, error: &PortError, attempts: u32) -> Self {
        Self {
            service: error_service(error).to_owned(),
            operation: operation.to_owned(),
            error_kind: error_kind(error).to_owned(),
            message: error.to_string(),
            request_id: None,
            user_hash: None,
            attempts,
            time: Utc::now(),
            payload_ref: None,
        }
    }
}

/// The dependency a port error names (`internal` for our own failures).
pub fn error_service(error: &PortError) -> &'static str {
    match error {
        PortError::Unavailable { service, .. }
        | PortError::Transient { service, .. }
        | PortError::CircuitOpen { service, .. }
        | PortError::Rejected { service, .. } => service,
        PortError::Failed(_) => "internal",
    }
}

/// The `error_kind` of a port error, as error-processor's severity rules read it.
pub fn error_kind(error: &PortError) -> &'static str {
    let message = error.to_string().to_ascii_lowercase();
    match error {
        PortError::Transient { .. }
            if message.contains("throttl")
                || message.contains("toomanyrequests")
                || message.contains("slowdown") =>
        {
            "throttled"
        }
        PortError::Transient { .. }
            if message.contains("timeout") || message.contains("timed out") =>
        {
            "timeout"
        }
        PortError::Transient { .. } | PortError::CircuitOpen { .. } => "unavailable",
        PortError::Unavailable { .. }
            if message.contains("accessdenied")
                || message.contains("access denied")
                || message.contains("not authorized") =>
        {
            "access_denied"
        }
        PortError::Unavailable { .. }
            if message.contains("resourcenotfound") || message.contains("nosuchbucket") =>
        {
            "configuration"
        }
        PortError::Unavailable { .. } => "unavailable",
        PortError::Rejected { .. } => "rejected",
        PortError::Failed(_) => "failed",
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_errors_become_the_kinds_the_severity_rules_read() {
        let transient = |message: &str| PortError::Transient {
            service: "bedrock-ingestion",
            message: message.to_owned(),
        };
        let refused = |message: &str| PortError::Unavailable {
            service: "s3",
            message: message.to_owned(),
        };
        assert_eq!(
            error_kind(&transient("ThrottlingException: slow down")),
            "throttled"
        );
        assert_eq!(
            error_kind(&transient("TimeoutError: read timed out")),
            "timeout"
        );
        assert_eq!(
            error_kind(&transient("InternalServerException")),
            "unavailable"
        );
        assert_eq!(error_kind(&refused("AccessDenied: no")), "access_denied");
        assert_eq!(error_kind(&refused("NoSuchBucket")), "configuration");
        assert_eq!(error_kind(&PortError::failed("bug")), "failed");
        let report = FailureReport::from_error("process-manual", &transient("Throttling"), 3);
        assert_eq!(
            (
                report.service.as_str(),
                report.error_kind.as_str(),
                report.attempts
            ),
            ("bedrock-ingestion", "throttled", 3)
        );
    }
}
