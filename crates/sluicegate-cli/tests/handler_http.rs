//! The `http` handler of `sluice process` on Apache Kafka, against a local HTTP server the test
//! starts: 2xx succeeds, 5xx is retried until it succeeds, 4xx goes to the dead letters at
//! once, a slow server times out and is retried, and the configured secret header never
//! shows in a failure.

mod common;
mod handler_support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::task::{header, value, wait_until, TaskFixture};
use handler_support::{configure, Answer, Request, TestServer};

/// The server's behaviour, by the value's prefix: `flaky-*` gets 503 once, `slow-*` waits
/// 3 s once, `refused-*` always gets 422, `down-*` always 503; the rest 200.
fn answer(request: &Request, earlier: usize) -> Answer {
    let value = request.text();
    match value.split('-').next() {
        Some("flaky") if earlier == 0 => Answer::status(503, "try again later"),
        Some("slow") if earlier == 0 => Answer::ok().after(Duration::from_secs(3)),
        Some("refused") => Answer::status(422, "no such customer"),
        Some("down") => Answer::status(503, "maintenance"),
        _ => Answer::ok(),
    }
}

#[test]
fn statuses_and_timeouts_decide_success_retry_and_dead_letters() {
    let server = TestServer::start(answer);
    let task = TaskFixture::new("http", 2, "");
    configure(
        &task,
        "retry_delays = [\"200ms\", \"200ms\"]\n",
        &format!(
            "type = \"http\"\nurl = \"{}\"\ntimeout = \"1s\"\nheaders = {{ Authorization = \"Bearer s3cret\" }}\n",
            server.url
        ),
    );
    let values = [
        (0, "ok-0"),
        (1, "ok-1"),
        (0, "flaky-0"),
        (1, "slow-1"),
        (0, "refused-0"),
        (1, "down-1"),
    ];
    let positions = task.produce(&values);
    let process = task.start("all");
    wait_until("two dead letters", || {
        task.count(&task.dead_letter_topic()) == 2
    });
    wait_until("the slow record's retry", || {
        requests_by_value(&server)
            .get("slow-1")
            .is_some_and(|requests| requests.iter().any(|r| r.status == 200))
    });
    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);

    // Requests per value, and their attempts.
    let by_value = requests_by_value(&server);
    let attempts = |value: &str| -> Vec<String> {
        by_value[value]
            .iter()
            .map(|request| request.header("sluice-attempt").to_owned())
            .collect()
    };
    assert_eq!(attempts("ok-0"), ["1"]);
    assert_eq!(attempts("ok-1"), ["1"]);
    assert_eq!(attempts("flaky-0"), ["1", "2"]);
    assert_eq!(attempts("slow-1"), ["1", "2"]);
    assert_eq!(attempts("refused-0"), ["1"], "4xx is not retried");
    assert_eq!(attempts("down-1"), ["1", "2", "3"]);

    // Every request names where the record was first read, also from a retry stage.
    for ((partition, value), (_, offset)) in values.iter().zip(&positions) {
        for request in &by_value[*value] {
            assert_eq!(request.header("sluice-topic"), task.topic);
            assert_eq!(request.header("sluice-partition"), partition.to_string());
            assert_eq!(request.header("sluice-offset"), offset.to_string());
            assert_eq!(request.header("content-type"), "application/octet-stream");
            assert_eq!(request.header("authorization"), "Bearer s3cret");
        }
    }

    // The dead letters say why, with the status and the server's words, and no secret.
    let dead: BTreeMap<String, String> = task
        .records(&task.dead_letter_topic())
        .iter()
        .map(|record| (value(record), header(record, "sluice.retry.error")))
        .collect();
    assert_eq!(
        dead.keys().collect::<Vec<_>>(),
        ["down-1", "refused-0"],
        "{dead:?}"
    );
    assert!(
        dead["refused-0"].contains("HTTP 422 Unprocessable Entity: no such customer"),
        "{}",
        dead["refused-0"]
    );
    assert!(
        dead["down-1"].contains("HTTP 503 Service Unavailable: maintenance"),
        "{}",
        dead["down-1"]
    );
    assert!(dead.values().all(|reason| !reason.contains("s3cret")));
    assert!(!ended.stderr.contains("s3cret"), "{}", ended.stderr);

    // The slow record's first attempt timed out: its retry says so.
    let retried = task.records(&task.retry_topic(1));
    let slow = retried
        .iter()
        .find(|record| value(record) == "slow-1")
        .expect("slow-1 went to retry topic 1");
    assert!(
        header(slow, "sluice.retry.error").contains("no response within 1 s"),
        "{}",
        header(slow, "sluice.retry.error")
    );

    task.assert_all_committed(&task.group, &task.topic);
    task.assert_all_committed(&format!("{}.retry.1", task.group), &task.retry_topic(1));
}

/// The server's requests grouped by body.
fn requests_by_value(server: &TestServer) -> BTreeMap<String, Vec<Request>> {
    let mut by_value: BTreeMap<String, Vec<Request>> = BTreeMap::new();
    for request in server.requests() {
        by_value.entry(request.text()).or_default().push(request);
    }
    by_value
}

#[test]
fn handler_spans_are_exported_over_otlp_when_an_endpoint_is_set() {
    let collector = TestServer::start(|_, _| Answer::ok());
    let endpoint = collector.url.trim_end_matches("/records").to_owned();
    let task = TaskFixture::new("otlp-export", 1, "");
    task.produce(&[(0, "ok-0"), (0, "ok-1")]);
    let process = task.start_with_env("all", &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    wait_until("both records handled", || task.handled().len() == 2);
    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);
    // The last spans are sent when the process exits.
    let exports: Vec<_> = collector
        .requests()
        .into_iter()
        .filter(|request| request.path == "/v1/traces")
        .collect();
    assert!(
        !exports.is_empty(),
        "no OTLP export: {:?}",
        collector.requests()
    );
    assert_eq!(exports[0].header("content-type"), "application/x-protobuf");
    // Protobuf keeps strings as they are: the spans and the service are named in the body.
    let sent: Vec<u8> = exports
        .iter()
        .flat_map(|request| request.body.clone())
        .collect();
    let contains = |text: &str| {
        sent.windows(text.len())
            .any(|window| window == text.as_bytes())
    };
    assert!(
        contains(&format!("process {}", task.topic)),
        "the handler spans"
    );
    assert!(contains("sluice"), "the service name");
    assert!(contains("messaging.kafka.offset"), "the attributes");
}
