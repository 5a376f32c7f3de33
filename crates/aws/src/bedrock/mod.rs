//! Amazon Bedrock: the knowledge base (retrieval and per-document ingestion) and answer
//! generation with Converse.

mod converse;
mod knowledge_base;

pub use converse::{BedrockAnswerModel, ConverseSettings, NOT_FOUND_MARKER, SYSTEM_PROMPT};
pub use knowledge_base::{BedrockKnowledgeBase, KnowledgeBaseSettings, PAGE_NUMBER_KEY};

use aws_sdk_bedrockagent::error::{DisplayErrorContext, SdkError};
use manuel_core::PortError;
use manuel_core::telemetry::{self, Metric};

/// An SDK failure as a port error, counted under `dependency`. A request we could not even
/// build is our bug (`Failed`); everything else means Bedrock is unavailable to us right now.
fn sdk_error<E, R>(dependency: &'static str, error: SdkError<E, R>) -> PortError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    telemetry::record_dependency(Metric::DependencyErrors, dependency, 1.0);
    match error {
        SdkError::ConstructionFailure(_) => PortError::failed(format!(
            "{dependency} request: {}",
            DisplayErrorContext(&error)
        )),
        other => PortError::Unavailable {
            service: dependency,
            message: DisplayErrorContext(&other).to_string(),
        },
    }
}
