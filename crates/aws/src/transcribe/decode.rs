//! MP4/M4A with AAC (what Safari's MediaRecorder and iOS record) decoded to the 16-bit mono PCM
//! Amazon Transcribe streaming takes: streaming accepts only PCM, FLAC and Ogg/Opus
//! (https://docs.aws.amazon.com/transcribe/latest/dg/streaming.html), and the batch job an MP4
//! would otherwise need takes 10–30 s, more than a spoken question can spend inside API
//! Gateway's 29 s. Decoding a question of a few seconds takes milliseconds (symphonia, pure
//! Rust); the channels are averaged and the source's own rate kept.

use std::io::Cursor;

use bytes::Bytes;
use manuel_core::audio::Pcm16Mono;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as DecodeError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The first audio track of `audio` (MP4/M4A with AAC), channels averaged, as 16-bit PCM at
/// its own sample rate.
pub(super) fn mp4_pcm16_mono(audio: &Bytes) -> Result<Pcm16Mono, String> {
    let source = MediaSourceStream::new(
        Box::new(Cursor::new(audio.clone())),
        MediaSourceStreamOptions::default(),
    );
    let mut hint = Hint::new();
    hint.with_extension("m4a");
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|error| error.to_string())?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or("no audio track")?;
    let track_id = track.id;
    let mut rate = track.codec_params.sample_rate;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|error| error.to_string())?;
    let mut samples: Vec<u8> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(DecodeError::IoError(error))
                if error.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break;
            }
            Err(error) => return Err(error.to_string()),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // A damaged packet is skipped, as players do; the rest may still be speech.
            Err(DecodeError::DecodeError(_)) => continue,
            Err(error) => return Err(error.to_string()),
        };
        let spec = *decoded.spec();
        rate = rate.or(Some(spec.rate));
        let channels = spec.channels.count().max(1);
        let mut buffer = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buffer.copy_interleaved_ref(decoded);
        for frame in buffer.samples().chunks(channels) {
            let mono = frame.iter().sum::<f32>() / channels as f32;
            let sample = (mono.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16;
            samples.extend_from_slice(&sample.to_le_bytes());
        }
    }
    let sample_rate = rate.filter(|rate| *rate > 0).ok_or("no sample rate")?;
    if samples.is_empty() {
        return Err("no audio was decoded".to_owned());
    }
    Ok(Pcm16Mono {
        sample_rate,
        samples: Bytes::from(samples),
    })
}
