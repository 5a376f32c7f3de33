//! A cheap check of a PDF's compressed streams before any PDF library opens it: each
//! `/FlateDecode` stream is inflated into a small scratch buffer that is thrown away, counting
//! bytes, so a decompression bomb (a few hundred KB that inflate to hundreds of MB of drawing
//! operators) is refused in constant memory and before the first MB past the limit.
//!
//! What it does not see, the worker's memory and time limits catch: streams behind another
//! filter first (`[/ASCIIHexDecode /FlateDecode]`), LZW streams, and content split into many
//! streams that are each under the per-stream limit but together draw too much on one page.
//! Images (`/Subtype /Image`) are not counted: text extraction never decodes them.

use flate2::{Decompress, FlushDecompress, Status};
use manuel_core::ingestion::{IngestionLimits, Limit};

/// How far back from `stream` a stream's dictionary is looked for.
const DICTIONARY_WINDOW: usize = 4096;
const SCRATCH: usize = 64 * 1024;

/// Fails with the limit a stream, or all of them together, inflates past.
pub fn check_streams(pdf: &[u8], limits: &IngestionLimits) -> Result<(), Limit> {
    let mut total: u64 = 0;
    let mut scratch = vec![0u8; SCRATCH];
    let mut from = 0;
    while let Some(found) = find(&pdf[from..], b"stream") {
        let keyword = from + found;
        from = keyword + b"stream".len();
        // `endstream` contains `stream`; a stream's data starts after an end of line.
        if keyword >= 3 && &pdf[keyword - 3..keyword] == b"end" {
            continue;
        }
        let data_start = match pdf.get(from..from + 2) {
            Some([b'\r', b'\n']) => from + 2,
            Some([b'\n', _]) | Some([b'\r', _]) => from + 1,
            _ => continue,
        };
        // From the object's header (`4 0 obj`) on: nested dictionaries (`/DecodeParms << >>`)
        // stay inside it.
        let dictionary = &pdf[keyword.saturating_sub(DICTIONARY_WINDOW)..keyword];
        let Some(header) = rfind(dictionary, b"obj") else {
            continue;
        };
        let dictionary = &dictionary[header..];
        if !contains(dictionary, b"/FlateDecode") && !contains(dictionary, b"/Fl ")
            || contains(dictionary, b"/Image")
        {
            continue;
        }
        let data_end =
            find(&pdf[data_start..], b"endstream").map_or(pdf.len(), |end| data_start + end);
        let remaining_page = limits.max_page_content_bytes;
        let remaining_document = limits.max_document_content_bytes.saturating_sub(total);
        let inflated = inflated_size(
            &pdf[data_start..data_end],
            remaining_page.min(remaining_document).saturating_add(1),
            &mut scratch,
        );
        if inflated > limits.max_page_content_bytes {
            return Err(Limit::PageContent);
        }
        total = total.saturating_add(inflated);
        if total > limits.max_document_content_bytes {
            return Err(Limit::DocumentContent);
        }
        from = data_end;
    }
    Ok(())
}

/// How many bytes `compressed` inflates to, counting no further than `stop_after`. Damaged data
/// counts what inflated before the damage (the PDF library decides what to make of the rest).
fn inflated_size(compressed: &[u8], stop_after: u64, scratch: &mut [u8]) -> u64 {
    let mut inflater = Decompress::new(true);
    loop {
        let consumed = inflater.total_in() as usize;
        let before = inflater.total_out();
        let input = compressed.get(consumed..).unwrap_or_default();
        let status = inflater.decompress(input, scratch, FlushDecompress::None);
        let produced = inflater.total_out() - before;
        match status {
            Ok(Status::StreamEnd) | Err(_) => return inflater.total_out(),
            Ok(_) if inflater.total_out() >= stop_after => return inflater.total_out(),
            Ok(_) if produced == 0 && inflater.total_in() as usize == consumed => {
                return inflater.total_out();
            }
            Ok(_) => {}
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .rposition(|window| window == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn pdf_with_stream(dictionary: &str, data: &[u8]) -> Vec<u8> {
        let mut pdf = b"%PDF-1.7\n4 0 obj\n".to_vec();
        pdf.extend_from_slice(dictionary.as_bytes());
        pdf.extend_from_slice(b"\nstream\n");
        pdf.extend_from_slice(data);
        pdf.extend_from_slice(b"\nendstream\nendobj\n%%EOF\n");
        pdf
    }

    fn limits(page_mib: u64, document_mib: u64) -> IngestionLimits {
        IngestionLimits {
            max_page_content_bytes: page_mib << 20,
            max_document_content_bytes: document_mib << 20,
            ..IngestionLimits::default()
        }
    }

    #[test]
    fn a_stream_inflating_past_the_page_limit_is_refused() {
        let operators = b"BT /F1 12 Tf 72 720 Td (AAAA) Tj ET\n".repeat(200_000); // 7 MB
        let bomb = pdf_with_stream(
            "<< /Length 1 /Filter /FlateDecode /DecodeParms << /Columns 1 >> >>",
            &deflate(&operators),
        );
        assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
        assert_eq!(
            check_streams(&bomb, &limits(4, 64)),
            Err(Limit::PageContent)
        );
        assert_eq!(
            check_streams(&bomb, &limits(8, 6)),
            Err(Limit::DocumentContent)
        );
        assert_eq!(check_streams(&bomb, &limits(8, 64)), Ok(()));
    }

    #[test]
    fn images_and_unfiltered_streams_are_not_counted() {
        let big = deflate(&vec![0u8; 6 << 20]);
        let image = pdf_with_stream(
            "<< /Type /XObject /Subtype /Image /Filter /FlateDecode /Length 9 >>",
            &big,
        );
        assert_eq!(check_streams(&image, &limits(1, 1)), Ok(()));
        let plain = pdf_with_stream("<< /Length 5 >>", &vec![b'A'; 3 << 20]);
        assert_eq!(check_streams(&plain, &limits(1, 1)), Ok(()));
    }

    #[test]
    fn damaged_streams_count_what_inflated() {
        let mut data = deflate(&vec![b'x'; 2 << 20]);
        data.truncate(data.len() / 2);
        data.extend_from_slice(b"garbage");
        let pdf = pdf_with_stream("<</Filter/FlateDecode>>", &data);
        assert_eq!(check_streams(&pdf, &limits(4, 4)), Ok(()));
    }
}
