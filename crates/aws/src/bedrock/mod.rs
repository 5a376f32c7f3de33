//! Amazon Bedrock: the knowledge base (retrieval and per-document ingestion) and answer
//! generation with Converse.

mod converse;
mod knowledge_base;

pub use converse::{BedrockAnswerModel, ConverseSettings, NOT_FOUND_MARKER, SYSTEM_PROMPT};
pub use knowledge_base::{
    BedrockKnowledgeBase, KnowledgeBaseSettings, PAGE_NUMBER_KEY, VectorStore,
};

use aws_sdk_bedrockagent::error::SdkError;

/// The largest document a knowledge base ingests: "Each file size doesn't exceed the quota of
/// 50 MB" (https://docs.aws.amazon.com/bedrock/latest/userguide/knowledge-base-ds.html). Read
/// as decimal megabytes, the smaller reading, so nothing accepted here is refused there.
pub const MAX_DOCUMENT_BYTES: u64 = 50_000_000;
use manuel_core::PortError;

/// An SDK failure as a port error, counted under `dependency` (see [`crate::sdk_error`]).
fn sdk_error<E>(
    dependency: &'static str,
    error: SdkError<E, aws_sdk_bedrockagent::config::http::HttpResponse>,
) -> PortError
where
    E: aws_sdk_bedrockagent::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    crate::sdk_error::sdk_error(dependency, error)
}
