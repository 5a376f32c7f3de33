//! A spoken clip, from the request body to its words: decoded and checked by its bytes
//! ([`decode`]), then transcribed under a quota charge ([`transcribe`]). Shared by the
//! transcribe function (`POST /api/transcribe`) and spoken questions (`POST /api/query`).

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;

use crate::ApiError;
use crate::audio::{AudioClip, AudioError, AudioLimits};
use crate::charge::Charge;
use crate::deadline::Deadline;
use crate::domain::UserId;
use crate::ports::{Transcriber, UsageStore};
use crate::telemetry::{self, Metric};
use crate::usage::{Clock, Operation, QuotaLimits};

/// A clip from a request, checked: its bytes and what they are.
pub struct Clip {
    pub audio: Bytes,
    pub clip: AudioClip,
}

impl Clip {
    /// The seconds billed for it: the decoded duration, or an estimate from its size.
    pub fn billable_seconds(&self) -> f64 {
        self.clip.billable_seconds(self.audio.len())
    }
}

/// The words of a clip, with the charge that paid for hearing them (still to be committed),
/// what the clip was and the seconds billed for it.
pub struct Transcript {
    pub text: String,
    pub charge: Charge,
    pub clip: AudioClip,
    pub audio_seconds: f64,
}

/// The 503 for a server that cannot hear (manuel-local built without speech recognition).
pub fn no_speech_recognition() -> ApiError {
    ApiError::ServiceUnavailable {
        message: "Speech recognition is not available on this server; send the question as text."
            .to_owned(),
        retry_after_secs: 3600,
    }
}

/// The clip in `field` (base64, or a `data:` URL), checked by its bytes against `limits`;
/// `content_type` is what the client said it is. Every refusal names the field.
pub fn decode(
    field: &str,
    data: Option<&str>,
    content_type: Option<&str>,
    limits: &AudioLimits,
) -> Result<Clip, ApiError> {
    let data = data
        .map(str::trim)
        .filter(|data| !data.is_empty())
        .ok_or_else(|| {
            ApiError::validation(
                field,
                format!("`{field}` is required: the audio, base64-encoded."),
            )
        })?;
    let content_type = content_type.map(str::trim).unwrap_or_default();
    let data = match data.split_once(";base64,") {
        Some((prefix, rest)) if prefix.starts_with("data:") => rest,
        _ => data,
    };
    // Refused before decoding: base64 is 4/3 of the bytes.
    if data.len() > limits.max_bytes.div_ceil(3) * 4 + 4 {
        return Err(ApiError::PayloadTooLarge(format!(
            "The audio is larger than the limit of {} bytes.",
            limits.max_bytes
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| ApiError::validation(field, format!("`{field}` is not valid base64.")))?;
    let clip = crate::audio::check(&bytes, content_type, limits).map_err(|error| match error {
        AudioError::TooLarge { .. } => ApiError::PayloadTooLarge(error.to_string()),
        AudioError::UnsupportedContentType { .. } | AudioError::Mislabelled { .. } => {
            ApiError::validation("content_type", error.to_string())
        }
        other => ApiError::validation(field, other.to_string()),
    })?;
    Ok(Clip {
        audio: Bytes::from(bytes),
        clip,
    })
}

/// Who hears a clip and who pays for it.
pub struct Listener<'a> {
    pub transcriber: Option<&'a Arc<dyn Transcriber>>,
    pub usage: &'a Arc<dyn UsageStore>,
    pub quota: QuotaLimits,
    pub clock: &'a dyn Clock,
}

/// Transcribes `clip` for `user`: one `transcribe` operation is reserved first (a full quota
/// is a 429 before anything is heard); a failure, or a clip with no words, gives it back.
pub async fn transcribe(
    listener: Listener<'_>,
    user: &UserId,
    clip: Clip,
    deadline: Option<Deadline>,
) -> Result<Transcript, ApiError> {
    let transcriber = listener.transcriber.ok_or_else(no_speech_recognition)?;
    if !transcriber.accepts(clip.clip.format) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "This server cannot transcribe {} audio; record WAV, FLAC or M4A (AAC) instead.",
            clip.clip.format.as_str()
        )));
    }
    let charge = Charge::reserve(
        listener.usage,
        user,
        listener.quota,
        listener.clock.now(),
        Operation::Transcribe,
    )
    .await?;
    let audio_seconds = clip.billable_seconds();
    let Clip { audio, clip } = clip;
    let started = Instant::now();
    let result = transcriber.transcribe(user, audio, &clip, deadline).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    telemetry::record(Metric::TranscriptionLatency, elapsed_ms);
    tracing::info!(
        format = clip.format.as_str(),
        audio_seconds = clip.duration.map(|duration| duration.as_secs_f64()),
        latency_ms = elapsed_ms,
        succeeded = result.is_ok(),
        "transcription finished"
    );
    let refused = match result {
        Ok(text) => {
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if !text.is_empty() {
                return Ok(Transcript {
                    text,
                    charge,
                    clip,
                    audio_seconds,
                });
            }
            ApiError::validation("audio_data", "No speech was recognised in the audio.")
        }
        Err(error) => ApiError::from(error),
    };
    charge.refund().await;
    Err(refused)
}
