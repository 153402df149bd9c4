//! The configuration file of `sluice process`, `sluice dlq` and `sluice config`: clusters,
//! producers and named tasks, in TOML.
//!
//! ```toml
//! [clusters.main]
//! bootstrap_servers = "127.0.0.1:9092"
//! security = { protocol = "sasl_ssl", sasl_mechanism = "SCRAM-SHA-512", username = "billing",
//!              password = { env = "KAFKA_PASSWORD" }, ca_location = "/etc/kafka/ca.pem" }
//! librdkafka = { "socket.keepalive.enable" = true }  # any librdkafka property
//!
//! [producers.retries]                # optional: how retries and dead letters are written
//! compression = "zstd"
//! flush_interval = "10ms"
//!
//! [tasks.billing]
//! cluster = "main"                   # optional with one cluster
//! producer = "retries"               # default: default settings on the task's cluster
//! topics = ["orders"]
//! group = "billing"                  # default: the task's name
//! retry_delays = ["1s", "5s", "30s"] # or: retries = 3 and retry_backoff = { base = "1s", cap = "1m" }
//! handler = { type = "exec", command = ["./bill.sh"] }
//! # or: handler = { type = "http", url = "http://127.0.0.1:8080/bill", body = "json" }
//! # optional: dead_letter_handler = { type = "http", url = "http://127.0.0.1:8080/alert" }
//! ```
//!
//! # One merge
//!
//! The file, then environment variables, then `--set` flags, merge into one TOML table before
//! anything is checked, so that each reaches the same typed settings ([`load`]):
//!
//! - `SLUICE__TASKS__BILLING__CONCURRENCY=8`: an environment variable named `SLUICE__`, then
//!   the key path with `__` between its keys, sets that key. Keys match the file's
//!   ignoring case, and `_` in the name also matches `-` or `.` in a key, so
//!   `SLUICE__CLUSTERS__MAIN__LIBRDKAFKA__SOCKET_KEEPALIVE_ENABLE` sets a
//!   `"socket.keepalive.enable"` the file has; a key the file lacks is taken in lower case.
//! - `--set tasks.billing.concurrency=8`: a dotted key path (quote keys holding dots:
//!   `clusters.main.librdkafka."fetch.wait.max.ms"=50`), `=`, a value.
//!
//! A value is read as TOML when it parses as a TOML value (`8`, `true`, `["a", "b"]`,
//! `{ env = "X" }`), else as a string (`1s`, `orders`). An override names an existing
//! cluster, producer or task; within one, an unknown key is a problem like one in the file,
//! named by the variable or flag that set it.
//!
//! # Problems
//!
//! Reading is strict: an unknown key (with a did-you-mean), a value of the wrong type, a
//! missing key, a reference to no such cluster or producer, an unset secret variable or a
//! setting the task cannot use is a problem that names the key path, such as
//! `tasks.billing.retry_delays[1]: "5 parsecs" is not a duration (line 7)`. Every problem is
//! found before any is reported, and nothing connects: `sluice config check` lists them all
//! (exit status 2); the other commands refuse to start on any problem of the file's clusters
//! and producers or of their task.
//!
//! # Secrets
//!
//! `security.password`, `security.key_password`, the http handler's `headers` values and any
//! librdkafka property may be a [`Secret`](crate::Secret): a string, `{ env = "VAR" }` or
//! `{ file = "/run/secrets/x" }`. Secret values never appear in problems, logs or
//! `sluice config show`.

mod clients;
mod command;
mod duration;
mod error;
mod load;
mod overrides;
mod path;
mod resolve;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

pub use command::{run as run_command, ConfigCommand};
pub use duration::ConfigDuration;
pub use error::ConfigError;
pub use load::ConfigArgs;
pub use path::{deserialize_all, KeyPath};
pub use resolve::TaskPlan;

use crate::handlers::spec::{Encoding, HeaderTable};
use crate::secret::Secret;

/// A whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The clusters, by name.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Named producer settings, by name.
    #[serde(default)]
    pub producers: BTreeMap<String, ProducerConfig>,
    /// The tasks, by name.
    #[serde(default)]
    pub tasks: BTreeMap<String, Task>,
}

/// `[clusters.NAME]`: where the brokers are and how to reach them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `host:port`, comma-separated (required).
    pub bootstrap_servers: Option<String>,
    /// TLS and SASL.
    pub security: Option<Security>,
    /// librdkafka properties passed to every client of the cluster.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, Property>,
}

/// `security = { protocol = "sasl_ssl", ... }`: mapped to librdkafka's security properties.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// `security.protocol`.
    pub protocol: Protocol,
    /// `sasl.mechanism` (the SASL protocols need it).
    pub sasl_mechanism: Option<SaslMechanism>,
    /// `sasl.username`.
    pub username: Option<String>,
    /// `sasl.password`.
    pub password: Option<Secret>,
    /// `ssl.ca.location`: the CA certificate(s) that signed the brokers' certificates.
    pub ca_location: Option<PathBuf>,
    /// `ssl.certificate.location`: the client's certificate.
    pub certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: the client's private key.
    pub key_location: Option<PathBuf>,
    /// `ssl.key.password`: the private key's password.
    pub key_password: Option<Secret>,
}

/// `protocol`: how clients talk to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// No encryption, no authentication.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL authentication without encryption.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

/// `sasl_mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// A user name and password, sent as they are (use it with TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// A librdkafka property's value: a string, number or boolean as written, or a secret read
/// from the environment or a file.
#[derive(Debug, Clone)]
pub enum Property {
    /// Written in the file (or an override).
    Plain(String),
    /// From `{ env = "..." }` or `{ file = "..." }`: never shown.
    Secret(Secret),
}

impl<'de> Deserialize<'de> for Property {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PropertyVisitor)
    }
}

struct PropertyVisitor;

impl<'de> Visitor<'de> for PropertyVisitor {
    type Value = Property;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .write_str(r#"a string, number or boolean, { env = "VARIABLE" } or { file = "/path" }"#)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Property, E> {
        Ok(Property::Plain(value.to_owned()))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Property, E> {
        Ok(Property::Plain(value.to_string()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Property, E> {
        Ok(Property::Plain(value.to_string()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Property, E> {
        Ok(Property::Plain(value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Property, E> {
        Ok(Property::Plain(value.to_string()))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Property, A::Error> {
        Secret::deserialize(de::value::MapAccessDeserializer::new(map)).map(Property::Secret)
    }
}

impl Property {
    /// The value, for the client.
    pub fn expose(&self) -> &str {
        match self {
            Self::Plain(value) => value,
            Self::Secret(secret) => secret.expose(),
        }
    }
}

/// `[producers.NAME]`: how a task's retries and dead letters (and `sluice dlq replay`) are
/// written; see [`sluicegate::producer::ProducerOptions`] for each setting's default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// The cluster written to (optional when the file has one).
    pub cluster: Option<String>,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: Option<CompressionName>,
    /// `all`, `leader` or `none`.
    pub acks: Option<AcksName>,
    /// Idempotent producing (needs `acks = "all"`).
    pub idempotence: Option<bool>,
    /// How long records wait for more to share their batch.
    pub flush_interval: Option<ConfigDuration>,
    /// Most records buffered.
    pub buffer_records: Option<usize>,
    /// Most bytes buffered.
    pub buffer_bytes: Option<usize>,
    /// How long a record may take to be delivered, retries included.
    pub delivery_timeout: Option<ConfigDuration>,
    /// librdkafka producer properties, over the cluster's.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, Property>,
}

/// `compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompressionName {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

/// `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcksName {
    /// Every in-sync replica.
    All,
    /// The leader only.
    Leader,
    /// No acknowledgement.
    None,
}

/// `[tasks.NAME]`: what to read, how to retry, and the handler.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// The cluster the task reads from and writes its retries to: a `[clusters.NAME]` of the
    /// file (optional when there is one).
    pub cluster: Option<String>,
    /// The producer of its retries and dead letters: a `[producers.NAME]` on the same
    /// cluster. Default: a producer with default settings on the task's cluster.
    pub producer: Option<String>,
    /// The input topics (required).
    pub topics: Option<Vec<String>>,
    /// Where the group starts a partition it never committed: `earliest` (the default),
    /// `latest`, `datetime:T` or `offset:N`.
    pub start_position: Option<String>,
    /// `start_position` for single topics: `{ refunds = "latest" }`.
    pub topic_start_positions: Option<BTreeMap<String, String>>,
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
    /// The group protocol: `classic` (the default) or `consumer` (KIP-848).
    pub group_protocol: Option<GroupProtocolName>,
    /// The broker-side assignor under `group_protocol = "consumer"`: `uniform` or `range`.
    pub remote_assignor: Option<RemoteAssignorName>,
    /// Static membership: the id of this process's member in each stage's group, a template
    /// with `{hostname}`, `{stage}` and `{member}`, e.g. `"{hostname}-{stage}"`.
    pub group_instance_id: Option<String>,
    /// How long a partition may have work and make no progress before it is reported
    /// stalled (`"0s"` turns the watch off).
    pub stall_timeout: Option<ConfigDuration>,
    /// The group session timeout (classic protocol only).
    pub session_timeout: Option<ConfigDuration>,
    /// The longest a member may go without polling.
    pub max_poll_interval: Option<ConfigDuration>,
    /// Records each partition may have buffered or in flight.
    pub partition_buffer: Option<usize>,
    /// How long a revoke or shutdown waits for records in flight.
    pub drain_timeout: Option<ConfigDuration>,
    /// What handles each record (required): `type` names the handler, the other keys are
    /// its settings, checked once the type is known.
    pub handler: Option<HandlerTable>,
    /// What the dead-letter stage calls with each dead letter (an alert, a compensation):
    /// a handler table as `handler`'s, without `batch`.
    pub dead_letter_handler: Option<HandlerTable>,
    /// Retry forever: after the last delay, a failing record waits that delay again, and
    /// never reaches the dead-letter topic unless its handler refuses it for good.
    #[serde(default)]
    pub retry_forever: bool,
}

/// `group_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocolName {
    /// The original group protocol.
    Classic,
    /// The consumer group protocol of KIP-848.
    Consumer,
}

/// `remote_assignor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteAssignorName {
    /// Even spread, sticky.
    Uniform,
    /// Co-partitioned topics.
    Range,
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

/// `[tasks.NAME.handler]` of a built-in handler: `type` names it; the other keys are its
/// settings. One flat table (not a serde enum), so that a problem deep in it is named by its
/// full key path.
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

/// A task's `handler` table as written: checked once its `type` is known (a built-in
/// handler's [`HandlerConfig`], or a registered handler's settings). `Debug` shows its keys
/// only: values may be secrets.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct HandlerTable(pub toml::Table);

impl fmt::Debug for HandlerTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}
