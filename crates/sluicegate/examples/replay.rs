//! Start positions and replay, on the embedded broker: a new group starts at an offset, or at
//! the end; once it has committed, it resumes where it was, whatever its start position; and
//! a new group replays from a point. (Sending an existing group back is `sluice offsets
//! reset`, tested on Kafka: the mock cluster refuses commits from outside a group it knows.)
//!
//! Run: `cargo run -p sluicegate --example replay`

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use sluicegate::admin::Admin;
use sluicegate::producer::{ProduceRecord, Producer, ProducerOptions};
use sluicegate::{
    ClusterOptions, ConsumerEngine, ConsumerOptions, EmbeddedBroker, StartPosition, TopicPartition,
};

const TOPIC: &str = "ledger";

/// Starts a group at `position`, reads `count` records (producing `then` once assigned),
/// acknowledges them, and shuts down (committing): the offsets it read.
async fn read(
    brokers: &str,
    group: &str,
    position: StartPosition,
    count: usize,
    then: &[&str],
) -> Result<Vec<i64>, Box<dyn std::error::Error>> {
    let options = ConsumerOptions::new(brokers, group, [TOPIC]).start_position(position);
    let mut engine = ConsumerEngine::start(options).await?;
    let mut stream = engine.next_partition().await.ok_or("no partition")?;
    let producer = Producer::new(ProducerOptions::new().bootstrap_servers(brokers));
    for value in then {
        producer
            .produce(TOPIC, ProduceRecord::new(value.as_bytes()))
            .await?;
    }
    producer.shutdown(Duration::from_secs(5)).await;
    let acks = stream.acknowledger();
    let mut offsets = Vec::new();
    while offsets.len() < count {
        let record = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await?
            .ok_or("the stream ended")?;
        acks.ack(record.offset).await?;
        offsets.push(record.offset);
    }
    drop(stream);
    engine.shutdown().await;
    Ok(offsets)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = EmbeddedBroker::start(1)?;
    broker.create_topic(TOPIC, 1)?;
    let brokers = broker.bootstrap_servers();
    let producer = Producer::new(ProducerOptions::new().bootstrap_servers(&brokers));
    for n in 0..5 {
        producer
            .produce(TOPIC, ProduceRecord::new(format!("entry {n}").as_bytes()))
            .await?;
    }
    producer.shutdown(Duration::from_secs(5)).await;

    // A new group from offset 3, another from the end (only what is written after it starts).
    let from_3 = read(&brokers, "audit", StartPosition::Offset(3), 2, &[]).await?;
    assert_eq!(from_3, [3, 4]);
    let from_end = read(&brokers, "alerts", StartPosition::Latest, 1, &["entry 5"]).await?;
    assert_eq!(from_end, [5]);
    // A group that committed resumes where it was, whatever its start position says.
    let resumed = read(&brokers, "audit", StartPosition::Offset(0), 1, &[]).await?;
    assert_eq!(resumed, [5]);

    // Replay from a point: a new group starting at offset 1 reads what the others read. To
    // send an existing group back instead, stop it and move its offsets with
    // `sluice offsets reset` (or `Admin::commit_offsets`): Kafka accepts that while the group
    // has no members, but the mock cluster refuses commits from outside any group it knows.
    let admin = Admin::new(ClusterOptions::new(&brokers))?;
    let audit = admin.committed_offsets("audit", [TopicPartition::new(TOPIC, 0)])?;
    assert_eq!(audit, BTreeMap::from([(TopicPartition::new(TOPIC, 0), 6)]));
    let replayed = read(&brokers, "audit-replay", StartPosition::Offset(1), 5, &[]).await?;
    assert_eq!(replayed, [1, 2, 3, 4, 5]);
    println!("from offset 3: {from_3:?}; from the end: {from_end:?}; resumed: {resumed:?}; replayed: {replayed:?}");
    Ok(())
}
