//! Bedrock adapters against aws-smithy-mocks (moto has no Bedrock): the requests they send
//! (user filter, HYBRID search, model id, per-document ingestion) and how answers are read back.
// Fixture builders fail loudly: a malformed fixture is a broken test, not a case to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_bedrockagent::operation::delete_knowledge_base_documents::DeleteKnowledgeBaseDocumentsOutput;
use aws_sdk_bedrockagent::operation::get_knowledge_base_documents::GetKnowledgeBaseDocumentsOutput;
use aws_sdk_bedrockagent::operation::ingest_knowledge_base_documents::{
    IngestKnowledgeBaseDocumentsInput, IngestKnowledgeBaseDocumentsOutput,
};
use aws_sdk_bedrockagent::types::{DocumentStatus, KnowledgeBaseDocumentDetail};
use aws_sdk_bedrockagentruntime::operation::retrieve::{RetrieveInput, RetrieveOutput};
use aws_sdk_bedrockagentruntime::types::{
    KnowledgeBaseRetrievalResult, RetrievalFilter, RetrievalResultContent, SearchType,
};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseInput, ConverseOutput};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput as Output, Message, StopReason, TokenUsage,
};
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::Document;
use chrono::Utc;
use manuel_aws::bedrock::{
    BedrockAnswerModel, BedrockKnowledgeBase, ConverseSettings, KnowledgeBaseSettings,
    PAGE_NUMBER_KEY, VectorStore,
};
use manuel_aws::s3::S3ObjectStore;
use manuel_core::PortError;
use manuel_core::domain::{DocumentKind, Manual, ManualStatus, RetrievedChunk, UserId};
use manuel_core::ports::{AnswerModel, KnowledgeBase};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn manual(owner: &str, id: &str) -> Manual {
    Manual {
        id: id.to_owned(),
        user_id: user(owner),
        name: "Printer manual.pdf".to_owned(),
        key: format!("manuals/{owner}/{id}.pdf"),
        kind: DocumentKind::Pdf,
        size_bytes: 1000,
        sha256: "ab".repeat(32),
        status: ManualStatus::Processing,
        status_reason: None,
        pages: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn settings() -> KnowledgeBaseSettings {
    settings_for(VectorStore::OpenSearchServerless)
}

fn settings_for(vector_store: VectorStore) -> KnowledgeBaseSettings {
    KnowledgeBaseSettings {
        knowledge_base_id: "KB12345678".to_owned(),
        data_source_id: "DS12345678".to_owned(),
        vector_store,
        ingestion_wait: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
    }
}

fn result(owner: &str, manual_id: &str, page: i64, text: &str) -> KnowledgeBaseRetrievalResult {
    KnowledgeBaseRetrievalResult::builder()
        .content(RetrievalResultContent::builder().text(text).build())
        .score(0.8)
        .metadata("user_id", Document::String(owner.to_owned()))
        .metadata("manual_id", Document::String(manual_id.to_owned()))
        .metadata(
            "manual_name",
            Document::String("Printer manual.pdf".to_owned()),
        )
        .metadata(
            PAGE_NUMBER_KEY,
            Document::Number(aws_smithy_types::Number::PosInt(page as u64)),
        )
        .build()
}

fn unused_s3() -> Arc<S3ObjectStore> {
    let put =
        mock!(aws_sdk_s3::Client::put_object).then_output(|| PutObjectOutput::builder().build());
    Arc::new(S3ObjectStore::new(
        mock_client!(aws_sdk_s3, [&put]),
        "manuals-bucket",
    ))
}

/// A knowledge base whose Retrieve answers with `results` every time, and the requests it made.
fn recording_knowledge_base(
    store: VectorStore,
    results: Vec<KnowledgeBaseRetrievalResult>,
) -> (BedrockKnowledgeBase, Arc<Mutex<Vec<RetrieveInput>>>) {
    let seen: Arc<Mutex<Vec<RetrieveInput>>> = Arc::default();
    let recorder = Arc::clone(&seen);
    let retrieve = mock!(aws_sdk_bedrockagentruntime::Client::retrieve)
        .match_requests(move |input| {
            recorder.lock().unwrap().push(input.clone());
            true
        })
        .then_output(move || {
            RetrieveOutput::builder()
                .set_retrieval_results(Some(results.clone()))
                .build()
                .unwrap()
        });
    let runtime = mock_client!(aws_sdk_bedrockagentruntime, RuleMode::MatchAny, [&retrieve]);
    let agent = mock_client!(aws_sdk_bedrockagent, []);
    let kb = BedrockKnowledgeBase::new(runtime, agent, unused_s3(), settings_for(store));
    (kb, seen)
}

/// Whether `filter` is `user_id` equals `user`.
fn names_user(filter: &RetrievalFilter, user: &str) -> bool {
    matches!(filter, RetrievalFilter::Equals(attribute)
        if attribute.key() == "user_id" && attribute.value() == &Document::String(user.to_owned()))
}

#[tokio::test]
async fn retrieve_always_filters_by_user_with_hybrid_search_and_maps_pages() -> TestResult {
    let (kb, seen) = recording_knowledge_base(
        VectorStore::OpenSearchServerless,
        vec![
            result("alice", "m1", 5, "The warranty lasts two years."),
            // A result of another user must never come back, even if the service sent one.
            result("mallory", "m9", 1, "Mallory's secret."),
        ],
    );

    let chunks = kb
        .retrieve(&user("alice"), "how long is the warranty", None, 5)
        .await?;
    assert_eq!(
        chunks,
        vec![RetrievedChunk {
            manual_id: "m1".to_owned(),
            page: 5,
            text: "The warranty lasts two years.".to_owned(),
            score: 0.8,
            similarity: None,
        }]
    );
    let narrowed = kb
        .retrieve(
            &user("alice"),
            "warranty",
            Some(&["m1".to_owned(), "m2".to_owned()]),
            3,
        )
        .await?;
    assert_eq!(narrowed.len(), 1);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for input in seen.iter() {
        assert_eq!(input.knowledge_base_id(), Some("KB12345678"));
        let search = input
            .retrieval_configuration()
            .and_then(|c| c.vector_search_configuration())
            .unwrap();
        assert_eq!(search.override_search_type(), Some(&SearchType::Hybrid));
        let filter = search.filter().unwrap();
        let equals_alice = |filter: &RetrievalFilter| names_user(filter, "alice");
        match filter {
            RetrievalFilter::AndAll(parts) => {
                assert!(parts.iter().any(equals_alice), "{filter:?}");
                assert!(
                    parts
                        .iter()
                        .any(|part| matches!(part, RetrievalFilter::In(attribute)
                        if attribute.key() == "manual_id"
                            && attribute.value() == &Document::Array(vec![
                                Document::String("m1".to_owned()),
                                Document::String("m2".to_owned()),
                            ])))
                );
                assert_eq!(search.number_of_results(), 3);
            }
            other => {
                assert!(equals_alice(other), "{other:?}");
                assert_eq!(search.number_of_results(), 5);
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn retrieval_asks_each_vector_store_for_the_search_it_has_and_always_filters_by_user()
-> TestResult {
    for (store, expected) in [
        (VectorStore::S3Vectors, SearchType::Semantic),
        (VectorStore::OpenSearchServerless, SearchType::Hybrid),
    ] {
        let (kb, seen) = recording_knowledge_base(store, Vec::new());
        kb.retrieve(&user("alice"), "warranty", None, 5).await?;
        kb.retrieve(&user("alice"), "warranty", Some(&["m1".to_owned()]), 5)
            .await?;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for input in seen.iter() {
            let search = input
                .retrieval_configuration()
                .and_then(|c| c.vector_search_configuration())
                .unwrap();
            assert_eq!(search.override_search_type(), Some(&expected), "{store:?}");
            // The same filter shape on both stores: user_id equals, alone or with manual_id in.
            let names_alice = |filter: &RetrievalFilter| names_user(filter, "alice");
            match search.filter().unwrap() {
                RetrievalFilter::AndAll(parts) => assert!(parts.iter().any(names_alice)),
                other => assert!(names_alice(other), "{other:?}"),
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_throttled_retrieve_is_a_transient_failure_worth_retrying() -> TestResult {
    let retrieve = mock!(aws_sdk_bedrockagentruntime::Client::retrieve).then_error(|| {
        aws_sdk_bedrockagentruntime::operation::retrieve::RetrieveError::ThrottlingException(
            aws_sdk_bedrockagentruntime::types::error::ThrottlingException::builder()
                .message("Rate exceeded")
                .meta(
                    aws_sdk_bedrockagentruntime::error::ErrorMetadata::builder()
                        .code("ThrottlingException")
                        .message("Rate exceeded")
                        .build(),
                )
                .build(),
        )
    });
    let runtime = mock_client!(aws_sdk_bedrockagentruntime, [&retrieve]);
    let kb = BedrockKnowledgeBase::new(
        runtime,
        mock_client!(aws_sdk_bedrockagent, []),
        unused_s3(),
        settings(),
    );
    let error = kb
        .retrieve(&user("alice"), "warranty", None, 5)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PortError::Transient {
                service: "bedrock-retrieve",
                ..
            }
        ),
        "{error:?}"
    );
    Ok(())
}

fn detail(status: DocumentStatus) -> KnowledgeBaseDocumentDetail {
    KnowledgeBaseDocumentDetail::builder()
        .knowledge_base_id("KB12345678")
        .data_source_id("DS12345678")
        .status(status)
        .build()
        .unwrap()
}

/// The key and body of one `PutObject`.
type RecordedPut = (Option<String>, Vec<u8>);

#[tokio::test]
async fn ingestion_writes_the_sidecar_ingests_one_document_and_waits_until_indexed() -> TestResult {
    let puts: Arc<Mutex<Vec<RecordedPut>>> = Arc::default();
    let put_recorder = Arc::clone(&puts);
    let put = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(move |input| {
            put_recorder.lock().unwrap().push((
                input.key().map(str::to_owned),
                input.body().bytes().unwrap_or_default().to_vec(),
            ));
            true
        })
        .then_output(|| PutObjectOutput::builder().build());
    let s3 = Arc::new(S3ObjectStore::new(
        mock_client!(aws_sdk_s3, [&put]),
        "manuals-bucket",
    ));

    let ingested: Arc<Mutex<Vec<IngestKnowledgeBaseDocumentsInput>>> = Arc::default();
    let ingest_recorder = Arc::clone(&ingested);
    let ingest = mock!(aws_sdk_bedrockagent::Client::ingest_knowledge_base_documents)
        .match_requests(move |input| {
            ingest_recorder.lock().unwrap().push(input.clone());
            true
        })
        .then_output(|| IngestKnowledgeBaseDocumentsOutput::builder().build());
    // Not yet known, then starting, in progress, indexed.
    let status = mock!(aws_sdk_bedrockagent::Client::get_knowledge_base_documents)
        .sequence()
        .output(|| GetKnowledgeBaseDocumentsOutput::builder().build())
        .output(|| {
            GetKnowledgeBaseDocumentsOutput::builder()
                .document_details(detail(DocumentStatus::Starting))
                .build()
        })
        .output(|| {
            GetKnowledgeBaseDocumentsOutput::builder()
                .document_details(detail(DocumentStatus::InProgress))
                .build()
        })
        .output(|| {
            GetKnowledgeBaseDocumentsOutput::builder()
                .document_details(detail(DocumentStatus::Indexed))
                .build()
        })
        .build();
    let agent = mock_client!(aws_sdk_bedrockagent, RuleMode::MatchAny, [&ingest, &status]);
    let kb = BedrockKnowledgeBase::new(
        mock_client!(aws_sdk_bedrockagentruntime, []),
        agent,
        s3,
        settings(),
    );

    kb.ingest(&manual("alice", "m1"), &[]).await?;

    let puts = puts.lock().unwrap();
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].0.as_deref(),
        Some("manuals/alice/m1.pdf.metadata.json")
    );
    let body: serde_json::Value = serde_json::from_slice(&puts[0].1)?;
    assert_eq!(
        body,
        serde_json::json!({"metadataAttributes": {
            "user_id": "alice", "manual_id": "m1", "manual_name": "Printer manual.pdf"}})
    );
    let ingested = ingested.lock().unwrap();
    assert_eq!(
        ingested.len(),
        1,
        "one ingestion request, never a data-source sync"
    );
    let request = &ingested[0];
    assert_eq!(request.knowledge_base_id(), Some("KB12345678"));
    assert_eq!(request.data_source_id(), Some("DS12345678"));
    assert_eq!(request.documents().len(), 1);
    let document = &request.documents()[0];
    assert_eq!(
        document
            .content()
            .and_then(|c| c.s3())
            .and_then(|s| s.s3_location())
            .map(|l| l.uri()),
        Some("s3://manuals-bucket/manuals/alice/m1.pdf")
    );
    assert_eq!(
        document
            .metadata()
            .and_then(|m| m.s3_location())
            .map(|l| l.uri()),
        Some("s3://manuals-bucket/manuals/alice/m1.pdf.metadata.json")
    );
    assert_eq!(status.num_calls(), 4);
    Ok(())
}

#[tokio::test]
async fn a_document_bedrock_refuses_fails_with_its_reason_and_a_slow_one_is_retryable() -> TestResult
{
    let ingest = mock!(aws_sdk_bedrockagent::Client::ingest_knowledge_base_documents)
        .then_output(|| IngestKnowledgeBaseDocumentsOutput::builder().build());
    let failed =
        mock!(aws_sdk_bedrockagent::Client::get_knowledge_base_documents).then_output(|| {
            GetKnowledgeBaseDocumentsOutput::builder()
                .document_details(
                    KnowledgeBaseDocumentDetail::builder()
                        .knowledge_base_id("KB12345678")
                        .data_source_id("DS12345678")
                        .status(DocumentStatus::Failed)
                        .status_reason("File size exceeds the limit")
                        .build()
                        .unwrap(),
                )
                .build()
        });
    let agent = mock_client!(aws_sdk_bedrockagent, RuleMode::MatchAny, [&ingest, &failed]);
    let kb = BedrockKnowledgeBase::new(
        mock_client!(aws_sdk_bedrockagentruntime, []),
        agent,
        unused_s3(),
        settings(),
    );
    let error = kb.ingest(&manual("alice", "m1"), &[]).await.unwrap_err();
    assert!(
        matches!(&error, PortError::Failed(message) if message.contains("File size exceeds the limit")),
        "{error:?}"
    );

    let slow =
        mock!(aws_sdk_bedrockagent::Client::get_knowledge_base_documents).then_output(|| {
            GetKnowledgeBaseDocumentsOutput::builder()
                .document_details(detail(DocumentStatus::InProgress))
                .build()
        });
    let ingest_again = mock!(aws_sdk_bedrockagent::Client::ingest_knowledge_base_documents)
        .then_output(|| IngestKnowledgeBaseDocumentsOutput::builder().build());
    let agent = mock_client!(
        aws_sdk_bedrockagent,
        RuleMode::MatchAny,
        [&ingest_again, &slow]
    );
    let mut quick = settings();
    quick.ingestion_wait = Duration::from_millis(50);
    let kb = BedrockKnowledgeBase::new(
        mock_client!(aws_sdk_bedrockagentruntime, []),
        agent,
        unused_s3(),
        quick,
    );
    let error = kb.ingest(&manual("alice", "m1"), &[]).await.unwrap_err();
    assert!(matches!(error, PortError::Unavailable { .. }), "{error:?}");
    assert_eq!(
        ingest_again.num_calls(),
        0,
        "an ingestion already in progress is not started again"
    );
    Ok(())
}

#[tokio::test]
async fn remove_deletes_the_one_document() -> TestResult {
    let delete = mock!(aws_sdk_bedrockagent::Client::delete_knowledge_base_documents)
        .match_requests(|input| {
            input.document_identifiers().len() == 1
                && input.document_identifiers()[0].s3().map(|l| l.uri())
                    == Some("s3://manuals-bucket/manuals/alice/m1.pdf")
        })
        .then_output(|| DeleteKnowledgeBaseDocumentsOutput::builder().build());
    let agent = mock_client!(aws_sdk_bedrockagent, [&delete]);
    let kb = BedrockKnowledgeBase::new(
        mock_client!(aws_sdk_bedrockagentruntime, []),
        agent,
        unused_s3(),
        settings(),
    );
    kb.remove(&manual("alice", "m1")).await?;
    assert_eq!(delete.num_calls(), 1);
    Ok(())
}

fn converse_reply(text: &str) -> ConverseOutput {
    ConverseOutput::builder()
        .output(Output::Message(
            Message::builder()
                .role(ConversationRole::Assistant)
                .content(ContentBlock::Text(text.to_owned()))
                .build()
                .unwrap(),
        ))
        .stop_reason(StopReason::EndTurn)
        .usage(
            TokenUsage::builder()
                .input_tokens(420)
                .output_tokens(37)
                .total_tokens(457)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn passages() -> Vec<RetrievedChunk> {
    vec![
        RetrievedChunk {
            manual_id: "m1".into(),
            page: 3,
            text: "Lift the cover.".into(),
            score: 0.9,
            similarity: None,
        },
        RetrievedChunk {
            manual_id: "m1".into(),
            page: 5,
            text: "The warranty lasts two years.".into(),
            score: 0.7,
            similarity: None,
        },
    ]
}

#[tokio::test]
async fn converse_sends_model_prompt_and_settings_and_maps_citations_and_tokens() -> TestResult {
    let seen: Arc<Mutex<Vec<ConverseInput>>> = Arc::default();
    let recorder = Arc::clone(&seen);
    let converse = mock!(aws_sdk_bedrockruntime::Client::converse)
        .match_requests(move |input| {
            recorder.lock().unwrap().push(input.clone());
            true
        })
        .then_output(|| converse_reply("The warranty lasts two years [2]."));
    let model = BedrockAnswerModel::new(
        mock_client!(aws_sdk_bedrockruntime, [&converse]),
        ConverseSettings {
            temperature: 0.1,
            max_tokens: 800,
            ..ConverseSettings::new("eu.anthropic.claude-sonnet-4-20250514-v1:0")
        },
    );
    let answer = model
        .answer(&user("alice"), "How long is the warranty?", &passages())
        .await?;
    assert!(answer.found);
    assert_eq!(answer.text, "The warranty lasts two years [1].");
    assert_eq!(answer.cited, vec![1]);
    assert_eq!((answer.input_tokens, answer.output_tokens), (420, 37));

    let seen = seen.lock().unwrap();
    let input = &seen[0];
    assert_eq!(
        input.model_id(),
        Some("eu.anthropic.claude-sonnet-4-20250514-v1:0")
    );
    let config = input.inference_config().unwrap();
    assert_eq!(config.temperature(), Some(0.1));
    assert_eq!(config.max_tokens(), Some(800));
    let system = input.system();
    assert!(
        matches!(&system[0], aws_sdk_bedrockruntime::types::SystemContentBlock::Text(text)
        if text.contains("only the numbered passages") && text.contains("NOT_FOUND"))
    );
    let user_turn = input.messages()[0].content()[0].as_text().unwrap();
    assert!(user_turn.contains("[2] (page 5)\nThe warranty lasts two years."));
    Ok(())
}

#[tokio::test]
async fn converse_refusals_and_uncited_answers_are_not_found() -> TestResult {
    let converse = mock!(aws_sdk_bedrockruntime::Client::converse)
        .sequence()
        .output(|| converse_reply("NOT_FOUND"))
        .output(|| converse_reply("Probably three years."))
        .build();
    let model = BedrockAnswerModel::new(
        mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&converse]),
        ConverseSettings {
            temperature: 0.0,
            max_tokens: 100,
            ..ConverseSettings::new("m")
        },
    );
    for _ in 0..2 {
        let answer = model
            .answer(&user("alice"), "How long is the warranty?", &passages())
            .await?;
        assert!(!answer.found);
        assert!(answer.cited.is_empty());
        assert_eq!(answer.text, manuel_core::domain::NOT_FOUND_ANSWER);
    }
    // No passages: the model is not even asked.
    let answer = model.answer(&user("alice"), "anything", &[]).await?;
    assert!(!answer.found);
    assert_eq!(converse.num_calls(), 2);
    let _unused: Option<ConverseError> = None;
    Ok(())
}

/// What ingestion ends with when Bedrock reports `status`.
async fn ingestion_ending_in(status: DocumentStatus) -> Result<(), PortError> {
    let ingest = mock!(aws_sdk_bedrockagent::Client::ingest_knowledge_base_documents)
        .then_output(|| IngestKnowledgeBaseDocumentsOutput::builder().build());
    let final_state = mock!(aws_sdk_bedrockagent::Client::get_knowledge_base_documents)
        .sequence()
        .output(|| GetKnowledgeBaseDocumentsOutput::builder().build())
        .output(|| {
            GetKnowledgeBaseDocumentsOutput::builder()
                .document_details(detail(DocumentStatus::InProgress))
                .build()
        })
        .output(move || {
            GetKnowledgeBaseDocumentsOutput::builder()
                .document_details(detail(status.clone()))
                .build()
        })
        .build();
    let agent = mock_client!(
        aws_sdk_bedrockagent,
        RuleMode::MatchAny,
        [&ingest, &final_state]
    );
    let mut quick = settings();
    quick.poll_interval = Duration::from_millis(5);
    let kb = BedrockKnowledgeBase::new(
        mock_client!(aws_sdk_bedrockagentruntime, []),
        agent,
        unused_s3(),
        quick,
    );
    kb.ingest(&manual("alice", "m1"), &[]).await
}

#[tokio::test]
async fn partial_indexing_is_final_a_partly_indexed_manual_is_ready_and_partial_metadata_fails() {
    // Some chunks indexed: searchable, so ready (not left to time out into `failed`).
    assert!(
        ingestion_ending_in(DocumentStatus::PartiallyIndexed)
            .await
            .is_ok()
    );
    // The owner's metadata on only some chunks: those could never be found by the user_id
    // filter, so the manual fails with the reason instead of looking ready.
    let error = ingestion_ending_in(DocumentStatus::MetadataPartiallyIndexed)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PortError::Failed(message) if message.contains("METADATA_PARTIALLY_INDEXED")),
        "{error:?}"
    );
}
