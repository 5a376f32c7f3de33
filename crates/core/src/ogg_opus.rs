//! Browser recordings rewrapped for streaming speech recognition. A browser's MediaRecorder
//! records WebM with Opus inside; Amazon Transcribe streaming takes Opus only in an Ogg
//! container (https://docs.aws.amazon.com/transcribe/latest/dg/streaming.html: FLAC, Ogg/Opus,
//! 16-bit PCM). [`webm_to_ogg_opus`] moves the Opus packets, unchanged and undecoded, from
//! the WebM's blocks into Ogg pages as RFC 7845 lays them out: an `OpusHead` page, an
//! `OpusTags` page, then the audio with each page's granule position counting the 48 kHz
//! samples decoded so far.
//!
//! MediaRecorder writes WebM as a live stream: the segment and its clusters have an unknown
//! size and the file records no duration, so the duration comes from the packets themselves
//! (each Opus packet's TOC byte says how many samples it holds).

use std::io::Cursor;
use std::time::Duration;

use bytes::Bytes;
use matroska_demuxer::{Frame, MatroskaFile, TrackType};

use crate::audio::AudioError;

/// Opus counts samples at 48 kHz, whatever the input rate was.
pub const OPUS_RATE: u32 = 48_000;
/// Packets per Ogg page: 10 packets of 20 ms make pages of 0.2 s, small enough to pace.
const PACKETS_PER_PAGE: usize = 10;
/// The Ogg stream serial number (one stream per file, so any fixed value serves).
const SERIAL: u32 = 0x4D41_4E55;

/// An Ogg/Opus file made from a WebM.
#[derive(Clone, Debug, PartialEq)]
pub struct OggOpus {
    pub bytes: Bytes,
    pub channels: u8,
    /// The audio's length: the samples of every packet, less the encoder's pre-skip.
    pub duration: Duration,
}

fn damaged() -> AudioError {
    AudioError::Damaged("WebM")
}

/// The WebM's first audio track, which must be Opus, as an Ogg/Opus file.
pub fn webm_to_ogg_opus(webm: &[u8]) -> Result<OggOpus, AudioError> {
    let mut file = MatroskaFile::open(Cursor::new(webm)).map_err(|_| damaged())?;
    let track = file
        .tracks()
        .iter()
        .find(|track| track.track_type() == TrackType::Audio)
        .ok_or_else(|| AudioError::Unsupported("The WebM file has no audio track.".to_owned()))?;
    if track.codec_id() != "A_OPUS" {
        return Err(AudioError::Unsupported(format!(
            "Only Opus audio is accepted inside WebM (this file holds {}).",
            track.codec_id()
        )));
    }
    let number = track.track_number().get();
    let head = match track.codec_private() {
        Some(head) if head.starts_with(b"OpusHead") && head.len() >= 19 => head.to_vec(),
        // The Matroska Opus mapping puts the OpusHead in CodecPrivate; a file without one still
        // says enough to write it.
        _ => opus_head(
            track
                .audio()
                .map_or(1, |audio| u8::try_from(audio.channels().get()).unwrap_or(2)),
            track.codec_delay().map_or(0, |delay_ns| {
                u16::try_from(delay_ns * u64::from(OPUS_RATE) / 1_000_000_000).unwrap_or(0)
            }),
            track
                .audio()
                .map_or(OPUS_RATE, |audio| audio.sampling_frequency() as u32),
        ),
    };
    let channels = head[9];
    let pre_skip = u64::from(u16::from_le_bytes([head[10], head[11]]));

    let mut ogg = OggWriter::default();
    ogg.page(&[head.as_slice()][..], 0, BEGINNING_OF_STREAM)?;
    ogg.page(&[opus_tags().as_slice()][..], 0, 0)?;
    let mut granule = 0u64;
    let mut pending: Vec<Vec<u8>> = Vec::with_capacity(PACKETS_PER_PAGE);
    let mut frame = Frame::default();
    while file.next_frame(&mut frame).map_err(|_| damaged())? {
        if frame.track != number || frame.data.is_empty() {
            continue;
        }
        granule += opus_samples(&frame.data).ok_or_else(damaged)?;
        pending.push(std::mem::take(&mut frame.data));
        if pending.len() == PACKETS_PER_PAGE {
            ogg.page(pending.as_slice(), granule, 0)?;
            pending.clear();
        }
    }
    if granule == 0 {
        return Err(AudioError::Unsupported(
            "The WebM file holds no audio.".to_owned(),
        ));
    }
    ogg.page(pending.as_slice(), granule, END_OF_STREAM)?;
    Ok(OggOpus {
        bytes: Bytes::from(ogg.bytes),
        channels,
        duration: Duration::from_secs_f64(
            granule.saturating_sub(pre_skip) as f64 / f64::from(OPUS_RATE),
        ),
    })
}

/// How many 48 kHz samples an Opus packet decodes to, from its TOC byte (RFC 6716 §3.1).
pub fn opus_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = usize::from(toc >> 3);
    let per_frame: u64 = match config {
        // SILK: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][config % 4],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][config % 2],
        // CELT: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][config % 4],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(packet.get(1)? & 0x3F),
    };
    // A packet holds at most 120 ms.
    let samples = per_frame * frames;
    (frames > 0 && samples <= 5_760).then_some(samples)
}

/// An `OpusHead` (RFC 7845 §5.1) for mapping family 0 (mono or stereo).
fn opus_head(channels: u8, pre_skip: u16, input_rate: u32) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(channels.clamp(1, 2));
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&input_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0);
    head
}

/// An `OpusTags` (RFC 7845 §5.2) naming this service as the vendor, with no comments.
fn opus_tags() -> Vec<u8> {
    let vendor = b"manuel";
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());
    tags
}

const BEGINNING_OF_STREAM: u8 = 0x02;
const END_OF_STREAM: u8 = 0x04;

/// Writes Ogg pages (RFC 3533) of whole packets.
#[derive(Default)]
struct OggWriter {
    bytes: Vec<u8>,
    sequence: u32,
}

impl OggWriter {
    fn page(
        &mut self,
        packets: &[impl AsRef<[u8]>],
        granule: u64,
        flags: u8,
    ) -> Result<(), AudioError> {
        let mut lacing: Vec<u8> = Vec::new();
        for packet in packets {
            let length = packet.as_ref().len();
            lacing.extend(std::iter::repeat_n(255u8, length / 255));
            lacing.push((length % 255) as u8);
        }
        if lacing.len() > 255 {
            return Err(damaged());
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b"OggS");
        self.bytes.push(0);
        self.bytes.push(flags);
        self.bytes.extend_from_slice(&granule.to_le_bytes());
        self.bytes.extend_from_slice(&SERIAL.to_le_bytes());
        self.bytes.extend_from_slice(&self.sequence.to_le_bytes());
        self.bytes.extend_from_slice(&[0; 4]);
        self.bytes.push(lacing.len() as u8);
        self.bytes.extend_from_slice(&lacing);
        for packet in packets {
            self.bytes.extend_from_slice(packet.as_ref());
        }
        let crc = ogg_crc(&self.bytes[start..]);
        self.bytes[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
        self.sequence += 1;
        Ok(())
    }
}

/// The Ogg page checksum: CRC-32 with polynomial 0x04C11DB7, no reflection, initial value
/// and final XOR zero, over the page with its checksum field zeroed.
pub fn ogg_crc(page: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &byte in page {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A WebM as a browser's MediaRecorder writes it (a segment and one cluster of unknown size,
/// no duration, an Opus track with its OpusHead, 20 ms SimpleBlocks), holding `seconds` of
/// `channels`-channel Opus packets of filler: it demuxes like a recording but decodes to
/// nothing. For tests of the code that reads and rewraps clips.
#[cfg(any(test, feature = "test-support"))]
pub fn browser_webm(seconds: f64, channels: u8) -> Vec<u8> {
    fn element(id: &[u8], body: &[u8]) -> Vec<u8> {
        let mut bytes = id.to_vec();
        // An 8-byte size, as MediaRecorder writes them.
        bytes.push(0x01);
        bytes.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
        bytes.extend_from_slice(body);
        bytes
    }
    fn unknown_size(id: &[u8]) -> Vec<u8> {
        let mut bytes = id.to_vec();
        bytes.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        bytes
    }
    let header = element(
        &[0x1A, 0x45, 0xDF, 0xA3],
        &[
            element(&[0x42, 0x86], &[1]),
            element(&[0x42, 0xF7], &[1]),
            element(&[0x42, 0xF2], &[4]),
            element(&[0x42, 0xF3], &[8]),
            element(&[0x42, 0x82], b"webm"),
            element(&[0x42, 0x87], &[4]),
            element(&[0x42, 0x85], &[2]),
        ]
        .concat(),
    );
    let info = element(
        &[0x15, 0x49, 0xA9, 0x66],
        &[
            element(&[0x2A, 0xD7, 0xB1], &1_000_000u32.to_be_bytes()),
            element(&[0x4D, 0x80], b"Chrome"),
            element(&[0x57, 0x41], b"Chrome"),
        ]
        .concat(),
    );
    let track = element(
        &[0xAE],
        &[
            element(&[0xD7], &[1]),
            element(&[0x73, 0xC5], &[0x5A]),
            element(&[0x83], &[2]),
            element(&[0x86], b"A_OPUS"),
            element(&[0x63, 0xA2], &opus_head(channels, 312, 48_000)),
            element(
                &[0xE1],
                &[
                    element(&[0xB5], &48_000f64.to_be_bytes()),
                    element(&[0x9F], &[channels]),
                    element(&[0x62, 0x64], &[32]),
                ]
                .concat(),
            ),
        ]
        .concat(),
    );
    let tracks = element(&[0x16, 0x54, 0xAE, 0x6B], &track);
    let mut bytes = header;
    bytes.extend(unknown_size(&[0x18, 0x53, 0x80, 0x67]));
    bytes.extend(info);
    bytes.extend(tracks);
    bytes.extend(unknown_size(&[0x1F, 0x43, 0xB6, 0x75]));
    bytes.extend(element(&[0xE7], &[0]));
    let packets = (seconds * 50.0).round() as u64;
    for index in 0..packets {
        // Config 15 (hybrid fullband, 20 ms), one frame, mono or stereo flag.
        let toc = (15 << 3) | if channels > 1 { 0x04 } else { 0 };
        let mut block = vec![0x81];
        block.extend_from_slice(&((index * 20) as i16).to_be_bytes());
        block.push(0x80);
        block.push(toc);
        block.extend(std::iter::repeat_n((index % 251) as u8, 60));
        bytes.extend(element(&[0xA3], &block));
    }
    bytes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audio::{AudioFormat, inspect};

    /// The Ogg pages of `bytes`: (flags, granule, sequence, packets), each page's CRC checked.
    fn pages(bytes: &[u8]) -> Vec<(u8, u64, u32, Vec<Vec<u8>>)> {
        let mut pages = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            assert_eq!(&bytes[at..at + 4], b"OggS");
            let segments = usize::from(bytes[at + 26]);
            let table = &bytes[at + 27..at + 27 + segments];
            let body: usize = table.iter().map(|&lace| usize::from(lace)).sum();
            let end = at + 27 + segments + body;
            let mut page = bytes[at..end].to_vec();
            let stored = u32::from_le_bytes(page[22..26].try_into().unwrap());
            page[22..26].copy_from_slice(&[0; 4]);
            assert_eq!(ogg_crc(&page), stored, "page at {at}");
            let mut packets = Vec::new();
            let mut current = Vec::new();
            let mut offset = at + 27 + segments;
            for &lace in table {
                current.extend_from_slice(&bytes[offset..offset + usize::from(lace)]);
                offset += usize::from(lace);
                if lace < 255 {
                    packets.push(std::mem::take(&mut current));
                }
            }
            pages.push((
                bytes[at + 5],
                u64::from_le_bytes(bytes[at + 6..at + 14].try_into().unwrap()),
                u32::from_le_bytes(bytes[at + 18..at + 22].try_into().unwrap()),
                packets,
            ));
            at = end;
        }
        pages
    }

    #[test]
    fn the_crc_is_the_one_ogg_uses() {
        // CRC-32/MPEG-2 without the final inversion and initial value: "123456789" → 0x89A1897F.
        assert_eq!(ogg_crc(b"123456789"), 0x89A1_897F);
    }

    #[test]
    fn a_browser_webm_becomes_ogg_opus_with_the_same_packets_and_its_real_duration() {
        let webm = browser_webm(3.0, 1);
        let ogg = webm_to_ogg_opus(&webm).unwrap();
        assert_eq!(ogg.channels, 1);
        // 150 packets of 20 ms, less the 312-sample pre-skip.
        let expected = (150.0 * 960.0 - 312.0) / 48_000.0;
        assert!((ogg.duration.as_secs_f64() - expected).abs() < 1e-9);

        let pages = pages(&ogg.bytes);
        assert_eq!(pages[0].0, BEGINNING_OF_STREAM);
        assert!(pages[0].3[0].starts_with(b"OpusHead"));
        assert!(pages[1].3[0].starts_with(b"OpusTags"));
        assert_eq!(pages.last().unwrap().0, END_OF_STREAM);
        assert_eq!(pages.last().unwrap().1, 150 * 960);
        let sequences: Vec<u32> = pages.iter().map(|page| page.2).collect();
        assert_eq!(sequences, (0..pages.len() as u32).collect::<Vec<_>>());
        let audio: Vec<&Vec<u8>> = pages[2..].iter().flat_map(|page| &page.3).collect();
        assert_eq!(audio.len(), 150);
        assert_eq!(audio[7][0], 15 << 3);
        assert!(audio[7][1..].iter().all(|&byte| byte == 7));
        // Granules grow by the samples of the page's packets.
        assert_eq!(pages[2].1, 10 * 960);

        // What the audio checks read from it agrees.
        let clip = inspect(&ogg.bytes).unwrap();
        assert_eq!(clip.format, AudioFormat::OggOpus);
        assert_eq!(clip.channels, Some(1));
        assert!((clip.duration.unwrap().as_secs_f64() - expected).abs() < 1e-6);
    }

    #[test]
    fn stereo_is_kept_and_non_opus_or_damaged_webm_is_refused() {
        assert_eq!(webm_to_ogg_opus(&browser_webm(1.0, 2)).unwrap().channels, 2);
        let webm = browser_webm(1.0, 1);
        let mut vorbis = webm.clone();
        let at = vorbis.windows(6).position(|w| w == b"A_OPUS").unwrap();
        vorbis[at..at + 6].copy_from_slice(b"A_VORB");
        assert!(
            matches!(webm_to_ogg_opus(&vorbis), Err(AudioError::Unsupported(message)) if message.contains("A_VORB"))
        );
        assert!(webm_to_ogg_opus(&webm[..40]).is_err());
        assert!(matches!(
            webm_to_ogg_opus(&browser_webm(0.0, 1)),
            Err(AudioError::Unsupported(_))
        ));
    }

    #[test]
    fn packet_lengths_come_from_the_toc_byte() {
        assert_eq!(opus_samples(&[15 << 3]), Some(960));
        assert_eq!(opus_samples(&[(3 << 3) | 1]), Some(2 * 2880));
        assert_eq!(opus_samples(&[(16 << 3) | 3, 0x03]), Some(3 * 120));
        assert_eq!(opus_samples(&[(3 << 3) | 3, 0x03]), None, "over 120 ms");
        assert_eq!(opus_samples(&[]), None);
    }
}
