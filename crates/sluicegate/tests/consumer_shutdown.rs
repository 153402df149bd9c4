//! Shutdown drains in-flight records and commits them; a member killed with SIGKILL loses
//! nothing, because its unacknowledged records are delivered again to the next member.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{next_record, options, topic_with_records};
use futures_util::StreamExt;
use sluicegate::{ConsumerEngine, Record};
use sluicegate_testing::{committed_offset, init_tracing, unique_name, TestBroker};

const WAIT: Duration = Duration::from_secs(30);

/// Records in flight when shutdown starts are acked during the drain and committed; records
/// never acked are reported as undrained and not committed.
async fn shutdown_drains_then_commits(broker: TestBroker) {
    let topic = topic_with_records(&broker, 1, 20).await;
    let group = unique_name("drain");
    let bootstrap = broker.bootstrap_servers();
    let mut engine = ConsumerEngine::start(
        options(&broker, &group, &topic).drain_timeout(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    let mut stream = engine.next_partition().await.unwrap();
    let acks = stream.acknowledger();
    let mut in_flight: Vec<Record> = Vec::new();
    for _ in 0..8 {
        in_flight.push(next_record(&mut stream, WAIT).await);
    }
    // Offsets 0..=5 finish while shutdown waits; 6 and 7 never do.
    let late_acks = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for record in &in_flight[..6] {
            acks.ack(record.offset).await.unwrap();
        }
        // Once the drain timeout released the partition, acknowledgements are refused.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(acks.ack(in_flight[6].offset).await.is_err());
    });
    let summary = engine.shutdown().await;
    assert_eq!(summary.undrained, 2);
    assert_eq!(
        summary.committed.values().copied().collect::<Vec<_>>(),
        vec![6]
    );
    assert_eq!(
        committed_offset(&bootstrap, &group, &topic, 0).await,
        Some(6)
    );
    assert!(stream.next().await.is_none(), "the stream ends at shutdown");
    late_acks.await.unwrap();
}

/// The child side of the kill test: consumes slowly, printing each record before acking it.
/// Run only as a child process of `a_killed_member_loses_nothing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the SIGKILL tests"]
async fn child_member() {
    let (Ok(bootstrap), Ok(group), Ok(topic)) = (
        std::env::var("CHILD_BOOTSTRAP"),
        std::env::var("CHILD_GROUP"),
        std::env::var("CHILD_TOPIC"),
    ) else {
        return;
    };
    let options = sluicegate::ConsumerOptions::new(bootstrap, group, [topic])
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_millis(500))
        .max_poll_interval(Duration::from_secs(10))
        .commit_interval(Duration::from_millis(100));
    let mut engine = ConsumerEngine::start(options).await.unwrap();
    engine.spawn_subscribers((), |mut stream, ()| async move {
        let acks = stream.acknowledger();
        while let Some(record) = stream.next().await {
            tokio::time::sleep(Duration::from_millis(2)).await;
            println!("processed {} {}", record.partition, record.offset);
            acks.ack(record.offset).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_secs(120)).await;
}

async fn a_killed_member_loses_nothing(broker: TestBroker) {
    const PARTITIONS: i32 = 3;
    const PER_PARTITION: usize = 400;
    let topic = topic_with_records(&broker, PARTITIONS, PER_PARTITION).await;
    let group = unique_name("kill");
    let bootstrap = broker.bootstrap_servers();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_member",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("CHILD_BOOTSTRAP", &bootstrap)
        .env("CHILD_GROUP", &group)
        .env("CHILD_TOPIC", &topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut processed = BTreeSet::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut record_line = |line: String| {
        // libtest prints "test child_member ... " without a newline before the test's output.
        if let Some((_, rest)) = line.split_once("processed ") {
            let (partition, offset) = rest.split_once(' ').unwrap();
            processed.insert((
                partition.parse::<i32>().unwrap(),
                offset.parse::<i64>().unwrap(),
            ));
        }
    };
    let kill_after = PARTITIONS as usize * PER_PARTITION / 3;
    for _ in 0..kill_after {
        record_line(lines.next().expect("child ended early").unwrap());
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What the child printed before it died: it prints each record before acking it.
    for line in lines {
        record_line(line.unwrap());
    }
    let processed_by_child = processed.len();

    let mut engine = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .unwrap();
    let mut duplicates = 0;
    let mut streams = Vec::new();
    for _ in 0..PARTITIONS {
        streams.push(
            tokio::time::timeout(WAIT, engine.next_partition())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    for stream in &mut streams {
        let acks = stream.acknowledger();
        loop {
            let record = next_record(stream, WAIT).await;
            if !processed.insert((record.partition, record.offset)) {
                duplicates += 1;
            }
            acks.ack(record.offset).await.unwrap();
            if record.offset == PER_PARTITION as i64 - 1 {
                break;
            }
        }
    }
    let expected: BTreeSet<(i32, i64)> = (0..PARTITIONS)
        .flat_map(|partition| (0..PER_PARTITION as i64).map(move |offset| (partition, offset)))
        .collect();
    assert_eq!(processed, expected, "every record processed at least once");
    // Re-delivery starts at the child's last commit: at most what it processed since then
    // (100 ms of commits at ~2 ms a record per partition, plus its demand window).
    assert!(duplicates <= processed_by_child, "{duplicates} duplicates");
    engine.shutdown().await;
    for partition in 0..PARTITIONS {
        assert_eq!(
            committed_offset(&bootstrap, &group, &topic, partition).await,
            Some(PER_PARTITION as i64)
        );
    }
}

on_both_brokers!(shutdown_drains_then_commits, a_killed_member_loses_nothing);
