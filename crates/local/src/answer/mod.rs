//! Extractive answers from retrieved manual passages.
//!
//! Nothing here generates language: every answer is either sentences or a step
//! list copied verbatim from the passages (with [n] citations), a fixed framing
//! line ("Steps:"), or a fixed refusal. BM25 always returns *something*, so the
//! relevance gate matters more than the ranking: a confident wrong answer about a
//! machine is worse than "not in your manuals".

use crate::question_words::manual_words_for;
use crate::text::{list_marker, looks_like_title, split_sentences, strip_marker, word_count};

use std::collections::{HashMap, HashSet};

mod device;
mod gate;
mod sentences;
mod steps;

use gate::{COVERAGE_MIN, SEMANTIC_MIN, passes_gate};
use sentences::answer_with_sentences;
use steps::answer_with_steps;
#[cfg(test)]
use steps::{find_step_lists, passage_lines};

/// How the retrieval index weighs question words: the analyser (lowercase, stop words removed, stemmed)
/// and inverse document frequency from the user's corpus. Terms the corpus does not contain get a high idf.
pub trait TermWeights {
    fn terms(&self, text: &str) -> Vec<String>;
    fn idf(&self, term: &str) -> f32;
    /// Whether any of the user's manuals contains `term`.
    fn known(&self, _term: &str) -> bool {
        true
    }
    /// How many of the user's passages contain `term` (only zero or not when only that is known).
    fn passages_with(&self, term: &str) -> usize {
        if self.known(term) { usize::MAX } else { 0 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Extract {
    /// The answer text with [n] citations, n = 1-based position in `cited`.
    pub text: String,
    /// Indexes into the `passages` argument, in the order of their citation numbers.
    pub cited: Vec<usize>,
    /// false when nothing relevant scored high enough; then `text` says plainly the manuals don't cover it and cited is empty.
    pub found: bool,
    /// Every passage, most relevant first (share of the question's words it covers plus its
    /// closeness in meaning): the order further sources are listed in. Empty when not found.
    pub ranking: Vec<usize>,
}

// The fixed refusal, the same in both modes; it says nothing about the topic so it cannot be
// wrong.
use manuel_core::domain::NOT_FOUND_ANSWER;

/// A step list in a passage at least this close passes whatever its words.
const SEMANTIC_LIST_MIN: f32 = 0.6;
/// How much similarity counts against word coverage when ranking passages: paraphrased
/// questions share meaning more reliably than words.
const SEMANTIC_RELEVANCE: f32 = 1.5;
/// How far below the lead passage's relevance another passage may be and still add sentences.
const RELEVANCE_MARGIN: f32 = 0.1;
/// How much a passage's similarity counts towards the score of its sentences.
const SEMANTIC_WEIGHT: f32 = 0.5;
/// Extra sentences must score at least this share of the best one.
const EXTRA_SENTENCE_RATIO: f32 = 0.5;
/// An extra sentence that adds no new question term must be nearly as good as the best.
const EXTRA_SAME_TERMS_RATIO: f32 = 0.8;
const MAX_SENTENCES: usize = 3;
/// Retriever rank is a weak tie-breaker, not a signal to override term matches.
const RANK_PENALTY: f32 = 0.03;
const MIN_SENTENCE_WORDS: usize = 3;
const DUPLICATE_JACCARD: f32 = 0.8;
/// How much less of the question a step list may cover than the best passage.
const LIST_COVERAGE_SLACK: f32 = 0.15;
/// Question terms found only in a sentence's section heading count this much.
const HEADING_WEIGHT: f32 = 0.5;
/// "The warranty period is two years" defines what "what is the warranty period" asks for;
/// a sentence that merely mentions the same words ranks below it.
const DEFINITION_BONUS: f32 = 1.5;
const COPULAS: &[&str] = &[
    "is",
    "are",
    "was",
    "lasts",
    "means",
    "indicates",
    "weighs",
    "takes",
];

/// Words that frame a question rather than name its topic. Terms the analyser
/// already drops vanish here too, so this works whatever stop-word list the
/// index uses (Lucene's English list keeps "how", "what", "I"). Left in, these
/// words would get a high idf because manuals rarely contain "long", "mean" or
/// "I", and answerable questions would fail the gate.
const FRAMING_WORDS: &str = "how what which who whom whose why when where whether \
i me my mine myself we us our you your yours he she him her they them their it its this that \
these those there here do does did done doing can could should would will shall may might must \
is are am be been being was were have has had having a an the of to in on at by for from with \
and or but if so than about any some also just please \
long much many often way ways need needs needed able possible tell know explain mean means \
meaning happen happens want wants help get go goes make use using thing things something anything \
properly correctly exactly actually really manual manuals say says said work \
example instance called";

/// `similarities[i]` is the cosine similarity of the question's and passage i's embeddings (0
/// or missing when unknown). A passage is an answer candidate when it covers enough of the
/// question's words, or when its meaning is close enough although its words differ.
pub fn extract_answer(
    question: &str,
    passages: &[&str],
    similarities: &[f32],
    weights: &dyn TermWeights,
) -> Extract {
    extract_answer_about(question, passages, similarities, &[], weights)
}

/// [`extract_answer`], where `subjects[i]` is what passage i's manual is about: its name and
/// what runs along its pages ("Acme LaserJet User Manual", removed from them at ingestion).
/// Those words count as present in the passage, so naming the device in the question favours
/// no page of its manual over another.
pub fn extract_answer_about(
    question: &str,
    passages: &[&str],
    similarities: &[f32],
    subjects: &[&str],
    weights: &dyn TermWeights,
) -> Extract {
    let framing = framing_terms(weights);
    let Some(query) = Query::new(question, &framing, weights) else {
        return not_found();
    };
    if let Some(name) = unknown_name(question, &framing, weights) {
        tracing::debug!(name, "the question names something no manual mentions");
        return not_found();
    }
    if let Some(device) = device::unmentioned_device(question, &framing, weights) {
        tracing::debug!(
            device,
            "the question is about a device the manuals barely mention"
        );
        return not_found();
    }
    let known_similarity = |i: usize| similarities.get(i).copied().filter(|s| s.is_finite());
    let similarity = |i: usize| known_similarity(i).unwrap_or(0.0);
    let passage_terms: Vec<HashSet<String>> = passages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let subject = subjects.get(i).copied().unwrap_or_default();
            query.as_asked(
                weights
                    .terms(p)
                    .into_iter()
                    .chain(weights.terms(subject))
                    .collect(),
            )
        })
        .collect();
    // What the gate sees, for tuning it against `make eval` (RUST_LOG=manuel_local::answer=debug).
    for (i, terms) in passage_terms.iter().enumerate() {
        tracing::debug!(
            passage = i,
            coverage = query.coverage(terms),
            similarity = similarity(i),
            "answer candidate"
        );
    }
    let coverage = |i: usize| query.coverage(&passage_terms[i]);
    let relevance = |i: usize| coverage(i) + SEMANTIC_RELEVANCE * similarity(i);
    // Most relevant first; stable, so equally relevant passages keep the retriever's order.
    let mut ranking: Vec<usize> = (0..passages.len()).collect();
    ranking.sort_by(|&a, &b| relevance(b).total_cmp(&relevance(a)));
    let passing: Vec<usize> = ranking
        .iter()
        .copied()
        .filter(|&i| passes_gate(coverage(i), known_similarity(i)))
        .collect();
    let Some(&lead) = passing.first() else {
        return not_found();
    };
    // Other passages may add to the answer only when nearly as relevant as the lead: each one
    // cited takes a place among the sources that the next most relevant passages would have.
    let passing: Vec<usize> = passing
        .into_iter()
        .filter(|&i| relevance(i) >= relevance(lead) - RELEVANCE_MARGIN)
        .collect();
    let mut extract = answer_from(
        question,
        &query,
        passages,
        &passing,
        (lead, coverage(lead)),
        &similarity,
        weights,
    );
    if extract.found {
        extract.ranking = ranking;
    }
    extract
}

/// The answer led by the most relevant passage that passes the gate: its step list for a "how
/// do I" question when one fits, else its best sentence, with sentences of other passing
/// passages for what that one leaves open.
fn answer_from(
    question: &str,
    query: &Query,
    passages: &[&str],
    passing: &[usize],
    (lead, lead_coverage): (usize, f32),
    similarity: &dyn Fn(usize) -> f32,
    weights: &dyn TermWeights,
) -> Extract {
    let chosen = [lead];
    if is_how_to(question)
        && let Some(answer) =
            answer_with_steps(query, passages, &chosen, lead_coverage, similarity, weights)
    {
        return answer;
    }
    answer_with_sentences(query, passages, passing, lead, similarity, weights)
        .unwrap_or_else(not_found)
}

fn not_found() -> Extract {
    Extract {
        text: NOT_FOUND_ANSWER.to_string(),
        cited: Vec::new(),
        found: false,
        ranking: Vec::new(),
    }
}

struct Query {
    /// Distinct content terms with their (sanitised) idf.
    terms: Vec<(String, f32)>,
    total: f32,
    /// Question terms that manuals say otherwise, with the manuals' terms ("heavi" → "weight").
    said_as: Vec<(String, Vec<String>)>,
}

impl Query {
    /// None when the question has no content words to look for.
    fn new(question: &str, framing: &HashSet<String>, weights: &dyn TermWeights) -> Option<Self> {
        let mut seen = HashSet::new();
        let mut terms = Vec::new();
        for term in weights.terms(question) {
            if framing.contains(&term) || !seen.insert(term.clone()) {
                continue;
            }
            let idf = weights.idf(&term);
            // A misbehaving weight source must not turn the gate into NaN comparisons.
            let idf = if idf.is_finite() && idf > 0.0 {
                idf
            } else {
                0.0
            };
            terms.push((term, idf));
        }
        let total: f32 = terms.iter().map(|(_, w)| w).sum();
        let said_as = manual_words_for(question)
            .into_iter()
            .filter_map(|(asked, said)| {
                let asked = weights.terms(asked).into_iter().next()?;
                Some((asked, said.iter().flat_map(|w| weights.terms(w)).collect()))
            })
            .collect();
        (!terms.is_empty() && total > 0.0).then_some(Query {
            terms,
            total,
            said_as,
        })
    }

    /// A text's terms as the question asks for them: where the text uses a manual's word for a
    /// question's word ("Weight: 7.5 kg" for "how heavy"), the question's word counts as there.
    fn as_asked(&self, mut terms: HashSet<String>) -> HashSet<String> {
        for (asked, said) in &self.said_as {
            if said.iter().any(|t| terms.contains(t)) {
                terms.insert(asked.clone());
            }
        }
        terms
    }

    fn matched(&self, present: &HashSet<String>) -> f32 {
        self.terms
            .iter()
            .filter(|(t, _)| present.contains(t))
            .map(|(_, w)| w)
            .sum()
    }

    fn coverage(&self, present: &HashSet<String>) -> f32 {
        if self.total <= 0.0 {
            0.0
        } else {
            self.matched(present) / self.total
        }
    }
}

/// The analysed terms of [`FRAMING_WORDS`].
fn framing_terms(weights: &dyn TermWeights) -> HashSet<String> {
    weights.terms(FRAMING_WORDS).into_iter().collect()
}

/// A part of a name this long that no manual contains makes the name unknown.
const NAME_PART_MIN: usize = 4;

/// A name in the question that none of the user's manuals mentions: a capitalised word that does
/// not start a sentence ("De'Longhi", "Netgear", "E24"), none of whose terms any manual
/// contains. Such a question is about something else: answering it from the manual of another
/// product or another error code ("descale my De'Longhi" from the BrewMaster's manual) would be
/// confidently wrong.
fn unknown_name<'q>(
    question: &'q str,
    framing: &HashSet<String>,
    weights: &dyn TermWeights,
) -> Option<&'q str> {
    let mut sentence_start = true;
    for word in question.split_whitespace() {
        let starts = std::mem::replace(&mut sentence_start, word.ends_with(['.', '?', '!', ':']));
        let name = word.trim_matches(|c: char| !c.is_alphanumeric());
        let capitalised = name.chars().next().is_some_and(char::is_uppercase);
        if starts || !capitalised || name.chars().count() < 2 {
            continue;
        }
        let terms: Vec<String> = weights
            .terms(name)
            .into_iter()
            // "I'm" and "Pirate's" leave a one-letter term that says nothing.
            .filter(|term| term.chars().count() >= 2 && !framing.contains(term))
            .collect();
        // "De'Longhi" is unknown although "de" is French for "of": a name's long part decides.
        let unknown = |term: &String| !weights.known(term);
        let long_unknown = terms
            .iter()
            .any(|term| term.chars().count() >= NAME_PART_MIN && unknown(term));
        if !terms.is_empty() && (terms.iter().all(unknown) || long_unknown) {
            return Some(name);
        }
    }
    None
}

fn is_how_to(question: &str) -> bool {
    let mut norm = String::from(" ");
    for c in question.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() || c == '\'' {
            norm.push(c);
        } else if !norm.ends_with(' ') {
            norm.push(' ');
        }
    }
    if !norm.ends_with(' ') {
        norm.push(' ');
    }
    const CUES: &[&str] = &[
        " how do i ",
        " how can i ",
        " how to ",
        " how should i ",
        " how would i ",
        " how do you ",
        " how can you ",
        " how do we ",
        " how can we ",
        " how does one ",
        " how is ",
        " how are ",
        " what are the steps ",
        " what steps ",
        " which steps ",
        " steps ",
        " procedure ",
        " instructions ",
        " process for ",
    ];
    CUES.iter().any(|cue| norm.contains(cue))
}

fn term_set(weights: &dyn TermWeights, text: &str) -> HashSet<String> {
    weights.terms(text).into_iter().collect()
}

fn rank_factor(rank: usize) -> f32 {
    let r = u16::try_from(rank.min(10)).unwrap_or(10);
    1.0 - RANK_PENALTY * f32::from(r)
}

fn cite_text(n: usize) -> String {
    format!("[{n}]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const STOP_WORDS: &[&str] = &[
        "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
        "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "should", "so",
        "that", "the", "their", "then", "there", "these", "this", "to", "until", "was", "what",
        "when", "where", "which", "while", "who", "why", "will", "with", "you", "your",
    ];

    /// Mimics the index: stop words, crude stemming, BM25 idf over the given texts.
    struct FakeWeights {
        df: HashMap<String, usize>,
        docs: usize,
        stops: &'static [&'static str],
    }

    /// Lucene's (and tantivy's) English list: keeps "how", "what", "I", "do".
    const LUCENE_STOP_WORDS: &[&str] = &[
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
        "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
        "these", "they", "this", "to", "was", "will", "with",
    ];

    impl FakeWeights {
        fn new(corpus: &[&str]) -> Self {
            Self::with_stops(corpus, STOP_WORDS)
        }

        fn with_stops(corpus: &[&str], stops: &'static [&'static str]) -> Self {
            let mut df = HashMap::new();
            for doc in corpus {
                let terms: HashSet<String> = analyse(doc, stops).into_iter().collect();
                for t in terms {
                    *df.entry(t).or_insert(0) += 1;
                }
            }
            FakeWeights {
                df,
                docs: corpus.len(),
                stops,
            }
        }
    }

    fn stem(word: &str) -> String {
        let mut base = word;
        for suffix in ["ing", "es", "ed", "s"] {
            if let Some(b) = word.strip_suffix(suffix)
                && b.chars().count() >= 3
                && !word.ends_with("ss")
            {
                base = b;
                break;
            }
        }
        let base = base
            .strip_suffix('e')
            .filter(|b| b.len() >= 3)
            .unwrap_or(base);
        base.to_string()
    }

    fn analyse(text: &str, stops: &[&str]) -> Vec<String> {
        text.to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && !stops.contains(w))
            .map(stem)
            .collect()
    }

    impl TermWeights for FakeWeights {
        fn terms(&self, text: &str) -> Vec<String> {
            analyse(text, self.stops)
        }

        fn known(&self, term: &str) -> bool {
            self.df.contains_key(term)
        }

        fn passages_with(&self, term: &str) -> usize {
            self.df.get(term).copied().unwrap_or(0)
        }

        fn idf(&self, term: &str) -> f32 {
            let n = self.docs as f32;
            let df = self.df.get(term).copied().unwrap_or(0) as f32;
            (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
        }
    }

    const INK: &str = "Replacing the ink cartridge\nUse only genuine ink cartridges. Follow these steps:\n1. Turn the printer on and open the scanner unit.\n2. Wait until the print head moves to the replacement position.\n3. Press the tab on the old ink cartridge and lift it out.\n4. Shake the new cartridge gently four or five times.\n5. Remove the yellow tape from the new cartridge.\n6. Insert the new cartridge into the holder.\n7. Press down on the cartridge until it clicks into place.\n8. Close the scanner unit.\n9. Press the OK button to start charging the ink.";
    const WARRANTY: &str = "Warranty\nThe warranty period is two years from the date of purchase. The warranty does not cover damage caused by third-party ink or misuse. Keep your receipt as proof of purchase.";
    const PAPER: &str = "Loading paper\nPull out the paper cassette. Slide the edge guides to the sides. Load plain paper with the printable side down. Do not load paper above the arrow mark inside the edge guide.\n\nIf paper jams, open the rear cover and remove the jammed paper slowly.";
    const CLEANING: &str = "Cleaning the print head\nIf printouts are faint or have gaps, clean the print head. Select Maintenance on the control panel, then Print Head Cleaning. Cleaning uses some ink, so clean the head only when print quality declines.\n\nCleaning the exterior\nWipe the printer with a soft, dry cloth. Do not use alcohol or thinner.";
    const SAFETY: &str = "Safety instructions\nPlace the printer on a flat, stable surface. Do not touch the print head while the printer is on. Keep ink cartridges out of the reach of children.";

    fn corpus() -> Vec<&'static str> {
        vec![INK, WARRANTY, PAPER, CLEANING, SAFETY]
    }

    fn ask(question: &str, passages: &[&str]) -> Extract {
        let weights = FakeWeights::new(&corpus());
        extract_answer(question, passages, &[], &weights)
    }

    #[test]
    fn how_to_returns_whole_numbered_list() {
        let answer = ask(
            "How do I replace the ink cartridge?",
            &[INK, SAFETY, CLEANING],
        );
        assert!(answer.found, "{answer:?}");
        assert_eq!(answer.cited, vec![0]);
        let lines: Vec<&str> = answer.text.lines().collect();
        assert_eq!(lines[0], "Replacing the ink cartridge");
        assert_eq!(lines[1], "Follow these steps:");
        assert_eq!(lines.len(), 11, "{}", answer.text);
        assert!(lines[2].starts_with("1. Turn the printer on"));
        assert_eq!(
            lines[10],
            "9. Press the OK button to start charging the ink. [1]"
        );
    }

    #[test]
    fn how_to_prefers_matching_list_over_rank() {
        let descale = "Descaling\n1. Fill the tank with descaler.\n2. Run the descaling program.\n3. Rinse the tank with water.";
        let weights = FakeWeights::new(&[descale, INK, WARRANTY]);
        let answer = extract_answer(
            "How to replace an ink cartridge",
            &[descale, INK],
            &[],
            &weights,
        );
        assert_eq!(answer.cited, vec![1], "{answer:?}");
        assert!(answer.text.contains("9. Press the OK button"));
    }

    #[test]
    fn how_to_ignores_list_for_a_different_task() {
        // Step 2 of the ink list mentions the print head, but the list is not about cleaning it.
        let answer = ask("How do I clean the print head?", &[INK, CLEANING]);
        assert!(answer.found);
        assert_eq!(answer.cited, vec![1], "{}", answer.text);
        assert!(!answer.text.contains("1. Turn"));
    }

    #[test]
    fn how_to_uses_titles_above_the_section() {
        let manual = "Coffee Maker CM-2\nDescaling\nDescale the machine every three months.\nTo descale the machine:\nStep 1: Fill the water tank and add the descaler.\nStep 2: Place a container under the spout.\nStep 3: Press and hold the descale button.";
        let weights = FakeWeights::new(&[manual, WARRANTY, PAPER, INK]);
        let answer = extract_answer(
            "How do I descale the coffee maker?",
            &[manual],
            &[],
            &weights,
        );
        assert_eq!(
            answer.text,
            "Descaling\nTo descale the machine:\nStep 1: Fill the water tank and add the descaler.\nStep 2: Place a container under the spout.\nStep 3: Press and hold the descale button. [1]"
        );
        // Without a list-shaped question, the intro line is never quoted on its own.
        let answer = extract_answer("descale coffee maker", &[manual], &[], &weights);
        assert!(
            !answer.text.contains("To descale the machine:"),
            "{}",
            answer.text
        );
    }

    #[test]
    fn single_term_question_does_not_pad_with_unrelated_sentences() {
        let text = "Descaling\nDescale the machine every three months. Use the supplied descaler only.\n\nCleaning\nPress the descale button to stop the descale program.";
        let weights = FakeWeights::new(&[text, WARRANTY, PAPER]);
        let answer = extract_answer("How often should I descale?", &[text], &[], &weights);
        assert_eq!(answer.text, "Descale the machine every three months. [1]");
    }

    #[test]
    fn how_to_without_lead_uses_neutral_framing() {
        let steps = "1. Open the lid of the water tank.\n2. Fill the water tank with fresh water.\n3. Close the lid.";
        let weights = FakeWeights::new(&[steps, WARRANTY, PAPER]);
        let answer = extract_answer("How do I fill the water tank?", &[steps], &[], &weights);
        assert!(answer.found);
        assert_eq!(
            answer.text,
            "Steps:\n1. Open the lid of the water tank.\n2. Fill the water tank with fresh water.\n3. Close the lid. [1]"
        );
    }

    #[test]
    fn warranty_question_returns_warranty_sentence() {
        let answer = ask("What is the warranty period?", &[WARRANTY, INK]);
        assert!(answer.found);
        assert_eq!(answer.cited, vec![0]);
        assert!(
            answer
                .text
                .starts_with("The warranty period is two years from the date of purchase. [1]"),
            "{}",
            answer.text
        );
        assert!(!answer.text.contains("Keep your receipt"));
    }

    #[test]
    fn framing_words_do_not_block_answers() {
        let answer = ask("How long is the warranty?", &[WARRANTY]);
        assert!(answer.found, "{answer:?}");
        assert!(answer.text.contains("two years"));
    }

    #[test]
    fn a_measure_asked_in_other_words_is_answered_from_the_specifications() {
        const SPECIFICATIONS: &str = "Technical specifications\nPrint speed: up to 20 pages per minute. Weight: 7.5 kg without the paper cassette. Power: 220-240 V.";
        let mut texts = corpus();
        texts.push(SPECIFICATIONS);
        let weights = FakeWeights::new(&texts);
        let answer = extract_answer(
            "How heavy is the printer?",
            &[SAFETY, SPECIFICATIONS],
            &[],
            &weights,
        );
        assert!(answer.found, "{answer:?}");
        assert!(answer.text.starts_with("Weight: 7.5 kg"), "{answer:?}");
        assert_eq!(answer.ranking.first(), Some(&1), "{answer:?}");
    }

    #[test]
    fn question_words_kept_by_the_analyser_do_not_block_answers() {
        let weights = FakeWeights::with_stops(&corpus(), LUCENE_STOP_WORDS);
        let answer = extract_answer("How do I replace the ink cartridge?", &[INK], &[], &weights);
        assert!(
            answer.found && answer.text.contains("\n9. Press"),
            "{answer:?}"
        );
        let answer = extract_answer("What is the warranty period?", &[WARRANTY], &[], &weights);
        assert!(
            answer.text.starts_with("The warranty period is two years"),
            "{answer:?}"
        );
        let answer = extract_answer("How do I replace the toner?", &[INK], &[], &weights);
        assert!(!answer.found);
        assert!(!extract_answer("What is it?", &[INK], &[], &weights).found);
    }

    #[test]
    fn unrelated_question_is_refused() {
        let answer = ask("What is the capital of France?", &[WARRANTY, INK, PAPER]);
        assert!(!answer.found);
        assert!(answer.cited.is_empty());
        assert_eq!(answer.text, NOT_FOUND_ANSWER);
    }

    #[test]
    fn absent_key_term_is_refused() {
        let answer = ask("How do I replace the toner?", &[INK, CLEANING, PAPER]);
        assert!(!answer.found, "{answer:?}");
        let answer = ask("How do I replace the toner cartridge?", &[INK, CLEANING]);
        assert!(!answer.found, "{answer:?}");
    }

    #[test]
    fn question_without_content_terms_is_refused() {
        assert!(!ask("what is it?", &[INK, WARRANTY]).found);
        assert!(!ask("How long?", &[INK, WARRANTY]).found);
        assert!(!ask("", &[INK]).found);
        assert!(!ask("???", &[INK]).found);
    }

    #[test]
    fn citations_number_across_passages() {
        let a = "Descaling\nAdd the descaler to the tank. Use cold water only.";
        let b = "Water tank\nMix the descaler with water before use.";
        let weights = FakeWeights::new(&[a, b, WARRANTY, PAPER]);
        let question = "How much water and descaler go in the tank?";
        let answer = extract_answer(question, &[a, b], &[], &weights);
        assert!(answer.found, "{answer:?}");
        assert_eq!(answer.cited, vec![0, 1]);
        assert_eq!(
            answer.text,
            "Add the descaler to the tank. [1] Mix the descaler with water before use. [2]"
        );
        // Numbers follow retriever rank, whichever passage holds the best sentence.
        let answer = extract_answer(question, &[b, a], &[], &weights);
        assert_eq!(answer.cited, vec![0, 1]);
        assert_eq!(
            answer.text,
            "Mix the descaler with water before use. [1] Add the descaler to the tank. [2]"
        );
    }

    #[test]
    fn heading_context_and_new_terms_pick_the_right_sentences() {
        let answer = ask(
            "Can I clean the exterior with alcohol?",
            &[WARRANTY, CLEANING],
        );
        assert!(answer.found, "{answer:?}");
        assert_eq!(answer.cited, vec![1]);
        // "Do not use alcohol" only mentions alcohol; its heading supplies "cleaning the exterior".
        assert!(
            answer
                .text
                .starts_with("Do not use alcohol or thinner. [1]")
                || answer.text.ends_with("Do not use alcohol or thinner. [1]"),
            "{}",
            answer.text
        );
    }

    #[test]
    fn two_part_question_needs_one_passage_covering_most_of_it() {
        let answer = ask(
            "Can I use alcohol to clean the exterior, and is third-party ink covered?",
            &[WARRANTY, CLEANING],
        );
        assert!(!answer.found, "{answer:?}");
    }

    #[test]
    fn half_covered_question_is_refused() {
        // Matching "paper cassette" alone would answer a question about alcohol damage.
        let answer = ask(
            "Does alcohol damage the paper cassette?",
            &[CLEANING, PAPER],
        );
        assert!(!answer.found, "{answer:?}");
    }

    #[test]
    fn sentences_from_same_passage_share_number() {
        let answer = ask("paper jams and edge guides when loading paper", &[PAPER]);
        assert!(answer.found);
        assert_eq!(answer.cited, vec![0]);
        assert!(!answer.text.contains("[2]"));
        assert!(answer.text.matches("[1]").count() >= 2, "{}", answer.text);
    }

    #[test]
    fn output_is_verbatim() {
        let passages = [INK, WARRANTY, PAPER, CLEANING, SAFETY];
        for q in [
            "What is the warranty period?",
            "How do I clean the print head?",
            "What should I not load the paper above?",
            "Can children reach the ink cartridges?",
            "How do I replace the ink cartridge?",
        ] {
            let answer = ask(q, &passages);
            assert!(answer.found, "{q}");
            for piece in answer.text.split(" [").flat_map(|s| s.split('\n')) {
                let piece = piece.trim_start_matches(|c: char| c.is_ascii_digit() || c == ']');
                let piece = piece.trim();
                if piece.is_empty() || piece == "Steps:" {
                    continue;
                }
                assert!(
                    answer.cited.iter().any(|&i| passages[i].contains(piece)),
                    "{q}: {piece:?} not verbatim"
                );
            }
        }
    }

    #[test]
    fn how_to_falls_back_to_sentences_without_list() {
        let answer = ask("How do I clean the print head?", &[CLEANING, INK]);
        assert!(answer.found);
        assert_eq!(answer.cited, vec![0], "{}", answer.text);
        assert!(
            answer.text.contains("Print Head Cleaning"),
            "{}",
            answer.text
        );
    }

    #[test]
    fn empty_inputs_do_not_panic() {
        let weights = FakeWeights::new(&[]);
        assert!(!extract_answer("", &[], &[], &weights).found);
        assert!(!extract_answer("How do I replace the ink?", &[], &[], &weights).found);
        assert!(
            !extract_answer("How do I replace the ink?", &["", "  \n\n "], &[], &weights).found
        );
        assert!(!extract_answer("", &[INK], &[], &weights).found);
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let long = "ink cartridge ".repeat(20_000);
        let weird = "1.\n2)\n(3\nStep\n- \n•\na)\n…!?.\u{0}\u{FEFF}日本語。インク。🙂";
        let passages = [long.as_str(), weird, "1. ink\n1. ink\n2. ink"];
        let weights = FakeWeights::new(&passages);
        for q in ["How do I ink?", "ink cartridge", "日本語", "🙂", "1. 2. 3."] {
            let answer = extract_answer(q, &passages, &[], &weights);
            if answer.found {
                assert!(!answer.cited.is_empty());
            }
        }
    }

    struct BrokenWeights;
    impl TermWeights for BrokenWeights {
        fn terms(&self, text: &str) -> Vec<String> {
            analyse(text, STOP_WORDS)
        }
        fn idf(&self, _term: &str) -> f32 {
            f32::NAN
        }
    }

    #[test]
    fn passages_are_ranked_by_words_covered_and_closeness_in_meaning() {
        let weights = FakeWeights::new(&corpus());
        let passages = [PAPER, INK, CLEANING, WARRANTY, SAFETY];
        // The cleaning passage shares no word with the question but is closest in meaning:
        // it ranks right after the one that answers, ahead of the ink passage it outranks
        // neither in words nor meaning.
        let similarities = [0.1, 0.2, 0.45, 0.8, 0.1];
        let answer = extract_answer(
            "How long does the warranty last?",
            &passages,
            &similarities,
            &weights,
        );
        assert!(answer.found);
        assert_eq!(answer.cited, [3]);
        assert_eq!(answer.ranking, [3, 2, 1, 0, 4]);
        let refused = extract_answer("How do I replace the toner?", &passages, &[], &weights);
        assert!(!refused.found && refused.ranking.is_empty());
    }

    #[test]
    fn the_passage_that_answers_in_its_own_words_leads() {
        // The first passage repeats the question's words but is about something else; the
        // second says "warranty" where the question says "guarantee", and is far closer in
        // meaning. The answer comes from the second alone.
        let card = "LaserJet guarantee card\nRegister the LaserJet guarantee card online.";
        let warranty = "Warranty\nThe LaserJet warranty period is two years from purchase.";
        let weights = FakeWeights::new(&[card, warranty, INK, PAPER, CLEANING, SAFETY]);
        let answer = extract_answer(
            "How long is the guarantee on the LaserJet?",
            &[card, warranty],
            &[0.25, 0.8],
            &weights,
        );
        assert!(answer.found, "{answer:?}");
        assert_eq!(answer.cited, [1], "{answer:?}");
        assert!(answer.text.starts_with("The LaserJet warranty period"));
        assert_eq!(answer.ranking, [1, 0]);
    }

    #[test]
    fn wording_and_meaning_together_can_pass_the_gate() {
        // "skip the read-back check" for "disable the automatic verify check": under half the
        // words and not close enough in meaning alone, but both together.
        let verify = "Options\n-V Disable the automatic verify check when uploading data.";
        let weights = FakeWeights::new(&[verify, INK, PAPER, CLEANING, SAFETY, WARRANTY]);
        let question = "How do I skip the read-back check when uploading data?";
        assert!(extract_answer(question, &[verify], &[0.45], &weights).found);
        assert!(!extract_answer(question, &[verify], &[0.1], &weights).found);
    }

    #[test]
    fn a_question_naming_something_no_manual_mentions_is_refused() {
        let weights = FakeWeights::new(&corpus());
        // The ink passage answers "replace the ink cartridge", but not for an Epson.
        assert!(ask("How do I replace the ink cartridge?", &[INK]).found);
        let epson = extract_answer(
            "How do I replace the ink cartridge in my Epson?",
            &[INK],
            &[0.9],
            &weights,
        );
        assert!(!epson.found, "{epson:?}");
        // Capitals that start a sentence, or name what the manuals do mention, are no reason.
        assert!(ask("Ink cartridge. How do I replace it?", &[INK]).found);
        assert!(ask("How do I replace the Ink Cartridge?", &[INK]).found);
        assert_eq!(
            unknown_name(
                "Now I'm stuck, how do I replace the Epson's ink?",
                &framing_terms(&weights),
                &weights
            ),
            Some("Epson's")
        );
        assert_eq!(
            unknown_name(
                "Now I'm stuck, how do I replace the ink?",
                &framing_terms(&weights),
                &weights
            ),
            None
        );
    }

    #[test]
    fn a_question_about_a_device_the_manuals_barely_mention_is_refused() {
        const OVEN_ONCE: &str = "Cleaning the exterior\nNever use oven cleaners on the printer.";
        let mut passages = corpus();
        passages.push(OVEN_ONCE);
        let weights = FakeWeights::new(&passages);
        let refused = |question: &str| {
            let answer = extract_answer(question, &passages, &[0.5; 6], &weights);
            !answer.found
        };
        // Said once, in passing, or never: not what the manuals are about.
        assert!(refused("How do I set the clock on my oven?"));
        assert!(refused("How do I clean the lint filter of the dryer?"));
        assert!(refused("How often should I descale my De'Longhi?"));
        // What the manuals are about, wherever the question names it.
        assert!(!refused("How do I clean the print head of my printer?"));
        assert!(!refused("How do I load paper into the printer?"));
        assert!(!refused(
            "My printouts are faint, how do I clean the print head?"
        ));
        assert!(!refused(
            "How do I replace the ink cartridge on my printer quickly?"
        ));
    }

    #[test]
    fn a_passage_with_the_words_but_none_of_the_meaning_does_not_answer() {
        let weights = FakeWeights::new(&corpus());
        let question = "What is the warranty period?";
        assert!(extract_answer(question, &[WARRANTY], &[0.6], &weights).found);
        assert!(!extract_answer(question, &[WARRANTY], &[0.05], &weights).found);
        // Without a similarity (none computed), the words alone decide, as before.
        assert!(extract_answer(question, &[WARRANTY], &[], &weights).found);
    }

    #[test]
    fn nan_idf_refuses_instead_of_panicking() {
        assert!(!extract_answer("warranty period", &[WARRANTY], &[], &BrokenWeights).found);
    }

    #[test]
    fn deterministic() {
        let passages = [INK, WARRANTY, PAPER, CLEANING, SAFETY];
        let a = ask("What does the warranty cover?", &passages);
        let b = ask("What does the warranty cover?", &passages);
        assert_eq!(a, b);
    }

    #[test]
    fn sentence_splitting_respects_abbreviations() {
        let s = "Use a mild cleaner, e.g. Dish soap. Wait approx. 2.5 minutes. See Fig. 3 and No. 4 on p. 12. It is made in the U.S. By hand! Ready? Yes.";
        assert_eq!(
            split_sentences(s),
            vec![
                "Use a mild cleaner, e.g. Dish soap.",
                "Wait approx. 2.5 minutes.",
                "See Fig. 3 and No. 4 on p. 12.",
                "It is made in the U.S. By hand!",
                "Ready?",
                "Yes."
            ]
        );
        assert_eq!(
            split_sentences("Set it to 3. Then wait."),
            vec!["Set it to 3.", "Then wait."]
        );
        assert!(split_sentences("").is_empty());
    }

    #[test]
    fn list_items_are_not_split_at_their_numbers() {
        let lines =
            passage_lines("Steps\n1. Open it.\n2. Close it.\nAfter that.\n\nUnrelated text.");
        let lists = find_step_lists(&lines);
        assert_eq!(lists.len(), 1);
        assert_eq!((lists[0].start, lists[0].end), (1, 4));
        assert_eq!(
            strip_marker("3. Insert the cartridge."),
            "Insert the cartridge."
        );
    }

    #[test]
    fn how_to_detection() {
        assert!(is_how_to("How do I descale the machine?"));
        assert!(is_how_to("how to reset wifi"));
        assert!(is_how_to("What are the steps to pair the remote?"));
        assert!(is_how_to("Procedure for cleaning the filter"));
        assert!(!is_how_to("What is the warranty period?"));
        assert!(!is_how_to("Why is the light blinking?"));
    }

    #[test]
    fn a_stated_problem_comes_with_its_solution() {
        let faq = "Problem: after flashing a firmware that reduces the clock speed, further ISP connection attempts fail. Or a programmer cannot talk to a new chip. Solution: lower the ISP clock frequency with the -B option. Other notes follow here.";
        let weights = FakeWeights::new(&[faq, WARRANTY, PAPER]);
        let answer = extract_answer(
            "ISP connection attempts fail after flashing firmware",
            &[faq],
            &[],
            &weights,
        );
        assert!(answer.found);
        assert!(
            answer.text.contains("Problem: after flashing"),
            "{}",
            answer.text
        );
        assert!(
            answer
                .text
                .contains("Solution: lower the ISP clock frequency"),
            "{}",
            answer.text
        );
        assert!(!answer.text.contains("Other notes"), "{}", answer.text);
        let unresolved = "Problem: the ISP connection attempts fail after flashing firmware. Nothing else is said.";
        let answer = extract_answer(
            "ISP connection attempts fail after flashing firmware",
            &[unresolved],
            &[],
            &weights,
        );
        assert!(
            !answer.text.contains("Nothing else"),
            "no solution, nothing added: {}",
            answer.text
        );
    }
}
