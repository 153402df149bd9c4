//! Seeking an assigned partition: back (records read again, commits never below what was
//! acknowledged, unless the seek rewinds them), by time, from a pipeline when a partition
//! starts, and from a running message handler.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    eventually, moment_between_writes, next_record, options, produce, topic_with_records,
};
use sluicegate::pipeline::{Pipeline, ProcessingOrder, TestPipeline};
use sluicegate::{AckError, ConsumerEngine, Offset, PartitionStream, Seek};
use sluicegate_testing::{init_tracing, TestBroker};

on_both_brokers!(
    seeking_back_reads_again_and_commits_never_go_below_what_was_acknowledged,
    a_seek_that_rewinds_commits_moves_the_committed_offset_back,
    a_pipeline_moves_a_partition_when_it_starts,
    a_handler_moves_its_partition_back_and_the_pipeline_reads_on_from_there,
    a_handler_skips_ahead_in_key_order_and_the_waiting_records_are_dropped,
);

mod by_time {
    use super::*;

    on_both_brokers!(
        seeking_to_a_time_reads_from_the_first_record_written_then {
            embedded: #[ignore = "the mock cluster cannot look offsets up by time"]
        },
    );
}

/// The one partition of `engine`'s topic.
async fn only_partition(engine: &mut ConsumerEngine) -> PartitionStream {
    tokio::time::timeout(Duration::from_secs(30), engine.next_partition())
        .await
        .expect("assigned in time")
        .expect("a stream")
}

/// Reads and acknowledges the next `count` records; their offsets.
async fn read_and_ack(stream: &mut PartitionStream, count: usize) -> Vec<Offset> {
    let acks = stream.acknowledger();
    let mut offsets = Vec::new();
    for _ in 0..count {
        let record = next_record(stream, Duration::from_secs(20)).await;
        acks.ack(record.offset).await.expect("ack");
        offsets.push(record.offset);
    }
    offsets
}

async fn seeking_back_reads_again_and_commits_never_go_below_what_was_acknowledged(
    broker: TestBroker,
) {
    let topic = topic_with_records(&broker, 1, 10).await;
    let group = sluicegate_testing::unique_name("seek-back");
    let mut engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let mut stream = only_partition(&mut engine).await;
    let acks = stream.acknowledger();
    assert_eq!(read_and_ack(&mut stream, 6).await, vec![0, 1, 2, 3, 4, 5]);
    eventually("offset 6 committed", Duration::from_secs(10), || async {
        acks.committed() == Some(6)
    })
    .await;
    // Two more delivered and left unacknowledged, then back to 2.
    let in_flight = [
        next_record(&mut stream, Duration::from_secs(20))
            .await
            .offset,
        next_record(&mut stream, Duration::from_secs(20))
            .await
            .offset,
    ];
    assert_eq!(in_flight, [6, 7]);
    assert_eq!(stream.seek(Seek::offset(2)).await, Ok(2));
    // Records delivered before the seek are no longer outstanding.
    assert!(matches!(acks.ack(7).await, Err(AckError::Offset { .. })));
    let mut again = Vec::new();
    for _ in 0..8 {
        let record = next_record(&mut stream, Duration::from_secs(20)).await;
        acks.ack(record.offset).await.expect("ack");
        again.push(record.offset);
        // Offsets 3 to 6 become committable again: never committed below 6.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            acks.committed() >= Some(6),
            "{}: committed {:?} after acknowledging {}",
            broker.name(),
            acks.committed(),
            record.offset
        );
    }
    assert_eq!(again, (2..10).collect::<Vec<_>>());
    eventually("offset 10 committed", Duration::from_secs(10), || async {
        acks.committed() == Some(10)
    })
    .await;
    drop(stream);
    let summary = engine.shutdown().await;
    assert!(
        summary.committed.values().all(|offset| *offset == 10),
        "{summary:?}"
    );
}

async fn a_seek_that_rewinds_commits_moves_the_committed_offset_back(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 6).await;
    let group = sluicegate_testing::unique_name("seek-rewind");
    let mut engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let mut stream = only_partition(&mut engine).await;
    let acks = stream.acknowledger();
    read_and_ack(&mut stream, 6).await;
    eventually("offset 6 committed", Duration::from_secs(10), || async {
        acks.committed() == Some(6)
    })
    .await;
    assert_eq!(stream.seek(Seek::offset(1).rewind_commits()).await, Ok(1));
    assert_eq!(read_and_ack(&mut stream, 1).await, vec![1]);
    eventually(
        "the commit moved back to 2",
        Duration::from_secs(10),
        || async { acks.committed() == Some(2) },
    )
    .await;
    drop(stream);
    engine.shutdown().await;
    let committed = common::committed_offsets(&broker, &group, &topic, 1).await;
    assert_eq!(committed.get(&0), Some(&2), "{}", broker.name());
}

async fn seeking_to_a_time_reads_from_the_first_record_written_then(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 4).await;
    let middle = moment_between_writes().await;
    produce(&broker, &topic, 1, 4..7).await;
    let group = sluicegate_testing::unique_name("seek-time");
    let mut engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let mut stream = only_partition(&mut engine).await;
    assert_eq!(
        read_and_ack(&mut stream, 7).await,
        (0..7).collect::<Vec<_>>()
    );
    assert_eq!(stream.seek(Seek::timestamp(middle)).await, Ok(4));
    assert_eq!(read_and_ack(&mut stream, 3).await, vec![4, 5, 6]);
    // Later than every record: the end.
    let end = stream.seek(Seek::timestamp(middle + 3_600_000)).await;
    assert_eq!(end, Ok(7));
    produce(&broker, &topic, 1, 7..8).await;
    assert_eq!(read_and_ack(&mut stream, 1).await, vec![7]);
    drop(stream);
    engine.shutdown().await;
}

async fn a_pipeline_moves_a_partition_when_it_starts(broker: TestBroker) {
    let topic = topic_with_records(&broker, 2, 5).await;
    let group = sluicegate_testing::unique_name("seek-pipeline");
    // The group committed 4 on both partitions; the pipeline replays partition 1 from 1.
    for partition in 0..2 {
        sluicegate_testing::commit_offset(
            &broker.bootstrap_servers(),
            &group,
            &topic,
            partition,
            4,
        )
        .await;
    }
    let handled: Arc<Mutex<Vec<(i32, Offset)>>> = Arc::default();
    let engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let pipeline = Pipeline::builder(handled.clone())
        .seek_on_partition_start(|partition| (partition.partition == 1).then(|| Seek::offset(1)))
        .handle_message(|handled, message| async move {
            handled
                .lock()
                .unwrap()
                .push((message.partition(), message.offset()));
            Ok(message)
        })
        .source(engine)
        .start()
        .expect("the pipeline starts");
    eventually("every record handled", Duration::from_secs(30), || async {
        handled.lock().unwrap().len() >= 5
    })
    .await;
    pipeline.shutdown().await;
    let mut handled = handled.lock().unwrap().clone();
    handled.sort_unstable();
    assert_eq!(
        handled,
        vec![(0, 4), (1, 1), (1, 2), (1, 3), (1, 4)],
        "{}",
        broker.name()
    );
}

/// Records every offset handled; the handler of `at` asks for `seek` the first time it runs.
fn seeking_pipeline(
    handled: Arc<Mutex<Vec<Offset>>>,
    at: Offset,
    seek: Seek,
) -> sluicegate::pipeline::PipelineBuilder<Arc<Mutex<Vec<Offset>>>> {
    Pipeline::builder(handled).handle_message(move |handled, message| async move {
        let first_time = {
            let mut handled = handled.lock().unwrap();
            let first_time = !handled.contains(&message.offset());
            handled.push(message.offset());
            first_time
        };
        if message.offset() == at && first_time {
            assert!(message.seek_partition(seek), "an engine's partition seeks");
        }
        Ok(message)
    })
}

async fn a_handler_moves_its_partition_back_and_the_pipeline_reads_on_from_there(
    broker: TestBroker,
) {
    let topic = topic_with_records(&broker, 1, 10).await;
    let group = sluicegate_testing::unique_name("seek-handler");
    let handled: Arc<Mutex<Vec<Offset>>> = Arc::default();
    let engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let pipeline = seeking_pipeline(handled.clone(), 5, Seek::offset(2))
        .source(engine)
        .start()
        .expect("the pipeline starts");
    eventually(
        "the records handled again",
        Duration::from_secs(30),
        || async { handled.lock().unwrap().len() >= 14 },
    )
    .await;
    pipeline.shutdown().await;
    assert_eq!(
        *handled.lock().unwrap(),
        vec![0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 6, 7, 8, 9],
        "{}: the rest of the take dropped, read again from 2",
        broker.name()
    );
    let committed = common::committed_offsets(&broker, &group, &topic, 1).await;
    assert_eq!(committed.get(&0), Some(&10), "{}", broker.name());
}

async fn a_handler_skips_ahead_in_key_order_and_the_waiting_records_are_dropped(
    broker: TestBroker,
) {
    // The records have no key, so in key order they wait one behind the other.
    let topic = topic_with_records(&broker, 1, 10).await;
    let group = sluicegate_testing::unique_name("seek-handler-keyed");
    let handled: Arc<Mutex<Vec<Offset>>> = Arc::default();
    let engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let pipeline = seeking_pipeline(handled.clone(), 0, Seek::offset(8))
        .order(ProcessingOrder::Key)
        .source(engine)
        .start()
        .expect("the pipeline starts");
    let committed = || async { common::committed_offsets(&broker, &group, &topic, 1).await };
    eventually("offset 10 committed", Duration::from_secs(30), || async {
        committed().await.get(&0) == Some(&10)
    })
    .await;
    pipeline.shutdown().await;
    assert_eq!(
        *handled.lock().unwrap(),
        vec![0, 8, 9],
        "{}: 1 to 7 skipped",
        broker.name()
    );
}

#[tokio::test]
async fn records_pushed_to_a_test_pipeline_cannot_seek() {
    let asked = Arc::new(Mutex::new(None));
    let seen = asked.clone();
    let builder = Pipeline::builder(()).handle_message(move |_, message| {
        let seen = seen.clone();
        async move {
            *seen.lock().unwrap() = Some(message.seek_partition(Seek::offset(0)));
            Ok(message)
        }
    });
    let mut test = TestPipeline::start(builder).unwrap();
    test.push([TestPipeline::record("events", 0, 3, None, b"x")]);
    test.wait_for_acks(1).await;
    test.finish().await;
    assert_eq!(*asked.lock().unwrap(), Some(false));
}
