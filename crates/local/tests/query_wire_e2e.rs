//! The wire format of `POST /api/query`, held still: the bodies of a computed answer, the same
//! answer from the cache and a refusal are compared with `tests/golden/query.json`, field by
//! field and value by value, with only what differs per request masked (ids, times, link
//! signatures). A refactoring of the query handler must leave this test green; a deliberate
//! change of the answers (retrieval or answering) regenerates the file with
//! `MANUEL_UPDATE_GOLDEN=1 cargo test -p manuel-local --test query_wire_e2e` and says so.

mod common;

use std::path::PathBuf;

use common::{Server, TestResult, fixture};
use serde_json::{Value, json};

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/query.json")
}

/// The body with what changes from one request to the next replaced by a marker.
fn masked(mut body: Value) -> Value {
    for field in ["request_id", "timestamp", "response_time_ms"] {
        if body.get(field).is_some() {
            body[field] = json!(format!("<{field}>"));
        }
    }
    if let Some(sources) = body["sources"].as_array_mut() {
        for source in sources {
            source["manual_id"] = json!("<manual_id>");
            if let Some(url) = source["pdf_url"].as_str() {
                // A signed link: its path and page are the contract, its signature is not.
                let page = url.rsplit_once("#page=").map(|(_, page)| page.to_owned());
                source["pdf_url"] =
                    json!(format!("<signed link>#page={}", page.unwrap_or_default()));
            }
        }
    }
    body
}

#[tokio::test]
async fn answers_cached_answers_and_refusals_keep_their_wire_format() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let token = server.token("wire-format")?;
    server
        .upload_ready(&token, "printer-manual.pdf", &fixture("printer-manual.pdf"))
        .await?;

    let question = "How do I replace the ink cartridge?";
    let computed = server.ask(&token, question).await?;
    let cached = server.ask(&token, question).await?;
    let refused = server
        .ask(
            &token,
            "What is the airspeed velocity of an unladen swallow?",
        )
        .await?;
    assert_eq!(computed["cache_status"], "miss", "{computed}");
    assert_eq!(cached["cache_status"], "hit", "{cached}");
    assert_eq!(refused["context_found"], false, "{refused}");
    let bodies = json!({
        "computed": masked(computed),
        "cached": masked(cached),
        "refused": masked(refused),
    });

    if std::env::var_os("MANUEL_UPDATE_GOLDEN").is_some() {
        std::fs::write(golden_path(), serde_json::to_string_pretty(&bodies)? + "\n")?;
    }
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(golden_path())?)?;
    for case in ["computed", "cached", "refused"] {
        assert_eq!(
            bodies[case],
            golden[case],
            "{case}: the body differs from tests/golden/query.json:\n{}",
            serde_json::to_string_pretty(&bodies[case])?
        );
    }
    server.stop()
}
