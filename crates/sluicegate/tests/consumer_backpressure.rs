//! Backpressure: a handler that takes records and never finishes holds the engine to its
//! configured bound while the topic holds a backlog many times larger; processing resumes
//! when the handler continues.

mod common;

use std::time::Duration;

use common::{eventually, next_record, options, topic_with_records};
use futures_util::StreamExt;
use sluicegate::ConsumerEngine;
use sluicegate_testing::{init_tracing, unique_name, TestBroker};

const PARTITIONS: i32 = 2;
const PER_PARTITION: usize = 1_000;
const WINDOW: usize = 25;

async fn a_stalled_handler_keeps_the_engine_within_its_bound(broker: TestBroker) {
    let topic = topic_with_records(&broker, PARTITIONS, PER_PARTITION).await;
    let group = unique_name("backpressure");
    let mut engine =
        ConsumerEngine::start(options(&broker, &group, &topic).partition_buffer(WINDOW))
            .await
            .unwrap();
    let mut streams = Vec::new();
    for _ in 0..PARTITIONS {
        streams.push(engine.next_partition().await.unwrap());
    }

    // The handler takes every record it is offered and finishes none. The engine stops taking
    // a partition's records once its window is full, whether they wait in its buffer or were
    // taken.
    eventually("every partition full", Duration::from_secs(30), || {
        let full = engine.stats().full_partitions;
        async move { full == PARTITIONS as usize }
    })
    .await;
    let mut taken = Vec::new();
    for stream in &mut streams {
        let mut records = Vec::new();
        while let Ok(Some(record)) =
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        {
            records.push(record);
        }
        taken.push(records);
    }
    // Give the poll thread time to fetch more if it were going to.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = engine.stats();
    let bound = WINDOW * PARTITIONS as usize;
    assert_eq!(stats.held_bound, bound);
    assert!(
        stats.fetched as usize <= bound,
        "fetched {} records with a bound of {bound}",
        stats.fetched
    );
    assert!(
        stats.peak_held <= bound,
        "held {} records with a bound of {bound}",
        stats.peak_held
    );
    assert_eq!(
        stats.full_partitions, PARTITIONS as usize,
        "full partitions are left alone"
    );
    for records in &taken {
        assert_eq!(
            records.len(),
            WINDOW,
            "each partition delivers exactly its window"
        );
    }
    assert!((stats.fetched as usize) < PER_PARTITION * PARTITIONS as usize / 10);

    // The handler continues: everything in the backlog is processed, still within the bound.
    let mut processed = 0;
    for (stream, records) in streams.iter_mut().zip(taken) {
        let acks = stream.acknowledger();
        for record in records {
            acks.ack(record.offset).await.unwrap();
            processed += 1;
        }
        for _ in WINDOW..PER_PARTITION {
            let record = next_record(stream, Duration::from_secs(30)).await;
            acks.ack(record.offset).await.unwrap();
            processed += 1;
        }
    }
    assert_eq!(processed, PER_PARTITION * PARTITIONS as usize);
    let stats = engine.stats();
    assert!(
        stats.peak_held <= bound,
        "held {} records with a bound of {bound}",
        stats.peak_held
    );
    eventually("every partition drained", Duration::from_secs(10), || {
        let full = engine.stats().full_partitions;
        async move { full == 0 }
    })
    .await;
    let summary = engine.shutdown().await;
    assert_eq!(summary.stats.acked, processed as u64);
    assert_eq!(summary.stats.held_bound, bound);
    assert!(summary.stats.peak_held <= bound);
    assert_eq!(summary.committed.values().sum::<i64>(), processed as i64);
}

mod embedded {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_handler_keeps_the_engine_within_its_bound() {
        super::init_tracing();
        super::a_stalled_handler_keeps_the_engine_within_its_bound(super::TestBroker::embedded())
            .await;
    }
}

mod kafka {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_handler_keeps_the_engine_within_its_bound() {
        super::init_tracing();
        super::a_stalled_handler_keeps_the_engine_within_its_bound(super::TestBroker::kafka())
            .await;
    }
}
