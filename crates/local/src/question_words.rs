//! Words people ask with that manuals say otherwise: "how heavy is it?" is answered by the
//! "Weight" line of the specifications, "how many place settings fit?" by its "Capacity".
//! Neither the lexical ranking (no shared word) nor a small embedding model reliably connects
//! them, so retrieval also looks for the manual's word, and a passage holding it counts as
//! holding the question's.

/// A question's word (lower case, as written) and the words manuals use for it. Only words
/// whose manual counterpart is near certain: measures and specifications.
const SAID_IN_MANUALS_AS: &[(&str, &[&str])] = &[
    ("heavy", &["weight"]),
    ("weigh", &["weight"]),
    ("weighs", &["weight"]),
    ("big", &["dimensions", "size"]),
    ("large", &["dimensions", "size"]),
    ("tall", &["height", "dimensions"]),
    ("wide", &["width", "dimensions"]),
    ("loud", &["noise"]),
    ("noisy", &["noise"]),
    ("fit", &["capacity"]),
    ("hold", &["capacity"]),
    ("hot", &["temperature"]),
];

/// The question's words found in the table, each with the words manuals use for it.
pub fn manual_words_for(question: &str) -> Vec<(&'static str, &'static [&'static str])> {
    let mut found: Vec<(&'static str, &'static [&'static str])> = Vec::new();
    for word in question
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
    {
        if let Some(&(asked, said)) = SAID_IN_MANUALS_AS.iter().find(|(asked, _)| *asked == word)
            && !found.iter().any(|(known, _)| *known == asked)
        {
            found.push((asked, said));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measure_asked_for_is_looked_up_by_its_specification_name() {
        assert_eq!(
            manual_words_for("How heavy is the Acme LaserJet 200?"),
            vec![("heavy", &["weight"][..])]
        );
        assert_eq!(
            manual_words_for("How many place settings FIT in the dishwasher? Will they fit?"),
            vec![("fit", &["capacity"][..])]
        );
    }

    #[test]
    fn other_questions_are_left_as_asked() {
        assert!(manual_words_for("How do I descale the espresso machine?").is_empty());
        // Whole words only: "heavyweight" and "outfit" are not the words of the table.
        assert!(manual_words_for("Is the heavyweight outfit included?").is_empty());
    }
}
