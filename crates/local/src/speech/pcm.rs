//! A spoken clip turned into what Whisper hears: mono samples in [-1, 1] at 16 kHz. The
//! container and codec are decoded by symphonia (WAV, FLAC, MP4/M4A with AAC), the channels
//! averaged, and the rate converted by rubato.

use std::io::Cursor;

use bytes::Bytes;
use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as DecodeError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Whisper's input rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// Input frames per resampler call.
const RESAMPLE_CHUNK: usize = 1024;

/// Why a clip could not be turned into samples. The library's own words are kept for the log
/// only (its `Display`, logged); what a client is told is [`PcmError::for_client`].
#[derive(Debug, thiserror::Error)]
pub enum PcmError {
    #[error("the audio could not be decoded: {0}")]
    Decode(String),
    #[error("the audio has no sample rate")]
    NoSampleRate,
    #[error("the audio could not be resampled: {0}")]
    Resample(String),
}

impl PcmError {
    /// A sentence for the person who sent the clip: no library message, no internals.
    pub fn for_client(&self) -> &'static str {
        match self {
            Self::Decode(_) | Self::NoSampleRate => {
                "This server cannot decode the clip; send it as 16-bit WAV, FLAC or M4A (AAC)."
            }
            Self::Resample(_) => {
                "This server cannot convert the clip's sample rate; record it at 16 or 44.1 kHz."
            }
        }
    }
}

fn decode_error(error: DecodeError) -> PcmError {
    PcmError::Decode(error.to_string())
}

/// Decodes `audio` to mono 16 kHz samples, keeping at most `max_seconds` of it.
pub fn mono_16k(audio: Bytes, max_seconds: f64) -> Result<Vec<f32>, PcmError> {
    let (samples, rate) = decode_mono(audio, max_seconds)?;
    resample(&samples, rate)
}

/// Every sample of the first audio track, channels averaged, and its rate.
fn decode_mono(audio: Bytes, max_seconds: f64) -> Result<(Vec<f32>, u32), PcmError> {
    let source = MediaSourceStream::new(
        Box::new(Cursor::new(audio)),
        MediaSourceStreamOptions::default(),
    );
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(decode_error)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| PcmError::Decode("no audio track".to_owned()))?;
    let track_id = track.id;
    let mut rate = track.codec_params.sample_rate;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(decode_error)?;
    let mut mono = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(DecodeError::IoError(error))
                if error.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break;
            }
            Err(error) => return Err(decode_error(error)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // A damaged packet is skipped, as players do; the rest may still be speech.
            Err(DecodeError::DecodeError(_)) => continue,
            Err(error) => return Err(decode_error(error)),
        };
        let spec = *decoded.spec();
        rate = rate.or(Some(spec.rate));
        let channels = spec.channels.count().max(1);
        let mut buffer = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buffer.copy_interleaved_ref(decoded);
        mono.extend(
            buffer
                .samples()
                .chunks(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        let rate = f64::from(rate.unwrap_or(SAMPLE_RATE));
        if mono.len() as f64 > max_seconds * rate {
            mono.truncate((max_seconds * rate) as usize);
            break;
        }
    }
    let rate = rate
        .filter(|rate| *rate > 0)
        .ok_or(PcmError::NoSampleRate)?;
    Ok((mono, rate))
}

/// The quietest loudness that can be speech: the loudest 20 ms of a clip must reach −40 dBFS
/// (RMS). Whisper "hears" words in silence ("you", "Thank you."), so silence never reaches it.
const SPEECH_RMS: f32 = 0.01;
const FRAME: usize = SAMPLE_RATE as usize / 50;

/// Whether any 20 ms of `samples` (at [`SAMPLE_RATE`]) is loud enough to be speech.
pub fn has_sound(samples: &[f32]) -> bool {
    samples.chunks(FRAME).any(|frame| {
        let energy = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
        energy.sqrt() >= SPEECH_RMS
    })
}

/// `samples` at `rate` converted to [`SAMPLE_RATE`], for any number of samples. The input is
/// fed in whole chunks, the last one padded with silence, then silence until the filter's
/// delay has come out; rubato's `process_partial` is not used, because it takes an empty
/// remainder (a clip whose length is a multiple of the chunk) for a disabled channel and fails.
fn resample(samples: &[f32], rate: u32) -> Result<Vec<f32>, PcmError> {
    if rate == SAMPLE_RATE || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let failed = |error: &dyn std::fmt::Display| PcmError::Resample(error.to_string());
    let mut resampler =
        FftFixedIn::<f32>::new(rate as usize, SAMPLE_RATE as usize, RESAMPLE_CHUNK, 1, 1)
            .map_err(|error| failed(&error))?;
    let delay = resampler.output_delay();
    let expected = (samples.len() as u64 * u64::from(SAMPLE_RATE) / u64::from(rate)) as usize;
    let wanted = expected + delay;
    let mut out = Vec::with_capacity(wanted + RESAMPLE_CHUNK);
    let mut chunk = vec![0f32; RESAMPLE_CHUNK];
    let mut fed = 0;
    while out.len() < wanted {
        let take = samples.len().saturating_sub(fed).min(RESAMPLE_CHUNK);
        chunk[..take].copy_from_slice(&samples[fed..fed + take]);
        chunk[take..].fill(0.0);
        fed += take;
        let frames = resampler
            .process(&[&chunk], None)
            .map_err(|error| failed(&error))?;
        if frames[0].is_empty() && take == 0 {
            break;
        }
        out.extend_from_slice(&frames[0]);
    }
    Ok(out.into_iter().skip(delay).take(expected).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A 16-bit PCM WAV of `samples` at `rate` with `channels` interleaved channels.
    pub(crate) fn wav(samples: &[i16], rate: u32, channels: u16) -> Bytes {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        out.extend_from_slice(&(channels * 2).to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        Bytes::from(out)
    }

    fn tone(rate: u32, hz: f32, seconds: f32, channels: u16) -> Vec<i16> {
        (0..(rate as f32 * seconds) as usize)
            .flat_map(|i| {
                let value = (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin();
                std::iter::repeat_n((value * 16_000.0) as i16, usize::from(channels))
            })
            .collect()
    }

    /// Zero crossings per second: twice the frequency of a pure tone.
    fn frequency(samples: &[f32]) -> f32 {
        let crossings = samples
            .windows(2)
            .filter(|pair| (pair[0] < 0.0) != (pair[1] < 0.0))
            .count();
        crossings as f32 / 2.0 / (samples.len() as f32 / SAMPLE_RATE as f32)
    }

    #[test]
    fn a_16k_mono_wav_comes_out_as_it_went_in() {
        let samples = mono_16k(wav(&tone(16_000, 440.0, 1.0, 1), 16_000, 1), 60.0).unwrap();
        assert_eq!(samples.len(), 16_000);
        assert!((frequency(&samples) - 440.0).abs() < 5.0);
    }

    #[test]
    fn a_44_1k_stereo_wav_is_downmixed_and_resampled_keeping_its_pitch_and_length() {
        let samples = mono_16k(wav(&tone(44_100, 440.0, 2.0, 2), 44_100, 2), 60.0).unwrap();
        assert_eq!(samples.len(), 32_000);
        assert!(
            (frequency(&samples) - 440.0).abs() < 5.0,
            "{}",
            frequency(&samples)
        );
        let peak = samples.iter().fold(0f32, |max, s| max.max(s.abs()));
        assert!((0.4..0.6).contains(&peak), "{peak}");
    }

    #[test]
    fn only_the_allowed_length_is_decoded() {
        let samples = mono_16k(wav(&tone(16_000, 440.0, 3.0, 1), 16_000, 1), 1.0).unwrap();
        assert_eq!(samples.len(), 16_000);
    }

    #[test]
    fn silence_and_a_faint_hiss_have_no_sound_and_a_voice_has() {
        assert!(!has_sound(&vec![0.0; 32_000]));
        let hiss: Vec<f32> = (0..32_000)
            .map(|i| if i % 2 == 0 { 0.003 } else { -0.003 })
            .collect();
        assert!(!has_sound(&hiss));
        let samples = mono_16k(wav(&tone(16_000, 220.0, 0.5, 1), 16_000, 1), 60.0).unwrap();
        assert!(has_sound(&samples));
    }

    #[test]
    fn garbage_is_an_error_told_without_the_librarys_words() {
        let error = mono_16k(Bytes::from_static(b"not audio at all"), 60.0).unwrap_err();
        assert!(matches!(error, PcmError::Decode(_)), "{error}");
        let told = error.for_client();
        assert!(!told.contains(&error.to_string()), "{told}");
        assert!(told.contains("WAV"), "{told}");
    }

    /// `frames` mono frames of a 440 Hz tone as 32-bit integer samples.
    fn tone_32(rate: u32, frames: usize) -> Vec<u8> {
        (0..frames)
            .flat_map(|i| {
                let value = (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin();
                ((value * f64::from(i32::MAX) * 0.5) as i32).to_le_bytes()
            })
            .collect()
    }

    /// A mono WAV with a WAVE_FORMAT_EXTENSIBLE `fmt ` chunk (as sox writes 32-bit audio).
    fn extensible_wav(rate: u32, bits: u16, data: &[u8]) -> Bytes {
        let block = bits / 8;
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&0xFFFEu16.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        fmt.extend_from_slice(&block.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        fmt.extend_from_slice(&4u32.to_le_bytes()); // front centre
        // KSDATAFORMAT_SUBTYPE_PCM
        fmt.extend_from_slice(&[
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38,
            0x9B, 0x71,
        ]);
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(4 + 8 + fmt.len() as u32 + 8 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        out.extend_from_slice(&fmt);
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        Bytes::from(out)
    }

    #[test]
    fn the_clis_44_1k_32_bit_extensible_recording_of_204800_frames_is_resampled() {
        // The CLI's committed sample: sox at 44.1 kHz, 32-bit, WAVE_FORMAT_EXTENSIBLE, 204,800
        // frames (200 resampler chunks exactly, which rubato's partial call refused).
        let clip = extensible_wav(44_100, 32, &tone_32(44_100, 204_800));
        let samples = mono_16k(clip, 60.0).unwrap();
        assert_eq!(samples.len(), 204_800 * 16_000 / 44_100);
        assert!((frequency(&samples) - 440.0).abs() < 5.0);
    }

    #[test]
    fn no_clip_length_makes_the_resampler_fail() {
        for frames in [1, 2, 1023, 1024, 1025, 2048, 3000, 44_100, 102_400, 204_801] {
            for rate in [8_000, 22_050, 44_100, 48_000] {
                let samples: Vec<f32> = (0..frames)
                    .map(|i| ((i % 50) as f32 / 50.0) - 0.5)
                    .collect();
                let out = resample(&samples, rate)
                    .unwrap_or_else(|error| panic!("{frames} frames at {rate} Hz: {error}"));
                assert_eq!(
                    out.len(),
                    (frames as u64 * 16_000 / u64::from(rate)) as usize,
                    "{frames} frames at {rate} Hz"
                );
            }
        }
    }

    #[test]
    fn an_apple_recording_with_a_fllr_padding_chunk_is_read() {
        // AVAudioRecorder pads the header with a `FLLR` chunk so that the samples start at
        // byte 4096.
        let plain = wav(&tone(16_000, 440.0, 1.0, 1), 16_000, 1);
        let (head, rest) = plain.split_at(36);
        let filler = 4096 - 36 - 8 - 8;
        let mut apple = head.to_vec();
        apple.extend_from_slice(b"FLLR");
        apple.extend_from_slice(&(filler as u32).to_le_bytes());
        apple.extend(std::iter::repeat_n(0u8, filler));
        apple.extend_from_slice(rest);
        let riff_size = (apple.len() - 8) as u32;
        apple[4..8].copy_from_slice(&riff_size.to_le_bytes());
        assert_eq!(&apple[4096 - 8..4096 - 4], b"data");
        let samples = mono_16k(Bytes::from(apple), 60.0).unwrap();
        assert_eq!(samples.len(), 16_000);
        assert!((frequency(&samples) - 440.0).abs() < 5.0);
    }
}
