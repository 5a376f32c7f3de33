//! An answer's text as it is produced, for streaming: where a model hands its words
//! ([`AnswerText`]), and the shapes the text takes on the way.
//!
//! While an answer streams, its `[n]` cite the n-th passage the model was given (the order of
//! the `sources` event). The finished answer renumbers them by first use, as `/api/query` does.

/// The receiving end of a model's words. A closed channel means nobody listens any more (the
/// client went away): the model stops generating.
pub type AnswerText = tokio::sync::mpsc::Sender<String>;

/// `text` with each `[n]` (n-th entry of `cited`) written as the number of the passage it
/// cites, counted from 1. Brackets that are not a citation in range stay as they are.
pub fn passage_numbered(text: &str, cited: &[usize]) -> String {
    rewrite_citations(text, |number| {
        let passage = *cited.get(number.checked_sub(1)?)?;
        Some(Some(passage + 1))
    })
}

/// `text` with each `[n]` rewritten by `new_number(n)`: `Some(Some(m))` writes `[m]`,
/// `Some(None)` drops the citation and the space before it, `None` leaves the brackets as they
/// are (not a citation, or one out of range).
pub fn rewrite_citations(
    text: &str,
    new_number: impl Fn(usize) -> Option<Option<usize>>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let citation = after.find(']').and_then(|close| {
            let number: usize = after[..close].parse().ok()?;
            Some((close, new_number(number)?))
        });
        match citation {
            Some((close, Some(number))) => {
                out.push_str(&format!("[{number}]"));
                rest = &after[close + 1..];
            }
            Some((close, None)) => {
                let kept = out.trim_end().len();
                out.truncate(kept);
                rest = &after[close + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` cut after each sentence end or line break, whitespace kept with the piece before it:
/// the pieces joined are `text` again.
pub fn sentence_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let ends = match c {
            '\n' => true,
            // Not after a list item's number ("2. Open the lid."): it belongs to its item.
            '.' if is_item_number(&text[start..at]) => false,
            '.' | '!' | '?' => chars.peek().is_some_and(|(_, next)| next.is_whitespace()),
            _ => false,
        };
        if !ends {
            continue;
        }
        let mut end = at + c.len_utf8();
        while let Some(&(next_at, next)) = chars.peek() {
            if !next.is_whitespace() {
                break;
            }
            end = next_at + next.len_utf8();
            chars.next();
        }
        pieces.push(&text[start..end]);
        start = end;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Whether `text` is only a list item's number, as before the dot of "2. ".
fn is_item_number(text: &str) -> bool {
    let number = text.trim_start();
    !number.is_empty() && number.len() <= 3 && number.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_name_the_passages_while_streaming() {
        // The answer cites passage 3 first, then passage 1.
        assert_eq!(
            passage_numbered("Lift it [1]. Press [2][1]. [note] [7]", &[2, 0]),
            "Lift it [3]. Press [1][3]. [note] [7]"
        );
        assert_eq!(passage_numbered("x [", &[0]), "x [");
    }

    #[test]
    fn pieces_are_sentences_and_lines_and_join_back_to_the_text() {
        let text = "Open the lid [1]. Then:\n1. Press OK.\n2. Wait 2.5 s!  Done";
        let pieces = sentence_pieces(text);
        assert_eq!(
            pieces,
            [
                "Open the lid [1]. ",
                "Then:\n",
                "1. Press OK.\n",
                "2. Wait 2.5 s!  ",
                "Done"
            ]
        );
        assert_eq!(pieces.concat(), text);
        assert!(sentence_pieces("").is_empty());
    }
}
