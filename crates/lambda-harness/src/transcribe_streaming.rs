//! A stand-in for Amazon Transcribe streaming (`StartStreamTranscription`, which moto lacks),
//! for the Lambda binaries: it reads the signed event stream of audio events as it arrives,
//! measures how long the audio plays (16-bit PCM from its length and rate, Ogg/Opus from its
//! last granule position) against how long it took to arrive, and, once the stream ends and
//! its finalisation delay has passed, answers with a final transcript.
//!
//! What it does not forgive: audio that arrives more than a second faster than it plays is
//! refused with a `BadRequestException` in the result stream. AWS asks for streams "as close
//! to real-time as possible" (https://docs.aws.amazon.com/transcribe/latest/dg/streaming.html);
//! the fake holds the code to that so a return to sending a clip in one burst fails a test.
//! It also counts the 1 s it takes to finalise a transcript after the last audio (1 s unless
//! set), time a real deadline must leave.
//!
//! What it forgives: it checks no signature or IAM permission, decodes no audio (the
//! transcript is whatever the test set), bills nothing, and answers over HTTP/1.1 on loopback
//! where the service speaks HTTP/2 over TLS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::{Bytes, BytesMut};
use serde_json::json;

/// One stream the stand-in received.
#[derive(Clone, Debug)]
pub struct StreamSeen {
    /// `x-amzn-transcribe-media-encoding`: `pcm`, `ogg-opus` or `flac`.
    pub encoding: String,
    pub sample_rate: u32,
    /// The audio sent, joined.
    pub audio: Bytes,
    /// How long the audio plays, where the encoding tells (PCM, Ogg/Opus).
    pub plays_for: Option<Duration>,
    /// First audio event → end of the stream.
    pub took: Duration,
    pub events: usize,
}

#[derive(Clone)]
struct Shared {
    transcript: Arc<Mutex<String>>,
    finalisation: Arc<Mutex<Duration>>,
    seen: Arc<Mutex<Vec<StreamSeen>>>,
}

pub struct FakeTranscribeStreaming {
    pub url: String,
    shared: Shared,
}

impl FakeTranscribeStreaming {
    /// Serves on loopback; every stream is transcribed as `transcript`.
    pub async fn start(transcript: &str) -> Self {
        let shared = Shared {
            transcript: Arc::new(Mutex::new(transcript.to_owned())),
            finalisation: Arc::new(Mutex::new(Duration::from_secs(1))),
            seen: Arc::default(),
        };
        let app = Router::new()
            .route("/stream-transcription", post(stream))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, shared }
    }

    /// The time between the last audio and the final transcript.
    pub fn set_finalisation(&self, delay: Duration) {
        *self.shared.finalisation.lock().unwrap() = delay;
    }

    pub fn streams(&self) -> Vec<StreamSeen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The variables that send a function's streaming transcriptions here (and turn them on).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AWS_ENDPOINT_URL_TRANSCRIBE_STREAMING".to_owned(),
                self.url.clone(),
            ),
            ("TRANSCRIBE_STREAMING".to_owned(), "true".to_owned()),
        ]
    }
}

fn header_value(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn message_header(message: &Message, name: &str) -> Option<String> {
    message
        .headers()
        .iter()
        .find(|header| header.name().as_str() == name)
        .and_then(|header| match header.value() {
            HeaderValue::String(value) => Some(value.as_str().to_owned()),
            _ => None,
        })
}

/// How long the audio plays, for the encodings whose length the bytes tell.
fn plays_for(encoding: &str, sample_rate: u32, audio: &[u8]) -> Option<Duration> {
    match encoding {
        "pcm" => Some(Duration::from_secs_f64(
            audio.len() as f64 / (2.0 * f64::from(sample_rate.max(1))),
        )),
        "ogg-opus" => {
            // The last page's granule position: 48 kHz samples so far (pre-skip ignored).
            let last = audio.windows(4).rposition(|window| window == b"OggS")?;
            let granule = u64::from_le_bytes(audio.get(last + 6..last + 14)?.try_into().ok()?);
            Some(Duration::from_secs_f64(granule as f64 / 48_000.0))
        }
        _ => None,
    }
}

fn string(value: &str) -> HeaderValue {
    HeaderValue::String(value.to_owned().into())
}

fn encode(messages: &[Message]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for message in messages {
        write_message_to(message, &mut bytes).unwrap();
    }
    bytes
}

async fn stream(State(shared): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    use futures_util::StreamExt;
    let encoding = header_value(&headers, "x-amzn-transcribe-media-encoding");
    let sample_rate: u32 = header_value(&headers, "x-amzn-transcribe-sample-rate")
        .parse()
        .unwrap_or(0);
    let mut pending = BytesMut::new();
    let mut audio = BytesMut::new();
    let mut first_audio: Option<Instant> = None;
    let mut events = 0;
    let mut chunks = body.into_data_stream();
    'reading: while let Some(Ok(chunk)) = chunks.next().await {
        pending.extend_from_slice(&chunk);
        // Whole outer messages only: the prelude's first four bytes are the total length.
        while pending.len() >= 4 {
            let total = u32::from_be_bytes(pending[..4].try_into().unwrap()) as usize;
            if pending.len() < total {
                break;
            }
            let mut frame = pending.split_to(total).freeze();
            let outer = read_message_from(&mut frame).unwrap();
            if outer.payload().is_empty() {
                break 'reading;
            }
            let inner = read_message_from(outer.payload().clone()).unwrap();
            if message_header(&inner, ":event-type").as_deref() == Some("AudioEvent") {
                first_audio.get_or_insert_with(Instant::now);
                audio.extend_from_slice(inner.payload());
                events += 1;
            }
        }
    }
    let took = first_audio.map_or(Duration::ZERO, |first| first.elapsed());
    let audio = audio.freeze();
    let plays = plays_for(&encoding, sample_rate, &audio);
    shared.seen.lock().unwrap().push(StreamSeen {
        encoding,
        sample_rate,
        audio: audio.clone(),
        plays_for: plays,
        took,
        events,
    });
    let messages = match plays {
        Some(plays) if took + Duration::from_secs(1) < plays => vec![
            Message::new(
                json!({"Message": format!("{:.1} s of audio arrived in {:.1} s: faster than real time", plays.as_secs_f64(), took.as_secs_f64())})
                    .to_string()
                    .into_bytes(),
            )
            .add_header(Header::new(":message-type", string("exception")))
            .add_header(Header::new(":exception-type", string("BadRequestException")))
            .add_header(Header::new(":content-type", string("application/json"))),
        ],
        _ => {
            let delay = *shared.finalisation.lock().unwrap();
            tokio::time::sleep(delay).await;
            let text = shared.transcript.lock().unwrap().clone();
            let results = json!({"Transcript": {"Results": [{
                "ResultId": "r0", "StartTime": 0.0,
                "EndTime": plays.unwrap_or_default().as_secs_f64(),
                "IsPartial": false,
                "Alternatives": [{"Transcript": text, "Items": []}],
            }]}});
            vec![
                Message::new(results.to_string().into_bytes())
                    .add_header(Header::new(":message-type", string("event")))
                    .add_header(Header::new(":event-type", string("TranscriptEvent")))
                    .add_header(Header::new(":content-type", string("application/json"))),
            ]
        }
    };
    (
        StatusCode::OK,
        [("content-type", "application/vnd.amazon.eventstream")],
        Body::from(encode(&messages)),
    )
        .into_response()
}
