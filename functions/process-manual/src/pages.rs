//! Pages for text manuals. A PDF has real pages; a Markdown or plain-text manual is split into
//! sections at its headings (or at form feeds), so a citation's "page" points at one section.

use manuel_core::domain::DocumentKind;

use crate::content::is_atx_heading;

/// Sections shorter than this are merged into the next one, so a page is never just a heading.
const MIN_PAGE_WORDS: usize = 40;
/// Longer sections are split at paragraph boundaries.
const MAX_PAGE_WORDS: usize = 600;

pub fn split_text_pages(kind: DocumentKind, text: &str) -> Vec<String> {
    let text = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .replace("\r\n", "\n");
    if text.contains('\x0c') {
        return text
            .split('\x0c')
            .map(|page| page.trim().to_owned())
            .collect();
    }
    let sections = split_at_headings(kind, &text);
    let merged = merge_short(sections);
    merged
        .into_iter()
        .flat_map(|section| split_long(&section))
        .filter(|page| !page.trim().is_empty())
        .collect()
}

fn split_at_headings(kind: DocumentKind, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut sections: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_fence = false;
    for (index, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        let next = lines.get(index + 1).map(|next| next.trim()).unwrap_or("");
        let starts_section = !in_fence
            && ((kind == DocumentKind::Markdown && is_major_atx_heading(line))
                || (!line.trim().is_empty() && is_setext_underline(next)));
        if starts_section && !current.trim().is_empty() {
            sections.push(std::mem::take(&mut current));
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        sections.push(current);
    }
    sections
}

fn is_major_atx_heading(line: &str) -> bool {
    is_atx_heading(line.trim_end()) && !line.starts_with("###")
}

fn is_setext_underline(line: &str) -> bool {
    line.len() >= 3 && (line.chars().all(|c| c == '=') || line.chars().all(|c| c == '-'))
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

fn merge_short(sections: Vec<String>) -> Vec<String> {
    let mut merged: Vec<String> = Vec::new();
    let mut pending = String::new();
    for section in sections {
        pending.push_str(&section);
        if word_count(&pending) >= MIN_PAGE_WORDS {
            merged.push(std::mem::take(&mut pending));
        } else if !pending.ends_with("\n\n") {
            pending.push('\n');
        }
    }
    if !pending.trim().is_empty() {
        match merged.last_mut() {
            Some(last) if word_count(&pending) < MIN_PAGE_WORDS => last.push_str(&pending),
            _ => merged.push(pending),
        }
    }
    merged
}

fn split_long(section: &str) -> Vec<String> {
    if word_count(section) <= MAX_PAGE_WORDS {
        return vec![section.trim().to_owned()];
    }
    let mut pages = Vec::new();
    let mut current = String::new();
    for paragraph in section.split("\n\n") {
        if !current.is_empty() && word_count(&current) + word_count(paragraph) > MAX_PAGE_WORDS {
            pages.push(current.trim().to_owned());
            current.clear();
        }
        current.push_str(paragraph);
        current.push_str("\n\n");
    }
    if !current.trim().is_empty() {
        pages.push(current.trim().to_owned());
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filler(words: usize) -> String {
        vec!["word"; words].join(" ")
    }

    #[test]
    fn markdown_is_split_at_top_level_headings() {
        let text = format!(
            "# Manual\n\n{}\n\n## Descaling\n\n1. Fill the tank.\n2. Press start.\n{}\n\n### Detail\n\n{}\n\n## Warranty\n\n{}\n",
            filler(50),
            filler(50),
            filler(10),
            filler(50)
        );
        let pages = split_text_pages(DocumentKind::Markdown, &text);
        assert_eq!(pages.len(), 3, "{pages:#?}");
        assert!(pages[1].starts_with("## Descaling"));
        assert!(pages[1].contains("### Detail"));
        assert!(pages[2].starts_with("## Warranty"));
    }

    #[test]
    fn short_sections_merge_and_long_ones_split() {
        let text = format!(
            "# A\nshort\n\n# B\n{}\n\n# C\n{}\n\n{}\n",
            filler(45),
            filler(400),
            filler(400)
        );
        let pages = split_text_pages(DocumentKind::Markdown, &text);
        assert_eq!(pages.len(), 3, "{pages:#?}");
        assert!(pages[0].contains("# A") && pages[0].contains("# B"));
    }

    #[test]
    fn form_feeds_are_page_breaks_in_plain_text() {
        let pages = split_text_pages(DocumentKind::Text, "one\x0ctwo\x0cthree");
        assert_eq!(pages, vec!["one", "two", "three"]);
    }

    #[test]
    fn plain_text_splits_at_underlined_headings() {
        let text = format!(
            "Reset\n=====\n{}\n\nWifi\n----\n{}\n",
            filler(60),
            filler(60)
        );
        let pages = split_text_pages(DocumentKind::Text, &text);
        assert_eq!(pages.len(), 2);
        assert!(pages[1].starts_with("Wifi"));
    }
}
