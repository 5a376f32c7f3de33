//! Local ingestion: the counterpart of the S3 event that runs process-manual in AWS. Uploads are
//! queued in memory; what was still `processing` at shutdown is queued again at start-up.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use manuel_core::PortError;
use manuel_core::domain::UserId;
use manuel_core::ports::IngestionQueue;
use manuel_process_manual::Processor;
use tokio::sync::mpsc;

const MAX_ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Job {
    user: UserId,
    manual_id: String,
    attempt: u32,
}

pub struct LocalIngestionQueue {
    sender: mpsc::UnboundedSender<Job>,
}

#[async_trait]
impl IngestionQueue for LocalIngestionQueue {
    async fn enqueue(&self, user: &UserId, manual_id: &str) -> Result<(), PortError> {
        self.sender
            .send(Job {
                user: user.clone(),
                manual_id: manual_id.to_owned(),
                attempt: 1,
            })
            .map_err(|_| PortError::Unavailable {
                service: "ingestion",
                message: "the ingestion worker has stopped".to_owned(),
            })
    }
}

/// Starts the worker on the current runtime and returns the queue that feeds it.
pub fn start_worker(processor: Processor) -> Arc<LocalIngestionQueue> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Job>();
    let retry = sender.clone();
    tokio::spawn(async move {
        while let Some(job) = receiver.recv().await {
            match processor.process(&job.user, &job.manual_id).await {
                Ok(_) => {}
                Err(error) if job.attempt < MAX_ATTEMPTS => {
                    tracing::warn!(manual_id = %job.manual_id, attempt = job.attempt, %error, "processing failed; retrying");
                    let retry = retry.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_DELAY * job.attempt).await;
                        let _ = retry.send(Job {
                            attempt: job.attempt + 1,
                            ..job
                        });
                    });
                }
                Err(error) => {
                    tracing::error!(manual_id = %job.manual_id, %error, "processing failed; the manual stays `processing` until the next start");
                }
            }
        }
    });
    Arc::new(LocalIngestionQueue { sender })
}
