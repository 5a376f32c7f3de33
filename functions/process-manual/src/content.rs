//! Deciding a document's format from its bytes, never from its name or declared type.

use manuel_core::domain::DocumentKind;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SniffError {
    #[error("the file is empty")]
    Empty,
    #[error("this file type is not supported; upload a PDF, Markdown or plain-text manual")]
    Unsupported,
}

/// PDF readers accept a header anywhere in the first KiB, so do we.
const PDF_HEADER_WINDOW: usize = 1024;

pub fn sniff(bytes: &[u8]) -> Result<DocumentKind, SniffError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SniffError::Empty);
    }
    let window = &bytes[..bytes.len().min(PDF_HEADER_WINDOW)];
    if window.windows(5).any(|w| w == b"%PDF-") {
        return Ok(DocumentKind::Pdf);
    }
    let text = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
        .map_err(|_| SniffError::Unsupported)?;
    if !looks_like_prose(text) {
        return Err(SniffError::Unsupported);
    }
    if looks_like_html(text) {
        return Err(SniffError::Unsupported);
    }
    Ok(if looks_like_markdown(text) {
        DocumentKind::Markdown
    } else {
        DocumentKind::Text
    })
}

/// Valid UTF-8 can still be a binary format; real text has almost no control characters.
fn looks_like_prose(text: &str) -> bool {
    let mut controls = 0usize;
    let mut total = 0usize;
    for c in text.chars() {
        total += 1;
        if c == '\0' {
            return false;
        }
        if c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c') {
            controls += 1;
        }
    }
    controls * 100 <= total
}

fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .trim_start()
        .chars()
        .take(15)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

fn looks_like_markdown(text: &str) -> bool {
    let mut previous_was_text = false;
    for line in text.lines() {
        let trimmed = line.trim_end();
        if is_atx_heading(trimmed) || trimmed.starts_with("```") {
            return true;
        }
        let underline = !trimmed.is_empty()
            && (trimmed.chars().all(|c| c == '=') || trimmed.chars().all(|c| c == '-'))
            && trimmed.len() >= 3;
        if underline && previous_was_text && trimmed.starts_with('=') {
            return true;
        }
        previous_was_text = !trimmed.trim().is_empty();
    }
    false
}

pub(crate) fn is_atx_heading(line: &str) -> bool {
    let hashes = line.chars().take_while(|&c| c == '#').count();
    (1..=6).contains(&hashes)
        && line[hashes..].starts_with(' ')
        && !line[hashes..].trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_is_found_by_its_header_even_after_junk() {
        assert_eq!(
            sniff(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj"),
            Ok(DocumentKind::Pdf)
        );
        assert_eq!(sniff(b"\x00\x00junk%PDF-1.4\n"), Ok(DocumentKind::Pdf));
    }

    #[test]
    fn markdown_and_text_are_told_apart() {
        assert_eq!(
            sniff(b"# Coffee machine\n\nFill the tank."),
            Ok(DocumentKind::Markdown)
        );
        assert_eq!(
            sniff(b"Router\n======\n\nPress reset."),
            Ok(DocumentKind::Markdown)
        );
        assert_eq!(
            sniff("\u{feff}Plain manual.\nPress the button.".as_bytes()),
            Ok(DocumentKind::Text)
        );
        assert_eq!(sniff(b"#hashtag is not a heading"), Ok(DocumentKind::Text));
    }

    #[test]
    fn binaries_html_and_empty_files_are_refused() {
        assert_eq!(sniff(b""), Err(SniffError::Empty));
        assert_eq!(sniff(b"  \n "), Err(SniffError::Empty));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Err(SniffError::Unsupported)
        );
        assert_eq!(
            sniff(b"\x7fELF\x02\x01\x01\0"),
            Err(SniffError::Unsupported)
        );
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0"), Err(SniffError::Unsupported));
        assert_eq!(
            sniff(b"PK\x03\x04\x14\0\x06\0"),
            Err(SniffError::Unsupported)
        );
        assert_eq!(
            sniff(b"<!DOCTYPE html><html></html>"),
            Err(SniffError::Unsupported)
        );
        assert_eq!(
            sniff(&[0xff, 0xfe, 0x41, 0x00]),
            Err(SniffError::Unsupported)
        );
    }
}
