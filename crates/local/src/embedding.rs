//! Dense sentence embeddings for hybrid retrieval: all-MiniLM-L6-v2 (BERT, 384 dimensions) with
//! int8 weights, run by ONNX Runtime on the CPU, mean-pooled over the real tokens and
//! L2-normalised, so the dot product of two embeddings is their cosine similarity. The model,
//! its tokenizer and the runtime library come from `make setup`.
//!
//! Why int8 on ONNX Runtime rather than float32 on candle: ingestion is nearly all embedding, and
//! this runs a window about three times faster on a 2-core machine (a 300-page manual in well
//! under 90 s), with the same retrieval quality on the labelled set (`make eval`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

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
/// padding to the longest text in a batch costs little (texts are batched by length).
const BATCH: usize = 16;
/// The model file and its tokenizer, in the model directory.
const MODEL_FILE: &str = "model.onnx";
const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("cannot load the embedding model from {dir}: {reason} (run `make setup`)")]
    Load { dir: PathBuf, reason: String },
    #[error("cannot load ONNX Runtime from {path}: {reason} (run `make setup`)")]
    Runtime { path: PathBuf, reason: String },
    #[error("embedding failed: {0}")]
    Compute(String),
}

/// all-MiniLM-L6-v2 and its tokenizer. Manuals and questions run in separate sessions, so a
/// question never waits behind a batch of a manual being ingested.
pub struct Embedder {
    tokenizer: Tokenizer,
    bulk: Mutex<Session>,
    single: Mutex<Session>,
}

fn compute(error: impl std::fmt::Display) -> EmbeddingError {
    EmbeddingError::Compute(error.to_string())
}

impl Embedder {
    /// Loads ONNX Runtime from `runtime` (once per process: later calls keep the first
    /// library), then `model.onnx` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path, runtime: &Path) -> Result<Self, EmbeddingError> {
        let fail = |reason: String| EmbeddingError::Load {
            dir: dir.to_owned(),
            reason,
        };
        let runtime_error = |reason| EmbeddingError::Runtime {
            path: runtime.to_owned(),
            reason,
        };
        let environment = environment(runtime).map_err(runtime_error)?;
        let mut tokenizer = Tokenizer::from_file(dir.join(TOKENIZER_FILE))
            .map_err(|e| fail(format!("{TOKENIZER_FILE}: {e}")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| fail(format!("tokenizer truncation: {e}")))?;
        let model =
            std::fs::read(dir.join(MODEL_FILE)).map_err(|e| fail(format!("{MODEL_FILE}: {e}")))?;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let session = |spin: bool| -> Result<Session, EmbeddingError> {
            let fail = |e: ort::Error| fail(format!("{MODEL_FILE}: {e}"));
            Session::builder(&environment)
                .map_err(fail)?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| fail(e.into()))?
                .with_intra_threads(threads)
                .map_err(|e| fail(e.into()))?
                // Spinning threads keep a core busy between runs: worth it between the
                // batches of a manual, not while waiting for the next question.
                .with_intra_op_spinning(spin)
                .map_err(|e| fail(e.into()))?
                .commit_from_memory(&model)
                .map_err(fail)
        };
        let embedder = Self {
            tokenizer,
            bulk: Mutex::new(session(true)?),
            single: Mutex::new(session(false)?),
        };
        // A model with other inputs or outputs fails here, at start, not on the first upload.
        embedder
            .embed_question("model check")
            .map_err(|e| fail(e.to_string()))?;
        Ok(embedder)
    }

    /// One normalised embedding per text, in order. CPU-bound: call it off the async runtime.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(compute)?;
        // Texts of similar length batched together: little padding to compute through.
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut session = self
            .bulk
            .lock()
            .map_err(|_| compute("the embedding session lock was poisoned"))?;
        let mut out = vec![Vec::new(); encodings.len()];
        for batch in order.chunks(BATCH) {
            let picked: Vec<&Encoding> = batch.iter().map(|&i| &encodings[i]).collect();
            for (&i, vector) in batch.iter().zip(run(&mut session, &picked)?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    /// The embedding of one question.
    pub fn embed_question(&self, text: &str) -> Result<Vec<f32>, EmbeddingError> {
        let encoding = self.tokenizer.encode(text, true).map_err(compute)?;
        let mut session = self
            .single
            .lock()
            .map_err(|_| compute("the embedding session lock was poisoned"))?;
        run(&mut session, &[&encoding])?
            .pop()
            .ok_or_else(|| compute("the model returned no embedding"))
    }
}

/// ONNX Runtime allows one environment per process, ever (not even after the first is dropped):
/// it is made on first use and kept.
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

fn environment(runtime: &Path) -> Result<Environment, String> {
    let mut slot = ENVIRONMENT
        .lock()
        .map_err(|_| "the ONNX Runtime environment lock was poisoned".to_owned())?;
    if let Some(environment) = slot.as_ref() {
        return Ok(environment.clone());
    }
    if !runtime.is_file() {
        return Err("no such file".into());
    }
    let environment = ort::init_from(runtime)
        .map_err(|e| e.to_string())?
        .with_name("manuel-embedding")
        .build()
        .map_err(|e| e.to_string())?;
    *slot = Some(environment.clone());
    Ok(environment)
}

/// Runs the model over `encodings`, padded to the longest, and pools each text's tokens.
fn run(session: &mut Session, encodings: &[&Encoding]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
    let rows = encodings.len();
    let width = encodings
        .iter()
        .map(|e| e.get_ids().len())
        .max()
        .unwrap_or(0);
    if rows == 0 || width == 0 {
        return Ok(vec![vec![0.0; DIMENSIONS]; rows]);
    }
    let padded = |pick: &dyn Fn(&Encoding) -> &[u32]| -> Vec<i64> {
        let mut flat = Vec::with_capacity(rows * width);
        for encoding in encodings {
            let values = pick(encoding);
            flat.extend(values.iter().map(|&v| i64::from(v)));
            flat.extend(std::iter::repeat_n(0, width - values.len()));
        }
        flat
    };
    let shape = [rows, width];
    let mask = padded(&|e| e.get_attention_mask());
    let inputs = ort::inputs![
        "input_ids" => Tensor::from_array((shape, padded(&|e| e.get_ids()))).map_err(compute)?,
        "attention_mask" => Tensor::from_array((shape, mask.clone())).map_err(compute)?,
        "token_type_ids" => Tensor::from_array((shape, padded(&|e| e.get_type_ids()))).map_err(compute)?,
    ];
    let outputs = session.run(inputs).map_err(compute)?;
    let (output_shape, hidden) = outputs
        .get("last_hidden_state")
        .ok_or_else(|| compute("the model has no last_hidden_state output"))?
        .try_extract_tensor::<f32>()
        .map_err(compute)?;
    if output_shape
        .iter()
        .map(|&d| d as usize)
        .ne([rows, width, DIMENSIONS])
    {
        return Err(compute(format!(
            "the model returned shape {output_shape:?}, expected [{rows}, {width}, {DIMENSIONS}]"
        )));
    }
    Ok((0..rows)
        .map(|row| {
            // Mean over the real tokens only: padding must not pull short texts together. (The
            // sum is enough: dividing by the count would not survive the normalisation.)
            let mut pooled = vec![0.0f32; DIMENSIONS];
            for token in 0..width {
                if mask[row * width + token] == 0 {
                    continue;
                }
                let at = (row * width + token) * DIMENSIONS;
                for (sum, value) in pooled.iter_mut().zip(&hidden[at..at + DIMENSIONS]) {
                    *sum += value;
                }
            }
            let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            pooled.iter_mut().for_each(|v| *v /= norm);
            pooled
        })
        .collect())
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

pub use manuel_vectors::{best_similarity, similarity};

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

/// `variable`, or where `make setup` installs the file (`relative` to the repository), for tests.
#[cfg(test)]
fn installed(variable: &str, relative: &str) -> PathBuf {
    std::env::var_os(variable).map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(relative)
        },
        PathBuf::from,
    )
}

/// Where `make setup` puts the model, for tests.
#[cfg(test)]
pub(crate) fn test_model_dir() -> PathBuf {
    installed(
        "MANUEL_EMBEDDING_MODEL",
        ".tools/models/all-MiniLM-L6-v2-int8",
    )
}

/// Where `make setup` puts ONNX Runtime, for tests.
#[cfg(test)]
pub(crate) fn test_runtime() -> PathBuf {
    installed("MANUEL_ONNXRUNTIME", ".tools/onnxruntime/libonnxruntime.so")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paraphrases_are_closer_than_unrelated_text() {
        let embedder = Embedder::load(&test_model_dir(), &test_runtime()).unwrap();
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
        let embedder = Embedder::load(&test_model_dir(), &test_runtime()).unwrap();
        let chunk =
            "Press the power button for three seconds to switch the printer on. ".repeat(12);
        let texts: Vec<&str> = (0..32).map(|_| chunk.as_str()).collect();
        let started = std::time::Instant::now();
        let vectors = embedder.embed(&texts).unwrap();
        eprintln!("32 chunks of ~130 words in {:?}", started.elapsed());
        assert_eq!(vectors.len(), 32);
    }
}
