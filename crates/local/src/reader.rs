//! PDF text per page through pdfium, bound at run time to the `libpdfium.so` that
//! `scripts/setup-pdfium.sh` installs from the pypdfium2 wheel.

use std::path::Path;

use manuel_core::domain::DocumentKind;
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
    fn read_pages(&self, kind: DocumentKind, bytes: &[u8]) -> Result<Vec<String>, ReadError> {
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
        let mut pages = Vec::new();
        for page in document.pages().iter() {
            let text = page.text().map(|text| text.all()).unwrap_or_default();
            pages.push(text.replace("\r\n", "\n").replace('\r', "\n"));
        }
        Ok(pages)
    }
}
