//! SNS: alerts for people on call.

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::error::DisplayErrorContext;
use manuel_core::PortError;
use manuel_core::ports::Notifier;
use manuel_core::telemetry::{self, Metric};

pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn notify(&self, subject: &str, message: &str) -> Result<(), PortError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map_err(|error| {
                telemetry::record_dependency(Metric::DependencyErrors, "sns", 1.0);
                PortError::Unavailable {
                    service: "sns",
                    message: DisplayErrorContext(&error).to_string(),
                }
            })?;
        Ok(())
    }
}
