//! The answer cache over HTTP, with a redis-server behind manuel-local: hits are free and fast,
//! uploads and deletes invalidate, users never share answers, and a Redis outage is invisible.

mod common;

use std::time::Duration;

use common::{Server, TestResult, fixture};
use manuel_redis::test_server::RedisServer;

async fn daily_used(server: &Server, token: &str) -> TestResult<u64> {
    let (_, quota) = server.get(token, "/api/user/quota").await?;
    quota["quotas"]["daily"]["used"]
        .as_u64()
        .ok_or_else(|| format!("no usage in {quota}").into())
}

#[tokio::test]
async fn cached_answers_are_free_private_and_invalidated_by_manual_changes() -> TestResult {
    let Some(redis) = RedisServer::start(None)? else {
        return Ok(());
    };
    let port = redis.port();
    let dir = tempfile::tempdir()?;
    let url = redis.url();
    let server = Server::start_with_env(dir.path(), &[], &[("REDIS_URL", url.as_str())])?;
    let alice = server.token("alice")?;
    let bob = server.token("bob")?;

    let upload = |token: String, name: &'static str, file: &'static str| {
        let server = &server;
        async move {
            let (status, body) = server.upload(&token, name, &fixture(file)).await?;
            assert_eq!(status, 201, "{body}");
            let id = body["manual_id"].as_str().ok_or("id")?.to_owned();
            server.wait_processed(&token, &id).await?;
            Ok::<_, Box<dyn std::error::Error>>(id)
        }
    };
    let printer = upload(alice.clone(), "printer.pdf", "printer-manual.pdf").await?;
    let question = "How do I replace the ink cartridge?";

    let first = server.ask(&alice, question).await?;
    assert_eq!(first["cache_status"], "miss");
    let used = daily_used(&server, &alice).await?;
    let again = server.ask(&alice, question).await?;
    assert_eq!(again["cache_status"], "hit", "{again}");
    assert_eq!(again["answer"], first["answer"]);
    assert_eq!(again["cost_info"]["total_cost_eur"], 0.0);
    assert_eq!(
        daily_used(&server, &alice).await?,
        used,
        "a hit costs no quota"
    );
    assert_ne!(again["request_id"], first["request_id"]);
    assert!(
        again["sources"][0]["pdf_url"]
            .as_str()
            .is_some_and(|url| url.contains("#page=3"))
    );

    // Bob asks the same words about his own manuals: his own answer.
    upload(bob.clone(), "coffee.md", "coffee-machine.md").await?;
    let bobs = server.ask(&bob, question).await?;
    assert_eq!(bobs["cache_status"], "miss");
    assert!(
        bobs["sources"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["manual_id"] != printer.as_str())),
        "{bobs}"
    );

    // A new manual changes Alice's corpus: the next answer is computed again.
    upload(alice.clone(), "router.txt", "router-notes.txt").await?;
    assert_eq!(server.ask(&alice, question).await?["cache_status"], "miss");
    assert_eq!(server.ask(&alice, question).await?["cache_status"], "hit");
    // Deleting the cited manual: no cached answer cites it any more.
    let (status, _) = server
        .delete(&alice, &format!("/api/manuals/{printer}"))
        .await?;
    assert_eq!(status, 200);
    let after = server.ask(&alice, question).await?;
    assert_eq!(after["cache_status"], "miss");
    assert!(
        after["sources"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["manual_id"] != printer.as_str())),
        "{after}"
    );

    // Redis goes away mid-test: questions are still answered, hits still come from L1.
    drop(redis);
    let during = server
        .ask(&alice, "How do I reset the router to factory settings?")
        .await?;
    assert_eq!(during["cache_status"], "miss");
    assert_eq!(during["context_found"], true, "{during}");
    assert_eq!(
        server
            .ask(&alice, "How do I reset the router to factory settings?")
            .await?["cache_status"],
        "hit"
    );
    // And comes back.
    let _redis = RedisServer::start(Some(port))?.ok_or("restart")?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let back = server
        .ask(&alice, "Where is the default admin address of the router?")
        .await?;
    assert_eq!(back["cache_status"], "miss");
    server.stop()
}
