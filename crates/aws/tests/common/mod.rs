//! What the moto-backed tests share.

/// The moto server `make test` started (`MANUEL_TEST_MOTO_URL`), or `None` under a plain
/// `cargo test`, in which case the test says it was skipped.
pub fn moto() -> Option<String> {
    let url = std::env::var("MANUEL_TEST_MOTO_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!(
            "MANUEL_TEST_MOTO_URL is not set: skipping this moto test (run it with `make test`)"
        );
    }
    url
}
