//! Subscribing to a topic pattern: every matching topic is read, those created after the
//! engine started included, under each group protocol; start positions can be keyed by a
//! pattern; and a retry task refuses a pattern by name.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, produce};
use sluicegate::pipeline::Pipeline;
use sluicegate::retry::{RetryError, RetryPolicy, RetryTask, Stages};
use sluicegate::{ConsumerEngine, ConsumerOptions, GroupProtocol, StartPosition};
use sluicegate_testing::{init_tracing, TestBroker};

on_each_group_protocol!(a_pattern_reads_matching_topics_created_before_and_after_the_start);

async fn a_pattern_reads_matching_topics_created_before_and_after_the_start(
    broker: TestBroker,
    protocol: GroupProtocol,
) {
    let prefix = sluicegate_testing::unique_name("pattern");
    let (early, late, other) = (
        format!("{prefix}-early"),
        format!("{prefix}-late"),
        format!("{prefix}x-other"),
    );
    broker.create_topic(&early, 1).await;
    broker.create_topic(&other, 1).await;
    produce(&broker, &early, 1, 0..3).await;
    produce(&broker, &other, 1, 0..3).await;
    let group = sluicegate_testing::unique_name("pattern-group");
    let pattern = format!("^{prefix}-.*");
    let mut options = ConsumerOptions::new(broker.bootstrap_servers(), &group, [pattern.as_str()])
        .group_protocol(protocol)
        .max_poll_interval(Duration::from_secs(10))
        .commit_interval(Duration::from_millis(200))
        .drain_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10))
        // Look for new topics every second rather than every 10 s.
        .librdkafka("topic.metadata.refresh.interval.ms", "1000")
        // Keyed by a pattern: the late topic starts at its offset 1.
        .topic_start_position(format!("^{prefix}-l.*"), StartPosition::Offset(1));
    if protocol == GroupProtocol::Classic {
        options = options
            .session_timeout(Duration::from_secs(6))
            .heartbeat_interval(Duration::from_millis(500));
    }
    let seen: Arc<Mutex<BTreeSet<(String, i64)>>> = Arc::default();
    let engine = ConsumerEngine::start(options)
        .await
        .expect("the engine starts");
    let pipeline = Pipeline::builder(seen.clone())
        .handle_message(|seen, message| async move {
            seen.lock()
                .unwrap()
                .insert((message.topic().to_owned(), message.offset()));
            Ok(message)
        })
        .source(engine)
        .start()
        .expect("the pipeline starts");
    eventually(
        "the early topic was read",
        Duration::from_secs(30),
        || async { seen.lock().unwrap().len() == 3 },
    )
    .await;
    broker.create_topic(&late, 1).await;
    produce(&broker, &late, 1, 0..3).await;
    eventually(
        "the topic created later was picked up",
        Duration::from_secs(60),
        || async { seen.lock().unwrap().len() == 5 },
    )
    .await;
    pipeline.shutdown().await;
    let seen = seen.lock().unwrap().clone();
    let expected: BTreeSet<(String, i64)> = [
        (early.clone(), 0),
        (early.clone(), 1),
        (early, 2),
        (late.clone(), 1),
        (late, 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        seen,
        expected,
        "{}: `{other}` does not match",
        broker.name()
    );
}

#[tokio::test]
async fn a_retry_task_refuses_a_pattern_by_name() {
    init_tracing();
    let task = RetryTask::new(
        ConsumerOptions::new("127.0.0.1:1", "billing", ["^orders-.*"]),
        RetryPolicy::none(),
        Pipeline::builder(()).handle_message(|_, message| async move { Ok(message) }),
    );
    match task.validate(&Stages::All) {
        Err(RetryError::Options(error)) => {
            assert_eq!(error.key, "topics");
            assert!(
                error.problem.contains("`^orders-.*` is a pattern"),
                "{error}"
            );
        }
        other => panic!("expected the pattern refused, got {other:?}"),
    }
}
