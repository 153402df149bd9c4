//! The README's local flow on the embedded broker: `sluice dev-broker --port P --topic T:4`, then
//! `sluice process` with retries on that address. The task creates its own retry and
//! dead-letter topics there (the mock cluster has no CreateTopics, so they are auto-created on a
//! metadata request), retries a flaky record through the retry topic, dead-letters a bad one,
//! and commits everything.

mod common;

use std::collections::BTreeMap;

use common::task::{wait_until, TaskFixture};
use common::{closed_port, DevBroker};
use sluicegate_testing::unique_name;

#[test]
fn dev_broker_then_process_with_retries() {
    let port = closed_port();
    let topic = unique_name("orders");
    let broker =
        DevBroker::start_with_args(&[&format!("{topic}:4")], &["--port", &port.to_string()]);
    assert_eq!(broker.bootstrap, format!("127.0.0.1:{port}"));

    let task = TaskFixture::with_topic(
        broker.bootstrap.clone(),
        topic.clone(),
        "retry_delays = [\"200ms\"]\n",
    );
    task.produce(&[(0, "ok-1"), (1, "flaky1-1"), (2, "bad-1"), (3, "ok-2")]);
    let process = task.start("all");
    let expected: BTreeMap<String, Vec<u32>> = [
        ("bad-1", vec![1]),
        ("flaky1-1", vec![1, 2]),
        ("ok-1", vec![1]),
        ("ok-2", vec![1]),
    ]
    .into_iter()
    .map(|(value, attempts)| (value.to_owned(), attempts))
    .collect();
    wait_until("every record handled, the flaky one twice", || {
        task.handled() == expected
    });
    let retry_group = format!("{}.retry.1", task.group);
    wait_until("the input and retry stages committed everything", || {
        let committed = |group: &str, topic: &str| {
            task.end_offsets(topic).into_iter().all(|(partition, end)| {
                end == 0 || task.committed(group, topic, partition) == Some(end)
            })
        };
        committed(&task.group, &topic) && committed(&retry_group, &task.retry_topic(1))
    });
    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);

    assert_eq!(
        task.count(&task.retry_topic(1)),
        1,
        "the flaky record, once"
    );
    assert_eq!(task.count(&task.dead_letter_topic()), 1, "the bad record");
    for created in [task.retry_topic(1), task.dead_letter_topic()] {
        assert_eq!(
            task.end_offsets(&created).len(),
            4,
            "{created}: the mock cluster's default partition count"
        );
    }
}
