//! The prompt that primes Whisper with the speaker's manuals: the words of those manuals the
//! recogniser finds unusual — words its tokenizer splits into several pieces ("descaling",
//! "BrewMaster", "avrdude") — most frequent first. Common words are left out: Whisper hears
//! them well already, and they would crowd out the ones it mishears. (Manual names were tried
//! too: their common words — "router", "printer" — pulled other questions towards them.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use manuel_core::domain::UserId;

/// How often each word occurs in a speaker's manuals, as the index shares it: a new map when
/// a manual is added or removed.
pub type WordCounts = Arc<HashMap<String, usize>>;

/// What is made from each speaker's word counts (the prompt, the speller), kept until the counts
/// change: making it measures thousands of words with the tokenizer (about half a second in a
/// dev build), and the counts change only when a manual is added or removed.
pub struct PerSpeaker<T: ?Sized>(Mutex<HashMap<UserId, (WordCounts, Arc<T>)>>);

impl<T: ?Sized> Default for PerSpeaker<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: ?Sized> PerSpeaker<T> {
    /// What was made for `user` if it was made from these very counts.
    pub fn made_from(&self, user: &UserId, words: &WordCounts) -> Option<Arc<T>> {
        let kept = self.0.lock().ok()?;
        let (made_from, made) = kept.get(user)?;
        Arc::ptr_eq(made_from, words).then(|| Arc::clone(made))
    }

    pub fn remember(&self, user: &UserId, words: WordCounts, made: Arc<T>) {
        if let Ok(mut kept) = self.0.lock() {
            kept.insert(user.clone(), (words, made));
        }
    }
}

/// The words of a speaker's manuals as the decoder is told them and as a transcript is
/// respelled with them.
pub struct ManualVocabulary {
    pub prompt: String,
    pub speller: Speller,
}

/// Shorter words are rarely the ones misheard, and often abbreviations.
const MIN_LETTERS: usize = 4;
/// A word must occur this often to be worth a place.
const MIN_OCCURRENCES: usize = 2;

/// The unusual words, comma-separated, in at most `max_tokens` tokens as `token_count` counts
/// them; empty when there are none.
pub fn prompt(
    word_counts: &HashMap<String, usize>,
    max_tokens: usize,
    token_count: impl Fn(&str) -> usize,
) -> String {
    let mut used = 0;
    let words = by_lower_case(word_counts.iter().filter(|(word, _)| {
        word.chars().count() >= MIN_LETTERS
            && word.chars().all(char::is_alphabetic)
            // A word in capitals is usually a heading's common word ("NOTES").
            && !word.chars().all(char::is_uppercase)
    }));
    let mut candidates: Vec<(usize, &str)> = words
        .into_values()
        .filter(|(count, _)| *count >= MIN_OCCURRENCES)
        .filter(|(_, spelling)| token_count(&format!(" {}", spelling.to_lowercase())) >= 2)
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut glossary = Vec::new();
    for (_, word) in candidates {
        let cost = token_count(&format!(" {word},"));
        if used + cost > max_tokens {
            continue;
        }
        used += cost;
        glossary.push(word.to_owned());
    }
    if glossary.is_empty() {
        String::new()
    } else {
        format!("{}.", glossary.join(", "))
    }
}

/// Respells a transcript: each word the recogniser found unusual (several tokens) and none of the
/// speaker's manuals contains respelled as the manual word it nearly is ("avitude" →
/// "avrdude"): same first letter, at most a third of its letters different. Whisper hears
/// common words well; an unusual word missing from every manual is most likely a product word
/// misheard, and left as it is the question is refused for naming something no manual
/// mentions.
pub struct Speller {
    /// Alphabetic manual words by lower case: their count and most frequent spelling.
    vocabulary: HashMap<String, (usize, String)>,
}

impl Speller {
    pub fn new(word_counts: &HashMap<String, usize>) -> Self {
        let vocabulary = by_lower_case(
            word_counts
                .iter()
                .filter(|(word, _)| word.chars().all(char::is_alphabetic)),
        )
        .into_iter()
        .map(|(lower, (count, spelling))| (lower, (count, spelling.to_owned())))
        .collect();
        Self { vocabulary }
    }

    pub fn respell(&self, transcript: &str, token_count: impl Fn(&str) -> usize) -> String {
        let vocabulary = &self.vocabulary;
        let respelled: Vec<String> = transcript
            .split(' ')
            .map(|token| {
                let word = token.trim_matches(|c: char| !c.is_alphanumeric());
                let lower = word.to_lowercase();
                let unusual = word.chars().count() >= MIN_LETTERS
                    && word.chars().all(char::is_alphabetic)
                    && !vocabulary.contains_key(&lower)
                    && token_count(&format!(" {lower}")) >= 2;
                if !unusual {
                    return token.to_owned();
                }
                let letters = lower.chars().count();
                let first = lower.chars().next();
                let nearest = vocabulary
                    .iter()
                    .filter(|(known, (count, _))| {
                        *count >= MIN_OCCURRENCES
                            && known.chars().next() == first
                            && known.chars().count().abs_diff(letters) <= 2
                    })
                    .map(|(known, (count, spelling))| {
                        (
                            strsim::levenshtein(known, &lower),
                            *count,
                            spelling.as_str(),
                        )
                    })
                    .filter(|(distance, _, _)| *distance * 3 <= letters)
                    .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
                match nearest {
                    Some((_, _, spelling)) => token.replacen(word, spelling, 1),
                    None => token.to_owned(),
                }
            })
            .collect();
        respelled.join(" ")
    }
}

#[cfg(test)]
fn respell(
    transcript: &str,
    word_counts: &HashMap<String, usize>,
    token_count: impl Fn(&str) -> usize,
) -> String {
    Speller::new(word_counts).respell(transcript, token_count)
}

/// Case variants as one word, by lower case: their count together, and the spelling used
/// most often.
fn by_lower_case<'a>(
    word_counts: impl Iterator<Item = (&'a String, &'a usize)>,
) -> HashMap<String, (usize, &'a str)> {
    let mut words: HashMap<String, (usize, &str, usize)> = HashMap::new();
    for (word, &count) in word_counts {
        let entry = words.entry(word.to_lowercase()).or_insert((0, word, 0));
        entry.0 += count;
        if count > entry.2 {
            entry.1 = word;
            entry.2 = count;
        }
    }
    words
        .into_iter()
        .map(|(lower, (count, spelling, _))| (lower, (count, spelling)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in tokenizer: common words are one token, others one per three letters.
    fn tokens(text: &str) -> usize {
        const COMMON: [&str; 6] = ["machine", "water", "light", "press", "coffee", "button"];
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
            .map(|word| {
                if COMMON.contains(&word.to_lowercase().as_str()) {
                    1
                } else {
                    word.len().div_ceil(3)
                }
            })
            .sum()
    }

    fn counts(words: &[(&str, usize)]) -> HashMap<String, usize> {
        words
            .iter()
            .map(|(word, count)| ((*word).to_owned(), *count))
            .collect()
    }

    #[test]
    fn unusual_frequent_words_come_first_and_common_ones_not_at_all() {
        let counts = counts(&[
            ("descaling", 9),
            ("Descaling", 3),
            ("machine", 40),
            ("frother", 5),
            ("BrewMaster", 4),
            ("zyx", 30),
            ("BM3000", 8),
            ("once", 1),
            ("carafes", 1),
            ("NOTES", 6),
        ]);
        let prompt = prompt(&counts, 100, tokens);
        assert_eq!(prompt, "descaling, frother, BrewMaster.");
    }

    #[test]
    fn the_prompt_stays_within_its_token_budget() {
        let counts = counts(&[("descaling", 9), ("frother", 5), ("BrewMaster", 4)]);
        let prompt = prompt(&counts, 6, tokens);
        assert_eq!(prompt, "descaling, frother.");
        assert!(tokens(&prompt) <= 6);
        assert_eq!(super::prompt(&HashMap::new(), 6, tokens), "");
    }

    #[test]
    fn a_misheard_product_word_is_respelled_as_the_manuals_spell_it() {
        let counts = counts(&[
            ("avrdude", 40),
            ("AVRDUDE", 3),
            ("programmer", 12),
            ("fuse", 9),
            ("descaling", 9),
        ]);
        assert_eq!(
            respell("What was avitude called originally?", &counts, tokens),
            "What was avrdude called originally?"
        );
        assert_eq!(respell("The fuze blew.", &counts, tokens), "The fuse blew.");
        // A word the manuals contain, a common word, a short one, one too far from any manual
        // word: as heard.
        for heard in [
            "Which programmer, please?",
            "My machine hums.",
            "The fus blew.",
            "Is avocado supported?",
        ] {
            assert_eq!(respell(heard, &counts, tokens), heard);
        }
    }

    #[test]
    fn a_prompt_is_reused_until_the_speakers_manuals_change() {
        let prompts = PerSpeaker::<str>::default();
        let ada = UserId::parse("ada").expect("a valid subject");
        let bob = UserId::parse("bob").expect("a valid subject");
        let words: WordCounts = Arc::new(counts(&[("descaling", 9)]));
        assert_eq!(prompts.made_from(&ada, &words), None);

        prompts.remember(&ada, Arc::clone(&words), "descaling.".into());
        assert_eq!(
            prompts.made_from(&ada, &words).as_deref(),
            Some("descaling.")
        );
        assert_eq!(prompts.made_from(&bob, &words), None);

        // A manual added: the index shares new counts, equal or not.
        let after_upload: WordCounts = Arc::new(counts(&[("descaling", 9)]));
        assert_eq!(prompts.made_from(&ada, &after_upload), None);
    }
}
