//! Typed records and dead letters in code, on a broker: a pipeline decodes JSON before its
//! handler and fails what does not decode with `FailureKind::Decode`; a retry task sends
//! such records straight to the dead-letter topic, hands every dead letter to its
//! dead-letter handler, and, when it retries forever, never gives a record up.
#![cfg(feature = "json")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{committed_offsets, eventually, read_topic};
use serde::{Deserialize, Serialize};
use sluicegate::codec::{Encode, Json};
use sluicegate::pipeline::{BoxError, FailureKind, Handler, Pipeline};
use sluicegate::retry::{self, DeadLetter, RetryPolicy, RetryTask, RetryTopics, Stages};
use sluicegate::{ConsumerEngine, Offset};
use sluicegate_testing::{init_tracing, TestBroker, TestRecord};

on_both_brokers!(
    json_records_decode_and_the_rest_fail_as_decode_errors,
    undecodable_records_skip_retries_and_reach_the_dead_letter_handler,
    a_task_that_retries_forever_never_gives_a_record_up,
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u32,
    cents: u64,
}

/// A failure the failure handler saw: partition, offset, kind, description.
type Failures = Arc<Mutex<Vec<(i32, Offset, FailureKind, String)>>>;

/// Produces `values` to a new 2-partition topic, keyed by their index; returns the topic.
async fn topic_with(broker: &TestBroker, name: &str, values: &[Vec<u8>]) -> String {
    let topic = sluicegate_testing::unique_name(name);
    broker.create_topic(&topic, 2).await;
    let records = values
        .iter()
        .enumerate()
        .map(|(index, value)| TestRecord::keyed(index.to_string(), value.clone()))
        .collect();
    sluicegate_testing::produce_records(&broker.bootstrap_servers(), &topic, records).await;
    topic
}

fn order_bytes(id: u32) -> Vec<u8> {
    Json::<Order>::new()
        .encode(&Order {
            id,
            cents: 100 * u64::from(id),
        })
        .unwrap()
}

async fn json_records_decode_and_the_rest_fail_as_decode_errors(broker: TestBroker) {
    let mut values: Vec<Vec<u8>> = (0..20).map(order_bytes).collect();
    values.push(b"not json".to_vec());
    values.push(br#"{"id":"seven"}"#.to_vec());
    let topic = topic_with(&broker, "typed-input", &values).await;
    let group = sluicegate_testing::unique_name("typed-group");

    let handled: Arc<Mutex<Vec<Order>>> = Arc::default();
    let failures: Failures = Arc::default();
    let engine = ConsumerEngine::start(common::options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let pipeline = Pipeline::builder((handled.clone(), failures.clone()))
        .handle_decoded(
            Json::<Order>::new(),
            |state, message, order: Order| async move {
                assert_eq!(order.cents, 100 * u64::from(order.id), "decoded whole");
                state.0.lock().unwrap().push(order);
                Ok(message)
            },
        )
        .handle_failed(|state, failed| async move {
            for failure in failed {
                state.1.lock().unwrap().push((
                    failure.message.partition(),
                    failure.message.offset(),
                    failure.reason.kind,
                    failure.reason.description,
                ));
            }
        })
        .source(engine)
        .start()
        .expect("the pipeline starts");
    eventually(
        "every record was handled or failed",
        Duration::from_secs(30),
        || async { handled.lock().unwrap().len() + failures.lock().unwrap().len() >= values.len() },
    )
    .await;
    let summary = pipeline.shutdown().await;
    assert_eq!((summary.stats.processed, summary.stats.failed), (20, 2));

    let ids: BTreeSet<u32> = handled
        .lock()
        .unwrap()
        .iter()
        .map(|order| order.id)
        .collect();
    assert_eq!(ids, (0..20).collect(), "{}", broker.name());
    let failures = failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 2, "{failures:?}");
    for (partition, offset, kind, description) in &failures {
        assert_eq!(*kind, FailureKind::Decode);
        assert!(
            description.starts_with(&format!("{topic}/{partition}@{offset} does not decode: ")),
            "the reason names the record: {description}"
        );
    }
    let reasons: Vec<&str> = failures.iter().map(|failure| failure.3.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("expected ident")),
        "serde's error for `not json`: {reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("invalid type: string \"seven\"")),
        "serde's error for the wrong type: {reasons:?}"
    );
    // Failed records are acknowledged like handled ones: everything is committed.
    let records = read_topic(&broker, &topic).await;
    let mut ends: BTreeMap<i32, Offset> = BTreeMap::new();
    for record in &records {
        ends.insert(record.partition, record.offset + 1);
    }
    assert_eq!(committed_offsets(&broker, &group, &topic, 2).await, ends);
}

/// Records each dead letter it is handed.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<DeadLetter>>>);

impl Handler<DeadLetter> for Collect {
    async fn handle(&self, dead_letter: &DeadLetter) -> Result<(), BoxError> {
        self.0.lock().unwrap().push(dead_letter.clone());
        Ok(())
    }
}

/// The embedded broker has no CreateTopics: create a task's topics there up front.
async fn precreate_on_embedded(broker: &TestBroker, topics: &RetryTopics) {
    if broker.as_embedded().is_some() {
        for topic in [topics.retry(1), topics.retry(2), topics.dead_letter()] {
            broker.create_topic(&topic, 2).await;
        }
    }
}

async fn undecodable_records_skip_retries_and_reach_the_dead_letter_handler(broker: TestBroker) {
    // Orders with an odd id fail (retried twice, then dead letters); two records do not decode.
    let mut values: Vec<Vec<u8>> = (0..6).map(order_bytes).collect();
    values.push(b"{broken".to_vec());
    values.push(b"[]".to_vec());
    let topic = topic_with(&broker, "typed-retry", &values).await;
    let group = sluicegate_testing::unique_name("typed-retry-group");
    let pipeline = Pipeline::builder(()).handle_decoded(
        Json::<Order>::new(),
        |_, message, order: Order| async move {
            if order.id % 2 == 1 {
                return Err(format!("order {} is odd", order.id).into());
            }
            Ok(message)
        },
    );
    let dead_letters = Collect::default();
    let policy =
        RetryPolicy::delays([Duration::from_millis(300), Duration::from_millis(300)]).unwrap();
    let task = RetryTask::new(common::options(&broker, &group, &topic), policy, pipeline)
        .dead_letter_handler(dead_letters.clone());
    precreate_on_embedded(&broker, &task.topics()[0]).await;
    let names = task.topics()[0].clone();
    let running = task.start(&Stages::All).await.expect("the task starts");
    eventually(
        "5 dead letters were handed over",
        Duration::from_secs(60),
        || async { dead_letters.0.lock().unwrap().len() >= 5 },
    )
    .await;
    let summary = running.shutdown().await;
    assert_eq!(
        (summary.retried, summary.dead_lettered),
        (6, 5),
        "three odd orders retried twice each; they and the two undecodable records dead"
    );

    let handed = dead_letters.0.lock().unwrap().clone();
    let by_value: BTreeMap<Vec<u8>, &DeadLetter> = handed
        .iter()
        .map(|dead| (dead.record.value.clone().unwrap(), dead))
        .collect();
    assert_eq!(by_value.len(), 5, "each dead letter once: {handed:?}");
    for undecodable in [&b"{broken"[..], b"[]"] {
        let dead = by_value[undecodable];
        let history = dead.history.as_ref().expect("a retry history");
        assert_eq!(history.attempt, 2, "handled once, never retried");
        assert_eq!(history.original_topic, topic);
        assert!(
            history.error.starts_with("message handler decode error: "),
            "{}",
            history.error
        );
    }
    for id in [1, 3, 5] {
        let dead = by_value[&order_bytes(id)];
        let history = dead.history.as_ref().expect("a retry history");
        assert_eq!(history.attempt, 4, "handled three times");
        assert_eq!(
            history.error,
            format!("message handler error: order {id} is odd")
        );
        assert_eq!(dead.record.topic.as_ref(), names.dead_letter());
    }
    // The undecodable records never went to a retry topic.
    let retried: BTreeSet<Vec<u8>> = read_topic(&broker, &names.retry(1))
        .await
        .into_iter()
        .map(|record| record.value.unwrap())
        .collect();
    assert_eq!(retried, [1, 3, 5].map(order_bytes).into_iter().collect());
}

async fn a_task_that_retries_forever_never_gives_a_record_up(broker: TestBroker) {
    // Each record fails as many times as its value says, far more than the two retries.
    let values: Vec<Vec<u8>> = [0u32, 2, 5, 7].map(|n| n.to_string().into_bytes()).to_vec();
    let topic = topic_with(&broker, "forever", &values).await;
    let group = sluicegate_testing::unique_name("forever-group");
    let attempts: Arc<Mutex<BTreeMap<u32, Vec<u32>>>> = Arc::default();
    let pipeline =
        Pipeline::builder(attempts.clone()).handle_message(|attempts, message| async move {
            let record = message.data();
            let failures: u32 = std::str::from_utf8(record.value.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            let attempt = retry::attempt(record);
            attempts
                .lock()
                .unwrap()
                .entry(failures)
                .or_default()
                .push(attempt);
            if attempt <= failures {
                return Err(format!("failure {attempt} of {failures}").into());
            }
            Ok(message)
        });
    let policy = RetryPolicy::delays([Duration::from_millis(100), Duration::from_millis(200)])
        .unwrap()
        .forever()
        .unwrap();
    let dead_letters = Collect::default();
    let task = RetryTask::new(common::options(&broker, &group, &topic), policy, pipeline)
        .dead_letter_handler(dead_letters.clone());
    precreate_on_embedded(&broker, &task.topics()[0]).await;
    let names = task.topics()[0].clone();
    let running = task.start(&Stages::All).await.expect("the task starts");
    let succeeded = |attempts: &BTreeMap<u32, Vec<u32>>| {
        attempts
            .iter()
            .filter(|(failures, tries)| tries.last() == Some(&(*failures + 1)))
            .count()
    };
    eventually(
        "every record succeeded in the end",
        Duration::from_secs(60),
        || async { succeeded(&attempts.lock().unwrap()) == values.len() },
    )
    .await;
    let summary = running.shutdown().await;
    assert_eq!(summary.dead_lettered, 0);
    assert_eq!(summary.retried, 2 + 5 + 7, "one write onward per failure");
    assert!(dead_letters.0.lock().unwrap().is_empty());
    for (failures, tries) in attempts.lock().unwrap().iter() {
        assert_eq!(
            tries,
            &(1..=failures + 1).collect::<Vec<_>>(),
            "{}: the attempts of a record failing {failures} times",
            broker.name()
        );
    }
    // Past the second retry, records went back to the last retry topic.
    let last_topic = read_topic(&broker, &names.retry(2)).await;
    assert_eq!(last_topic.len(), (2 - 1) + (5 - 1) + (7 - 1));
    assert!(read_topic(&broker, &names.dead_letter()).await.is_empty());
}
