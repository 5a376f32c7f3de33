//! The DynamoDB idempotency table against a moto server: a key is claimed once, repeats see
//! the request in progress or its stored response, a failed request frees the key, and an
//! expired record (DynamoDB's TTL deletes lazily) can be claimed again.

mod common;

use common::moto;

use manuel_aws::dynamodb::DynamoIdempotency;
use manuel_core::idempotency::{Claim, StoredResponse};
use manuel_core::ports::IdempotencyStore;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn store(url: &str) -> Result<DynamoIdempotency, common::TestError> {
    let client = common::dynamodb(url);
    // As template.yaml declares it: the user's partition, the record key sorted in it.
    let table = common::table(&client, "idempotency", "user", Some("key"), None).await?;
    Ok(DynamoIdempotency::new(client, table))
}

#[tokio::test]
async fn a_key_runs_once_and_its_response_is_kept() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let store = store(&url).await?;
    let now = 1_800_000_000;

    assert_eq!(
        store.claim("k1", "hash-a", now, now + 120).await?,
        Claim::Claimed
    );
    assert_eq!(
        store.claim("k1", "hash-a", now + 1, now + 121).await?,
        Claim::InProgress {
            payload_hash: "hash-a".to_owned()
        }
    );
    let response = StoredResponse {
        status: 201,
        content_type: Some("application/json".to_owned()),
        body: br#"{"manual_id":"m1"}"#.to_vec(),
    };
    store
        .complete("k1", "hash-a", &response, now + 3600)
        .await?;
    assert_eq!(
        store.claim("k1", "hash-b", now + 2, now + 122).await?,
        Claim::Completed {
            payload_hash: "hash-a".to_owned(),
            response
        }
    );
    // After the record's expiry the key is free again, whatever the TTL sweeper has done.
    assert_eq!(
        store.claim("k1", "hash-b", now + 3601, now + 3721).await?,
        Claim::Claimed
    );
    Ok(())
}

#[tokio::test]
async fn a_released_key_and_an_abandoned_claim_can_be_claimed_again() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let store = store(&url).await?;
    let now = 1_800_000_000;
    assert_eq!(
        store.claim("k2", "h", now, now + 120).await?,
        Claim::Claimed
    );
    store.release("k2").await?;
    assert_eq!(
        store.claim("k2", "h", now, now + 120).await?,
        Claim::Claimed
    );
    // The first claimant crashed: once its in-progress time is over, a retry takes over.
    assert_eq!(
        store.claim("k2", "h", now + 121, now + 241).await?,
        Claim::Claimed
    );
    Ok(())
}

#[tokio::test]
async fn erasing_a_prefix_removes_only_that_users_records() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let store = store(&url).await?;
    let now = 1_800_000_000;
    for key in ["aaaa#1", "aaaa#2", "bbbb#1"] {
        assert_eq!(store.claim(key, "h", now, now + 120).await?, Claim::Claimed);
    }
    assert_eq!(store.erase_prefix("aaaa#").await?, 2);
    assert_eq!(
        store.claim("aaaa#1", "h", now, now + 120).await?,
        Claim::Claimed
    );
    assert_eq!(
        store.claim("bbbb#1", "h", now, now + 120).await?,
        Claim::InProgress {
            payload_hash: "h".to_owned()
        }
    );
    Ok(())
}
