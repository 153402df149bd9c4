//! `sluice produce --create-topic` and `sluice consume` against Apache Kafka (one per test
//! binary, see `sluicegate_testing::kafka`).

mod common;

use common::{consume_in_group, parse_json_lines, run};
use sluicegate_testing::{kafka, unique_name};

#[test]
fn create_topic_then_round_trip_on_kafka() {
    let brokers = kafka().bootstrap_servers();
    let topic = unique_name("cli-round-trip");
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for index in 0..40u8 {
        let key = [b'k', b'0' + index % 4];
        let value = [&b"v\xff\x00"[..], index.to_string().as_bytes(), b"\r"].concat();
        input.extend_from_slice(format!("n={index}\t").as_bytes());
        input.extend_from_slice(&key);
        input.push(b':');
        input.extend_from_slice(&value);
        input.push(b'\n');
        expected.push((key.to_vec(), value, format!("{index}").into_bytes()));
    }
    let produce = run(
        &[
            "produce",
            "-b",
            &brokers,
            "--topic",
            &topic,
            "--create-topic",
            "3",
            "--parse-headers",
            "-K",
            ":",
            "--compression",
            "lz4",
        ],
        &input,
    );
    produce.assert_ok();
    assert!(
        produce.stderr.contains("40 of 40 records"),
        "{}",
        produce.stderr
    );

    // A second run finds the topic and does not create it again.
    run(
        &[
            "produce",
            "-b",
            &brokers,
            "--topic",
            &topic,
            "--create-topic",
            "3",
        ],
        b"",
    )
    .assert_ok();

    let consume = consume_in_group(
        &brokers,
        &topic,
        "cli-round-trip",
        &["--from", "beginning", "--count", "40", "--format", "json"],
    );
    consume.assert_ok();
    let records = parse_json_lines(&consume.stdout);
    let partitions: std::collections::BTreeSet<i64> =
        records.iter().map(|record| record.partition).collect();
    assert!(
        partitions
            .iter()
            .all(|partition| (0..3).contains(partition)),
        "{partitions:?}"
    );
    let mut got: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = records
        .into_iter()
        .map(|record| {
            assert_eq!(record.headers.len(), 1, "{record:?}");
            let (name, number) = record.headers[0].clone();
            assert_eq!(name, b"n");
            (
                record.key.expect("key"),
                record.value.expect("value"),
                number.expect("header value"),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);

    // The group committed all 40: it has nothing left to print (`--from beginning` applies
    // only without a commit).
    let again = consume_in_group(
        &brokers,
        &topic,
        "cli-round-trip",
        &["--from", "beginning", "--exit-at-end"],
    );
    again.assert_ok();
    assert_eq!(again.stdout, b"");
}
