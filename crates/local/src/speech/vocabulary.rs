//! The prompt that primes Whisper with the speaker's manuals: the words of those manuals the
//! recogniser finds unusual — words its tokenizer splits into several pieces ("descaling",
//! "BrewMaster", "avrdude") — most frequent first. Common words are left out: Whisper hears
//! them well already, and they would crowd out the ones it mishears. (Manual names were tried
//! too: their common words — "router", "printer" — pulled other questions towards them.)

use std::collections::HashMap;

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
    // Case variants are one word, spelled its most frequent way.
    let mut words: HashMap<String, (usize, &str, usize)> = HashMap::new();
    for (word, &count) in word_counts {
        if word.chars().count() < MIN_LETTERS || !word.chars().all(char::is_alphabetic) {
            continue;
        }
        // A word in capitals is usually a heading's common word ("NOTES").
        if word.chars().all(char::is_uppercase) {
            continue;
        }
        let entry = words.entry(word.to_lowercase()).or_insert((0, word, 0));
        entry.0 += count;
        if count > entry.2 {
            entry.1 = word;
            entry.2 = count;
        }
    }
    let mut candidates: Vec<(usize, &str)> = words
        .into_values()
        .filter(|(count, _, _)| *count >= MIN_OCCURRENCES)
        .map(|(count, spelling, _)| (count, spelling))
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
}
