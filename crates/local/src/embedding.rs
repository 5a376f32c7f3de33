//! Dense sentence embeddings for hybrid retrieval: all-MiniLM-L6-v2 (BERT, 384 dimensions) run
//! by candle on the CPU, mean-pooled over the real tokens and L2-normalised, so the dot product
//! of two embeddings is their cosine similarity. The model files come from `make setup`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The embedding size of all-MiniLM-L6-v2.
pub const DIMENSIONS: usize = 384;
/// all-MiniLM-L6-v2 was trained on 128 word pieces; [`windows`] keeps texts within that.
const MAX_TOKENS: usize = 128;
/// Words per embedded window of a chunk (about 105 word pieces), and how far windows advance:
/// a fact embedded with a few sentences around it stays recognisable, where in a whole chunk
/// it is diluted by its neighbours.
const WINDOW_WORDS: usize = 80;
const WINDOW_STEP: usize = 60;
/// Texts embedded together: big enough to keep the matrix kernels busy, small enough that the
/// padding to the longest text in a batch costs little.
const BATCH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("cannot load the embedding model from {dir}: {reason} (run `make setup`)")]
    Load { dir: PathBuf, reason: String },
    #[error("embedding failed: {0}")]
    Compute(String),
}

pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

fn load_error(dir: &Path) -> impl Fn(String) -> EmbeddingError + '_ {
    move |reason| EmbeddingError::Load {
        dir: dir.to_owned(),
        reason,
    }
}

fn compute(error: impl std::fmt::Display) -> EmbeddingError {
    EmbeddingError::Compute(error.to_string())
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, EmbeddingError> {
        let fail = load_error(dir);
        let device = Device::Cpu;
        let config: Config = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| fail(format!("config.json: {e}")))
            .and_then(|text| {
                serde_json::from_str(&text).map_err(|e| fail(format!("config.json: {e}")))
            })?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| fail(format!("tokenizer truncation: {e}")))?;
        let weights = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| fail(format!("model weights: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// One normalised embedding per text, in order. CPU-bound: call it off the async runtime.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            out.extend(self.embed_batch(batch)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(compute)?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |pick: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings.iter().flat_map(|e| pick(e).to_vec()).collect()
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (rows, width), &self.device)
            .map_err(compute)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (rows, width), &self.device)
            .map_err(compute)?;
        let mask = Tensor::from_vec(
            flat(&|e| e.get_attention_mask()),
            (rows, width),
            &self.device,
        )
        .map_err(compute)?;
        let hidden = self
            .model
            .forward(&ids, &types, Some(&mask))
            .map_err(compute)?;
        // Mean over the real tokens only: padding must not pull short texts together.
        let mask = mask
            .to_dtype(DType::F32)
            .and_then(|m| m.unsqueeze(2))
            .map_err(compute)?;
        let summed = hidden
            .broadcast_mul(&mask)
            .and_then(|t| t.sum(1))
            .map_err(compute)?;
        let counts = mask
            .sum(1)
            .and_then(|c| c.clamp(1e-9, f64::MAX))
            .map_err(compute)?;
        let pooled = summed.broadcast_div(&counts).map_err(compute)?;
        let norms = pooled
            .sqr()
            .and_then(|t| t.sum_keepdim(1))
            .and_then(|t| t.sqrt())
            .and_then(|t| t.clamp(1e-12, f64::MAX))
            .map_err(compute)?;
        pooled
            .broadcast_div(&norms)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(compute)
    }
}

/// The overlapping word windows a chunk is embedded as (one for a short chunk).
pub fn windows(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() <= WINDOW_WORDS + WINDOW_WORDS / 4 {
        return vec![words.join(" ")];
    }
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + WINDOW_WORDS).min(words.len());
        out.push(words[start..end].join(" "));
        if end == words.len() {
            return out;
        }
        start += WINDOW_STEP;
    }
}

/// The similarity of a question to a chunk: that of its closest window.
pub fn best_similarity(question: &[f32], windows: &[Vec<f32>]) -> f32 {
    windows
        .iter()
        .map(|window| similarity(question, window))
        .fold(f32::MIN, f32::max)
}

/// The dot product of two normalised embeddings: their cosine similarity.
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A chunk's window embeddings as stored with it (little-endian f32s, one after another).
pub fn to_bytes(vectors: &[Vec<f32>]) -> Vec<u8> {
    vectors
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

pub fn from_bytes(bytes: &[u8]) -> Option<Vec<Vec<f32>>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(DIMENSIONS * 4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(DIMENSIONS * 4)
            .map(|vector| {
                vector
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            })
            .collect(),
    )
}

/// Where `make setup` puts the model, for tests.
#[cfg(test)]
pub(crate) fn test_model_dir() -> PathBuf {
    std::env::var_os("MANUEL_EMBEDDING_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/models/all-MiniLM-L6-v2")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paraphrases_are_closer_than_unrelated_text() {
        let embedder = Embedder::load(&test_model_dir()).unwrap();
        let texts = [
            "How long is the guarantee?",
            "The warranty period is two years from the date of purchase.",
            "Pull out the paper cassette and load plain paper with the printable side down.",
        ];
        let started = std::time::Instant::now();
        let vectors = embedder.embed(&texts).unwrap();
        eprintln!("3 embeddings in {:?}", started.elapsed());
        assert!(vectors.iter().all(|v| v.len() == DIMENSIONS));
        let norm = similarity(&vectors[0], &vectors[0]);
        assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
        let related = similarity(&vectors[0], &vectors[1]);
        let unrelated = similarity(&vectors[0], &vectors[2]);
        assert!(related > unrelated + 0.2, "{related} vs {unrelated}");
        // A batch gives the same vector as the text alone (padding is masked out).
        let alone = embedder.embed(&texts[..1]).unwrap();
        assert!(similarity(&alone[0], &vectors[0]) > 0.9999);
        let stored = to_bytes(&vectors[1..]);
        assert_eq!(from_bytes(&stored), Some(vectors[1..].to_vec()));
        assert_eq!(from_bytes(&stored[1..]), None);
    }

    #[test]
    fn long_chunks_are_embedded_as_overlapping_windows() {
        assert_eq!(windows("short text"), vec!["short text".to_owned()]);
        let text: Vec<String> = (0..200).map(|n| format!("w{n}")).collect();
        let parts = windows(&text.join(" "));
        assert_eq!(parts.len(), 3);
        assert!(parts[0].starts_with("w0 ") && parts[0].ends_with(" w79"));
        assert!(parts[1].starts_with("w60 "));
        assert!(parts[2].ends_with(" w199"));
    }

    #[test]
    fn a_chunk_sized_batch_is_embedded() {
        let embedder = Embedder::load(&test_model_dir()).unwrap();
        let chunk =
            "Press the power button for three seconds to switch the printer on. ".repeat(12);
        let texts: Vec<&str> = (0..32).map(|_| chunk.as_str()).collect();
        let started = std::time::Instant::now();
        let vectors = embedder.embed(&texts).unwrap();
        eprintln!("32 chunks of ~130 words in {:?}", started.elapsed());
        assert_eq!(vectors.len(), 32);
    }
}
