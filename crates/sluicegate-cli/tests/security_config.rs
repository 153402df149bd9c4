//! SASL over TLS configured through the configuration file, against Apache Kafka's SASL_SSL
//! listener with SCRAM-SHA-512: a task runs and commits, and nothing it printed — its logs at debug level,
//! its metrics, `sluice status` — shows the password; a wrong password stops `sluice process`
//! at once with the broker's reason.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sluicegate_testing::{
    produce_records, secured_kafka, unique_name, TestBroker, TestRecord, SASL_USER,
};

use common::sluice;
use common::task::{block_on, wait_until};

/// A topic with `count` records, made and written over the broker's PLAINTEXT listener.
fn topic_with_records(count: usize) -> String {
    let topic = unique_name("secured");
    block_on(async {
        let broker = TestBroker::Kafka(secured_kafka().cluster());
        broker.create_topic(&topic, 2).await;
        let records = (0..count)
            .map(|n| TestRecord::keyed(format!("record-{n}"), format!("record-{n}")))
            .collect();
        produce_records(&broker.bootstrap_servers(), &topic, records).await;
    });
    topic
}

/// A configuration whose password comes from `$SLUICE_TEST_KAFKA_PASSWORD`.
fn write_config(dir: &std::path::Path, topic: &str, group: &str) -> String {
    let config = dir.join("secured.toml");
    std::fs::write(
        &config,
        format!(
            r#"[clusters.secured]
bootstrap_servers = "{bootstrap}"
security = {{ protocol = "sasl_ssl", sasl_mechanism = "SCRAM-SHA-512", username = "{user}", password = {{ env = "SLUICE_TEST_KAFKA_PASSWORD" }}, ca_location = "{ca}" }}
# librdkafka's own debug logs of the login: where a password could show.
librdkafka = {{ debug = "security,broker" }}

[tasks.count]
topics = ["{topic}"]
group = "{group}"
session_timeout = "6s"
max_poll_interval = "10s"
commit_interval = "200ms"
retry_delays = ["1s"]
handler = {{ type = "exec", command = ["true"] }}
"#,
            bootstrap = secured_kafka().sasl_ssl(),
            user = SASL_USER.0,
            ca = secured_kafka().ca_location().display(),
        ),
    )
    .unwrap();
    config.display().to_string()
}

fn process(config: &str, password: &str, stderr: &std::path::Path, more: &[&str]) -> Child {
    sluice()
        .args(["process", "-c", config])
        .args(more)
        .arg("count")
        .env("SLUICE_TEST_KAFKA_PASSWORD", password)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

/// `GET path` of the metrics endpoint: the body.
fn get(address: &str, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return String::new();
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn written(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_task_logs_in_through_its_configuration_and_never_shows_the_password() {
    let topic = topic_with_records(20);
    let group = unique_name("secured-group");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &topic, &group);
    let address = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let stderr = dir.path().join("process.stderr");
    let running = process(&config, SASL_USER.1, &stderr, &["--metrics-addr", &address]);
    let processed = format!("sluice_records_processed_total{{topic=\"{topic}\"}} 20");
    let mut metrics = String::new();
    wait_until("20 records processed, as /metrics says", || {
        metrics = get(&address, "/metrics");
        metrics.contains(&processed)
    });
    // `sluice status` with the same login on the command line.
    let status = sluice()
        .args(["status", "--group", &group, "--topic", &topic])
        .args(["-b", &secured_kafka().sasl_ssl()])
        .args(["-X", "security.protocol=SASL_SSL"])
        .args(["-X", "sasl.mechanism=SCRAM-SHA-512"])
        .args(["-X", &format!("sasl.username={}", SASL_USER.0)])
        .args(["-X", &format!("sasl.password={}", SASL_USER.1)])
        .args([
            "-X",
            &format!(
                "ssl.ca.location={}",
                secured_kafka().ca_location().display()
            ),
        ])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", written(&status));
    let _ = Command::new("kill")
        .args(["-TERM", &running.id().to_string()])
        .status();
    let ended = running.wait_with_output().unwrap();
    assert!(
        ended.status.success(),
        "{}",
        std::fs::read_to_string(&stderr).unwrap()
    );

    let logs = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        logs.contains("DEBUG") && logs.contains("SASL"),
        "the run logged its login at debug level:\n{logs}"
    );
    for (what, text) in [
        ("the task's logs", logs),
        (
            "the task's summary",
            String::from_utf8_lossy(&ended.stdout).into_owned(),
        ),
        ("the metrics", metrics),
        ("sluice status", written(&status)),
    ] {
        assert!(
            !text.contains(SASL_USER.1),
            "{what} show the password:\n{text}"
        );
    }
}

#[test]
fn a_wrong_password_stops_the_task_at_once_with_the_reason() {
    let topic = topic_with_records(1);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &topic, &unique_name("refused-group"));
    let wrong = "wrong-password-c41f";
    let stderr = dir.path().join("refused.stderr");
    let started = Instant::now();
    let ended = process(&config, wrong, &stderr, &[])
        .wait_with_output()
        .unwrap();
    let waited = started.elapsed();
    let logs = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(ended.status.code(), Some(1), "{logs}");
    let last = logs.lines().last().unwrap_or_default();
    assert!(
        last.contains("refused the connection") && last.contains("SASL"),
        "the last line says why: {last}"
    );
    assert!(!logs.contains(wrong), "the logs show the password:\n{logs}");
    assert!(waited < Duration::from_secs(20), "took {waited:?}");
}
