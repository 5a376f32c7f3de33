//! Audio checked by its bytes before any paid work: which container it is (sniffed, never taken
//! from the declared content type), whether it is whole, its sample rate and its duration where
//! the container records one, and the limits a spoken question must stay within.

use std::time::Duration;

use bytes::Bytes;

/// The containers speech recognition accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioFormat {
    /// RIFF/WAVE with linear PCM.
    Wav,
    Flac,
    /// Ogg with Opus inside.
    OggOpus,
    /// MP4 / M4A (ISO base media).
    Mp4,
    WebM,
}

impl AudioFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Flac => "flac",
            Self::OggOpus => "ogg",
            Self::Mp4 => "mp4",
            Self::WebM => "webm",
        }
    }

    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Wav => "audio/wav",
            Self::Flac => "audio/flac",
            Self::OggOpus => "audio/ogg",
            Self::Mp4 => "audio/mp4",
            Self::WebM => "audio/webm",
        }
    }

    /// The format a declared content type names, for the mislabel check; `None` for types that
    /// name no audio format in particular (`application/octet-stream`, an empty one).
    fn declared(content_type: &str) -> Result<Option<Self>, ()> {
        Ok(Some(
            match crate::media_type::essence(content_type).as_str() {
                "" | "application/octet-stream" | "binary/octet-stream" => return Ok(None),
                "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" | "audio/l16" => {
                    Self::Wav
                }
                "audio/flac" | "audio/x-flac" => Self::Flac,
                "audio/ogg" | "audio/opus" | "application/ogg" | "audio/x-opus+ogg" => {
                    Self::OggOpus
                }
                "audio/mp4" | "audio/m4a" | "audio/x-m4a" | "audio/aac" | "audio/x-aac"
                | "video/mp4" => Self::Mp4,
                "audio/webm" | "video/webm" => Self::WebM,
                _ => return Err(()),
            },
        ))
    }
}

/// What the bytes say about a clip.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioClip {
    pub format: AudioFormat,
    /// Samples per second, where the container states it (WAV, FLAC; 48 kHz for Opus).
    pub sample_rate: Option<u32>,
    pub channels: Option<u16>,
    /// From the container's own bookkeeping; `None` when it records none (a live WebM stream).
    pub duration: Option<Duration>,
}

impl AudioClip {
    /// The billable length: the recorded duration, or an estimate from the size when there is
    /// none (a conservative 16 kB/s, the rate of a 128 kbit/s stream).
    pub fn billable_seconds(&self, size_bytes: usize) -> f64 {
        self.duration.map_or_else(
            || size_bytes as f64 / 16_000.0,
            |duration| duration.as_secs_f64(),
        )
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AudioLimits {
    pub max_bytes: usize,
    pub min_duration: Duration,
    pub max_duration: Duration,
}

impl Default for AudioLimits {
    /// 4 MiB keeps the base64 body under Lambda's 6 MB synchronous payload limit.
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024,
            min_duration: Duration::from_millis(500),
            max_duration: Duration::from_secs(60),
        }
    }
}

impl AudioLimits {
    /// `MAX_AUDIO_DURATION_SECONDS` (60, at most 600) and `MAX_AUDIO_BYTES` (4 MiB).
    pub fn from_vars(
        vars: &std::collections::HashMap<String, String>,
    ) -> Result<Self, crate::config::ConfigError> {
        let env = crate::config::Env::from_vars(vars.clone());
        let read = |name, default, range| env.number_in(name, default, range);
        let defaults = Self::default();
        Ok(Self {
            max_duration: Duration::from_secs(read(
                "MAX_AUDIO_DURATION_SECONDS",
                defaults.max_duration.as_secs(),
                1..=600,
            )?),
            max_bytes: usize::try_from(read(
                "MAX_AUDIO_BYTES",
                defaults.max_bytes as u64,
                1024..=100 * 1024 * 1024,
            )?)
            .unwrap_or(defaults.max_bytes),
            ..defaults
        })
    }
}

/// Why a clip was refused. Each message is meant for the person who sent it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AudioError {
    #[error("The audio is empty.")]
    Empty,
    #[error(
        "The audio is {size} bytes; the limit is {limit} bytes. Send a shorter clip or a compressed format."
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "The audio is not in a supported format. Send WAV (PCM), FLAC, Ogg/Opus, MP4/M4A or WebM."
    )]
    Unrecognised,
    #[error("The content type {declared:?} is not an audio format this service accepts.")]
    UnsupportedContentType { declared: String },
    #[error("The content type says {declared:?} but the audio is {actual}.")]
    Mislabelled {
        declared: String,
        actual: &'static str,
    },
    #[error("The {0} audio is truncated or damaged.")]
    Damaged(&'static str),
    #[error("{0}")]
    Unsupported(String),
    #[error("The clip is {seconds:.2} s long; speak for at least {minimum:.1} s.")]
    TooShort { seconds: f64, minimum: f64 },
    #[error("The clip is {seconds:.1} s long; the limit is {maximum} s.")]
    TooLong { seconds: f64, maximum: u64 },
}

/// Sniffs and checks `bytes` against `limits` and the declared `content_type`.
pub fn check(
    bytes: &[u8],
    content_type: &str,
    limits: &AudioLimits,
) -> Result<AudioClip, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(AudioError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let declared =
        AudioFormat::declared(content_type).map_err(|()| AudioError::UnsupportedContentType {
            declared: content_type.chars().take(100).collect(),
        })?;
    let clip = inspect(bytes)?;
    if let Some(declared) = declared
        && declared != clip.format
    {
        return Err(AudioError::Mislabelled {
            declared: content_type.chars().take(100).collect(),
            actual: clip.format.mime_type(),
        });
    }
    if let Some(duration) = clip.duration {
        if duration < limits.min_duration {
            return Err(AudioError::TooShort {
                seconds: duration.as_secs_f64(),
                minimum: limits.min_duration.as_secs_f64(),
            });
        }
        if duration > limits.max_duration {
            return Err(AudioError::TooLong {
                seconds: duration.as_secs_f64(),
                maximum: limits.max_duration.as_secs(),
            });
        }
    }
    Ok(clip)
}

/// What the container is and what it records about itself.
pub fn inspect(bytes: &[u8]) -> Result<AudioClip, AudioError> {
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
        wav(bytes)
    } else if bytes.starts_with(b"fLaC") {
        flac(bytes)
    } else if bytes.starts_with(b"OggS") {
        ogg(bytes)
    } else if bytes.get(4..8) == Some(b"ftyp") {
        mp4(bytes)
    } else if bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        webm(bytes)
    } else {
        Err(AudioError::Unrecognised)
    }
}

fn u16_le(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u32_be(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_be(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u64_le(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

const PCM: u16 = 1;
const EXTENSIBLE: u16 = 0xFFFE;
/// Writers that stream WAV put a placeholder in the data size; the bytes present count then.
const STREAMING_SIZE: u32 = 0x7FFF_0000;

fn wav(bytes: &[u8]) -> Result<AudioClip, AudioError> {
    let damaged = AudioError::Damaged("WAV");
    let mut at = 12;
    let mut format: Option<(u16, u16, u32, u32, u16)> = None;
    loop {
        let (Some(id), Some(size)) = (bytes.get(at..at + 4), u32_le(bytes, at + 4)) else {
            return Err(damaged);
        };
        let body = at + 8;
        if id == b"fmt " {
            let tag = u16_le(bytes, body).ok_or(damaged.clone())?;
            let channels = u16_le(bytes, body + 2).ok_or(damaged.clone())?;
            let rate = u32_le(bytes, body + 4).ok_or(damaged.clone())?;
            let byte_rate = u32_le(bytes, body + 8).ok_or(damaged.clone())?;
            let bits = u16_le(bytes, body + 14).ok_or(damaged.clone())?;
            let tag = if tag == EXTENSIBLE {
                u16_le(bytes, body + 24).ok_or(damaged.clone())?
            } else {
                tag
            };
            format = Some((tag, channels, rate, byte_rate, bits));
        } else if id == b"data" {
            let (tag, channels, rate, byte_rate, bits) = format.ok_or(damaged.clone())?;
            if tag != PCM {
                return Err(AudioError::Unsupported(
                    "Only linear PCM WAV is accepted; this WAV is compressed.".to_owned(),
                ));
            }
            if !(8_000..=48_000).contains(&rate) {
                return Err(AudioError::Unsupported(format!(
                    "The WAV sample rate is {rate} Hz; it must be between 8000 and 48000 Hz."
                )));
            }
            if channels == 0 || bits == 0 || byte_rate == 0 {
                return Err(damaged);
            }
            // The duration is what decoding yields: samples per second times the size of one
            // sample frame, never the header's own `byte_rate` (a lying header must not change
            // the bill: 17.4 s once billed as 4.35 s).
            let frame_bytes = u32::from(channels) * u32::from(bits.div_ceil(8));
            let decoded_byte_rate = f64::from(rate) * f64::from(frame_bytes);
            let present = bytes.len().saturating_sub(body);
            let data = if size >= STREAMING_SIZE || size == 0 {
                present
            } else if size as usize > present {
                return Err(damaged);
            } else {
                size as usize
            };
            return Ok(AudioClip {
                format: AudioFormat::Wav,
                sample_rate: Some(rate),
                channels: Some(channels),
                duration: Some(Duration::from_secs_f64(data as f64 / decoded_byte_rate)),
            });
        }
        // Chunks are padded to an even length.
        at = body
            .checked_add(size as usize + (size as usize & 1))
            .ok_or(damaged.clone())?;
        if at >= bytes.len() {
            return Err(damaged);
        }
    }
}

fn flac(bytes: &[u8]) -> Result<AudioClip, AudioError> {
    let damaged = AudioError::Damaged("FLAC");
    let info = bytes.get(8..8 + 34).ok_or(damaged.clone())?;
    if bytes[4] & 0x7F != 0 {
        return Err(damaged);
    }
    let rate =
        (u32::from(info[10]) << 12) | (u32::from(info[11]) << 4) | (u32::from(info[12]) >> 4);
    let channels = u16::from((info[12] >> 1) & 0x07) + 1;
    let total = (u64::from(info[13] & 0x0F) << 32)
        | u64::from(u32::from_be_bytes([info[14], info[15], info[16], info[17]]));
    // Walk the metadata blocks: a file cut inside them is damaged; frames must follow.
    let mut at = 4;
    loop {
        let header = bytes.get(at..at + 4).ok_or(damaged.clone())?;
        let length =
            (usize::from(header[1]) << 16) | (usize::from(header[2]) << 8) | usize::from(header[3]);
        at += 4 + length;
        if header[0] & 0x80 != 0 {
            break;
        }
    }
    if at >= bytes.len() || rate == 0 {
        return Err(damaged);
    }
    if !(8_000..=48_000).contains(&rate) {
        return Err(AudioError::Unsupported(format!(
            "The FLAC sample rate is {rate} Hz; it must be between 8000 and 48000 Hz."
        )));
    }
    Ok(AudioClip {
        format: AudioFormat::Flac,
        sample_rate: Some(rate),
        channels: Some(channels),
        duration: (total > 0).then(|| Duration::from_secs_f64(total as f64 / f64::from(rate))),
    })
}

/// Opus always counts granules at 48 kHz.
const OPUS_RATE: f64 = 48_000.0;

fn ogg(bytes: &[u8]) -> Result<AudioClip, AudioError> {
    let damaged = AudioError::Damaged("Ogg");
    let mut at = 0;
    let mut first_packet: Option<&[u8]> = None;
    let mut last_granule: Option<u64> = None;
    while at < bytes.len() {
        if bytes.get(at..at + 4) != Some(b"OggS") {
            return Err(damaged);
        }
        let segments = usize::from(*bytes.get(at + 26).ok_or(damaged.clone())?);
        let table = bytes
            .get(at + 27..at + 27 + segments)
            .ok_or(damaged.clone())?;
        let body = at + 27 + segments;
        let length: usize = table.iter().map(|&lace| usize::from(lace)).sum();
        let page = bytes.get(body..body + length).ok_or(damaged.clone())?;
        if first_packet.is_none() {
            first_packet = Some(page);
        }
        let granule = u64_le(bytes, at + 6).ok_or(damaged.clone())?;
        if granule != u64::MAX {
            last_granule = Some(granule);
        }
        at = body + length;
    }
    let head = first_packet.ok_or(damaged.clone())?;
    if !head.starts_with(b"OpusHead") {
        return Err(AudioError::Unsupported(
            "Only Opus is accepted inside Ogg (this looks like Vorbis or another codec)."
                .to_owned(),
        ));
    }
    let channels = head.get(9).map(|&count| u16::from(count));
    let pre_skip = u16_le(head, 10).ok_or(damaged)?;
    let samples = last_granule
        .unwrap_or(0)
        .saturating_sub(u64::from(pre_skip));
    Ok(AudioClip {
        format: AudioFormat::OggOpus,
        sample_rate: Some(48_000),
        channels,
        duration: (samples > 0).then(|| Duration::from_secs_f64(samples as f64 / OPUS_RATE)),
    })
}

/// Boxes of an ISO base media file from `at` to `end`: (type, body start, body end).
fn mp4_boxes(
    bytes: &[u8],
    mut at: usize,
    end: usize,
) -> Result<Vec<([u8; 4], usize, usize)>, AudioError> {
    let damaged = AudioError::Damaged("MP4");
    let mut boxes = Vec::new();
    while at < end {
        let size = u32_be(bytes, at).ok_or(damaged.clone())?;
        let kind: [u8; 4] = bytes
            .get(at + 4..at + 8)
            .and_then(|kind| kind.try_into().ok())
            .ok_or(damaged.clone())?;
        let (header, total) = match size {
            0 => (8, end - at),
            1 => (
                16,
                usize::try_from(u64_be(bytes, at + 8).ok_or(damaged.clone())?)
                    .map_err(|_| damaged.clone())?,
            ),
            size => (8, size as usize),
        };
        if total < header || at + total > end {
            return Err(damaged);
        }
        boxes.push((kind, at + header, at + total));
        at += total;
    }
    Ok(boxes)
}

fn mp4(bytes: &[u8]) -> Result<AudioClip, AudioError> {
    let damaged = AudioError::Damaged("MP4");
    let top = mp4_boxes(bytes, 0, bytes.len())?;
    let (_, start, end) = top
        .iter()
        .find(|(kind, ..)| kind == b"moov")
        .copied()
        .ok_or(damaged.clone())?;
    let inner = mp4_boxes(bytes, start, end)?;
    let (_, header, _) = inner
        .iter()
        .find(|(kind, ..)| kind == b"mvhd")
        .copied()
        .ok_or(damaged.clone())?;
    let version = *bytes.get(header).ok_or(damaged.clone())?;
    let (timescale, duration) = if version == 1 {
        (u32_be(bytes, header + 20), u64_be(bytes, header + 24))
    } else {
        (
            u32_be(bytes, header + 12),
            u32_be(bytes, header + 16).map(u64::from),
        )
    };
    let (Some(timescale), Some(duration)) = (timescale, duration) else {
        return Err(damaged);
    };
    if !top.iter().any(|(kind, ..)| kind == b"mdat") {
        return Err(damaged);
    }
    Ok(AudioClip {
        format: AudioFormat::Mp4,
        sample_rate: None,
        channels: None,
        duration: (timescale > 0 && duration > 0 && duration != u64::from(u32::MAX))
            .then(|| Duration::from_secs_f64(duration as f64 / f64::from(timescale))),
    })
}

/// An EBML variable-length integer at `at`: (value, length). `keep_marker` for element ids.
fn vint(bytes: &[u8], at: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *bytes.get(at)?;
    let length = first.leading_zeros() as usize + 1;
    if length > 8 {
        return None;
    }
    let mut value = if keep_marker {
        u64::from(first)
    } else {
        u64::from(first) & ((1u64 << (8 - length)) - 1)
    };
    for &byte in bytes.get(at + 1..at + length)? {
        value = (value << 8) | u64::from(byte);
    }
    Some((value, length))
}

const EBML_HEADER: u64 = 0x1A45_DFA3;
const DOC_TYPE: u64 = 0x4282;
const SEGMENT: u64 = 0x1853_8067;
const INFO: u64 = 0x1549_A966;
const TIMECODE_SCALE: u64 = 0x2A_D7B1;
const DURATION: u64 = 0x4489;

/// Elements from `at` to `end`: (id, data start, data end); an unknown size runs to `end`.
fn ebml_elements(bytes: &[u8], mut at: usize, end: usize) -> Option<Vec<(u64, usize, usize)>> {
    let mut elements = Vec::new();
    while at < end {
        let (id, id_length) = vint(bytes, at, true)?;
        let (size, size_length) = vint(bytes, at + id_length, false)?;
        let data = at + id_length + size_length;
        let unknown = size == (1u64 << (7 * size_length)) - 1;
        let data_end = if unknown {
            end
        } else {
            data.checked_add(usize::try_from(size).ok()?)?.min(end)
        };
        elements.push((id, data, data_end));
        if data_end <= at {
            return None;
        }
        // Children are read separately; only the two levels down to Info matter here.
        at = if id == SEGMENT { end } else { data_end };
    }
    Some(elements)
}

fn webm(bytes: &[u8]) -> Result<AudioClip, AudioError> {
    let damaged = AudioError::Damaged("WebM");
    let top = ebml_elements(bytes, 0, bytes.len()).ok_or(damaged.clone())?;
    let &(_, header_start, header_end) = top
        .iter()
        .find(|(id, ..)| *id == EBML_HEADER)
        .ok_or(damaged.clone())?;
    let header = ebml_elements(bytes, header_start, header_end).ok_or(damaged.clone())?;
    let doc_type = header
        .iter()
        .find(|(id, ..)| *id == DOC_TYPE)
        .and_then(|&(_, start, end)| bytes.get(start..end))
        .ok_or(damaged.clone())?;
    if doc_type != b"webm" && doc_type != b"matroska" {
        return Err(AudioError::Unrecognised);
    }
    let &(_, segment_start, segment_end) = top
        .iter()
        .find(|(id, ..)| *id == SEGMENT)
        .ok_or(damaged.clone())?;
    if segment_start >= segment_end {
        return Err(damaged);
    }
    // A stream cut short still reads its Info; a recorder that writes no Duration leaves it unknown.
    let segment = ebml_elements(bytes, segment_start, segment_end).unwrap_or_default();
    let duration = segment
        .iter()
        .find(|(id, ..)| *id == INFO)
        .and_then(|&(_, start, end)| ebml_elements(bytes, start, end))
        .and_then(|info| {
            let scale = info
                .iter()
                .find(|(id, ..)| *id == TIMECODE_SCALE)
                .and_then(|&(_, start, end)| bytes.get(start..end))
                .map(|raw| {
                    raw.iter()
                        .fold(0u64, |value, &byte| (value << 8) | u64::from(byte))
                })
                .unwrap_or(1_000_000);
            let ticks = info
                .iter()
                .find(|(id, ..)| *id == DURATION)
                .and_then(|&(_, start, end)| bytes.get(start..end))
                .and_then(|raw| match raw.len() {
                    4 => Some(f64::from(f32::from_be_bytes(raw.try_into().ok()?))),
                    8 => Some(f64::from_be_bytes(raw.try_into().ok()?)),
                    _ => None,
                })?;
            let seconds = ticks * scale as f64 / 1e9;
            (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
        });
    // A browser's recording (Opus, no Duration) is measured by its packets, which is also how
    // it will be streamed; a WebM of another codec keeps what its Info says.
    match crate::ogg_opus::webm_to_ogg_opus(bytes) {
        Ok(opus) => Ok(AudioClip {
            format: AudioFormat::WebM,
            sample_rate: Some(crate::ogg_opus::OPUS_RATE),
            channels: Some(u16::from(opus.channels)),
            // The packets are what will be transcribed (and billed), whatever Info claims.
            duration: Some(opus.duration),
        }),
        Err(_) => Ok(AudioClip {
            format: AudioFormat::WebM,
            sample_rate: None,
            channels: None,
            duration,
        }),
    }
}

/// Linear PCM as streaming speech recognition takes it (Amazon Transcribe's `pcm` encoding):
/// signed 16-bit little-endian samples, one channel, no header.
#[derive(Clone, Debug, PartialEq)]
pub struct Pcm16Mono {
    pub sample_rate: u32,
    /// Two bytes per sample.
    pub samples: Bytes,
}

/// The `data` chunk of a linear PCM WAV (one [`check`] accepted) as [`Pcm16Mono`] at the WAV's
/// own sample rate. 16-bit mono data is handed on as it is, without a copy; 8-, 24- and 32-bit
/// samples keep their 16 most significant bits, and several channels are averaged into one (a
/// downmix: a stereo question is still one voice, so it can still be streamed).
pub fn wav_pcm16_mono(wav: &Bytes) -> Result<Pcm16Mono, AudioError> {
    let damaged = AudioError::Damaged("WAV");
    let bytes = &wav[..];
    if !(bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WAVE")) {
        return Err(AudioError::Unrecognised);
    }
    let mut at = 12;
    // (format tag, channels, rate, bytes per frame)
    let mut format: Option<(u16, u16, u32, u16)> = None;
    let (start, length) = loop {
        let (Some(id), Some(size)) = (bytes.get(at..at + 4), u32_le(bytes, at + 4)) else {
            return Err(damaged);
        };
        let body = at + 8;
        if id == b"fmt " {
            let tag = u16_le(bytes, body).ok_or(damaged.clone())?;
            let tag = if tag == EXTENSIBLE {
                u16_le(bytes, body + 24).ok_or(damaged.clone())?
            } else {
                tag
            };
            format = Some((
                tag,
                u16_le(bytes, body + 2).ok_or(damaged.clone())?,
                u32_le(bytes, body + 4).ok_or(damaged.clone())?,
                u16_le(bytes, body + 12).ok_or(damaged.clone())?,
            ));
        } else if id == b"data" {
            let present = bytes.len().saturating_sub(body);
            let length = if size >= STREAMING_SIZE || size == 0 {
                present
            } else {
                (size as usize).min(present)
            };
            break (body, length);
        }
        at = body
            .checked_add(size as usize + (size as usize & 1))
            .ok_or(damaged.clone())?;
    };
    let (tag, channels, sample_rate, frame) = format.ok_or(damaged.clone())?;
    if tag != PCM {
        return Err(AudioError::Unsupported(
            "Only linear PCM WAV is accepted; this WAV is compressed.".to_owned(),
        ));
    }
    let channels = usize::from(channels);
    let frame = usize::from(frame);
    if channels == 0 || frame == 0 || frame % channels != 0 {
        return Err(damaged);
    }
    let width = frame / channels;
    if !(1..=4).contains(&width) {
        return Err(AudioError::Unsupported(format!(
            "WAV samples of {width} bytes cannot be converted to 16-bit PCM."
        )));
    }
    // A trailing partial frame is dropped.
    let data = wav.slice(start..start + length - length % frame);
    if width == 2 && channels == 1 {
        return Ok(Pcm16Mono {
            sample_rate,
            samples: data,
        });
    }
    let sample = |bytes: &[u8]| -> i32 {
        // Samples are little-endian and left-justified: the last two bytes are the loudest.
        match *bytes {
            [unsigned] => (i32::from(unsigned) - 128) << 8,
            [.., low, high] => i32::from(i16::from_le_bytes([low, high])),
            [] => 0,
        }
    };
    let mut samples = Vec::with_capacity(data.len() / frame * 2);
    for frame in data.chunks_exact(frame) {
        let sum: i32 = frame.chunks_exact(width).map(sample).sum();
        // The mean of i16 values is an i16.
        let mean = (sum / channels as i32).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        samples.extend_from_slice(&mean.to_le_bytes());
    }
    Ok(Pcm16Mono {
        sample_rate,
        samples: Bytes::from(samples),
    })
}

/// `seconds` of 16-bit mono PCM silence at `rate` Hz as a WAV file, for tests of the code
/// that checks and transcribes clips.
#[cfg(any(test, feature = "test-support"))]
pub fn silent_wav(rate: u32, seconds: f64) -> Vec<u8> {
    let data = (f64::from(rate) * seconds) as u32 * 2;
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(36 + data).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&PCM.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(rate * 2).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data.to_le_bytes());
    bytes.resize(bytes.len() + data as usize, 0);
    bytes
}

/// A linear PCM WAV of `channels` interleaved channels of `bits`-bit samples with `data` as its
/// `data` chunk, after a `LIST` chunk as ffmpeg writes one, for tests of the code that reads
/// clips.
#[cfg(any(test, feature = "test-support"))]
pub fn pcm_wav(rate: u32, channels: u16, bits: u16, data: &[u8]) -> Vec<u8> {
    let frame = channels * bits.div_ceil(8);
    let list = b"INFOISFT\x0e\x00\x00\x00Lavf61.7.100\x00\x00";
    let mut bytes = b"RIFF".to_vec();
    let riff_size = 4 + (8 + 16) + (8 + list.len()) + 8 + data.len() + (data.len() & 1);
    bytes.extend_from_slice(&(riff_size as u32).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&PCM.to_le_bytes());
    bytes.extend_from_slice(&channels.to_le_bytes());
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(rate * u32::from(frame)).to_le_bytes());
    bytes.extend_from_slice(&frame.to_le_bytes());
    bytes.extend_from_slice(&bits.to_le_bytes());
    bytes.extend_from_slice(b"LIST");
    bytes.extend_from_slice(&(list.len() as u32).to_le_bytes());
    bytes.extend_from_slice(list);
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
    bytes.extend_from_slice(data);
    if data.len() & 1 == 1 {
        bytes.push(0);
    }
    bytes
}

/// An Ogg page holding one packet, for tests of the code that reads clips.
#[cfg(any(test, feature = "test-support"))]
pub fn ogg_page(granule: u64, packet: &[u8]) -> Vec<u8> {
    let mut page = b"OggS".to_vec();
    page.extend_from_slice(&[0, 0]);
    page.extend_from_slice(&granule.to_le_bytes());
    page.extend_from_slice(&[0; 12]);
    page.push(1);
    page.push(packet.len() as u8);
    page.extend_from_slice(packet);
    page
}

/// A mono Ogg/Opus clip of `seconds` (16 kHz input rate), one 200-byte packet per 100 ms; the
/// packets are filler, so it passes [`check`] but decodes to nothing.
#[cfg(any(test, feature = "test-support"))]
pub fn ogg_opus_clip(seconds: u64) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    // Version 1, one channel, pre-skip 312, input rate 16 kHz.
    head.extend_from_slice(&[1, 1, 0x38, 0x01, 0x80, 0x3E, 0, 0, 0, 0, 0]);
    let mut bytes = ogg_page(0, &head);
    bytes.extend(ogg_page(0, b"OpusTags\0\0\0\0\0\0\0\0"));
    for page in 1..=seconds * 10 {
        bytes.extend(ogg_page(312 + 4_800 * page, &[0xF8; 200]));
    }
    bytes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits() -> AudioLimits {
        AudioLimits::default()
    }

    #[test]
    fn a_wav_reports_its_rate_and_duration() {
        let clip = check(&silent_wav(16_000, 2.0), "audio/wav", &limits()).unwrap();
        assert_eq!(clip.format, AudioFormat::Wav);
        assert_eq!(clip.sample_rate, Some(16_000));
        assert!((clip.duration.unwrap().as_secs_f64() - 2.0).abs() < 1e-6);
        assert!((clip.billable_seconds(64_000) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn a_wav_is_billed_from_its_samples_not_its_declared_byte_rate() {
        let mut lying = silent_wav(16_000, 2.0);
        // byte_rate (offset 28) claims four times the real rate: 0.5 s by the header.
        lying[28..32].copy_from_slice(&(16_000u32 * 2 * 4).to_le_bytes());
        let clip = check(&lying, "audio/wav", &limits()).unwrap();
        assert!((clip.duration.unwrap().as_secs_f64() - 2.0).abs() < 1e-6);
        assert!((clip.billable_seconds(64_000) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn bad_wavs_are_refused_with_a_reason() {
        let whole = silent_wav(16_000, 2.0);
        assert_eq!(
            check(&whole[..1000], "audio/wav", &limits()),
            Err(AudioError::Damaged("WAV"))
        );
        assert!(matches!(
            check(&silent_wav(16_000, 0.2), "audio/wav", &limits()),
            Err(AudioError::TooShort { .. })
        ));
        assert!(matches!(
            check(&silent_wav(8_000, 61.0), "audio/wav", &limits()),
            Err(AudioError::TooLong { .. })
        ));
        assert!(matches!(
            check(&silent_wav(96_000, 1.0), "audio/wav", &limits()),
            Err(AudioError::Unsupported(_))
        ));
        assert_eq!(check(&[], "audio/wav", &limits()), Err(AudioError::Empty));
        assert!(matches!(
            check(&silent_wav(16_000, 1.0), "audio/flac", &limits()),
            Err(AudioError::Mislabelled { .. })
        ));
        assert!(matches!(
            check(&silent_wav(16_000, 1.0), "image/png", &limits()),
            Err(AudioError::UnsupportedContentType { .. })
        ));
        assert_eq!(
            check(b"%PDF-1.7 not audio", "audio/wav", &limits()),
            Err(AudioError::Unrecognised)
        );
        let small = AudioLimits {
            max_bytes: 100,
            ..limits()
        };
        assert!(matches!(
            check(&whole, "audio/wav", &small),
            Err(AudioError::TooLarge { .. })
        ));
    }

    #[test]
    fn limits_come_from_the_environment_and_bad_values_name_the_variable() {
        let vars = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let limits =
            AudioLimits::from_vars(&vars(&[("MAX_AUDIO_DURATION_SECONDS", "30")])).unwrap();
        assert_eq!(limits.max_duration, Duration::from_secs(30));
        assert_eq!(limits.max_bytes, AudioLimits::default().max_bytes);
        let error =
            AudioLimits::from_vars(&vars(&[("MAX_AUDIO_DURATION_SECONDS", "0")])).unwrap_err();
        assert_eq!(error.name, "MAX_AUDIO_DURATION_SECONDS");
        assert!(AudioLimits::from_vars(&vars(&[("MAX_AUDIO_BYTES", "lots")])).is_err());
    }

    #[test]
    fn a_streamed_wav_counts_the_bytes_present() {
        let mut bytes = silent_wav(16_000, 1.5);
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let clip = check(&bytes, "application/octet-stream", &limits()).unwrap();
        assert!((clip.duration.unwrap().as_secs_f64() - 1.5).abs() < 1e-6);
    }

    fn flac_clip(rate: u32, total: u64) -> Vec<u8> {
        let mut bytes = b"fLaC".to_vec();
        bytes.extend_from_slice(&[0x80, 0, 0, 34]);
        let mut info = [0u8; 34];
        info[10] = (rate >> 12) as u8;
        info[11] = (rate >> 4) as u8;
        info[12] = ((rate & 0x0F) as u8) << 4 | 0x01 << 1;
        info[13] = 0x70 | ((total >> 32) as u8 & 0x0F);
        info[14..18].copy_from_slice(&(total as u32).to_be_bytes());
        bytes.extend_from_slice(&info);
        bytes.extend_from_slice(&[0xFF, 0xF8, 0, 0]);
        bytes
    }

    #[test]
    fn flac_reads_streaminfo() {
        let clip = check(&flac_clip(44_100, 88_200), "audio/x-flac", &limits()).unwrap();
        assert_eq!(clip.format, AudioFormat::Flac);
        assert_eq!(clip.channels, Some(2));
        assert!((clip.duration.unwrap().as_secs_f64() - 2.0).abs() < 1e-6);
        assert_eq!(
            check(&flac_clip(44_100, 88_200)[..20], "audio/flac", &limits()),
            Err(AudioError::Damaged("FLAC"))
        );
    }

    #[test]
    fn ogg_opus_duration_comes_from_the_last_granule() {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 1, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
        let mut bytes = ogg_page(0, &head);
        bytes.extend(ogg_page(0, b"OpusTags\0\0\0\0\0\0\0\0"));
        bytes.extend(ogg_page(312 + 48_000 * 3, &[0xF8; 40]));
        let clip = check(&bytes, "audio/ogg; codecs=opus", &limits()).unwrap();
        assert_eq!(clip.format, AudioFormat::OggOpus);
        assert!((clip.duration.unwrap().as_secs_f64() - 3.0).abs() < 1e-6);
        assert_eq!(
            check(&bytes[..bytes.len() - 10], "audio/ogg", &limits()),
            Err(AudioError::Damaged("Ogg"))
        );
        let vorbis = ogg_page(0, b"\x01vorbis\0\0\0\0\x01\x44\xAC\0\0");
        assert!(matches!(
            check(&vorbis, "audio/ogg", &limits()),
            Err(AudioError::Unsupported(_))
        ));
    }

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut bytes = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(kind);
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn mp4_duration_comes_from_the_movie_header() {
        let mut mvhd = vec![0u8; 100];
        mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
        mvhd[16..20].copy_from_slice(&4500u32.to_be_bytes());
        let mut bytes = mp4_box(b"ftyp", b"M4A \0\0\0\0isom");
        bytes.extend(mp4_box(b"moov", &mp4_box(b"mvhd", &mvhd)));
        bytes.extend(mp4_box(b"mdat", &[0; 64]));
        let clip = check(&bytes, "audio/x-m4a", &limits()).unwrap();
        assert_eq!(clip.format, AudioFormat::Mp4);
        assert!((clip.duration.unwrap().as_secs_f64() - 4.5).abs() < 1e-6);
        assert_eq!(
            check(&bytes[..bytes.len() - 8], "audio/mp4", &limits()),
            Err(AudioError::Damaged("MP4"))
        );
    }

    fn ebml(id: &[u8], body: &[u8]) -> Vec<u8> {
        let mut bytes = id.to_vec();
        bytes.push(0x08);
        bytes.extend_from_slice(&(body.len() as u64).to_be_bytes()[4..]);
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn webm_duration_comes_from_segment_info_when_recorded() {
        let header = ebml(&[0x1A, 0x45, 0xDF, 0xA3], &ebml(&[0x42, 0x82], b"webm"));
        let info = ebml(
            &[0x15, 0x49, 0xA9, 0x66],
            &[
                ebml(&[0x2A, 0xD7, 0xB1], &1_000_000u32.to_be_bytes()),
                ebml(&[0x44, 0x89], &2500f64.to_be_bytes()),
            ]
            .concat(),
        );
        let mut bytes = header.clone();
        bytes.extend(ebml(
            &[0x18, 0x53, 0x80, 0x67],
            &[info, vec![0x1F, 0x43, 0xB6, 0x75, 0x80]].concat(),
        ));
        let clip = check(&bytes, "audio/webm;codecs=opus", &limits()).unwrap();
        assert_eq!(clip.format, AudioFormat::WebM);
        assert!((clip.duration.unwrap().as_secs_f64() - 2.5).abs() < 1e-6);
        // A live recording: the segment's size is unknown and there is no duration.
        let mut live = header;
        live.extend_from_slice(&[
            0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        live.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75, 0x80]);
        let clip = check(&live, "audio/webm", &limits()).unwrap();
        assert_eq!(clip.duration, None);
    }

    #[test]
    fn a_browser_recording_is_measured_by_its_opus_packets_and_held_to_the_limits() {
        let webm = crate::ogg_opus::browser_webm(4.0, 1);
        let clip = check(&webm, "audio/webm;codecs=opus", &limits()).unwrap();
        assert_eq!(clip.format, AudioFormat::WebM);
        assert_eq!((clip.sample_rate, clip.channels), (Some(48_000), Some(1)));
        assert!((clip.duration.unwrap().as_secs_f64() - 3.9935).abs() < 1e-3);
        let short = AudioLimits {
            max_duration: Duration::from_secs(3),
            ..limits()
        };
        assert!(matches!(
            check(&webm, "audio/webm", &short),
            Err(AudioError::TooLong { .. })
        ));
    }

    fn le16(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn a_16_bit_mono_wav_is_its_data_chunk_without_a_copy() {
        let data = le16(&[0, 1000, -1000, i16::MAX, i16::MIN]);
        let wav = Bytes::from(pcm_wav(16_000, 1, 16, &data));
        assert!(
            check(
                &wav,
                "audio/wav",
                &AudioLimits {
                    min_duration: Duration::ZERO,
                    ..limits()
                }
            )
            .is_ok()
        );
        let pcm = wav_pcm16_mono(&wav).unwrap();
        assert_eq!(pcm.sample_rate, 16_000);
        assert_eq!(pcm.samples, data);
        // A slice of the clip's own buffer.
        let start = wav.as_ptr() as usize;
        let at = pcm.samples.as_ptr() as usize;
        assert!(at > start && at < start + wav.len());

        let silent = Bytes::from(silent_wav(8_000, 1.0));
        let pcm = wav_pcm16_mono(&silent).unwrap();
        assert_eq!((pcm.sample_rate, pcm.samples.len()), (8_000, 16_000));
        assert_eq!(&pcm.samples[..], &silent[44..]);
    }

    #[test]
    fn stereo_and_other_sample_sizes_become_16_bit_mono() {
        // Stereo: the channels are averaged.
        let stereo = le16(&[1000, 3000, -2000, -4000, i16::MAX, i16::MAX]);
        let pcm = wav_pcm16_mono(&Bytes::from(pcm_wav(44_100, 2, 16, &stereo))).unwrap();
        assert_eq!(pcm.sample_rate, 44_100);
        assert_eq!(pcm.samples, le16(&[2000, -3000, i16::MAX]));
        // 8-bit samples are unsigned around 128.
        let pcm = wav_pcm16_mono(&Bytes::from(pcm_wav(8_000, 1, 8, &[128, 255, 0]))).unwrap();
        assert_eq!(pcm.samples, le16(&[0, 127 << 8, -128 << 8]));
        // 24-bit: the two most significant bytes; a trailing partial frame is dropped.
        let pcm = wav_pcm16_mono(&Bytes::from(pcm_wav(
            48_000,
            1,
            24,
            &[0x11, 0x34, 0x12, 0xFF, 0x00, 0x80, 0x01],
        )))
        .unwrap();
        assert_eq!(pcm.samples, le16(&[0x1234, i16::MIN]));
        // 32-bit stereo.
        let pcm = wav_pcm16_mono(&Bytes::from(pcm_wav(
            16_000,
            2,
            32,
            &[0, 0, 0x10, 0x00, 0, 0, 0x30, 0x00],
        )))
        .unwrap();
        assert_eq!(pcm.samples, le16(&[0x20]));
    }

    #[test]
    fn only_linear_pcm_wavs_convert() {
        assert_eq!(
            wav_pcm16_mono(&Bytes::from_static(b"fLaC\0\0\0\x22")),
            Err(AudioError::Unrecognised)
        );
        let mut float = pcm_wav(16_000, 1, 32, &[0; 8]);
        float[20] = 3;
        assert!(matches!(
            wav_pcm16_mono(&Bytes::from(float)),
            Err(AudioError::Unsupported(_))
        ));
        let truncated = Bytes::from(pcm_wav(16_000, 1, 16, &[0; 8])[..30].to_vec());
        assert_eq!(wav_pcm16_mono(&truncated), Err(AudioError::Damaged("WAV")));
    }
}
