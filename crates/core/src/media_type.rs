//! Declared media types (`Content-Type`, a request's `content_type`), compared by their essence.

/// The essence of a media type: the type and subtype in lower case, parameters dropped
/// (`"Audio/WAV; codecs=1"` → `"audio/wav"`). Empty for an empty or blank declaration.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::essence;

    #[test]
    fn parameters_and_case_do_not_change_the_type() {
        assert_eq!(essence("Audio/WAV; codecs=1"), "audio/wav");
        assert_eq!(essence(" application/pdf "), "application/pdf");
        assert_eq!(essence("text/plain;charset=utf-8"), "text/plain");
        assert_eq!(essence(""), "");
        assert_eq!(essence("  ;x=y"), "");
    }
}
