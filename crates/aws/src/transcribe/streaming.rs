//! Amazon Transcribe streaming (StartStreamTranscription over HTTP/2): the clip is sent as a
//! stream of audio events and the transcript comes back on the same connection, without an
//! upload, a job or polling. Transcribe streams three encodings: 16-bit little-endian PCM
//! without a header, FLAC, and Opus in Ogg.
//!
//! HTTP/2: the SDK's default HTTPS client (`default-https-client`: hyper 1 over rustls)
//! offers `h2` and `http/1.1` by ALPN and speaks HTTP/2 when the endpoint picks it, which
//! Transcribe's streaming endpoint does (aws-smithy-http-client 1.5,
//! `client/pool/establish/transport.rs`, `HTTP_ALPN_PROTOCOLS`).

use aws_sdk_transcribestreaming::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_transcribestreaming::primitives::Blob;
use aws_sdk_transcribestreaming::primitives::event_stream::EventStreamSender;
use aws_sdk_transcribestreaming::types::error::{AudioStreamError, TranscriptResultStreamError};
use aws_sdk_transcribestreaming::types::{
    AudioEvent, AudioStream, LanguageCode, MediaEncoding, TranscriptResultStream,
};
use aws_smithy_types::event_stream::RawMessage;
use bytes::Bytes;
use manuel_core::PortError;
use manuel_core::audio::{self, AudioClip, AudioFormat};

use super::DEPENDENCY;
use crate::sdk_error::{sdk_error, sdk_error_coded};

/// The largest audio event sent. Transcribe takes at most one second of audio per event; 8 KiB
/// is 0.26 s of 16 kHz PCM (0.5 s at 8 kHz, the lowest rate a clip may have).
pub(super) const MAX_CHUNK: usize = 8 * 1024;
/// The smallest event for compressed audio, whatever its bit rate.
const MIN_CHUNK: usize = 512;

/// What Transcribe streaming is sent for one clip.
#[derive(Clone, Debug)]
pub(super) struct StreamPlan {
    pub encoding: MediaEncoding,
    pub sample_rate: u32,
    /// The bytes sent: the PCM samples for a WAV, the whole file for FLAC and Ogg/Opus.
    pub audio: Bytes,
    /// Bytes per audio event.
    pub chunk: usize,
}

/// How `clip` can be streamed, or why it goes to a batch job instead.
pub(super) fn plan(audio: &Bytes, clip: &AudioClip) -> Result<StreamPlan, &'static str> {
    let (encoding, sample_rate, audio) = match clip.format {
        // Transcribe's PCM is raw samples: the RIFF header and every chunk but `data` go, and
        // the samples become 16-bit mono. A stereo (or wider) WAV is downmixed by averaging
        // its channels rather than sent to the slower batch path: a question is one voice,
        // and without channel identification Transcribe would hear interleaved samples.
        AudioFormat::Wav => {
            let pcm = audio::wav_pcm16_mono(audio)
                .map_err(|_| "the WAV cannot be converted to 16-bit PCM")?;
            (MediaEncoding::Pcm, pcm.sample_rate, pcm.samples)
        }
        // FLAC and Opus are sent as they are, so their channels cannot be mixed here: a
        // multi-channel file goes to the batch job, which mixes them itself (streaming would
        // need channel identification and would transcribe each channel apart).
        AudioFormat::Flac | AudioFormat::OggOpus => {
            if clip.channels.is_none_or(|channels| channels > 1) {
                return Err("streaming takes one channel of FLAC or Opus");
            }
            let encoding = if clip.format == AudioFormat::Flac {
                MediaEncoding::Flac
            } else {
                MediaEncoding::OggOpus
            };
            let rate = clip
                .sample_rate
                .ok_or("the container states no sample rate")?;
            (encoding, rate, audio.clone())
        }
        AudioFormat::Mp4 | AudioFormat::WebM => {
            return Err("Transcribe streaming does not take MP4 or WebM");
        }
    };
    if !(8_000..=48_000).contains(&sample_rate) {
        return Err("the sample rate is outside 8-48 kHz");
    }
    let chunk = match (encoding.clone(), clip.duration) {
        (MediaEncoding::Pcm, _) | (_, None) => MAX_CHUNK,
        // Compressed audio: about half a second per event, from the clip's mean bit rate.
        (_, Some(duration)) => {
            let per_second = audio.len() as f64 / duration.as_secs_f64().max(0.001);
            ((per_second / 2.0) as usize).clamp(MIN_CHUNK, MAX_CHUNK)
        }
    };
    Ok(StreamPlan {
        encoding,
        sample_rate,
        audio,
        chunk,
    })
}

/// Sends `plan` to Transcribe streaming and joins the final results' transcripts with spaces,
/// in the order they arrive; partial results (hypotheses Transcribe may still revise) are
/// skipped. A clip without speech gives an empty transcript, as a batch job does.
///
/// The audio is sent as fast as the connection takes it: a recorded question is sent whole
/// rather than paced at real time, which would add its own length to the wait.
pub(super) async fn transcribe(
    client: &aws_sdk_transcribestreaming::Client,
    language: LanguageCode,
    plan: StreamPlan,
) -> Result<String, PortError> {
    let events: Vec<Result<AudioStream, AudioStreamError>> = (0..plan.audio.len())
        .step_by(plan.chunk.max(1))
        .map(|at| {
            let end = (at + plan.chunk).min(plan.audio.len());
            let chunk = Blob::new(plan.audio.slice(at..end).to_vec());
            Ok(AudioStream::AudioEvent(
                AudioEvent::builder().audio_chunk(chunk).build(),
            ))
        })
        .collect();
    let sample_rate = i32::try_from(plan.sample_rate)
        .map_err(|_| PortError::failed("a sample rate beyond i32"))?;
    let output = client
        .start_stream_transcription()
        .language_code(language)
        .media_encoding(plan.encoding)
        .media_sample_rate_hertz(sample_rate)
        .audio_stream(EventStreamSender::from(futures_util::stream::iter(events)))
        .send()
        .await
        .map_err(|error| sdk_error(DEPENDENCY, error))?;
    let mut results = output.transcript_result_stream;
    let mut parts: Vec<String> = Vec::new();
    while let Some(event) = results.recv().await.map_err(stream_error)? {
        let TranscriptResultStream::TranscriptEvent(event) = event else {
            continue;
        };
        let finals = event
            .transcript
            .and_then(|transcript| transcript.results)
            .unwrap_or_default()
            .into_iter()
            .filter(|result| !result.is_partial);
        for result in finals {
            let text = result
                .alternatives
                .and_then(|alternatives| alternatives.into_iter().next())
                .and_then(|best| best.transcript)
                .unwrap_or_default();
            let text = text.trim();
            if !text.is_empty() {
                parts.push(text.to_owned());
            }
        }
    }
    Ok(parts.join(" "))
}

/// A failure while the results stream: an exception Transcribe sent in the stream (its type
/// is the error's variant; the payload rarely carries a code) or a broken connection.
fn stream_error(error: SdkError<TranscriptResultStreamError, RawMessage>) -> PortError {
    sdk_error_coded(DEPENDENCY, error, |error| {
        error
            .code()
            .map(str::to_owned)
            .or_else(|| exception_type(error).map(str::to_owned))
    })
}

fn exception_type(error: &TranscriptResultStreamError) -> Option<&'static str> {
    match error {
        TranscriptResultStreamError::BadRequestException(_) => Some("BadRequestException"),
        TranscriptResultStreamError::LimitExceededException(_) => Some("LimitExceededException"),
        TranscriptResultStreamError::InternalFailureException(_) => {
            Some("InternalFailureException")
        }
        TranscriptResultStreamError::ConflictException(_) => Some("ConflictException"),
        TranscriptResultStreamError::ServiceUnavailableException(_) => {
            Some("ServiceUnavailableException")
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn clip(format: AudioFormat, rate: u32, channels: u16, seconds: f64) -> AudioClip {
        AudioClip {
            format,
            sample_rate: Some(rate),
            channels: Some(channels),
            duration: Some(Duration::from_secs_f64(seconds)),
        }
    }

    #[test]
    fn wav_streams_as_pcm_and_mp4_webm_and_multichannel_flac_do_not() {
        let wav = Bytes::from(audio::pcm_wav(16_000, 2, 16, &[1, 0, 3, 0, 5, 0, 7, 0]));
        let pcm = plan(&wav, &clip(AudioFormat::Wav, 16_000, 2, 1.0)).unwrap();
        assert_eq!(pcm.encoding, MediaEncoding::Pcm);
        assert_eq!(pcm.sample_rate, 16_000);
        assert_eq!(&pcm.audio[..], &[2, 0, 6, 0]);
        assert_eq!(pcm.chunk, MAX_CHUNK);

        let file = Bytes::from(vec![0u8; 32_000]);
        let flac = plan(&file, &clip(AudioFormat::Flac, 44_100, 1, 4.0)).unwrap();
        assert_eq!(flac.encoding, MediaEncoding::Flac);
        // 8 kB/s: half a second per event.
        assert_eq!((flac.sample_rate, flac.chunk), (44_100, 4_000));
        let opus = plan(&file, &clip(AudioFormat::OggOpus, 48_000, 1, 1.0)).unwrap();
        assert_eq!(opus.encoding, MediaEncoding::OggOpus);
        assert_eq!(opus.chunk, MAX_CHUNK);

        for (format, channels) in [
            (AudioFormat::Flac, 2),
            (AudioFormat::OggOpus, 2),
            (AudioFormat::Mp4, 1),
            (AudioFormat::WebM, 1),
        ] {
            assert!(plan(&file, &clip(format, 48_000, channels, 4.0)).is_err());
        }
        // Not a WAV after all: the batch job decides.
        assert!(plan(&file, &clip(AudioFormat::Wav, 16_000, 1, 1.0)).is_err());
    }
}
