//! pdfium, bound at run time to a `libpdfium.so` (from the `pypdfium2` wheel: x86_64 for
//! manuel-local, aarch64 in the Lambda layer), and the page renderer of `POST /api/pdf-page`.

use std::path::Path;
use std::sync::OnceLock;

use manuel_core::ports::{PageRenderer, RenderError, RenderedPage};
use pdfium_render::prelude::{
    PdfDocument, PdfPage, PdfRect, PdfRenderConfig, PdfSearchOptions, Pdfium, PdfiumError,
    PdfiumInternalError,
};

/// pdfium can be bound once per process, so every user of it shares this binding.
static PDFIUM: OnceLock<Result<Pdfium, String>> = OnceLock::new();

/// Binds pdfium from `library` (the path of `libpdfium.so`), once per process. Fails with a
/// message that says how to install it.
pub fn bind(library: &Path) -> Result<&'static Pdfium, String> {
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
    bound.as_ref().map_err(Clone::clone)
}

/// Whether pdfium refused a document because it is encrypted.
pub fn is_encrypted(error: &PdfiumError) -> bool {
    matches!(
        error,
        PdfiumError::PdfiumLibraryInternalError(
            PdfiumInternalError::PasswordError | PdfiumInternalError::SecurityError
        )
    )
}

/// The widest or tallest image drawn, whatever the page size: a poster-sized page at 144 dpi
/// would otherwise need gigabytes.
const MAX_SIDE_PIXELS: i32 = 4000;
/// At most this many places are highlighted on one page.
const MAX_HIGHLIGHTS: usize = 200;

pub struct PdfiumRenderer {
    pdfium: &'static Pdfium,
}

impl PdfiumRenderer {
    pub fn load(library: &Path) -> Result<Self, String> {
        bind(library).map(|pdfium| Self { pdfium })
    }
}

impl PageRenderer for PdfiumRenderer {
    fn render(
        &self,
        pdf: &[u8],
        page: u32,
        scale: f32,
        highlight: Option<&str>,
        rgba: [u8; 4],
    ) -> Result<RenderedPage, RenderError> {
        let document: PdfDocument<'_> =
            self.pdfium
                .load_pdf_from_byte_slice(pdf, None)
                .map_err(|error| {
                    if is_encrypted(&error) {
                        RenderError::Encrypted
                    } else {
                        RenderError::Damaged
                    }
                })?;
        let pages = document.pages();
        let page_count = u32::try_from(pages.len()).unwrap_or(0);
        if page == 0 || page > page_count {
            return Err(RenderError::NoSuchPage { page_count });
        }
        let index = i32::try_from(page - 1).map_err(|_| RenderError::NoSuchPage { page_count })?;
        let drawn = pages.get(index).map_err(|_| RenderError::Damaged)?;
        let config = PdfRenderConfig::new()
            .scale_page_by_factor(scale)
            .set_maximum_width(MAX_SIDE_PIXELS)
            .set_maximum_height(MAX_SIDE_PIXELS);
        let bitmap = drawn
            .render_with_config(&config)
            .map_err(|_| RenderError::Damaged)?;
        let width = u32::try_from(bitmap.width()).map_err(|_| RenderError::Damaged)?;
        let height = u32::try_from(bitmap.height()).map_err(|_| RenderError::Damaged)?;
        let mut pixels = bitmap.as_rgba_bytes();
        let mut highlights = 0;
        if let Some(text) = highlight {
            for occurrence in occurrences(&drawn, text) {
                for rect in occurrence {
                    let corners = (
                        drawn.points_to_pixels(rect.left(), rect.top(), &config),
                        drawn.points_to_pixels(rect.right(), rect.bottom(), &config),
                    );
                    if let (Ok(a), Ok(b)) = corners {
                        fill(&mut pixels, width, height, a, b, rgba);
                    }
                }
                highlights += 1;
            }
        }
        Ok(RenderedPage {
            png: encode_png(&pixels, width, height)?,
            width,
            height,
            page_count,
            highlights,
        })
    }
}

/// The rectangles of every occurrence of `text` on `page`. A passage cited from the index may
/// break its lines where the PDF does not: when the whole text is not found, each of its
/// sentences (of three words or more) is looked for.
fn occurrences(page: &PdfPage<'_>, text: &str) -> Vec<Vec<PdfRect>> {
    let Ok(page_text) = page.text() else {
        return Vec::new();
    };
    let options = PdfSearchOptions::new();
    let find = |needle: &str| -> Vec<Vec<PdfRect>> {
        let mut found = Vec::new();
        if let Ok(search) = page_text.search(needle, &options) {
            while let Some(segments) = search.find_next() {
                found.push(segments.iter().map(|segment| segment.bounds()).collect());
                if found.len() >= MAX_HIGHLIGHTS {
                    break;
                }
            }
        }
        found
    };
    let whole = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if whole.is_empty() {
        return Vec::new();
    }
    let found = find(&whole);
    if !found.is_empty() {
        return found;
    }
    whole
        .split_inclusive(['.', '!', '?', ';', ':'])
        .map(|sentence| sentence.trim().trim_end_matches(['.', '!', '?', ';', ':']))
        .filter(|sentence| sentence.split_whitespace().count() >= 3)
        .flat_map(find)
        .take(MAX_HIGHLIGHTS)
        .collect()
}

/// Blends `rgba` over the pixels between two corners (in any order), clipped to the image.
fn fill(
    pixels: &mut [u8],
    width: u32,
    height: u32,
    (x0, y0): (i32, i32),
    (x1, y1): (i32, i32),
    rgba: [u8; 4],
) {
    let clamp = |value: i32, limit: u32| value.clamp(0, i32::try_from(limit).unwrap_or(0)) as usize;
    let (left, right) = (clamp(x0.min(x1), width), clamp(x0.max(x1), width));
    let (top, bottom) = (clamp(y0.min(y1), height), clamp(y0.max(y1), height));
    let alpha = f32::from(rgba[3]) / 255.0;
    for y in top..bottom {
        for x in left..right {
            let at = (y * width as usize + x) * 4;
            if let Some(pixel) = pixels.get_mut(at..at + 3) {
                for (value, colour) in pixel.iter_mut().zip(rgba) {
                    *value = (f32::from(*value) * (1.0 - alpha) + f32::from(colour) * alpha).round()
                        as u8;
                }
            }
        }
    }
}

/// An RGB PNG of RGBA `pixels` (the page is opaque: the alpha channel is dropped).
pub fn encode_png(pixels: &[u8], width: u32, height: u32) -> Result<Vec<u8>, RenderError> {
    let rgb: Vec<u8> = pixels
        .chunks_exact(4)
        .flat_map(|pixel| [pixel[0], pixel[1], pixel[2]])
        .collect();
    let failed = |error: png::EncodingError| RenderError::Unavailable(error.to_string());
    let mut out = Vec::with_capacity(rgb.len() / 8);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(&rgb).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_fill_blends_the_colour_over_the_box_only_and_stays_inside_the_image() {
        let (width, height) = (4u32, 3u32);
        let mut pixels = vec![255u8; (width * height * 4) as usize];
        fill(
            &mut pixels,
            width,
            height,
            (3, 2),
            (1, -5),
            [0, 0, 255, 100],
        );
        let at = |x: usize, y: usize| &pixels[(y * 4 + x) * 4..(y * 4 + x) * 4 + 3];
        assert_eq!(at(0, 0), [255, 255, 255]);
        assert_eq!(at(1, 0), [155, 155, 255]);
        assert_eq!(at(2, 1), [155, 155, 255]);
        assert_eq!(at(3, 1), [255, 255, 255]);
        assert_eq!(at(1, 2), [255, 255, 255]);
    }

    #[test]
    fn pngs_are_rgb_with_the_pages_size() {
        let png = encode_png(&[10, 20, 30, 255, 40, 50, 60, 255], 2, 1).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut out = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut out).unwrap();
        assert_eq!((info.width, info.height), (2, 1));
        assert_eq!(&out[..6], [10, 20, 30, 40, 50, 60]);
    }
}
