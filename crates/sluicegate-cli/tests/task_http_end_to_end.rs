//! A task from a configuration file, end to end on Apache Kafka: records in, HTTP calls made (in
//! batches, one of them failing once and retried through the retry topic), commits done, and
//! `sluice status` shows no lag left.

mod common;
mod handler_support;

use std::collections::BTreeSet;

use serde_json::Value;

use common::task::{wait_until, TaskFixture};
use handler_support::{configure, Answer, TestServer};

#[test]
fn a_task_posts_every_record_in_batches_and_commits() {
    // The first batch holding `poison` gets a 503; everything else a 200.
    let server = TestServer::start(|request, _| {
        let body = request.text();
        if body.contains("\"value\":\"poison\"") && !body.contains("\"attempt\":2") {
            Answer::status(503, "not now")
        } else {
            Answer::ok()
        }
    });
    let task = TaskFixture::new("http-e2e", 2, "");
    configure(
        &task,
        "retry_delays = [\"200ms\"]\nconcurrency = 4\n",
        &format!(
            "type = \"http\"\nurl = \"{}\"\ntimeout = \"5s\"\nbatch = {{ size = 10, timeout = \"200ms\" }}\n",
            server.url
        ),
    );
    let mut values: Vec<(i32, String)> = (0..60).map(|i| (i % 2, format!("r{i}"))).collect();
    values.push((1, "poison".to_owned()));
    let produced: Vec<(i32, &str)> = values.iter().map(|(p, v)| (*p, v.as_str())).collect();
    task.produce(&produced);

    let process = task.start("all");
    let delivered = || -> BTreeSet<String> {
        server
            .requests()
            .iter()
            .filter(|request| request.status == 200)
            .flat_map(|request| batch_values(&request.body))
            .collect()
    };
    let expected: BTreeSet<String> = values.iter().map(|(_, value)| value.clone()).collect();
    wait_until("every record to be POSTed with success", || {
        delivered() == expected
    });
    wait_until("the input and the retry topic to be committed", || {
        let input = task.end_offsets(&task.topic);
        let retry = task.end_offsets(&task.retry_topic(1));
        let retry_group = format!("{}.retry.1", task.group);
        input
            .iter()
            .all(|(p, end)| task.committed(&task.group, &task.topic, *p) == Some(*end))
            && retry.values().sum::<i64>() > 0
            && retry.iter().all(|(p, end)| {
                *end == 0 || task.committed(&retry_group, &task.retry_topic(1), *p) == Some(*end)
            })
    });
    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);

    // Batches: JSON arrays of up to 10 records, fewer requests than records.
    let requests = server.requests();
    for request in &requests {
        assert_eq!(request.header("content-type"), "application/json");
        let size: usize = request.header("sluice-batch-size").parse().unwrap();
        assert_eq!(size, batch_values(&request.body).len());
        assert!((1..=10).contains(&size), "{size}");
    }
    assert!(requests.len() < values.len(), "{} requests", requests.len());
    // The failed batch went through the retry topic whole, and nothing was dead-lettered.
    let failed: Vec<_> = requests.iter().filter(|r| r.status == 503).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        task.count(&task.retry_topic(1)),
        batch_values(&failed[0].body).len() as i64
    );
    assert_eq!(task.count(&task.dead_letter_topic()), 0);
    assert!(
        ended.stdout.contains("retried ") && ended.stdout.contains("dead-lettered 0"),
        "{}",
        ended.stdout
    );
    task.assert_all_committed(&task.group, &task.topic);
    task.assert_all_committed(&format!("{}.retry.1", task.group), &task.retry_topic(1));

    // `sluice status` agrees: nothing left to do on the input topic.
    let status = common::run(
        &[
            "status",
            "-b",
            &task.bootstrap,
            "--group",
            &task.group,
            "--topic",
            &task.topic,
            "--format",
            "json",
        ],
        b"",
    );
    status.assert_ok();
    let rows: Vec<Value> = std::str::from_utf8(&status.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 2, "one row per partition: {rows:?}");
    for row in &rows {
        assert_eq!(row["lag"], 0, "{row}");
        assert_eq!(row["committed"], row["end"], "{row}");
    }
}

/// The values of a batch request's JSON array.
fn batch_values(body: &[u8]) -> Vec<String> {
    let batch: Value = serde_json::from_slice(body).expect("a JSON array");
    batch
        .as_array()
        .expect("an array")
        .iter()
        .map(|record| record["value"].as_str().expect("a text value").to_owned())
        .collect()
}
