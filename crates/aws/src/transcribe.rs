//! Amazon Transcribe, by the fastest path the clip allows:
//!
//! - streaming ([`streaming`]) for what StartStreamTranscription takes: WAV (sent as 16-bit PCM),
//!   FLAC and Ogg/Opus with one channel, a browser's WebM/Opus rewrapped as Ogg/Opus, and
//!   MP4/M4A whose AAC is decoded to PCM here. No upload, no job, no polling; the audio is
//!   paced at real time, so a clip takes about its own length plus the final result.
//! - batch for the rest (multi-channel FLAC or Opus, an MP4 that cannot be decoded), or for
//!   every clip when streaming is off (`TRANSCRIBE_STREAMING=false`) or the language has no
//!   streaming model: the clip goes to the audio bucket, a job transcribes it into a transcript
//!   object in the same bucket, polled with backoff (a short clip's job takes 10–30 s). The
//!   audio, the transcript and the job are removed afterwards, whatever happened.
//!
//! Either path stops at the invocation's deadline (the one passed in, else the task's
//! [`deadline::current`]) less a margin, and reports its latency as `TranscriptionPathLatency`
//! with the path as a dimension, next to the `transcribe` dependency's `DependencyLatency`.

mod decode;
mod streaming;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_transcribe::error::{DisplayErrorContext, SdkError};
use aws_sdk_transcribe::types::{LanguageCode, Media, MediaFormat, TranscriptionJobStatus};
use bytes::Bytes;
use manuel_core::PortError;
use manuel_core::audio::{AudioClip, AudioFormat};
use manuel_core::deadline::{self, Deadline};
use manuel_core::domain::UserId;
use manuel_core::ports::Transcriber;
use manuel_core::telemetry::{self, Metric};
use serde::Deserialize;

const DEPENDENCY: &str = "transcribe";

#[derive(Clone, Debug)]
pub struct TranscribeSettings {
    /// `AUDIO_BUCKET`: clips and transcripts, with a lifecycle expiry as a backstop.
    pub bucket: String,
    pub language: LanguageCode,
    /// The longest wait for a job when the caller sets no deadline.
    pub max_wait: Duration,
    /// The first pause between polls; it grows by half each round up to `max_poll`.
    pub first_poll: Duration,
    pub max_poll: Duration,
    /// Time kept back from the caller's deadline for cleanup and the response.
    pub deadline_margin: Duration,
}

/// The two ways a clip reaches Amazon Transcribe (the `Path` metric dimension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranscriptionPath {
    Streaming,
    Batch,
}

impl TranscriptionPath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Streaming => "streaming",
            Self::Batch => "batch",
        }
    }
}

impl Default for TranscribeSettings {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            language: LanguageCode::EnUs,
            max_wait: Duration::from_secs(25),
            first_poll: Duration::from_millis(250),
            max_poll: Duration::from_secs(2),
            deadline_margin: Duration::from_secs(2),
        }
    }
}

pub struct AwsTranscriber {
    transcribe: aws_sdk_transcribe::Client,
    s3: aws_sdk_s3::Client,
    settings: TranscribeSettings,
    /// The streaming client and the language in its terms, when streaming is on and Transcribe
    /// streams that language.
    streaming: Option<(
        aws_sdk_transcribestreaming::Client,
        aws_sdk_transcribestreaming::types::LanguageCode,
    )>,
}

fn sdk_error<E>(
    service: &'static str,
    error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> PortError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    crate::sdk_error::sdk_error(service, error)
}

fn media_format(format: AudioFormat) -> MediaFormat {
    match format {
        AudioFormat::Wav => MediaFormat::Wav,
        AudioFormat::Flac => MediaFormat::Flac,
        AudioFormat::OggOpus => MediaFormat::Ogg,
        AudioFormat::Mp4 => MediaFormat::Mp4,
        AudioFormat::WebM => MediaFormat::Webm,
    }
}

/// The transcript file Transcribe writes: `results.transcripts[0].transcript`.
#[derive(Deserialize)]
struct TranscriptFile {
    results: TranscriptResults,
}

#[derive(Deserialize)]
struct TranscriptResults {
    #[serde(default)]
    transcripts: Vec<TranscriptText>,
}

#[derive(Deserialize)]
struct TranscriptText {
    transcript: String,
}

/// Where one job's files live; the id ties them together.
struct JobFiles {
    job_name: String,
    audio_key: String,
    transcript_key: String,
}

impl JobFiles {
    fn new(user: &UserId, format: AudioFormat) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        // The user's id stays out of names Transcribe lists; a hash still groups a user's clips.
        let owner = &telemetry::user_hash(user);
        Self {
            job_name: format!("manuel-{id}"),
            audio_key: format!("audio/{owner}/{id}.{}", format.as_str()),
            transcript_key: format!("transcripts/{owner}/{id}.json"),
        }
    }
}

impl AwsTranscriber {
    pub fn new(
        transcribe: aws_sdk_transcribe::Client,
        s3: aws_sdk_s3::Client,
        settings: TranscribeSettings,
    ) -> Self {
        Self {
            transcribe,
            s3,
            settings,
            streaming: None,
        }
    }

    /// Streams the clips Transcribe streaming takes through `client`; the others (and all of
    /// them, if the language has no streaming model) still go to batch jobs.
    pub fn with_streaming(mut self, client: aws_sdk_transcribestreaming::Client) -> Self {
        let language = self.settings.language.as_str();
        if aws_sdk_transcribestreaming::types::LanguageCode::values().contains(&language) {
            let language = aws_sdk_transcribestreaming::types::LanguageCode::from(language);
            self.streaming = Some((client, language));
        } else {
            tracing::warn!(
                language,
                "Amazon Transcribe has no streaming model for this language; every clip goes to a batch job"
            );
        }
        self
    }

    /// The path `clip` takes, with what streaming would send.
    fn path(&self, audio: &Bytes, clip: &AudioClip) -> Option<streaming::StreamPlan> {
        self.streaming.as_ref()?;
        match streaming::plan(audio, clip) {
            Ok(plan) => Some(plan),
            Err(reason) => {
                tracing::debug!(
                    format = clip.format.as_str(),
                    reason,
                    "transcribing with a batch job"
                );
                None
            }
        }
    }

    async fn batch(
        &self,
        user: &UserId,
        audio: Bytes,
        clip: &AudioClip,
        until: Instant,
    ) -> Result<String, PortError> {
        let files = JobFiles::new(user, clip.format);
        let result = self.run(&files, audio, clip, until).await;
        self.clean_up(&files).await;
        result
    }

    async fn stream(
        &self,
        plan: streaming::StreamPlan,
        until: Instant,
    ) -> Result<String, PortError> {
        let Some((client, language)) = &self.streaming else {
            return Err(PortError::failed(
                "streaming chosen without a streaming client",
            ));
        };
        let session = streaming::transcribe(client, language.clone(), plan);
        match tokio::time::timeout_at(until.into(), session).await {
            Ok(result) => result,
            Err(_) => {
                telemetry::record_dependency(Metric::DependencyErrors, DEPENDENCY, 1.0);
                Err(PortError::Unavailable {
                    service: DEPENDENCY,
                    message: "the streaming transcription did not finish in the time left"
                        .to_owned(),
                })
            }
        }
    }

    async fn run(
        &self,
        files: &JobFiles,
        audio: Bytes,
        clip: &AudioClip,
        until: Instant,
    ) -> Result<String, PortError> {
        let bucket = &self.settings.bucket;
        self.s3
            .put_object()
            .bucket(bucket)
            .key(&files.audio_key)
            .content_type(clip.format.mime_type())
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(audio.into())
            .send()
            .await
            .map_err(|error| sdk_error("s3", error))?;
        let mut start = self
            .transcribe
            .start_transcription_job()
            .transcription_job_name(&files.job_name)
            .language_code(self.settings.language.clone())
            .media_format(media_format(clip.format))
            .media(
                Media::builder()
                    .media_file_uri(format!("s3://{bucket}/{}", files.audio_key))
                    .build(),
            )
            .output_bucket_name(bucket)
            .output_key(&files.transcript_key);
        if let Some(rate) = clip.sample_rate.and_then(|rate| i32::try_from(rate).ok()) {
            start = start.media_sample_rate_hertz(rate);
        }
        start
            .send()
            .await
            .map_err(|error| sdk_error(DEPENDENCY, error))?;

        let mut pause = self.settings.first_poll;
        loop {
            let job = self
                .transcribe
                .get_transcription_job()
                .transcription_job_name(&files.job_name)
                .send()
                .await
                .map_err(|error| sdk_error(DEPENDENCY, error))?;
            let job = job
                .transcription_job
                .ok_or_else(|| PortError::failed("GetTranscriptionJob answered without the job"))?;
            match job.transcription_job_status {
                Some(TranscriptionJobStatus::Completed) => break,
                Some(TranscriptionJobStatus::Failed) => {
                    telemetry::record_dependency(Metric::DependencyErrors, DEPENDENCY, 1.0);
                    return Err(PortError::failed(format!(
                        "the transcription job failed: {}",
                        job.failure_reason.as_deref().unwrap_or("no reason given")
                    )));
                }
                _ => {}
            }
            if Instant::now() + pause >= until {
                telemetry::record_dependency(Metric::DependencyErrors, DEPENDENCY, 1.0);
                return Err(PortError::Unavailable {
                    service: DEPENDENCY,
                    message: "the transcription job did not finish in the time left".to_owned(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause + pause / 2).min(self.settings.max_poll);
        }

        let object = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(&files.transcript_key)
            .send()
            .await
            .map_err(|error| sdk_error("s3", error))?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|error| PortError::Unavailable {
                service: "s3",
                message: format!("reading the transcript: {error}"),
            })?
            .into_bytes();
        let file: TranscriptFile = serde_json::from_slice(&body).map_err(|error| {
            PortError::failed(format!("the transcript file is not readable: {error}"))
        })?;
        Ok(file
            .results
            .transcripts
            .into_iter()
            .map(|text| text.transcript)
            .collect::<Vec<_>>()
            .join(" "))
    }

    /// Removes what a job left behind; failures are logged (the bucket's lifecycle rule and
    /// Transcribe's own retention are the backstop), never returned.
    async fn clean_up(&self, files: &JobFiles) {
        for key in [&files.audio_key, &files.transcript_key] {
            if let Err(error) = self
                .s3
                .delete_object()
                .bucket(&self.settings.bucket)
                .key(key)
                .send()
                .await
            {
                tracing::warn!(key, error = %DisplayErrorContext(&error), "could not delete a transcription file");
            }
        }
        if let Err(error) = self
            .transcribe
            .delete_transcription_job()
            .transcription_job_name(&files.job_name)
            .send()
            .await
        {
            tracing::warn!(job = files.job_name, error = %DisplayErrorContext(&error), "could not delete a transcription job");
        }
    }
}

#[async_trait]
impl Transcriber for AwsTranscriber {
    async fn transcribe(
        &self,
        user: &UserId,
        audio: Bytes,
        clip: &AudioClip,
        deadline: Option<Deadline>,
    ) -> Result<String, PortError> {
        let allowed =
            deadline
                .or_else(deadline::current)
                .map_or(self.settings.max_wait, |deadline| {
                    deadline
                        .remaining(self.settings.deadline_margin)
                        .min(self.settings.max_wait)
                });
        let started = Instant::now();
        let until = started + allowed;
        let (path, result) = match self.path(&audio, clip) {
            Some(plan) => (TranscriptionPath::Streaming, self.stream(plan, until).await),
            None => (
                TranscriptionPath::Batch,
                self.batch(user, audio, clip, until).await,
            ),
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        telemetry::record_dependency(Metric::DependencyLatency, DEPENDENCY, latency_ms);
        telemetry::record_path(Metric::TranscriptionPathLatency, path.as_str(), latency_ms);
        tracing::info!(
            path = path.as_str(),
            format = clip.format.as_str(),
            latency_ms,
            succeeded = result.is_ok(),
            "amazon transcribe finished"
        );
        result
    }
}
