//! End to end over real HTTP: upload → ingestion → grounded answers, isolation between users,
//! failures, deletion and restart.

mod common;

use common::{Server, TestResult, assert_error, fixture};
use serde_json::{Value, json};

fn first_source(answer: &Value) -> &Value {
    &answer["sources"][0]
}

#[tokio::test]
async fn manuals_answer_questions_with_cited_pages_and_stay_private() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let alice = server.token("alice")?;
    let bob = server.token("bob")?;

    let printer = server
        .upload_ready(
            &alice,
            "Acme LaserJet 200.pdf",
            &fixture("printer-manual.pdf"),
        )
        .await?;
    assert_eq!(printer["pages"], 6);
    assert_eq!(printer["name"], "Acme LaserJet 200.pdf");
    let coffee = server
        .upload_ready(&alice, "coffee-machine.md", &fixture("coffee-machine.md"))
        .await?;
    let router = server
        .upload_ready(&alice, "router-notes.txt", &fixture("router-notes.txt"))
        .await?;
    assert!(
        coffee["pages"].as_u64().is_some_and(|pages| pages >= 2),
        "{coffee}"
    );
    assert!(
        router["pages"].as_u64().is_some_and(|pages| pages >= 2),
        "{router}"
    );

    // A how-to question gets the whole step list from the right page.
    let answer = server
        .ask(&alice, "How do I replace the ink cartridge?")
        .await?;
    assert_eq!(answer["context_found"], true, "{answer}");
    assert_eq!(
        first_source(&answer)["manual_id"],
        printer["id"],
        "{answer}"
    );
    assert_eq!(first_source(&answer)["page_number"], 3, "{answer}");
    let text = answer["answer"].as_str().unwrap_or_default();
    assert!(text.contains("[1]"), "{text}");
    assert!(
        text.contains("protective strip") && text.contains("test page"),
        "the whole list: {text}"
    );
    assert_eq!(answer["question"], "How do I replace the ink cartridge?");
    assert!(
        answer["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(answer["response_time_ms"].is_number());
    assert!(
        first_source(&answer)["pdf_url"]
            .as_str()
            .is_some_and(|url| url.ends_with("#page=3"))
    );
    // The cited passages first, then further pages up to three sources, each page once; every
    // `[n]` in the answer points at a cited source.
    let sources = answer["sources"].as_array().ok_or("no sources")?;
    assert_eq!(sources.len(), 3, "{answer}");
    let cited = sources.iter().take_while(|s| s["cited"] == true).count();
    assert!(cited >= 1, "{answer}");
    assert!(
        sources[cited..].iter().all(|s| s["cited"] == false),
        "{answer}"
    );
    let mut pages: Vec<String> = sources
        .iter()
        .map(|s| format!("{}#{}", s["manual_id"], s["page_number"]))
        .collect();
    pages.sort();
    pages.dedup();
    assert_eq!(pages.len(), 3, "{answer}");
    for n in cited + 1..=3 {
        assert!(
            !text.contains(&format!("[{n}]")),
            "[{n}] is not cited: {text}"
        );
    }

    let answer = server
        .ask(&alice, "What is the warranty period of the printer?")
        .await?;
    assert_eq!(
        first_source(&answer)["manual_id"],
        printer["id"],
        "{answer}"
    );
    assert_eq!(first_source(&answer)["page_number"], 5, "{answer}");
    assert!(
        answer["answer"]
            .as_str()
            .unwrap_or_default()
            .contains("two years"),
        "{answer}"
    );

    let answer = server
        .ask(&alice, "How do I descale the coffee machine?")
        .await?;
    assert_eq!(first_source(&answer)["manual_id"], coffee["id"], "{answer}");

    let answer = server
        .ask(&alice, "How do I reset the router to factory settings?")
        .await?;
    assert_eq!(first_source(&answer)["manual_id"], router["id"], "{answer}");

    let answer = server.ask(&alice, "What is the capital of France?").await?;
    assert_eq!(answer["context_found"], false, "{answer}");
    assert_eq!(answer["sources"], json!([]));

    // Asked in other words than the manuals use: found by meaning (dense retrieval), not words.
    let answer = server
        .ask(
            &alice,
            "My espresso machine stays cold and won't warm up. What should I check?",
        )
        .await?;
    assert_eq!(answer["context_found"], true, "{answer}");
    assert_eq!(first_source(&answer)["manual_id"], coffee["id"], "{answer}");
    assert_eq!(first_source(&answer)["page_number"], 4, "{answer}");
    let answer = server
        .ask(&alice, "How long is the guarantee on the Acme LaserJet?")
        .await?;
    assert_eq!(first_source(&answer)["page_number"], 5, "{answer}");

    // Bob sees nothing of Alice's: not in the list, not by id, not in answers, not by delete.
    let (status, list) = server.get(&bob, "/api/manuals").await?;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 0, "{list}");
    let printer_id = printer["id"].as_str().ok_or("id")?;
    let (status, body) = server
        .get(&bob, &format!("/api/manuals/{printer_id}"))
        .await?;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .delete(&bob, &format!("/api/manuals/{printer_id}"))
        .await?;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = server
        .get(&bob, "/api/manuals/00000000-0000-4000-8000-000000000000")
        .await?;
    assert_error(status, &body, 404, "not_found");
    let answer = server
        .ask(&bob, "How do I replace the ink cartridge?")
        .await?;
    assert_eq!(answer["context_found"], false, "{answer}");
    assert_eq!(answer["sources"], json!([]));
    let answer = server.ask(&bob, "manual").await?;
    assert_eq!(answer["sources"], json!([]));

    // The same bytes again: the same manual. Bob's copy is his own.
    let (status, again) = server
        .upload(&alice, "again.pdf", &fixture("printer-manual.pdf"))
        .await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["manual_id"], printer["id"]);
    let bobs = server
        .upload_ready(&bob, "printer.pdf", &fixture("printer-manual.pdf"))
        .await?;
    assert_ne!(bobs["id"], printer["id"]);
    let (_, list) = server.get(&alice, "/api/manuals").await?;
    assert_eq!(list["count"], 3, "no second copy: {list}");
    for item in list["manuals"].as_array().ok_or("manuals")? {
        for field in ["id", "name", "upload_date", "size", "pages", "status"] {
            assert!(item.get(field).is_some(), "{field} in {item}");
        }
    }

    // The download link returns the original bytes; an altered one is refused.
    let link = printer["download_url"].as_str().ok_or("download_url")?;
    let response = server.client.get(link).send().await?;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.bytes().await?.as_ref(),
        fixture("printer-manual.pdf").as_slice()
    );
    assert!(!link.contains("alice"), "a link names its owner: {link}");
    let tampered = link.replace(
        &common::manuals_prefix("alice"),
        &common::manuals_prefix("bob"),
    );
    assert_ne!(tampered, link);
    let (status, body) = server.send(server.client.get(tampered)).await?;
    assert_error(status, &body, 403, "forbidden");
    // A link signed with the server's own secret is still refused once it has expired.
    let secret = std::fs::read(dir.path().join("keys/link-signing-secret"))?;
    let key = link
        .split("/files/")
        .nth(1)
        .and_then(|rest| rest.split('?').next())
        .ok_or("no key in the link")?;
    let short_lived = manuel_local::objects::LinkSigner::new(secret, &server.base).sign(
        key,
        "printer.pdf",
        std::time::Duration::ZERO,
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = server.send(server.client.get(short_lived)).await?;
    assert_error(status, &body, 403, "forbidden");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("expired")),
        "{body}"
    );

    // Deleting removes it everywhere; Bob's copy is untouched.
    let (status, deleted) = server
        .delete(&alice, &format!("/api/manuals/{printer_id}"))
        .await?;
    assert_eq!(status, 200, "{deleted}");
    let (status, body) = server
        .get(&alice, &format!("/api/manuals/{printer_id}"))
        .await?;
    assert_error(status, &body, 404, "not_found");
    let answer = server
        .ask(&alice, "How do I replace the ink cartridge?")
        .await?;
    assert!(
        answer["sources"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["manual_id"] != printer["id"])),
        "{answer}"
    );
    let (status, _) = server.send(server.client.get(link)).await?;
    assert_eq!(status, 404);
    let answer = server
        .ask(&bob, "How do I replace the ink cartridge?")
        .await?;
    assert_eq!(first_source(&answer)["manual_id"], bobs["id"], "{answer}");

    // After a restart everything is still there and answers.
    server.stop()?;
    let server = Server::start(dir.path(), &[])?;
    let (_, list) = server.get(&alice, "/api/manuals").await?;
    assert_eq!(list["count"], 2, "{list}");
    let answer = server
        .ask(&alice, "How do I descale the coffee machine?")
        .await?;
    assert_eq!(first_source(&answer)["manual_id"], coffee["id"], "{answer}");
    server.stop()
}

#[tokio::test]
async fn unreadable_manuals_fail_with_a_reason_and_bad_uploads_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &["--max-upload-mb", "1"])?;
    let carol = server.token("carol")?;

    for (fixture_name, reason_word) in [
        ("encrypted.pdf", "encrypted"),
        ("damaged.pdf", "damaged"),
        ("no-text.pdf", "text"),
    ] {
        let (status, body) = server
            .upload(&carol, fixture_name, &fixture(fixture_name))
            .await?;
        assert_eq!(status, 201, "{fixture_name}: {body}");
        let id = body["manual_id"].as_str().ok_or("id")?;
        let detail = server.wait_processed(&carol, id).await?;
        assert_eq!(detail["status"], "failed", "{fixture_name}: {detail}");
        let reason = detail["status_reason"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(reason.contains(reason_word), "{fixture_name}: {reason}");
    }

    let (status, body) = server
        .upload(&carol, "notes.pdf", &fixture("notes.bin"))
        .await?;
    assert_error(status, &body, 415, "unsupported_media_type");
    let (status, body) = server.upload(&carol, "empty.txt", b"").await?;
    assert_error(status, &body, 400, "validation_failed");
    let big = "All work and no play. ".repeat(60_000);
    let upload = json!({"file_name": "big.txt", "file_data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, big.as_bytes())});
    let (status, body) = common::send_oversized(
        &server,
        &carol,
        "/api/manuals/upload",
        upload.to_string().as_bytes(),
    )
    .await?;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body) = server
        .post(
            &carol,
            "/api/manuals/upload",
            &json!({"file_name": "x.txt", "file_data": "%%%not base64%%%"}),
        )
        .await?;
    assert_error(status, &body, 400, "validation_failed");

    // The mobile app's camelCase body works too, and names are reduced to a safe subset.
    let (status, body) = server
        .post(
            &carol,
            "/api/manuals/upload",
            &json!({"fileName": "Kitchen <Timer>.txt", "fileContent": "U2V0IHRoZSB0aW1lciBieSB0dXJuaW5nIHRoZSBkaWFsLg==", "contentType": "text/plain"}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["file_name"], "Kitchen _Timer_.txt");
    assert_eq!(body["data"]["file_name"], "Kitchen _Timer_.txt");

    let (_, list) = server.get(&carol, "/api/manuals").await?;
    assert_eq!(list["count"], 4, "refused uploads stored nothing: {list}");
    server.stop()
}

#[tokio::test]
async fn lists_are_paginated() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let dave = server.token("dave")?;
    for n in 0..5 {
        let (status, body) = server
            .upload(
                &dave,
                &format!("note-{n}.txt"),
                format!("Note number {n}: press the button.").as_bytes(),
            )
            .await?;
        assert_eq!(status, 201, "{body}");
    }
    let mut seen = Vec::new();
    let mut path = "/api/manuals?limit=2".to_owned();
    loop {
        let (status, page) = server.get(&dave, &path).await?;
        assert_eq!(status, 200, "{page}");
        for item in page["manuals"].as_array().ok_or("manuals")? {
            seen.push(item["name"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_token"].as_str() {
            Some(token) => path = format!("/api/manuals?limit=2&next_token={token}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "note-4.txt",
            "note-3.txt",
            "note-2.txt",
            "note-1.txt",
            "note-0.txt"
        ]
    );

    // A token is Dave's alone, names no one, and does not survive a change.
    let (_, first) = server.get(&dave, "/api/manuals?limit=2").await?;
    let token = first["next_token"]
        .as_str()
        .ok_or("no next_token")?
        .to_owned();
    assert!(!token.contains("dave"), "{token}");
    let erin = server.token("erin")?;
    let (status, body) = server
        .get(&erin, &format!("/api/manuals?limit=2&next_token={token}"))
        .await?;
    assert_error(status, &body, 400, "validation_failed");
    let (cursor, tag) = token.split_once('.').ok_or("token without a tag")?;
    let mut altered = tag.to_owned().into_bytes();
    altered[0] = if altered[0] == b'A' { b'B' } else { b'A' };
    let altered = format!("{cursor}.{}", String::from_utf8(altered)?);
    let (status, body) = server
        .get(&dave, &format!("/api/manuals?limit=2&next_token={altered}"))
        .await?;
    assert_error(status, &body, 400, "validation_failed");

    for bad in [
        "/api/manuals?limit=0",
        "/api/manuals?limit=abc",
        "/api/manuals?limit=1000",
        "/api/manuals?next_token=garbage!",
        "/api/manuals?sort=name",
    ] {
        let (status, body) = server.get(&dave, bad).await?;
        assert_error(status, &body, 400, "validation_failed");
    }
    server.stop()
}

#[tokio::test]
async fn unfinished_processing_resumes_after_a_restart() -> TestResult {
    use manuel_core::domain::{DocumentKind, Manual, ManualStatus, UserId};
    use manuel_core::ports::ManualRepository;

    let dir = tempfile::tempdir()?;
    // A manual recorded as `processing` whose server went away before it was processed.
    let text = fixture("router-notes.txt");
    let user = UserId::parse("erin").ok_or("user")?;
    let id = "4b8f3a59-1c1e-4d5e-9a51-3c0f6c1e2b7d";
    let key = format!("manuals/erin/{id}.txt");
    let path = dir.path().join("objects").join(&key);
    std::fs::create_dir_all(path.parent().ok_or("parent")?)?;
    std::fs::write(&path, &text)?;
    {
        let store = manuel_local::store::SqliteStore::open(&dir.path().join("manuel.sqlite3"))?;
        let now = chrono::Utc::now();
        store
            .insert(&Manual {
                id: id.to_owned(),
                user_id: user,
                name: "router-notes.txt".to_owned(),
                key,
                kind: DocumentKind::Text,
                size_bytes: text.len() as u64,
                sha256: "0".repeat(64),
                status: ManualStatus::Processing,
                status_reason: None,
                pages: None,
                created_at: now,
                updated_at: now,
            })
            .await?;
    }
    let server = Server::start(dir.path(), &[])?;
    let erin = server.token("erin")?;
    let detail = server.wait_processed(&erin, id).await?;
    assert_eq!(detail["status"], "ready", "{detail}");
    let answer = server.ask(&erin, "How do I reset the router?").await?;
    assert_eq!(first_source(&answer)["manual_id"], id, "{answer}");
    // Stored under the earlier layout (the user id in the key), it was moved at the start: its
    // link names no user, and its file is where the link says.
    let link = detail["download_url"].as_str().ok_or("no download_url")?;
    assert!(!link.contains("erin"), "{link}");
    assert!(!path.exists());
    let response = server.client.get(link).send().await?;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.bytes().await?.as_ref(), text.as_slice());
    server.stop()
}
