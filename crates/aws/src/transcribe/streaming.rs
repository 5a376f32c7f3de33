//! Amazon Transcribe streaming (StartStreamTranscription over HTTP/2): the clip is sent as a
//! stream of audio events and the transcript comes back on the same connection, without an
//! upload, a job or polling. Transcribe streams three encodings: 16-bit little-endian PCM
//! without a header, FLAC, and Opus in Ogg. A browser's WebM/Opus is rewrapped as Ogg/Opus
//! first ([`manuel_core::ogg_opus`]), its packets not decoded; MP4/M4A with AAC is decoded to
//! PCM ([`super::decode`]).
//!
//! The audio is paced at real time: each event leaves when the audio it holds would start
//! playing, as AWS asks ("Ensure that your stream is as close to real-time as possible",
//! https://docs.aws.amazon.com/transcribe/latest/dg/streaming.html#best-practices), each event
//! holding at most a second of audio
//! (https://docs.aws.amazon.com/transcribe/latest/APIReference/API_streaming_AudioEvent.html).
//! A recorded question therefore takes its own length to transcribe, which is why the longest
//! spoken question is capped (see `manuel_transcribe::MAX_SPOKEN_QUESTION`).
//!
//! HTTP/2: the SDK's default HTTPS client (`default-https-client`: hyper 1 over rustls)
//! offers `h2` and `http/1.1` by ALPN and speaks HTTP/2 when the endpoint picks it, which
//! Transcribe's streaming endpoint does (aws-smithy-http-client 1.5,
//! `client/pool/establish/transport.rs`, `HTTP_ALPN_PROTOCOLS`).

use std::time::Duration;

use aws_sdk_transcribestreaming::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_transcribestreaming::primitives::Blob;
use aws_sdk_transcribestreaming::primitives::event_stream::EventStreamSender;
use aws_sdk_transcribestreaming::types::error::{AudioStreamError, TranscriptResultStreamError};
use aws_sdk_transcribestreaming::types::{
    AudioEvent, AudioStream, LanguageCode, MediaEncoding, TranscriptResultStream,
};
use aws_smithy_types::event_stream::RawMessage;
use bytes::Bytes;
use futures_util::Stream;
use manuel_core::PortError;
use manuel_core::audio::{self, AudioClip, AudioFormat};
use manuel_core::ogg_opus;

use super::DEPENDENCY;
use crate::sdk_error::{sdk_error, sdk_error_coded};

/// The largest audio event sent. Transcribe takes at most one second of audio per event; 8 KiB
/// is 0.26 s of 16 kHz PCM (0.5 s at 8 kHz, the lowest rate a clip may have).
pub(super) const MAX_CHUNK: usize = 8 * 1024;
/// The smallest event for compressed audio, whatever its bit rate.
const MIN_CHUNK: usize = 512;
/// The audio one event holds: small enough to pace closely, large enough to keep the number of
/// signed event-stream messages low.
const CHUNK_SECONDS: f64 = 0.2;

/// What Transcribe streaming is sent for one clip.
#[derive(Clone, Debug)]
pub(super) struct StreamPlan {
    pub encoding: MediaEncoding,
    pub sample_rate: u32,
    /// The bytes sent: the PCM samples for a WAV, the whole file for FLAC and Ogg/Opus, the
    /// rewrapped Ogg/Opus for a WebM.
    pub audio: Bytes,
    /// Bytes per audio event.
    pub chunk: usize,
    /// How long the audio plays: the events are paced over it (`None`: sent unpaced, for the
    /// rare FLAC that records no length).
    pub duration: Option<Duration>,
}

/// How `clip` can be streamed, or why it goes to a batch job instead.
pub(super) fn plan(audio: &Bytes, clip: &AudioClip) -> Result<StreamPlan, &'static str> {
    let (encoding, sample_rate, audio, duration) = match clip.format {
        // Transcribe's PCM is raw samples: the RIFF header and every chunk but `data` go, and
        // the samples become 16-bit mono. A stereo (or wider) WAV is downmixed by averaging
        // its channels rather than sent to the slower batch path: a question is one voice,
        // and without channel identification Transcribe would hear interleaved samples.
        AudioFormat::Wav => {
            let pcm = audio::wav_pcm16_mono(audio)
                .map_err(|_| "the WAV cannot be converted to 16-bit PCM")?;
            let seconds = pcm.samples.len() as f64 / (2.0 * f64::from(pcm.sample_rate.max(1)));
            (
                MediaEncoding::Pcm,
                pcm.sample_rate,
                pcm.samples,
                Some(Duration::from_secs_f64(seconds)),
            )
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
            (encoding, rate, audio.clone(), clip.duration)
        }
        // A browser's recording: its Opus packets, rewrapped in Ogg. Opus cannot be mixed
        // down without decoding, so a stereo recording goes to the batch job.
        AudioFormat::WebM => {
            let ogg = ogg_opus::webm_to_ogg_opus(audio)
                .map_err(|_| "the WebM holds no Opus audio to rewrap")?;
            if ogg.channels > 1 {
                return Err("streaming takes one channel of Opus");
            }
            (
                MediaEncoding::OggOpus,
                ogg_opus::OPUS_RATE,
                ogg.bytes,
                Some(ogg.duration),
            )
        }
        // AAC cannot be streamed as it is: it is decoded to PCM here.
        AudioFormat::Mp4 => {
            let pcm = super::decode::mp4_pcm16_mono(audio)
                .map_err(|_| "the MP4 holds no AAC audio this service can decode")?;
            let seconds = pcm.samples.len() as f64 / (2.0 * f64::from(pcm.sample_rate.max(1)));
            (
                MediaEncoding::Pcm,
                pcm.sample_rate,
                pcm.samples,
                Some(Duration::from_secs_f64(seconds)),
            )
        }
    };
    if !(8_000..=48_000).contains(&sample_rate) {
        return Err("the sample rate is outside 8-48 kHz");
    }
    // About CHUNK_SECONDS of audio per event: whole samples of PCM, else from the clip's mean
    // bit rate.
    let chunk = match (&encoding, duration) {
        (MediaEncoding::Pcm, _) => ((f64::from(sample_rate) * 2.0 * CHUNK_SECONDS) as usize & !1)
            .clamp(MIN_CHUNK, MAX_CHUNK),
        (_, None) => MAX_CHUNK,
        (_, Some(duration)) => {
            let per_second = audio.len() as f64 / duration.as_secs_f64().max(0.001);
            ((per_second * CHUNK_SECONDS).round() as usize).clamp(MIN_CHUNK, MAX_CHUNK)
        }
    };
    Ok(StreamPlan {
        encoding,
        sample_rate,
        audio,
        chunk,
        duration,
    })
}

/// The plan's audio events, each released when the audio before it has had time to play (the
/// first at once): the stream runs at real time, at most one event ahead.
fn paced_events(
    plan: &StreamPlan,
) -> impl Stream<Item = Result<AudioStream, AudioStreamError>> + Send + Sync + 'static {
    let audio = plan.audio.clone();
    let chunk = plan.chunk.max(1);
    let seconds_per_byte = plan
        .duration
        .map(|duration| duration.as_secs_f64() / audio.len().max(1) as f64);
    // Fused: the event-stream sender polls again after the end, which a bare unfold forbids.
    futures_util::StreamExt::fuse(futures_util::stream::unfold(
        (0usize, None::<tokio::time::Instant>),
        move |(at, started)| {
            let audio = audio.clone();
            async move {
                if at >= audio.len() {
                    return None;
                }
                let started = started.unwrap_or_else(tokio::time::Instant::now);
                if let Some(seconds_per_byte) = seconds_per_byte {
                    let plays_at = Duration::from_secs_f64(at as f64 * seconds_per_byte);
                    tokio::time::sleep_until(started + plays_at).await;
                }
                let end = (at + chunk).min(audio.len());
                let event = AudioStream::AudioEvent(
                    AudioEvent::builder()
                        .audio_chunk(Blob::new(audio.slice(at..end).to_vec()))
                        .build(),
                );
                Some((Ok(event), (end, Some(started))))
            }
        },
    ))
}

/// Sends `plan` to Transcribe streaming, paced at real time, and joins the final results'
/// transcripts with spaces, in the order they arrive; partial results (hypotheses Transcribe
/// may still revise) are skipped. A clip without speech gives an empty transcript, as a batch
/// job does.
pub(super) async fn transcribe(
    client: &aws_sdk_transcribestreaming::Client,
    language: LanguageCode,
    plan: StreamPlan,
) -> Result<String, PortError> {
    let events = paced_events(&plan);
    let sample_rate = i32::try_from(plan.sample_rate)
        .map_err(|_| PortError::failed("a sample rate beyond i32"))?;
    let output = client
        .start_stream_transcription()
        .language_code(language)
        .media_encoding(plan.encoding)
        .media_sample_rate_hertz(sample_rate)
        .audio_stream(EventStreamSender::from(events))
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
    fn wav_streams_as_pcm_and_mp4_and_multichannel_flac_do_not() {
        let wav = Bytes::from(audio::pcm_wav(16_000, 2, 16, &[1, 0, 3, 0, 5, 0, 7, 0]));
        let pcm = plan(&wav, &clip(AudioFormat::Wav, 16_000, 2, 1.0)).unwrap();
        assert_eq!(pcm.encoding, MediaEncoding::Pcm);
        assert_eq!(pcm.sample_rate, 16_000);
        assert_eq!(&pcm.audio[..], &[2, 0, 6, 0]);
        // 0.2 s of 16 kHz 16-bit PCM per event.
        assert_eq!(pcm.chunk, 6_400);
        assert_eq!(pcm.duration, Some(Duration::from_secs_f64(2.0 / 16_000.0)));

        let file = Bytes::from(vec![0u8; 32_000]);
        let flac = plan(&file, &clip(AudioFormat::Flac, 44_100, 1, 4.0)).unwrap();
        assert_eq!(flac.encoding, MediaEncoding::Flac);
        // 8 kB/s: 0.2 s per event.
        assert_eq!((flac.sample_rate, flac.chunk), (44_100, 1_600));
        let opus = plan(&file, &clip(AudioFormat::OggOpus, 48_000, 1, 1.0)).unwrap();
        assert_eq!(opus.encoding, MediaEncoding::OggOpus);
        assert_eq!(opus.chunk, 6_400);

        for (format, channels) in [
            (AudioFormat::Flac, 2),
            (AudioFormat::OggOpus, 2),
            (AudioFormat::Mp4, 1),
            // Not a WebM after all.
            (AudioFormat::WebM, 1),
        ] {
            assert!(plan(&file, &clip(format, 48_000, channels, 4.0)).is_err());
        }
        // Not a WAV after all: the batch job decides.
        assert!(plan(&file, &clip(AudioFormat::Wav, 16_000, 1, 1.0)).is_err());
    }

    #[test]
    fn a_browser_webm_streams_as_ogg_opus_and_a_stereo_one_does_not() {
        let webm = Bytes::from(ogg_opus::browser_webm(2.0, 1));
        let clip = audio::check(&webm, "audio/webm", &audio::AudioLimits::default()).unwrap();
        let planned = plan(&webm, &clip).unwrap();
        assert_eq!(planned.encoding, MediaEncoding::OggOpus);
        assert_eq!(planned.sample_rate, 48_000);
        assert!(planned.audio.starts_with(b"OggS"));
        assert_eq!(planned.duration, clip.duration);
        let stereo = Bytes::from(ogg_opus::browser_webm(2.0, 2));
        let clip = audio::check(&stereo, "audio/webm", &audio::AudioLimits::default()).unwrap();
        assert!(plan(&stereo, &clip).is_err());
    }

    #[tokio::test]
    async fn events_are_released_at_the_pace_the_audio_plays() {
        use futures_util::StreamExt;
        // One second of 16 kHz PCM: five events of 0.2 s, the last released at 0.8 s.
        let wav = Bytes::from(audio::silent_wav(16_000, 1.0));
        let planned = plan(&wav, &clip(AudioFormat::Wav, 16_000, 1, 1.0)).unwrap();
        let started = std::time::Instant::now();
        let mut released = Vec::new();
        let mut events = std::pin::pin!(paced_events(&planned));
        while let Some(event) = events.next().await {
            assert!(event.is_ok());
            released.push(started.elapsed().as_secs_f64());
        }
        assert_eq!(released.len(), 5);
        for (index, at) in released.iter().enumerate() {
            let due = index as f64 * 0.2;
            assert!(
                *at >= due - 0.01 && *at < due + 0.15,
                "event {index} at {at}"
            );
        }
    }
}
