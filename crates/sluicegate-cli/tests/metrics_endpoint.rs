//! `sluice process --metrics-addr`: the Prometheus endpoint scraped during a run shows exactly
//! the counts the run produced, and the health endpoints answer.

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::task::{wait_until, TaskFixture};

/// A free local port for the endpoint.
fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").to_string()
}

/// `GET path`: the status code and the body.
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("the endpoint listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("a request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// Samples as `name{label="value",...}` (labels sorted) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let key = match series.split_once('{') {
                Some((name, labels)) => {
                    let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                    labels.sort();
                    format!("{name}{{{}}}", labels.join(","))
                }
                None => format!("{series}{{}}"),
            };
            Some((key, value.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_scrape_during_a_run_shows_what_the_run_did() {
    let task = TaskFixture::new("metrics", 2, "retry_delays = [\"1s\"]\n");
    let mut records: Vec<(i32, String)> = (0..10).map(|n| (n % 2, format!("ok-{n}"))).collect();
    records.extend([
        (0, "bad-0".into()),
        (1, "bad-1".into()),
        (0, "flaky1-0".into()),
    ]);
    let records: Vec<(i32, &str)> = records.iter().map(|(p, v)| (*p, v.as_str())).collect();
    task.produce(&records);

    let address = free_address();
    let process = task.start_with_args("all", &["--metrics-addr", &address]);
    assert_eq!(get(&address, "/health/live"), (200, "live\n".to_string()));
    wait_until("the run's outcomes", || {
        task.count(&task.dead_letter_topic()) == 2
            && task
                .handled()
                .get("flaky1-0")
                .is_some_and(|attempts| attempts == &[1, 2])
    });

    let q = |value: &str| format!("\"{value}\"");
    let input = format!("topic={}", q(&task.topic));
    let stage0 = format!("stage={},{input}", q("0"));
    let group = format!("group={}", q(&task.group));
    let expected = [
        (
            format!("sluice_records_consumed_total{{{group},{input}}}"),
            13.0,
        ),
        (format!("sluice_records_processed_total{{{input}}}"), 10.0),
        (format!("sluice_records_failed_total{{{input}}}"), 3.0),
        (format!("sluice_records_retried_total{{{stage0}}}"), 1.0),
        (
            format!("sluice_records_dead_lettered_total{{{stage0}}}"),
            2.0,
        ),
        (
            format!(
                "sluice_records_processed_total{{topic={}}}",
                q(&task.retry_topic(1))
            ),
            1.0,
        ),
        (
            format!(
                "sluice_handler_duration_seconds_count{{handler={},{input}}}",
                q("message")
            ),
            13.0,
        ),
    ];
    // The retry stage acknowledges its record a moment after the journal line is written.
    wait_until("exact counts on /metrics", || {
        let (status, body) = get(&address, "/metrics");
        let now = samples(&body);
        status == 200
            && expected
                .iter()
                .all(|(series, value)| now.get(series) == Some(value))
    });
    // Lag and committed offsets come from librdkafka's statistics, every 5 s.
    wait_until("zero lag on both input partitions", || {
        let now = samples(&get(&address, "/metrics").1);
        (0..2).all(|partition| {
            let series = format!(
                "sluice_consumer_lag{{{group},partition={},{input}}}",
                q(&partition.to_string())
            );
            now.get(&series) == Some(&0.0)
        })
    });
    let now = samples(&get(&address, "/metrics").1);
    assert_eq!(
        now.get(&format!("sluice_assigned_partitions{{{group}}}")),
        Some(&2.0),
        "stage 0 holds both input partitions"
    );
    wait_until("ready", || {
        get(&address, "/health/ready") == (200, "ready\n".to_string())
    });

    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(
        ended
            .stderr
            .contains(&format!("metrics on http://{address}/metrics")),
        "the address is announced: {}",
        ended.stderr
    );
}
