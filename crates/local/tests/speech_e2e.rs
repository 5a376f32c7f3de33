//! Spoken questions end to end through manuel-local's offline speech recognition: questions
//! are spoken by espeak-ng and converted by sox (as a phone would record them: 16 kHz mono WAV,
//! 44.1 kHz stereo WAV, FLAC), sent over HTTP, transcribed by Whisper and answered from the
//! right page. `make test` installs espeak-ng and sox.

mod common;

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Server, TestResult, assert_error, fixture, spoken};
use serde_json::{Value, json};

fn phone_wav(dir: &Path, text: &str) -> TestResult<Vec<u8>> {
    spoken(
        dir,
        text,
        "question.wav",
        &["-r", "16000", "-c", "1", "-b", "16"],
        &[],
    )
}

/// Lower-case words without punctuation.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The word error rate of `heard` against `said` (edit distance over words / words said).
fn word_error_rate(said: &str, heard: &str) -> f64 {
    let (said, heard) = (words(said), words(heard));
    let mut previous: Vec<usize> = (0..=heard.len()).collect();
    for (i, word) in said.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, other) in heard.iter().enumerate() {
            let substitution = previous[j] + usize::from(word != other);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[heard.len()] as f64 / said.len().max(1) as f64
}

async fn ask_aloud(
    server: &Server,
    token: &str,
    clip: &[u8],
    content_type: &str,
) -> TestResult<Value> {
    let (status, answer) = server
        .post(
            token,
            "/api/query",
            &json!({"file_data": STANDARD.encode(clip), "content_type": content_type}),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    Ok(answer)
}

#[tokio::test]
async fn spoken_questions_are_transcribed_and_answered_from_the_right_page() -> TestResult {
    let dir = tempfile::tempdir()?;
    let audio = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let alice = server.token("alice")?;
    let coffee = server
        .upload_ready(&alice, "coffee-machine.md", &fixture("coffee-machine.md"))
        .await?;
    let printer = server
        .upload_ready(
            &alice,
            "Acme LaserJet 200.pdf",
            &fixture("printer-manual.pdf"),
        )
        .await?;

    // /api/transcribe: the words, charged as one transcription.
    let said = "How do I clean the milk frother?";
    let clip = phone_wav(audio.path(), said)?;
    let (status, body) = server
        .post(
            &alice,
            "/api/transcribe",
            &json!({"audio_data": STANDARD.encode(&clip), "content_type": "audio/wav"}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let heard = body["transcription"].as_str().unwrap_or_default();
    assert!(
        word_error_rate(said, heard) <= 0.2,
        "said {said:?}, heard {heard:?}"
    );
    assert_eq!(body["format"], "wav");
    assert_eq!(body["usage"]["daily_used"], 1, "{body}");

    // Spoken questions on /api/query: the transcript is the question, answered with citations.
    // "descale" is the word tiny.en mishears without the manual's vocabulary as its prompt.
    let cases = [
        ("How do I descale the coffee machine?", &coffee, None),
        (
            "What is the warranty period of the printer?",
            &printer,
            Some(5),
        ),
    ];
    for (said, manual, page) in cases {
        let answer = ask_aloud(
            &server,
            &alice,
            &phone_wav(audio.path(), said)?,
            "audio/wav",
        )
        .await?;
        let heard = answer["question"].as_str().unwrap_or_default();
        assert!(
            word_error_rate(said, heard) <= 0.25,
            "said {said:?}, heard {heard:?}"
        );
        assert_eq!(answer["context_found"], true, "{answer}");
        assert_eq!(answer["sources"][0]["manual_id"], manual["id"], "{answer}");
        if let Some(page) = page {
            assert_eq!(answer["sources"][0]["page_number"], page, "{answer}");
        }
    }

    // The same question recorded as 44.1 kHz stereo and as FLAC: decoded, resampled, heard.
    let said = "How do I descale the coffee machine?";
    for (clip, content_type) in [
        (
            spoken(
                audio.path(),
                said,
                "question.wav",
                &["-r", "44100", "-c", "2", "-b", "16"],
                &[],
            )?,
            "audio/wav",
        ),
        (
            spoken(
                audio.path(),
                said,
                "question.flac",
                &["-r", "22050", "-c", "1"],
                &[],
            )?,
            "audio/flac",
        ),
    ] {
        let answer = ask_aloud(&server, &alice, &clip, content_type).await?;
        let heard = answer["question"].as_str().unwrap_or_default();
        assert!(
            word_error_rate(said, heard) <= 0.25,
            "{content_type}: heard {heard:?}"
        );
        assert_eq!(answer["sources"][0]["manual_id"], coffee["id"], "{answer}");
    }

    // Bob has no manuals: his spoken question is transcribed but finds nothing of Alice's.
    let bob = server.token("bob")?;
    let answer = ask_aloud(
        &server,
        &bob,
        &phone_wav(audio.path(), "How do I descale the coffee machine?")?,
        "audio/wav",
    )
    .await?;
    assert_eq!(answer["context_found"], false, "{answer}");
    assert_eq!(answer["sources"], json!([]));
    server.stop()
}

#[tokio::test]
async fn silence_and_formats_this_server_cannot_hear_are_refused_and_cost_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let token = server.token("vera")?;

    let silence = manuel_core::audio::silent_wav(16_000, 2.0);
    let (status, body) = server
        .post(
            &token,
            "/api/transcribe",
            &json!({"audio_data": STANDARD.encode(&silence), "content_type": "audio/wav"}),
        )
        .await?;
    assert_error(status, &body, 400, "validation_failed");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("No speech"),
        "{body}"
    );

    // A well-formed three-second Ogg/Opus clip: accepted by the cloud, not decodable here.
    let opus = manuel_core::audio::ogg_opus_clip(3);
    for path in ["/api/transcribe", "/api/query"] {
        let field = if path == "/api/query" {
            "file_data"
        } else {
            "audio_data"
        };
        let (status, body) = server
            .post(
                &token,
                path,
                &json!({field: STANDARD.encode(&opus), "content_type": "audio/ogg"}),
            )
            .await?;
        assert_error(status, &body, 415, "unsupported_media_type");
        assert!(
            body["error"].as_str().unwrap_or_default().contains("ogg"),
            "{body}"
        );
    }

    let (_, quota) = server.get(&token, "/api/user/quota").await?;
    assert_eq!(quota["quotas"]["daily"]["used"], 0, "{quota}");
    server.stop()
}
