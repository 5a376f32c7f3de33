//! The shapes of manual text, for the chunker ([`crate::chunk`]) and the extractive answerer
//! ([`crate::answer`]) alike: sentences, list items and where a list ends, and headings.
//! Both read the same manuals, so they must agree on what a list or a heading is; where they
//! need different answers (a heading while chunking a page, a title above a step list in a
//! passage), the two rules sit side by side here with the difference named.

pub(crate) mod lists;
pub(crate) mod sentences;

pub(crate) use lists::{Marker, list_end, list_marker, strip_marker};
pub(crate) use sentences::split_sentences;

/// A heading has at most this many words.
pub(crate) const HEADING_MAX_WORDS: usize = 10;

pub(crate) fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Whether a line ends as a sentence or a clause does (closing quotes and brackets aside).
pub(crate) fn ends_with_terminal(s: &str) -> bool {
    s.trim_end_matches(['"', '\'', ')', ']', '”', '’', '*'])
        .ends_with(['.', '!', '?', ';', ':', ',', '…', '。'])
}

pub(crate) fn is_table_row(s: &str) -> bool {
    s.starts_with('|')
}

/// A line of page text that heads a section, for the chunker: short, starting with a capital
/// or a digit ("3. Replacing the cartridge" after its marker is stripped elsewhere), not
/// ending as a sentence or with a hyphen, and neither a list item nor a table row.
pub(crate) fn looks_like_heading(s: &str) -> bool {
    let words = word_count(s);
    let starts_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit());
    (1..=HEADING_MAX_WORDS).contains(&words)
        && starts_ok
        && s.chars().any(char::is_alphabetic)
        && !ends_with_terminal(s)
        && !s.ends_with('-')
        && list_marker(s).is_none()
        && !is_table_row(s)
}

/// A line of a passage that titles what follows it, for the answerer (the heading above a step
/// list, the line that ends a list): like [`looks_like_heading`] but any line not starting in
/// lower case counts ("(Optional) settings"), and a colon disqualifies it: in a passage,
/// "Warranty: 2 years" is a fact, not a heading.
pub(crate) fn looks_like_title(s: &str) -> bool {
    (1..=HEADING_MAX_WORDS).contains(&word_count(s))
        && s.chars().next().is_some_and(|c| !c.is_lowercase())
        && s.chars().any(char::is_alphabetic)
        && !ends_with_terminal(s)
        && !s.contains(':')
        && list_marker(s).is_none()
        && !is_table_row(s)
}
