//! Sentence choice: the best sentences of the passing passages, for what a step list does
//! not answer.

use super::*;

pub(super) struct Candidate<'a> {
    passage: usize,
    position: usize,
    text: &'a str,
    terms: HashSet<String>,
    words: HashSet<String>,
    score: f32,
}

/// The best sentence of the `lead` passage, then up to two more from any passing passage that
/// answer parts of the question it leaves open.
pub(super) fn answer_with_sentences(
    query: &Query,
    passages: &[&str],
    passing: &[usize],
    lead: usize,
    similarity: &dyn Fn(usize) -> f32,
    weights: &dyn TermWeights,
) -> Option<Extract> {
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    // Every sentence by (passage, position), so an answer can be followed by its resolution.
    let mut sentences: HashMap<(usize, usize), &str> = HashMap::new();
    for &p in passing {
        let mut position = 0;
        let mut heading_terms: HashSet<String> = HashSet::new();
        for line in passages[p].lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            // A bare heading is no answer, but it says what the sentences below it are about.
            if looks_like_title(line) {
                heading_terms = term_set(weights, line);
                continue;
            }
            let body = strip_marker(line);
            for sentence in split_sentences(body) {
                position += 1;
                sentences.insert((p, position), sentence);
                // "To descale the machine:" introduces text it does not contain.
                if word_count(sentence) < MIN_SENTENCE_WORDS || sentence.ends_with(':') {
                    continue;
                }
                let terms = query.as_asked(term_set(weights, sentence));
                let own = query.matched(&terms);
                // In a passage close in meaning, a sentence may answer in other words.
                let semantic = SEMANTIC_WEIGHT * similarity(p) * query.total;
                if own <= 0.0 && similarity(p) < SEMANTIC_MIN {
                    continue;
                }
                let from_heading: f32 = query
                    .terms
                    .iter()
                    .filter(|(t, _)| heading_terms.contains(t) && !terms.contains(t))
                    .map(|(_, w)| w)
                    .sum();
                candidates.push(Candidate {
                    passage: p,
                    position,
                    text: sentence,
                    words: plain_words(sentence),
                    terms,
                    score: (own + HEADING_WEIGHT * from_heading + semantic)
                        * rank_factor(p)
                        * definition_factor(query, sentence, weights),
                });
            }
        }
    }
    // Stable sort keeps retriever order among equal scores, so output is deterministic.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    // The answer opens with the lead passage's best sentence (when it has one): the passage
    // that answers in its own words outranks a sentence that repeats the question's words.
    let first = candidates
        .iter()
        .position(|c| c.passage == lead)
        .unwrap_or(0);
    if candidates.is_empty() {
        return None;
    }
    let opening = candidates.remove(first);
    let best_score = opening.score;
    candidates.insert(0, opening);

    // Greedy: after the best sentence, prefer sentences that answer a part of the
    // question not yet covered over ones that repeat the same terms.
    let mut chosen: Vec<&Candidate<'_>> = Vec::new();
    let mut covered: HashSet<&str> = HashSet::new();
    let mut remaining: Vec<&Candidate<'_>> = candidates.iter().collect();
    while chosen.len() < MAX_SENTENCES {
        let mut pick: Option<(usize, f32)> = None;
        for (i, cand) in remaining.iter().enumerate() {
            if cand.score < EXTRA_SENTENCE_RATIO * best_score {
                break;
            }
            if chosen.iter().any(|c| near_duplicate(&c.words, &cand.words)) {
                continue;
            }
            let gain: f32 = query
                .terms
                .iter()
                .filter(|(t, _)| cand.terms.contains(t) && !covered.contains(t.as_str()))
                .map(|(_, w)| w)
                .sum();
            // A sentence that adds no question term is only worth quoting when it is nearly
            // as strong as the best one, next to it in the same passage (two statements of
            // the same fact, say).
            let restates = query.terms.len() >= 2
                && cand.score >= EXTRA_SAME_TERMS_RATIO * best_score
                && chosen.iter().any(|c| c.passage == cand.passage);
            if !chosen.is_empty() && gain <= 0.0 && !restates {
                continue;
            }
            if pick.is_none_or(|(_, g)| gain > g) {
                pick = Some((i, gain));
            }
            if chosen.is_empty() {
                break;
            }
        }
        let Some((i, _)) = pick else { break };
        let cand = remaining.remove(i);
        for (t, _) in &query.terms {
            if cand.terms.contains(t) {
                covered.insert(t.as_str());
            }
        }
        chosen.push(cand);
    }
    chosen.sort_by_key(|c| (c.passage != lead, c.passage, c.position));
    // A troubleshooting entry states the problem and then its fix: the problem alone answers
    // nothing, so the sentence that follows it comes along, verbatim.
    let mut parts_of: Vec<(usize, usize, &str)> = Vec::with_capacity(chosen.len() + 1);
    for cand in &chosen {
        parts_of.push((cand.passage, cand.position, cand.text));
        let resolution = resolution_after(cand.text, |offset| {
            sentences
                .get(&(cand.passage, cand.position + offset))
                .copied()
        });
        for (offset, text) in resolution {
            let position = cand.position + offset;
            if !chosen
                .iter()
                .any(|c| c.passage == cand.passage && c.position == position)
            {
                parts_of.push((cand.passage, position, text));
            }
        }
    }

    let mut cited: Vec<usize> = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    for (passage, _, text) in parts_of {
        let n = match cited.iter().position(|&p| p == passage) {
            Some(i) => i + 1,
            None => {
                cited.push(passage);
                cited.len()
            }
        };
        parts.push(format!("{} {}", text, cite_text(n)));
    }
    Some(Extract {
        text: parts.join(" "),
        cited,
        found: true,
        ranking: Vec::new(),
    })
}

/// Rewards a sentence in which a question term is the subject of a copula ("… period is …").
pub(super) fn definition_factor(query: &Query, sentence: &str, weights: &dyn TermWeights) -> f32 {
    let words: Vec<String> = sentence
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    let defines = words.windows(2).any(|pair| {
        COPULAS.contains(&pair[1].as_str())
            && weights
                .terms(&pair[0])
                .iter()
                .any(|term| query.terms.iter().any(|(t, _)| t == term))
    });
    if defines { DEFINITION_BONUS } else { 1.0 }
}

/// How far ahead a stated problem's solution may be.
pub(super) const RESOLUTION_LOOKAHEAD: usize = 3;

/// The sentences that resolve `sentence`, with their offsets after it: for "Problem: …" (or
/// "Symptom:", "Issue:") everything up to and including the next "Solution:" (or "Fix:",
/// "Remedy:") within a few sentences, nothing if there is none; for "Q: …" or a question, the
/// next sentence.
pub(super) fn resolution_after<'a>(
    sentence: &str,
    next: impl Fn(usize) -> Option<&'a str>,
) -> Vec<(usize, &'a str)> {
    let starts = |prefixes: &[&str], text: &str| {
        let text = text.trim_start().to_lowercase();
        prefixes.iter().any(|prefix| text.starts_with(prefix))
    };
    if starts(&["problem:", "symptom:", "issue:"], sentence) {
        let mut following = Vec::new();
        for offset in 1..=RESOLUTION_LOOKAHEAD {
            let Some(text) = next(offset) else { break };
            following.push((offset, text));
            if starts(&["solution:", "fix:", "remedy:", "answer:"], text) {
                return following;
            }
        }
        return Vec::new();
    }
    if starts(&["q:", "question:"], sentence) || sentence.trim_end().ends_with('?') {
        return next(1).map(|text| vec![(1, text)]).unwrap_or_default();
    }
    Vec::new()
}

pub(super) fn plain_words(s: &str) -> HashSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Manuals repeat warnings across sections; quoting the same sentence twice wastes the answer.
pub(super) fn near_duplicate(a: &HashSet<String>, b: &HashSet<String>) -> bool {
    let union = a.union(b).count();
    if union == 0 {
        return true;
    }
    let shared = a.intersection(b).count();
    let smaller = a.len().min(b.len());
    shared == smaller || ratio(shared, union) >= DUPLICATE_JACCARD
}

pub(super) fn ratio(a: usize, b: usize) -> f32 {
    // Word counts of a sentence fit comfortably in f32's exact integer range.
    let a = u16::try_from(a).map_or(f32::MAX, f32::from);
    let b = u16::try_from(b).map_or(f32::MAX, f32::from);
    if b == 0.0 { 0.0 } else { a / b }
}
