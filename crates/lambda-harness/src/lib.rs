//! Runs a function binary the way Lambda does: a local Runtime API hands it events and collects
//! its responses ([`Lambda`]), while a recording fake stands in for Bedrock, which moto lacks
//! ([`FakeBedrock`]), and a proxy in front of moto injects AWS failures ([`FaultProxy`]). Test support only: failing loudly (unwrap, panic) is what a harness should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bedrock;
mod dynamodb_iam;
mod fault_proxy;
pub mod fixtures;
pub mod iam;
mod runtime;
pub mod stack;
mod transcribe_streaming;

pub use bedrock::{FakeBedrock, KbPassage};
pub use dynamodb_iam::DynamoDbIamProxy;
pub use fault_proxy::FaultProxy;
pub use runtime::{Ending, Invocation, Lambda, Part, Streamed};
pub use transcribe_streaming::{FakeTranscribeStreaming, StreamSeen};

/// Where the function binaries are (`MANUEL_TEST_LAMBDA_BIN_DIR`, set by `make test` after it
/// built them with the `lambda` feature), or `None` with a note that the test was skipped.
pub fn binary(name: &str) -> Option<std::path::PathBuf> {
    let Some(dir) = std::env::var_os("MANUEL_TEST_LAMBDA_BIN_DIR") else {
        eprintln!(
            "MANUEL_TEST_LAMBDA_BIN_DIR is not set: skipping this Lambda test (run it with `make test`)"
        );
        return None;
    };
    let path = std::path::Path::new(&dir).join(name);
    assert!(
        path.is_file(),
        "{} does not exist: build the functions with `cargo build --features lambda` first",
        path.display()
    );
    Some(path)
}
