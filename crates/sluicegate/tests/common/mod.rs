//! Helpers shared by the consumer engine's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::StreamExt;
use sluicegate::testing::{self, TestBroker, TestRecord};
use sluicegate::{ConsumerOptions, PartitionStream, Record};

/// Engine options for tests: short group timeouts (tansu waits on them during joins), fast
/// interval commits and a short drain timeout.
pub fn options(broker: &TestBroker, group: &str, topic: &str) -> ConsumerOptions {
    ConsumerOptions::new(broker.bootstrap_servers(), group, [topic])
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_millis(500))
        .max_poll_interval(Duration::from_secs(10))
        .commit_interval(Duration::from_millis(200))
        .drain_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10))
}

/// A fresh topic with `partitions` partitions and `records` values `"{partition}-{n}"` spread
/// evenly, produced together (so they share producer batches).
pub async fn topic_with_records(
    broker: &TestBroker,
    partitions: i32,
    per_partition: usize,
) -> String {
    let topic = testing::unique_name("engine");
    broker.create_topic(&topic, partitions).await;
    let records = (0..per_partition)
        .flat_map(|n| (0..partitions).map(move |p| TestRecord::to_partition(p, format!("{p}-{n}"))))
        .collect();
    testing::produce_records(&broker.bootstrap_servers(), &topic, records).await;
    topic
}

/// Takes the next record of a stream, failing the test after `timeout`.
pub async fn next_record(stream: &mut PartitionStream, timeout: Duration) -> Record {
    match tokio::time::timeout(timeout, stream.next()).await {
        Ok(Some(record)) => record,
        Ok(None) => panic!("stream of {} ended", stream.partition()),
        Err(_) => panic!("no record from {} within {timeout:?}", stream.partition()),
    }
}

/// Polls `condition` every 50 ms until it holds, failing the test after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
