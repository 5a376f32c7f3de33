//! The processing of one stored manual, from `processing` to `ready` or `failed`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use manuel_core::PortError;
use manuel_core::domain::{
    ArrivedUpload, DocumentKind, Manual, ManualStatus, ProcessingOutcome, UserId,
};
use manuel_core::ingestion::{IngestionLimits, Limit};
use manuel_core::ports::{
    ArrivalOutcome, DocumentReader, KnowledgeBase, ManualRepository, ObjectStore, ReadError,
};
use manuel_core::telemetry::{self, Metric};
use sha2::{Digest, Sha256};

use crate::content::{SniffError, sniff};
use crate::furniture::{Unfurnished, without_furniture};
use crate::pages::split_text_pages;
use crate::pdf_streams::check_streams;

#[derive(Clone)]
pub struct Processor {
    pub objects: Arc<dyn ObjectStore>,
    pub manuals: Arc<dyn ManualRepository>,
    pub knowledge_base: Arc<dyn KnowledgeBase>,
    pub indexer: Arc<dyn Indexer>,
    /// The largest manual the knowledge base ingests (`None`: no limit, as in manuel-local). A
    /// bigger one fails with that reason before its object is read, so it is never held in
    /// memory whole.
    pub max_document_bytes: Option<u64>,
}

/// How a stored manual's bytes become searchable.
#[async_trait]
pub trait Indexer: Send + Sync {
    /// Reads `bytes` and makes `manual` searchable: `Ready` with its page count, or `Failed`
    /// with a reason its owner can act on, and then nothing of it searchable (no partial
    /// passages). A [`PortError`] means a dependency failed: retry.
    async fn index(&self, manual: &Manual, bytes: Bytes) -> Result<ProcessingOutcome, PortError>;
}

/// Reads the pages in this process, within `limits`, and hands them to the knowledge base
/// (process-manual on Lambda, where the function's own memory and timeout contain a runaway).
pub struct InProcessIndexer {
    pub reader: Arc<dyn DocumentReader>,
    pub knowledge_base: Arc<dyn KnowledgeBase>,
    pub limits: IngestionLimits,
}

#[async_trait]
impl Indexer for InProcessIndexer {
    async fn index(&self, manual: &Manual, bytes: Bytes) -> Result<ProcessingOutcome, PortError> {
        let reader = Arc::clone(&self.reader);
        let limits = self.limits;
        let read =
            tokio::task::spawn_blocking(move || read_pages(reader.as_ref(), &bytes, &limits))
                .await
                .map_err(PortError::failed)?;
        let pages = match read {
            Ok(manual) => manual.pages,
            Err(ReadFailure::Unavailable(message)) => {
                return Err(PortError::Unavailable {
                    service: "document reader",
                    message,
                });
            }
            Err(failure) => {
                return Ok(ProcessingOutcome::Failed {
                    reason: failure.to_string(),
                });
            }
        };
        match self.knowledge_base.ingest(manual, &pages).await {
            Ok(()) => Ok(ProcessingOutcome::Ready {
                pages: u32::try_from(pages.len()).unwrap_or(u32::MAX),
            }),
            // The knowledge base refused this document; asking again will not help.
            Err(PortError::Failed(cause)) => {
                tracing::warn!(manual_id = %manual.id, %cause, "the knowledge base could not index a manual");
                Ok(ProcessingOutcome::Failed {
                    reason: NOT_INDEXED.to_owned(),
                })
            }
            Err(unavailable) => Err(unavailable),
        }
    }
}

/// The reason of a manual the knowledge base refused.
pub const NOT_INDEXED: &str = "The manual could not be indexed for search; try uploading it again, or a different copy of it.";

impl Processor {
    /// Processes a manual that is still `processing`. Returns the recorded outcome, or `None`
    /// when there was nothing to do (deleted meanwhile, or already finished). A [`PortError`]
    /// means a dependency failed and the manual stays `processing`, to be retried.
    pub async fn process(
        &self,
        user: &UserId,
        manual_id: &str,
    ) -> Result<Option<ProcessingOutcome>, PortError> {
        let Some(manual) = self.manuals.get(user, manual_id).await? else {
            return Ok(None);
        };
        // A `processing` manual's recorded size is its stored object's. (An `uploading` one's
        // upload link was capped, and its signed Content-Length fixes the object's size.)
        if let Some(max) = self.max_document_bytes
            && manual.size_bytes > max
            && manual.status == ManualStatus::Processing
        {
            let outcome = ProcessingOutcome::Failed {
                reason: format!(
                    "The manual is {} bytes; the search index takes files of at most {max} bytes ({:.0} MB).",
                    manual.size_bytes,
                    max as f64 / 1e6
                ),
            };
            if self
                .manuals
                .finish_processing(user, manual_id, &outcome)
                .await?
            {
                log_outcome(&manual, &outcome);
                return Ok(Some(outcome));
            }
            return Ok(None);
        }
        let (manual, stored) = match manual.status {
            ManualStatus::Processing => {
                let stored = self.objects.get(&manual.key).await?;
                (manual, stored)
            }
            ManualStatus::Uploading => match self.objects.get(&manual.key).await? {
                // Its upload link has not been used (yet).
                None => return Ok(None),
                Some(bytes) => match self.record_arrival(&manual, &bytes).await? {
                    Some(manual) => (manual, Some(bytes)),
                    None => return Ok(None),
                },
            },
            ManualStatus::Ready | ManualStatus::Failed => return Ok(None),
        };
        let outcome = match stored {
            None => ProcessingOutcome::Failed {
                reason: "The uploaded file is missing from storage.".to_owned(),
            },
            Some(bytes) => self.indexer.index(&manual, bytes).await?,
        };
        let moved = self
            .manuals
            .finish_processing(user, manual_id, &outcome)
            .await?;
        if !moved {
            // Deleted while it was being read: take back what was just indexed.
            self.knowledge_base.remove(&manual).await?;
            return Ok(None);
        }
        log_outcome(&manual, &outcome);
        Ok(Some(outcome))
    }
}

impl Processor {
    /// Records the content of an upload-link manual whose bytes arrived. `None` when there is
    /// nothing more to do: the bytes duplicate another manual (the object is removed and the
    /// manual says which one it duplicates), or the manual was deleted meanwhile.
    async fn record_arrival(
        &self,
        manual: &Manual,
        bytes: &Bytes,
    ) -> Result<Option<Manual>, PortError> {
        let arrived = ArrivedUpload {
            sha256: hex::encode(Sha256::digest(bytes)),
            size_bytes: bytes.len() as u64,
            // Unreadable content keeps the declared kind; reading it fails with the reason.
            kind: sniff(bytes).unwrap_or(manual.kind),
        };
        match self
            .manuals
            .upload_arrived(&manual.user_id, &manual.id, &arrived)
            .await?
        {
            ArrivalOutcome::Processing(manual) => Ok(Some(manual)),
            ArrivalOutcome::Duplicate(existing) => {
                tracing::info!(manual_id = %manual.id, duplicate_of = %existing.id, "uploaded bytes duplicate another manual");
                self.knowledge_base.remove(manual).await?;
                self.objects.delete(&manual.key).await?;
                Ok(None)
            }
            ArrivalOutcome::NotAwaited => Ok(None),
        }
    }
}

fn log_outcome(manual: &Manual, outcome: &ProcessingOutcome) {
    match outcome {
        ProcessingOutcome::Ready { pages } => {
            telemetry::record(Metric::ManualsReady, 1.0);
            tracing::info!(manual_id = %manual.id, pages, "manual ready");
        }
        ProcessingOutcome::Failed { reason } => {
            telemetry::record(Metric::ManualsFailed, 1.0);
            tracing::info!(manual_id = %manual.id, %reason, "manual failed");
        }
    }
}

/// Why a manual cannot be made searchable; the message is shown to its owner.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReadFailure {
    #[error("The file is empty.")]
    Empty,
    #[error("This file type is not supported; upload a PDF, Markdown or plain-text manual.")]
    Unsupported,
    #[error("The PDF is encrypted or password-protected; upload an unprotected copy.")]
    Encrypted,
    #[error("The file is damaged and could not be read as a {0}.")]
    Damaged(&'static str),
    #[error("No text could be extracted; the manual may be scanned images without a text layer.")]
    NoText,
    #[error("The PDF has no pages that could be read; its page structure may be damaged.")]
    NoPages,
    #[error("{reason}")]
    Exceeds { limit: Limit, reason: String },
    #[error("{0}")]
    Unavailable(String),
}

impl ReadFailure {
    pub fn exceeds(limit: Limit, limits: &IngestionLimits) -> Self {
        Self::Exceeds {
            limit,
            reason: limit.reason(limits),
        }
    }
}

/// Checks the bytes and returns the text of every page (empty pages included, so the count is
/// the document's page count), within `limits`. Fails when no page has any text.
pub fn read_pages(
    reader: &dyn DocumentReader,
    bytes: &[u8],
    limits: &IngestionLimits,
) -> Result<Unfurnished, ReadFailure> {
    let kind = sniff(bytes).map_err(|error| match error {
        SniffError::Empty => ReadFailure::Empty,
        SniffError::Unsupported => ReadFailure::Unsupported,
    })?;
    let exceeds = |limit| ReadFailure::exceeds(limit, limits);
    let pages = match kind {
        DocumentKind::Pdf => {
            check_streams(bytes, limits).map_err(exceeds)?;
            reader
                .read_pages(kind, bytes, limits)
                .map_err(|error| match error {
                    ReadError::Encrypted => ReadFailure::Encrypted,
                    ReadError::Damaged(what) => ReadFailure::Damaged(what),
                    ReadError::Unavailable(message) => ReadFailure::Unavailable(message),
                    ReadError::Exceeds(limit) => exceeds(limit),
                })?
        }
        DocumentKind::Markdown | DocumentKind::Text => {
            if bytes.len() as u64 > limits.max_manual_text_bytes {
                return Err(exceeds(Limit::ManualText));
            }
            // A form feed starts a page: counted before anything is split.
            let form_feeds = bytes.iter().filter(|&&byte| byte == b'\x0c').count();
            if form_feeds >= limits.max_pages as usize {
                return Err(exceeds(Limit::Pages));
            }
            let text = std::str::from_utf8(bytes).map_err(|_| ReadFailure::Unsupported)?;
            split_text_pages(kind, text)
        }
    };
    check_pages(&pages, limits).map_err(exceeds)?;
    let manual = without_furniture(pages);
    if manual.pages.is_empty() {
        return Err(ReadFailure::NoPages);
    }
    if manual.pages.iter().all(|page| page.trim().is_empty()) {
        return Err(ReadFailure::NoText);
    }
    Ok(manual)
}

/// The page count, each page's text and the whole text against `limits` (whatever read them).
pub fn check_pages(pages: &[String], limits: &IngestionLimits) -> Result<(), Limit> {
    if pages.len() as u64 > u64::from(limits.max_pages) {
        return Err(Limit::Pages);
    }
    let mut total = 0u64;
    for page in pages {
        let length = page.len() as u64;
        if length > limits.max_page_text_bytes {
            return Err(Limit::PageText);
        }
        total += length;
    }
    if total > limits.max_manual_text_bytes {
        return Err(Limit::ManualText);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FixedReader(Result<Vec<String>, ReadError>);

    impl DocumentReader for FixedReader {
        fn read_pages(
            &self,
            _: DocumentKind,
            _: &[u8],
            _: &IngestionLimits,
        ) -> Result<Vec<String>, ReadError> {
            self.0.clone()
        }
    }

    fn read(reader: &FixedReader, bytes: &[u8]) -> Result<Vec<String>, ReadFailure> {
        read_pages(reader, bytes, &IngestionLimits::default()).map(|manual| manual.pages)
    }

    #[test]
    fn pdf_failures_become_reasons() {
        let pdf = b"%PDF-1.7\n";
        let encrypted = FixedReader(Err(ReadError::Encrypted));
        assert_eq!(read(&encrypted, pdf), Err(ReadFailure::Encrypted));
        let blank = FixedReader(Ok(vec![String::new(), " \n".to_owned()]));
        assert_eq!(read(&blank, pdf), Err(ReadFailure::NoText));
        let no_pages = FixedReader(Ok(Vec::new()));
        assert_eq!(read(&no_pages, pdf), Err(ReadFailure::NoPages));
        let good = FixedReader(Ok(vec!["Title".to_owned(), String::new()]));
        assert_eq!(read(&good, pdf).map(|pages| pages.len()), Ok(2));
    }

    #[test]
    fn text_is_read_without_the_pdf_reader() {
        let unused = FixedReader(Err(ReadError::Unavailable("no pdfium".to_owned())));
        let pages = read(&unused, b"# Manual\n\nPress the red button to start.");
        assert_eq!(pages.map(|p| p.len()), Ok(1));
        assert_eq!(read(&unused, b""), Err(ReadFailure::Empty));
        assert_eq!(read(&unused, b"\x7fELF\x02"), Err(ReadFailure::Unsupported));
    }

    #[test]
    fn every_limit_on_pages_and_text_is_enforced_with_its_reason() {
        let limits = IngestionLimits {
            max_pages: 3,
            max_page_text_bytes: 100,
            max_manual_text_bytes: 250,
            ..IngestionLimits::default()
        };
        let unused = FixedReader(Err(ReadError::Unavailable("no pdfium".to_owned())));
        let limit_of = |result: Result<Unfurnished, ReadFailure>| match result {
            Err(ReadFailure::Exceeds { limit, reason }) => {
                assert_eq!(reason, limit.reason(&limits));
                Some(limit)
            }
            _ => None,
        };
        // A million one-word pages are refused from the count of form feeds alone.
        let many_pages = "word\x0c".repeat(1_000_000);
        let big = IngestionLimits {
            max_manual_text_bytes: 64 << 20,
            ..limits
        };
        assert!(matches!(
            read_pages(&unused, many_pages.as_bytes(), &big),
            Err(ReadFailure::Exceeds {
                limit: Limit::Pages,
                ..
            })
        ));
        let long_page = format!("Manual\n{}", "word ".repeat(40));
        assert_eq!(
            limit_of(read_pages(&unused, long_page.as_bytes(), &limits)),
            Some(Limit::PageText)
        );
        let too_much = "word ".repeat(60);
        assert_eq!(
            limit_of(read_pages(&unused, too_much.as_bytes(), &limits)),
            Some(Limit::ManualText)
        );
        let pdf_pages = FixedReader(Ok(vec!["a".repeat(90); 3]));
        assert_eq!(
            limit_of(read_pages(&pdf_pages, b"%PDF-1.7\n", &limits)),
            Some(Limit::ManualText)
        );
        let reader_stops = FixedReader(Err(ReadError::Exceeds(Limit::Pages)));
        assert_eq!(
            limit_of(read_pages(&reader_stops, b"%PDF-1.7\n", &limits)),
            Some(Limit::Pages)
        );
    }
}
