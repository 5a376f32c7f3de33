//! The manuals and rate-limit tables against a moto server (`make test` sets
//! `MANUEL_TEST_MOTO_URL`).

mod common;

use common::moto;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{GlobalSecondaryIndex, KeyType, Projection, ProjectionType};
use base64::Engine;
use chrono::{Duration, Utc};
use manuel_aws::dynamodb::{DynamoLimits, DynamoManuals};
use manuel_core::domain::{DocumentKind, Manual, ManualStatus, ProcessingOutcome, UserId};
use manuel_core::ports::{
    Citations, InsertOutcome, ListError, ManualRepository, RateLimitStore, ReplayGuard,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn manuals_table(client: &Client) -> Result<String, common::TestError> {
    let by_created = GlobalSecondaryIndex::builder()
        .index_name("by_created")
        .key_schema(common::key("user_id", KeyType::Hash)?)
        .key_schema(common::key("created_sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()?;
    common::table(
        client,
        "manuals",
        "user_id",
        Some("manual_id"),
        Some((by_created, &["created_sk"])),
    )
    .await
}

fn manual(user: &str, n: i64, sha: &str) -> Manual {
    let created = Utc::now() - Duration::minutes(10 - n);
    Manual {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: UserId::parse(user).unwrap_or_else(|| unreachable!()),
        name: format!("manual-{n}.pdf"),
        key: format!("manuals/{user}/{n}.pdf"),
        kind: DocumentKind::Pdf,
        size_bytes: 100 + n as u64,
        sha256: sha.to_owned(),
        status: ManualStatus::Processing,
        status_reason: None,
        pages: None,
        created_at: created,
        updated_at: created,
    }
}

#[tokio::test]
async fn manuals_are_deduplicated_listed_newest_first_and_kept_per_user() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let client = common::dynamodb(&url);
    let store = DynamoManuals::new(client.clone(), manuals_table(&client).await?);
    let alice = UserId::parse("alice").ok_or("user")?;
    let bob = UserId::parse("bob").ok_or("user")?;

    let first = manual("alice", 1, "sha-a");
    assert!(matches!(
        store.insert(&first).await?,
        InsertOutcome::Inserted
    ));
    let same_bytes = manual("alice", 2, "sha-a");
    match store.insert(&same_bytes).await? {
        InsertOutcome::Duplicate(existing) => assert_eq!(existing.id, first.id),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert!(
        matches!(
            store.insert(&manual("bob", 1, "sha-a")).await?,
            InsertOutcome::Inserted
        ),
        "other users are independent"
    );
    for n in 3..=5 {
        store
            .insert(&manual("alice", n, &format!("sha-{n}")))
            .await?;
    }
    assert_eq!(
        store.find_by_sha256(&alice, "sha-a").await?.map(|m| m.id),
        Some(first.id.clone())
    );
    assert!(store.get(&bob, &first.id).await?.is_none(), "not Bob's");

    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(&alice, 2, after.as_deref()).await?;
        names.extend(page.manuals.iter().map(|m| m.name.clone()));
        match page.next_token {
            Some(token) => after = Some(token),
            None => break,
        }
    }
    assert_eq!(
        names,
        [
            "manual-5.pdf",
            "manual-4.pdf",
            "manual-3.pdf",
            "manual-1.pdf"
        ]
    );
    assert!(matches!(
        store.list(&alice, 2, Some("garbage!")).await,
        Err(ListError::BadToken)
    ));
    let alices_token = store
        .list(&alice, 1, None)
        .await?
        .next_token
        .ok_or("token")?;
    // A cursor names no user: Bob paging with Alice's cursor stays in his own partition (the
    // API seals each token to its user as well, so it would not even get this far).
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&alices_token)?;
    assert!(!String::from_utf8(decoded)?.contains("alice"));
    let bobs = store.list(&bob, 10, Some(&alices_token)).await?;
    assert!(
        bobs.manuals.iter().all(|manual| manual.user_id == bob),
        "{:?}",
        bobs.manuals
    );

    assert!(
        store
            .finish_processing(&alice, &first.id, &ProcessingOutcome::Ready { pages: 6 })
            .await?
    );
    assert!(
        !store
            .finish_processing(
                &alice,
                &first.id,
                &ProcessingOutcome::Failed {
                    reason: "late".into()
                }
            )
            .await?,
        "only from processing"
    );
    let ready = store.list_ready(&alice).await?;
    assert_eq!(
        ready
            .iter()
            .map(|m| (m.id.as_str(), m.pages))
            .collect::<Vec<_>>(),
        vec![(first.id.as_str(), Some(6))]
    );

    assert!(!store.delete(&bob, &first.id).await?);
    assert!(store.delete(&alice, &first.id).await?);
    assert!(store.get(&alice, &first.id).await?.is_none());
    assert!(
        store.find_by_sha256(&alice, "sha-a").await?.is_none(),
        "the marker went with it"
    );
    assert!(
        matches!(
            store.insert(&manual("alice", 6, "sha-a")).await?,
            InsertOutcome::Inserted
        ),
        "re-upload after delete"
    );
    Ok(())
}

#[tokio::test]
async fn citations_are_counted_on_the_manual_and_go_with_it() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let client = common::dynamodb(&url);
    let store = DynamoManuals::new(client.clone(), manuals_table(&client).await?);
    let alice = UserId::parse("alice").ok_or("user")?;
    let cited = manual("alice", 1, "c1");
    let other = manual("alice", 2, "c2");
    store.insert(&cited).await?;
    store.insert(&other).await?;
    assert_eq!(
        store.citations(&alice, &cited.id).await?,
        Citations::default()
    );

    let first = Utc::now() - Duration::minutes(5);
    let last = Utc::now();
    let gone = uuid::Uuid::new_v4().to_string();
    store
        .record_citations(&alice, &[cited.id.clone(), gone.clone()], first)
        .await?;
    store
        .record_citations(&alice, std::slice::from_ref(&cited.id), last)
        .await?;
    let counted = store.citations(&alice, &cited.id).await?;
    assert_eq!(counted.count, 2);
    assert_eq!(
        counted.last.map(|at| at.timestamp_micros()),
        Some(last.timestamp_micros())
    );
    assert_eq!(store.citations(&alice, &other.id).await?.count, 0);
    // A manual that does not exist is not created by a citation, nor is Bob's seen.
    assert!(store.get(&alice, &gone).await?.is_none());
    let bob = UserId::parse("bob").ok_or("user")?;
    assert_eq!(store.citations(&bob, &cited.id).await?.count, 0);
    // Counting leaves the record readable, and the statistics go with it.
    assert!(store.get(&alice, &cited.id).await?.is_some());
    store.delete(&alice, &cited.id).await?;
    assert_eq!(
        store.citations(&alice, &cited.id).await?,
        Citations::default()
    );
    Ok(())
}

#[tokio::test]
async fn rate_limit_counters_count_and_signatures_are_single_use() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let client = common::dynamodb(&url);
    let table = common::table(&client, "limits", "key", None, None).await?;
    let limits = DynamoLimits::new(client, table);
    let expires = Utc::now().timestamp() + 60;
    for expected in 1..=3 {
        assert_eq!(limits.hit("user#alice#100", expires).await?, expected);
    }
    assert_eq!(limits.hit("user#bob#100", expires).await?, 1);
    assert!(limits.first_use("v1=abc", expires).await?);
    assert!(!limits.first_use("v1=abc", expires).await?);
    Ok(())
}
