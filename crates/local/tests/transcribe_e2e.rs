//! `POST /api/transcribe` on manuel-local: every kind of bad audio is refused by its bytes with
//! a clear 400 naming the field, before any quota is taken. (Good clips: `speech_e2e.rs`.)

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Server, TestResult, assert_error};
use serde_json::json;

#[tokio::test]
async fn bad_audio_is_refused_by_its_bytes_before_any_quota_is_taken() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(dir.path(), &[], &[("MAX_AUDIO_DURATION_SECONDS", "30")])?;
    let token = server.token("vera")?;
    let clip = manuel_core::audio::silent_wav(16_000, 2.0);
    let cases = [
        (
            json!({"content_type": "audio/wav"}),
            "audio_data",
            "required",
        ),
        (
            json!({"audio_data": "", "content_type": "audio/wav"}),
            "audio_data",
            "required",
        ),
        (
            json!({"audio_data": "@@@", "content_type": "audio/wav"}),
            "audio_data",
            "base64",
        ),
        (
            json!({"audio_data": STANDARD.encode(&clip[..5000]), "content_type": "audio/wav"}),
            "audio_data",
            "truncated",
        ),
        (
            json!({"audio_data": STANDARD.encode(&clip), "content_type": "audio/webm"}),
            "content_type",
            "audio/wav",
        ),
        (
            json!({"audio_data": STANDARD.encode(&clip), "content_type": "text/plain"}),
            "content_type",
            "not an audio format",
        ),
        (
            json!({"audio_data": STANDARD.encode(b"%PDF-1.7 hello"), "content_type": "audio/wav"}),
            "audio_data",
            "supported format",
        ),
        (
            json!({"audio_data": STANDARD.encode(manuel_core::audio::silent_wav(16_000, 0.3)), "content_type": "audio/wav"}),
            "audio_data",
            "at least",
        ),
        (
            json!({"audio_data": STANDARD.encode(manuel_core::audio::silent_wav(16_000, 31.0)), "content_type": "audio/wav"}),
            "audio_data",
            "the limit is 30 s",
        ),
    ];
    for (body, field, says) in cases {
        let (status, response) = server.post(&token, "/api/transcribe", &body).await?;
        assert_error(status, &response, 400, "validation_failed");
        assert_eq!(response["details"]["field"], field, "{body}: {response}");
        assert!(
            response["error"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{response} should say {says:?}"
        );
    }

    let (_, quota) = server.get(&token, "/api/user/quota").await?;
    assert_eq!(quota["quotas"]["daily"]["used"], 0, "{quota}");
    server.stop()
}
