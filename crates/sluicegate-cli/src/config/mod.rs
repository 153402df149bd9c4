//! The configuration file of `sluice process` and `sluice dlq`: a cluster and named tasks, in
//! TOML.
//!
//! ```toml
//! [cluster]
//! bootstrap_servers = "127.0.0.1:9092"
//!
//! [tasks.billing]
//! topics = ["orders"]
//! group = "billing"                  # default: the task's name
//! retry_delays = ["1s", "5s", "30s"] # or: retries = 3 and retry_backoff = { base = "1s", cap = "1m" }
//! handler = { type = "exec", command = ["./bill.sh"] }
//! # or: handler = { type = "http", url = "http://127.0.0.1:8080/bill", body = "json" }
//! ```
//!
//! Reading is strict: an unknown key (with a did-you-mean), a value of the wrong type or a
//! setting the task cannot use fails with one message that names the key path, such as
//! `tasks.billing.retry_delays[1]: "5 parsecs" is not a duration`, and `sluice` exits with
//! status 2. Nothing connects before the whole file was checked.

mod duration;
mod error;
mod resolve;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use duration::ConfigDuration;
pub use error::ConfigError;
pub use resolve::TaskPlan;

use crate::exit::usage;
use crate::handlers::spec::{Encoding, HeaderTable};

/// A whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where the brokers are.
    pub cluster: Cluster,
    /// The tasks, by name.
    #[serde(default)]
    pub tasks: BTreeMap<String, Task>,
}

/// `[cluster]`: the brokers every task of the file uses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// `host:port`, comma-separated.
    pub bootstrap_servers: String,
    /// librdkafka properties passed to every client (security settings, for example).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// `[tasks.NAME]`: what to read, how to retry, and the handler.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// The input topics.
    pub topics: Vec<String>,
    /// The consumer group of stage 0; stage `k` uses `<group>.retry.<k>`. Default: the
    /// task's name.
    pub group: Option<String>,
    /// One delay per retry (the number of retries is their count).
    pub retry_delays: Option<Vec<ConfigDuration>>,
    /// The number of retries, with exponentially growing delays ([`Task::retry_backoff`]).
    pub retries: Option<usize>,
    /// The first delay and the longest one, with `retries`. Default: 1 s doubling up to 1 min.
    pub retry_backoff: Option<Backoff>,
    /// Retry through retry topics (the default) or in place.
    #[serde(default)]
    pub retry_mode: RetryMode,
    /// Names for retry topics 1, 2, ... instead of `<topic>.<group>.retry.<k>` (one input
    /// topic only).
    pub retry_topic_names: Option<Vec<String>>,
    /// A name for the dead-letter topic instead of `<topic>.<group>.dlq` (one input topic
    /// only).
    pub dead_letter_topic: Option<String>,
    /// In what order a partition's records are handled.
    #[serde(default)]
    pub order: Order,
    /// How many records are handled at once in each stage.
    pub concurrency: Option<usize>,
    /// A handling that runs longer fails (its command is killed).
    pub handler_timeout: Option<ConfigDuration>,
    /// How often handled offsets are committed.
    pub commit_interval: Option<ConfigDuration>,
    /// The group session timeout.
    pub session_timeout: Option<ConfigDuration>,
    /// The longest a member may go without polling.
    pub max_poll_interval: Option<ConfigDuration>,
    /// Records each partition may have buffered or in flight.
    pub partition_buffer: Option<usize>,
    /// How long a revoke or shutdown waits for records in flight.
    pub drain_timeout: Option<ConfigDuration>,
    /// What handles each record.
    pub handler: HandlerConfig,
}

/// `retry_backoff = { base = "1s", cap = "1m" }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// The delay before the first retry; each next one doubles.
    pub base: ConfigDuration,
    /// The longest delay.
    pub cap: ConfigDuration,
}

/// Where failed records wait for their retry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    /// In retry topics, each read by its own stage: the input keeps flowing.
    #[default]
    Topics,
    /// In the handler: the partition (or key) waits until the retry is done.
    InPlace,
}

/// `order`: `partition`, `key` or `unordered`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// One record of a partition at a time.
    #[default]
    Partition,
    /// One record per key of a partition at a time.
    Key,
    /// Any records at once.
    Unordered,
}

/// `[tasks.NAME.handler]`: `type` names the handler; the other keys are its settings. One
/// flat table (not a serde enum), so that a problem deep in it is named by its full key path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    /// `exec` or `http`.
    #[serde(rename = "type")]
    pub kind: HandlerType,
    /// exec: the program and its arguments (no shell unless you name one).
    pub command: Option<Vec<String>>,
    /// exec: what a run reads on standard input, `raw` (the value; the default for single
    /// records) or `json` (the record; always so for batches and workers).
    pub input: Option<Encoding>,
    /// exec: long-lived worker processes speaking JSON lines, instead of a run per call.
    pub workers: Option<usize>,
    /// http: where to POST (http or https).
    pub url: Option<String>,
    /// http: the request body, `raw` (the value; the default for single records) or `json`
    /// (the record; always so for batches).
    pub body: Option<Encoding>,
    /// http: extra headers of every request (values may be secrets: never shown).
    pub headers: Option<HeaderTable>,
    /// A call running longer fails: its command (or worker) is killed, its request
    /// abandoned. Default: none for exec, 30 s for http.
    pub timeout: Option<ConfigDuration>,
    /// Call the handler once per batch of records.
    pub batch: Option<BatchConfig>,
}

/// The built-in handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlerType {
    /// Runs a command per record or batch, or hands records to long-lived workers; see
    /// [`crate::handlers::exec`] and [`crate::handlers::exec_pool`].
    Exec,
    /// POSTs each record or batch to a URL; see [`crate::handlers::http`].
    Http,
}

/// `batch = { size = 100, timeout = "200ms" }`: records go to the handler in batches.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// A batch is handed out when it holds this many records. Default: 100.
    pub size: Option<usize>,
    /// ...or this long after its first record arrived. Default: 1 s.
    pub timeout: Option<ConfigDuration>,
}

impl ConfigFile {
    /// Reads and checks a configuration file; any problem is a usage error (exit status 2)
    /// naming the file and the key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| usage(format!("could not read {}: {error}", path.display())))?;
        Self::parse(&text).map_err(|error| usage(format!("{}: {error}", path.display())))
    }

    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let deserializer =
            toml::Deserializer::parse(text).map_err(|error| ConfigError::syntax(text, &error))?;
        serde_path_to_error::deserialize(deserializer)
            .map_err(|error| ConfigError::from_serde(text, &error))
    }

    /// The task named `name`, checked and turned into library settings.
    pub fn plan(&self, name: &str) -> Result<TaskPlan, ConfigError> {
        let task = self.tasks.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.tasks.keys().map(String::as_str).collect();
            ConfigError::new(
                format!("tasks.{name}"),
                if known.is_empty() {
                    "no such task (the file has no [tasks.NAME] table)".to_owned()
                } else {
                    format!("no such task (the file has {})", known.join(", "))
                },
            )
        })?;
        TaskPlan::resolve(name, task, &self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [cluster]
        bootstrap_servers = "127.0.0.1:9092"

        [tasks.billing]
        topics = ["orders"]
        retry_delays = ["1s", "5s"]
        order = "key"
        handler = { type = "exec", command = ["sh", "-c", "cat"] }
    "#;

    fn problem(text: &str) -> String {
        ConfigFile::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_file_parses() {
        let file = ConfigFile::parse(GOOD).unwrap();
        let task = &file.tasks["billing"];
        assert_eq!(task.order, Order::Key);
        assert_eq!(task.retry_mode, RetryMode::Topics);
        assert_eq!(task.retry_delays.as_ref().map(Vec::len), Some(2));
        assert_eq!(task.handler.kind, HandlerType::Exec);
        assert_eq!(
            task.handler.command.as_deref(),
            Some(&["sh".to_owned(), "-c".to_owned(), "cat".to_owned()][..])
        );
    }

    #[test]
    fn errors_name_the_key_path() {
        let bad = GOOD.replace(r#"["1s", "5s"]"#, r#"["1s", "5 parsecs"]"#);
        assert_eq!(
            problem(&bad),
            r#"tasks.billing.retry_delays[1]: "5 parsecs" is not a duration (write "500ms", "5s", "1m" or "2h") (line 7)"#
        );
        let bad = GOOD.replace(r#"order = "key""#, r#"order = "keys""#);
        assert!(
            problem(&bad).starts_with("tasks.billing.order: unknown variant `keys`"),
            "{}",
            problem(&bad)
        );
        let bad = GOOD.replace("retry_delays", "retry_delay");
        assert_eq!(
            problem(&bad),
            "tasks.billing.retry_delay: unknown key (did you mean `retry_delays`?) (line 7)"
        );
        let bad = GOOD.replace(r#"type = "exec""#, r#"type = "exce""#);
        assert!(
            problem(&bad).starts_with("tasks.billing.handler.type: unknown variant `exce`"),
            "{}",
            problem(&bad)
        );
        let bad = GOOD.replace("command = ", "argv = ");
        assert!(
            problem(&bad).starts_with("tasks.billing.handler.argv: unknown key"),
            "{}",
            problem(&bad)
        );
        let bad = GOOD.replace(r#"topics = ["orders"]"#, "");
        assert_eq!(
            problem(&bad),
            "tasks.billing: missing key `topics` (line 5)"
        );
        assert!(
            problem("[cluster\n").contains("line 1"),
            "{}",
            problem("[cluster\n")
        );
    }

    #[test]
    fn an_unknown_task_lists_the_known_ones() {
        let file = ConfigFile::parse(GOOD).unwrap();
        assert_eq!(
            file.plan("biling").unwrap_err().to_string(),
            "tasks.biling: no such task (the file has billing)"
        );
    }
}
