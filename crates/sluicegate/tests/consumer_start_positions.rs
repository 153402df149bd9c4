//! Where a group with no committed offset starts: the end (only records written after the
//! assignment), an offset, a time, per topic; and a committed offset always wins.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{moment_between_writes, next_record, produce, topic_with_records, topics_options};
use sluicegate::{ConsumerEngine, GroupProtocol, Offset, StartPosition};
use sluicegate_testing::{init_tracing, TestBroker};

on_each_group_protocol!(
    latest_starts_after_what_was_written_before_the_assignment,
    exact_positions_per_topic_and_committed_offsets_win,
);

/// One scenario on both brokers, beside the ones above under each group protocol.
mod by_time {
    use super::*;

    on_both_brokers!(
        a_time_starts_at_the_first_record_written_at_or_after_it {
            embedded: #[ignore = "the mock cluster cannot look offsets up by time"]
        },
    );
}

/// Takes `partitions` partition streams from `engine`, then the first record of each:
/// (topic, partition) → its offset. `between` runs once every partition is assigned.
async fn first_offsets(
    engine: &mut ConsumerEngine,
    partitions: usize,
    between: impl std::future::Future<Output = ()>,
) -> BTreeMap<(String, i32), Offset> {
    let mut streams = Vec::new();
    while streams.len() < partitions {
        let stream = tokio::time::timeout(Duration::from_secs(30), engine.next_partition())
            .await
            .expect("every partition assigned in time")
            .expect("the engine runs");
        streams.push(stream);
    }
    between.await;
    let mut first = BTreeMap::new();
    for stream in &mut streams {
        let record = next_record(stream, Duration::from_secs(20)).await;
        first.insert((record.topic.to_string(), record.partition), record.offset);
    }
    first
}

async fn latest_starts_after_what_was_written_before_the_assignment(
    broker: TestBroker,
    protocol: GroupProtocol,
) {
    let topic = topic_with_records(&broker, 2, 5).await;
    let group = sluicegate_testing::unique_name("latest");
    let latest =
        topics_options(&broker, &group, &[&topic], protocol).start_position(StartPosition::Latest);
    let mut engine = ConsumerEngine::start(latest)
        .await
        .expect("the engine starts");
    let first = first_offsets(&mut engine, 2, async {
        produce(&broker, &topic, 2, 5..7).await;
    })
    .await;
    assert_eq!(
        first,
        BTreeMap::from([((topic.clone(), 0), 5), ((topic.clone(), 1), 5)]),
        "{}: the first record written after the assignment",
        broker.name()
    );
    engine.shutdown().await;
}

async fn exact_positions_per_topic_and_committed_offsets_win(
    broker: TestBroker,
    protocol: GroupProtocol,
) {
    let at_offset = topic_with_records(&broker, 2, 6).await;
    let at_end = topic_with_records(&broker, 1, 3).await;
    let from_start = topic_with_records(&broker, 1, 3).await;
    let group = sluicegate_testing::unique_name("exact");
    // The group already committed partition 1 of the first topic.
    sluicegate_testing::commit_offset(&broker.bootstrap_servers(), &group, &at_offset, 1, 1).await;
    let exact = topics_options(
        &broker,
        &group,
        &[&at_offset, &at_end, &from_start],
        protocol,
    )
    .start_position(StartPosition::Offset(4))
    .topic_start_position(&at_end, StartPosition::Latest)
    .topic_start_position(&from_start, StartPosition::Earliest);
    let mut engine = ConsumerEngine::start(exact)
        .await
        .expect("the engine starts");
    let first = first_offsets(&mut engine, 4, async {
        produce(&broker, &at_end, 1, 3..4).await;
    })
    .await;
    assert_eq!(
        first,
        BTreeMap::from([
            ((at_offset.clone(), 0), 4),
            ((at_offset.clone(), 1), 1),
            ((at_end.clone(), 0), 3),
            ((from_start.clone(), 0), 0),
        ]),
        "{}",
        broker.name()
    );
    engine.shutdown().await;

    // An offset past the end is clamped to the end.
    let past_end = topic_with_records(&broker, 1, 2).await;
    let group = sluicegate_testing::unique_name("exact-past-end");
    let clamped = topics_options(&broker, &group, &[&past_end], protocol)
        .start_position(StartPosition::Offset(50));
    let mut engine = ConsumerEngine::start(clamped)
        .await
        .expect("the engine starts");
    let first = first_offsets(&mut engine, 1, async {
        produce(&broker, &past_end, 1, 2..3).await;
    })
    .await;
    assert_eq!(first, BTreeMap::from([((past_end.clone(), 0), 2)]));
    engine.shutdown().await;
}

async fn a_time_starts_at_the_first_record_written_at_or_after_it(broker: TestBroker) {
    let topic = topic_with_records(&broker, 2, 4).await;
    let middle = moment_between_writes().await;
    produce(&broker, &topic, 2, 4..6).await;
    let group = sluicegate_testing::unique_name("timestamp");
    let options =
        common::options(&broker, &group, &topic).start_position(StartPosition::Timestamp(middle));
    let mut engine = ConsumerEngine::start(options)
        .await
        .expect("the engine starts");
    let first = first_offsets(&mut engine, 2, async {}).await;
    assert_eq!(
        first,
        BTreeMap::from([((topic.clone(), 0), 4), ((topic.clone(), 1), 4)])
    );
    engine.shutdown().await;

    // A time later than every record: the end, so only what is written next.
    let group = sluicegate_testing::unique_name("timestamp-late");
    let options = common::options(&broker, &group, &topic)
        .start_position(StartPosition::Timestamp(middle + 3_600_000));
    let mut engine = ConsumerEngine::start(options)
        .await
        .expect("the engine starts");
    let first = first_offsets(&mut engine, 2, async {
        produce(&broker, &topic, 2, 6..7).await;
    })
    .await;
    assert_eq!(
        first,
        BTreeMap::from([((topic.clone(), 0), 6), ((topic.clone(), 1), 6)])
    );
    engine.shutdown().await;
}
