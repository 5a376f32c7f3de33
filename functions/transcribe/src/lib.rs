//! The transcribe function: `POST /api/transcribe` turns a spoken clip into text. The clip is
//! checked by its bytes and the quota reserved before any paid work; a failure on our side
//! gives the reservation back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use base64::Engine;
use bytes::Bytes;
use manuel_core::ApiError;
use manuel_core::audio::{AudioClip, AudioError, AudioLimits};
use manuel_core::auth::AuthenticatedUser;
use manuel_core::deadline::Deadline;
use manuel_core::domain::UserId;
use manuel_core::json::JsonBody;
use manuel_core::ports::{Transcriber, UsageStore};
use manuel_core::request_id::RequestId;
use manuel_core::security::Security;
use manuel_core::telemetry::{self, Metric};
use manuel_core::usage::{
    Clock, CostRecord, Operation, Pricing, QuotaLimits, QuotaWindows, Reservation, UsageNumbers,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct TranscribeDeps {
    pub usage: Arc<dyn UsageStore>,
    pub quota: QuotaLimits,
    pub pricing: Pricing,
    pub clock: Arc<dyn Clock>,
    /// `None` where this server has no speech recognition: requests get a 503 that says so.
    pub transcriber: Option<Arc<dyn Transcriber>>,
    pub limits: AudioLimits,
    pub security: Security,
}

/// The longest spoken question the query function accepts. Streaming transcription runs at
/// real time, so a question takes its own length to hear plus about a second for the final
/// transcript; retrieval (0.6 s) and a long answer (12 s) must still fit before API Gateway's
/// 29 s, less the 2 s kept for answering. 12 s of speech is about 30 words, longer than a
/// question about a manual needs. Measured, not assumed: crates/lambda-harness/tests/latency.rs
/// asks a question of this length through the query binary, with every dependency at its
/// realistic latency, and checks it is answered inside the 29 s.
pub const MAX_SPOKEN_QUESTION: Duration = Duration::from_secs(12);

/// The longest clip `POST /api/transcribe` accepts: transcription at real time, its final
/// result and the response inside API Gateway's 29 s.
pub const MAX_TRANSCRIBED_CLIP: Duration = Duration::from_secs(25);

/// `limits` with the longest accepted clip held to `ceiling` (a configured
/// `MAX_AUDIO_DURATION_SECONDS` above it would accept clips whose answer cannot arrive).
pub fn capped(limits: AudioLimits, ceiling: Duration) -> AudioLimits {
    if limits.max_duration > ceiling {
        tracing::warn!(
            configured_seconds = limits.max_duration.as_secs(),
            ceiling_seconds = ceiling.as_secs(),
            "MAX_AUDIO_DURATION_SECONDS is above what fits the request deadline; the ceiling applies"
        );
    }
    AudioLimits {
        max_duration: limits.max_duration.min(ceiling),
        ..limits
    }
}

/// The largest request body: the audio limit in base64 plus room for the JSON around it.
pub fn request_body_limit(limits: &AudioLimits) -> usize {
    limits.max_bytes.div_ceil(3) * 4 + 16 * 1024
}

pub fn router(deps: TranscribeDeps) -> Router {
    let routes = Router::new().route("/api/transcribe", post(transcribe));
    let body_limit = request_body_limit(&deps.limits);
    deps.security
        .protect_with_body_limit(routes, body_limit)
        .with_state(deps)
}

#[derive(Deserialize)]
struct TranscribeRequest {
    #[serde(default)]
    audio_data: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    /// Sent by older clients; the format comes from the bytes.
    #[serde(default)]
    #[allow(dead_code)]
    filename: Option<String>,
}

async fn transcribe(
    State(deps): State<TranscribeDeps>,
    AuthenticatedUser(user): AuthenticatedUser,
    Extension(request_id): Extension<RequestId>,
    deadline: Option<Extension<Deadline>>,
    JsonBody(request): JsonBody<TranscribeRequest>,
) -> Result<Json<Value>, ApiError> {
    let (audio, clip) = spoken_audio(
        "audio_data",
        request.audio_data.as_deref(),
        request.content_type.as_deref(),
        &deps.limits,
    )?;
    let transcriber = deps
        .transcriber
        .as_ref()
        .ok_or_else(no_speech_recognition)?;
    let size = audio.len();
    let charged = charged_transcription(
        transcriber.as_ref(),
        deps.usage.as_ref(),
        deps.quota,
        deps.clock.as_ref(),
        &user,
        audio,
        &clip,
        deadline.map(|Extension(deadline)| deadline),
    )
    .await?;
    let cost = deps.pricing.cost(
        &request_id.0,
        charged.at,
        Operation::Transcribe,
        "transcribe",
        0,
        0,
        0,
        clip.billable_seconds(size),
    );
    record_cost(deps.usage.as_ref(), &user, &cost).await;
    Ok(Json(json!({
        "transcription": charged.transcript,
        "usage": charged.usage,
        "cost": {
            "total_cost_eur": cost.total_cost,
            "currency": deps.pricing.currency,
            "audio_seconds": (cost.audio_seconds * 100.0).round() / 100.0,
            "operation": cost.operation.as_str(),
        },
        "duration_seconds": clip.duration.map(|duration| (duration.as_secs_f64() * 100.0).round() / 100.0),
        "format": clip.format.as_str(),
        "request_id": request_id.0,
    })))
}

/// The 503 of a server without speech recognition (manuel-local built without it).
pub fn no_speech_recognition() -> ApiError {
    ApiError::ServiceUnavailable {
        message: "Speech recognition is not available on this server; send the question as text."
            .to_owned(),
        retry_after_secs: 3600,
    }
}

/// Decodes and checks a base64 clip named `field`, declared as `content_type`.
pub fn spoken_audio(
    field: &str,
    data: Option<&str>,
    content_type: Option<&str>,
    limits: &AudioLimits,
) -> Result<(Bytes, AudioClip), ApiError> {
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
    // Browsers hand over data URLs; the part after the comma is the audio.
    let data = match data.split_once(";base64,") {
        Some((prefix, rest)) if prefix.starts_with("data:") => rest,
        _ => data,
    };
    if data.len() > limits.max_bytes.div_ceil(3) * 4 + 4 {
        return Err(ApiError::PayloadTooLarge(format!(
            "The audio is larger than the limit of {} bytes.",
            limits.max_bytes
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| ApiError::validation(field, format!("`{field}` is not valid base64.")))?;
    let clip =
        manuel_core::audio::check(&bytes, content_type, limits).map_err(|error| match error {
            AudioError::TooLarge { .. } => ApiError::PayloadTooLarge(error.to_string()),
            AudioError::UnsupportedContentType { .. } | AudioError::Mislabelled { .. } => {
                ApiError::validation("content_type", error.to_string())
            }
            other => ApiError::validation(field, other.to_string()),
        })?;
    Ok((Bytes::from(bytes), clip))
}

/// A transcript paid for with one reservation of `user`'s quota.
pub struct ChargedTranscript {
    pub transcript: String,
    pub usage: UsageNumbers,
    /// When the reservation was made (the cost record's time).
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Reserves one `transcribe` operation, transcribes, and gives the reservation back when the
/// transcription fails on our side or hears no words. The latency is measured either way.
#[allow(clippy::too_many_arguments)]
pub async fn charged_transcription(
    transcriber: &dyn Transcriber,
    usage: &dyn UsageStore,
    quota: QuotaLimits,
    clock: &dyn Clock,
    user: &UserId,
    audio: Bytes,
    clip: &AudioClip,
    deadline: Option<Deadline>,
) -> Result<ChargedTranscript, ApiError> {
    if !transcriber.accepts(clip.format) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "This server cannot transcribe {} audio; record WAV, FLAC or M4A (AAC) instead.",
            clip.format.as_str()
        )));
    }
    let at = clock.now();
    let windows = QuotaWindows::at(at);
    let numbers = match usage
        .reserve(user, &windows, quota, Operation::Transcribe)
        .await?
    {
        Reservation::Granted(numbers) => numbers,
        Reservation::Refused(numbers) => return Err(numbers.refusal(&windows)),
    };
    let started = Instant::now();
    let result = transcriber.transcribe(user, audio, clip, deadline).await;
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
            let transcript = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if !transcript.is_empty() {
                return Ok(ChargedTranscript {
                    transcript,
                    usage: numbers,
                    at,
                });
            }
            ApiError::validation("audio_data", "No speech was recognised in the audio.")
        }
        Err(error) => ApiError::from(error),
    };
    if let Err(error) = usage.refund(user, &windows).await {
        tracing::error!(%error, "could not refund a quota reservation");
    }
    Err(refused)
}

async fn record_cost(usage: &dyn UsageStore, user: &UserId, cost: &CostRecord) {
    if let Err(error) = usage.record_cost(user, cost).await {
        tracing::error!(%error, "could not record the cost of a transcription");
    }
}
