//! Bounds on the ingestion of one manual. A manual that exceeds any of them ends `failed` with a
//! reason naming the limit; nothing one manual holds can take more than these from the service.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// What one manual may cost to ingest. Set from `INGEST_*` variables ([`IngestionLimits::from_vars`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestionLimits {
    /// Pages of a PDF, or sections of a text manual.
    pub max_pages: u32,
    /// Extracted text of one page, in bytes.
    pub max_page_text_bytes: u64,
    /// Extracted text of the whole manual (or the size of a text manual), in bytes.
    pub max_manual_text_bytes: u64,
    /// Search passages (chunks) of one manual.
    pub max_chunks: u32,
    /// Decompressed size of one content stream of a PDF (what one page draws), in bytes.
    pub max_page_content_bytes: u64,
    /// Decompressed size of all the streams of a PDF together, in bytes.
    pub max_document_content_bytes: u64,
    /// Wall time to read, chunk and embed one manual.
    #[serde(with = "seconds")]
    pub max_wall_time: Duration,
    /// Memory of the process that reads and embeds one manual, in bytes (local mode: the worker
    /// process; on Lambda the function's memory size is the limit).
    pub max_memory_bytes: u64,
}

const MIB: u64 = 1024 * 1024;

impl Default for IngestionLimits {
    /// Generous for real manuals (the 329-page bench PDF has ~1 MB of text and ~1,300 chunks; its
    /// largest content stream inflates to well under 1 MiB), small for the machine.
    fn default() -> Self {
        Self {
            max_pages: 3_000,
            max_page_text_bytes: 256 * 1024,
            max_manual_text_bytes: 8 * MIB,
            max_chunks: 8_000,
            max_page_content_bytes: 32 * MIB,
            max_document_content_bytes: 512 * MIB,
            max_wall_time: Duration::from_secs(900),
            max_memory_bytes: 1536 * MIB,
        }
    }
}

/// One of the bounds of [`IngestionLimits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Pages,
    PageText,
    ManualText,
    Chunks,
    PageContent,
    DocumentContent,
    WallTime,
    Memory,
}

impl Limit {
    /// The variable that sets it.
    pub fn variable(self) -> &'static str {
        match self {
            Self::Pages => "INGEST_MAX_PAGES",
            Self::PageText => "INGEST_MAX_PAGE_TEXT_KB",
            Self::ManualText => "INGEST_MAX_MANUAL_TEXT_MB",
            Self::Chunks => "INGEST_MAX_CHUNKS",
            Self::PageContent => "INGEST_MAX_PAGE_CONTENT_MB",
            Self::DocumentContent => "INGEST_MAX_DOCUMENT_CONTENT_MB",
            Self::WallTime => "INGEST_MAX_SECONDS",
            Self::Memory => "INGEST_MAX_MEMORY_MB",
        }
    }

    /// The `status_reason` of a manual that exceeded this limit: names the limit and its value.
    pub fn reason(self, limits: &IngestionLimits) -> String {
        let what = match self {
            Self::Pages => format!("the page limit ({} pages per manual)", limits.max_pages),
            Self::PageText => format!(
                "the limit on text per page ({} KiB)",
                limits.max_page_text_bytes / 1024
            ),
            Self::ManualText => format!(
                "the limit on text per manual ({} MiB)",
                limits.max_manual_text_bytes / MIB
            ),
            Self::Chunks => format!(
                "the limit on search passages per manual ({})",
                limits.max_chunks
            ),
            Self::PageContent => format!(
                "the limit on decompressed content per page ({} MiB)",
                limits.max_page_content_bytes / MIB
            ),
            Self::DocumentContent => format!(
                "the limit on decompressed content per document ({} MiB)",
                limits.max_document_content_bytes / MIB
            ),
            Self::WallTime => format!(
                "the time limit for processing one manual ({} s)",
                limits.max_wall_time.as_secs()
            ),
            Self::Memory => format!(
                "the memory limit for processing one manual ({} MiB)",
                limits.max_memory_bytes / MIB
            ),
        };
        format!("The manual could not be processed: it exceeds {what}.")
    }
}

impl IngestionLimits {
    /// Reads `INGEST_MAX_PAGES`, `INGEST_MAX_PAGE_TEXT_KB`, `INGEST_MAX_MANUAL_TEXT_MB`,
    /// `INGEST_MAX_CHUNKS`, `INGEST_MAX_PAGE_CONTENT_MB`, `INGEST_MAX_DOCUMENT_CONTENT_MB`,
    /// `INGEST_MAX_SECONDS` and `INGEST_MAX_MEMORY_MB`; each missing one keeps its default.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let env = crate::config::Env::from_vars(vars.clone());
        let read = |limit: Limit, default: u64| -> Result<u64, ConfigError> {
            env.number_in(limit.variable(), default, 1..=u64::MAX)
        };
        let small = |limit: Limit, value: u64| {
            u32::try_from(value).map_err(|_| ConfigError {
                name: limit.variable(),
                reason: format!("{value} is too large"),
            })
        };
        Ok(Self {
            max_pages: small(
                Limit::Pages,
                read(Limit::Pages, u64::from(defaults.max_pages))?,
            )?,
            max_page_text_bytes: read(Limit::PageText, defaults.max_page_text_bytes / 1024)?
                .saturating_mul(1024),
            max_manual_text_bytes: read(Limit::ManualText, defaults.max_manual_text_bytes / MIB)?
                .saturating_mul(MIB),
            max_chunks: small(
                Limit::Chunks,
                read(Limit::Chunks, u64::from(defaults.max_chunks))?,
            )?,
            max_page_content_bytes: read(
                Limit::PageContent,
                defaults.max_page_content_bytes / MIB,
            )?
            .saturating_mul(MIB),
            max_document_content_bytes: read(
                Limit::DocumentContent,
                defaults.max_document_content_bytes / MIB,
            )?
            .saturating_mul(MIB),
            max_wall_time: Duration::from_secs(read(
                Limit::WallTime,
                defaults.max_wall_time.as_secs(),
            )?),
            max_memory_bytes: read(Limit::Memory, defaults.max_memory_bytes / MIB)?
                .saturating_mul(MIB),
        })
    }
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_override_defaults_and_bad_values_name_the_variable() {
        let vars = HashMap::from([
            ("INGEST_MAX_PAGES".to_owned(), "10".to_owned()),
            ("INGEST_MAX_MEMORY_MB".to_owned(), "256".to_owned()),
        ]);
        let limits = IngestionLimits::from_vars(&vars).unwrap();
        assert_eq!(limits.max_pages, 10);
        assert_eq!(limits.max_memory_bytes, 256 * MIB);
        assert_eq!(
            limits.max_chunks,
            IngestionLimits::default().max_chunks,
            "unset keeps the default"
        );
        let bad = HashMap::from([("INGEST_MAX_SECONDS".to_owned(), "0".to_owned())]);
        let error = IngestionLimits::from_vars(&bad).unwrap_err();
        assert_eq!(error.name, "INGEST_MAX_SECONDS");
    }

    #[test]
    fn reasons_name_the_limit_and_its_value() {
        let limits = IngestionLimits::default();
        assert_eq!(
            Limit::Pages.reason(&limits),
            "The manual could not be processed: it exceeds the page limit (3000 pages per manual)."
        );
        assert!(Limit::Memory.reason(&limits).contains("memory limit"));
        assert!(
            Limit::PageContent
                .reason(&limits)
                .contains("decompressed content per page (32 MiB)")
        );
    }
}
