//! A task for `sluice process` and `sluice dlq` tests on Apache Kafka: an input topic, a
//! configuration file, a handler script that journals every handling, and the processes.
//!
//! The handler script appends `VALUE ATTEMPT EPOCH_MS PID` (PID: the `sluice process` that
//! ran it) to the journal, then decides by the value's prefix:
//!
//! - `ok-*` succeeds;
//! - `flaky1-*` fails until attempt 2, `flaky2-*` until attempt 3;
//! - `dead-*` always fails (retriable);
//! - `bad-*` exits 65 (not retriable) until the marker file exists, then succeeds.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sluicegate_testing::{
    committed_offset, consumer_config, produce_records, unique_name, TestBroker, TestRecord,
};

use super::{consume_all, run, sluice, Consumed, Run};

/// Settings every test task has: short group timeouts keep rebalances short in tests.
const GROUP_TIMEOUTS: &str = "session_timeout = \"6s\"\nmax_poll_interval = \"10s\"\n";

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handling {
    pub value: String,
    pub attempt: u32,
    pub at_ms: i64,
    pub pid: u32,
}

/// An input topic, its task and the files around it.
pub struct TaskFixture {
    dir: tempfile::TempDir,
    pub name: String,
    pub topic: String,
    pub group: String,
    pub bootstrap: String,
    pub config: PathBuf,
    pub journal: PathBuf,
    pub marker: PathBuf,
}

impl TaskFixture {
    /// Creates the input topic with `partitions` partitions and writes a configuration file
    /// whose task has `settings` (TOML lines: retries, delays...) besides topic, group,
    /// group timeouts and the handler.
    pub fn new(prefix: &str, partitions: i32, settings: &str) -> TaskFixture {
        let broker = TestBroker::kafka();
        let topic = unique_name(prefix);
        block_on(broker.create_topic(&topic, partitions));
        TaskFixture::with_topic(broker.bootstrap_servers(), topic, settings)
    }

    /// Like [`new`](Self::new), for an input topic that already exists on the brokers at
    /// `bootstrap`.
    pub fn with_topic(bootstrap: String, topic: String, settings: &str) -> TaskFixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let journal = dir.path().join("journal");
        let marker = dir.path().join("marker");
        let script = dir.path().join("handle.sh");
        fs::write(
            &script,
            format!(
                r#"value=$(cat)
echo "$value $SLUICE_ATTEMPT $(date +%s%3N) $PPID" >> '{journal}'
case "$value" in
  ok-*) exit 0 ;;
  flaky1-*) [ "$SLUICE_ATTEMPT" -ge 2 ] && exit 0 ;;
  flaky2-*) [ "$SLUICE_ATTEMPT" -ge 3 ] && exit 0 ;;
  bad-*) [ -e '{marker}' ] && exit 0; echo "malformed $value" >&2; exit 65 ;;
esac
echo "failed $value at attempt $SLUICE_ATTEMPT" >&2
exit 1
"#,
                journal = journal.display(),
                marker = marker.display()
            ),
        )
        .expect("write the handler script");
        let name = "work".to_owned();
        let group = format!("{topic}-group");
        let config = dir.path().join("sluice.toml");
        fs::write(
            &config,
            format!(
                r#"[clusters.main]
bootstrap_servers = "{bootstrap}"

[tasks.{name}]
topics = ["{topic}"]
group = "{group}"
{GROUP_TIMEOUTS}{settings}
[tasks.{name}.handler]
type = "exec"
command = ["sh", "{script}"]
"#,
                script = script.display()
            ),
        )
        .expect("write the configuration");
        TaskFixture {
            dir,
            name,
            topic,
            group,
            bootstrap,
            config,
            journal,
            marker,
        }
    }

    /// Produces these values to these partitions; returns where each went.
    pub fn produce(&self, records: &[(i32, &str)]) -> Vec<(i32, i64)> {
        let records = records
            .iter()
            .map(|(partition, value)| TestRecord::to_partition(*partition, value.as_bytes()))
            .collect();
        block_on(produce_records(&self.bootstrap, &self.topic, records))
    }

    /// Starts `sluice process --stages STAGES` on the task and waits until its stages run.
    pub fn start(&self, stages: &str) -> TaskProcess {
        self.start_with_args(stages, &[])
    }

    /// Like [`start`](Self::start), with more arguments for `sluice process`.
    pub fn start_with_args(&self, stages: &str, more: &[&str]) -> TaskProcess {
        self.start_with(stages, more, &[])
    }

    /// Like [`start`](Self::start), with these environment variables set.
    pub fn start_with_env(&self, stages: &str, environment: &[(&str, &str)]) -> TaskProcess {
        self.start_with(stages, &[], environment)
    }

    fn start_with(&self, stages: &str, more: &[&str], environment: &[(&str, &str)]) -> TaskProcess {
        let stdout = self.dir.path().join(format!("{}.stdout", unique_name("p")));
        let stderr = self.dir.path().join(format!("{}.stderr", unique_name("p")));
        let child = sluice()
            .args(["process", "--config"])
            .arg(&self.config)
            .args(["--stages", stages])
            .args(more)
            .arg(&self.name)
            .envs(environment.iter().copied())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("sluice process starts");
        let process = TaskProcess {
            child: Some(child),
            stdout,
            stderr,
        };
        wait_until(&format!("stages {stages} to start"), || {
            process.assert_running();
            process.stderr().contains("running stage")
        });
        process
    }

    /// `sluice ARGS... --config FILE TASK`, run to its end.
    pub fn sluice(&self, args: &[&str]) -> Run {
        let config = self.config.display().to_string();
        let mut argv = args.to_vec();
        argv.extend(["--config", &config, &self.name]);
        run(&argv, b"")
    }

    /// The journal so far.
    pub fn journal(&self) -> Vec<Handling> {
        let text = fs::read_to_string(&self.journal).unwrap_or_default();
        text.lines()
            .map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                assert_eq!(fields.len(), 4, "journal line {line:?}");
                Handling {
                    value: fields[0].to_owned(),
                    attempt: fields[1].parse().expect("attempt"),
                    at_ms: fields[2].parse().expect("time"),
                    pid: fields[3].parse().expect("pid"),
                }
            })
            .collect()
    }

    /// How many times each value was handled, by attempt: `value -> [attempt 1, attempt 2...]`.
    pub fn handled(&self) -> BTreeMap<String, Vec<u32>> {
        let mut handled: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for handling in self.journal() {
            handled
                .entry(handling.value)
                .or_default()
                .push(handling.attempt);
        }
        for attempts in handled.values_mut() {
            attempts.sort_unstable();
        }
        handled
    }

    /// Retry topic `k` of the task (default naming).
    pub fn retry_topic(&self, retry: usize) -> String {
        format!("{}.{}.retry.{retry}", self.topic, self.group)
    }

    /// The task's dead-letter topic (default naming).
    pub fn dead_letter_topic(&self) -> String {
        format!("{}.{}.dlq", self.topic, self.group)
    }

    /// The end offset of each partition of `topic` (empty if it does not exist).
    pub fn end_offsets(&self, topic: &str) -> BTreeMap<i32, i64> {
        let consumer: BaseConsumer = consumer_config(&self.bootstrap, "sluice-test-probe")
            .create()
            .expect("probe consumer");
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata");
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return BTreeMap::new();
        };
        found
            .partitions()
            .iter()
            .map(|partition| {
                let (_, high) = consumer
                    .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
                    .expect("watermarks");
                (partition.id(), high)
            })
            .collect()
    }

    /// Records in `topic` (0 if it does not exist).
    pub fn count(&self, topic: &str) -> i64 {
        self.end_offsets(topic).values().sum()
    }

    /// What `group` committed on `topic`/`partition`.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        block_on(committed_offset(&self.bootstrap, group, topic, partition))
    }

    /// Asserts that `group` committed the end of every non-empty partition of `topic`.
    pub fn assert_all_committed(&self, group: &str, topic: &str) {
        for (partition, end) in self.end_offsets(topic) {
            let committed = self.committed(group, topic, partition);
            if end == 0 {
                assert!(
                    committed.is_none_or(|offset| offset == 0),
                    "{group} on {topic}/{partition}"
                );
            } else {
                assert_eq!(
                    committed,
                    Some(end),
                    "group {group} on {topic}/{partition}: committed vs end"
                );
            }
        }
    }

    /// Every record of `topic`, read with `sluice consume --format json`.
    pub fn records(&self, topic: &str) -> Vec<Consumed> {
        consume_all(&self.bootstrap, topic)
    }
}

/// The value of header `name` of `record`, as text.
pub fn header(record: &Consumed, name: &str) -> String {
    let (_, value) = record
        .headers
        .iter()
        .rev()
        .find(|(key, _)| key == name.as_bytes())
        .unwrap_or_else(|| panic!("no header {name} in {record:?}"));
    String::from_utf8(value.clone().expect("a header value")).expect("UTF-8 header")
}

/// The value of `record` as text.
pub fn value(record: &Consumed) -> String {
    String::from_utf8(record.value.clone().expect("a value")).expect("UTF-8 value")
}

/// A running `sluice process`; killed if still running when dropped.
pub struct TaskProcess {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// How a `sluice process` ended.
#[derive(Debug)]
pub struct Ended {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl TaskProcess {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Fails the test if the process has exited.
    pub fn assert_running(&self) {
        // An exited child stays a zombie (state Z) until it is waited for.
        let exited = fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .map_or(true, |stat| stat_field(&stat, 0) == Some("Z"));
        assert!(!exited, "sluice process exited; stderr: {}", self.stderr());
    }

    /// CPU time used so far (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // After the command name: state is field 0, utime field 11, stime field 12.
        let ticks = |index| {
            stat_field(&stat, index)
                .and_then(|field| field.parse::<u64>().ok())
                .expect("CPU ticks")
        };
        ticks(11) + ticks(12)
    }

    /// SIGTERM, then waits (up to 30 s) for the graceful end.
    pub fn terminate(mut self) -> Ended {
        let mut child = self.child.take().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("sluice process ignored SIGTERM; stderr: {}", self.stderr());
            }
            thread::sleep(Duration::from_millis(50));
        };
        Ended {
            status,
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: self.stderr(),
        }
    }

    /// SIGKILL: no shutdown, no last commit.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("wait");
    }
}

impl Drop for TaskProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Field `index` of /proc/PID/stat counted from the state, which follows the command name.
fn stat_field(stat: &str, index: usize) -> Option<&str> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(index)
}

/// Polls `condition` every 100 ms for up to 40 s; fails the test naming `what` after that.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "timed out waiting for {what}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a future on a throwaway runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}
