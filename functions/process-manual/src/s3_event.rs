//! S3 `ObjectCreated` notifications for manuals: which manual an object key belongs to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use manuel_core::PortError;
use manuel_core::deadline;
use manuel_core::domain::{ProcessingOutcome, UserId};
use manuel_core::failure::FailureReport;
use manuel_core::ports::DeadLetters;
use manuel_core::resilience::RetryPolicy;
use manuel_core::storage_keys;
use manuel_core::telemetry::user_hash;

use crate::Processor;

/// A manual object named by an event: `manuals/<owner>/<manual_id>.<ext>`, its owner a
/// pseudonym ([`manuel_core::storage_keys`]; the user id itself in keys of the earlier layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualObject {
    pub owner: String,
    pub manual_id: String,
    pub key: String,
}

/// A manual object and the user it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedObject {
    pub user: UserId,
    pub object: ManualObject,
}

/// Why an event record is skipped rather than processed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAManual {
    #[error("the key is not valid percent-encoding")]
    BadEncoding,
    #[error("the key is a metadata sidecar")]
    Sidecar,
    #[error("the key is not of the form manuals/<owner>/<manual>.<ext>")]
    OtherKey,
    #[error("no owner is recorded for this object")]
    NoOwner,
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
    let (owner, file) = storage_keys::manual_key_parts(&key).ok_or(NotAManual::OtherKey)?;
    UserId::parse(owner).ok_or(NotAManual::OtherKey)?;
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
        owner: owner.to_owned(),
        manual_id: manual_id.to_owned(),
        key,
    })
}

/// Whose `object` is. A key of the current layout names its owner by a pseudonym: the owner is
/// the one the knowledge base recorded beside the file (Bedrock's metadata sidecar, written
/// before the file could arrive), and it must be the one the key names. A key of the earlier
/// layout names its owner itself, and is taken at its word without reading a sidecar it may
/// not have: without `s3:ListBucket`, which this function does not hold, S3 answers a missing
/// object with 403, not 404
/// (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html>, Permissions).
pub async fn owner_of(
    processor: &Processor,
    object: ManualObject,
) -> Result<Result<OwnedObject, NotAManual>, PortError> {
    if !storage_keys::is_pseudonym(&object.owner) {
        return Ok(match UserId::parse(&object.owner) {
            Some(user) => Ok(OwnedObject { user, object }),
            None => Err(NotAManual::OtherKey),
        });
    }
    let user = match processor.knowledge_base.owner_of(&object.key).await? {
        Some(user) if storage_keys::names_owner(&object.owner, &user) => user,
        Some(_) | None => return Ok(Err(NotAManual::NoOwner)),
    };
    Ok(Ok(OwnedObject { user, object }))
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
        let resolved = match manual_object(encoded) {
            Ok(object) => owner_of(processor, object).await,
            Err(reason) => Ok(Err(reason)),
        };
        let owned = match resolved {
            Ok(Ok(owned)) => owned,
            Ok(Err(reason)) => {
                tracing::info!(key = %encoded, %reason, "object skipped");
                continue;
            }
            Err(error) => {
                // The owner could not be read: the event is delivered again.
                tracing::error!(key = %encoded, %error, "the object's owner could not be read; the event will be retried");
                failure = Some(error);
                continue;
            }
        };
        let mut attempt = 1;
        let result = loop {
            match process_object(processor, &owned, handling.record_wait).await {
                Ok(outcome) => break Ok(outcome),
                Err(error) => {
                    let pause = handling.attempts.delay(attempt);
                    if attempt < handling.attempts.max_attempts
                        && deadline::leaves_time_for(pause, Duration::from_secs(5))
                    {
                        tracing::warn!(key = %owned.object.key, attempt, %error, "processing failed; trying again");
                        tokio::time::sleep(pause).await;
                        attempt += 1;
                        continue;
                    }
                    break Err((error, attempt));
                }
            }
        };
        match result {
            Ok(outcome) => outcomes.push((owned.object.key, outcome)),
            Err((error, attempts)) => match &handling.dead_letters {
                Some(dead_letters) => {
                    match give_up(
                        processor,
                        dead_letters.as_ref(),
                        &owned,
                        &error,
                        attempts,
                        handling,
                    )
                    .await
                    {
                        Ok(outcome) => outcomes.push((owned.object.key, Some(outcome))),
                        Err(unreported) => failure = Some(unreported),
                    }
                }
                None => {
                    tracing::error!(key = %owned.object.key, %error, "processing failed; the event will be retried");
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

/// Sends the documented failure report for `owned`, then marks its manual `failed`. An error
/// only when the report could not be sent: then the event must be retried.
async fn give_up(
    processor: &Processor,
    dead_letters: &dyn DeadLetters,
    owned: &OwnedObject,
    error: &PortError,
    attempts: u32,
    handling: &EventHandling,
) -> Result<ProcessingOutcome, PortError> {
    let mut report = FailureReport::from_error("process-manual", error, attempts);
    report.request_id = handling.request_id.clone();
    let (user, object) = (&owned.user, &owned.object);
    report.user_hash = Some(user_hash(user));
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
        .finish_processing(user, &object.manual_id, &outcome)
        .await
    {
        tracing::warn!(key = %object.key, %status_error, "the manual could not be marked failed");
    }
    Ok(outcome)
}

async fn process_object(
    processor: &Processor,
    owned: &OwnedObject,
    record_wait: Duration,
) -> Result<Option<ProcessingOutcome>, PortError> {
    let (user, object) = (&owned.user, &owned.object);
    let deadline = Instant::now() + record_wait;
    loop {
        match processor.manuals.get(user, &object.manual_id).await? {
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
    processor.process(user, &object.manual_id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InProcessIndexer;
    use manuel_core::domain::{DocumentKind, Manual, ManualStatus};
    use manuel_core::ingestion::IngestionLimits;
    use manuel_core::ports::{DocumentReader, KnowledgeBase, ReadError};
    use manuel_core::testing::{MemoryManuals, MemoryObjects, Passages};

    struct NoReader;

    impl DocumentReader for NoReader {
        fn read_pages(
            &self,
            _: DocumentKind,
            _: &[u8],
            _: &IngestionLimits,
        ) -> Result<Vec<String>, ReadError> {
            Err(ReadError::Unavailable("not in this test".to_owned()))
        }
    }

    fn processor(knowledge_base: Arc<Passages>) -> Processor {
        Processor {
            objects: Arc::new(MemoryObjects::default()),
            manuals: Arc::new(MemoryManuals::default()),
            knowledge_base: knowledge_base.clone(),
            indexer: Arc::new(InProcessIndexer {
                reader: Arc::new(NoReader),
                knowledge_base,
                limits: IngestionLimits::default(),
            }),
            max_document_bytes: None,
        }
    }

    fn prepared(user: &str, manual_id: &str) -> Manual {
        let user = UserId::parse(user).unwrap();
        let now = chrono::Utc::now();
        Manual {
            key: storage_keys::manual_key(&user, manual_id, DocumentKind::Pdf),
            id: manual_id.to_owned(),
            user_id: user,
            name: "router.pdf".to_owned(),
            kind: DocumentKind::Pdf,
            size_bytes: 10,
            sha256: "a".repeat(64),
            status: ManualStatus::Uploading,
            status_reason: None,
            pages: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn an_object_belongs_to_the_owner_recorded_beside_it() {
        let knowledge_base = Arc::new(Passages::new(Vec::new()));
        let processor = processor(knowledge_base.clone());
        let alice = prepared("alice", "0f8fad5b-d9cb-469f-a165-70867728950e");
        knowledge_base.prepare(&alice).await.unwrap();
        let object = manual_object(&alice.key).unwrap();
        assert!(!object.key.contains("alice"));
        let owned = owner_of(&processor, object).await.unwrap().unwrap();
        assert_eq!(owned.user.as_str(), "alice");
        assert_eq!(owned.object.manual_id, alice.id);

        // Nothing recorded for a pseudonymous key: skipped, never guessed.
        let unknown = prepared("bob", "1f8fad5b-d9cb-469f-a165-70867728950e");
        let object = manual_object(&unknown.key).unwrap();
        assert_eq!(
            owner_of(&processor, object).await.unwrap(),
            Err(NotAManual::NoOwner)
        );

        // A recorded owner the key does not name: skipped.
        let mut mislabelled = prepared("mallory", "2f8fad5b-d9cb-469f-a165-70867728950e");
        mislabelled.key = alice.key.replace(&alice.id, &mislabelled.id);
        knowledge_base.prepare(&mislabelled).await.unwrap();
        let object = manual_object(&mislabelled.key).unwrap();
        assert_eq!(
            owner_of(&processor, object).await.unwrap(),
            Err(NotAManual::NoOwner)
        );
    }

    #[tokio::test]
    async fn a_key_of_the_earlier_layout_names_its_owner_itself() {
        let processor = processor(Arc::new(Passages::new(Vec::new())));
        let object =
            manual_object("manuals/alice/0f8fad5b-d9cb-469f-a165-70867728950e.pdf").unwrap();
        let owned = owner_of(&processor, object).await.unwrap().unwrap();
        assert_eq!(owned.user.as_str(), "alice");
    }

    #[test]
    fn keys_are_decoded_and_split_into_owner_and_manual() {
        let object =
            manual_object("manuals/alice%2Bwork/0f8fad5b-d9cb-469f-a165-70867728950e.pdf").unwrap();
        assert_eq!(object.owner, "alice+work");
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
