//! S3 `ObjectCreated` notifications for manuals: which manual an object key belongs to.

use std::time::{Duration, Instant};

use manuel_core::PortError;
use manuel_core::domain::{ProcessingOutcome, UserId};

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

/// Processes the manuals named by the keys of one S3 event. Keys that are not manuals (metadata
/// sidecars, other prefixes) are skipped. The upload stores the file before the record, so the
/// event can arrive first: the record is waited for, at most `record_wait`. Returns the outcome
/// per processed key; a dependency failure is returned after every key was tried, so the event
/// is delivered again (processing a finished manual again does nothing).
pub async fn process_keys(
    processor: &Processor,
    encoded_keys: &[String],
    record_wait: Duration,
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
        match process_object(processor, &object, record_wait).await {
            Ok(outcome) => outcomes.push((object.key, outcome)),
            Err(error) => {
                tracing::error!(key = %object.key, %error, "processing failed; the event will be retried");
                failure = Some(error);
            }
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(outcomes),
    }
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
