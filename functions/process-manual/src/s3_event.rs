//! S3 `ObjectCreated` notifications for manuals: which manual an object key belongs to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use manuel_core::PortError;
use manuel_core::deadline;
use manuel_core::domain::{ProcessingOutcome, UserId};
use manuel_core::failure::FailureReport;
use manuel_core::ports::DeadLetters;
use manuel_core::resilience::RetryPolicy;
use manuel_core::telemetry::user_hash;

use crate::Processor;

/// A manual object named by an event: `manuals/<user_id>/<manual_id>.<ext>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualObject {
    pub user: UserId,
    pub manual_id: String,
    pub key: String,
}

/// Why an event record is skipped rather than processed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAManual {
    #[error("the key is not valid percent-encoding")]
    BadEncoding,
    #[error("the key is a metadata sidecar")]
    Sidecar,
    #[error("the key is not of the form manuals/<user>/<manual>.<ext>")]
    OtherKey,
}

/// Reads the manual an S3 event's key names. Keys in S3 events are URL-encoded with `+` for
/// spaces; they are decoded before anything else.
pub fn manual_object(encoded_key: &str) -> Result<ManualObject, NotAManual> {
    let key = percent_encoding::percent_decode_str(&encoded_key.replace('+', " "))
        .decode_utf8()
        .map_err(|_| NotAManual::BadEncoding)?
        .into_owned();
    if key.ends_with(".metadata.json") {
        return Err(NotAManual::Sidecar);
    }
    let mut parts = key.split('/');
    let (Some("manuals"), Some(user), Some(file), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(NotAManual::OtherKey);
    };
    let user = UserId::parse(user).ok_or(NotAManual::OtherKey)?;
    let (manual_id, extension) = file.rsplit_once('.').ok_or(NotAManual::OtherKey)?;
    let plausible_id = !manual_id.is_empty()
        && manual_id.len() <= 64
        && manual_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !plausible_id || !matches!(extension, "pdf" | "md" | "txt" | "html") {
        return Err(NotAManual::OtherKey);
    }
    Ok(ManualObject {
        user,
        manual_id: manual_id.to_owned(),
        key,
    })
}

/// How the manuals of one S3 event are processed.
#[derive(Clone)]
pub struct EventHandling {
    /// How long a manual's record is waited for: the upload stores the file before the record,
    /// so the event can arrive first.
    pub record_wait: Duration,
    /// Attempts at processing one manual, with pauses between them (each attempt's calls are
    /// also retried per dependency).
    pub attempts: RetryPolicy,
    /// Where a manual that still fails is reported: its report goes there and the manual
    /// becomes `failed`. `None` hands the failure back to the caller instead.
    pub dead_letters: Option<Arc<dyn DeadLetters>>,
    /// The bucket of the event's objects (for the report's payload reference).
    pub bucket: Option<String>,
    /// The invocation's request id (for the report).
    pub request_id: Option<String>,
}

/// How often processing a manual is tried when a dependency fails, with what pauses: the
/// default of `PROCESSING_ATTEMPTS` on Lambda, and manuel-local's policy.
pub const PROCESSING_ATTEMPTS: RetryPolicy = RetryPolicy::new(
    manuel_core::resilience::Backoff::Exponential,
    3,
    Duration::from_secs(2),
    Duration::from_secs(8),
);

impl EventHandling {
    /// `RECORD_WAIT_SECONDS` (10) and `PROCESSING_ATTEMPTS` (a retry policy,
    /// `exponential:3:2000:8000`); a manual that still fails is reported to `dead_letters`.
    pub fn from_env(
        env: &manuel_core::config::Env,
        dead_letters: Arc<dyn DeadLetters>,
    ) -> Result<Self, manuel_core::config::ConfigError> {
        let attempts = match env.optional("PROCESSING_ATTEMPTS") {
            None => PROCESSING_ATTEMPTS,
            Some(value) => RetryPolicy::parse(value).ok_or_else(|| {
                manuel_core::config::ConfigError {
                    name: "PROCESSING_ATTEMPTS",
                    reason: format!(
                        "{value:?} is not <exponential|linear|fixed>:<attempts 1-10>:<base ms>:<max ms>"
                    ),
                }
            })?,
        };
        Ok(Self {
            record_wait: Duration::from_secs(env.parsed_or("RECORD_WAIT_SECONDS", 10)?),
            attempts,
            dead_letters: Some(dead_letters),
            bucket: None,
            request_id: None,
        })
    }
}

/// The bucket and the keys of the objects an S3 event says were created (other events, such
/// as deletions, are not manuals to process).
#[cfg(feature = "lambda")]
pub fn created_objects(
    event: aws_lambda_events::event::s3::S3Event,
) -> (Option<String>, Vec<String>) {
    let bucket = event
        .records
        .first()
        .and_then(|record| record.s3.bucket.name.clone());
    let keys = event
        .records
        .into_iter()
        .filter(|record| {
            record
                .event_name
                .as_deref()
                .is_some_and(|name| name.starts_with("ObjectCreated"))
        })
        .filter_map(|record| record.s3.object.key)
        .collect();
    (bucket, keys)
}

/// What a manual whose processing failed for good is told.
pub const GAVE_UP_REASON: &str = "Processing could not finish because a service was unavailable; delete this manual and upload it again.";

/// Processes the manuals named by the keys of one S3 event. Keys that are not manuals (metadata
/// sidecars, other prefixes) are skipped. Returns the outcome per processed key. A manual that
/// still fails after its attempts is reported to the dead letters and marked `failed`; only
/// when that report cannot be sent (or there is nowhere to send it) is the failure returned,
/// after every key was tried, so the event is delivered again (processing a finished manual
/// again does nothing).
pub async fn process_keys(
    processor: &Processor,
    encoded_keys: &[String],
    handling: &EventHandling,
) -> Result<Vec<(String, Option<ProcessingOutcome>)>, PortError> {
    let mut outcomes = Vec::new();
    let mut failure = None;
    for encoded in encoded_keys {
        let object = match manual_object(encoded) {
            Ok(object) => object,
            Err(reason) => {
                tracing::info!(key = %encoded, %reason, "object skipped");
                continue;
            }
        };
        let mut attempt = 1;
        let result = loop {
            match process_object(processor, &object, handling.record_wait).await {
                Ok(outcome) => break Ok(outcome),
                Err(error) => {
                    let pause = handling.attempts.delay(attempt);
                    if attempt < handling.attempts.max_attempts
                        && deadline::leaves_time_for(pause, Duration::from_secs(5))
                    {
                        tracing::warn!(key = %object.key, attempt, %error, "processing failed; trying again");
                        tokio::time::sleep(pause).await;
                        attempt += 1;
                        continue;
                    }
                    break Err((error, attempt));
                }
            }
        };
        match result {
            Ok(outcome) => outcomes.push((object.key, outcome)),
            Err((error, attempts)) => match &handling.dead_letters {
                Some(dead_letters) => {
                    match give_up(
                        processor,
                        dead_letters.as_ref(),
                        &object,
                        &error,
                        attempts,
                        handling,
                    )
                    .await
                    {
                        Ok(outcome) => outcomes.push((object.key, Some(outcome))),
                        Err(unreported) => failure = Some(unreported),
                    }
                }
                None => {
                    tracing::error!(key = %object.key, %error, "processing failed; the event will be retried");
                    failure = Some(error);
                }
            },
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(outcomes),
    }
}

/// Sends the documented failure report for `object`, then marks its manual `failed`. An error
/// only when the report could not be sent: then the event must be retried.
async fn give_up(
    processor: &Processor,
    dead_letters: &dyn DeadLetters,
    object: &ManualObject,
    error: &PortError,
    attempts: u32,
    handling: &EventHandling,
) -> Result<ProcessingOutcome, PortError> {
    let mut report = FailureReport::from_error("process-manual", error, attempts);
    report.request_id = handling.request_id.clone();
    report.user_hash = Some(user_hash(&object.user));
    report.payload_ref = Some(match &handling.bucket {
        Some(bucket) => format!("s3://{bucket}/{}", object.key),
        None => object.key.clone(),
    });
    dead_letters.send(&report).await.inspect_err(|send_error| {
        tracing::error!(key = %object.key, %error, %send_error, "processing failed and could not be reported; the event will be retried");
    })?;
    tracing::error!(key = %object.key, %error, attempts, "processing failed for good; reported to the dead-letter queue");
    let outcome = ProcessingOutcome::Failed {
        reason: GAVE_UP_REASON.to_owned(),
    };
    if let Err(status_error) = processor
        .manuals
        .finish_processing(&object.user, &object.manual_id, &outcome)
        .await
    {
        tracing::warn!(key = %object.key, %status_error, "the manual could not be marked failed");
    }
    Ok(outcome)
}

async fn process_object(
    processor: &Processor,
    object: &ManualObject,
    record_wait: Duration,
) -> Result<Option<ProcessingOutcome>, PortError> {
    let deadline = Instant::now() + record_wait;
    loop {
        match processor
            .manuals
            .get(&object.user, &object.manual_id)
            .await?
        {
            Some(manual) if manual.key == object.key => break,
            Some(_) => {
                tracing::warn!(key = %object.key, "the manual record names another object; ignored");
                return Ok(None);
            }
            None if Instant::now() >= deadline => {
                tracing::warn!(key = %object.key, "no manual record for this object (a failed or deleted upload); ignored");
                return Ok(None);
            }
            None => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    processor.process(&object.user, &object.manual_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_decoded_and_split_into_owner_and_manual() {
        let object =
            manual_object("manuals/alice%2Bwork/0f8fad5b-d9cb-469f-a165-70867728950e.pdf").unwrap();
        assert_eq!(object.user.as_str(), "alice+work");
        assert_eq!(object.manual_id, "0f8fad5b-d9cb-469f-a165-70867728950e");
        assert_eq!(
            object.key,
            "manuals/alice+work/0f8fad5b-d9cb-469f-a165-70867728950e.pdf"
        );
    }

    #[test]
    fn other_keys_are_not_manuals() {
        assert_eq!(
            manual_object("manuals/alice/m1.pdf.metadata.json"),
            Err(NotAManual::Sidecar)
        );
        assert_eq!(
            manual_object("audio/alice/q.wav"),
            Err(NotAManual::OtherKey)
        );
        assert_eq!(
            manual_object("manuals/alice/sub/m1.pdf"),
            Err(NotAManual::OtherKey)
        );
        assert_eq!(
            manual_object("manuals/../m1.pdf"),
            Err(NotAManual::OtherKey)
        );
        assert_eq!(
            manual_object("manuals/alice/m1.exe"),
            Err(NotAManual::OtherKey)
        );
        assert_eq!(
            manual_object("manuals/alice/%FF.pdf"),
            Err(NotAManual::BadEncoding)
        );
        assert_eq!(
            manual_object("manuals/a+b/m 1.pdf"),
            Err(NotAManual::OtherKey)
        );
    }
}
