//! process-manual as a Lambda: S3 `ObjectCreated` events under `manuals/` → checked, counted,
//! ingested into the knowledge base, and the manual `ready` or `failed`.

use std::sync::Arc;

use aws_lambda_events::event::s3::S3Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manuel_aws::lambda::Init;
use manuel_core::config::ConfigError;
use manuel_core::deadline::{self, Deadline};
use manuel_core::ingestion::IngestionLimits;
use manuel_core::telemetry;
use manuel_process_manual::pdf_structure::PdfStructureReader;
use manuel_process_manual::s3_event::{EventHandling, created_objects, process_keys};
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
            limits: IngestionLimits::from_vars(init.env.vars())?,
        }),
        max_document_bytes: Some(manuel_aws::bedrock::MAX_DOCUMENT_BYTES),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = Init::start("process-manual").await;
    let processor = init.checked(processor(&init))?;
    let dead_letters = init.checked(init.dead_letter_queue())?;
    let handling = init.checked(EventHandling::from_env(&init.env, dead_letters))?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<S3Event>| {
        telemetry::take_cold_start();
        let deadline = Deadline(event.context.deadline());
        let (bucket, keys) = created_objects(event.payload);
        let handling = EventHandling {
            bucket,
            request_id: Some(event.context.request_id.clone()),
            ..handling.clone()
        };
        let processor = &processor;
        async move {
            let outcomes =
                deadline::within(Some(deadline), process_keys(processor, &keys, &handling)).await?;
            Ok::<usize, Error>(outcomes.len())
        }
    }))
    .await
}
