//! Sentence boundaries in manual text, shared by the chunker and the extractive answerer:
//! abbreviations ("e.g.", "approx."), numbered references ("No. 3", "Fig. 2"), decimals and
//! initials do not end a sentence.

/// Abbreviations that never end a sentence when followed by more text.
const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "eg", "ie", "approx", "appr", "ca", "cf", "vs", "incl", "excl", "esp", "resp",
    "mr", "mrs", "ms", "dr", "prof", "jr", "sr", "st", "inc", "ltd", "corp", "co", "dept",
];
/// Abbreviations that only precede a number ("No. 3", "Fig. 2", "p. 14").
const NUMBER_ABBREVIATIONS: &[&str] = &[
    "no", "nos", "nr", "p", "pp", "pg", "vol", "ch", "chap", "sec", "sect", "art", "ref", "tel",
    "ext", "fig", "figs", "tab", "item", "para", "pt", "model", "version", "ver", "v",
];

fn is_sentence_end(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？')
}

/// Splits one line into sentences; slices are verbatim (trimmed).
pub(crate) fn split_sentences(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        if !is_sentence_end(c) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len()
            && (is_sentence_end(chars[j].1)
                || matches!(chars[j].1, '"' | '\'' | ')' | ']' | '”' | '’' | '»'))
        {
            j += 1;
        }
        let end = chars.get(j).map_or(text.len(), |(p, _)| *p);
        let spaced = chars.get(j).is_none_or(|(_, ch)| ch.is_whitespace());
        let cjk = matches!(c, '。' | '！' | '？');
        if (spaced || cjk) && ends_sentence(text, &chars, i, j) {
            let s = text.get(start..end).unwrap_or("").trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = end;
        }
        i = j;
    }
    let rest = text.get(start..).unwrap_or("").trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Decides whether the punctuation run chars[i..j] really ends a sentence.
fn ends_sentence(text: &str, chars: &[(usize, char)], i: usize, j: usize) -> bool {
    if chars[i..j]
        .iter()
        .any(|(_, c)| matches!(c, '!' | '?' | '！' | '？' | '。'))
    {
        return true;
    }
    let Some(next) = chars[j..]
        .iter()
        .map(|(_, c)| *c)
        .find(|c| !c.is_whitespace())
    else {
        return true;
    };
    if next.is_lowercase() {
        return false;
    }
    let token_start = chars[..i]
        .iter()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(p, c)| p + c.len_utf8());
    let token = text
        .get(token_start..chars[i].0)
        .unwrap_or("")
        .trim_start_matches(['(', '"', '\'', '“', '‘', '['])
        .to_lowercase();
    if ABBREVIATIONS.contains(&token.as_str()) {
        return false;
    }
    if NUMBER_ABBREVIATIONS.contains(&token.as_str()) && next.is_ascii_digit() {
        return false;
    }
    // Initialisms like "U.S" and initials like "J" (as in "J. Smith").
    let segments: Vec<&str> = token.split('.').collect();
    if !token.is_empty() && segments.iter().all(|s| s.chars().count() == 1) {
        return !segments.iter().all(|s| s.chars().all(char::is_alphabetic));
    }
    true
}
