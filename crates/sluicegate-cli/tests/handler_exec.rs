//! The `exec` handler of `sluice process` on Apache Kafka, with real commands: success, failures
//! whose standard error becomes the reason, a timeout that kills the command and what it
//! started, a pool of long-lived workers, and batches as JSON lines.

mod common;
mod handler_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use serde_json::Value;

use common::task::{header, value, wait_until, TaskFixture};
use handler_support::{beside, configure, script};

/// The dead letters of `task`: value → reason.
fn dead_letters(task: &TaskFixture) -> BTreeMap<String, String> {
    task.records(&task.dead_letter_topic())
        .iter()
        .map(|record| (value(record), header(record, "sluice.retry.error")))
        .collect()
}

/// The lines of a journal file (empty if it does not exist yet).
fn lines(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether process `pid` is gone (or dead and not yet reaped).
fn gone(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_dead_letter_handler_runs_once_per_dead_letter_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts");
    let task = TaskFixture::new(
        "exec-dead-letter-handler",
        1,
        &format!(
            "retry_delays = [\"200ms\"]\n\
             dead_letter_handler = {{ type = \"exec\", command = [\"sh\", \"-c\", \
             'echo \"$(cat) $SLUICE_TOPIC $SLUICE_OFFSET $SLUICE_ATTEMPT $SLUICE_ERROR\" >> {}'] }}\n",
            alerts.display()
        ),
    );
    let positions = task.produce(&[(0, "ok-0"), (0, "bad-0"), (0, "dead-0")]);
    let process = task.start("all");
    wait_until("two alerts", || lines(&alerts).len() >= 2);
    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);
    // Once per dead letter, with where it was first read, its attempt and why it failed.
    assert_eq!(
        lines(&alerts),
        [
            format!(
                "bad-0 {} {} 2 message handler permanent error: exit status 65: malformed bad-0",
                task.topic, positions[1].1
            ),
            format!(
                "dead-0 {} {} 3 message handler error: exit status 1: failed dead-0 at attempt 2",
                task.topic, positions[2].1
            ),
        ]
    );
    assert_eq!(dead_letters(&task).len(), 2);
    task.assert_all_committed(&format!("{}.dlq", task.group), &task.dead_letter_topic());
}

#[test]
fn json_input_success_and_failures_with_their_stderr() {
    let task = TaskFixture::new("exec-json", 1, "");
    let journal = beside(&task, "seen");
    let handle = script(
        &task,
        "handle.sh",
        &format!(
            r#"line=$(cat)
echo "$line" >> '{journal}'
case "$line" in
  *'"value":"ok-'*) exit 0 ;;
  *'"value":"bad-'*) echo "malformed record" >&2; exit 65 ;;
esac
echo "failed at attempt $SLUICE_ATTEMPT" >&2
exit 1
"#,
            journal = journal.display()
        ),
    );
    configure(
        &task,
        "retry_delays = [\"200ms\"]\n",
        &format!(
            "type = \"exec\"\ncommand = [\"{}\"]\ninput = \"json\"\n",
            handle.display()
        ),
    );
    let positions = task.produce(&[(0, "ok-0"), (0, "bad-0"), (0, "dead-0")]);
    let process = task.start("all");
    wait_until("two dead letters", || {
        task.count(&task.dead_letter_topic()) == 2
    });
    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);

    // The command read each record as one JSON line, with where it was first read.
    let seen: Vec<Value> = lines(&journal)
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let handled: Vec<(String, i64, u64)> = seen
        .iter()
        .map(|record| {
            assert_eq!(record["topic"], task.topic.as_str());
            (
                record["value"].as_str().unwrap().to_owned(),
                record["offset"].as_i64().unwrap(),
                record["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        handled,
        [
            ("ok-0".to_owned(), positions[0].1, 1),
            ("bad-0".to_owned(), positions[1].1, 1),
            ("dead-0".to_owned(), positions[2].1, 1),
            ("dead-0".to_owned(), positions[2].1, 2),
        ]
    );

    // Exit 65 is dead-lettered at once, other failures after their retries; both keep
    // their standard error as the reason.
    let dead = dead_letters(&task);
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead["bad-0"].contains("exit status 65: malformed record"),
        "{}",
        dead["bad-0"]
    );
    assert!(
        dead["dead-0"].contains("exit status 1: failed at attempt 2"),
        "{}",
        dead["dead-0"]
    );
    task.assert_all_committed(&task.group, &task.topic);
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_children() {
    let task = TaskFixture::new("exec-timeout", 1, "");
    let pids = beside(&task, "pids");
    let handle = script(
        &task,
        "handle.sh",
        &format!(
            r#"case "$(cat)" in
  slow-*) sleep 60 & echo $! >> '{pids}'; echo $$ >> '{pids}'; echo "still working" >&2; wait ;;
esac
"#,
            pids = pids.display()
        ),
    );
    configure(
        &task,
        "",
        &format!(
            "type = \"exec\"\ncommand = [\"{}\"]\ntimeout = \"1s\"\n",
            handle.display()
        ),
    );
    task.produce(&[(0, "slow-0"), (0, "ok-0")]);
    let process = task.start("all");
    wait_until("the slow record's dead letter", || {
        task.count(&task.dead_letter_topic()) == 1
    });
    wait_until("everything committed", || {
        task.committed(&task.group, &task.topic, 0) == Some(2)
    });
    let dead = dead_letters(&task);
    assert!(
        dead["slow-0"]
            .contains("timed out after 1 s (killed with its process group): still working"),
        "{}",
        dead["slow-0"]
    );
    let started = lines(&pids);
    assert_eq!(started.len(), 2, "the script and its sleep: {started:?}");
    wait_until("the command and its child to be gone", || {
        started.iter().all(|pid| gone(pid))
    });
    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);
}

#[test]
fn a_worker_pool_serves_many_records_and_replaces_a_crashed_worker() {
    let task = TaskFixture::new("exec-pool", 2, "");
    let journal = beside(&task, "seen");
    let worker = script(
        &task,
        "worker.sh",
        &format!(
            r#"while IFS= read -r line; do
  value=$(echo "$line" | sed 's/.*"value":"\([^"]*\)".*/\1/')
  echo "$$ $value" >> '{journal}'
  case "$line" in
    *'"value":"crash-'*'"attempt":1}}') exit 1 ;;
    *'"value":"bad-'*) echo '{{"ok":false,"error":"bad record","retriable":false}}' ;;
    *) echo '{{"ok":true}}' ;;
  esac
done
"#,
            journal = journal.display()
        ),
    );
    configure(
        &task,
        "retry_delays = [\"200ms\"]\nconcurrency = 4\norder = \"unordered\"\n",
        &format!(
            "type = \"exec\"\ncommand = [\"{}\"]\nworkers = 2\n",
            worker.display()
        ),
    );
    let mut values: Vec<(i32, String)> = (0..40).map(|i| (i % 2, format!("ok-{i}"))).collect();
    values.push((0, "crash-0".to_owned()));
    values.push((1, "bad-1".to_owned()));
    let produced: Vec<(i32, &str)> = values.iter().map(|(p, v)| (*p, v.as_str())).collect();
    task.produce(&produced);
    let process = task.start("all");
    wait_until("every record handled", || {
        let seen: BTreeSet<String> = lines(&journal)
            .iter()
            .filter_map(|line| line.split_once(' ').map(|(_, value)| value.to_owned()))
            .collect();
        seen.len() == values.len() && task.count(&task.dead_letter_topic()) == 1
    });
    wait_until("the crashed record's retry", || {
        lines(&journal)
            .iter()
            .filter(|line| line.ends_with(" crash-0"))
            .count()
            == 2
    });
    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);

    // Few long-lived workers did it all: the task's stages share one pool of 2, and one
    // replaced the crashed worker.
    let seen = lines(&journal);
    let workers: BTreeSet<&str> = seen
        .iter()
        .filter_map(|line| line.split(' ').next())
        .collect();
    assert!(workers.len() <= 3, "{} workers: {seen:?}", workers.len());
    let crash: Vec<&String> = seen
        .iter()
        .filter(|line| line.ends_with(" crash-0"))
        .collect();
    assert_eq!(crash.len(), 2, "a crash, then its retry: {seen:?}");

    // The crash was retried (and succeeded); the refusal went straight to the dead letters.
    let retried = task.records(&task.retry_topic(1));
    assert_eq!(retried.len(), 1);
    assert!(
        header(&retried[0], "sluice.retry.error").contains("worker closed its standard output"),
        "{}",
        header(&retried[0], "sluice.retry.error")
    );
    let dead = dead_letters(&task);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead["bad-1"].ends_with("permanent error: bad record"),
        "{}",
        dead["bad-1"]
    );
    task.assert_all_committed(&task.group, &task.topic);
    task.assert_all_committed(&format!("{}.retry.1", task.group), &task.retry_topic(1));
}

#[test]
fn batches_reach_the_command_as_json_lines() {
    let task = TaskFixture::new("exec-batch", 1, "");
    let journal = beside(&task, "batches");
    let handle = script(
        &task,
        "handle.sh",
        &format!(
            r#"lines=$(cat)
echo "$SLUICE_BATCH_SIZE $(echo "$lines" | wc -l) $(echo "$lines" | sed 's/.*"value":"\([^"]*\)".*/\1/' | tr '\n' ' ')" >> '{journal}'
"#,
            journal = journal.display()
        ),
    );
    configure(
        &task,
        "",
        &format!(
            "type = \"exec\"\ncommand = [\"{}\"]\nbatch = {{ size = 5, timeout = \"300ms\" }}\n",
            handle.display()
        ),
    );
    let values: Vec<String> = (0..12).map(|i| format!("v{i}")).collect();
    let produced: Vec<(i32, &str)> = values.iter().map(|v| (0, v.as_str())).collect();
    task.produce(&produced);
    let process = task.start("all");
    let handled = || -> Vec<String> {
        lines(&journal)
            .iter()
            .flat_map(|line| {
                line.split_whitespace()
                    .skip(2)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_until("every record in a batch", || {
        handled().len() == values.len()
    });
    wait_until("everything committed", || {
        task.committed(&task.group, &task.topic, 0) == Some(12)
    });
    let ended = process.terminate();
    assert!(ended.status.success(), "{}", ended.stderr);

    // In offset order, in batches of up to 5; each batch's size is its number of lines.
    assert_eq!(handled(), values);
    let batches = lines(&journal);
    for batch in &batches {
        let fields: Vec<&str> = batch.split_whitespace().collect();
        assert_eq!(fields[0], fields[1], "SLUICE_BATCH_SIZE vs lines: {batch}");
        let size: usize = fields[0].parse().unwrap();
        assert!((1..=5).contains(&size), "{batch}");
    }
    assert!(batches.len() < values.len(), "batched: {batches:?}");
}
