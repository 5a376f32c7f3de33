//! The relevance gate: whether a retrieved passage may answer at all. BM25 always returns
//! something, so this matters more than the ranking: a confident wrong answer about a machine
//! is worse than "not in your manuals".

/// Share of the question's idf mass a passage must contain. A rare key word
/// missing from the corpus ("toner" in an ink printer manual) sinks the question,
/// one missing word out of three equally rare ones does not. Above 0.5 so that
/// matching half a question ("paper cassette" in "does alcohol damage the paper
/// cassette?") is not taken for an answer.
pub(super) const COVERAGE_MIN: f32 = 0.6;
/// A passage this close in meaning to the question (cosine of their embeddings) is a candidate
/// even when it shares few of the question's words: "how long is the guarantee" and "the
/// warranty period is two years".
pub(super) const SEMANTIC_MIN: f32 = 0.5;
/// ...but it must still share some of them: similarity alone also joins neighbouring topics
/// of the same appliance.
pub(super) const SEMANTIC_COVERAGE_MIN: f32 = 0.2;
/// A passage holding the question's words but this far from it in meaning matched them by
/// coincidence: "How long is the guarantee?" and a UPS manual's "they can not guarantee that
/// if a new power outage happens, their UPS would safely shut down" (cosine 0.03).
pub(super) const LEXICAL_SIMILARITY_MIN: f32 = 0.2;
/// ...or its share of the question's words and its similarity together reach this: "skip the
/// read-back check" for "disable the automatic verify check" shares a few words and some
/// meaning, neither enough alone.
pub(super) const COMBINED_MIN: f32 = 0.8;

/// Whether a passage may answer: it holds most of the question's words (and, when its
/// similarity is known, is not far from the question in meaning), or some of them and is close
/// in meaning.
pub(super) fn passes_gate(coverage: f32, similarity: Option<f32>) -> bool {
    let Some(similarity) = similarity else {
        return coverage >= COVERAGE_MIN;
    };
    similarity >= LEXICAL_SIMILARITY_MIN
        && (coverage >= COVERAGE_MIN
            || (coverage >= SEMANTIC_COVERAGE_MIN
                && (similarity >= SEMANTIC_MIN || coverage + similarity >= COMBINED_MIN)))
}
