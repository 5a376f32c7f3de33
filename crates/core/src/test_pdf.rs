//! PDFs written byte by byte for tests and benchmarks (the `test-support` feature): the shapes a
//! PDF library would refuse to write (decompression bombs, deep page trees) and manuals of a
//! chosen size, without a PDF library.

/// A PDF of these objects (numbered from 1, the first the catalog), with a correct xref.
pub fn pdf_of(objects: Vec<Vec<u8>>) -> Vec<u8> {
    let mut pdf = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (index, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", index + 1).as_bytes());
        pdf.extend_from_slice(body);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1).as_bytes(),
    );
    for offset in &offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            offsets.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// A stream object: its dictionary entries (without `/Length`) and its data.
pub fn stream(dictionary: &str, data: &[u8]) -> Vec<u8> {
    let mut object = format!("<< {dictionary} /Length {} >>\nstream\n", data.len()).into_bytes();
    object.extend_from_slice(data);
    object.extend_from_slice(b"\nendstream");
    object
}

/// A manual of `pages` pages of text, each also drawing a photo of `image_bytes` bytes of
/// incompressible RGB pixels (from `noise`, called once per page with a buffer to fill): the
/// shape of a scanned-photo-heavy manual whose size is mostly images, as large ones are.
pub fn illustrated_manual(
    pages: usize,
    image_bytes: usize,
    mut noise: impl FnMut(&mut [u8]),
) -> Vec<u8> {
    // Objects: 1 catalog, 2 page tree, 3 font, then per page: page, content, image.
    let side = ((image_bytes / 3) as f64).sqrt().max(1.0) as usize;
    let kids: Vec<String> = (0..pages).map(|n| format!("{} 0 R", 4 + 3 * n)).collect();
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            kids.join(" ")
        )
        .into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    let mut pixels = vec![0u8; side * side * 3];
    for n in 0..pages {
        let page = 4 + 3 * n;
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> /XObject << /Im1 {} 0 R >> >> /Contents {} 0 R >>",
                page + 2,
                page + 1
            )
            .into_bytes(),
        );
        let mut text = format!(
            "BT /F1 14 Tf 72 740 Td (Chapter {} - Cleaning the water tank) Tj ET\n",
            n + 1
        );
        for line in 0..30 {
            text.push_str(&format!(
                "BT /F1 10 Tf 72 {} Td (Step {line}: empty the tank, rinse it with warm water and let it dry before you refit it.) Tj ET\n",
                700 - 12 * line
            ));
        }
        text.push_str("q 200 0 0 200 350 40 cm /Im1 Do Q\n");
        objects.push(stream("", text.as_bytes()));
        noise(&mut pixels);
        objects.push(stream(
            &format!(
                "/Type /XObject /Subtype /Image /Width {side} /Height {side} /ColorSpace /DeviceRGB /BitsPerComponent 8"
            ),
            &pixels,
        ));
    }
    pdf_of(objects)
}
