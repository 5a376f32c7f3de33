//! The answer model over Bedrock `Converse`: only the numbered passages as context, `[n]`
//! citations required, and a fixed marker when the passages do not answer the question.
//!
//! A non-streaming Converse sends its first byte only when the whole answer exists, so the call
//! has no SDK read timeout: it may take whatever time the invocation has left, less a margin
//! for recording the cost and answering ([`ConverseSettings::deadline_margin`]). Once sent, a
//! model call may have been processed (and billed) even if its answer never arrives, so only
//! failures that say the request was refused before any work — throttling, a model not ready,
//! the service turning requests away (503), a connection never made — are handed on as
//! transient (retried by the resilience layer, within the deadline). A timeout after sending, a
//! 5xx from the model, a broken connection are not retried.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ConversationRole, ConverseStreamOutput,
    InferenceConfiguration, Message, SystemContentBlock, TokenUsage,
};
use manuel_core::PortError;
use manuel_core::answer_text::AnswerText;
use manuel_core::deadline;
use manuel_core::domain::{Answer, NOT_FOUND_ANSWER, RetrievedChunk, UserId};
use manuel_core::ports::AnswerModel;
use manuel_core::telemetry::{self, Metric};

const DEPENDENCY: &str = "bedrock-converse";

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
    /// Time kept back from the invocation's deadline for what follows the answer (the cost
    /// record, signed links, the response) and for API Gateway's clock, which started before
    /// Lambda's (init, invoke overhead).
    pub deadline_margin: Duration,
    /// The longest call when no deadline is set.
    pub max_wait: Duration,
}

impl ConverseSettings {
    /// The settings for `model_id` with the default sampling, margin and wait.
    pub fn new(model_id: impl Into<String>) -> Self {
        Self {
            model_id: model_id.into(),
            temperature: 0.1,
            max_tokens: 1000,
            deadline_margin: Duration::from_secs(2),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// API Gateway's longest streamed response:
/// https://docs.aws.amazon.com/apigateway/latest/developerguide/response-transfer-mode.html
const LONGEST_STREAM: Duration = Duration::from_secs(15 * 60);

/// Below this, no answer could arrive in time: the model is not called at all.
const SHORTEST_USEFUL_CALL: Duration = Duration::from_secs(1);

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

/// A failed Converse as a port error: transient (worth a retry) only when Bedrock refused the
/// request before the model ran, otherwise not retried. See the module documentation.
pub fn converse_error(error: SdkError<ConverseError, HttpResponse>) -> PortError {
    let refused_before_processing = match &error {
        // This client has no read timeout, so a timeout while dispatching is the connect
        // timeout: nothing was sent.
        SdkError::DispatchFailure(failure) => failure.is_timeout(),
        SdkError::ServiceError(context) => matches!(
            context.err(),
            ConverseError::ThrottlingException(_)
                | ConverseError::ModelNotReadyException(_)
                | ConverseError::ServiceUnavailableException(_)
        ),
        _ => false,
    };
    not_retried_unless(
        refused_before_processing,
        crate::sdk_error::sdk_error(DEPENDENCY, error),
    )
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

impl BedrockAnswerModel {
    /// The time a model call may take: what the invocation has left less the margin, at most
    /// `longest`; refused when no answer could arrive in it.
    fn budget(&self, longest: Duration) -> Result<Duration, PortError> {
        let budget = deadline::current().map_or(self.settings.max_wait, |deadline| {
            deadline
                .remaining(self.settings.deadline_margin)
                .min(longest)
        });
        if budget < SHORTEST_USEFUL_CALL {
            return Err(PortError::Unavailable {
                service: DEPENDENCY,
                message: format!(
                    "only {budget:?} left before the invocation's deadline: the model was not called"
                ),
            });
        }
        Ok(budget)
    }

    fn question_message(question: &str, passages: &[RetrievedChunk]) -> Result<Message, PortError> {
        Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(context_message(question, passages)))
            .build()
            .map_err(PortError::failed)
    }

    fn inference(&self) -> InferenceConfiguration {
        InferenceConfiguration::builder()
            .temperature(self.settings.temperature)
            .max_tokens(self.settings.max_tokens)
            .build()
    }
}

fn out_of_time(budget: Duration) -> PortError {
    telemetry::record_dependency(Metric::DependencyErrors, DEPENDENCY, 1.0);
    PortError::Unavailable {
        service: DEPENDENCY,
        message: format!(
            "no answer within {budget:?}, the time left before the invocation's deadline; not retried (the model may have processed it)"
        ),
    }
}

/// The model's whole reply as an [`Answer`]: the refusal for the marker, an empty reply or one
/// that cites nothing; otherwise its citations renumbered in order of use.
fn answer_of(text: &str, passages: usize, input_tokens: u64, output_tokens: u64) -> Answer {
    if text.trim().is_empty() || text.contains(NOT_FOUND_MARKER) {
        return not_found(input_tokens, output_tokens);
    }
    let (text, cited) = renumber_citations(text, passages);
    if cited.is_empty() {
        // An answer that cites nothing is not grounded in the manuals: refuse it.
        tracing::warn!("the model answered without citing a passage; refused");
        return not_found(input_tokens, output_tokens);
    }
    Answer {
        text,
        cited,
        found: true,
        // Claude cites; the passages it did not cite stay in retrieval order.
        ranking: Vec::new(),
        input_tokens,
        output_tokens,
    }
}

fn token_counts(usage: Option<&TokenUsage>) -> (u64, u64) {
    usage.map_or((0, 0), |usage| {
        (
            u64::try_from(usage.input_tokens()).unwrap_or(0),
            u64::try_from(usage.output_tokens()).unwrap_or(0),
        )
    })
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
        let message = Self::question_message(question, passages)?;
        let budget = self.budget(self.settings.max_wait)?;
        let started = Instant::now();
        let call = self
            .client
            .converse()
            .model_id(&self.settings.model_id)
            .system(SystemContentBlock::Text(SYSTEM_PROMPT.to_owned()))
            .messages(message)
            .inference_config(self.inference())
            .send();
        let output = match tokio::time::timeout(budget, call).await {
            Ok(result) => result.map_err(converse_error)?,
            Err(_) => return Err(out_of_time(budget)),
        };
        telemetry::record_dependency(
            Metric::DependencyLatency,
            DEPENDENCY,
            started.elapsed().as_secs_f64() * 1000.0,
        );
        let (input_tokens, output_tokens) = token_counts(output.usage());
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
        Ok(answer_of(
            &text,
            passages.len(),
            input_tokens,
            output_tokens,
        ))
    }

    /// `ConverseStream`: the words are handed on as they arrive, except while the reply could
    /// still be the not-found marker. The whole stream must end within the same budget as a
    /// `Converse`; a failure once the stream began is not retried (the model ran). When `text`
    /// closes the stream is dropped, which closes the connection and stops the generation.
    /// Requires `bedrock:InvokeModelWithResponseStream`:
    /// https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
    async fn answer_streaming(
        &self,
        _user: &UserId,
        question: &str,
        passages: &[RetrievedChunk],
        text: AnswerText,
    ) -> Result<Answer, PortError> {
        if passages.is_empty() {
            return Ok(not_found(0, 0));
        }
        let message = Self::question_message(question, passages)?;
        // A stream may run as long as the invocation: its words reach the client meanwhile.
        let budget = self.budget(LONGEST_STREAM)?;
        let started = Instant::now();
        let ends = tokio::time::Instant::now() + budget;
        let call = self
            .client
            .converse_stream()
            .model_id(&self.settings.model_id)
            .system(SystemContentBlock::Text(SYSTEM_PROMPT.to_owned()))
            .messages(message)
            .inference_config(self.inference())
            .send();
        let mut output = match tokio::time::timeout_at(ends, call).await {
            Ok(result) => result.map_err(converse_stream_error)?,
            Err(_) => return Err(out_of_time(budget)),
        };
        let mut written = String::new();
        let mut gate = MarkerGate::default();
        let mut tokens = (0, 0);
        loop {
            let event = match tokio::time::timeout_at(ends, output.stream.recv()).await {
                Err(_) => return Err(out_of_time(budget)),
                Ok(Err(error)) => return Err(stream_broke(error)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(event))) => event,
            };
            match event {
                ConverseStreamOutput::ContentBlockDelta(delta) => {
                    let Some(ContentBlockDelta::Text(words)) = delta.delta() else {
                        continue;
                    };
                    written.push_str(words);
                    if let Some(open) = gate.pass(words)
                        && text.send(open).await.is_err()
                    {
                        tracing::info!("nobody listens any more: the model's stream is closed");
                        break;
                    }
                }
                ConverseStreamOutput::Metadata(metadata) => {
                    tokens = token_counts(metadata.usage());
                }
                _ => {}
            }
        }
        telemetry::record_dependency(
            Metric::DependencyLatency,
            DEPENDENCY,
            started.elapsed().as_secs_f64() * 1000.0,
        );
        Ok(answer_of(&written, passages.len(), tokens.0, tokens.1))
    }
}

/// Holds back the start of a reply while it could still be the not-found marker, so the
/// marker never reaches a listener; a reply that is the marker stays held.
#[derive(Default)]
struct MarkerGate {
    held: String,
    open: bool,
    refused: bool,
}

impl MarkerGate {
    /// What may be handed on after `words`, if anything.
    fn pass(&mut self, words: &str) -> Option<String> {
        if self.open {
            return Some(words.to_owned());
        }
        if self.refused {
            return None;
        }
        self.held.push_str(words);
        let start = self.held.trim_start();
        if start.starts_with(NOT_FOUND_MARKER) {
            self.refused = true;
            return None;
        }
        if NOT_FOUND_MARKER.starts_with(start) {
            return None;
        }
        self.open = true;
        Some(std::mem::take(&mut self.held))
    }
}

/// A failed `ConverseStream` request, classified as [`converse_error`] classifies a `Converse`.
fn converse_stream_error(error: SdkError<ConverseStreamError, HttpResponse>) -> PortError {
    let refused_before_processing = match &error {
        SdkError::DispatchFailure(failure) => failure.is_timeout(),
        SdkError::ServiceError(context) => matches!(
            context.err(),
            ConverseStreamError::ThrottlingException(_)
                | ConverseStreamError::ModelNotReadyException(_)
                | ConverseStreamError::ServiceUnavailableException(_)
        ),
        _ => false,
    };
    not_retried_unless(
        refused_before_processing,
        crate::sdk_error::sdk_error(DEPENDENCY, error),
    )
}

/// The stream broke after it began: the model ran, so this is never retried.
fn stream_broke<R: std::fmt::Debug>(error: SdkError<ConverseStreamOutputError, R>) -> PortError {
    telemetry::record_dependency(Metric::DependencyErrors, DEPENDENCY, 1.0);
    let message = match &error {
        SdkError::ServiceError(context) => context.err().to_string(),
        other => format!("{other:?}"),
    };
    PortError::Unavailable {
        service: DEPENDENCY,
        message: format!("the answer's stream broke: {message}; not retried (the model ran)"),
    }
}

/// `error` as it is, if the request was refused before the model ran; otherwise a transient
/// error becomes one that is not retried.
fn not_retried_unless(refused_before_processing: bool, error: PortError) -> PortError {
    match error {
        PortError::Transient { service, message } if !refused_before_processing => {
            PortError::Unavailable {
                service,
                message: format!("{message}; not retried (the model may have processed it)"),
            }
        }
        other => other,
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
    fn the_not_found_marker_never_streams_and_an_answer_streams_once_it_differs() {
        let mut gate = MarkerGate::default();
        assert_eq!(gate.pass(" NOT"), None);
        assert_eq!(gate.pass("_FOU"), None);
        assert_eq!(gate.pass("ND"), None);
        assert_eq!(gate.pass(" anything"), None);
        let mut gate = MarkerGate::default();
        assert_eq!(gate.pass("NO"), None);
        assert_eq!(gate.pass("w lift"), Some("NOw lift".to_owned()));
        assert_eq!(gate.pass(" the lid [1]."), Some(" the lid [1].".to_owned()));
        let mut gate = MarkerGate::default();
        assert_eq!(gate.pass("Press"), Some("Press".to_owned()));
    }

    #[test]
    fn the_context_numbers_passages_from_one_with_their_pages() {
        let passages = vec![
            RetrievedChunk {
                manual_id: "m1".into(),
                page: 3,
                text: "Lift the cover.".into(),
                score: 1.0,
                similarity: None,
            },
            RetrievedChunk {
                manual_id: "m1".into(),
                page: 5,
                text: "Two years.".into(),
                score: 0.5,
                similarity: None,
            },
        ];
        let message = context_message("How long is the warranty?", &passages);
        assert!(message.contains("[1] (page 3)\nLift the cover."));
        assert!(message.contains("[2] (page 5)\nTwo years."));
        assert!(message.ends_with("Question: How long is the warranty?"));
    }
}
