//! The answer model over Bedrock `Converse`: only the numbered passages as context, `[n]`
//! citations required, and a fixed marker when the passages do not answer the question.

use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, SystemContentBlock,
};
use manuel_core::PortError;
use manuel_core::domain::{Answer, NOT_FOUND_ANSWER, RetrievedChunk, UserId};
use manuel_core::ports::AnswerModel;
use manuel_core::telemetry::{self, Metric};

use super::sdk_error;

/// What the model must reply, alone, when the passages do not contain the answer.
pub const NOT_FOUND_MARKER: &str = "NOT_FOUND";

pub const SYSTEM_PROMPT: &str = "You answer questions about a user's product manuals. \
Use only the numbered passages in the context; never use outside knowledge or guess. \
Cite the passage behind every sentence with its number in square brackets, like [1] or [2][3]. \
Keep step-by-step instructions as a numbered list, in the manual's order. \
Answer in the language of the question, briefly. \
If the passages do not contain the answer, reply with exactly NOT_FOUND and nothing else.";

#[derive(Clone, Debug)]
pub struct ConverseSettings {
    /// A model id or an inference profile id/ARN (e.g. `eu.anthropic.claude-…`).
    pub model_id: String,
    pub temperature: f32,
    pub max_tokens: i32,
}

pub struct BedrockAnswerModel {
    client: aws_sdk_bedrockruntime::Client,
    settings: ConverseSettings,
}

impl BedrockAnswerModel {
    pub fn new(client: aws_sdk_bedrockruntime::Client, settings: ConverseSettings) -> Self {
        Self { client, settings }
    }
}

/// The user turn: the passages numbered from 1, then the question.
pub fn context_message(question: &str, passages: &[RetrievedChunk]) -> String {
    let mut text = String::from("Context:\n");
    for (index, passage) in passages.iter().enumerate() {
        text.push_str(&format!(
            "[{}] (page {})\n{}\n\n",
            index + 1,
            passage.page,
            passage.text.trim()
        ));
    }
    text.push_str("Question: ");
    text.push_str(question.trim());
    text
}

/// Renumbers the model's `[n]` citations (n = passage number) in order of first use, drops
/// citations of passages that do not exist, and returns the cited passage indexes.
pub fn renumber_citations(text: &str, passages: usize) -> (String, Vec<usize>) {
    let mut cited: Vec<usize> = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inside = &after[..close];
        let numbers: Option<Vec<usize>> = inside
            .split(',')
            .map(|part| part.trim().parse::<usize>().ok())
            .collect();
        match numbers {
            Some(numbers) if !inside.trim().is_empty() => {
                for number in numbers {
                    if number == 0 || number > passages {
                        continue;
                    }
                    let position = match cited.iter().position(|&index| index == number - 1) {
                        Some(position) => position,
                        None => {
                            cited.push(number - 1);
                            cited.len() - 1
                        }
                    };
                    out.push_str(&format!("[{}]", position + 1));
                }
            }
            _ => {
                out.push('[');
                out.push_str(inside);
                out.push(']');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    (out.trim().to_owned(), cited)
}

fn not_found(input_tokens: u64, output_tokens: u64) -> Answer {
    Answer {
        text: NOT_FOUND_ANSWER.to_owned(),
        cited: Vec::new(),
        found: false,
        ranking: Vec::new(),
        input_tokens,
        output_tokens,
    }
}

#[async_trait]
impl AnswerModel for BedrockAnswerModel {
    async fn answer(
        &self,
        _user: &UserId,
        question: &str,
        passages: &[RetrievedChunk],
    ) -> Result<Answer, PortError> {
        if passages.is_empty() {
            return Ok(not_found(0, 0));
        }
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(context_message(question, passages)))
            .build()
            .map_err(PortError::failed)?;
        let started = Instant::now();
        let output = self
            .client
            .converse()
            .model_id(&self.settings.model_id)
            .system(SystemContentBlock::Text(SYSTEM_PROMPT.to_owned()))
            .messages(message)
            .inference_config(
                InferenceConfiguration::builder()
                    .temperature(self.settings.temperature)
                    .max_tokens(self.settings.max_tokens)
                    .build(),
            )
            .send()
            .await
            .map_err(|error| sdk_error("bedrock-converse", error))?;
        telemetry::record_dependency(
            Metric::DependencyLatency,
            "bedrock-converse",
            started.elapsed().as_secs_f64() * 1000.0,
        );
        let (input_tokens, output_tokens) = output.usage().map_or((0, 0), |usage| {
            (
                u64::try_from(usage.input_tokens()).unwrap_or(0),
                u64::try_from(usage.output_tokens()).unwrap_or(0),
            )
        });
        let text: String = output
            .output()
            .and_then(|output| output.as_message().ok())
            .map(|message| {
                message
                    .content()
                    .iter()
                    .filter_map(|block| block.as_text().ok())
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        if text.trim().is_empty() || text.contains(NOT_FOUND_MARKER) {
            return Ok(not_found(input_tokens, output_tokens));
        }
        let (text, cited) = renumber_citations(&text, passages.len());
        if cited.is_empty() {
            // An answer that cites nothing is not grounded in the manuals: refuse it.
            tracing::warn!("the model answered without citing a passage; refused");
            return Ok(not_found(input_tokens, output_tokens));
        }
        Ok(Answer {
            text,
            cited,
            found: true,
            // Claude cites; the passages it did not cite stay in retrieval order.
            ranking: Vec::new(),
            input_tokens,
            output_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_renumbered_in_order_of_use_and_unknown_ones_dropped() {
        let (text, cited) = renumber_citations("Open the lid [3]. Press OK [1][3]. See [9].", 3);
        assert_eq!(text, "Open the lid [1]. Press OK [2][1]. See .");
        assert_eq!(cited, vec![2, 0]);
        let (text, cited) = renumber_citations("Both [2, 1] and [a note] stay.", 2);
        assert_eq!(text, "Both [1][2] and [a note] stay.");
        assert_eq!(cited, vec![1, 0]);
        let (text, cited) = renumber_citations("Unclosed [2", 2);
        assert_eq!((text.as_str(), cited.len()), ("Unclosed [2", 0));
    }

    #[test]
    fn the_context_numbers_passages_from_one_with_their_pages() {
        let passages = vec![
            RetrievedChunk {
                manual_id: "m1".into(),
                page: 3,
                text: "Lift the cover.".into(),
                score: 1.0,
            },
            RetrievedChunk {
                manual_id: "m1".into(),
                page: 5,
                text: "Two years.".into(),
                score: 0.5,
            },
        ];
        let message = context_message("How long is the warranty?", &passages);
        assert!(message.contains("[1] (page 3)\nLift the cover."));
        assert!(message.contains("[2] (page 5)\nTwo years."));
        assert!(message.ends_with("Question: How long is the warranty?"));
    }
}
