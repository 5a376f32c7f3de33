//! List items and where a list ends: `1.`, `(2)`, `Step 3:`, `a)`, bullets.

/// How far a list may be interrupted by plain lines before its next item and still continue.
const CONTINUATION_MAX_WORDS: usize = 80;
const CONTINUATION_MAX_LINES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    Num(u32),
    Step(u32),
    Letter(u32),
    Bullet,
}

impl Marker {
    pub(crate) fn is_numbered(self) -> bool {
        matches!(self, Marker::Num(_) | Marker::Step(_))
    }

    pub(crate) fn starts_list(self) -> bool {
        !matches!(self, Marker::Bullet)
    }

    pub(crate) fn same_family(self, other: Marker) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }

    pub(crate) fn follows(self, prev: Marker) -> bool {
        match (prev, self) {
            (Marker::Num(a), Marker::Num(b))
            | (Marker::Step(a), Marker::Step(b))
            | (Marker::Letter(a), Marker::Letter(b)) => b == a.saturating_add(1),
            _ => false,
        }
    }
}

/// The list marker a line starts with, if any.
pub(crate) fn list_marker(s: &str) -> Option<Marker> {
    marker_split(s).map(|(m, _)| m)
}

/// The marker and the text after it.
pub(crate) fn marker_split(s: &str) -> Option<(Marker, &str)> {
    let mut chars = s.chars();
    let first = chars.next()?;
    let second = chars.next();
    if matches!(
        first,
        '•' | '▪' | '◦' | '‣' | '●' | '○' | '■' | '□' | '·' | '►' | '✓'
    ) {
        return Some((
            Marker::Bullet,
            s.get(first.len_utf8()..).unwrap_or("").trim_start(),
        ));
    }
    if matches!(first, '-' | '*' | '+' | '–' | '—') {
        let rest = s.get(first.len_utf8()..).unwrap_or("");
        return (second == Some(' ') && rest.trim_start().chars().next().is_some())
            .then(|| (Marker::Bullet, rest.trim_start()));
    }
    if s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("step")) {
        let after_word = s.get(4..).unwrap_or("");
        let rest = after_word.trim_start();
        if rest.len() < after_word.len() || rest.starts_with(|c: char| c.is_ascii_digit()) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if (1..=3).contains(&digits.len()) {
                let after = rest.get(digits.len()..).unwrap_or("");
                let ok = after.is_empty()
                    || after.starts_with([' ', '.', ':', ')', '-', '–'].as_slice());
                if ok {
                    let text = after
                        .trim_start_matches(['.', ':', ')', '-', '–'])
                        .trim_start();
                    return digits.parse().ok().map(|n| (Marker::Step(n), text));
                }
            }
        }
        return None;
    }
    let (body, paren) = match s.strip_prefix('(') {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    let digits: String = body.chars().take_while(char::is_ascii_digit).collect();
    if (1..=3).contains(&digits.len()) {
        let after = body.get(digits.len()..).unwrap_or("");
        let closed = if paren {
            after.strip_prefix(')')
        } else {
            after.strip_prefix('.').or_else(|| after.strip_prefix(')'))
        };
        return match closed {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => digits
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .map(|n| (Marker::Num(n), rest.trim_start())),
            _ => None,
        };
    }
    if first.is_ascii_alphabetic() && !paren {
        let closer = second?;
        let ok_closer = closer == ')' || (closer == '.' && first.is_ascii_lowercase());
        let rest = s.get(2..).unwrap_or("");
        if ok_closer && rest.starts_with(' ') && rest.len() > 1 {
            let idx = u32::from(first.to_ascii_lowercase()) - u32::from('a') + 1;
            return Some((Marker::Letter(idx), rest.trim_start()));
        }
    }
    None
}

pub(crate) fn strip_marker(line: &str) -> &str {
    marker_split(line).map_or(line, |(_, rest)| rest)
}

/// Exclusive end of the list whose first item is `lines[start]`: items in sequence, sub-items
/// (other markers), up to [`CONTINUATION_MAX_LINES`] short lines between two items, and after
/// the last item the lines `glued` to it (for the chunker, text lines without a blank line
/// before them; for the answerer, such lines up to a title). A numbered item out of sequence,
/// or a new list of the first item's kind, ends it.
pub(crate) fn list_end<L>(
    lines: &[L],
    start: usize,
    text: impl Fn(&L) -> &str,
    glued: impl Fn(&L) -> bool,
) -> usize {
    let Some(first) = list_marker(text(&lines[start])) else {
        return start + 1;
    };
    let mut last = first;
    let mut j = start + 1;
    let mut end = j;
    while j < lines.len() {
        match list_marker(text(&lines[j])) {
            Some(m) if m.follows(last) => {
                last = m;
                j += 1;
                end = j;
            }
            Some(m) if m.starts_list() && m.same_family(first) => break,
            Some(m) if m.is_numbered() => break,
            Some(_) => {
                j += 1;
                end = j;
            }
            None => {
                let mut k = j;
                let mut words = 0;
                while k < lines.len()
                    && k - j < CONTINUATION_MAX_LINES
                    && list_marker(text(&lines[k])).is_none()
                {
                    words += super::word_count(text(&lines[k]));
                    k += 1;
                }
                let resumes = k < lines.len()
                    && words <= CONTINUATION_MAX_WORDS
                    && list_marker(text(&lines[k])).is_some_and(|m| m.follows(last));
                if resumes {
                    j = k;
                    continue;
                }
                let mut t = j;
                while t < lines.len() && glued(&lines[t]) {
                    t += 1;
                }
                end = t;
                break;
            }
        }
    }
    end
}
