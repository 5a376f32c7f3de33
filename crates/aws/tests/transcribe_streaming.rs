//! The Amazon Transcribe streaming path (moto has no Transcribe streaming). The SDK client runs
//! for real over a stand-in HTTP connector that plays the service: it reads the request's
//! headers and its event-stream body (signed AudioEvent messages), and answers with an
//! event-stream body of TranscriptEvent messages — or exceptions — encoded as Transcribe
//! encodes them. The batch clients point at a connector that only records, to show which path
//! a clip took.
// Fixture builders fail loudly: a malformed fixture is a broken test, not a case to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use manuel_aws::transcribe::{AwsTranscriber, TranscribeSettings};
use manuel_core::PortError;
use manuel_core::audio::{AudioClip, AudioLimits, check, pcm_wav};
use manuel_core::deadline::{self, Deadline};
use manuel_core::domain::UserId;
use manuel_core::ports::Transcriber;
use manuel_core::resilience::Resilience;
use manuel_core::resilience::guarded::Guarded;
use serde_json::json;

const SPOKEN: &str = "How do I replace the ink cartridge?";

// ---------------------------------------------------------------- the stand-in service

/// What Transcribe streaming answers to one StartStreamTranscription.
#[derive(Clone, Debug)]
enum Reply {
    /// HTTP 200 and these event-stream messages, in order.
    Stream(Vec<Message>),
    /// The call refused before any stream: status, error type, message.
    Refused(u16, &'static str, &'static str),
    /// No answer for this long.
    Silent(Duration),
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: BTreeMap<String, String>,
    /// Each AudioEvent's payload, in order.
    chunks: Vec<Bytes>,
    /// The `:event-type` of every inner message.
    event_types: Vec<String>,
    /// Every outer message carried a SigV4 chunk signature.
    signed: bool,
}

#[derive(Clone, Debug, Default)]
struct FakeStreaming {
    /// Replies in order; the last one answers every later call.
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeStreaming {
    fn new(replies: Vec<Reply>) -> Self {
        Self {
            replies: Arc::new(Mutex::new(replies.into())),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn next_reply(&self) -> Reply {
        let mut replies = self.replies.lock().unwrap();
        if replies.len() > 1 {
            replies.pop_front().unwrap()
        } else {
            replies.front().cloned().unwrap()
        }
    }
}

fn header(message: &Message, name: &str) -> Option<String> {
    message
        .headers()
        .iter()
        .find(|header| header.name().as_str() == name)
        .map(|header| match header.value() {
            HeaderValue::String(value) => value.as_str().to_owned(),
            other => format!("{other:?}"),
        })
}

fn decode_all(mut body: Bytes) -> Vec<Message> {
    let mut messages = Vec::new();
    while body.has_remaining() {
        messages.push(read_message_from(&mut body).unwrap());
    }
    messages
}

fn encode(messages: &[Message]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for message in messages {
        write_message_to(message, &mut bytes).unwrap();
    }
    bytes
}

impl HttpConnector for FakeStreaming {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let this = self.clone();
        HttpConnectorFuture::new(async move {
            let path = request.uri().to_owned();
            let headers = request
                .headers()
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
            let reply = this.next_reply();
            // The whole request body: the stream ends with the SDK's empty end frame.
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let mut seen = Seen {
                path,
                headers,
                chunks: Vec::new(),
                event_types: Vec::new(),
                signed: true,
            };
            for outer in decode_all(body) {
                seen.signed &= header(&outer, ":chunk-signature").is_some();
                if outer.payload().is_empty() {
                    continue;
                }
                let inner = read_message_from(outer.payload().clone()).unwrap();
                let kind = header(&inner, ":event-type").unwrap_or_default();
                if kind == "AudioEvent" {
                    seen.chunks.push(inner.payload().clone());
                }
                seen.event_types.push(kind);
            }
            this.seen.lock().unwrap().push(seen);
            let (status, body, error_type) = match reply {
                Reply::Stream(messages) => (200, encode(&messages), None),
                Reply::Refused(status, code, message) => (
                    status,
                    json!({"Message": message}).to_string().into_bytes(),
                    Some(code),
                ),
                Reply::Silent(pause) => {
                    tokio::time::sleep(pause).await;
                    (200, Vec::new(), None)
                }
            };
            let mut response =
                HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
            response
                .headers_mut()
                .insert("content-type", "application/vnd.amazon.eventstream");
            if let Some(code) = error_type {
                response.headers_mut().insert("x-amzn-errortype", code);
                response
                    .headers_mut()
                    .insert("content-type", "application/x-amz-json-1.1");
            }
            Ok(response)
        })
    }
}

impl HttpClient for FakeStreaming {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// The batch side: records every request and refuses it with a 503.
#[derive(Clone, Debug, Default)]
struct Recorder {
    requests: Arc<Mutex<Vec<String>>>,
}

impl HttpConnector for Recorder {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.requests
            .lock()
            .unwrap()
            .push(format!("{} {}", request.method(), request.uri()));
        HttpConnectorFuture::ready(Ok(HttpResponse::new(
            StatusCode::try_from(503).unwrap(),
            SdkBody::from("<Error><Code>ServiceUnavailable</Code></Error>"),
        )))
    }
}

impl HttpClient for Recorder {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

// ---------------------------------------------------------------- messages Transcribe sends

fn string(value: &str) -> HeaderValue {
    HeaderValue::String(value.to_owned().into())
}

/// A TranscriptEvent with one result per `(is_partial, text)`.
fn transcript_event(results: &[(bool, &str)]) -> Message {
    let results: Vec<_> = results
        .iter()
        .enumerate()
        .map(|(index, (partial, text))| {
            json!({
                "ResultId": format!("r{index}"),
                "StartTime": index as f64,
                "EndTime": index as f64 + 1.0,
                "IsPartial": partial,
                "Alternatives": [{"Transcript": text, "Items": []}],
            })
        })
        .collect();
    let payload = json!({"Transcript": {"Results": results}}).to_string();
    Message::new(payload.into_bytes())
        .add_header(Header::new(":message-type", string("event")))
        .add_header(Header::new(":event-type", string("TranscriptEvent")))
        .add_header(Header::new(":content-type", string("application/json")))
}

fn exception(kind: &str, text: &str) -> Message {
    Message::new(json!({"Message": text}).to_string().into_bytes())
        .add_header(Header::new(":message-type", string("exception")))
        .add_header(Header::new(":exception-type", string(kind)))
        .add_header(Header::new(":content-type", string("application/json")))
}

/// What Transcribe sends for the spoken question: revisions of partial results, then finals.
fn spoken() -> Reply {
    Reply::Stream(vec![
        transcript_event(&[(true, "How")]),
        transcript_event(&[(true, "How do I")]),
        transcript_event(&[(false, "How do I replace")]),
        transcript_event(&[(true, "the ink")]),
        transcript_event(&[]),
        transcript_event(&[(false, "the ink cartridge?")]),
    ])
}

// ---------------------------------------------------------------- clips

/// `samples` of a rising and falling tone as 16-bit little-endian bytes.
fn tone(samples: usize) -> Vec<u8> {
    (0..samples)
        .flat_map(|i| (((i % 200) as i16 - 100) * 300).to_le_bytes())
        .collect()
}

fn flac_clip(rate: u32, samples: u64) -> Vec<u8> {
    let mut bytes = b"fLaC".to_vec();
    bytes.extend_from_slice(&[0x80, 0, 0, 34]);
    let mut info = [0u8; 34];
    info[10] = (rate >> 12) as u8;
    info[11] = (rate >> 4) as u8;
    // One channel, 16 bits per sample.
    info[12] = ((rate & 0x0F) as u8) << 4;
    info[13] = 0xF0 | ((samples >> 32) as u8 & 0x0F);
    info[14..18].copy_from_slice(&(samples as u32).to_be_bytes());
    bytes.extend_from_slice(&info);
    // Frames: a sync code and filler, enough for several audio events.
    bytes.extend_from_slice(&[0xFF, 0xF8]);
    bytes.extend((0..20_000u32).map(|i| (i * 7) as u8));
    bytes
}

fn mp4_clip() -> Vec<u8> {
    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut bytes = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(kind);
        bytes.extend_from_slice(body);
        bytes
    }
    let mut mvhd = vec![0u8; 100];
    mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
    mvhd[16..20].copy_from_slice(&2500u32.to_be_bytes());
    let mut bytes = mp4_box(b"ftyp", b"M4A \0\0\0\0isom");
    bytes.extend(mp4_box(b"moov", &mp4_box(b"mvhd", &mvhd)));
    bytes.extend(mp4_box(b"mdat", &[0; 256]));
    bytes
}

fn webm_clip() -> Vec<u8> {
    fn ebml(id: &[u8], body: &[u8]) -> Vec<u8> {
        let mut bytes = id.to_vec();
        bytes.push(0x80 | body.len() as u8);
        bytes.extend_from_slice(body);
        bytes
    }
    let header = ebml(&[0x1A, 0x45, 0xDF, 0xA3], &ebml(&[0x42, 0x82], b"webm"));
    let info = ebml(
        &[0x15, 0x49, 0xA9, 0x66],
        &[
            ebml(&[0x2A, 0xD7, 0xB1], &1_000_000u32.to_be_bytes()),
            ebml(&[0x44, 0x89], &2500f64.to_be_bytes()),
        ]
        .concat(),
    );
    let mut bytes = header;
    bytes.extend(ebml(
        &[0x18, 0x53, 0x80, 0x67],
        &[info, vec![0x1F, 0x43, 0xB6, 0x75, 0x80]].concat(),
    ));
    bytes
}

// ---------------------------------------------------------------- the adapter under test

struct Setup {
    transcriber: AwsTranscriber,
    streaming: FakeStreaming,
    batch: Recorder,
}

async fn setup(replies: Vec<Reply>) -> Setup {
    let streaming = FakeStreaming::new(replies);
    let batch = Recorder::default();
    let credentials = Credentials::new("test", "test", None, None, "test");
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials.clone())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .http_client(SharedHttpClient::new(batch.clone()))
        .load()
        .await;
    let streaming_config = aws_sdk_transcribestreaming::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .http_client(streaming.clone())
        .build();
    let transcriber = AwsTranscriber::new(
        aws_sdk_transcribe::Client::new(&sdk),
        manuel_aws::s3::client(&sdk, true),
        TranscribeSettings {
            bucket: "manuel-audio-test".to_owned(),
            first_poll: Duration::from_millis(10),
            ..TranscribeSettings::default()
        },
    )
    .with_streaming(aws_sdk_transcribestreaming::Client::from_conf(
        streaming_config,
    ));
    Setup {
        transcriber,
        streaming,
        batch,
    }
}

fn user() -> UserId {
    UserId::parse("7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b").unwrap()
}

fn soon() -> Option<Deadline> {
    Some(Deadline(SystemTime::now() + Duration::from_secs(20)))
}

fn checked(bytes: &[u8], content_type: &str) -> AudioClip {
    check(bytes, content_type, &AudioLimits::default()).unwrap()
}

async fn transcribe(
    setup: &Setup,
    bytes: Vec<u8>,
    content_type: &str,
) -> Result<String, PortError> {
    let clip = checked(&bytes, content_type);
    setup
        .transcriber
        .transcribe(&user(), Bytes::from(bytes), &clip, soon())
        .await
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_wav_is_streamed_as_raw_pcm_and_only_final_results_make_the_transcript() {
    let setup = setup(vec![spoken()]).await;
    // 1.25 s of 16 kHz mono: 40 000 bytes of samples after the header and a LIST chunk.
    let pcm = tone(20_000);
    let wav = pcm_wav(16_000, 1, 16, &pcm);

    let text = transcribe(&setup, wav, "audio/wav").await.unwrap();

    assert_eq!(text, SPOKEN);
    let seen = setup.streaming.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert!(
        request.path.ends_with("/stream-transcription"),
        "{}",
        request.path
    );
    assert_eq!(request.headers["x-amzn-transcribe-language-code"], "en-US");
    assert_eq!(request.headers["x-amzn-transcribe-media-encoding"], "pcm");
    assert_eq!(request.headers["x-amzn-transcribe-sample-rate"], "16000");
    assert!(
        request.signed,
        "every audio message carries a chunk signature"
    );
    assert!(request.event_types.iter().all(|kind| kind == "AudioEvent"));
    // The samples and nothing else (no RIFF header, no LIST chunk), in events of 0.2 s.
    assert_eq!(request.chunks.concat(), pcm);
    assert_eq!(request.chunks.len(), 7);
    assert!(request.chunks.iter().all(|chunk| chunk.len() <= 6_400));
    assert_eq!(
        setup.batch.requests.lock().unwrap().len(),
        0,
        "no batch job"
    );
}

#[tokio::test]
async fn a_stereo_wav_is_downmixed_to_mono_pcm_at_its_own_rate() {
    let setup = setup(vec![spoken()]).await;
    let frames: Vec<(i16, i16)> = (0..4_410).map(|i| (i as i16, -(i as i16) + 200)).collect();
    let stereo: Vec<u8> = frames
        .iter()
        .flat_map(|(left, right)| [left.to_le_bytes(), right.to_le_bytes()].concat())
        .collect();
    // Half a second of silence after the 0.1 s tone: clips under 0.5 s are refused.
    let mut data = stereo.clone();
    data.extend(std::iter::repeat_n(0u8, 44_100 / 2 * 4));
    let wav = pcm_wav(44_100, 2, 16, &data);

    assert_eq!(
        transcribe(&setup, wav, "audio/x-wav").await.unwrap(),
        SPOKEN
    );

    let request = &setup.streaming.seen()[0];
    assert_eq!(request.headers["x-amzn-transcribe-sample-rate"], "44100");
    assert_eq!(request.headers["x-amzn-transcribe-media-encoding"], "pcm");
    let mono = request.chunks.concat();
    assert_eq!(mono.len(), (4_410 + 44_100 / 2) * 2);
    let expected: Vec<u8> = frames
        .iter()
        .map(|(left, right)| ((i32::from(*left) + i32::from(*right)) / 2) as i16)
        .flat_map(i16::to_le_bytes)
        .collect();
    assert_eq!(&mono[..expected.len()], &expected[..]);
}

#[tokio::test]
async fn flac_and_ogg_opus_are_streamed_as_they_are_with_their_encoding_and_rate() {
    let setup = setup(vec![spoken()]).await;
    let flac = flac_clip(16_000, 32_000);
    let ogg = manuel_core::audio::ogg_opus_clip(2);

    assert_eq!(
        transcribe(&setup, flac.clone(), "audio/flac")
            .await
            .unwrap(),
        SPOKEN
    );
    assert_eq!(
        transcribe(&setup, ogg.clone(), "audio/ogg; codecs=opus")
            .await
            .unwrap(),
        SPOKEN
    );

    let seen = setup.streaming.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].headers["x-amzn-transcribe-media-encoding"], "flac");
    assert_eq!(seen[0].headers["x-amzn-transcribe-sample-rate"], "16000");
    assert_eq!(seen[0].chunks.concat(), flac);
    assert!(seen[0].chunks.len() > 1);
    assert_eq!(
        seen[1].headers["x-amzn-transcribe-media-encoding"],
        "ogg-opus"
    );
    assert_eq!(seen[1].headers["x-amzn-transcribe-sample-rate"], "48000");
    assert_eq!(seen[1].chunks.concat(), ogg);
    assert_eq!(setup.batch.requests.lock().unwrap().len(), 0);
}

/// A clip recorded as a browser records it, made once with ffmpeg (tests/fixtures/README.md).
fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test]
async fn browser_recordings_are_streamed_webm_opus_rewrapped_as_ogg_and_m4a_decoded_to_pcm() {
    let setup = setup(vec![spoken()]).await;
    let webm = fixture("question.webm");
    let m4a = fixture("question.m4a");
    let started = std::time::Instant::now();
    assert_eq!(
        transcribe(&setup, webm, "audio/webm;codecs=opus")
            .await
            .unwrap(),
        SPOKEN
    );
    assert_eq!(transcribe(&setup, m4a, "audio/mp4").await.unwrap(), SPOKEN);
    // Both 1.6 s clips were paced at real time, not sent in one burst.
    assert!(
        started.elapsed() >= Duration::from_millis(2_600),
        "{:?}",
        started.elapsed()
    );

    let seen = setup.streaming.seen();
    assert_eq!(seen.len(), 2);
    let ogg = &seen[0];
    assert_eq!(ogg.headers["x-amzn-transcribe-media-encoding"], "ogg-opus");
    assert_eq!(ogg.headers["x-amzn-transcribe-sample-rate"], "48000");
    let rewrapped = ogg.chunks.concat();
    let clip = check(&rewrapped, "audio/ogg", &AudioLimits::default()).unwrap();
    assert_eq!(clip.channels, Some(1));
    // ffprobe says 1.616 s for the WebM; its Opus packets say the same.
    let seconds = clip.duration.unwrap().as_secs_f64();
    assert!((seconds - 1.61).abs() < 0.03, "{seconds}");

    let pcm = &seen[1];
    assert_eq!(pcm.headers["x-amzn-transcribe-media-encoding"], "pcm");
    assert_eq!(pcm.headers["x-amzn-transcribe-sample-rate"], "44100");
    // 1.609 s of 44.1 kHz mono (AAC adds a frame of priming at most).
    let seconds = pcm.chunks.concat().len() as f64 / (2.0 * 44_100.0);
    assert!((seconds - 1.609).abs() < 0.1, "{seconds}");
    assert_eq!(
        setup.batch.requests.lock().unwrap().len(),
        0,
        "no batch job"
    );
}

#[tokio::test]
async fn mp4_and_webm_that_cannot_be_decoded_or_rewrapped_go_to_a_batch_job_instead() {
    let setup = setup(vec![spoken()]).await;
    for (clip, content_type) in [(mp4_clip(), "audio/mp4"), (webm_clip(), "audio/webm")] {
        // The recording batch side refuses everything: the upload fails as S3 failing would.
        let error = transcribe(&setup, clip, content_type).await.unwrap_err();
        assert!(
            matches!(error, PortError::Transient { service: "s3", .. }),
            "{error:?}"
        );
    }
    assert_eq!(setup.streaming.seen().len(), 0, "nothing was streamed");
    let requests = setup.batch.requests.lock().unwrap().clone();
    for extension in ["mp4", "webm"] {
        let clip = format!(".{extension}?");
        // The upload, then the cleanup that always follows a job, failed or not.
        for method in ["PUT", "DELETE"] {
            assert!(
                requests.iter().any(|request| request.starts_with(method)
                    && request.contains("/manuel-audio-test/audio/")
                    && request.contains(&clip)),
                "{method} {clip}: {requests:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_exception_in_the_stream_is_a_mapped_port_error() {
    let failing = |kind: &'static str| {
        Reply::Stream(vec![
            transcript_event(&[(false, "How do I")]),
            exception(kind, "Something went wrong mid-stream."),
        ])
    };
    let wav = || pcm_wav(16_000, 1, 16, &tone(16_000));

    let setup = setup(vec![failing("BadRequestException")]).await;
    let error = transcribe(&setup, wav(), "audio/wav").await.unwrap_err();
    match &error {
        PortError::Unavailable { service, message } => {
            assert_eq!(*service, "transcribe");
            assert!(message.contains("BadRequestException"), "{message}");
            assert!(
                message.contains("Something went wrong mid-stream."),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }

    for kind in [
        "ServiceUnavailableException",
        "InternalFailureException",
        "LimitExceededException",
    ] {
        let setup = self::setup(vec![failing(kind)]).await;
        let error = transcribe(&setup, wav(), "audio/wav").await.unwrap_err();
        assert!(
            matches!(&error, PortError::Transient { service: "transcribe", message } if message.contains(kind)),
            "{kind}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_refused_start_is_mapped_like_any_sdk_failure() {
    let wav = || pcm_wav(16_000, 1, 16, &tone(16_000));
    let setup = setup(vec![Reply::Refused(
        400,
        "BadRequestException",
        "The sample rate does not match the audio.",
    )])
    .await;
    let error = transcribe(&setup, wav(), "audio/wav").await.unwrap_err();
    assert!(
        matches!(&error, PortError::Unavailable { service: "transcribe", message } if message.contains("BadRequestException") && message.contains("HTTP 400")),
        "{error:?}"
    );

    let setup = self::setup(vec![Reply::Refused(
        429,
        "LimitExceededException",
        "Too many concurrent streams.",
    )])
    .await;
    let error = transcribe(&setup, wav(), "audio/wav").await.unwrap_err();
    assert!(
        matches!(
            &error,
            PortError::Transient {
                service: "transcribe",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_clip_without_speech_gives_an_empty_transcript_as_a_batch_job_does() {
    let setup = setup(vec![Reply::Stream(vec![
        transcript_event(&[]),
        transcript_event(&[(true, "uh")]),
        transcript_event(&[(false, "   ")]),
    ])])
    .await;
    let text = transcribe(&setup, pcm_wav(16_000, 1, 16, &tone(16_000)), "audio/wav")
        .await
        .unwrap();
    assert_eq!(text, "");
    // And a stream with no events at all.
    let setup = self::setup(vec![Reply::Stream(Vec::new())]).await;
    let text = transcribe(&setup, pcm_wav(8_000, 1, 16, &tone(8_000)), "audio/wav")
        .await
        .unwrap();
    assert_eq!(text, "");
}

#[tokio::test]
async fn a_stream_that_would_outlive_the_invocation_stops_at_its_deadline() {
    let setup = setup(vec![Reply::Silent(Duration::from_secs(30))]).await;
    let wav = pcm_wav(16_000, 1, 16, &tone(16_000));
    let clip = checked(&wav, "audio/wav");
    // No deadline is passed: the task's current one (set by the Lambda middleware) counts.
    // 2.5 s less the 2 s margin leaves half a second.
    let deadline = Deadline(SystemTime::now() + Duration::from_millis(2_500));
    let started = std::time::Instant::now();

    let error = deadline::within(
        Some(deadline),
        setup
            .transcriber
            .transcribe(&user(), Bytes::from(wav), &clip, None),
    )
    .await
    .unwrap_err();

    assert!(
        matches!(&error, PortError::Unavailable { service: "transcribe", message } if message.contains("time left")),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_resilience_guard_retries_a_transient_stream_failure() {
    let setup = setup(vec![
        Reply::Stream(vec![exception(
            "ServiceUnavailableException",
            "Service is currently unavailable.",
        )]),
        spoken(),
    ])
    .await;
    let vars: HashMap<String, String> =
        [("RETRY_TRANSCRIBE".to_owned(), "fixed:2:10:10".to_owned())].into();
    let resilience = Resilience::from_vars(&vars).unwrap();
    let transcriber: Arc<dyn Transcriber> = Arc::new(setup.transcriber);
    let guarded = Guarded::new(transcriber, resilience.dependency("transcribe"));
    let wav = pcm_wav(16_000, 1, 16, &tone(16_000));
    let clip = checked(&wav, "audio/wav");

    let text = guarded
        .transcribe(&user(), Bytes::from(wav), &clip, soon())
        .await
        .unwrap();

    assert_eq!(text, SPOKEN);
    let seen = setup.streaming.seen();
    assert_eq!(seen.len(), 2, "one retry");
    assert_eq!(seen[0].chunks.concat(), seen[1].chunks.concat());
}

#[tokio::test]
async fn each_attempt_reports_its_latency_by_path() {
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    manuel_core::telemetry::install(
        "transcribe",
        Box::new(|line| LINES.lock().unwrap().push(line.to_owned())),
    );
    let setup = setup(vec![spoken()]).await;
    transcribe(&setup, pcm_wav(16_000, 1, 16, &tone(16_000)), "audio/wav")
        .await
        .unwrap();
    let _ = transcribe(&setup, mp4_clip(), "audio/mp4").await;

    let paths: Vec<String> = LINES
        .lock()
        .unwrap()
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line["Function"] == "transcribe")
        .filter_map(|line| {
            let latency = line["TranscriptionPathLatency"].as_f64()?;
            assert!(latency >= 0.0);
            line["Path"].as_str().map(str::to_owned)
        })
        .collect();
    assert!(paths.contains(&"streaming".to_owned()), "{paths:?}");
    assert!(paths.contains(&"batch".to_owned()), "{paths:?}");
}
