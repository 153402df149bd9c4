//! `sluice produce` and `sluice consume` fail with one line on stderr and the documented exit
//! status: 1 for what the cluster or the input says, 2 for invalid options.

mod common;

use std::time::Duration;

use common::{closed_port, consume_all, run, DevBroker};

#[test]
fn an_unreachable_broker_fails_within_the_connect_timeout() {
    let brokers = format!("127.0.0.1:{}", closed_port());
    for command in ["produce", "consume"] {
        let outcome = run(
            &[
                command,
                "-b",
                &brokers,
                "--topic",
                "t",
                "--connect-timeout",
                "1s",
            ],
            b"never read\n",
        );
        outcome.assert_one_line_error(
            1,
            &format!("could not reach the brokers at {brokers} within 1 s"),
        );
        assert!(
            outcome.stderr.contains("Connection refused"),
            "librdkafka's reason: {}",
            outcome.stderr
        );
        assert!(
            outcome.elapsed < Duration::from_secs(10),
            "{command} took {:?}",
            outcome.elapsed
        );
    }
}

#[test]
fn a_missing_topic_is_an_error_and_is_not_created() {
    let broker = DevBroker::start(&["present:1"]);
    let produce = run(
        &["produce", "-b", &broker.bootstrap, "--topic", "absent"],
        b"a record\n",
    );
    produce.assert_one_line_error(1, "topic `absent` does not exist");
    assert!(
        produce.stderr.contains("--create-topic"),
        "{}",
        produce.stderr
    );
    // Still absent: neither command's look at the cluster created it.
    let consume = run(
        &["consume", "-b", &broker.bootstrap, "--topic", "absent"],
        b"",
    );
    consume.assert_one_line_error(1, "topic `absent` does not exist");
    let consume = run(
        &[
            "consume",
            "-b",
            &broker.bootstrap,
            "--topic",
            "present",
            "--partition",
            "1",
        ],
        b"",
    );
    consume.assert_one_line_error(1, "topic `present` has no partition 1");
    let produce = run(
        &[
            "produce",
            "-b",
            &broker.bootstrap,
            "--topic",
            "present",
            "--partition",
            "5",
        ],
        b"x\n",
    );
    produce.assert_one_line_error(
        1,
        "topic `present` has no partition 5 (it has 1 partition: 0)",
    );
}

#[test]
fn create_topic_needs_a_broker_with_create_topics() {
    let broker = DevBroker::start(&[]);
    let produce = run(
        &[
            "produce",
            "-b",
            &broker.bootstrap,
            "--topic",
            "fresh",
            "--create-topic",
            "2",
            "--connect-timeout",
            "1s",
        ],
        b"x\n",
    );
    produce.assert_one_line_error(1, "could not create topic `fresh`");
    assert!(
        produce.stderr.contains("--topic fresh:2"),
        "{}",
        produce.stderr
    );
}

#[test]
fn invalid_options_exit_with_2_before_connecting() {
    // Nothing listens there: an option checked after connecting would fail with 1 instead.
    let brokers = format!("127.0.0.1:{}", closed_port());
    let cases: &[(&[&str], &str)] = &[
        (&["produce", "--topic", "t", "--rate", "0"], "'--rate <N>'"),
        (
            &["produce", "--topic", "t", "--compression", "brotli"],
            "'--compression <COMPRESSION>'",
        ),
        (
            &["produce", "--topic", "t", "--acks", "2"],
            "'--acks <ACKS>'",
        ),
        (
            &["produce", "--topic", "t", "--key-separator", ""],
            "must not be empty",
        ),
        (
            &["produce", "--topic", "t", "--key-separator", "\\q"],
            "unknown escape",
        ),
        (
            &["produce", "--topic", "t", "--header", "=v"],
            "header name is empty",
        ),
        (
            &["produce", "--topic", "bad topic"],
            "not a valid topic name",
        ),
        (
            &["produce", "--topic", "t", "--partition=-1"],
            "'--partition <PARTITION>'",
        ),
        (
            &["produce", "--topic", "t", "--create-topic", "0"],
            "'--create-topic <PARTITIONS>'",
        ),
        (
            &["produce", "--topic", "t", "/nonexistent/records.txt"],
            "could not open /nonexistent/records.txt",
        ),
        (
            &["produce", "--topic", "t", "-X", "no.such.property=1"],
            "invalid property no.such.property=1",
        ),
        (
            &["produce", "--topic", "t", "--connect-timeout", "soon"],
            "'--connect-timeout <DURATION>'",
        ),
        (&["produce"], "--topic <TOPIC>"),
        (
            &["produce", "--topic", "t", "--bogus"],
            "unexpected argument '--bogus'",
        ),
        (
            &["consume", "--topic", "t", "--from", "sideways"],
            "expected beginning, end",
        ),
        (
            &["consume", "--topic", "t", "--from", "time:yesterday"],
            "is not a time",
        ),
        (
            &["consume", "--topic", "t", "--count", "0"],
            "'--count <N>'",
        ),
        (
            &["consume", "--topic", "t", "--format", "xml"],
            "'--format <FORMAT>'",
        ),
        (
            &[
                "consume", "--topic", "t", "--group", "g", "--from", "offset:5",
            ],
            "cannot be used with --group",
        ),
        (
            &[
                "consume",
                "--topic",
                "t",
                "--group",
                "g",
                "--partition",
                "0",
            ],
            "cannot be used with --group",
        ),
        (
            &[
                "consume",
                "--topic",
                "t",
                "--format",
                "json",
                "--print-headers",
            ],
            "go with --format value",
        ),
        (
            &["consume", "--topic", "t", "-X", "no.such.property=1"],
            "invalid property",
        ),
    ];
    for (args, needle) in cases {
        let mut argv = args.to_vec();
        argv.extend_from_slice(&["-b", &brokers]);
        let outcome = run(&argv, b"");
        assert_eq!(
            outcome.status.code(),
            Some(2),
            "`sluice {}`: {}",
            argv.join(" "),
            outcome.stderr
        );
        let lines = outcome.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "`sluice {}`: {}",
            argv.join(" "),
            outcome.stderr
        );
        assert!(
            lines[0].starts_with("sluice: ") && lines[0].contains(needle),
            "`sluice {}`: `{needle}` not in {}",
            argv.join(" "),
            lines[0]
        );
    }
}

#[test]
fn a_line_that_does_not_fit_stops_producing_after_sending_the_earlier_ones() {
    let broker = DevBroker::start(&["strict:1"]);
    let produce = run(
        &[
            "produce",
            "-b",
            &broker.bootstrap,
            "--topic",
            "strict",
            "--parse-headers",
        ],
        b"h=1\tfirst\n\tsecond\nno tab here\n\tnever sent\n",
    );
    assert_eq!(produce.status.code(), Some(1), "{}", produce.stderr);
    let lines = produce.stderr_lines();
    assert_eq!(lines.len(), 2, "summary and error: {}", produce.stderr);
    assert!(lines[0].contains("2 of 2 records"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("sluice: line 3: no tab after the headers"),
        "{}",
        lines[1]
    );
    let values: Vec<Vec<u8>> = consume_all(&broker.bootstrap, "strict")
        .into_iter()
        .filter_map(|record| record.value)
        .collect();
    assert_eq!(values, vec![b"first".to_vec(), b"second".to_vec()]);
}

#[test]
fn records_that_fail_delivery_make_the_exit_status_1() {
    let broker = DevBroker::start(&["sized:1"]);
    // librdkafka refuses a record over message.max.bytes (1,000,000 by default).
    let mut input = b"small\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 1_100_000));
    input.extend_from_slice(b"\nsmall again\n");
    let produce = run(
        &["produce", "-b", &broker.bootstrap, "--topic", "sized"],
        &input,
    );
    assert_eq!(produce.status.code(), Some(1), "{}", produce.stderr);
    let lines = produce.stderr_lines();
    assert_eq!(lines.len(), 2, "summary and error: {}", produce.stderr);
    assert!(
        lines[0].contains("2 of 3 records") && lines[0].contains("; 1 failed"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("sluice: 1 of 3 records were not delivered to `sized`"),
        "{}",
        lines[1]
    );
}
