//! PDF text per page through pdfium, bound at run time to the `libpdfium.so` that
//! `scripts/setup-pdfium.sh` installs from the pypdfium2 wheel.

use std::path::Path;

use manuel_core::domain::DocumentKind;
use manuel_core::ingestion::{IngestionLimits, Limit};
use manuel_core::ports::{DocumentReader, ReadError};
use pdfium_render::prelude::Pdfium;

pub struct PdfiumReader {
    pdfium: &'static Pdfium,
}

impl PdfiumReader {
    /// Binds pdfium from `library` (the path of `libpdfium.so`), sharing the process's one
    /// binding with the page renderer. Fails with a message that says how to install it.
    pub fn load(library: &Path) -> Result<Self, String> {
        manuel_manuals::pdfium::bind(library).map(|pdfium| Self { pdfium })
    }
}

impl DocumentReader for PdfiumReader {
    /// Runs in the ingest worker process ([`crate::worker`]), whose memory and time limits
    /// contain whatever pdfium does with a hostile file; the page count and each page's text
    /// are checked as they come.
    fn read_pages(
        &self,
        kind: DocumentKind,
        bytes: &[u8],
        limits: &IngestionLimits,
    ) -> Result<Vec<String>, ReadError> {
        if kind != DocumentKind::Pdf {
            return Err(ReadError::Damaged("PDF"));
        }
        let document = self
            .pdfium
            .load_pdf_from_byte_slice(bytes, None)
            .map_err(|error| {
                if manuel_manuals::pdfium::is_encrypted(&error) {
                    ReadError::Encrypted
                } else {
                    ReadError::Damaged("PDF")
                }
            })?;
        let count = u32::try_from(document.pages().len()).unwrap_or(0);
        if count > limits.max_pages {
            return Err(ReadError::Exceeds(Limit::Pages));
        }
        let mut pages = Vec::with_capacity(count as usize);
        let mut total = 0u64;
        for page in document.pages().iter() {
            let text = page.text().map(|text| text.all()).unwrap_or_default();
            if text.len() as u64 > limits.max_page_text_bytes {
                return Err(ReadError::Exceeds(Limit::PageText));
            }
            total += text.len() as u64;
            if total > limits.max_manual_text_bytes {
                return Err(ReadError::Exceeds(Limit::ManualText));
            }
            pages.push(text.replace("\r\n", "\n").replace('\r', "\n"));
        }
        Ok(pages)
    }
}
