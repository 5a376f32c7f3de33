//! process-manual as a Lambda: S3 `ObjectCreated` events under `manuals/` → checked, counted,
//! ingested into the knowledge base, and the manual `ready` or `failed`.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::s3::S3Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use manuel_aws::lambda::Init;
use manuel_core::security::ConfigError;
use manuel_core::telemetry;
use manuel_process_manual::Processor;
use manuel_process_manual::pdf_structure::PdfStructureReader;
use manuel_process_manual::s3_event::process_keys;

fn processor(init: &Init) -> Result<Processor, ConfigError> {
    let objects = init.objects()?;
    Ok(Processor {
        objects: objects.clone(),
        manuals: init.manuals()?,
        knowledge_base: init.knowledge_base(objects)?,
        reader: Arc::new(PdfStructureReader),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = Init::start("process-manual").await;
    let processor = init.checked(processor(&init))?;
    let record_wait =
        Duration::from_secs(init.checked(init.env.parsed_or("RECORD_WAIT_SECONDS", 10))?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<S3Event>| {
        telemetry::take_cold_start();
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
            let outcomes = process_keys(processor, &keys, record_wait)
                .await
                .map_err(Error::from)?;
            Ok::<usize, Error>(outcomes.len())
        }
    }))
    .await
}
