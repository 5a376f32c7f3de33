//! The local answer model: extractive answers from the retrieved passages, weighted by the
//! user's own index. It never generates text of its own beyond a fixed framing.

use std::sync::Arc;

use async_trait::async_trait;
use manuel_core::PortError;
use manuel_core::domain::{Answer, RetrievedChunk, UserId};
use manuel_core::ports::AnswerModel;

use crate::answer::extract_answer_about;
use crate::index::LocalIndex;

pub struct ExtractiveAnswerModel {
    index: Arc<LocalIndex>,
}

impl ExtractiveAnswerModel {
    pub fn new(index: Arc<LocalIndex>) -> Self {
        Self { index }
    }
}

/// Tokens as a language model would count them, roughly: for cost accounting of local answers.
fn approximate_tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64 * 4).div_ceil(3)
}

#[async_trait]
impl AnswerModel for ExtractiveAnswerModel {
    async fn answer(
        &self,
        user: &UserId,
        question: &str,
        passages: &[RetrievedChunk],
    ) -> Result<Answer, PortError> {
        let index = Arc::clone(&self.index);
        let user = user.clone();
        let question = question.to_owned();
        let texts: Vec<String> = passages.iter().map(|chunk| chunk.text.clone()).collect();
        // What retrieval measured; a passage it gave none for counts as unrelated in meaning.
        let similarities: Vec<f32> = passages
            .iter()
            .map(|chunk| chunk.similarity.unwrap_or(0.0))
            .collect();
        let subject_of_manual = index.subjects(&user).await?;
        let subjects: Vec<String> = passages
            .iter()
            .map(|chunk| {
                subject_of_manual
                    .get(&chunk.manual_id)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            let weights = index.term_weights(&user);
            let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
            let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
            let extract =
                extract_answer_about(&question, &borrowed, &similarities, &subjects, &weights);
            let input_tokens = approximate_tokens(&question)
                + texts.iter().map(|t| approximate_tokens(t)).sum::<u64>();
            Ok(Answer {
                output_tokens: approximate_tokens(&extract.text),
                text: extract.text,
                cited: extract.cited,
                found: extract.found,
                ranking: extract.ranking,
                input_tokens,
            })
        })
        .await
        .map_err(PortError::failed)?
    }
}
