//! The device a question is about, and whether the user's manuals are about it. "How do I set
//! the clock on my oven?" asked of a dishwasher manual that says "oven" once ("do not use oven
//! cleaners") is about something else; answered from a clock page of another manual it would be
//! confidently wrong.

use std::collections::HashSet;

use super::TermWeights;

/// Words that open a noun phrase naming a thing.
const DETERMINERS: &[&str] = &["my", "the", "your", "our", "this"];
/// Words that attach a thing to the rest of the question ("the clock on my oven").
const PREPOSITIONS: &[&str] = &["on", "in", "of", "for", "with", "from", "into", "inside"];
/// A device that ends the question must occur in at least this many passages for the manuals
/// to be about it.
const MENTIONS_MIN: usize = 2;
/// Longer phrases are not taken apart: without grammar, the head noun is not known.
const PHRASE_WORDS_MAX: usize = 3;

/// The device the question names — after "my" anywhere ("my oven"), or in the phrase that ends
/// the question after a preposition ("the lint filter of the dryer?") — when the user's manuals
/// mention none of its words in [`MENTIONS_MIN`] passages (a device earlier in the question: in
/// one). Any word counts, as the head noun is not known: "my printer quickly" names a printer.
pub(super) fn unmentioned_device<'q>(
    question: &'q str,
    framing: &HashSet<String>,
    weights: &dyn TermWeights,
) -> Option<&'q str> {
    let words: Vec<&str> = question.split_whitespace().collect();
    let bare = |word: &str| {
        word.trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase()
    };
    for (position, word) in words.iter().enumerate() {
        let word = bare(word);
        let start = if word == "my" {
            position + 1
        } else if PREPOSITIONS.contains(&word.as_str())
            && words
                .get(position + 1)
                .is_some_and(|next| DETERMINERS.contains(&bare(next).as_str()))
        {
            position + 2
        } else {
            continue;
        };
        let Some((phrase, ends_question)) =
            device_phrase(&words[start.min(words.len())..], framing, weights)
        else {
            continue;
        };
        if word != "my" && !ends_question {
            continue;
        }
        // "my printouts are faint" names no device: away from the end, only a word no manual
        // has at all counts.
        let mentions_min = if ends_question { MENTIONS_MIN } else { 1 };
        let terms: Vec<String> = phrase
            .iter()
            .flat_map(|word| weights.terms(word))
            .filter(|term| term.chars().count() >= 2 && !framing.contains(term))
            .collect();
        if !terms.is_empty()
            && terms
                .iter()
                .all(|term| weights.passages_with(term) < mentions_min)
        {
            return phrase
                .last()
                .map(|word| word.trim_matches(|c: char| !c.is_alphanumeric()));
        }
    }
    None
}

/// The noun phrase at the start of `words` (up to a framing word or punctuation), and whether
/// it ends the question. `None` for an empty or long phrase.
fn device_phrase<'w, 'q>(
    words: &'w [&'q str],
    framing: &HashSet<String>,
    weights: &dyn TermWeights,
) -> Option<(&'w [&'q str], bool)> {
    for (count, word) in words.iter().enumerate() {
        let is_framing = weights
            .terms(word)
            .iter()
            .all(|term| framing.contains(term));
        if is_framing {
            return (count > 0).then(|| (&words[..count], false));
        }
        if count == PHRASE_WORDS_MAX {
            return None;
        }
        let phrase = &words[..=count];
        if word.ends_with([',', ';', ':']) {
            return Some((phrase, false));
        }
        if word.ends_with(['?', '.', '!']) {
            return Some((phrase, count + 1 == words.len()));
        }
    }
    (!words.is_empty()).then_some((words, true))
}
