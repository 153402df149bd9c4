//! Pausing and resuming: a partition, an engine, a pipeline, from a handler (a circuit
//! breaker) and from outside; a pause longer than the session timeout keeps the partitions
//! assigned; memory stays within the demand window; and a pipeline backs off and tries a
//! failed record again (pause-with-backoff).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, next_record, options, topic_with_records};
use futures_util::StreamExt;
use sluicegate::pipeline::{FailureKind, PauseOnFailure, Pipeline};
use sluicegate::{ConsumerEngine, Offset};
use sluicegate_testing::{init_tracing, TestBroker};

on_both_brokers!(
    a_paused_partition_keeps_its_assignment_and_its_memory_bound,
    a_paused_engine_pauses_partitions_assigned_later_too,
    a_pipeline_pauses_from_outside_and_from_a_handler,
    a_failed_record_backs_off_and_runs_again_in_order,
);

/// Nothing arrives on `stream` for `quiet`.
async fn stays_quiet(stream: &mut sluicegate::PartitionStream, quiet: Duration) {
    if let Ok(record) = tokio::time::timeout(quiet, stream.next()).await {
        panic!("a record arrived while paused: {record:?}");
    }
}

async fn a_paused_partition_keeps_its_assignment_and_its_memory_bound(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 50).await;
    let group = sluicegate_testing::unique_name("pause-partition");
    let mut engine = ConsumerEngine::start(options(&broker, &group, &topic).partition_buffer(10))
        .await
        .expect("the engine starts");
    let mut stream = tokio::time::timeout(Duration::from_secs(30), engine.next_partition())
        .await
        .expect("assigned")
        .expect("a stream");
    let acks = stream.acknowledger();
    let first = next_record(&mut stream, Duration::from_secs(20)).await;
    acks.ack(first.offset).await.expect("ack");
    let switch = stream.pause_switch();
    switch.pause();
    assert!(switch.is_paused());
    let rebalances = engine.stats().rebalances;
    // Longer than the 6 s session timeout of the tests' groups: still assigned.
    stays_quiet(&mut stream, Duration::from_secs(8)).await;
    let stats = engine.stats();
    assert_eq!(stats.rebalances, rebalances, "no rebalance while paused");
    assert_eq!(stats.assigned_partitions, 1);
    assert_eq!(
        stats.stalled_partitions, 0,
        "a paused partition is not stalled"
    );
    assert!(
        stats.peak_held <= 10,
        "within the demand window while paused: {stats:?}"
    );
    switch.resume();
    let mut offsets: Vec<Offset> = Vec::new();
    while offsets.len() < 49 {
        let record = next_record(&mut stream, Duration::from_secs(20)).await;
        acks.ack(record.offset).await.expect("ack");
        offsets.push(record.offset);
    }
    assert_eq!(offsets, (1..50).collect::<Vec<_>>(), "{}", broker.name());
    engine.shutdown().await;
}

async fn a_paused_engine_pauses_partitions_assigned_later_too(broker: TestBroker) {
    let topic = topic_with_records(&broker, 2, 3).await;
    let group = sluicegate_testing::unique_name("pause-engine");
    let mut engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let switch = engine.pause_switch();
    switch.pause();
    let mut streams = Vec::new();
    while streams.len() < 2 {
        let stream = tokio::time::timeout(Duration::from_secs(30), engine.next_partition())
            .await
            .expect("assigned")
            .expect("a stream");
        streams.push(stream);
    }
    for stream in &mut streams {
        assert!(stream.pause_switch().is_paused(), "paused with the engine");
        stays_quiet(stream, Duration::from_millis(1500)).await;
    }
    switch.resume();
    for stream in &mut streams {
        let acks = stream.acknowledger();
        for expected in 0..3 {
            let record = next_record(stream, Duration::from_secs(20)).await;
            assert_eq!(record.offset, expected);
            acks.ack(record.offset).await.expect("ack");
        }
    }
    engine.shutdown().await;
}

async fn a_pipeline_pauses_from_outside_and_from_a_handler(broker: TestBroker) {
    let topic = topic_with_records(&broker, 2, 5).await;
    let group = sluicegate_testing::unique_name("pause-pipeline");
    let handled: Arc<Mutex<Vec<(i32, Offset)>>> = Arc::default();
    let engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let pipeline = Pipeline::builder(handled.clone())
        .handle_message(|handled, message| async move {
            handled
                .lock()
                .unwrap()
                .push((message.partition(), message.offset()));
            // A circuit breaker: the downstream of partition 0 goes down at its offset 2.
            if message.partition() == 0 && message.offset() == 2 {
                let switch = message
                    .pause_switch()
                    .expect("an engine's partition")
                    .clone();
                switch.pause();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    switch.resume();
                });
            }
            Ok(message)
        })
        .source(engine)
        .start()
        .expect("the pipeline starts");
    pipeline.pause();
    assert!(pipeline.pause_switch().is_paused());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        handled.lock().unwrap().is_empty(),
        "nothing handled while the pipeline is paused"
    );
    pipeline.resume();
    eventually("partition 1 handled", Duration::from_secs(30), || async {
        handled
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| *p == 1)
            .count()
            == 5
    })
    .await;
    let of_partition_0 = |handled: &[(i32, Offset)]| -> Vec<Offset> {
        handled
            .iter()
            .filter(|(p, _)| *p == 0)
            .map(|(_, o)| *o)
            .collect()
    };
    assert_eq!(
        of_partition_0(&handled.lock().unwrap()),
        vec![0, 1, 2],
        "partition 0 stopped at its breaker"
    );
    eventually("partition 0 resumed", Duration::from_secs(30), || async {
        of_partition_0(&handled.lock().unwrap()).len() == 5
    })
    .await;
    assert_eq!(
        of_partition_0(&handled.lock().unwrap()),
        vec![0, 1, 2, 3, 4]
    );
    let summary = pipeline.shutdown().await;
    assert_eq!(summary.stats.processed, 10);
}

async fn a_failed_record_backs_off_and_runs_again_in_order(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 6).await;
    let group = sluicegate_testing::unique_name("pause-backoff");
    let calls: Arc<Mutex<Vec<Offset>>> = Arc::default();
    let attempts_of_4 = Arc::new(AtomicU32::new(0));
    let failures: Arc<Mutex<Vec<(Offset, FailureKind, u32)>>> = Arc::default();
    let engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let state = (calls.clone(), attempts_of_4.clone(), failures.clone());
    let pipeline = Pipeline::builder(state)
        .pause_on_failure(
            PauseOnFailure::new(Duration::from_millis(50), Duration::from_millis(200))
                .when(|reason| reason.description.contains("down"))
                .max_attempts(4),
        )
        .handle_message(|state, message| async move {
            let offset = message.offset();
            state.0.lock().unwrap().push(offset);
            match offset {
                // Down twice, then up: backs off 50 ms and 100 ms, then succeeds.
                2 if state.0.lock().unwrap().iter().filter(|o| **o == 2).count() <= 2 => {
                    Err("the ledger is down".into())
                }
                // Always down: four attempts, then the failure handler.
                4 => {
                    state.1.fetch_add(1, Ordering::SeqCst);
                    Err("the ledger is down for good".into())
                }
                // Not a failure to back off from: fails at once.
                5 => Err("malformed".into()),
                _ => Ok(message),
            }
        })
        .handle_failed(|state, failed| async move {
            for failure in failed {
                state.2.lock().unwrap().push((
                    failure.message.offset(),
                    failure.reason.kind,
                    failure.reason.attempts,
                ));
            }
        })
        .source(engine)
        .start()
        .expect("the pipeline starts");
    eventually("every record finished", Duration::from_secs(30), || async {
        failures.lock().unwrap().len() == 2
    })
    .await;
    let summary = pipeline.shutdown().await;
    assert_eq!((summary.stats.processed, summary.stats.failed), (4, 2));
    assert_eq!(
        *calls.lock().unwrap(),
        vec![0, 1, 2, 2, 2, 3, 4, 4, 4, 4, 5],
        "{}: the partition waited for each record's backoff",
        broker.name()
    );
    assert_eq!(attempts_of_4.load(Ordering::SeqCst), 4);
    assert_eq!(
        *failures.lock().unwrap(),
        vec![(4, FailureKind::Error, 4), (5, FailureKind::Error, 1)]
    );
}
