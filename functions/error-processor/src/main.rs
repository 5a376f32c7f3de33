//! error-processor as a Lambda: SQS batches from the dead-letter queue, answered with
//! `batchItemFailures` so that only the records that failed are delivered again.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manuel_aws::lambda::Init;
use manuel_core::config::ConfigError;
use manuel_core::usage::SystemClock;
use manuel_error_processor::{ErrorProcessor, QueueRecord};

fn processor(init: &Init) -> Result<ErrorProcessor, ConfigError> {
    Ok(ErrorProcessor {
        errors: init.errors()?,
        notifier: init.notifier()?,
        clock: Arc::new(SystemClock),
        alert_window: Duration::from_secs(init.env.parsed_or("ALERT_WINDOW_SECONDS", 900)?),
        retention: Duration::from_secs(86_400 * init.env.parsed_or("ERROR_RETENTION_DAYS", 30)?),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = Init::start("error-processor").await;
    let processor = init.checked(processor(&init))?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        manuel_core::telemetry::take_cold_start();
        let records: Vec<QueueRecord> = event
            .payload
            .records
            .into_iter()
            .map(|record| QueueRecord {
                message_id: record.message_id.unwrap_or_default(),
                body: record.body.unwrap_or_default(),
                error_message: record
                    .message_attributes
                    .get("ErrorMessage")
                    .and_then(|a| a.string_value.clone()),
            })
            .collect();
        let processor = &processor;
        async move {
            let failed = processor.process_batch(&records).await;
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = failed
                .into_iter()
                .map(|id| {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    failure
                })
                .collect();
            Ok::<_, Error>(response)
        }
    }))
    .await
}
