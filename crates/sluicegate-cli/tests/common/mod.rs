//! Running the built `sluice` binary in tests: a development broker as a child process, runs
//! with a deadline, and reading `consume --format json` output back into bytes; [`task`] has
//! tasks for `sluice process` and `sluice dlq`.

#![allow(dead_code)] // Each test binary uses a different part.

pub mod task;

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
pub use sluicegate_testing::process::Run;
use sluicegate_testing::process::{self, RUN_DEADLINE};

/// The binary under test (without `RUST_LOG`: the tests count stderr lines).
pub fn sluice() -> Command {
    process::binary(env!("CARGO_BIN_EXE_sluice"))
}

/// Runs `sluice args...` with `stdin` as its input; fails the test past [`RUN_DEADLINE`].
pub fn run(args: &[&str], stdin: &[u8]) -> Run {
    process::run(sluice().args(args), stdin, RUN_DEADLINE)
}

/// `sluice dev-broker` as a child process with these topics (`name:partitions`); it stops
/// when this is dropped (its stdin closes).
pub struct DevBroker {
    child: Child,
    stdin: Option<ChildStdin>,
    pub bootstrap: String,
}

impl DevBroker {
    pub fn start(topics: &[&str]) -> DevBroker {
        DevBroker::start_with_args(topics, &[])
    }

    /// Like [`start`](Self::start), with more arguments for `sluice dev-broker`.
    pub fn start_with_args(topics: &[&str], more: &[&str]) -> DevBroker {
        let mut command = sluice();
        command
            .args([
                "dev-broker",
                "--print-bootstrap-only",
                "--exit-on-stdin-close",
            ])
            .args(more)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for topic in topics {
            command.args(["--topic", topic]);
        }
        let mut child = command.spawn().expect("dev-broker starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the dev-broker prints its address");
        let bootstrap = line.trim().to_owned();
        assert!(
            bootstrap.starts_with("127.0.0.1:"),
            "dev-broker address: {bootstrap:?}"
        );
        DevBroker {
            child,
            stdin,
            bootstrap,
        }
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port of 127.0.0.1 that nothing listens on (it was free a moment ago).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// One record read back from `consume --format json`, bytes decoded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Consumed {
    pub partition: i64,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Parses `consume --format json` output, one object per line.
pub fn parse_json_lines(stdout: &[u8]) -> Vec<Consumed> {
    let text = std::str::from_utf8(stdout).expect("JSON output is UTF-8");
    text.lines()
        .map(|line| {
            let object: Value = serde_json::from_str(line).expect("a JSON object per line");
            for field in ["topic", "timestamp", "timestamp_type"] {
                assert!(object.get(field).is_some(), "no `{field}` in {line}");
            }
            Consumed {
                partition: object["partition"].as_i64().expect("partition"),
                offset: object["offset"].as_i64().expect("offset"),
                key: bytes(&object["key"]),
                value: bytes(&object["value"]),
                headers: object["headers"]
                    .as_array()
                    .expect("headers array")
                    .iter()
                    .map(|header| {
                        (
                            bytes(&header["key"]).expect("header key"),
                            bytes(&header["value"]),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Every record of `topic`, read with `sluice consume --format json` (which must succeed).
pub fn consume_all(bootstrap: &str, topic: &str) -> Vec<Consumed> {
    let consume = run(
        &[
            "consume",
            "-b",
            bootstrap,
            "--topic",
            topic,
            "--from",
            "beginning",
            "--exit-at-end",
            "--format",
            "json",
        ],
        b"",
    );
    consume.assert_ok();
    parse_json_lines(&consume.stdout)
}

/// librdkafka properties (`-X` flags) that keep a group's rebalances short in tests: a
/// rebalance waits up to the max poll interval for members to rejoin.
const GROUP_TIMEOUTS: [&str; 4] = [
    "-X",
    "max.poll.interval.ms=10000",
    "-X",
    "session.timeout.ms=6000",
];

/// Runs `sluice consume -b BOOTSTRAP --topic TOPIC --group GROUP args...` with
/// [`GROUP_TIMEOUTS`].
pub fn consume_in_group(bootstrap: &str, topic: &str, group: &str, args: &[&str]) -> Run {
    let mut argv = vec![
        "consume", "-b", bootstrap, "--topic", topic, "--group", group,
    ];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&GROUP_TIMEOUTS);
    run(&argv, b"")
}

/// A JSON string (UTF-8 bytes), `{"base64": ...}` (other bytes) or null.
fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.as_bytes().to_vec()),
        Value::Object(object) => {
            assert_eq!(object.len(), 1, "only `base64` in {value}");
            let encoded = object["base64"].as_str().expect("base64 string");
            let decoded = decode_base64(encoded);
            assert!(
                std::str::from_utf8(&decoded).is_err(),
                "UTF-8 bytes should be a plain string, not base64: {value}"
            );
            Some(decoded)
        }
        other => panic!("bytes must be a string, an object or null: {other}"),
    }
}

/// Standard base64 with padding.
pub fn decode_base64(text: &str) -> Vec<u8> {
    let sextet = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    assert_eq!(text.len() % 4, 0, "padded base64: {text}");
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let padding = chunk.iter().filter(|&&c| c == b'=').count();
        let group = chunk
            .iter()
            .map(|&c| if c == b'=' { 0 } else { sextet(c) })
            .fold(0u32, |group, bits| (group << 6) | bits);
        let bytes = group.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - padding]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(decode_base64("Zm9vYmFy"), b"foobar");
    assert_eq!(decode_base64("Zm9vYg=="), b"foob");
    assert_eq!(decode_base64("//4A"), [0xff, 0xfe, 0x00]);
}
