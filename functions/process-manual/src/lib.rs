//! process-manual: what happens to a manual after it is stored. The content is checked by its
//! bytes, its text is read page by page, the knowledge base ingests it, and its status moves to
//! `ready` (with the page count) or `failed` (with a reason a person can act on). In AWS an S3
//! `ObjectCreated` event names the stored object ([`s3_event`]).

pub mod content;
pub mod furniture;
pub mod pages;
pub mod pdf_streams;
#[cfg(feature = "lambda")]
pub mod pdf_structure;
mod processor;
pub mod s3_event;

pub use content::{SniffError, sniff};
pub use pages::split_text_pages;
pub use processor::{
    InProcessIndexer, Indexer, NOT_INDEXED, Processor, ReadFailure, check_pages, read_pages,
};
