//! process-manual as a Lambda: S3 `ObjectCreated` events under `manuals/` → checked, counted,
//! ingested into the knowledge base, and the manual `ready` or `failed`.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::s3::S3Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manuel_aws::lambda::Init;
use manuel_core::config::ConfigError;
use manuel_core::deadline::{self, Deadline};
use manuel_core::ingestion::IngestionLimits;
use manuel_core::resilience::RetryPolicy;
use manuel_core::telemetry;
use manuel_process_manual::pdf_structure::PdfStructureReader;
use manuel_process_manual::s3_event::{EventHandling, process_keys};
use manuel_process_manual::{InProcessIndexer, Processor};

/// The `INGEST_*` limits apply where this function can check them cheaply: the streams'
/// decompressed sizes, pages and text; the function's memory and timeout bound the rest.
fn processor(init: &Init) -> Result<Processor, ConfigError> {
    let knowledge_base = init.knowledge_base()?;
    Ok(Processor {
        objects: init.objects()?,
        manuals: init.manuals()?,
        knowledge_base: knowledge_base.clone(),
        indexer: Arc::new(InProcessIndexer {
            reader: Arc::new(PdfStructureReader),
            knowledge_base,
            limits: IngestionLimits::from_vars(&std::env::vars().collect())?,
        }),
        max_document_bytes: Some(manuel_aws::bedrock::MAX_DOCUMENT_BYTES),
    })
}

/// `RECORD_WAIT_SECONDS` (10), `PROCESSING_ATTEMPTS` (a retry policy, `exponential:3:2000:8000`)
/// and `DLQ_URL`, where a manual that still fails is reported.
fn handling(init: &Init) -> Result<EventHandling, ConfigError> {
    let attempts = match init.env.optional("PROCESSING_ATTEMPTS") {
        None => RetryPolicy::new(
            manuel_core::resilience::Backoff::Exponential,
            3,
            Duration::from_secs(2),
            Duration::from_secs(8),
        ),
        Some(value) => RetryPolicy::parse(value).ok_or_else(|| ConfigError {
            name: "PROCESSING_ATTEMPTS",
            reason: format!(
                "{value:?} is not <exponential|linear|fixed>:<attempts 1-10>:<base ms>:<max ms>"
            ),
        })?,
    };
    let dead_letters: Arc<dyn manuel_core::ports::DeadLetters> = init.dead_letter_queue()?;
    Ok(EventHandling {
        record_wait: Duration::from_secs(init.env.parsed_or("RECORD_WAIT_SECONDS", 10)?),
        attempts,
        dead_letters: Some(dead_letters),
        bucket: None,
        request_id: None,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = Init::start("process-manual").await;
    let processor = init.checked(processor(&init))?;
    let handling = init.checked(handling(&init))?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<S3Event>| {
        telemetry::take_cold_start();
        let invocation_deadline = Deadline(event.context.deadline());
        let mut handling = handling.clone();
        handling.request_id = Some(event.context.request_id.clone());
        handling.bucket = event
            .payload
            .records
            .first()
            .and_then(|record| record.s3.bucket.name.clone());
        let keys: Vec<String> = event
            .payload
            .records
            .into_iter()
            .filter(|record| {
                record
                    .event_name
                    .as_deref()
                    .is_some_and(|name| name.starts_with("ObjectCreated"))
            })
            .filter_map(|record| record.s3.object.key)
            .collect();
        let processor = &processor;
        async move {
            let outcomes = deadline::within(
                Some(invocation_deadline),
                process_keys(processor, &keys, &handling),
            )
            .await
            .map_err(Error::from)?;
            Ok::<usize, Error>(outcomes.len())
        }
    }))
    .await
}
