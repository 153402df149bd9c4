//! `sluice status` against Apache Kafka (one per test binary, see
//! `sluicegate_testing::kafka`): committed offset, end offset and lag per partition, owners
//! (member, host and client id of a running group), errors, and `--watch`. Reading owners out
//! of the assignment bytes is unit-tested in `src/status/assignment.rs`.

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{consume_in_group, run, sluice};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use sluicegate_testing::{
    consumer_config, kafka, produce_records, unique_name, TestBroker, TestRecord,
};

/// What one JSON line of `sluice status --format json` says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    topic: String,
    partition: i64,
    committed: Option<i64>,
    end: i64,
    lag: i64,
}

/// A topic with `counts[p]` records in partition `p`.
fn filled_topic(prefix: &str, counts: &[usize]) -> String {
    let broker = TestBroker::kafka();
    let topic = unique_name(prefix);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(broker.create_topic(&topic, counts.len() as i32));
    let records = counts
        .iter()
        .enumerate()
        .flat_map(|(partition, &count)| {
            (0..count).map(move |n| TestRecord::to_partition(partition as i32, format!("r{n}")))
        })
        .collect();
    runtime.block_on(produce_records(
        &broker.bootstrap_servers(),
        &topic,
        records,
    ));
    topic
}

/// Commits these offsets for `group` without joining it.
fn commit(group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = consumer_config(&kafka().bootstrap_servers(), group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("offset");
    }
    consumer.commit(&list, CommitMode::Sync).expect("commit");
}

/// `sluice status ARGS... --format json`, which must succeed: its objects and its stderr.
fn status_objects(group: &str, args: &[&str]) -> (Vec<Value>, String) {
    let brokers = kafka().bootstrap_servers();
    let mut argv = vec![
        "status", "-b", &brokers, "--group", group, "--format", "json",
    ];
    argv.extend(args);
    let status = run(&argv, b"");
    status.assert_ok();
    let objects = std::str::from_utf8(&status.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect();
    (objects, status.stderr)
}

/// The rows of `sluice status ARGS... --format json`.
fn status_rows(group: &str, args: &[&str]) -> Vec<Row> {
    let (objects, _) = status_objects(group, args);
    objects
        .iter()
        .map(|object| {
            assert_eq!(object["group"], group, "{object}");
            Row {
                topic: object["topic"].as_str().expect("topic").to_owned(),
                partition: object["partition"].as_i64().expect("partition"),
                committed: object["committed"].as_i64(),
                end: object["end"].as_i64().expect("end"),
                lag: object["lag"].as_i64().expect("lag"),
            }
        })
        .collect()
}

fn row(topic: &str, partition: i64, committed: Option<i64>, end: i64, lag: i64) -> Row {
    Row {
        topic: topic.to_owned(),
        partition,
        committed,
        end,
        lag,
    }
}

#[test]
fn committed_end_and_lag_per_partition_then_zero_lag() {
    let topic = filled_topic("status-lag", &[5, 3, 0]);
    let group = unique_name("status-lag-group");
    commit(&group, &topic, &[(0, 2), (1, 3)]);

    let rows = status_rows(&group, &[]);
    assert_eq!(
        rows,
        vec![
            row(&topic, 0, Some(2), 5, 3),
            row(&topic, 1, Some(3), 3, 0),
            row(&topic, 2, None, 0, 0),
        ]
    );

    // The table says the same, in columns, with the total.
    let brokers = kafka().bootstrap_servers();
    let table = run(&["status", "-b", &brokers, "--group", &group], b"");
    table.assert_ok();
    let text = String::from_utf8(table.stdout.clone()).expect("UTF-8");
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "END",
            "LAG",
            "OWNER",
            "HOST",
            "CLIENT-ID"
        ]
    );
    assert_eq!(lines[1][..5], [topic.as_str(), "0", "2", "5", "3"]);
    assert_eq!(lines[2][..5], [topic.as_str(), "1", "3", "3", "0"]);
    assert_eq!(lines[3][..5], [topic.as_str(), "2", "-", "0", "0*"]);
    assert!(text.contains("total lag 3"), "{text}");

    // Once everything is committed, no lag is left anywhere.
    commit(&group, &topic, &[(0, 5), (1, 3), (2, 0)]);
    let rows = status_rows(&group, &["--topic", &topic]);
    assert_eq!(
        rows,
        vec![
            row(&topic, 0, Some(5), 5, 0),
            row(&topic, 1, Some(3), 3, 0),
            row(&topic, 2, Some(0), 0, 0),
        ]
    );
}

#[test]
fn a_group_that_consumed_everything_has_zero_lag() {
    let topic = filled_topic("status-consumed", &[4, 2, 3]);
    let group = unique_name("status-consumed-group");
    let brokers = kafka().bootstrap_servers();
    consume_in_group(
        &brokers,
        &topic,
        &group,
        &["--count", "9", "-X", "auto.offset.reset=earliest"],
    )
    .assert_ok();
    let rows = status_rows(&group, &[]);
    assert_eq!(
        rows,
        vec![
            row(&topic, 0, Some(4), 4, 0),
            row(&topic, 1, Some(2), 2, 0),
            row(&topic, 2, Some(3), 3, 0),
        ]
    );
}

#[test]
fn owners_while_a_consumer_is_in_the_group() {
    let topic = filled_topic("status-owner", &[2, 2]);
    let group = unique_name("status-owner-group");
    let client_id = unique_name("status-owner-client");
    let consumer: BaseConsumer = consumer_config(&kafka().bootstrap_servers(), &group)
        .set("client.id", &client_id)
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let started = Instant::now();
    while consumer.assignment().expect("assignment").count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(40), "no assignment");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    // The member holds both partitions and committed nothing yet.
    let (objects, stderr) = status_objects(&group, &["--topic", &topic]);
    let rows: Vec<(i64, Option<i64>, i64)> = objects
        .iter()
        .map(|object| {
            (
                object["partition"].as_i64().expect("partition"),
                object["committed"].as_i64(),
                object["lag"].as_i64().expect("lag"),
            )
        })
        .collect();
    assert_eq!(rows, [(0, None, 2), (1, None, 2)]);
    assert!(stderr.is_empty(), "{stderr}");
    // Kafka describes the group: the member that owns both partitions, its host and client id
    // (a classic member's id is its client id and a unique suffix).
    for object in &objects {
        let owner = &object["owner"];
        assert_eq!(owner["client_id"], client_id.as_str(), "{object}");
        let member = owner["member_id"].as_str().expect("a member id");
        assert!(member.starts_with(&format!("{client_id}-")), "{object}");
        assert_eq!(owner["host"], "127.0.0.1", "{object}");
    }
    assert_eq!(
        objects[0]["owner"], objects[1]["owner"],
        "one member owns both"
    );
    // The table shows the same owner in its columns, and the group's state.
    let brokers = kafka().bootstrap_servers();
    let table = run(
        &[
            "status", "-b", &brokers, "--group", &group, "--topic", &topic,
        ],
        b"",
    );
    table.assert_ok();
    let text = String::from_utf8(table.stdout.clone()).expect("UTF-8");
    let member = objects[0]["owner"]["member_id"].as_str().expect("member");
    let first_row: Vec<&str> = text
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(
        first_row[5..],
        [member, "127.0.0.1", client_id.as_str()],
        "{text}"
    );
    assert!(
        text.contains(&format!("group {group}: Stable, 1 member")),
        "{text}"
    );
    drop(consumer);
}

#[test]
fn a_missing_group_or_topic_is_one_line_and_status_1() {
    let brokers = kafka().bootstrap_servers();
    let group = unique_name("status-nobody");
    run(&["status", "-b", &brokers, "--group", &group], b"")
        .assert_one_line_error(1, "has no committed offsets");
    let missing = unique_name("status-no-topic");
    run(
        &[
            "status", "-b", &brokers, "--group", &group, "--topic", &missing,
        ],
        b"",
    )
    .assert_one_line_error(1, &format!("topic `{missing}` does not exist"));
    let closed = format!("127.0.0.1:{}", common::closed_port());
    run(
        &[
            "status",
            "-b",
            &closed,
            "--group",
            &group,
            "--connect-timeout",
            "1s",
        ],
        b"",
    )
    .assert_one_line_error(1, "could not reach the brokers");
}

#[test]
fn watch_prints_a_table_per_interval_until_ctrl_c() {
    let topic = filled_topic("status-watch", &[3]);
    let group = unique_name("status-watch-group");
    commit(&group, &topic, &[(0, 1)]);
    let brokers = kafka().bootstrap_servers();
    let mut child = sluice()
        .args([
            "status",
            "-b",
            &brokers,
            "--group",
            &group,
            "--watch",
            "--interval",
            "200ms",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice status starts");
    thread::sleep(Duration::from_millis(1_500));
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("sluice status --watch ignored Ctrl-C");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    assert_eq!(status.code(), Some(0), "{stdout}");
    let tables = stdout
        .lines()
        .filter(|line| line.starts_with("TOPIC"))
        .count();
    assert!(tables >= 3, "one table per interval: {stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "no escape codes into a pipe: {stdout:?}"
    );
    assert!(
        stdout.contains(&format!("{topic}  0          1          3    2")),
        "{stdout}"
    );
}

/// An engine processed the first records of a partition and stopped with more to read: once its
/// last (stamped) commit is older than `--stall-after`, the partition is marked stalled; with the
/// default of five minutes it is not.
#[test]
fn a_partition_with_lag_and_no_recent_progress_is_marked_stalled() {
    use futures_util::StreamExt as _;
    use sluicegate::{ConsumerEngine, ConsumerOptions};

    let topic = filled_topic("status-stall", &[5]);
    let group = unique_name("status-stall-group");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let options = ConsumerOptions::new(kafka().bootstrap_servers(), &group, [topic.as_str()])
            .commit_interval(Duration::from_millis(100))
            .drain_timeout(Duration::from_millis(100));
        let mut engine = ConsumerEngine::start(options).await.expect("engine");
        let mut stream = engine.next_partition().await.expect("the partition");
        let acks = stream.acknowledger();
        for _ in 0..2 {
            let record = stream.next().await.expect("a record");
            acks.ack(record.offset).await.expect("ack");
        }
        // The third record stays in flight: the engine commits 2 and stops there.
        let _third = stream.next().await.expect("a record");
        let summary = engine.shutdown().await;
        assert_eq!(summary.committed.values().copied().collect::<Vec<_>>(), [2]);
    });
    thread::sleep(Duration::from_millis(1_500));

    let (objects, _) = status_objects(&group, &["--stall-after", "1s"]);
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0]["lag"], 3);
    assert_eq!(objects[0]["stalled"], true, "{}", objects[0]);
    assert!(objects[0]["committed_at_ms"].as_i64().is_some());
    let table = run(
        &[
            "status",
            "-b",
            &kafka().bootstrap_servers(),
            "--group",
            &group,
            "--stall-after",
            "1s",
        ],
        b"",
    );
    table.assert_ok();
    let text = String::from_utf8(table.stdout).expect("UTF-8");
    assert!(text.contains("3!"), "{text}");
    assert!(text.contains("1 stalled"), "{text}");

    let (objects, _) = status_objects(&group, &[]);
    assert_eq!(objects[0]["stalled"], false, "{}", objects[0]);
}
