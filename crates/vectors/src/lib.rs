//! The similarity of embeddings, the inner loop of local retrieval: every question is compared
//! with every window of every chunk of the user's manuals. It is a crate of its own so that the
//! dev build (`make run`) can optimise it (root `Cargo.toml`, `[profile.dev.package]`) while the
//! rest of the workspace compiles unoptimised; in manuel-local it took about half of a question.

/// The dot product of two normalised embeddings: their cosine similarity. Slices of different
/// lengths are compared over the shorter one.
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The similarity of a question to a chunk: that of its closest window (`f32::MIN` for none).
pub fn best_similarity(question: &[f32], windows: &[Vec<f32>]) -> f32 {
    windows
        .iter()
        .map(|window| similarity(question, window))
        .fold(f32::MIN, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_is_the_dot_product() {
        assert_eq!(similarity(&[1.0, 0.0], &[1.0, 0.0]), 1.0);
        assert_eq!(similarity(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert!((similarity(&[0.6, 0.8], &[0.8, 0.6]) - 0.96).abs() < 1e-6);
    }

    #[test]
    fn a_chunk_is_as_close_as_its_closest_window() {
        let windows = vec![vec![0.0, 1.0], vec![0.6, 0.8], vec![1.0, 0.0]];
        assert_eq!(best_similarity(&[1.0, 0.0], &windows), 1.0);
        assert_eq!(best_similarity(&[1.0, 0.0], &[]), f32::MIN);
    }
}
