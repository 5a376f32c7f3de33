//! PDF text per page through pdfium, bound at run time to the `libpdfium.so` that
//! `scripts/setup-pdfium.sh` installs from the pypdfium2 wheel.

use std::path::Path;
use std::sync::OnceLock;

use manuel_core::domain::DocumentKind;
use manuel_core::ports::{DocumentReader, ReadError};
use pdfium_render::prelude::{Pdfium, PdfiumError, PdfiumInternalError};

/// pdfium can be bound once per process, so the binding is shared by every reader.
static PDFIUM: OnceLock<Result<Pdfium, String>> = OnceLock::new();

pub struct PdfiumReader {
    pdfium: &'static Pdfium,
}

impl PdfiumReader {
    /// Binds pdfium from `library` (the path of `libpdfium.so`). Fails with a message that says
    /// how to install it.
    pub fn load(library: &Path) -> Result<Self, String> {
        let bound = PDFIUM.get_or_init(|| {
            Pdfium::bind_to_library(library)
                .map(Pdfium::new)
                .map_err(|error| {
                    format!(
                        "cannot load the PDF library from {}: {error}. Run `make setup` (or scripts/setup-pdfium.sh) to install it, or point MANUEL_PDFIUM_LIB at libpdfium.so",
                        library.display()
                    )
                })
        });
        match bound {
            Ok(pdfium) => Ok(Self { pdfium }),
            Err(message) => Err(message.clone()),
        }
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
            .map_err(|error| match error {
                PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::PasswordError) => {
                    ReadError::Encrypted
                }
                PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::SecurityError) => {
                    ReadError::Encrypted
                }
                _ => ReadError::Damaged("PDF"),
            })?;
        let mut pages = Vec::new();
        for page in document.pages().iter() {
            let text = page.text().map(|text| text.all()).unwrap_or_default();
            pages.push(text.replace("\r\n", "\n").replace('\r', "\n"));
        }
        Ok(pages)
    }
}
