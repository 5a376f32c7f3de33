//! A PDF reader for the Lambda, where there is no pdfium: lopdf checks that the file is a
//! readable, unencrypted PDF and counts its pages; the text per page is lopdf's best effort,
//! enough to tell a text layer from scanned images. Bedrock parses the document itself for
//! search, so this text is never indexed.

use lopdf::content::Content;
use lopdf::{Document, Object, ObjectId};
use manuel_core::domain::DocumentKind;
use manuel_core::ingestion::{IngestionLimits, Limit};
use manuel_core::ports::{DocumentReader, ReadError};

pub struct PdfStructureReader;

impl DocumentReader for PdfStructureReader {
    fn read_pages(
        &self,
        kind: DocumentKind,
        bytes: &[u8],
        limits: &IngestionLimits,
    ) -> Result<Vec<String>, ReadError> {
        if kind != DocumentKind::Pdf {
            return Err(ReadError::Unavailable(format!(
                "the PDF reader was asked to read {}",
                kind.as_str()
            )));
        }
        let document = match Document::load_mem(bytes) {
            Ok(document) => document,
            Err(lopdf::Error::Decryption(_)) => return Err(ReadError::Encrypted),
            Err(_) => return Err(ReadError::Damaged("PDF")),
        };
        if document.was_encrypted() || document.is_encrypted() {
            return Err(ReadError::Encrypted);
        }
        let pages = document.get_pages();
        if pages.is_empty() {
            return Err(ReadError::Damaged("PDF"));
        }
        if pages.len() as u64 > u64::from(limits.max_pages) {
            return Err(ReadError::Exceeds(Limit::Pages));
        }
        let mut texts = Vec::with_capacity(pages.len());
        let mut total = 0u64;
        for (&number, &id) in &pages {
            let text = page_text(&document, number, id);
            if text.len() as u64 > limits.max_page_text_bytes {
                return Err(ReadError::Exceeds(Limit::PageText));
            }
            total += text.len() as u64;
            if total > limits.max_manual_text_bytes {
                return Err(ReadError::Exceeds(Limit::ManualText));
            }
            texts.push(text);
        }
        Ok(texts)
    }
}

/// lopdf's text of the page, or, when it cannot map the fonts, the raw strings the page shows:
/// not readable prose, but proof of a text layer.
fn page_text(document: &Document, number: u32, id: ObjectId) -> String {
    let text = document.extract_text(&[number]).unwrap_or_default();
    if !text.trim().is_empty() {
        return text;
    }
    let Ok(content) = document.get_and_decode_page_content(id) else {
        return String::new();
    };
    shown_strings(&content)
}

fn shown_strings(content: &Content) -> String {
    let mut shown = Vec::new();
    for operation in &content.operations {
        if !matches!(operation.operator.as_str(), "Tj" | "TJ" | "'" | "\"") {
            continue;
        }
        for operand in &operation.operands {
            collect_strings(operand, &mut shown);
        }
    }
    String::from_utf8_lossy(&shown).into_owned()
}

fn collect_strings(object: &Object, out: &mut Vec<u8>) {
    match object {
        Object::String(bytes, _) => {
            out.extend(bytes.iter().filter(|byte| !byte.is_ascii_control()));
            out.push(b' ');
        }
        Object::Array(items) => {
            for item in items {
                collect_strings(item, out);
            }
        }
        _ => {}
    }
}
