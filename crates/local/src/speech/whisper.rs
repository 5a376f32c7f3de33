//! Whisper (tiny.en by default, or a multilingual size such as base) run by candle on the CPU:
//! log-mel features of each window (30 seconds, or a shorter clip and 10 s of silence), the
//! encoder once per window, then greedy decoding (keys and values kept between tokens: see
//! `decoder`) without timestamps from `<|startoftranscript|><|notimestamps|>` (English-only
//! models take no language or task token; multilingual ones are told `<|en|><|transcribe|>`
//! after the start), optionally after a prompt of words the speaker is likely to use.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::{self, Config, audio, model};
use tokenizers::Tokenizer;

use super::decoder::{self, Decoder};
use super::{ct2, mel};

/// Whisper's attention heads are 64 wide in every model size.
const HEAD_DIM: usize = 64;
/// Whisper's own silence test: the `<|nospeech|>` probability at the start, together with a
/// low average log-probability of what was decoded.
const NO_SPEECH_PROBABILITY: f64 = whisper::NO_SPEECH_THRESHOLD;
const LOW_LOG_PROBABILITY: f64 = whisper::LOGPROB_THRESHOLD;
/// The prompt is cut to its last words beyond this many tokens. Whisper allows half its
/// context, but a long comma-separated prompt is imitated: with 100 tokens spoken questions
/// came out as comma lists ("which, programatype, stylus, avrdude, support."), with 50 not.
pub const MAX_PROMPT_TOKENS: usize = 50;
/// Silence the encoder hears after the words of a short clip. Whisper was trained on 30-second
/// windows, but a 5-second question padded to 30 s costs the encoder (whose attention grows with
/// the square of the window) about three times what 10 s of silence after the words cost, and
/// the spoken evaluation questions were heard no worse (README, "How well spoken questions are
/// heard").
const TRAILING_SILENCE_FRAMES: usize = 1_000;
/// The vocabulary size from which a Whisper model is multilingual (Whisper's own rule).
const MULTILINGUAL_VOCABULARY: usize = 51_865;
/// Manuals and their questions are in English: a multilingual model is told so rather than
/// left to guess the language from a short question.
const ENGLISH_TOKEN: &str = "<|en|>";
/// A token sequence repeated this many times in a row ends decoding: greedy decoding can loop.
const REPEATS_TO_STOP: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    #[error("cannot load the speech model from {dir}: {reason} (run `make setup`)")]
    Load { dir: PathBuf, reason: String },
    #[error("speech recognition failed: {0}")]
    Compute(String),
}

fn compute(error: impl std::fmt::Display) -> WhisperError {
    WhisperError::Compute(error.to_string())
}

struct SpecialTokens {
    start_of_transcript: u32,
    /// `<|en|><|transcribe|>` for a multilingual model, nothing for an English-only one.
    language_and_task: Vec<u32>,
    end_of_text: u32,
    no_timestamps: u32,
    start_of_previous: u32,
    no_speech: Option<u32>,
}

pub struct Whisper {
    model: model::Whisper,
    decoder: Decoder,
    tokenizer: Tokenizer,
    filters: Vec<f32>,
    device: Device,
    special: SpecialTokens,
    /// 0 for tokens that may be decoded, −∞ for those that never are (timestamps, other
    /// special tokens, the model's `suppress_ids`).
    suppressed: Tensor,
    /// The first token is not the end of the text nor a lone space.
    suppressed_at_start: Tensor,
}

/// The parts of the CTranslate2 `config.json` used here.
#[derive(serde::Deserialize)]
struct Ct2Config {
    #[serde(default)]
    suppress_ids: Vec<u32>,
    #[serde(default)]
    suppress_ids_begin: Vec<u32>,
}

impl Whisper {
    /// Whether `dir` holds the files [`Whisper::load`] reads.
    pub fn check_files(dir: &Path) -> Result<(), WhisperError> {
        for file in ["model.bin", "config.json", "tokenizer.json"] {
            if !dir.join(file).is_file() {
                return Err(WhisperError::Load {
                    dir: dir.to_owned(),
                    reason: format!("{file} is missing"),
                });
            }
        }
        Ok(())
    }

    /// Loads `model.bin`, `config.json` and `tokenizer.json` (CTranslate2 layout) from `dir`.
    pub fn load(dir: &Path) -> Result<Self, WhisperError> {
        let fail = |reason: String| WhisperError::Load {
            dir: dir.to_owned(),
            reason,
        };
        let device = Device::Cpu;
        let bytes =
            std::fs::read(dir.join("model.bin")).map_err(|e| fail(format!("model.bin: {e}")))?;
        let variables = ct2::read_variables(&bytes, &device).map_err(|e| fail(e.to_string()))?;
        drop(bytes);
        let ct2_config: Ct2Config = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| fail(format!("config.json: {e}")))
            .and_then(|text| {
                serde_json::from_str(&text).map_err(|e| fail(format!("config.json: {e}")))
            })?;
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        let dims = |name: &str| {
            variables
                .get(name)
                .map(|tensor| tensor.dims().to_vec())
                .ok_or_else(|| fail(format!("model.bin has no {name}")))
        };
        let embeddings = dims("decoder/embeddings/weight")?;
        let conv1 = dims("encoder/conv1/weight")?;
        let (vocab_size, d_model) = (embeddings[0], embeddings[1]);
        let encoder_layers = ct2::layer_count(&variables, "encoder");
        let decoder_layers = ct2::layer_count(&variables, "decoder");
        let config = Config {
            num_mel_bins: conv1[1],
            max_source_positions: dims("encoder/position_encodings/encodings")?[0],
            d_model,
            encoder_attention_heads: d_model / HEAD_DIM,
            encoder_layers,
            vocab_size,
            max_target_positions: dims("decoder/position_encodings/encodings")?[0],
            decoder_attention_heads: d_model / HEAD_DIM,
            decoder_layers,
            suppress_tokens: ct2_config.suppress_ids.clone(),
        };
        if encoder_layers != decoder_layers {
            return Err(fail(format!(
                "{encoder_layers} encoder layers but {decoder_layers} decoder layers"
            )));
        }
        let weights = ct2::to_hugging_face_names(variables, encoder_layers)
            .map_err(|e| fail(e.to_string()))?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let model =
            model::Whisper::load(&vb, config.clone()).map_err(|e| fail(format!("weights: {e}")))?;
        let decoder = Decoder::load(&vb, &config).map_err(|e| fail(format!("weights: {e}")))?;
        let token = |text: &str| {
            tokenizer
                .token_to_id(text)
                .ok_or_else(|| fail(format!("the tokenizer has no {text}")))
        };
        // Whisper's own test: the multilingual vocabulary has one more token than the English one.
        let multilingual = vocab_size >= MULTILINGUAL_VOCABULARY;
        let language_and_task = if multilingual {
            vec![token(ENGLISH_TOKEN)?, token(whisper::TRANSCRIBE_TOKEN)?]
        } else {
            Vec::new()
        };
        let special = SpecialTokens {
            start_of_transcript: token(whisper::SOT_TOKEN)?,
            language_and_task,
            end_of_text: token(whisper::EOT_TOKEN)?,
            no_timestamps: token(whisper::NO_TIMESTAMPS_TOKEN)?,
            start_of_previous: token("<|startofprev|>")?,
            no_speech: whisper::NO_SPEECH_TOKENS
                .iter()
                .find_map(|text| tokenizer.token_to_id(text)),
        };
        // Every special token from <|endoftext|> on is suppressed (timestamps included), except
        // <|endoftext|> itself, which ends the text.
        let never: HashSet<u32> = ct2_config
            .suppress_ids
            .iter()
            .copied()
            .chain((special.end_of_text + 1)..vocab_size as u32)
            .collect();
        let mask = |ids: &HashSet<u32>| {
            let values: Vec<f32> = (0..vocab_size as u32)
                .map(|id| {
                    if ids.contains(&id) {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            Tensor::new(values.as_slice(), &device).map_err(|e| fail(e.to_string()))
        };
        let suppressed = mask(&never)?;
        let at_start: HashSet<u32> = never
            .iter()
            .copied()
            .chain(ct2_config.suppress_ids_begin.iter().copied())
            .chain([special.end_of_text])
            .collect();
        let suppressed_at_start = mask(&at_start)?;
        Ok(Self {
            filters: mel::filters(whisper::SAMPLE_RATE, whisper::N_FFT, config.num_mel_bins),
            model,
            decoder,
            tokenizer,
            device,
            special,
            suppressed,
            suppressed_at_start,
        })
    }

    /// The words spoken in `samples` (mono, 16 kHz); `prompt` is text the speaker is likely to
    /// say (product names), which steers the spelling of what is heard. Empty when the clip
    /// holds no speech.
    pub fn transcribe(&mut self, samples: &[f32], prompt: &str) -> Result<String, WhisperError> {
        let config = self.model.config.clone();
        let mel = audio::pcm_to_mel(&config, samples, &self.filters);
        let frames = mel.len() / config.num_mel_bins;
        let mel = Tensor::from_vec(mel, (1, config.num_mel_bins, frames), &self.device)
            .map_err(compute)?;
        let prompt = self.prompt_tokens(prompt)?;
        let content_frames = samples.len() / whisper::HOP_LENGTH;
        let mut text = Vec::new();
        let mut seek = 0;
        while seek < content_frames {
            let target = window_frames(content_frames - seek);
            let window = target.min(frames - seek);
            let segment = mel.narrow(2, seek, window).map_err(compute)?;
            let segment = if window < target {
                segment
                    .pad_with_zeros(2, 0, target - window)
                    .map_err(compute)?
            } else {
                segment
            };
            let spoken = self.decode_window(&segment, &prompt)?;
            if !spoken.is_empty() {
                text.push(spoken);
            }
            seek += target;
        }
        Ok(text.join(" "))
    }

    /// The tokens `text` takes (0 when it cannot be tokenized).
    pub fn token_count(&self, text: &str) -> usize {
        self.tokenizer
            .encode(text, false)
            .map_or(0, |encoding| encoding.get_ids().len())
    }

    fn prompt_tokens(&self, prompt: &str) -> Result<Vec<u32>, WhisperError> {
        let prompt = prompt.trim();
        if prompt.is_empty() {
            return Ok(Vec::new());
        }
        let encoding = self
            .tokenizer
            .encode(format!(" {prompt}"), false)
            .map_err(compute)?;
        let ids = encoding.get_ids();
        let kept = &ids[ids.len().saturating_sub(MAX_PROMPT_TOKENS)..];
        Ok(std::iter::once(self.special.start_of_previous)
            .chain(kept.iter().copied())
            .collect())
    }

    /// Greedy decoding of one window of log-mel features (at most 30 seconds).
    fn decode_window(&mut self, mel: &Tensor, prompt: &[u32]) -> Result<String, WhisperError> {
        let encoding = std::time::Instant::now();
        let features = self.model.encoder.forward(mel, true).map_err(compute)?;
        let encoder_ms = encoding.elapsed().as_millis() as u64;
        let decoding = std::time::Instant::now();
        let mut tokens: Vec<u32> = prompt.to_vec();
        let start_of_transcript = tokens.len();
        tokens.push(self.special.start_of_transcript);
        tokens.extend(&self.special.language_and_task);
        tokens.push(self.special.no_timestamps);
        let start = tokens.len();
        let limit = self.model.config.max_target_positions - 1;
        let mut log_probability = 0.0;
        let mut no_speech_probability = 0.0;
        self.decoder.start(&features).map_err(compute)?;
        let mut hidden = self.decoder.extend(&tokens).map_err(compute)?;
        while tokens.len() < limit {
            let first = tokens.len() == start;
            if first && let Some(no_speech) = self.special.no_speech {
                let logits = decoder::row(&hidden, start_of_transcript)
                    .and_then(|row| self.decoder.logits(&row))
                    .map_err(compute)?;
                no_speech_probability = candle_nn::ops::softmax(&logits, D::Minus1)
                    .and_then(|probabilities| probabilities.i(no_speech as usize))
                    .and_then(|probability| probability.to_scalar::<f32>())
                    .map_err(compute)?
                    .into();
            }
            let rows = hidden.dim(1).map_err(compute)?;
            let mask = if first {
                &self.suppressed_at_start
            } else {
                &self.suppressed
            };
            let logits = decoder::row(&hidden, rows - 1)
                .and_then(|row| self.decoder.logits(&row))
                .and_then(|logits| logits.broadcast_add(mask))
                .map_err(compute)?;
            let next = logits
                .argmax(D::Minus1)
                .and_then(|index| index.to_scalar::<u32>())
                .map_err(compute)?;
            let log_probabilities =
                candle_nn::ops::log_softmax(&logits, D::Minus1).map_err(compute)?;
            log_probability += f64::from(
                log_probabilities
                    .i(next as usize)
                    .and_then(|value| value.to_scalar::<f32>())
                    .map_err(compute)?,
            );
            if next == self.special.end_of_text {
                break;
            }
            tokens.push(next);
            let kept = start + loop_free_length(&tokens[start..]);
            if kept < tokens.len() {
                tokens.truncate(kept);
                break;
            }
            hidden = self.decoder.extend(&[next]).map_err(compute)?;
        }
        let decoded = &tokens[start..];
        let average = log_probability / (decoded.len() + 1) as f64;
        tracing::debug!(
            no_speech_probability,
            average,
            encoder_ms,
            decoder_ms = decoding.elapsed().as_millis() as u64,
            tokens = decoded.len(),
            "window decoded"
        );
        if no_speech_probability > NO_SPEECH_PROBABILITY && average < LOW_LOG_PROBABILITY {
            tracing::debug!(no_speech_probability, average, "no speech in this window");
            return Ok(String::new());
        }
        let text = self.tokenizer.decode(decoded, true).map_err(compute)?;
        Ok(text.trim().to_owned())
    }
}

/// The frames of the window that starts `remaining` spoken frames before the clip's end: those
/// and [`TRAILING_SILENCE_FRAMES`] of silence, at most 30 seconds, an even number (the encoder
/// halves it).
fn window_frames(remaining: usize) -> usize {
    (remaining + TRAILING_SILENCE_FRAMES)
        .min(whisper::N_FRAMES)
        .next_multiple_of(2)
}

/// The length of `tokens` without the repeats of a run that ends it [`REPEATS_TO_STOP`] times
/// (one copy is kept).
fn loop_free_length(tokens: &[u32]) -> usize {
    for run in 1..=tokens.len() / REPEATS_TO_STOP {
        let tail = &tokens[tokens.len() - run * REPEATS_TO_STOP..];
        let first = &tail[..run];
        if tail.chunks(run).all(|chunk| chunk == first) {
            return tokens.len() - run * (REPEATS_TO_STOP - 1);
        }
    }
    tokens.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_looping_tail_is_cut_to_one_copy() {
        assert_eq!(loop_free_length(&[1, 2, 3, 4]), 4);
        assert_eq!(loop_free_length(&[9, 5, 5, 5, 5]), 2);
        assert_eq!(loop_free_length(&[9, 1, 2, 1, 2, 1, 2, 1, 2]), 3);
        assert_eq!(loop_free_length(&[1, 2, 1, 2, 1, 2]), 6);
        assert_eq!(loop_free_length(&[7, 7, 7]), 3);
    }

    #[test]
    fn a_short_clip_is_heard_with_ten_seconds_of_silence_and_a_long_one_in_30_second_windows() {
        // 100 frames a second.
        assert_eq!(window_frames(500), 1_500);
        assert_eq!(window_frames(501), 1_502);
        assert_eq!(window_frames(1_999), 2_999 + 1);
        assert_eq!(window_frames(2_500), whisper::N_FRAMES);
        assert_eq!(window_frames(12_000), whisper::N_FRAMES);
    }
}
