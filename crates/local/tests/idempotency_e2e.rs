//! Idempotent retries over HTTP: a POST or DELETE repeated with the same `Idempotency-Key` and
//! body gets the first response and has no second effect; another body with that key is 422;
//! keys are per user; a failed request frees its key.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Server, TestResult, assert_error};
use serde_json::{Value, json};

async fn post_with_key(
    server: &Server,
    token: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> TestResult<(u16, Value, bool)> {
    let response = server
        .client
        .post(server.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let body = serde_json::from_str(&response.text().await?)?;
    Ok((status, body, replayed))
}

#[tokio::test]
async fn a_retried_upload_creates_one_manual_and_a_reused_key_with_another_body_is_refused()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let token = server.token("ida")?;
    let upload = |text: &str| json!({"file_name": "kettle.txt", "file_data": STANDARD.encode(text), "content_type": "text/plain"});
    let first_body = upload("Descale the kettle every month with citric acid.");

    let (status, first, replayed) = post_with_key(
        &server,
        &token,
        "/api/manuals/upload",
        "upload-1",
        &first_body,
    )
    .await?;
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, again, replayed) = post_with_key(
        &server,
        &token,
        "/api/manuals/upload",
        "upload-1",
        &first_body,
    )
    .await?;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again, first, "the stored response is replayed as it was");

    let other_body = upload("Another manual entirely.");
    let (status, body, _) = post_with_key(
        &server,
        &token,
        "/api/manuals/upload",
        "upload-1",
        &other_body,
    )
    .await?;
    assert_error(status, &body, 422, "idempotency_mismatch");

    // Keys belong to their user: Bob's "upload-1" is a new request.
    let bob = server.token("bob")?;
    let (status, bobs, replayed) = post_with_key(
        &server,
        &bob,
        "/api/manuals/upload",
        "upload-1",
        &first_body,
    )
    .await?;
    assert_eq!((status, replayed), (201, false), "{bobs}");
    assert_ne!(bobs["manual_id"], first["manual_id"]);

    let (_, list) = server.get(&token, "/api/manuals").await?;
    assert_eq!(list["count"], 1, "{list}");

    // A refused request frees its key: the corrected retry runs.
    let (status, body, _) = post_with_key(
        &server,
        &token,
        "/api/manuals/upload",
        "upload-2",
        &json!({"file_name": "x.txt", "file_data": "", "content_type": "text/plain"}),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = post_with_key(
        &server,
        &token,
        "/api/manuals/upload",
        "upload-2",
        &upload("Clean the filter weekly."),
    )
    .await?;
    assert_eq!(status, 201, "{body}");

    // An unusable key is a clear 400.
    let (status, body, _) = post_with_key(
        &server,
        &token,
        "/api/manuals/upload",
        &"k".repeat(300),
        &first_body,
    )
    .await?;
    assert_error(status, &body, 400, "validation_failed");
    assert_eq!(body["details"]["field"], "Idempotency-Key");
    server.stop()
}

#[tokio::test]
async fn a_retried_question_is_charged_once_and_a_retried_delete_replays_its_answer() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let token = server.token("quentin")?;
    let (status, uploaded) = server
        .upload(
            &token,
            "n.txt",
            b"Press the red button to start the machine.",
        )
        .await?;
    assert_eq!(status, 201, "{uploaded}");
    let id = uploaded["manual_id"]
        .as_str()
        .ok_or("manual_id")?
        .to_owned();
    server.wait_processed(&token, &id).await?;

    let question = json!({"question": "How do I start the machine?"});
    let (status, first, _) = post_with_key(&server, &token, "/api/query", "q-1", &question).await?;
    assert_eq!(status, 200, "{first}");
    let (status, again, replayed) =
        post_with_key(&server, &token, "/api/query", "q-1", &question).await?;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again["request_id"], first["request_id"]);
    let (_, quota) = server.get(&token, "/api/user/quota").await?;
    assert_eq!(quota["quotas"]["daily"]["used"], 1, "{quota}");

    let delete = |key: &'static str| {
        server
            .client
            .delete(server.url(&format!("/api/manuals/{id}")))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
    };
    let (status, deleted) = server.send(delete("d-1")).await?;
    assert_eq!(status, 200, "{deleted}");
    let (status, repeated) = server.send(delete("d-1")).await?;
    assert_eq!((status, &repeated), (200, &deleted));
    let (status, body) = server.send(delete("d-2")).await?;
    assert_error(status, &body, 404, "not_found");

    // The stored answer quoted the deleted manual: a retry with its key runs again rather
    // than replay the manual's text.
    let (status, after_delete, replayed) =
        post_with_key(&server, &token, "/api/query", "q-1", &question).await?;
    assert_eq!((status, replayed), (200, false), "{after_delete}");
    assert_eq!(after_delete["context_found"], false, "{after_delete}");

    // Erasing the user's data erases the responses kept for retries too (a stored answer is
    // the user's data): the same key and question afterwards run again.
    let (status, erased) = server.delete(&token, "/api/user/data").await?;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["deleted"]["stored_responses"], 2, "{erased}");
    let (status, after, replayed) =
        post_with_key(&server, &token, "/api/query", "q-1", &question).await?;
    assert_eq!((status, replayed), (200, false), "{after}");
    assert_ne!(after["request_id"], first["request_id"]);
    server.stop()
}
