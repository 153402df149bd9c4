//! `sluice process` on Apache Kafka: stages in separate processes share a task's work, retries wait
//! until they are due without spinning, and a kill -9 between writing a retry and committing
//! the original loses nothing.

mod common;

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::task::{header, value, wait_until, TaskFixture};

#[test]
fn stage_0_and_the_retry_stages_in_separate_processes_process_everything() {
    let task = TaskFixture::new("stages", 2, "retry_delays = [\"1s\", \"1s\"]\n");
    let mut records = Vec::new();
    for index in 0..3 {
        for kind in ["ok", "flaky1", "flaky2", "dead"] {
            records.push((index % 2, format!("{kind}-{index}")));
        }
    }
    let produced: Vec<(i32, &str)> = records.iter().map(|(p, v)| (*p, v.as_str())).collect();
    let positions = task.produce(&produced);
    let position_of: BTreeMap<&str, (i32, i64)> = produced
        .iter()
        .zip(&positions)
        .map(|((_, value), position)| (*value, *position))
        .collect();

    let input_stage = task.start("0");
    let retry_stages = task.start("1-3");
    // Each value is handled once per attempt until it succeeds or its retries run out.
    let expected: BTreeMap<String, Vec<u32>> = records
        .iter()
        .map(|(_, value)| {
            let attempts = match value.split('-').next() {
                Some("ok") => vec![1],
                Some("flaky1") => vec![1, 2],
                _ => vec![1, 2, 3],
            };
            (value.clone(), attempts)
        })
        .collect();
    wait_until("every record to reach its outcome", || {
        task.handled() == expected && task.count(&task.dead_letter_topic()) == 3
    });
    // Nothing more happens: no late duplicates.
    thread::sleep(Duration::from_secs(1));
    let input_end = input_stage.terminate();
    let retry_end = retry_stages.terminate();
    assert!(input_end.status.success(), "{}", input_end.stderr);
    assert!(retry_end.status.success(), "{}", retry_end.stderr);
    assert_eq!(task.handled(), expected);

    // Attempt 1 ran in the stage 0 process, retries in the other.
    let journal = task.journal();
    let pids: BTreeMap<u32, Vec<u32>> = journal.iter().fold(BTreeMap::new(), |mut pids, h| {
        pids.entry(h.attempt).or_default().push(h.pid);
        pids
    });
    assert!(
        pids[&1].windows(2).all(|pair| pair[0] == pair[1]),
        "{pids:?}"
    );
    assert!(
        pids[&2]
            .iter()
            .chain(&pids[&3])
            .all(|pid| *pid != pids[&1][0]),
        "{pids:?}"
    );

    // The summaries say the same.
    let input_summary = input_end.stdout.trim();
    assert_eq!(
        input_summary,
        "sluice process work: stage 0 processed 3 (9 failed); retried 9, dead-lettered 0",
        "{}",
        input_end.stderr
    );
    let retry_summary = retry_end.stdout.trim();
    assert_eq!(
        retry_summary,
        "sluice process work: stage 1 processed 3 (6 failed), stage 2 processed 3 (3 failed), \
         stage 3 (dead letters) saw 3; retried 6, dead-lettered 3",
        "{}",
        retry_end.stderr
    );

    // The dead letters carry their history: handled 3 times (next attempt 4), from where.
    let dead = task.records(&task.dead_letter_topic());
    assert_eq!(dead.len(), 3);
    for record in &dead {
        let value = value(record);
        assert!(value.starts_with("dead-"), "{value}");
        let (partition, offset) = position_of[value.as_str()];
        assert_eq!(header(record, "sluice.retry.attempt"), "4");
        assert_eq!(header(record, "sluice.retry.original-topic"), task.topic);
        assert_eq!(
            header(record, "sluice.retry.original-partition"),
            partition.to_string()
        );
        assert_eq!(
            header(record, "sluice.retry.original-offset"),
            offset.to_string()
        );
        let error = header(record, "sluice.retry.error");
        assert!(
            error.ends_with(&format!("exit status 1: failed {value} at attempt 3")),
            "{error}"
        );
        let first: i64 = header(record, "sluice.retry.first-failure-ms")
            .parse()
            .unwrap();
        let last: i64 = header(record, "sluice.retry.last-failure-ms")
            .parse()
            .unwrap();
        assert!(
            last - first >= 2000,
            "two 1 s delays between failures 1 and 3"
        );
    }

    // No retry ran before its due time (from the retry records' headers).
    assert_not_early(&task, 1);
    assert_not_early(&task, 2);

    // Every stage's group committed everything it read.
    task.assert_all_committed(&task.group, &task.topic);
    task.assert_all_committed(&format!("{}.retry.1", task.group), &task.retry_topic(1));
    task.assert_all_committed(&format!("{}.retry.2", task.group), &task.retry_topic(2));
    task.assert_all_committed(&format!("{}.dlq", task.group), &task.dead_letter_topic());
}

/// Every handling of a record from retry topic `retry` (attempt `retry + 1`) started at or
/// after that record's due time.
fn assert_not_early(task: &TaskFixture, retry: usize) {
    let journal = task.journal();
    let retries = task.records(&task.retry_topic(retry));
    assert!(!retries.is_empty());
    for record in retries {
        let value = value(&record);
        let due: i64 = header(&record, "sluice.retry.due-ms").parse().unwrap();
        let attempt = retry as u32 + 1;
        assert_eq!(header(&record, "sluice.retry.attempt"), attempt.to_string());
        let handled: Vec<i64> = journal
            .iter()
            .filter(|h| h.value == value && h.attempt == attempt)
            .map(|h| h.at_ms)
            .collect();
        assert_eq!(handled.len(), 1, "{value} attempt {attempt}");
        assert!(
            handled[0] >= due,
            "{value} attempt {attempt} ran at {} ms, {} ms before it was due",
            handled[0],
            due - handled[0]
        );
    }
}

#[test]
fn no_retry_runs_before_it_is_due_and_a_waiting_stage_is_idle() {
    let task = TaskFixture::new("due", 1, "retry_delays = [\"6s\"]\n");
    let retry_stage = task.start("1");
    let input_stage = task.start("0");
    task.produce(&[(0, "flaky1-0")]);
    wait_until("the retry record", || task.count(&task.retry_topic(1)) == 1);
    let retry = &task.records(&task.retry_topic(1))[0];
    let due: i64 = header(retry, "sluice.retry.due-ms").parse().unwrap();
    let failed: i64 = header(retry, "sluice.retry.last-failure-ms")
        .parse()
        .unwrap();
    assert_eq!(due - failed, 6000, "due after the 6 s delay");

    // The record is in the stage's hands and not due for a few seconds: the stage idles.
    let before = retry_stage.cpu_ticks();
    thread::sleep(Duration::from_secs(3));
    let used = retry_stage.cpu_ticks() - before;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(now < due, "the measurement ended before the record was due");
    assert!(
        used < 30,
        "a stage waiting for a record used {used} ticks of CPU in 3 s (10% is 30)"
    );
    assert_eq!(task.handled()["flaky1-0"], vec![1], "not retried early");

    wait_until("the retry", || task.handled()["flaky1-0"] == vec![1, 2]);
    let retried_at = task
        .journal()
        .iter()
        .find(|h| h.attempt == 2)
        .map(|h| h.at_ms)
        .unwrap();
    assert!(retried_at >= due, "retried {} ms early", due - retried_at);
    assert!(retry_stage.terminate().status.success());
    assert!(input_stage.terminate().status.success());
    assert_eq!(task.count(&task.dead_letter_topic()), 0);
}

#[test]
fn kill_9_between_the_retry_write_and_the_commit_loses_nothing() {
    let task = TaskFixture::new(
        "kill",
        1,
        "retry_delays = [\"1s\"]\ncommit_interval = \"60s\"\n",
    );
    let values = ["ok-0", "flaky1-0", "ok-1", "flaky1-1"];
    let records: Vec<(i32, &str)> = values.iter().map(|value| (0, *value)).collect();
    task.produce(&records);

    let input_stage = task.start("0");
    wait_until("both retry records", || {
        task.count(&task.retry_topic(1)) == 2
    });
    // The originals were acknowledged after their retry writes, but not committed yet.
    let committed = task.committed(&task.group, &task.topic, 0);
    assert!(
        committed.is_none_or(|offset| offset < 4),
        "committed {committed:?} before the kill"
    );
    input_stage.kill();
    let handled_before_kill = task.journal().len();
    assert_eq!(handled_before_kill, 4);

    // A new stage 0 reads the uncommitted records again; stage 1 runs the retries.
    let input_stage = task.start("0");
    let retry_stage = task.start("1-2");
    wait_until("every record handled again and every retry run", || {
        let handled = task.handled();
        let retries = task.count(&task.retry_topic(1)) as usize;
        let retried: usize = handled
            .values()
            .map(|attempts| attempts.iter().filter(|a| **a == 2).count())
            .sum();
        task.journal().len() >= handled_before_kill + 4 && retries >= 4 && retried == retries
    });
    assert!(input_stage.terminate().status.success());
    assert!(retry_stage.terminate().status.success());

    // Nothing lost: every record reached its outcome, the flaky ones through a retry;
    // duplicates (the records handled before the kill, handled again) are counted.
    let handled = task.handled();
    let retry_records = task.records(&task.retry_topic(1));
    for value in values {
        let attempts = &handled[value];
        let expected_first = 2; // once before the kill, once after
        assert_eq!(
            attempts.iter().filter(|a| **a == 1).count(),
            expected_first,
            "{value}: {attempts:?}"
        );
        let retried = retry_records
            .iter()
            .filter(|record| common::task::value(record) == value)
            .count();
        if value.starts_with("flaky1") {
            assert_eq!(retried, 2, "{value}: a retry record per failed handling");
            assert_eq!(attempts.iter().filter(|a| **a == 2).count(), 2, "{value}");
        } else {
            assert_eq!(retried, 0, "{value}");
        }
    }
    assert_eq!(task.count(&task.dead_letter_topic()), 0);
    task.assert_all_committed(&task.group, &task.topic);
    task.assert_all_committed(&format!("{}.retry.1", task.group), &task.retry_topic(1));
}

#[test]
fn a_bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        r#"
[clusters.main]
bootstrap_servers = "127.0.0.1:9"

[tasks.billing]
topics = ["orders"]
retry_delays = ["1s", "5 parsecs"]
handler = { type = "exec", command = ["true"] }
"#,
    )
    .unwrap();
    let config = config.display().to_string();
    let outcome = common::run(&["process", "--config", &config, "billing"], b"");
    outcome.assert_one_line_error(
        2,
        r#"bad.toml: tasks.billing.retry_delays[1]: "5 parsecs" is not a duration"#,
    );
    let good = std::fs::read_to_string(&config)
        .unwrap()
        .replace("5 parsecs", "5s");
    std::fs::write(&config, good).unwrap();
    let outcome = common::run(&["process", "--config", &config, "biling"], b"");
    outcome.assert_one_line_error(2, "tasks.biling: no such task (did you mean `billing`?)");
    let outcome = common::run(
        &["process", "--config", &config, "--stages", "4", "billing"],
        b"",
    );
    outcome.assert_one_line_error(2, "--stages: stages `4`: the task has stages 0 to 3");
    let outcome = common::run(&["dlq", "replay", "--config", &config, "nope"], b"");
    outcome.assert_one_line_error(2, "tasks.nope: no such task");
}
