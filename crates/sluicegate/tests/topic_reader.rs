//! The topic reader against real brokers: each start position reads what it says up to the
//! end, chosen partitions only, new records followed with the partitions' ends reported, keys,
//! headers and timestamps as written, a group that commits only what was stored, and errors
//! that name the missing topic or partition.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{produce, topic_with_records};
use sluicegate::admin::Admin;
use sluicegate::reader::{ReadError, ReadEvent, ReadFrom, ReadUntil, ReaderOptions, TopicReader};
use sluicegate::{ClusterOptions, Record, TimestampType, TopicPartition};
use sluicegate_testing::{init_tracing, produce_records, unique_name, TestBroker, TestRecord};

const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

fn reader_options(broker: &TestBroker, topic: &str) -> ReaderOptions {
    ReaderOptions::new(ClusterOptions::new(broker.bootstrap_servers()), topic)
}

/// Opens a reader and reads until it is finished; the values by partition.
async fn read_to_end(options: ReaderOptions) -> BTreeMap<i32, Vec<String>> {
    tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::open(options.until(ReadUntil::End)).expect("a reader");
        let started = Instant::now();
        let mut values: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        while !reader.is_finished() {
            assert!(started.elapsed() < WAIT, "not finished: {values:?}");
            if let Some(ReadEvent::Record { record, .. }) = reader.next(POLL).expect("reading") {
                values
                    .entry(record.partition)
                    .or_default()
                    .push(value(&record));
            }
        }
        values
    })
    .await
    .expect("the reading thread")
}

fn value(record: &Record) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

/// `"{partition}-{n}"` for each `n` of `numbers`.
fn values(partition: i32, numbers: std::ops::Range<usize>) -> Vec<String> {
    numbers.map(|n| format!("{partition}-{n}")).collect()
}

async fn each_start_reads_what_it_says_up_to_the_end(broker: TestBroker) {
    let topic = topic_with_records(&broker, 2, 10).await;
    let name = broker.name();
    let both = |numbers: std::ops::Range<usize>| {
        BTreeMap::from([(0, values(0, numbers.clone())), (1, values(1, numbers))])
    };
    let earliest = read_to_end(reader_options(&broker, &topic).from(ReadFrom::Earliest)).await;
    assert_eq!(earliest, both(0..10), "{name}: earliest");
    let offset = read_to_end(reader_options(&broker, &topic).from(ReadFrom::Offset(7))).await;
    assert_eq!(offset, both(7..10), "{name}: offset 7");
    let clamped = read_to_end(reader_options(&broker, &topic).from(ReadFrom::Offset(99))).await;
    assert_eq!(clamped, BTreeMap::new(), "{name}: past the end");
    let before_end =
        read_to_end(reader_options(&broker, &topic).from(ReadFrom::BeforeEnd(4))).await;
    assert_eq!(before_end, both(6..10), "{name}: 4 before the end");
    let more_than_kept =
        read_to_end(reader_options(&broker, &topic).from(ReadFrom::BeforeEnd(50))).await;
    assert_eq!(more_than_kept, both(0..10), "{name}: 50 before the end");
    let latest = read_to_end(reader_options(&broker, &topic).from(ReadFrom::Latest)).await;
    assert_eq!(latest, BTreeMap::new(), "{name}: latest");
    let chosen = read_to_end(
        reader_options(&broker, &topic)
            .from(ReadFrom::Earliest)
            .partitions([1]),
    )
    .await;
    assert_eq!(
        chosen,
        BTreeMap::from([(1, values(1, 0..10))]),
        "{name}: partition 1"
    );
    // The mock cluster answers every lookup by time with the end.
    if broker.as_embedded().is_none() {
        let since_epoch =
            read_to_end(reader_options(&broker, &topic).from(ReadFrom::Time(0))).await;
        assert_eq!(since_epoch, both(0..10), "{name}: since 1970");
        let future = i64::MAX / 2;
        let from_future =
            read_to_end(reader_options(&broker, &topic).from(ReadFrom::Time(future))).await;
        assert_eq!(from_future, BTreeMap::new(), "{name}: from the future");
    }
}

async fn following_reads_new_records_and_reports_each_end(broker: TestBroker) {
    let topic = topic_with_records(&broker, 2, 3).await;
    let options = reader_options(&broker, &topic).from(ReadFrom::Latest);
    let mut reader = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::open(options).expect("a reader");
        let started = Instant::now();
        let mut ends = Vec::new();
        while !reader.caught_up() {
            assert!(started.elapsed() < WAIT, "ends so far: {ends:?}");
            match reader.next(POLL).expect("reading") {
                Some(ReadEvent::PartitionEnd { partition, .. }) => ends.push(partition),
                Some(other) => panic!("nothing was written since: {other:?}"),
                None => {}
            }
        }
        ends.sort_unstable();
        assert_eq!(ends, vec![0, 1]);
        reader
    })
    .await
    .expect("the reading thread");
    produce(&broker, &topic, 2, 3..5).await;
    let got = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut got: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        while got.values().map(Vec::len).sum::<usize>() < 4 || !reader.caught_up() {
            assert!(started.elapsed() < WAIT, "read so far: {got:?}");
            if let Some(ReadEvent::Record { record, .. }) = reader.next(POLL).expect("reading") {
                assert!(!reader.caught_up(), "a record came since the end");
                got.entry(record.partition)
                    .or_default()
                    .push(value(&record));
            }
        }
        assert!(!reader.is_finished(), "following never finishes");
        got
    })
    .await
    .expect("the reading thread");
    assert_eq!(
        got,
        BTreeMap::from([(0, values(0, 3..5)), (1, values(1, 3..5))]),
        "{}",
        broker.name()
    );
}

async fn keys_headers_and_timestamps_come_as_written(broker: TestBroker) {
    let topic = unique_name("reader-bytes");
    broker.create_topic(&topic, 1).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    produce_records(
        &broker.bootstrap_servers(),
        &topic,
        vec![TestRecord::keyed(b"k\xff".to_vec(), "v")
            .header("trace", "t-1")
            .header("empty", "")],
    )
    .await;
    let options = reader_options(&broker, &topic)
        .from(ReadFrom::Earliest)
        .until(ReadUntil::End);
    let (record, timestamp_type) = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::open(options).expect("a reader");
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < WAIT, "no record");
            if let Some(ReadEvent::Record {
                record,
                timestamp_type,
                ..
            }) = reader.next(POLL).expect("reading")
            {
                assert!(reader.is_finished(), "the only record was the end");
                return (record, timestamp_type);
            }
        }
    })
    .await
    .expect("the reading thread");
    assert_eq!(&*record.topic, topic);
    assert_eq!((record.partition, record.offset), (0, 0));
    assert_eq!(record.key.as_deref(), Some(&b"k\xff"[..]));
    assert_eq!(record.value.as_deref(), Some(&b"v"[..]));
    let headers: Vec<(&str, Option<&[u8]>)> = record
        .headers
        .iter()
        .map(|header| (header.key.as_str(), header.value.as_deref()))
        .collect();
    assert_eq!(
        headers,
        vec![("trace", Some(&b"t-1"[..])), ("empty", Some(&b""[..]))]
    );
    assert_eq!(timestamp_type, Some(TimestampType::CreateTime));
    let timestamp = record.timestamp_ms.expect("a timestamp");
    assert!(timestamp >= before - 1_000, "{timestamp} vs {before}");
}

async fn a_group_commits_what_was_stored_and_resumes_there(broker: TestBroker) {
    let topic = topic_with_records(&broker, 2, 4).await;
    let group = unique_name("reader-group");
    let mut cluster = ClusterOptions::new(broker.bootstrap_servers());
    if broker.as_embedded().is_some() {
        // The mock cluster holds a group that a member just left in a rebalance for the
        // session timeout less a second before the next member gets in: keep it short.
        cluster = cluster
            .librdkafka("session.timeout.ms", "2000")
            .librdkafka("heartbeat.interval.ms", "500");
    }
    let grouped = ReaderOptions::new(cluster.clone(), &topic)
        .group(&group)
        .from(ReadFrom::Earliest);
    let first = grouped.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::open(first).expect("a reader");
        let got = read_until_caught_up(&mut reader);
        // Only partition 0 is done with.
        reader.store_offsets([(0, 4)]).expect("stored");
        reader.commit().expect("committed");
        got
    })
    .await
    .expect("the reading thread");
    assert_eq!(
        read,
        BTreeMap::from([(0, values(0, 0..4)), (1, values(1, 0..4))]),
        "{}",
        broker.name()
    );
    let admin = Admin::new(cluster).expect("an admin client");
    let (group_name, topic_name) = (group.clone(), topic.clone());
    let committed = tokio::task::spawn_blocking(move || {
        admin
            .committed_offsets(
                &group_name,
                (0..2).map(|partition| TopicPartition::new(&topic_name, partition)),
            )
            .expect("committed offsets")
    })
    .await
    .expect("the admin thread");
    assert_eq!(
        committed,
        BTreeMap::from([(TopicPartition::new(&topic, 0), 4)]),
        "{}",
        broker.name()
    );
    let again = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::open(grouped).expect("a reader");
        read_until_caught_up(&mut reader)
    })
    .await
    .expect("the reading thread");
    assert_eq!(
        again,
        BTreeMap::from([(1, values(1, 0..4))]),
        "{}: resumes after what was committed",
        broker.name()
    );
}

/// Reads until every assigned partition reported its end.
fn read_until_caught_up(reader: &mut TopicReader) -> BTreeMap<i32, Vec<String>> {
    let started = Instant::now();
    let mut got: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    while !reader.caught_up() {
        assert!(started.elapsed() < WAIT, "read so far: {got:?}");
        if let Some(ReadEvent::Record { record, .. }) = reader.next(POLL).expect("reading") {
            got.entry(record.partition)
                .or_default()
                .push(value(&record));
        }
    }
    got
}

async fn a_missing_topic_or_partition_is_named(broker: TestBroker) {
    let topic = unique_name("reader-present");
    broker.create_topic(&topic, 1).await;
    let (missing, partition) = (
        reader_options(&broker, "reader-absent"),
        reader_options(&broker, &topic).partitions([0, 3]),
    );
    let brokers = broker.bootstrap_servers();
    tokio::task::spawn_blocking(move || {
        match TopicReader::open(missing) {
            Err(ReadError::NoTopic { topic, brokers: on }) => {
                assert_eq!((topic.as_str(), on), ("reader-absent", brokers));
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("opened a missing topic"),
        }
        match TopicReader::open(partition) {
            Err(error @ ReadError::NoPartition { .. }) => assert_eq!(
                error.to_string(),
                format!("topic `{topic}` has no partition 3 (it has 1 partitions)")
            ),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("opened a missing partition"),
        }
    })
    .await
    .expect("the reading thread");
}

on_both_brokers!(
    each_start_reads_what_it_says_up_to_the_end,
    following_reads_new_records_and_reports_each_end,
    keys_headers_and_timestamps_come_as_written,
    a_group_commits_what_was_stored_and_resumes_there,
    a_missing_topic_or_partition_is_named,
);

#[test]
fn a_group_takes_neither_partitions_nor_offsets_nor_an_end() {
    let cluster = ClusterOptions::new("127.0.0.1:9");
    let grouped = || ReaderOptions::new(cluster.clone(), "t").group("g");
    for (options, key) in [
        (grouped().partitions([0]), "partitions"),
        (grouped().from(ReadFrom::Offset(3)), "from"),
        (grouped().until(ReadUntil::End), "until"),
        (ReaderOptions::new(cluster.clone(), "t").group(" "), "group"),
    ] {
        assert_eq!(options.validate().unwrap_err().key, key);
        assert!(matches!(
            TopicReader::open(options),
            Err(ReadError::Options(_))
        ));
    }
    assert!(grouped().from(ReadFrom::Earliest).validate().is_ok());
}
