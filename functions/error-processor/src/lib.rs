//! error-processor: records from the dead-letter queue are read as failure reports, classified
//! by severity, grouped by fingerprint in the errors table, and alerted on (high and critical
//! only, at most once per fingerprint per window). One bad record never blocks the others:
//! the batch answer lists only the records to deliver again.

mod classify;
mod read;

use std::sync::Arc;
use std::time::Duration;

use manuel_core::failure::ErrorOccurrence;
use manuel_core::ports::{ErrorStore, Notifier};
use manuel_core::telemetry::{self, Metric};
use manuel_core::usage::Clock;

pub use classify::{fingerprint, normalize_message, severity};
pub use read::occurrence;

#[derive(Clone)]
pub struct ErrorProcessor {
    pub errors: Arc<dyn ErrorStore>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
    /// At most one alert per fingerprint in this window.
    pub alert_window: Duration,
    /// How long an error record is kept after it was last seen.
    pub retention: Duration,
}

/// One SQS record: its message id and body.
pub struct QueueRecord {
    pub message_id: String,
    pub body: String,
    /// The `ErrorMessage` attribute Lambda adds to events it dead-letters.
    pub error_message: Option<String>,
}

impl ErrorProcessor {
    /// Handles a batch; returns the message ids that failed (to be delivered again). A record
    /// that cannot be read is stored as malformed, not retried: retrying cannot fix it.
    pub async fn process_batch(&self, records: &[QueueRecord]) -> Vec<String> {
        let mut failed = Vec::new();
        for record in records {
            if let Err(error) = self.process(record).await {
                tracing::error!(message_id = %record.message_id, %error, "error record not processed; it will be delivered again");
                failed.push(record.message_id.clone());
            }
        }
        telemetry::record(Metric::BatchItemFailures, failed.len() as f64);
        failed
    }

    async fn process(&self, record: &QueueRecord) -> Result<(), manuel_core::PortError> {
        let now = self.clock.now();
        let occurrence = occurrence(&record.body, record.error_message.as_deref(), now);
        let expires_at =
            now.timestamp() + i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX / 4);
        let count = self.errors.record(&occurrence, expires_at).await?;
        telemetry::record_severity(Metric::ErrorsRecorded, occurrence.severity.as_str(), 1.0);
        tracing::info!(
            fingerprint = %occurrence.fingerprint,
            severity = occurrence.severity.as_str(),
            service = %occurrence.service,
            count,
            malformed = occurrence.malformed,
            "error recorded"
        );
        if occurrence.severity.alerts()
            && self
                .errors
                .claim_alert(&occurrence.fingerprint, now, self.alert_window)
                .await?
        {
            let (subject, message) = alert(&occurrence, count);
            self.notifier.notify(&subject, &message).await?;
            telemetry::record(Metric::AlertsPublished, 1.0);
        }
        Ok(())
    }
}

fn alert(occurrence: &ErrorOccurrence, count: u64) -> (String, String) {
    let subject = format!(
        "[Manuel {}] {} {} failed",
        occurrence.severity.as_str(),
        occurrence.service,
        occurrence.operation
    );
    // SNS subjects are limited to 100 characters.
    let subject: String = subject.chars().take(100).collect();
    let message = serde_json::json!({
        "severity": occurrence.severity.as_str(),
        "fingerprint": occurrence.fingerprint,
        "service": occurrence.service,
        "operation": occurrence.operation,
        "error_kind": occurrence.error_kind,
        "message": occurrence.sample,
        "request_id": occurrence.request_id,
        "count": count,
        "seen_at": occurrence.seen_at.to_rfc3339(),
    })
    .to_string();
    (subject, message)
}
