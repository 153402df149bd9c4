//! Commits: a restarted member resumes exactly at the committed offset; out-of-order acks
//! commit only the contiguous prefix; each commit strategy commits when it promises to.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, next_record, options, topic_with_records};
use sluicegate::{CommitMode, CommitStrategy, ConsumerEngine};
use sluicegate_testing::{committed_offset, init_tracing, unique_name, TestBroker};

const WAIT: Duration = Duration::from_secs(30);

/// A member commits offset 5 of a 10-record producer batch; a new member of the same group
/// starts exactly at offset 5.
async fn commit_then_restart_resumes_at_the_committed_offset(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 10).await;
    let group = unique_name("resume");
    let bootstrap = broker.bootstrap_servers();

    let mut first = ConsumerEngine::start(
        options(&broker, &group, &topic).commit_strategy(CommitStrategy::Manual),
    )
    .await
    .unwrap();
    let mut stream = first.next_partition().await.unwrap();
    let acks = stream.acknowledger();
    for expected in 0..5 {
        let record = next_record(&mut stream, WAIT).await;
        assert_eq!(record.offset, expected);
        acks.ack(record.offset).await.unwrap();
    }
    assert_eq!(acks.commit(5, CommitMode::Sync).await.unwrap(), Some(5));
    assert_eq!(
        committed_offset(&bootstrap, &group, &topic, 0).await,
        Some(5)
    );
    let summary = first.shutdown().await;
    assert_eq!(summary.undrained, 0);
    assert_eq!(
        committed_offset(&bootstrap, &group, &topic, 0).await,
        Some(5)
    );

    let mut second = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .unwrap();
    let mut stream = second.next_partition().await.unwrap();
    let record = next_record(&mut stream, WAIT).await;
    assert_eq!(
        record.offset, 5,
        "resumed inside the producer batch at the committed offset"
    );
    assert_eq!(record.value.as_deref(), Some(&b"0-5"[..]));
    second.shutdown().await;
}

/// Acks 5, 3, 4, 1, 2 of offsets 1..=5 (0 acked first): nothing past 1 is committable until 1
/// is acked, and 6 once all are.
async fn out_of_order_acks_commit_the_contiguous_prefix(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 6).await;
    let group = unique_name("order");
    let bootstrap = broker.bootstrap_servers();
    let mut engine = ConsumerEngine::start(
        options(&broker, &group, &topic).commit_strategy(CommitStrategy::Manual),
    )
    .await
    .unwrap();
    let mut stream = engine.next_partition().await.unwrap();
    let acks = stream.acknowledger();
    for expected in 0..6 {
        assert_eq!(next_record(&mut stream, WAIT).await.offset, expected);
    }
    acks.ack(0).await.unwrap();
    for offset in [5, 3, 4] {
        acks.ack(offset).await.unwrap();
        assert_eq!(
            acks.commit(100, CommitMode::Sync).await.unwrap(),
            if offset == 5 { Some(1) } else { None }
        );
    }
    acks.ack(1).await.unwrap();
    assert_eq!(acks.commit(100, CommitMode::Sync).await.unwrap(), Some(2));
    acks.ack(2).await.unwrap();
    assert_eq!(acks.commit(100, CommitMode::Sync).await.unwrap(), Some(6));
    assert_eq!(
        committed_offset(&bootstrap, &group, &topic, 0).await,
        Some(6)
    );
    engine.shutdown().await;
}

/// Interval: acknowledged offsets reach the broker within about one interval, unprompted.
async fn interval_strategy_commits_within_an_interval(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 20).await;
    let group = unique_name("interval");
    let bootstrap = broker.bootstrap_servers();
    let interval = Duration::from_millis(500);
    let mut engine =
        ConsumerEngine::start(options(&broker, &group, &topic).commit_interval(interval))
            .await
            .unwrap();
    let mut stream = engine.next_partition().await.unwrap();
    let acks = stream.acknowledger();
    for _ in 0..20 {
        let record = next_record(&mut stream, WAIT).await;
        acks.ack(record.offset).await.unwrap();
    }
    let acked_at = Instant::now();
    eventually("the interval commit of offset 20", WAIT, || {
        let (bootstrap, group, topic) = (bootstrap.clone(), group.clone(), topic.clone());
        async move { committed_offset(&bootstrap, &group, &topic, 0).await == Some(20) }
    })
    .await;
    let took = acked_at.elapsed();
    // One interval plus the broker's round trip and our 50 ms polling; generous for CI noise.
    assert!(
        took < interval * 4,
        "interval commit took {took:?} with a {interval:?} interval"
    );
    // The broker's answer reaches the engine's counters through the poll thread.
    let stats_engine = &engine;
    eventually("the commit to be counted", WAIT, || async move {
        stats_engine.stats().commits >= 1
    })
    .await;
    engine.shutdown().await;
}

/// Sync: each ack that advances returns only once the advance is committed, so the next record
/// is never taken while an earlier advance is uncommitted.
async fn sync_strategy_commits_before_the_next_record(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 5).await;
    let group = unique_name("sync");
    let bootstrap = broker.bootstrap_servers();
    let mut engine = ConsumerEngine::start(
        options(&broker, &group, &topic).commit_strategy(CommitStrategy::Sync),
    )
    .await
    .unwrap();
    let mut stream = engine.next_partition().await.unwrap();
    let acks = stream.acknowledger();
    for expected in 0..5 {
        let record = next_record(&mut stream, WAIT).await;
        assert_eq!(record.offset, expected);
        acks.ack(record.offset).await.unwrap();
        assert_eq!(acks.committed(), Some(expected + 1));
        assert_eq!(
            committed_offset(&bootstrap, &group, &topic, 0).await,
            Some(expected + 1)
        );
    }
    engine.shutdown().await;
}

/// Manual: acknowledged offsets are committed only when, and as far as, the application asks.
async fn manual_strategy_commits_only_what_was_triggered(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 10).await;
    let group = unique_name("manual");
    let bootstrap = broker.bootstrap_servers();
    let mut engine = ConsumerEngine::start(
        options(&broker, &group, &topic)
            .commit_strategy(CommitStrategy::Manual)
            .commit_interval(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let mut stream = engine.next_partition().await.unwrap();
    let acks = stream.acknowledger();
    for _ in 0..10 {
        let record = next_record(&mut stream, WAIT).await;
        acks.ack(record.offset).await.unwrap();
    }
    // Several would-be intervals pass without a commit.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(committed_offset(&bootstrap, &group, &topic, 0).await, None);
    assert_eq!(acks.commit(4, CommitMode::Sync).await.unwrap(), Some(4));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        committed_offset(&bootstrap, &group, &topic, 0).await,
        Some(4)
    );
    assert_eq!(acks.commit(7, CommitMode::Async).await.unwrap(), Some(7));
    eventually("the async manual commit of 7", WAIT, || {
        let (bootstrap, group, topic) = (bootstrap.clone(), group.clone(), topic.clone());
        async move { committed_offset(&bootstrap, &group, &topic, 0).await == Some(7) }
    })
    .await;
    drop(stream);
    engine.shutdown().await;
}

/// The batch API: `next_batch` hands out records in offset order, at most `max` at a time;
/// `ack_many` acknowledges them under one call and refuses an offset acked twice.
async fn batches_are_taken_and_acknowledged_together(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 30).await;
    let group = unique_name("batches");
    let bootstrap = broker.bootstrap_servers();
    let mut engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .unwrap();
    let mut stream = engine.next_partition().await.unwrap();
    let acks = stream.acknowledger();
    let mut offsets = Vec::new();
    while offsets.len() < 30 {
        let batch = tokio::time::timeout(WAIT, stream.next_batch(7))
            .await
            .expect("a batch within the timeout")
            .expect("the stream is open");
        assert!((1..=7).contains(&batch.len()), "batch of {}", batch.len());
        let batch_offsets: Vec<i64> = batch.iter().map(|record| record.offset).collect();
        acks.ack_many(batch_offsets.iter().copied()).await.unwrap();
        offsets.extend(batch_offsets);
    }
    assert_eq!(offsets, (0..30).collect::<Vec<i64>>());
    assert!(matches!(
        acks.ack_many([29]).await,
        Err(sluicegate::AckError::Offset { .. })
    ));
    let summary = engine.shutdown().await;
    assert_eq!(summary.stats.acked, 30);
    assert_eq!(
        committed_offset(&bootstrap, &group, &topic, 0).await,
        Some(30)
    );
}

on_both_brokers!(
    commit_then_restart_resumes_at_the_committed_offset,
    out_of_order_acks_commit_the_contiguous_prefix,
    interval_strategy_commits_within_an_interval,
    sync_strategy_commits_before_the_next_record,
    manual_strategy_commits_only_what_was_triggered,
    batches_are_taken_and_acknowledged_together,
);
