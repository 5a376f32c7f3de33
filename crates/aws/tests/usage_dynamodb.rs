//! The DynamoDB usage table against a moto server (`make test` starts one and sets
//! `MANUEL_TEST_MOTO_URL`).

mod common;

use common::moto;

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use manuel_aws::dynamodb::DynamoUsageStore;
use manuel_core::domain::UserId;
use manuel_core::ports::UsageStore;
use manuel_core::usage::{Operation, Pricing, QuotaLimits, QuotaWindows, Reservation};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn store(url: &str) -> Result<DynamoUsageStore, Box<dyn std::error::Error>> {
    Ok(store_and_table(url).await?.0)
}

/// The store, and a client and the name of its table to look at the items themselves.
async fn store_and_table(
    url: &str,
) -> Result<(DynamoUsageStore, Client, String), common::TestError> {
    let client = common::dynamodb(url);
    let table = common::table(&client, "usage", "user_id", Some("sk"), None).await?;
    Ok((DynamoUsageStore::new(client.clone(), &table), client, table))
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap_or_else(|| unreachable!())
}

#[tokio::test]
async fn two_hundred_concurrent_reservations_grant_exactly_the_limit() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let store = Arc::new(store(&url).await?);
    let windows = QuotaWindows::at(at("2026-11-22T10:00:00Z"));
    let limits = QuotaLimits {
        daily: 50,
        monthly: 1000,
    };
    let alice = user("alice");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (store, windows, alice) = (Arc::clone(&store), windows.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            store
                .reserve(&alice, &windows, limits, Operation::Query)
                .await
        }));
    }
    let (mut granted, mut refused) = (0, 0);
    for task in tasks {
        match task.await?? {
            Reservation::Granted(_) => granted += 1,
            Reservation::Refused(numbers) => {
                refused += 1;
                assert_eq!(numbers.daily_used, 50);
            }
        }
    }
    assert_eq!((granted, refused), (50, 150));
    let state = store.usage(&alice, &windows, limits).await?;
    assert_eq!(
        (state.numbers.daily_used, state.numbers.monthly_used),
        (50, 50)
    );
    assert_eq!(state.last_operation, Some(Operation::Query));
    Ok(())
}

#[tokio::test]
async fn days_and_months_roll_over_and_refunds_give_back() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let store = store(&url).await?;
    let bob = user("bob");
    let limits = QuotaLimits {
        daily: 2,
        monthly: 3,
    };
    let last_day = QuotaWindows::at(at("2026-11-30T23:59:59Z"));
    let next_day = QuotaWindows::at(at("2026-12-01T00:00:01Z"));
    let later = QuotaWindows::at(at("2026-12-02T08:00:00Z"));

    for _ in 0..2 {
        assert!(matches!(
            store
                .reserve(&bob, &last_day, limits, Operation::Query)
                .await?,
            Reservation::Granted(_)
        ));
    }
    assert!(matches!(
        store
            .reserve(&bob, &last_day, limits, Operation::Query)
            .await?,
        Reservation::Refused(_)
    ));
    // A new day in a new month: both counters start again.
    assert!(matches!(
        store
            .reserve(&bob, &next_day, limits, Operation::Transcribe)
            .await?,
        Reservation::Granted(_)
    ));
    assert!(matches!(
        store
            .reserve(&bob, &next_day, limits, Operation::Query)
            .await?,
        Reservation::Granted(_)
    ));
    // The month carries over days: the third December reservation hits the monthly limit.
    assert!(matches!(
        store
            .reserve(&bob, &later, limits, Operation::Query)
            .await?,
        Reservation::Granted(_)
    ));
    match store
        .reserve(&bob, &later, limits, Operation::Query)
        .await?
    {
        Reservation::Refused(numbers) => {
            assert_eq!((numbers.daily_used, numbers.monthly_used), (1, 3))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A refund after a failure on our side gives the reservation back, in both windows.
    store.refund(&bob, &later).await?;
    let state = store.usage(&bob, &later, limits).await?;
    assert_eq!(
        (state.numbers.daily_used, state.numbers.monthly_used),
        (0, 2)
    );
    assert_eq!(
        store
            .daily_counts(
                &bob,
                &[
                    "2026-11-30".to_owned(),
                    "2026-12-01".to_owned(),
                    "2026-12-05".to_owned()
                ]
            )
            .await?,
        vec![2, 2, 0]
    );
    Ok(())
}

#[tokio::test]
async fn cost_records_round_trip_and_erase_keeps_only_the_current_quota() -> TestResult {
    let Some(url) = moto() else { return Ok(()) };
    let (store, client, table) = store_and_table(&url).await?;
    let carol = user("carol");
    let dave = user("dave");
    let pricing = Pricing {
        currency: "EUR".into(),
        input_per_1k_tokens: 0.003,
        output_per_1k_tokens: 0.015,
        transcribe_per_minute: 0.024,
    };
    let now = Utc::now();
    let windows = QuotaWindows::at(now);
    let limits = QuotaLimits {
        daily: 5,
        monthly: 5,
    };
    for (n, who) in [(0, &carol), (1, &carol), (2, &dave)] {
        store
            .reserve(who, &windows, limits, Operation::Query)
            .await?;
        let record = pricing.cost(
            &format!("req-{n}"),
            now + chrono::Duration::seconds(n),
            Operation::Query,
            "model",
            manuel_core::usage::Metered {
                input_tokens: 1200,
                output_tokens: 300,
                ..Default::default()
            },
        );
        store.record_cost(who, &record).await?;
    }
    let records = store
        .costs_since(&carol, now - chrono::Duration::hours(1))
        .await?;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].request_id, "req-1", "newest first");
    assert!((records[0].total_cost - (0.0036 + 0.0045)).abs() < 1e-9);
    assert_eq!(records[0].input_tokens, 1200);

    // Counters of a day and month long past.
    let past = QuotaWindows::at(now - chrono::Duration::days(40));
    store
        .reserve(&carol, &past, limits, Operation::Query)
        .await?;

    let removed = store.erase(&carol, &windows).await?;
    assert_eq!(removed, 4, "two past counters and two cost records");
    assert!(
        store
            .costs_since(&carol, now - chrono::Duration::hours(1))
            .await?
            .is_empty()
    );
    // The quota of today and this month holds across the erase; the past is gone.
    let kept = store.usage(&carol, &windows, limits).await?.numbers;
    assert_eq!((kept.daily_used, kept.monthly_used), (2, 2));
    assert_eq!(
        store
            .daily_counts(&carol, std::slice::from_ref(&past.day))
            .await?,
        vec![0]
    );
    // Nothing left names carol: the kept counters are under her id's hash.
    let raw = client
        .query()
        .table_name(&table)
        .key_condition_expression("user_id = :user")
        .expression_attribute_values(
            ":user",
            aws_sdk_dynamodb::types::AttributeValue::S("carol".to_owned()),
        )
        .send()
        .await?;
    assert_eq!(raw.count(), 0);
    assert_eq!(
        store
            .costs_since(&dave, now - chrono::Duration::hours(1))
            .await?
            .len(),
        1,
        "others untouched"
    );
    Ok(())
}
