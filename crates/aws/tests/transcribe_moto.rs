//! The Amazon Transcribe adapter against a moto server (`make test` starts one). moto's
//! Transcribe advances a job one state per `GetTranscriptionJob` and writes no transcript, so a
//! helper task plays the service's part: when a clip lands in the audio bucket it writes the
//! fixture transcript where the job was told to put it.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use common::moto;
use manuel_aws::transcribe::{AwsTranscriber, TranscribeSettings};
use manuel_core::PortError;
use manuel_core::audio::{AudioLimits, check};
use manuel_core::deadline::Deadline;
use manuel_core::domain::UserId;
use manuel_core::ports::Transcriber;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SPOKEN: &str = "How do I replace the ink cartridge?";

async fn sdk(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await
}

/// Writes the fixture transcript for every clip that appears under `audio/`, as Transcribe
/// would, until the test ends.
/// The ids of the clips it saw are kept in `seen`.
fn play_transcribe(
    s3: aws_sdk_s3::Client,
    bucket: String,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut done = std::collections::HashSet::new();
        loop {
            if let Ok(listing) = s3
                .list_objects_v2()
                .bucket(&bucket)
                .prefix("audio/")
                .send()
                .await
            {
                for key in listing.contents().iter().filter_map(|object| object.key()) {
                    let Some(rest) = key.strip_prefix("audio/") else {
                        continue;
                    };
                    let Some((stem, _)) = rest.rsplit_once('.') else {
                        continue;
                    };
                    if !done.insert(stem.to_owned()) {
                        continue;
                    }
                    if let (Ok(mut seen), Some((_, id))) = (seen.lock(), stem.rsplit_once('/')) {
                        seen.push(id.to_owned());
                    }
                    let transcript = serde_json::json!({
                        "jobName": "fixture",
                        "status": "COMPLETED",
                        "results": {"transcripts": [{"transcript": SPOKEN}], "items": []},
                    });
                    let _ = s3
                        .put_object()
                        .bucket(&bucket)
                        .key(format!("transcripts/{stem}.json"))
                        .body(Bytes::from(transcript.to_string()).into())
                        .send()
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

async fn setup(
    url: &str,
) -> Result<(Arc<AwsTranscriber>, aws_sdk_s3::Client, String), Box<dyn std::error::Error>> {
    setup_with(url, false).await
}

/// With `streaming`, the transcriber also has a streaming client (pointed at moto, which has
/// no Transcribe streaming: a clip that went there would fail).
async fn setup_with(
    url: &str,
    streaming: bool,
) -> Result<(Arc<AwsTranscriber>, aws_sdk_s3::Client, String), Box<dyn std::error::Error>> {
    let config = sdk(url).await;
    let s3 = manuel_aws::s3::client(&config, true);
    let bucket = format!("audio-{}", uuid::Uuid::new_v4());
    s3.create_bucket().bucket(&bucket).send().await?;
    let mut transcriber = AwsTranscriber::new(
        aws_sdk_transcribe::Client::new(&config),
        s3.clone(),
        TranscribeSettings {
            bucket: bucket.clone(),
            first_poll: Duration::from_millis(20),
            ..TranscribeSettings::default()
        },
    );
    if streaming {
        transcriber = transcriber.with_streaming(aws_sdk_transcribestreaming::Client::new(&config));
    }
    Ok((Arc::new(transcriber), s3, bucket))
}

async fn remaining_keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    s3.list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .map(|listing| {
            listing
                .contents()
                .iter()
                .filter_map(|object| object.key().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_clip_is_transcribed_by_a_batch_job_and_nothing_is_left_behind() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (transcriber, s3, bucket) = setup(&url).await?;
    let seen = Arc::default();
    let service = play_transcribe(s3.clone(), bucket.clone(), Arc::clone(&seen));
    let audio = manuel_core::audio::silent_wav(16_000, 1.0);
    let clip = check(&audio, "audio/wav", &AudioLimits::default())?;
    let user = UserId::parse("7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b").ok_or("user")?;
    let deadline = Deadline(SystemTime::now() + Duration::from_secs(20));

    let text = transcriber
        .transcribe(&user, Bytes::from(audio), &clip, Some(deadline))
        .await?;
    service.abort();

    assert_eq!(text, SPOKEN);
    assert_eq!(remaining_keys(&s3, &bucket).await, Vec::<String>::new());
    let ids = seen.lock().map(|ids| ids.clone()).unwrap_or_default();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let job = aws_sdk_transcribe::Client::new(&sdk(&url).await)
        .get_transcription_job()
        .transcription_job_name(format!("manuel-{}", ids[0]))
        .send()
        .await;
    assert!(job.is_err(), "the job was not deleted: {job:?}");
    Ok(())
}

#[tokio::test]
async fn a_job_that_cannot_finish_before_the_deadline_is_unavailable_and_cleaned_up() -> TestResult
{
    let Some(url) = moto() else { return Ok(()) };
    let (transcriber, s3, bucket) = setup(&url).await?;
    let audio = manuel_core::audio::silent_wav(16_000, 1.0);
    let clip = check(&audio, "audio/wav", &AudioLimits::default())?;
    let user = UserId::parse("7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b").ok_or("user")?;
    // Less time than the deadline margin: the first poll finds the job queued and stops.
    let deadline = Deadline(SystemTime::now() + Duration::from_secs(1));

    let error = transcriber
        .transcribe(&user, Bytes::from(audio), &clip, Some(deadline))
        .await
        .err()
        .ok_or("a transcript arrived after the deadline")?;

    assert!(
        matches!(
            error,
            PortError::Unavailable {
                service: "transcribe",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(remaining_keys(&s3, &bucket).await, Vec::<String>::new());
    Ok(())
}

/// An M4A clip: Transcribe streaming does not take MP4.
fn m4a_clip() -> Vec<u8> {
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

#[tokio::test]
async fn an_m4a_clip_goes_to_a_batch_job_when_streaming_is_on() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (transcriber, s3, bucket) = setup_with(&url, true).await?;
    let seen = Arc::default();
    let service = play_transcribe(s3.clone(), bucket.clone(), Arc::clone(&seen));
    let audio = m4a_clip();
    let clip = check(&audio, "audio/x-m4a", &AudioLimits::default())?;
    let user = UserId::parse("7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b").ok_or("user")?;
    let deadline = Deadline(SystemTime::now() + Duration::from_secs(20));

    let text = transcriber
        .transcribe(&user, Bytes::from(audio), &clip, Some(deadline))
        .await?;
    service.abort();

    assert_eq!(text, SPOKEN);
    let ids = seen.lock().map(|ids| ids.clone()).unwrap_or_default();
    assert_eq!(ids.len(), 1, "one batch job: {ids:?}");
    assert_eq!(remaining_keys(&s3, &bucket).await, Vec::<String>::new());
    Ok(())
}
