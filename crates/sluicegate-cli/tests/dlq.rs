//! `sluice dlq inspect` and `sluice dlq replay` on Apache Kafka: a record its handler calls bad
//! (exit 65) goes straight to the dead-letter topic, is listed with its reason, and is
//! processed once replayed.

mod common;

use serde_json::Value;

use common::task::{header, wait_until, TaskFixture};

#[test]
fn a_permanent_failure_is_dead_lettered_at_once_and_replay_brings_it_back() {
    let task = TaskFixture::new("dlq", 1, "retry_delays = [\"1s\", \"1s\"]\n");
    let positions = task.produce(&[(0, "ok-0"), (0, "bad-0"), (0, "bad-1")]);
    let process = task.start("all");

    // Straight to the dead letters: handled once each, never retried.
    wait_until("two dead letters", || {
        task.count(&task.dead_letter_topic()) == 2
    });
    let handled = task.handled();
    assert_eq!(handled["ok-0"], vec![1]);
    assert_eq!(handled["bad-0"], vec![1]);
    assert_eq!(handled["bad-1"], vec![1]);
    assert_eq!(task.count(&task.retry_topic(1)), 0);

    // inspect lists them with their reason, in text and in JSON.
    let inspect = task.sluice(&["dlq", "inspect"]);
    inspect.assert_ok();
    let text = String::from_utf8(inspect.stdout.clone()).unwrap();
    for (index, value) in ["bad-0", "bad-1"].iter().enumerate() {
        let (partition, offset) = positions[index + 1];
        assert!(
            text.contains(&format!(
                "{} 0@{index}: from {} {partition}@{offset}, handled 1 time, failed ",
                task.dead_letter_topic(),
                task.topic
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("exit status 65: malformed {value}\n")),
            "{text}"
        );
        assert!(text.contains(&format!("  value: {value}\n")), "{text}");
    }
    assert!(
        inspect.stderr.contains("2 dead letters"),
        "{}",
        inspect.stderr
    );

    let inspect = task.sluice(&["dlq", "inspect", "--format", "json", "--limit", "1"]);
    inspect.assert_ok();
    let lines: Vec<Value> = std::str::from_utf8(&inspect.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "--limit 1");
    let letter = &lines[0];
    assert_eq!(letter["dlq_topic"], task.dead_letter_topic().as_str());
    assert_eq!(letter["dlq_offset"], 0);
    assert_eq!(letter["original_topic"], task.topic.as_str());
    assert_eq!(letter["original_offset"], positions[1].1);
    assert_eq!(letter["handled"], 1);
    let error = letter["error"].as_str().unwrap();
    assert!(
        error.ends_with("exit status 65: malformed bad-0"),
        "{error}"
    );
    assert_eq!(letter["value"], "bad-0");
    assert!(letter["first_failure_ms"].as_i64().unwrap() > 0);

    // The handler is fixed; replay bad-0 to the input topic and bad-1 to retry stage 1.
    std::fs::write(&task.marker, b"").unwrap();
    let replay = task.sluice(&["dlq", "replay", "--error-contains", "malformed bad-0"]);
    replay.assert_ok();
    assert_eq!(
        String::from_utf8_lossy(&replay.stdout).trim(),
        format!(
            "sluice dlq replay: replayed 1 of 1 dead letters of task `work`: 1 to {}",
            task.topic
        )
    );
    let replay = task.sluice(&["dlq", "replay", "--to", "stage-1", "--offsets", "1"]);
    replay.assert_ok();
    assert_eq!(
        String::from_utf8_lossy(&replay.stdout).trim(),
        format!(
            "sluice dlq replay: replayed 1 of 1 dead letters of task `work`: 1 to {}",
            task.retry_topic(1)
        )
    );

    // bad-0 is a fresh record again (attempt 1, no retry headers); bad-1 is attempt 2.
    wait_until("both replayed records handled", || {
        let handled = task.handled();
        handled["bad-0"] == vec![1, 1] && handled["bad-1"] == vec![1, 2]
    });
    let input = task.records(&task.topic);
    let replayed = input.last().unwrap();
    assert_eq!(common::task::value(replayed), "bad-0");
    assert!(
        replayed
            .headers
            .iter()
            .all(|(key, _)| !key.starts_with(b"sluice.retry.")),
        "{replayed:?}"
    );
    let staged = &task.records(&task.retry_topic(1))[0];
    assert_eq!(header(staged, "sluice.retry.attempt"), "2");
    assert_eq!(
        header(staged, "sluice.retry.original-offset"),
        positions[2].1.to_string()
    );

    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);
    assert!(
        ended.stdout.trim().ends_with("retried 0, dead-lettered 2"),
        "{}",
        ended.stdout
    );
    // Nothing new was dead-lettered, and the dead letters are still there to look at.
    assert_eq!(task.count(&task.dead_letter_topic()), 2);
    task.assert_all_committed(&task.group, &task.topic);
    task.assert_all_committed(&format!("{}.retry.1", task.group), &task.retry_topic(1));
}
