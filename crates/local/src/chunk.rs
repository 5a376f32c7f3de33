//! Turns page texts into retrieval chunks.
//!
//! pdfium hands us hard-wrapped lines with hyphenated breaks; Markdown and plain
//! text manuals come as long lines with blank-line paragraphs. Both are first
//! normalised into one line per paragraph / list item / heading, then packed into
//! chunks sized for BM25 retrieval. Step lists are kept whole because the answerer
//! quotes them verbatim, and headings travel with the text below them because
//! their words are often exactly what users type ("replacing the ink cartridge").

use crate::text::{
    Marker, ends_with_terminal, is_table_row, list_end, list_marker, looks_like_heading,
    split_sentences, word_count,
};

/// One retrieval unit; never spans pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 1-based page number (or section number for text manuals).
    pub page: u32,
    pub text: String,
}

/// Above this a chunk dilutes BM25 scores and makes extracted answers wander.
const MAX_WORDS: usize = 220;
/// A step list is only cut when it alone is larger than this; a half list is a wrong answer.
const MAX_LIST_WORDS: usize = 600;
/// A heading starts a new chunk only if the current one already has this much text,
/// so that tiny sections still get merged into something retrievable.
const HEADING_BREAK_WORDS: usize = 40;
/// A short paragraph ending in ':' introduces whatever follows and must stay with it.
const LEAD_MAX_WORDS: usize = 60;
/// pages[i] is the text of page i+1.
pub fn chunk_pages(pages: &[String]) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for (i, raw) in pages.iter().enumerate() {
        let page = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let lines = normalise_lines(raw);
        let units = build_units(&lines);
        let groups = build_groups(units);
        for text in pack(groups) {
            chunks.push(Chunk { page, text });
        }
    }
    chunks
}

/// Normalised text: one line per paragraph, list item or heading, blank lines
/// between paragraphs, single spaces, no control characters.
pub fn normalise_page_text(raw: &str) -> String {
    let mut out = String::new();
    for line in normalise_lines(raw) {
        if !out.is_empty() {
            out.push('\n');
        }
        if line.kind != Kind::Blank {
            out.push_str(&line.text);
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Heading,
    Item,
    Text,
}

#[derive(Debug, Clone)]
struct Line {
    text: String,
    kind: Kind,
}

impl Line {
    fn blank() -> Self {
        Line {
            text: String::new(),
            kind: Kind::Blank,
        }
    }
}

fn normalise_lines(raw: &str) -> Vec<Line> {
    let cleaned = clean_chars(raw);
    let mut pre: Vec<Line> = Vec::new();
    for raw_line in cleaned.split('\n') {
        let collapsed = collapse_spaces(raw_line);
        if collapsed.is_empty() {
            pre.push(Line::blank());
            continue;
        }
        if is_rule(&collapsed) {
            // Setext headings: "Title\n=====" / "Title\n-----".
            let setext = collapsed.starts_with('=') || collapsed.starts_with('-');
            if setext
                && let Some(prev) = pre.last_mut()
                && prev.kind == Kind::Text
            {
                prev.kind = Kind::Heading;
            }
            pre.push(Line::blank());
            continue;
        }
        let (text, md_heading) = strip_markdown(&collapsed);
        if text.is_empty() {
            pre.push(Line::blank());
            continue;
        }
        let kind = if md_heading {
            Kind::Heading
        } else if list_marker(&text).is_some() {
            Kind::Item
        } else {
            Kind::Text
        };
        pre.push(Line { text, kind });
    }

    let max_len = pre
        .iter()
        .map(|l| l.text.chars().count())
        .max()
        .unwrap_or(0);

    let mut out: Vec<Line> = Vec::new();
    for line in pre {
        match line.kind {
            Kind::Blank => {
                if out.last().is_some_and(|l| l.kind != Kind::Blank) {
                    out.push(line);
                }
            }
            Kind::Heading => {
                if out.last().is_some_and(|l| l.kind != Kind::Blank) {
                    out.push(Line::blank());
                }
                out.push(line);
            }
            Kind::Item => out.push(line),
            Kind::Text => {
                if let Some(prev) = out.last_mut()
                    && matches!(prev.kind, Kind::Text | Kind::Item)
                    && should_join(prev, &line.text, max_len)
                {
                    join_lines(&mut prev.text, &line.text);
                } else {
                    out.push(line);
                }
            }
        }
    }
    while out.last().is_some_and(|l| l.kind == Kind::Blank) {
        out.pop();
    }

    // A short unpunctuated line is only a heading if something follows it.
    for i in 0..out.len() {
        if out[i].kind == Kind::Text
            && looks_like_heading(&out[i].text)
            && out[i + 1..].iter().any(|l| l.kind != Kind::Blank)
        {
            out[i].kind = Kind::Heading;
        }
    }
    out
}

fn clean_chars(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\n' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}' => out.push('\n'),
            // pdfium marks hyphens it generated at a line break with U+0002 / U+FFFE.
            '\u{02}' | '\u{FFFE}' => out.push('-'),
            '\u{AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' => {}
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c if c.is_whitespace() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn is_rule(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| *c != ' ').collect();
    compact.chars().count() >= 3
        && ['-', '=', '*', '_']
            .iter()
            .any(|r| compact.chars().all(|c| c == *r))
}

/// Returns the text without Markdown markup and whether it was an ATX heading.
fn strip_markdown(s: &str) -> (String, bool) {
    let mut text = s;
    let mut heading = false;
    let hashes = text.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&hashes) {
        let rest = &text[hashes..];
        if rest.is_empty() || rest.starts_with(' ') {
            heading = true;
            text = rest.trim().trim_end_matches('#').trim_end();
        }
    }
    while let Some(rest) = text.strip_prefix('>') {
        text = rest.trim_start();
    }
    let cleaned = text.replace("**", "").replace("__", "").replace('`', "");
    (collapse_spaces(&cleaned), heading)
}

fn is_all_caps(s: &str) -> bool {
    let letters: Vec<char> = s.chars().filter(|c| c.is_alphabetic()).collect();
    letters.len() >= 2 && letters.iter().all(|c| !c.is_lowercase())
}

fn should_join(prev: &Line, next: &str, max_len: usize) -> bool {
    let a = prev.text.as_str();
    if a.ends_with(':') || is_table_row(a) || is_table_row(next) {
        return false;
    }
    if next.starts_with(|c: char| c.is_lowercase()) {
        return true;
    }
    if looks_like_heading(next) && (ends_with_terminal(a) || prev.kind == Kind::Item) {
        return false;
    }
    if (is_all_caps(next) && word_count(next) <= 15) || (is_all_caps(a) && word_count(a) <= 15) {
        return false;
    }
    // Wrapped PDF lines run close to the full column width; a heading is noticeably shorter.
    let short = max_len < 40 || a.chars().count() * 4 <= max_len * 3;
    !(prev.kind == Kind::Text && looks_like_heading(a) && short)
}

fn join_lines(prev: &mut String, next: &str) {
    let hyphenated = prev.ends_with('-')
        && prev.chars().rev().nth(1).is_some_and(char::is_alphabetic)
        && next.starts_with(|c: char| c.is_lowercase());
    let compound = prev.ends_with('-')
        && prev.chars().rev().nth(1).is_some_and(char::is_alphabetic)
        && next.starts_with(char::is_uppercase);
    if hyphenated {
        prev.pop();
    } else if compound {
        // "Wi-\nFi": a hyphen before a capital is part of the word, not a line-break hyphen.
    } else {
        prev.push(' ');
    }
    prev.push_str(next);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitKind {
    Heading,
    List,
    Para,
}

#[derive(Debug, Clone)]
struct Unit {
    kind: UnitKind,
    lines: Vec<String>,
    words: usize,
}

impl Unit {
    fn new(kind: UnitKind, lines: Vec<String>) -> Self {
        let words = lines.iter().map(|l| word_count(l)).sum();
        Unit { kind, lines, words }
    }
}

fn build_units(lines: &[Line]) -> Vec<Unit> {
    // (line, preceded by a blank line)
    let mut items: Vec<(&Line, bool)> = Vec::new();
    let mut blank = false;
    for line in lines {
        if line.kind == Kind::Blank {
            blank = true;
        } else {
            items.push((line, blank));
            blank = false;
        }
    }
    let numbered = |l: &Line| list_marker(&l.text).is_some_and(Marker::is_numbered);

    let mut units = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let line = items[i].0;
        if line.kind == Kind::Heading {
            units.push(Unit::new(UnitKind::Heading, vec![line.text.clone()]));
            i += 1;
        } else if numbered(line) {
            // A list runs on through the text lines glued to its last item.
            let end = list_end(
                &items,
                i,
                |(line, _)| line.text.as_str(),
                |(line, blank_before)| !blank_before && line.kind == Kind::Text,
            );
            let text = items[i..end].iter().map(|(l, _)| l.text.clone()).collect();
            units.push(Unit::new(UnitKind::List, text));
            i = end;
        } else {
            let start = i;
            i += 1;
            while i < items.len()
                && !items[i].1
                && items[i].0.kind != Kind::Heading
                && !numbered(items[i].0)
            {
                i += 1;
            }
            let text = items[start..i]
                .iter()
                .map(|(l, _)| l.text.clone())
                .collect();
            units.push(Unit::new(UnitKind::Para, text));
        }
    }
    units
}

struct Group {
    units: Vec<Unit>,
    words: usize,
    starts_heading: bool,
    /// Set for a list that is larger than a chunk but must not be cut.
    whole_list: bool,
}

impl Group {
    fn new(units: Vec<Unit>) -> Self {
        let words = units.iter().map(|u| u.words).sum();
        let starts_heading = units.first().is_some_and(|u| u.kind == UnitKind::Heading);
        Group {
            units,
            words,
            starts_heading,
            whole_list: false,
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for unit in &self.units {
            for line in &unit.lines {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(line);
            }
        }
        out
    }
}

fn is_lead(unit: &Unit) -> bool {
    match unit.kind {
        UnitKind::Heading => true,
        UnitKind::Para => {
            unit.words <= LEAD_MAX_WORDS && unit.lines.last().is_some_and(|l| l.ends_with(':'))
        }
        UnitKind::List => false,
    }
}

fn build_groups(units: Vec<Unit>) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut leads: Vec<Unit> = Vec::new();
    for unit in units {
        if is_lead(&unit) {
            leads.push(unit);
            continue;
        }
        let lead_words: usize = leads.iter().map(|u| u.words).sum();
        if lead_words + unit.words <= MAX_WORDS {
            let mut all = std::mem::take(&mut leads);
            all.push(unit);
            groups.push(Group::new(all));
        } else if unit.kind == UnitKind::List && unit.words <= MAX_LIST_WORDS {
            let mut all = std::mem::take(&mut leads);
            all.push(unit);
            let mut group = Group::new(all);
            group.whole_list = true;
            groups.push(group);
        } else {
            let pieces = if unit.kind == UnitKind::List {
                split_list(&unit)
            } else {
                split_para(&unit)
            };
            for (n, piece) in pieces.into_iter().enumerate() {
                let mut all = if n == 0 {
                    std::mem::take(&mut leads)
                } else {
                    Vec::new()
                };
                all.push(piece);
                groups.push(Group::new(all));
            }
        }
    }
    if !leads.is_empty() {
        groups.push(Group::new(leads));
    }
    groups
}

/// Cuts an over-long list between items, never inside one.
fn split_list(unit: &Unit) -> Vec<Unit> {
    let mut items: Vec<Vec<String>> = Vec::new();
    for line in &unit.lines {
        match items.last_mut() {
            Some(item) if list_marker(line).is_none() => item.push(line.clone()),
            _ => items.push(vec![line.clone()]),
        }
    }
    let mut pieces = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut cur_words = 0;
    for item in items {
        let words: usize = item.iter().map(|l| word_count(l)).sum();
        if !cur.is_empty() && cur_words + words > MAX_WORDS {
            pieces.push(Unit::new(UnitKind::List, std::mem::take(&mut cur)));
            cur_words = 0;
        }
        cur_words += words;
        cur.extend(item);
    }
    if !cur.is_empty() {
        pieces.push(Unit::new(UnitKind::List, cur));
    }
    pieces
}

/// Cuts an over-long paragraph at sentence ends, and run-on text at word counts.
fn split_para(unit: &Unit) -> Vec<Unit> {
    let mut sentences: Vec<String> = Vec::new();
    for line in &unit.lines {
        for sentence in split_sentences(line) {
            let words: Vec<&str> = sentence.split_whitespace().collect();
            if words.len() <= MAX_WORDS {
                sentences.push(sentence.to_string());
            } else {
                sentences.extend(words.chunks(MAX_WORDS).map(|w| w.join(" ")));
            }
        }
    }
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut cur_words = 0;
    for sentence in sentences {
        let words = word_count(&sentence);
        if !cur.is_empty() && cur_words + words > MAX_WORDS {
            pieces.push(Unit::new(UnitKind::Para, vec![std::mem::take(&mut cur)]));
            cur_words = 0;
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&sentence);
        cur_words += words;
    }
    if !cur.is_empty() {
        pieces.push(Unit::new(UnitKind::Para, vec![cur]));
    }
    pieces
}

fn pack(groups: Vec<Group>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut cur_words = 0;
    for group in groups {
        let full = cur_words + group.words > MAX_WORDS;
        let at_heading = group.starts_heading && cur_words >= HEADING_BREAK_WORDS;
        if !cur.is_empty() && (full || at_heading || group.whole_list) {
            out.push(cur.join("\n\n"));
            cur.clear();
            cur_words = 0;
        }
        cur.push(group.render());
        cur_words += group.words;
        if cur_words >= MAX_WORDS {
            out.push(cur.join("\n\n"));
            cur.clear();
            cur_words = 0;
        }
    }
    if !cur.is_empty() {
        out.push(cur.join("\n\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| (*t).to_string()).collect()
    }

    #[test]
    fn joins_hyphenated_and_wrapped_lines() {
        let raw = "Before first use, complete the instal-\nlation of the printer driver and\nconnect the USB cable.\n\nThe second paragraph starts here.";
        assert_eq!(
            normalise_page_text(raw),
            "Before first use, complete the installation of the printer driver and connect the USB cable.\n\nThe second paragraph starts here."
        );
    }

    #[test]
    fn hyphen_before_uppercase_is_kept() {
        let raw = "Connect the cable to the Wi-\nFi router.";
        assert_eq!(
            normalise_page_text(raw),
            "Connect the cable to the Wi-Fi router."
        );
    }

    #[test]
    fn keeps_list_items_on_their_own_lines() {
        let raw = "Do the following:\n1. Open the cover and wait until\nthe carriage stops.\n2) Remove the tape.\nStep 3: Close the cover.\na) optional part\n- a dash bullet\n* a star bullet\n• a dot bullet";
        let norm = normalise_page_text(raw);
        let lines: Vec<&str> = norm.lines().collect();
        assert_eq!(
            lines,
            vec![
                "Do the following:",
                "1. Open the cover and wait until the carriage stops.",
                "2) Remove the tape.",
                "Step 3: Close the cover.",
                "a) optional part",
                "- a dash bullet",
                "* a star bullet",
                "• a dot bullet",
            ]
        );
    }

    #[test]
    fn removes_control_chars_and_collapses_spaces() {
        let raw = "Press\u{7}  the \t power\u{0}   button.\r\nDone.\u{FEFF}";
        assert_eq!(normalise_page_text(raw), "Press the power button. Done.");
    }

    #[test]
    fn pdfium_hyphen_marker_is_joined() {
        let raw = "Replace the car\u{2}\ntridge now.";
        assert_eq!(normalise_page_text(raw), "Replace the cartridge now.");
    }

    #[test]
    fn strips_markdown_lightly() {
        let raw = "## Descaling\n\nUse **only** the `descaler` supplied.\n> Note: keep it cool.";
        let norm = normalise_page_text(raw);
        assert_eq!(
            norm,
            "Descaling\n\nUse only the descaler supplied. Note: keep it cool."
        );
    }

    #[test]
    fn heading_not_joined_to_body_in_pdf_text() {
        let raw = "This sentence is a long wrapped line of the previous section text.\nReplacing the ink cartridge\nWhen the ink level is low, the printer shows a warning on\nthe display panel and stops printing.";
        let norm = normalise_page_text(raw);
        let lines: Vec<&str> = norm.lines().collect();
        assert_eq!(lines.len(), 3, "{norm}");
        assert_eq!(lines[1], "Replacing the ink cartridge");
    }

    #[test]
    fn empty_pages_are_skipped_and_pages_preserved() {
        let chunks = chunk_pages(&pages(&[
            "First page text.",
            "   \n\t ",
            "",
            "Fourth page text.",
        ]));
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].page, 1);
        assert_eq!(chunks[0].text, "First page text.");
        assert_eq!(chunks[1].page, 4);
        assert!(chunk_pages(&[]).is_empty());
    }

    fn filler(words: usize, tag: &str) -> String {
        let mut s = String::new();
        for i in 0..words {
            if i > 0 {
                s.push(' ');
            }
            if i % 12 == 0 {
                let mut cs = tag.chars();
                if let Some(c) = cs.next() {
                    s.extend(c.to_uppercase());
                    s.push_str(cs.as_str());
                }
            } else {
                s.push_str(tag);
            }
            if i % 12 == 11 {
                s.push('.');
            }
        }
        if !s.ends_with('.') {
            s.push('.');
        }
        s
    }

    fn nine_steps() -> String {
        let steps = [
            "Turn the printer on and open the scanner unit.",
            "Wait until the print head moves to the replacement position\nand stops completely.",
            "Press the tab on the old ink cartridge and lift it out.",
            "Shake the new cartridge gently four or five times.",
            "Remove the yellow tape from the new cartridge.",
            "Insert the new cartridge into the holder.",
            "Press down on the cartridge until it clicks into place.",
            "Close the scanner unit.",
            "Press the OK button to start charging the ink.",
        ];
        steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {s}", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn keeps_nine_step_list_intact() {
        let page = format!(
            "{}\n\nReplacing the ink cartridge\nUse genuine cartridges only. Follow these steps:\n{}\n\nCleaning the print head\n{}",
            filler(150, "intro"),
            nine_steps(),
            filler(120, "clean")
        );
        let chunks = chunk_pages(&pages(&[&page]));
        let with_list: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| c.text.contains("1. Turn"))
            .collect();
        assert_eq!(with_list.len(), 1, "{chunks:#?}");
        let text = &with_list[0].text;
        for n in 1..=9 {
            assert!(
                text.contains(&format!("\n{n}. ")),
                "step {n} missing: {text}"
            );
        }
        assert!(text.starts_with("Replacing the ink cartridge\n"), "{text}");
        assert!(text.contains("replacement position and stops completely."));
        assert!(!text.contains("intro"), "{text}");
    }

    #[test]
    fn long_list_is_kept_whole_up_to_limit() {
        let items: Vec<String> = (1..=12)
            .map(|i| format!("{i}. {}", filler(30, "word")))
            .collect();
        let page = format!("Assembling the stand\n{}", items.join("\n"));
        let chunks = chunk_pages(&pages(&[&page]));
        assert_eq!(chunks.len(), 1, "{chunks:#?}");
        assert!(chunks[0].text.contains("\n12. "));
    }

    #[test]
    fn huge_list_is_split_between_items() {
        let items: Vec<String> = (1..=30)
            .map(|i| format!("{i}. {}", filler(30, "word")))
            .collect();
        let chunks = chunk_pages(&pages(&[&items.join("\n")]));
        assert!(chunks.len() > 1);
        for c in &chunks {
            assert!(
                list_marker(&c.text).is_some(),
                "piece must start at an item: {}",
                c.text
            );
            assert!(word_count(&c.text) <= MAX_WORDS + 40);
        }
    }

    #[test]
    fn list_with_continuation_paragraph_between_items() {
        let raw = "Setup\n1. Unpack the unit.\n\nKeep the packaging for transport.\n\n2. Place it on a flat surface.\n3. Plug it in.\n\nAfter the list comes another paragraph.";
        let lines = normalise_lines(raw);
        let units = build_units(&lines);
        let list = units.iter().find(|u| u.kind == UnitKind::List);
        let Some(list) = list else {
            panic!("no list unit: {units:#?}");
        };
        assert_eq!(list.lines.len(), 4, "{list:#?}");
        assert!(list.lines[3].starts_with("3."));
    }

    #[test]
    fn headings_stay_with_following_text_and_start_chunks() {
        let page = format!(
            "## Descaling\n\n{}\n\n## Cleaning the milk frother\n\n{}",
            filler(100, "descale"),
            filler(100, "frother")
        );
        let chunks = chunk_pages(&pages(&[&page]));
        assert_eq!(chunks.len(), 2, "{chunks:#?}");
        assert!(chunks[0].text.starts_with("Descaling\n"));
        assert!(chunks[1].text.starts_with("Cleaning the milk frother\n"));
        assert!(!chunks[0].text.contains("frother"));
    }

    #[test]
    fn all_caps_heading_stays_with_text() {
        let page = format!(
            "{}\nWARRANTY\nThe warranty period is two years.",
            filler(200, "x")
        );
        let chunks = chunk_pages(&pages(&[&page]));
        let last = chunks.last().map(|c| c.text.as_str()).unwrap_or("");
        assert!(
            last.starts_with("WARRANTY\nThe warranty period"),
            "{chunks:#?}"
        );
    }

    #[test]
    fn long_paragraph_split_on_sentences_within_limits() {
        let page = filler(700, "long");
        let chunks = chunk_pages(&pages(&[&page]));
        assert!(chunks.len() >= 3);
        for c in &chunks {
            let w = word_count(&c.text);
            assert!((1..=MAX_WORDS).contains(&w), "{w}");
            assert!(c.text.ends_with('.'));
        }
    }

    #[test]
    fn run_on_text_without_punctuation_is_split() {
        let page = vec!["word"; 1000].join(" ");
        let chunks = chunk_pages(&pages(&[&page]));
        assert!(chunks.iter().all(|c| word_count(&c.text) <= MAX_WORDS));
        let total: usize = chunks.iter().map(|c| word_count(&c.text)).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn small_paragraphs_are_merged() {
        let page = "First short paragraph.\n\nSecond short paragraph.\n\nThird one.";
        let chunks = chunk_pages(&pages(&[page]));
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0].text,
            "First short paragraph.\n\nSecond short paragraph.\n\nThird one."
        );
    }

    #[test]
    fn deterministic_and_unicode_safe() {
        let page = "Überprüfen Sie den Wasserstand.\nÉtape 1 : ouvrir le couvercle…\n日本語のテキスト。次の文。\n🙂🙂 ok";
        let a = chunk_pages(&pages(&[page, page]));
        let b = chunk_pages(&pages(&[page, page]));
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn sentence_splitting_handles_abbreviations() {
        let s = "Use a mild cleaner, e.g. Dish soap. Wait approx. 2.5 minutes. See Fig. 3 and No. 4 on p. 12. Done! Really?";
        assert_eq!(
            split_sentences(s),
            vec![
                "Use a mild cleaner, e.g. Dish soap.",
                "Wait approx. 2.5 minutes.",
                "See Fig. 3 and No. 4 on p. 12.",
                "Done!",
                "Really?"
            ]
        );
    }

    #[test]
    fn marker_parsing() {
        assert_eq!(list_marker("1. Open"), Some(Marker::Num(1)));
        assert_eq!(list_marker("12) Open"), Some(Marker::Num(12)));
        assert_eq!(list_marker("(3) Open"), Some(Marker::Num(3)));
        assert_eq!(list_marker("Step 4: Open"), Some(Marker::Step(4)));
        assert_eq!(list_marker("STEP 5 Open"), Some(Marker::Step(5)));
        assert_eq!(list_marker("b) Open"), Some(Marker::Letter(2)));
        assert_eq!(list_marker("2.5 litres of water"), None);
        assert_eq!(list_marker("Steps are below"), None);
        assert_eq!(list_marker("-5 degrees"), None);
        assert_eq!(list_marker("A. Smith wrote"), None);
        assert_eq!(list_marker("1.Open"), None);
    }
}
