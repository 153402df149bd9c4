//! `sluice produce` then `sluice consume`, through the built binary, on a development broker
//! (a `sluice dev-broker` child process): records come back byte for byte.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{consume_all, run, Consumed, DevBroker};

/// Values that are not plain text: invalid UTF-8, NUL, a carriage return at the end (kept),
/// tabs, the key separator, empty.
fn awkward_value(index: usize) -> Vec<u8> {
    match index % 7 {
        0 => format!("plain text {index}").into_bytes(),
        1 => Vec::new(),
        2 => [&b"bytes \xff\xfe\x00 "[..], index.to_string().as_bytes()].concat(),
        3 => format!("crlf line {index}\r").into_bytes(),
        4 => format!("tab\tinside\t{index}").into_bytes(),
        5 => "caf\u{e9} \u{1f30a}".as_bytes().to_vec(),
        _ => b"\r".to_vec(),
    }
}

#[test]
fn plain_lines_round_trip_byte_for_byte() {
    let broker = DevBroker::start(&["plain:1"]);
    let mut lines: Vec<Vec<u8>> = (0..50).map(awkward_value).collect();
    lines.insert(10, Vec::new());
    lines.insert(11, Vec::new());
    lines.push(b"the last line has no newline \xc3\x28".to_vec());
    let input = lines.join(&b'\n');
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("records.txt");
    std::fs::write(&file, &input).expect("write the input file");

    let produced = run(
        &[
            "produce",
            "--brokers",
            &broker.bootstrap,
            "--topic",
            "plain",
            file.to_str().expect("path"),
        ],
        b"",
    );
    produced.assert_ok();
    let summary = produced.stderr_lines();
    assert_eq!(summary.len(), 1, "{}", produced.stderr);
    assert!(
        summary[0].contains(&format!("{0} of {0} records", lines.len()))
            && summary[0].contains("; 0 failed"),
        "{}",
        summary[0]
    );

    let consumed = run(
        &[
            "consume",
            "--brokers",
            &broker.bootstrap,
            "--topic",
            "plain",
            "--from",
            "beginning",
            "--count",
            &lines.len().to_string(),
        ],
        b"",
    );
    consumed.assert_ok();
    // Every line is a record, and each record prints as its bytes and a newline.
    let mut expected = input.clone();
    expected.push(b'\n');
    assert_eq!(consumed.stdout, expected);
    assert_eq!(consumed.stderr, "");
}

/// A record as the test wrote it into a line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Expected {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Records with keys (some not UTF-8, some absent), headers (none, null values, empty and
/// non-UTF-8 values) and awkward values, and the `HEADERS<TAB>KEY|VALUE` lines that carry them.
fn keyed_records(count: usize) -> (Vec<Expected>, Vec<u8>) {
    let mut records = Vec::new();
    let mut input = Vec::new();
    for index in 0..count {
        let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = match index % 3 {
            0 => vec![],
            1 => vec![
                (b"trace".to_vec(), Some(format!("t-{index}").into_bytes())),
                (b"flag".to_vec(), None),
            ],
            _ => vec![
                (
                    b"bin".to_vec(),
                    Some(vec![0xff, 0xfe, b'0' + (index % 10) as u8]),
                ),
                (b"empty".to_vec(), Some(Vec::new())),
                (b"trace".to_vec(), Some(b"repeated=name".to_vec())),
            ],
        };
        let key = match index % 4 {
            0 => None,
            1 => Some(format!("customer-{}", index % 5).into_bytes()),
            2 => Some(vec![b'k', 0xc3, 0x28, b'0' + (index % 5) as u8]),
            _ => Some(Vec::new()),
        };
        let mut value = awkward_value(index);
        if key.is_some() {
            // After the first separator, more of them belong to the value.
            value.extend_from_slice(b"|more");
        }
        for (position, (name, header_value)) in headers.iter().enumerate() {
            if position > 0 {
                input.push(b',');
            }
            input.extend_from_slice(name);
            if let Some(header_value) = header_value {
                input.push(b'=');
                input.extend_from_slice(header_value);
            }
        }
        input.push(b'\t');
        if let Some(key) = &key {
            input.extend_from_slice(key);
            input.push(b'|');
        }
        input.extend_from_slice(&value);
        input.push(b'\n');
        records.push(Expected {
            key,
            value,
            headers,
        });
    }
    (records, input)
}

#[test]
fn keys_headers_and_bytes_round_trip_through_json() {
    let broker = DevBroker::start(&["keyed:3"]);
    let (records, input) = keyed_records(60);
    run(
        &[
            "produce",
            "-b",
            &broker.bootstrap,
            "--topic",
            "keyed",
            "--parse-headers",
            "--key-separator",
            "|",
        ],
        &input,
    )
    .assert_ok();

    let got = consume_all(&broker.bootstrap, "keyed");
    let mut as_sent: Vec<Expected> = got
        .iter()
        .map(|record| Expected {
            key: record.key.clone(),
            value: record.value.clone().expect("a value, not null"),
            headers: record.headers.clone(),
        })
        .collect();
    as_sent.sort();
    let mut expected = records.clone();
    expected.sort();
    assert_eq!(as_sent, expected);

    // Records with one key share a partition and keep their input order there.
    let mut by_key: BTreeMap<Vec<u8>, Vec<&Consumed>> = BTreeMap::new();
    for record in &got {
        if let Some(key) = &record.key {
            by_key.entry(key.clone()).or_default().push(record);
        }
    }
    assert!(by_key.len() >= 5, "keys: {}", by_key.len());
    for (key, mut group) in by_key {
        group.sort_by_key(|record| record.offset);
        assert!(
            group
                .windows(2)
                .all(|pair| pair[0].partition == pair[1].partition),
            "key {key:?} spans partitions"
        );
        let order: Vec<&[u8]> = records
            .iter()
            .filter(|record| record.key.as_deref() == Some(&key[..]))
            .map(|record| &record.value[..])
            .collect();
        let seen: Vec<&[u8]> = group
            .iter()
            .map(|record| record.value.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(seen, order, "order of key {key:?}");
    }

    // The line format prints the same lines back (per partition, so compare sorted).
    let text = run(
        &[
            "consume",
            "-b",
            &broker.bootstrap,
            "--topic",
            "keyed",
            "--from",
            "beginning",
            "--exit-at-end",
            "--print-headers",
            "--key-separator",
            "|",
        ],
        b"",
    );
    text.assert_ok();
    let sorted = |bytes: &[u8]| {
        let mut lines: Vec<Vec<u8>> = bytes
            .split(|&byte| byte == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&text.stdout), sorted(&input));
}

#[test]
fn partition_headers_compression_and_acks_options_apply() {
    let broker = DevBroker::start(&["options:3"]);
    for (index, compression) in ["none", "gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        let acks = if index % 2 == 0 { "all" } else { "leader" };
        run(
            &[
                "produce",
                "-b",
                &broker.bootstrap,
                "--topic",
                "options",
                "--partition",
                "2",
                "--header",
                "source=test",
                "--header",
                "marker",
                "--compression",
                compression,
                "--acks",
                acks,
                "--key-separator",
                ":",
            ],
            format!("k:{compression} 1\nk:{compression} 2\n").as_bytes(),
        )
        .assert_ok();
    }
    let got = consume_all(&broker.bootstrap, "options");
    assert_eq!(got.len(), 10);
    for record in &got {
        assert_eq!(record.partition, 2, "{record:?}");
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(
            record.headers,
            vec![
                (b"source".to_vec(), Some(b"test".to_vec())),
                (b"marker".to_vec(), None)
            ]
        );
    }
    let values: Vec<Vec<u8>> = got
        .iter()
        .filter_map(|record| record.value.clone())
        .collect();
    assert_eq!(values[0], b"none 1");
    assert_eq!(values[9], b"zstd 2");
}

#[test]
fn rate_caps_records_per_second() {
    let broker = DevBroker::start(&["paced:1"]);
    let input: Vec<u8> = (0..11)
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect();
    let produced = run(
        &[
            "produce",
            "-b",
            &broker.bootstrap,
            "--topic",
            "paced",
            "--rate",
            "10",
        ],
        &input,
    );
    produced.assert_ok();
    // 11 records at 10/s: the 11th is due a second after the first.
    assert!(
        produced.elapsed >= Duration::from_millis(950),
        "took {:?}",
        produced.elapsed
    );
    assert!(
        produced.stderr.contains("11 of 11 records"),
        "{}",
        produced.stderr
    );
}

/// `consume` of topic `positions` (one partition holding `0`..`9`) with these options.
fn values_from(broker: &DevBroker, options: &[&str]) -> String {
    let mut args = vec!["consume", "-b", &broker.bootstrap, "--topic", "positions"];
    args.extend_from_slice(options);
    let consumed = run(&args, b"");
    consumed.assert_ok();
    String::from_utf8(consumed.stdout).expect("text")
}

#[test]
fn from_count_and_exit_at_end_choose_what_is_printed() {
    let broker = DevBroker::start(&["positions:1"]);
    let input: Vec<u8> = (0..10)
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect();
    run(
        &["produce", "-b", &broker.bootstrap, "--topic", "positions"],
        &input,
    )
    .assert_ok();
    let all = "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n";
    assert_eq!(
        values_from(&broker, &["--from", "beginning", "--exit-at-end"]),
        all
    );
    assert_eq!(
        values_from(&broker, &["--from", "beginning", "--count", "3"]),
        "0\n1\n2\n"
    );
    assert_eq!(
        values_from(&broker, &["--from", "offset:7", "--exit-at-end"]),
        "7\n8\n9\n"
    );
    assert_eq!(
        values_from(&broker, &["--from", "offset:-2", "--exit-at-end"]),
        "8\n9\n"
    );
    assert_eq!(
        values_from(&broker, &["--from", "offset:99", "--exit-at-end"]),
        ""
    );
    assert_eq!(
        values_from(&broker, &["--from", "end", "--exit-at-end"]),
        ""
    );
    assert_eq!(
        values_from(
            &broker,
            &["--from", "offset:4", "--partition", "0", "--count", "1"]
        ),
        "4\n"
    );
    // The embedded broker answers every time lookup with the end.
    assert_eq!(
        values_from(
            &broker,
            &["--from", "time:2020-01-01T00:00:00Z", "--exit-at-end"]
        ),
        ""
    );
}

#[test]
fn a_group_resumes_where_it_committed() {
    let broker = DevBroker::start(&["grouped:2"]);
    let input: Vec<u8> = (0..10)
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect();
    run(
        &["produce", "-b", &broker.bootstrap, "--topic", "grouped"],
        &input,
    )
    .assert_ok();
    let read = |options: &[&str]| {
        let mut args = vec!["consume", "-b", &broker.bootstrap, "--topic", "grouped"];
        args.extend_from_slice(options);
        let consumed = run(&args, b"");
        consumed.assert_ok();
        String::from_utf8(consumed.stdout)
            .expect("text")
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // The embedded broker holds a group that a member just left in a rebalance for the session
    // timeout less a second before the next member gets in: keep it short.
    let group = [
        "--group",
        "auditors",
        "--from",
        "beginning",
        "-X",
        "session.timeout.ms=2000",
        "-X",
        "heartbeat.interval.ms=500",
    ];
    let first = read(&[&group[..], &["--count", "4"]].concat());
    let second = read(&[&group[..], &["--exit-at-end"]].concat());
    assert_eq!(first.len(), 4, "{first:?}");
    assert_eq!(second.len(), 6, "{second:?}");
    let mut both: Vec<String> = first.iter().chain(&second).cloned().collect();
    both.sort();
    let expected: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    assert_eq!(both, expected);
    // Everything is committed now; a consumer without a group still reads it all.
    assert!(read(&[&group[..], &["--exit-at-end"]].concat()).is_empty());
    assert_eq!(read(&["--from", "beginning", "--exit-at-end"]).len(), 10);
}
