//! The predecessor's real clients, replayed: the request bodies of
//! `shared/reference/clients.md` (the React Native app and the TypeScript CLI) sent as they are
//! over HTTP to manuel-local, and the fields each client reads asserted present and meaningful.
//! Spoken questions are spoken by espeak-ng and recorded by sox as each client records them
//! (`make test` installs both).

mod common;

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Server, TestResult, assert_error, fixture, spoken};
use serde_json::{Value, json};

/// What the iOS app records (16 kHz 16-bit mono LPCM), with the `FLLR` chunk AVAudioRecorder
/// puts before the samples so that they start at byte 4096.
fn app_recording(dir: &Path, text: &str) -> TestResult<Vec<u8>> {
    let plain = spoken(
        dir,
        text,
        "recorded.wav",
        &["-r", "16000", "-c", "1", "-b", "16"],
        &[],
    )?;
    let data_at = plain
        .windows(4)
        .position(|window| window == b"data")
        .ok_or("sox wrote no data chunk")?;
    let filler = 4096 - data_at - 8 - 8;
    let mut apple = plain[..data_at].to_vec();
    apple.extend_from_slice(b"FLLR");
    apple.extend_from_slice(&u32::try_from(filler)?.to_le_bytes());
    apple.extend(std::iter::repeat_n(0u8, filler));
    apple.extend_from_slice(&plain[data_at..]);
    let riff_size = u32::try_from(apple.len() - 8)?;
    apple[4..8].copy_from_slice(&riff_size.to_le_bytes());
    assert_eq!(&apple[4088..4092], b"data");
    Ok(apple)
}

/// What the CLI's `query voice` sends, shaped like its committed sample: sox at 44.1 kHz mono,
/// 32-bit WAVE_FORMAT_EXTENSIBLE, exactly 204,800 frames.
fn cli_recording(dir: &Path, text: &str) -> TestResult<Vec<u8>> {
    let clip = spoken(
        dir,
        text,
        "recorded.wav",
        &["-c", "1", "-b", "32", "-e", "signed-integer"],
        &["rate", "44100", "pad", "0", "5", "trim", "0", "204800s"],
    )?;
    assert_eq!(&clip[20..22], &0xFFFEu16.to_le_bytes(), "not extensible");
    let data_at = clip
        .windows(4)
        .position(|window| window == b"data")
        .ok_or("sox wrote no data chunk")?;
    assert_eq!(clip.len() - data_at - 8, 204_800 * 4, "not 204,800 frames");
    Ok(clip)
}

/// Lower-case words without punctuation.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Words of `said` missing from `heard`, as a share of `said`.
fn words_missed(said: &str, heard: &str) -> f64 {
    let heard = words(heard);
    let said = words(said);
    let missed = said.iter().filter(|word| !heard.contains(word)).count();
    missed as f64 / said.len().max(1) as f64
}

/// The fields both clients read from a text answer.
fn assert_answer_fields(answer: &Value) {
    assert!(
        answer["answer"].as_str().is_some_and(|a| !a.is_empty()),
        "{answer}"
    );
    assert!(answer["response_time_ms"].is_number(), "{answer}");
    assert!(answer["cache_status"].is_string(), "{answer}");
    assert!(answer["context_found"].is_boolean(), "{answer}");
    for source in answer["sources"].as_array().into_iter().flatten() {
        assert!(source["manual_name"].is_string(), "{source}");
        assert!(source["page_number"].as_u64().is_some(), "{source}");
        assert!(source["chunk_text"].is_string(), "{source}");
        assert!(source["score"].is_number(), "{source}");
    }
}

#[tokio::test]
async fn spoken_questions_as_the_app_and_the_cli_send_them_are_answered_from_the_right_page()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let audio = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let alice = server.token("alice")?;
    let coffee = server
        .upload_ready(&alice, "coffee-machine.md", &fixture("coffee-machine.md"))
        .await?;
    let printer = server
        .upload_ready(
            &alice,
            "Acme LaserJet 200.pdf",
            &fixture("printer-manual.pdf"),
        )
        .await?;

    let cases = [
        (
            "app",
            "How do I descale the coffee machine?",
            app_recording(audio.path(), "How do I descale the coffee machine?")?,
            &coffee,
            None,
        ),
        (
            "cli",
            "What is the warranty period of the printer?",
            cli_recording(audio.path(), "What is the warranty period of the printer?")?,
            &printer,
            Some(5),
        ),
    ];
    for (client, said, clip, manual, page) in cases {
        // Both clients send an empty `question` next to the clip.
        let (status, answer) = server
            .post(
                &alice,
                "/api/query",
                &json!({
                    "question": "",
                    "file_data": STANDARD.encode(&clip),
                    "content_type": "audio/wav",
                    "include_sources": true,
                }),
            )
            .await?;
        assert_eq!(status, 200, "{client}: {answer}");
        let heard = answer["question"].as_str().unwrap_or_default();
        assert!(
            words_missed(said, heard) <= 0.25,
            "{client}: said {said:?}, heard {heard:?}"
        );
        assert_answer_fields(&answer);
        assert_eq!(answer["context_found"], true, "{client}: {answer}");
        assert_eq!(
            answer["sources"][0]["manual_id"], manual["id"],
            "{client}: {answer}"
        );
        if let Some(page) = page {
            assert_eq!(
                answer["sources"][0]["page_number"], page,
                "{client}: {answer}"
            );
        }
    }

    // A blank question without a clip is still refused.
    let (status, body) = server
        .post(&alice, "/api/query", &json!({"question": " \n"}))
        .await?;
    assert_error(status, &body, 400, "validation_failed");
    server.stop()
}

/// What JavaScript's `encodeURIComponent` makes of `value` (both clients build paths with it).
fn encode_uri_component(value: &str) -> String {
    value
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A small text manual of its own (distinct bytes: uploads are deduplicated by content).
fn appliance_notes(number: usize) -> String {
    format!(
        "Appliance {number} notes\n\nThe model {number} toaster browns bread in {} minutes. \
         Clean the crumb tray of model {number} every week.\n",
        number + 2
    )
}

/// Pixels of a decoded RGB(A) PNG that are highlighted in yellow: white under yellow at the
/// predecessor's opacity is (255, 255, 155), black text under it (100, 100, 0).
fn yellow_pixels(png_bytes: &[u8]) -> TestResult<(usize, u32, u32)> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info()?;
    let mut buffer = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
    let info = reader.next_frame(&mut buffer)?;
    let channels = info.color_type.samples();
    let yellow = buffer[..info.buffer_size()]
        .chunks_exact(channels)
        .filter(|pixel| {
            let (r, g, b) = (
                i32::from(pixel[0]),
                i32::from(pixel[1]),
                i32::from(pixel[2]),
            );
            r >= 90 && g >= 90 && (r - g).abs() < 30 && r - b >= 60
        })
        .count();
    Ok((yellow, info.width, info.height))
}

async fn fetch_bytes(server: &Server, url: &str) -> TestResult<(u16, String, Vec<u8>)> {
    let response = server.client.get(url).send().await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, content_type, response.bytes().await?.to_vec()))
}

/// Waits until every manual of the list is ready; returns the list.
async fn list_when_ready(server: &Server, token: &str, expected: usize) -> TestResult<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, list) = server.get(token, "/api/manuals").await?;
        assert_eq!(status, 200, "{list}");
        let manuals = list["manuals"].as_array().ok_or("no manuals")?;
        if manuals.len() == expected && manuals.iter().all(|m| m["status"] == "ready") {
            return Ok(list);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all {expected} manuals ready: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_clients_list_ask_show_draw_delete_and_follow_ingestion_of_their_own_manuals()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let alice = server.token("alice")?;
    let bob = server.token("bob")?;

    // Uploads as each client sends them: the app's camelCase body for the PDF, the CLI's
    // snake_case body for 25 text manuals. The CLI keeps `key` as the manual's id.
    let printer = fixture("printer-manual.pdf");
    let (status, uploaded) = server
        .post(
            &alice,
            "/api/manuals/upload",
            &json!({
                "fileName": "Acme LaserJet 200.pdf",
                "fileContent": STANDARD.encode(&printer),
                "contentType": "application/pdf",
                "metadata": {"title": "LaserJet", "category": "printers"},
            }),
        )
        .await?;
    assert_eq!(status, 201, "{uploaded}");
    let printer_id = uploaded["manual_id"].as_str().ok_or("no id")?.to_owned();
    let mut cli_keys = Vec::new();
    for number in 1..=25 {
        let (status, body) = server
            .post(
                &alice,
                "/api/manuals/upload",
                &json!({
                    "file_name": format!("appliance-{number}.txt"),
                    "file_data": STANDARD.encode(appliance_notes(number)),
                    "content_type": "text/plain",
                }),
            )
            .await?;
        assert_eq!(status, 201, "{body}");
        for fields in [&body, &body["data"]] {
            assert!(fields["file_name"].is_string(), "{body}");
            assert_eq!(fields["status"], "processing", "{body}");
            assert!(
                fields["size_bytes"].as_u64().is_some_and(|size| size > 0),
                "{body}"
            );
        }
        let key = body["key"].as_str().ok_or("no key")?.to_owned();
        assert!(key.starts_with(&common::manuals_prefix("alice")), "{key}");
        cli_keys.push(key);
    }
    let (status, body) = server.upload(&bob, "bob-printer.pdf", &printer).await?;
    assert_eq!(status, 201, "{body}");

    // GET /api/manuals without parameters: all 26, the fields the app reads.
    let list = list_when_ready(&server, &alice, 26).await?;
    assert_eq!(list["count"], 26, "{list}");
    assert_eq!(list["next_token"], Value::Null, "{list}");
    for manual in list["manuals"].as_array().into_iter().flatten() {
        assert!(
            manual["id"].is_string() && manual["name"].is_string(),
            "{manual}"
        );
        assert!(manual["upload_date"].is_string(), "{manual}");
        assert!(
            manual["size"].as_u64().is_some_and(|size| size > 0),
            "{manual}"
        );
        assert!(
            manual["pages"].as_u64().is_some_and(|pages| pages > 0),
            "{manual}"
        );
        assert_eq!(manual["processing_status"], manual["status"], "{manual}");
    }
    // With `limit` the list still pages.
    let (_, paged) = server.get(&alice, "/api/manuals?limit=20").await?;
    assert_eq!(paged["count"], 20, "{paged}");
    assert!(paged["next_token"].is_string(), "{paged}");

    // The CLI's typed question: the answer, its sources and the usage it prints.
    let (status, answer) = server
        .post(
            &alice,
            "/api/query",
            &json!({"question": "What is the warranty period of the printer?", "include_sources": true}),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_answer_fields(&answer);
    assert_eq!(answer["context_found"], true, "{answer}");
    assert!(
        answer["timestamp"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000),
        "{answer}"
    );
    let usage = &answer["usage"];
    assert_eq!(usage["daily_queries"], 1, "{answer}");
    assert_eq!(usage["monthly_queries"], 1, "{answer}");
    assert!(
        usage["daily_limit"].as_u64().is_some_and(|limit| limit > 0),
        "{answer}"
    );
    assert!(
        usage["monthly_limit"]
            .as_u64()
            .is_some_and(|limit| limit > 0),
        "{answer}"
    );
    let source = &answer["sources"][0];
    assert_eq!(source["manual_id"], printer_id.as_str(), "{answer}");
    let page = source["page_number"].as_u64().ok_or("no page")?;

    // The app's detail screen: `pdfUrl` and the statistics, real.
    let (status, detail) = server
        .get(
            &alice,
            &format!("/api/manuals/{}", encode_uri_component(&printer_id)),
        )
        .await?;
    assert_eq!(status, 200, "{detail}");
    let pdf_url = detail["pdfUrl"].as_str().ok_or("no pdfUrl")?.to_owned();
    assert!(
        !pdf_url.contains("alice"),
        "a link names its owner: {pdf_url}"
    );
    assert_eq!(detail["uploadDate"], detail["upload_date"], "{detail}");
    assert!(
        detail["pages"].as_u64().is_some_and(|pages| pages >= page),
        "{detail}"
    );
    assert!(detail["size"].as_u64().is_some(), "{detail}");
    assert_eq!(detail["status"], "ready", "{detail}");
    assert!(
        detail["chunks"].as_u64().is_some_and(|chunks| chunks > 0),
        "{detail}"
    );
    assert_eq!(detail["queryCount"], 1, "{detail}");
    assert!(detail["lastQueried"].is_string(), "{detail}");
    let (status, content_type, pdf) = fetch_bytes(&server, &pdf_url).await?;
    assert_eq!((status, content_type.as_str()), (200, "application/pdf"));
    assert_eq!(pdf, printer);

    // The app's cited-page view: the page drawn, the cited passage highlighted in yellow.
    let ask_page = |body: Value| {
        let server = &server;
        let alice = alice.clone();
        async move { server.post(&alice, "/api/pdf-page", &body).await }
    };
    let request = json!({
        "pdf_url": pdf_url,
        "page_number": page,
        "highlight_text": source["chunk_text"],
        "highlight_color": "yellow",
    });
    let (status, drawn) = ask_page(request.clone()).await?;
    assert_eq!(status, 200, "{drawn}");
    assert_eq!(drawn["page_number"], page, "{drawn}");
    assert_eq!(drawn["highlight_color"], "yellow", "{drawn}");
    assert!(drawn["highlight_text"].is_string(), "{drawn}");
    assert_eq!(drawn["cached"], false, "{drawn}");
    assert!(drawn["processing_time_ms"].is_number(), "{drawn}");
    assert_eq!(drawn["highlight_found"], true, "{drawn}");
    let image_url = drawn["page_image_url"]
        .as_str()
        .ok_or("no page_image_url")?
        .to_owned();
    assert!(
        !image_url.contains("alice"),
        "a link names its owner: {image_url}"
    );
    let (status, content_type, image) = fetch_bytes(&server, &image_url).await?;
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"));
    let (highlighted, width, height) = yellow_pixels(&image)?;
    // About 144 dpi: a Letter or A4 page is about 1200 pixels wide.
    assert!(
        (1000..1400).contains(&width) && height > width,
        "{width}x{height}"
    );
    assert!(highlighted > 1000, "{highlighted} yellow pixels");
    // The same page without a highlight has none of those pixels; asked again, it is cached.
    let (status, plain) = ask_page(json!({"pdf_url": pdf_url, "page_number": page})).await?;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["highlight_found"], false, "{plain}");
    let (_, _, plain_image) = fetch_bytes(
        &server,
        plain["page_image_url"].as_str().unwrap_or_default(),
    )
    .await?;
    let (unhighlighted, _, _) = yellow_pixels(&plain_image)?;
    assert!(
        unhighlighted * 20 < highlighted,
        "{unhighlighted} vs {highlighted}"
    );
    let (_, again) = ask_page(request.clone()).await?;
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(again["highlights"], drawn["highlights"], "{again}");
    // A source's `pdf_url` (with `#page=`) and the storage key name the manual too; a highlight
    // that is not on the page still draws it; a page number as a string is accepted.
    for pdf_url in [
        source["pdf_url"].as_str().unwrap_or_default().to_owned(),
        detail["key"].as_str().unwrap_or_default().to_owned(),
    ] {
        let (status, body) = ask_page(json!({
            "pdf_url": pdf_url,
            "page_number": page.to_string(),
            "highlight_text": "zebra quantum flux capacitor",
            "highlight_color": "blue",
        }))
        .await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["highlight_found"], false, "{body}");
        assert_eq!(body["highlight_color"], "blue", "{body}");
    }
    // Out of range is 400; a text manual has no pages to draw (415).
    let pages = detail["pages"].as_u64().unwrap_or_default();
    let (status, body) = ask_page(json!({"pdf_url": pdf_url, "page_number": pages + 1})).await?;
    assert_error(status, &body, 400, "validation_failed");
    let (status, body) = ask_page(json!({"pdf_url": cli_keys[0], "page_number": 1})).await?;
    assert_error(status, &body, 415, "unsupported_media_type");

    // Nobody else's manual, and no other URL, is ever drawn or fetched.
    let bait = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bait_url = format!(
        "http://{}/files/manuals/alice/{printer_id}.pdf?name=x&expires=9999999999&sig=00",
        bait.local_addr()?
    );
    let forged = pdf_url.replace("sig=", "sig=0");
    let bobs_key = format!(
        "{}00000000-0000-4000-8000-000000000000.pdf",
        common::manuals_prefix("bob")
    );
    let foreign = [
        bobs_key.as_str(),
        bait_url.as_str(),
        "https://manuals-bucket.s3.eu-west-1.amazonaws.com/manuals/alice/x.pdf",
        forged.as_str(),
        "manuals/bob/00000000-0000-4000-8000-000000000000.pdf",
    ];
    for url in foreign {
        let (status, body) = ask_page(json!({"pdf_url": url, "page_number": 1})).await?;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = server
        .post(
            &bob,
            "/api/pdf-page",
            &json!({"pdf_url": pdf_url, "page_number": 1}),
        )
        .await?;
    assert_error(status, &body, 404, "not_found");
    let nobody_came =
        tokio::time::timeout(std::time::Duration::from_millis(300), bait.accept()).await;
    assert!(
        nobody_came.is_err(),
        "the server fetched a URL it was given"
    );

    // The CLI's ingestion commands: the caller's own manuals only.
    let (status, jobs) = server.get(&alice, "/api/ingestion/status").await?;
    assert_eq!(status, 200, "{jobs}");
    assert_eq!(jobs["total_jobs"], 26, "{jobs}");
    assert!(jobs["note"].is_string(), "{jobs}");
    for job in jobs["jobs"].as_array().into_iter().flatten() {
        assert!(job["job_id"].is_string(), "{job}");
        assert_eq!(job["status"], "COMPLETE", "{job}");
        assert!(
            job["s3_key"]
                .as_str()
                .is_some_and(|key| key.starts_with(&common::manuals_prefix("alice"))),
            "{job}"
        );
        assert!(
            job["created_at"]
                .as_i64()
                .is_some_and(|t| t > 1_700_000_000),
            "{job}"
        );
        assert!(job["updated_at"].as_i64().is_some(), "{job}");
    }
    let (_, bobs) = server.get(&bob, "/api/ingestion/status").await?;
    assert_eq!(bobs["total_jobs"], 1, "{bobs}");
    assert!(
        bobs["jobs"][0]["s3_key"]
            .as_str()
            .is_some_and(|key| key.starts_with(&common::manuals_prefix("bob"))),
        "{bobs}"
    );
    let one = format!(
        "/api/ingestion/status?job_id={}",
        encode_uri_component(&cli_keys[1])
    );
    let (status, job) = server.get(&alice, &one).await?;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "COMPLETE", "{job}");
    assert!(job["statistics"].is_object(), "{job}");
    assert_eq!(job["failure_reasons"], json!([]), "{job}");
    let (status, body) = server.get(&bob, &one).await?;
    assert_error(status, &body, 404, "not_found");

    // The CLI deletes by storage key; another user's key is an unknown id.
    let key_path = format!("/api/manuals/{}", encode_uri_component(&cli_keys[0]));
    let (status, body) = server.delete(&bob, &key_path).await?;
    assert_error(status, &body, 404, "not_found");
    let (status, deleted) = server.delete(&alice, &key_path).await?;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(
        deleted["cleanup_summary"]["completed_steps"], 4,
        "{deleted}"
    );
    let (status, body) = server.get(&alice, &key_path).await?;
    assert_error(status, &body, 404, "not_found");
    let (_, list) = server.get(&alice, "/api/manuals").await?;
    assert_eq!(list["count"], 25, "{list}");

    // Deleting the PDF by its key removes its drawn pages.
    let printer_key = detail["key"].as_str().ok_or("no key")?;
    let (status, _) = server
        .delete(
            &alice,
            &format!("/api/manuals/{}", encode_uri_component(printer_key)),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, _, _) = fetch_bytes(&server, &image_url).await?;
    assert_eq!(status, 404, "a drawn page outlived its manual");
    server.stop()
}

#[tokio::test]
async fn erasing_a_user_removes_the_pages_drawn_for_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let carol = server.token("carol")?;
    let manual = server
        .upload_ready(&carol, "printer.pdf", &fixture("printer-manual.pdf"))
        .await?;
    let (status, drawn) = server
        .post(
            &carol,
            "/api/pdf-page",
            &json!({"pdf_url": manual["pdfUrl"], "page_number": 1, "highlight_text": "printer"}),
        )
        .await?;
    assert_eq!(status, 200, "{drawn}");
    let image_url = drawn["page_image_url"].as_str().ok_or("no link")?;
    assert_eq!(fetch_bytes(&server, image_url).await?.0, 200);
    let (status, erased) = server.delete(&carol, "/api/user/data").await?;
    assert_eq!(status, 200, "{erased}");
    // The image and the details kept beside it.
    assert_eq!(erased["deleted"]["rendered_pages"], 2, "{erased}");
    assert_eq!(fetch_bytes(&server, image_url).await?.0, 404);
    server.stop()
}

#[tokio::test]
async fn quota_refusals_and_errors_carry_the_fields_the_clients_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(dir.path(), &[], &[("DAILY_QUOTA_LIMIT", "1")])?;
    let dave = server.token("dave")?;
    server
        .upload_ready(&dave, "coffee-machine.md", &fixture("coffee-machine.md"))
        .await?;
    let question =
        json!({"question": "How do I descale the coffee machine?", "include_sources": true});
    let (status, _) = server.post(&dave, "/api/query", &question).await?;
    assert_eq!(status, 200);
    let response = server
        .client
        .post(server.url("/api/query"))
        .bearer_auth(&dave)
        .json(&json!({"question": "How do I clean the milk frother?"}))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 429);
    let header: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .ok_or("no Retry-After")?;
    let body: Value = response.json().await?;
    assert_eq!(body["code"], "quota_exceeded", "{body}");
    // The CLI waits max(header, body `retry_after`, 60): both say when the day resets.
    assert_eq!(body["retry_after"], header, "{body}");
    assert!(header >= 1, "{header}");
    assert!(
        body["timestamp"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000),
        "{body}"
    );
    // Every error body has the predecessor's `timestamp`.
    let (status, body) = server.get(&dave, "/api/manuals/not-a-manual").await?;
    assert_error(status, &body, 404, "not_found");
    assert!(body["timestamp"].is_i64(), "{body}");
    server.stop()
}
