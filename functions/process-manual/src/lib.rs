//! process-manual: what happens to a manual after it is stored. The content is checked by its
//! bytes, its text is read page by page, the knowledge base ingests it, and its status moves to
//! `ready` (with the page count) or `failed` (with a reason a person can act on).

pub mod content;
pub mod pages;
mod processor;

pub use content::{SniffError, sniff};
pub use pages::split_text_pages;
pub use processor::{Processor, ReadFailure, read_pages};
