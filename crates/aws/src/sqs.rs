//! SQS: failure reports sent to the dead-letter queue by code that gave up on a piece of work.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use manuel_core::PortError;
use manuel_core::failure::FailureReport;
use manuel_core::ports::DeadLetters;
use manuel_core::telemetry::{self, Metric};

pub struct DeadLetterQueue {
    client: Client,
    queue_url: String,
}

impl DeadLetterQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait::async_trait]
impl DeadLetters for DeadLetterQueue {
    async fn send(&self, report: &FailureReport) -> Result<(), PortError> {
        let body = serde_json::to_string(report).map_err(PortError::failed)?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|error| {
                telemetry::record_dependency(Metric::DependencyErrors, "sqs", 1.0);
                PortError::Unavailable {
                    service: "sqs",
                    message: DisplayErrorContext(&error).to_string(),
                }
            })?;
        Ok(())
    }
}
