//! `sluice offsets reset` on Apache Kafka: each `--to`, the dry run that changes nothing,
//! `--partition`, and the refusal while the group has members (under the classic protocol,
//! which the brokers describe, and under the consumer protocol, whose commit they refuse).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::run;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sluicegate::admin::Admin;
use sluicegate::{ClusterOptions, TopicPartition};
use sluicegate_testing::{
    consumer_config, kafka, produce_records, unique_name, TestBroker, TestRecord,
};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(future)
}

/// A 2-partition topic with `before` records per partition written before the returned
/// time and `after` records per partition written after it.
fn topic_around_a_time(prefix: &str, before: usize, after: usize) -> (String, i64) {
    let broker = TestBroker::kafka();
    let topic = unique_name(prefix);
    block_on(broker.create_topic(&topic, 2));
    let batch = |count: usize, tag: &str| -> Vec<TestRecord> {
        (0..2)
            .flat_map(|partition| {
                (0..count).map(move |n| TestRecord::to_partition(partition, format!("{tag}{n}")))
            })
            .collect()
    };
    let bootstrap = broker.bootstrap_servers();
    block_on(produce_records(&bootstrap, &topic, batch(before, "old")));
    std::thread::sleep(Duration::from_millis(50));
    let middle = now_ms();
    std::thread::sleep(Duration::from_millis(50));
    block_on(produce_records(&bootstrap, &topic, batch(after, "new")));
    (topic, middle)
}

fn admin() -> Admin {
    Admin::new(ClusterOptions::new(kafka().bootstrap_servers())).expect("admin")
}

/// What `group` committed on the two partitions of `topic`.
fn committed(group: &str, topic: &str) -> BTreeMap<i32, i64> {
    admin()
        .committed_offsets(group, (0..2).map(|p| TopicPartition::new(topic, p)))
        .expect("committed offsets")
        .into_iter()
        .map(|(at, offset)| (at.partition, offset))
        .collect()
}

/// `sluice offsets reset` with these arguments: exit status, stdout rows, stderr.
fn reset(group: &str, topic: &str, args: &[&str]) -> (Option<i32>, Vec<String>, String) {
    let brokers = kafka().bootstrap_servers();
    let mut argv = vec![
        "offsets", "reset", "-b", &brokers, "--group", group, "--topic", topic,
    ];
    argv.extend(args);
    let output = run(&argv, b"");
    let rows = String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (output.status.code(), rows, output.stderr)
}

#[test]
fn each_target_moves_the_committed_offsets_and_a_dry_run_changes_nothing() {
    let (topic, middle) = topic_around_a_time("reset-targets", 4, 6);
    let group = unique_name("reset-targets-group");

    // A dry run shows the move and commits nothing.
    let (code, rows, stderr) = reset(&group, &topic, &["--to", "offset:3"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        rows,
        [
            "TOPIC\tPARTITION\tCURRENT\tNEW".to_owned(),
            format!("{topic}\t0\t-\t3"),
            format!("{topic}\t1\t-\t3"),
        ]
    );
    assert!(stderr.contains("dry run, nothing changed"), "{stderr}");
    assert_eq!(committed(&group, &topic), BTreeMap::new());

    // Each target, executed, in turn; the next one starts from what it committed.
    for (to, expected) in [
        ("offset:3", [3, 3]),
        ("offset:99", [10, 10]),
        ("earliest", [0, 0]),
        ("latest", [10, 10]),
        ("shift:-2", [8, 8]),
        ("shift:+1", [9, 9]),
        ("shift:-50", [0, 0]),
    ] {
        let (code, _, stderr) = reset(&group, &topic, &["--to", to, "--execute"]);
        assert_eq!(code, Some(0), "--to {to}: {stderr}");
        assert_eq!(
            committed(&group, &topic),
            BTreeMap::from([(0, expected[0]), (1, expected[1])]),
            "--to {to}"
        );
    }
    let datetime = format!("datetime:{middle}");
    let (code, rows, stderr) = reset(&group, &topic, &["--to", &datetime, "--execute"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        rows[1],
        format!("{topic}\t0\t0\t4"),
        "the first record after the time"
    );
    assert_eq!(committed(&group, &topic), BTreeMap::from([(0, 4), (1, 4)]));
    let future = format!("datetime:{}", now_ms() + 3_600_000);
    reset(&group, &topic, &["--to", &future, "--execute"]);
    assert_eq!(
        committed(&group, &topic),
        BTreeMap::from([(0, 10), (1, 10)]),
        "no record that late: the end"
    );

    // --partition moves only the partitions named.
    let (code, rows, stderr) = reset(
        &group,
        &topic,
        &["--to", "earliest", "--partition", "1", "--execute"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(committed(&group, &topic), BTreeMap::from([(0, 10), (1, 0)]));
}

#[test]
fn bad_targets_and_unknown_partitions_are_refused_by_name() {
    let (topic, _) = topic_around_a_time("reset-bad", 1, 0);
    let group = unique_name("reset-bad-group");
    let (code, _, stderr) = reset(&group, &topic, &["--to", "yesterday"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`yesterday`: expected earliest, latest, datetime:T"),
        "{stderr}"
    );
    let (code, _, stderr) = reset(&group, &topic, &["--to", "earliest", "--partition", "7"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("has no partition 7"), "{stderr}");
    let (code, _, stderr) = reset(&group, "no-such-topic-here", &["--to", "earliest"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}

/// A member of `group` on `topic` under `protocol`, polled until it holds both partitions.
fn member(group: &str, topic: &str, protocol: &str) -> BaseConsumer {
    let mut config = consumer_config(&kafka().bootstrap_servers(), group);
    config.set("group.protocol", protocol);
    if protocol == "consumer" {
        // Classic-only settings are refused under the consumer protocol.
        config.remove("session.timeout.ms");
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let started = Instant::now();
    while consumer.assignment().expect("assignment").count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(40), "no assignment");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    consumer
}

#[test]
fn a_group_with_members_is_refused_and_keeps_its_offsets() {
    for protocol in ["classic", "consumer"] {
        let (topic, _) = topic_around_a_time("reset-active", 2, 0);
        let group = unique_name("reset-active-group");
        let (code, _, stderr) = reset(&group, &topic, &["--to", "latest", "--execute"]);
        assert_eq!(code, Some(0), "{stderr}");
        let consumer = member(&group, &topic, protocol);
        for args in [
            &["--to", "earliest"][..],
            &["--to", "earliest", "--execute"],
        ] {
            let (code, rows, stderr) = reset(&group, &topic, args);
            if protocol == "classic" || args.len() == 3 {
                assert_eq!(code, Some(1), "{protocol} {args:?}: {stderr}");
                assert!(
                    stderr.contains(&format!("group `{group}` has active members")),
                    "{protocol}: {stderr}"
                );
                assert!(stderr.contains("stop its consumers first"), "{stderr}");
            } else {
                // The brokers do not describe a consumer-protocol group's members: its dry
                // run shows the move, and the commit is what they refuse.
                assert_eq!(code, Some(0), "{protocol} dry run: {stderr}");
                assert_eq!(rows.len(), 3);
            }
        }
        assert_eq!(
            committed(&group, &topic),
            BTreeMap::from([(0, 2), (1, 2)]),
            "{protocol}: nothing moved"
        );
        drop(consumer);
    }
}
