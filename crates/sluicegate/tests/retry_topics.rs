//! Retry tasks on a broker: failures travel through delayed retry topics to the dead-letter
//! topic with their history in headers, never run before they are due, and commit
//! everywhere; in-place retries keep partition order; a waiting retry stage lets go at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{committed_offsets, eventually, partition_count, read_topic};
use sluicegate::pipeline::{Permanent, Pipeline, ProcessingOrder};
use sluicegate::retry::{
    self, RetryError, RetryHeaders, RetryMode, RetryPolicy, RetryTask, Stages,
};
use sluicegate::{ConsumerOptions, Offset, Record};
use sluicegate_testing::{init_tracing, TestBroker, TestRecord};

on_both_brokers!(
    failures_retry_until_success_or_dead_letter,
    in_place_retries_keep_partition_order,
    a_waiting_retry_stage_lets_go_at_once,
);

/// One handling of a record, as the handler saw it.
#[derive(Debug, Clone)]
struct Handling {
    value: String,
    partition: i32,
    offset: Offset,
    attempt: u32,
    at_ms: i64,
    due_ms: Option<i64>,
}

type Journal = Arc<Mutex<Vec<Handling>>>;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Handles by value prefix: `ok` succeeds, `fail<N>` fails N times then succeeds, `always`
/// always fails, `permanent` fails with a permanent error.
fn decide(value: &str, attempt: u32) -> Result<(), sluicegate::pipeline::BoxError> {
    if value.starts_with("always") {
        return Err(format!("{value} always fails").into());
    }
    if value.starts_with("permanent") {
        return Err(Permanent::new(format!("{value} is a bad payload")).into());
    }
    if let Some(rest) = value.strip_prefix("fail") {
        let failures: u32 = rest.split('-').next().unwrap().parse().unwrap();
        if attempt <= failures {
            return Err(format!("{value} failed attempt {attempt}").into());
        }
    }
    Ok(())
}

fn journaling_pipeline(
    journal: &Journal,
) -> sluicegate::pipeline::PipelineBuilder<Journal, Record> {
    Pipeline::builder(journal.clone())
        .concurrency(8)
        .handle_message(|journal: Arc<Journal>, message| async move {
            let record = message.data();
            let value = String::from_utf8(record.value.clone().unwrap_or_default()).unwrap();
            let attempt = retry::attempt(record);
            let due_ms = RetryHeaders::from_headers(&record.headers)
                .unwrap()
                .map(|history| history.due_ms);
            journal.lock().unwrap().push(Handling {
                value: value.clone(),
                partition: record.partition,
                offset: record.offset,
                attempt,
                at_ms: now_ms(),
                due_ms,
            });
            decide(&value, attempt)?;
            Ok(message)
        })
}

fn consumer(broker: &TestBroker, group: &str, topic: &str) -> ConsumerOptions {
    common::options(broker, group, topic)
}

/// The embedded broker has no CreateTopics: a task falls back to auto-creation there once its
/// admin request times out (10 s, see `a_task_creates_its_topics_on_the_embedded_broker`), so
/// these scenarios create them up front there to stay quick; on Kafka the task creates them.
async fn precreate_on_embedded(broker: &TestBroker, task_topics: &[String], partitions: i32) {
    if broker.as_embedded().is_some() {
        for topic in task_topics {
            broker.create_topic(topic, partitions).await;
        }
    }
}

async fn failures_retry_until_success_or_dead_letter(broker: TestBroker) {
    let topic = sluicegate_testing::unique_name("retry-input");
    let group = sluicegate_testing::unique_name("retry-group");
    broker.create_topic(&topic, 3).await;
    let kinds = ["ok", "fail1", "fail2", "always", "permanent"];
    let values: Vec<String> = kinds
        .iter()
        .flat_map(|kind| (0..3).map(move |n| format!("{kind}-{n}")))
        .collect();
    let records = values
        .iter()
        .map(|value| TestRecord::keyed(value.clone(), value.clone()))
        .collect();
    let positions =
        sluicegate_testing::produce_records(&broker.bootstrap_servers(), &topic, records).await;
    let position_of: BTreeMap<String, (i32, Offset)> = values
        .iter()
        .cloned()
        .zip(positions.iter().copied())
        .collect();

    let journal: Journal = Arc::default();
    let policy = RetryPolicy::delays([Duration::from_secs(1), Duration::from_secs(2)]).unwrap();
    let task = RetryTask::new(
        consumer(&broker, &group, &topic),
        policy,
        journaling_pipeline(&journal),
    );
    let names = task.topics()[0].clone();
    let (retry1, retry2, dead_letters) = (names.retry(1), names.retry(2), names.dead_letter());
    precreate_on_embedded(
        &broker,
        &[retry1.clone(), retry2.clone(), dead_letters.clone()],
        3,
    )
    .await;
    let running = task.start(&Stages::All).await.expect("the task starts");

    let expected_handlings: BTreeMap<&str, u32> = BTreeMap::from([
        ("ok", 1),
        ("fail1", 2),
        ("fail2", 3),
        ("always", 3),
        ("permanent", 1),
    ]);
    let kind_of = |value: &str| value.split('-').next().unwrap().to_string();
    let total: u32 = expected_handlings.values().map(|n| n * 3).sum();
    eventually(
        "every handling happened",
        Duration::from_secs(60),
        || async {
            journal.lock().unwrap().len() as u32 >= total && running.stats().dead_lettered == 6
        },
    )
    .await;
    // Nothing more arrives: wait a little past the last delay for strays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = running.stats();
    assert_eq!(
        (stats.retried, stats.dead_lettered),
        (3 * 2 + 3 * 3 + 3 * 2 - 6, 6)
    );
    let summary = running.shutdown().await;
    assert_eq!((summary.retried, summary.dead_lettered), (15, 6));

    let journal = journal.lock().unwrap().clone();
    let mut by_value: BTreeMap<String, Vec<Handling>> = BTreeMap::new();
    for handling in &journal {
        by_value
            .entry(handling.value.clone())
            .or_default()
            .push(handling.clone());
    }
    assert_eq!(by_value.len(), values.len(), "every record was handled");
    for (value, handlings) in &by_value {
        let expected = expected_handlings[kind_of(value).as_str()];
        let attempts: Vec<u32> = handlings.iter().map(|h| h.attempt).collect();
        assert_eq!(
            attempts,
            (1..=expected).collect::<Vec<_>>(),
            "{}: attempts of {value}",
            broker.name()
        );
        for handling in &handlings[1..] {
            let due = handling
                .due_ms
                .expect("a retried record carries its due time");
            assert!(
                handling.at_ms >= due,
                "{value} attempt {} ran {} ms before it was due",
                handling.attempt,
                due - handling.at_ms
            );
        }
    }

    // Retry topics hold what failed there; the dead-letter topic what failed for good.
    let values_in = |records: &[Record]| -> BTreeSet<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
            .collect()
    };
    let first_retries = read_topic(&broker, &retry1).await;
    assert_eq!(
        first_retries.len(),
        9,
        "fail1, fail2 and always went to retry 1"
    );
    let second_retries = read_topic(&broker, &retry2).await;
    assert_eq!(second_retries.len(), 6, "fail2 and always went to retry 2");
    let dead = read_topic(&broker, &dead_letters).await;
    assert_eq!(
        values_in(&dead),
        values
            .iter()
            .filter(|v| v.starts_with("always") || v.starts_with("permanent"))
            .cloned()
            .collect()
    );
    for record in &dead {
        let value = String::from_utf8(record.value.clone().unwrap()).unwrap();
        assert_eq!(
            record.key.as_deref(),
            Some(value.as_bytes()),
            "the key is kept"
        );
        let history = RetryHeaders::from_headers(&record.headers)
            .unwrap()
            .unwrap();
        let (partition, offset) = position_of[&value];
        assert_eq!(history.original_topic, topic);
        assert_eq!(
            (history.original_partition, history.original_offset),
            (partition, offset)
        );
        assert!(history.first_failure_ms <= history.last_failure_ms);
        if value.starts_with("always") {
            assert_eq!(history.attempt, 4, "{value}: handled 3 times (2 retries)");
            assert_eq!(
                history.error,
                format!("message handler error: {value} always fails")
            );
            assert!(
                history.last_failure_ms - history.first_failure_ms >= 3_000,
                "{value}: the retries waited 1 s and 2 s"
            );
        } else {
            assert_eq!(history.attempt, 2, "{value}: handled once, never retried");
            assert_eq!(
                history.error,
                format!("message handler permanent error: {value} is a bad payload")
            );
        }
    }

    // Every stage committed everything it read.
    for (stage_group, stage_topic) in [
        (group.clone(), topic.clone()),
        (format!("{group}.retry.1"), retry1.clone()),
        (format!("{group}.retry.2"), retry2.clone()),
        (format!("{group}.dlq"), dead_letters.clone()),
    ] {
        let records = read_topic(&broker, &stage_topic).await;
        let mut ends: BTreeMap<i32, Offset> = BTreeMap::new();
        for record in &records {
            ends.insert(record.partition, record.offset + 1);
        }
        let committed = committed_offsets(&broker, &stage_group, &stage_topic, 3).await;
        assert_eq!(
            committed,
            ends,
            "{}: group {stage_group} on {stage_topic}",
            broker.name()
        );
    }
    if broker.as_embedded().is_none() {
        for created in [&retry1, &retry2, &dead_letters] {
            assert_eq!(
                partition_count(&broker, created).await,
                Some(3),
                "{created} has the input topic's partition count"
            );
        }
    }
}

async fn in_place_retries_keep_partition_order(broker: TestBroker) {
    let topic = sluicegate_testing::unique_name("in-place");
    let group = sluicegate_testing::unique_name("in-place-group");
    broker.create_topic(&topic, 2).await;
    let per_partition = 20;
    let values: Vec<String> = (0..per_partition)
        .flat_map(|n| {
            (0..2).map(move |p| match n % 7 {
                2 => format!("fail2-{p}-{n}"),
                5 => format!("always-{p}-{n}"),
                _ => format!("ok-{p}-{n}"),
            })
        })
        .collect();
    let records = values
        .iter()
        .map(|value| {
            let partition: i32 = value.split('-').nth(1).unwrap().parse().unwrap();
            TestRecord::to_partition(partition, value.clone())
        })
        .collect();
    sluicegate_testing::produce_records(&broker.bootstrap_servers(), &topic, records).await;

    let journal: Journal = Arc::default();
    let policy =
        RetryPolicy::delays([Duration::from_millis(50), Duration::from_millis(100)]).unwrap();
    let task = RetryTask::new(
        consumer(&broker, &group, &topic),
        policy,
        journaling_pipeline(&journal).order(ProcessingOrder::Partition),
    )
    .mode(RetryMode::InPlace);
    let dead_letters = task.topics()[0].dead_letter();
    let retry1 = task.topics()[0].retry(1);
    precreate_on_embedded(&broker, std::slice::from_ref(&dead_letters), 2).await;
    let running = task.start(&Stages::All).await.expect("the task starts");
    let always = values.iter().filter(|v| v.starts_with("always")).count() as u64;
    eventually("every record finished", Duration::from_secs(60), || async {
        running.stats().dead_lettered == always
            && journal
                .lock()
                .unwrap()
                .iter()
                .filter(|h| !h.value.starts_with("always") && decide(&h.value, h.attempt).is_ok())
                .count()
                == values.len() - always as usize
    })
    .await;
    let summary = running.shutdown().await;
    assert_eq!(summary.retried, 0, "nothing goes through retry topics");

    let journal = journal.lock().unwrap().clone();
    for partition in 0..2 {
        let handled: Vec<&Handling> = journal
            .iter()
            .filter(|h| h.partition == partition)
            .collect();
        let offsets: Vec<Offset> = handled.iter().map(|h| h.offset).collect();
        assert!(
            offsets.windows(2).all(|pair| pair[0] <= pair[1]),
            "{}: partition {partition} handled out of order: {offsets:?}",
            broker.name()
        );
        let distinct: BTreeSet<Offset> = offsets.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            per_partition,
            "every record of partition {partition}"
        );
        for handling in &handled {
            let expected = match handling.value.split('-').next().unwrap() {
                "fail2" | "always" => 3,
                _ => 1,
            };
            let count = handled
                .iter()
                .filter(|h| h.offset == handling.offset)
                .count();
            assert_eq!(count, expected, "{} handled {count} times", handling.value);
        }
    }
    let dead = read_topic(&broker, &dead_letters).await;
    assert_eq!(dead.len() as u64, always);
    for record in &dead {
        let history = RetryHeaders::from_headers(&record.headers)
            .unwrap()
            .unwrap();
        assert_eq!(history.attempt, 4, "handled 3 times in place");
        assert!(history.error.contains("always fails"), "{}", history.error);
        assert!(history.last_failure_ms - history.first_failure_ms >= 150);
    }
    if broker.as_embedded().is_none() {
        assert_eq!(
            partition_count(&broker, &retry1).await,
            None,
            "in-place retries create no retry topics"
        );
    }
}

async fn a_waiting_retry_stage_lets_go_at_once(broker: TestBroker) {
    let topic = sluicegate_testing::unique_name("waiting");
    let group = sluicegate_testing::unique_name("waiting-group");
    broker.create_topic(&topic, 1).await;
    sluicegate_testing::produce_records(
        &broker.bootstrap_servers(),
        &topic,
        vec![TestRecord::value("always-late")],
    )
    .await;
    let journal: Journal = Arc::default();
    let started: Arc<Mutex<Vec<String>>> = Arc::default();
    let noted = started.clone();
    let task = RetryTask::new(
        consumer(&broker, &group, &topic).drain_timeout(Duration::from_secs(30)),
        RetryPolicy::delays([Duration::from_secs(600)]).unwrap(),
        journaling_pipeline(&journal).on_partition_start(move |partition| {
            noted.lock().unwrap().push(partition.topic.clone())
        }),
    );
    let names = task.topics()[0].clone();
    precreate_on_embedded(&broker, &[names.retry(1), names.dead_letter()], 1).await;
    let running = task.start(&Stages::All).await.expect("the task starts");
    eventually(
        "the record went to retry 1",
        Duration::from_secs(30),
        || async { running.stats().retried == 1 },
    )
    .await;
    eventually(
        "retry stage 1 took its partition",
        Duration::from_secs(30),
        || async { started.lock().unwrap().contains(&names.retry(1)) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    running.shutdown().await;
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "{}: shutdown waited {took:?} on a record that is not due (drain timeout 30 s)",
        broker.name()
    );
    assert_eq!(
        journal.lock().unwrap().len(),
        1,
        "the retry did not run early"
    );
    let committed =
        committed_offsets(&broker, &format!("{group}.retry.1"), &names.retry(1), 1).await;
    assert!(
        committed.get(&0).copied().unwrap_or(0) == 0,
        "the waiting record was not committed: {committed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_the_broker_cannot_create_is_named() {
    init_tracing();
    // Kafka refuses a topic whose name differs from an existing one's only in `.` against
    // `_` (the two collide in metric names): this one is in the way of the retry topic.
    let broker = TestBroker::kafka();
    let topic = sluicegate_testing::unique_name("uncreatable");
    let group = sluicegate_testing::unique_name("uncreatable-group");
    broker.create_topic(&topic, 1).await;
    broker
        .create_topic(&format!("{topic}_{group}_retry_1"), 1)
        .await;
    let task = RetryTask::new(
        consumer(&broker, &group, &topic),
        RetryPolicy::delays([Duration::from_secs(1)]).unwrap(),
        journaling_pipeline(&Journal::default()),
    );
    let error = match task.start(&Stages::All).await {
        Ok(_) => panic!("the task started without its retry topic"),
        Err(error) => error,
    };
    match &error {
        RetryError::MissingTopic { topic: missing, .. } => {
            assert_eq!(missing, &format!("{topic}.{group}.retry.1"))
        }
        other => panic!("expected a missing topic, got {other}"),
    }
    assert!(
        error.to_string().starts_with(&format!(
            "topic `{topic}.{group}.retry.1` is missing: could not create it"
        )),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_creates_its_topics_on_the_embedded_broker() {
    init_tracing();
    // The mock cluster has no CreateTopics; it creates a topic (with its default of 4
    // partitions) when a client asks for the topic's metadata and allows auto-creation.
    let broker = TestBroker::embedded();
    let topic = sluicegate_testing::unique_name("auto-created");
    let group = sluicegate_testing::unique_name("auto-created-group");
    broker.create_topic(&topic, 2).await;
    let journal: Journal = Arc::default();
    let task = RetryTask::new(
        consumer(&broker, &group, &topic),
        RetryPolicy::delays([Duration::from_millis(100)]).unwrap(),
        journaling_pipeline(&journal),
    );
    let running = task.start(&Stages::All).await.expect("the task starts");
    for created in [
        format!("{topic}.{group}.retry.1"),
        format!("{topic}.{group}.dlq"),
    ] {
        assert_eq!(
            partition_count(&broker, &created).await,
            Some(4),
            "{created} was auto-created"
        );
    }
    sluicegate_testing::produce_records(
        &broker.bootstrap_servers(),
        &topic,
        vec![TestRecord::keyed("fail1-0", "fail1-0")],
    )
    .await;
    eventually(
        "the record failed once, went through the retry topic and succeeded",
        Duration::from_secs(30),
        || async {
            let handled = journal.lock().unwrap();
            handled
                .iter()
                .filter(|handling| handling.value == "fail1-0")
                .count()
                == 2
        },
    )
    .await;
    running.shutdown().await;
}

#[tokio::test]
async fn declarations_a_task_cannot_run_are_refused_by_name() {
    let options = ConsumerOptions::new("127.0.0.1:1", "billing", ["orders"]);
    let policy = || RetryPolicy::delays([Duration::from_secs(1), Duration::from_secs(2)]).unwrap();
    let pipeline = || Pipeline::builder(()).handle_message(|_, message| async move { Ok(message) });
    let refused = |task: RetryTask<()>, stages: &str| {
        task.validate(&stages.parse().unwrap())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refused(
            RetryTask::new(
                options.clone(),
                policy(),
                pipeline().handle_failed(|_, _| async {})
            ),
            "all"
        ),
        "invalid option `pipeline.handle_failed`: a retry task routes failures itself; \
         declare no failure handler"
    );
    assert_eq!(
        refused(RetryTask::new(options.clone(), policy(), pipeline()), "0,4"),
        "stages `0,4`: the task has stages 0 to 3 (2 retries, then dead letters), not 4 \
         (write `0`, `1-5`, `all` or a comma list such as `0,2-3`)"
    );
    assert_eq!(
        refused(
            RetryTask::new(options.clone(), policy(), pipeline()).mode(RetryMode::InPlace),
            "0-1"
        ),
        "stages `0,1`: retries run in place in stage 0, so stage 1 does not exist \
         (write `0`, `1-5`, `all` or a comma list such as `0,2-3`)"
    );
    assert_eq!(
        refused(
            RetryTask::new(options.clone(), policy(), pipeline())
                .dead_letter_named("payments", "x"),
            "all"
        ),
        "invalid option `retry_topics.payments`: not an input topic of the task"
    );
    assert_eq!(
        refused(
            RetryTask::new(options.clone(), policy(), pipeline())
                .retry_topic_named("orders", 2, "orders"),
            "all"
        ),
        "invalid option `retry_topic.2`: `orders` is the input topic"
    );
    let in_place = RetryTask::new(options, policy(), pipeline()).mode(RetryMode::InPlace);
    assert_eq!(
        in_place.validate(&Stages::All).unwrap(),
        BTreeSet::from([0, 3]),
        "in place: the input stage and the dead-letter stage"
    );
}

/// Creates `topic` (one partition) on Kafka with a `max.message.bytes` of `limit`.
async fn create_small_topic(broker: &TestBroker, topic: &str, limit: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::ClientConfig;

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()
        .unwrap();
    let limit = limit.to_string();
    let new_topic =
        NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", &limit);
    let results = admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

/// A record whose value fits the input topic but, with retry headers added, not a topic
/// limited to [`SMALL_TOPIC_BYTES`].
const SMALL_TOPIC_BYTES: usize = 1500;

fn oversized_for_retry() -> String {
    format!("always-{}", "x".repeat(SMALL_TOPIC_BYTES - 200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_its_retry_topic_refuses_for_good_is_dead_lettered_with_the_reason() {
    init_tracing();
    let broker = TestBroker::kafka();
    let topic = sluicegate_testing::unique_name("refused-retry-input");
    let group = sluicegate_testing::unique_name("refused-retry-group");
    broker.create_topic(&topic, 1).await;
    let policy = RetryPolicy::delays([Duration::from_millis(500)]).unwrap();
    let journal: Journal = Arc::default();
    let task = RetryTask::new(
        consumer(&broker, &group, &topic),
        policy,
        journaling_pipeline(&journal),
    );
    let names = task.topics()[0].clone();
    create_small_topic(&broker, &names.retry(1), SMALL_TOPIC_BYTES).await;
    sluicegate_testing::produce_records(
        &broker.bootstrap_servers(),
        &topic,
        vec![
            TestRecord::value(oversized_for_retry()),
            TestRecord::value("ok-after"),
        ],
    )
    .await;
    let running = task.start(&Stages::All).await.expect("the task starts");

    eventually(
        "the oversized record is dead-lettered",
        Duration::from_secs(30),
        || async { running.stats().dead_lettered == 1 },
    )
    .await;
    let summary = running.shutdown().await;
    assert_eq!(
        (summary.retried, summary.dead_lettered),
        (0, 1),
        "nothing reached the retry topic"
    );
    assert!(read_topic(&broker, &names.retry(1)).await.is_empty());
    let dead_letters = read_topic(&broker, &names.dead_letter()).await;
    assert_eq!(dead_letters.len(), 1);
    let history = RetryHeaders::from_headers(&dead_letters[0].headers)
        .unwrap()
        .expect("the dead letter carries its history");
    assert_eq!((history.original_offset, history.attempt), (0, 2));
    assert!(
        history.error.contains("always fails")
            && history.error.contains(&format!(
                "retry topic `{}` refused it for good",
                names.retry(1)
            ))
            && history.error.contains("too large"),
        "the dead letter says why it skipped its retry: {}",
        history.error
    );
    assert_eq!(
        committed_offsets(&broker, &group, &topic, 1).await,
        BTreeMap::from([(0, 2)]),
        "both input records are committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_no_topic_takes_stops_the_task_and_stays_uncommitted() {
    init_tracing();
    let broker = TestBroker::kafka();
    let topic = sluicegate_testing::unique_name("unwritable-input");
    let group = sluicegate_testing::unique_name("unwritable-group");
    broker.create_topic(&topic, 1).await;
    let policy = RetryPolicy::delays([Duration::from_millis(500)]).unwrap();
    let journal: Journal = Arc::default();
    let task = RetryTask::new(
        consumer(&broker, &group, &topic).drain_timeout(Duration::from_secs(2)),
        policy,
        journaling_pipeline(&journal),
    );
    let names = task.topics()[0].clone();
    create_small_topic(&broker, &names.retry(1), SMALL_TOPIC_BYTES).await;
    create_small_topic(&broker, &names.dead_letter(), SMALL_TOPIC_BYTES).await;
    sluicegate_testing::produce_records(
        &broker.bootstrap_servers(),
        &topic,
        vec![TestRecord::value(oversized_for_retry())],
    )
    .await;
    let running = task.start(&Stages::All).await.expect("the task starts");

    let error = tokio::time::timeout(Duration::from_secs(30), running.failed())
        .await
        .expect("the task reports that it must stop");
    match &error {
        RetryError::Unwritable { record, source } => {
            assert_eq!(record, &format!("{topic}[0]@0"));
            assert!(source.is_permanent(), "{source:?}");
        }
        other => panic!("expected an unwritable record, got {other:?}"),
    }
    let summary = running.shutdown().await;
    assert_eq!((summary.retried, summary.dead_lettered), (0, 0));
    assert!(read_topic(&broker, &names.dead_letter()).await.is_empty());
    let committed = committed_offsets(&broker, &group, &topic, 1).await;
    assert!(
        committed.get(&0).is_none_or(|offset| *offset == 0),
        "the record that nothing takes is never committed past: {committed:?}"
    );
}
