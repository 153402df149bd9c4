//! Consumer engine options: named settings with defaults, validated before connecting.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::record::TopicPartition;

/// Where a group with no committed offset starts reading a partition. A partition the
/// group committed an offset on always resumes there.
///
/// ```
/// use sluicegate::{ConsumerOptions, StartPosition};
///
/// let options = ConsumerOptions::new("127.0.0.1:9092", "audit", ["orders", "refunds"])
///     .start_position(StartPosition::Timestamp(1_714_564_800_000)) // 2024-05-01T12:00:00Z
///     .topic_start_position("refunds", StartPosition::Latest);
/// assert!(options.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartPosition {
    /// The oldest record still in the partition.
    #[default]
    Earliest,
    /// Only records produced after the partition was assigned.
    Latest,
    /// The first record written at or after this time, in milliseconds since the Unix epoch
    /// (the end, where no record is that late).
    Timestamp(i64),
    /// This offset, clamped to what the partition keeps.
    Offset(i64),
}

impl StartPosition {
    /// Whether the engine places a new partition here itself (see `source::placement`),
    /// rather than leave it to librdkafka's `auto.offset.reset`: a time and an offset, which
    /// that cannot express, and the end, which it would look up only once fetching starts,
    /// missing records written between the assignment and then.
    pub(crate) fn is_exact(self) -> bool {
        !matches!(self, Self::Earliest)
    }
}

/// When acknowledged offsets are committed to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CommitStrategy {
    /// Commit asynchronously every commit interval (the default).
    #[default]
    Interval,
    /// Commit each advance synchronously: [`Acknowledger::ack`](crate::Acknowledger::ack)
    /// returns only after the advance it caused is committed.
    Sync,
    /// Never commit automatically; the application calls
    /// [`Acknowledger::commit`](crate::Acknowledger::commit).
    Manual,
}

/// How a group spreads partitions over its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AssignmentStrategy {
    /// Incremental cooperative rebalancing: a rebalance revokes only partitions that move.
    #[default]
    CooperativeSticky,
    /// Eager rebalancing (range, round-robin): every rebalance revokes every partition.
    Eager,
}

/// Which consumer group protocol the members speak.
///
/// ```
/// use sluicegate::{ConsumerOptions, GroupProtocol, RemoteAssignor};
///
/// let options = ConsumerOptions::new("127.0.0.1:9092", "billing", ["orders"])
///     .group_protocol(GroupProtocol::Consumer)
///     .remote_assignor(RemoteAssignor::Uniform);
/// assert!(options.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GroupProtocol {
    /// The original protocol (`group.protocol=classic`): the members agree on an assignment
    /// through a leader, with the client's session timeout, heartbeat interval and
    /// [`AssignmentStrategy`].
    #[default]
    Classic,
    /// The consumer group protocol of KIP-848 (`group.protocol=consumer`, Apache Kafka 4.0 and
    /// later): the broker assigns partitions and sets the session timeout and heartbeat
    /// interval itself (`group.consumer.*` broker settings), so setting
    /// [`session_timeout`](ConsumerOptions::session_timeout),
    /// [`heartbeat_interval`](ConsumerOptions::heartbeat_interval) or
    /// [`assignment_strategy`](ConsumerOptions::assignment_strategy) fails validation.
    /// Rebalances are always incremental.
    Consumer,
}

/// The broker-side assignor of [`GroupProtocol::Consumer`] (`group.remote.assignor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteAssignor {
    /// Spreads partitions evenly and keeps them where they are when it can.
    Uniform,
    /// Co-partitions topics: partition N of every topic goes to the same member.
    Range,
}

/// Callbacks run when partitions are assigned to or revoked from a group member.
///
/// They run on the member's poll thread, so they must return quickly and must not block.
pub trait PartitionLifecycle: Send + Sync + 'static {
    /// Partitions were assigned; their streams are about to be handed out.
    fn on_assign(&self, _partitions: &[TopicPartition]) {}
    /// Partitions were revoked; their in-flight records were drained and committed.
    fn on_revoke(&self, _partitions: &[TopicPartition]) {}
}

/// A bad option: names the option and says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid option `{key}`: {problem}")]
#[non_exhaustive]
pub struct OptionsError {
    /// The option's name, as written in the builder method (or `librdkafka.<property>`).
    pub key: String,
    /// What is wrong with its value.
    pub problem: String,
}

impl OptionsError {
    pub(crate) fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// librdkafka properties the engine sets itself; passing them through would break its promises.
const MANAGED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("group.id", "group_id"),
    ("enable.auto.commit", "commit_strategy"),
    ("enable.auto.offset.store", "commit_strategy"),
    ("auto.offset.reset", "start_position"),
    ("partition.assignment.strategy", "assignment_strategy"),
    ("enable.partition.eof", "(nothing: the engine needs it off)"),
    ("statistics.interval.ms", "statistics_interval"),
    ("group.protocol", "group_protocol"),
    ("group.remote.assignor", "remote_assignor"),
    ("group.instance.id", "group_instance_id"),
];

/// librdkafka properties that only the classic group protocol reads; under
/// [`GroupProtocol::Consumer`] the broker decides them.
const CLASSIC_ONLY_PROPERTIES: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "group.protocol.type",
];

/// What [`ConsumerOptions::group_instance_id`] may contain besides Kafka's id characters.
const INSTANCE_ID_PLACEHOLDERS: &[&str] = &["{member}", "{stage}"];

/// Options of a [`ConsumerEngine`](crate::ConsumerEngine).
///
/// ```
/// use std::time::Duration;
/// use sluicegate::{CommitStrategy, ConsumerOptions, StartPosition};
///
/// let options = ConsumerOptions::new("127.0.0.1:9092", "billing", ["orders"])
///     .start_position(StartPosition::Earliest)
///     .commit_strategy(CommitStrategy::Interval)
///     .commit_interval(Duration::from_secs(1))
///     .partition_buffer(500);
/// assert!(options.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct ConsumerOptions {
    pub(crate) bootstrap_servers: String,
    pub(crate) group_id: String,
    pub(crate) topics: Vec<String>,
    pub(crate) start_position: StartPosition,
    /// Start positions of single topics, overriding `start_position`.
    pub(crate) topic_start_positions: BTreeMap<String, StartPosition>,
    pub(crate) members: usize,
    pub(crate) session_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) max_poll_interval: Duration,
    pub(crate) commit_strategy: CommitStrategy,
    pub(crate) commit_interval: Duration,
    pub(crate) partition_buffer: usize,
    pub(crate) prefetch_bytes: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) statistics_interval: Duration,
    pub(crate) assignment_strategy: AssignmentStrategy,
    pub(crate) group_protocol: GroupProtocol,
    pub(crate) remote_assignor: Option<RemoteAssignor>,
    pub(crate) group_instance_id: Option<String>,
    /// The retry stage this engine reads, for `{stage}` in the instance id (0 for an engine
    /// of its own; a retry task sets it per stage).
    pub(crate) stage: usize,
    pub(crate) stall_timeout: Duration,
    /// Classic-protocol settings the application set itself (their option names), refused
    /// under the consumer protocol.
    pub(crate) classic_settings: BTreeSet<&'static str>,
    pub(crate) librdkafka: BTreeMap<String, String>,
    pub(crate) lifecycle: Option<Arc<dyn PartitionLifecycle>>,
}

impl fmt::Debug for ConsumerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pass-through properties may hold credentials: print their keys only.
        f.debug_struct("ConsumerOptions")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("start_position", &self.start_position)
            .field("topic_start_positions", &self.topic_start_positions)
            .field("members", &self.members)
            .field("session_timeout", &self.session_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("max_poll_interval", &self.max_poll_interval)
            .field("commit_strategy", &self.commit_strategy)
            .field("commit_interval", &self.commit_interval)
            .field("partition_buffer", &self.partition_buffer)
            .field("prefetch_bytes", &self.prefetch_bytes)
            .field("drain_timeout", &self.drain_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("statistics_interval", &self.statistics_interval)
            .field("assignment_strategy", &self.assignment_strategy)
            .field("group_protocol", &self.group_protocol)
            .field("remote_assignor", &self.remote_assignor)
            .field("group_instance_id", &self.group_instance_id)
            .field("stall_timeout", &self.stall_timeout)
            .field(
                "librdkafka_keys",
                &self.librdkafka.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ConsumerOptions {
    /// The group heartbeat interval unless [`heartbeat_interval`](Self::heartbeat_interval)
    /// says otherwise: librdkafka's 3 s.
    pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

    /// How long a partition may have records to process and make no progress before it is
    /// reported stalled, unless [`stall_timeout`](Self::stall_timeout) says otherwise: 5 min.
    pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);

    /// Options for one consumer group reading `topics` from the brokers in
    /// `bootstrap_servers` (comma separated `host:port`), with every other setting at its
    /// default.
    ///
    /// A topic starting with `^` is a pattern (a regular expression): the group reads every
    /// topic it matches, those created later included, picked up within the metadata
    /// refresh (10 s with a pattern unless the librdkafka property
    /// `topic.metadata.refresh.interval.ms` says otherwise; under the consumer protocol the
    /// brokers match it). A pattern may match no topic yet; a name must exist at start.
    ///
    /// ```
    /// use sluicegate::ConsumerOptions;
    ///
    /// let options = ConsumerOptions::new("127.0.0.1:9092", "audit", ["^orders-.*", "refunds"]);
    /// assert!(options.validate().is_ok());
    /// let bad = ConsumerOptions::new("127.0.0.1:9092", "audit", ["^orders-("]);
    /// assert!(bad.validate().unwrap_err().to_string().contains("`^orders-(` is not a valid topic pattern"));
    /// ```
    pub fn new<I, S>(
        bootstrap_servers: impl Into<String>,
        group_id: impl Into<String>,
        topics: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: group_id.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            start_position: StartPosition::default(),
            topic_start_positions: BTreeMap::new(),
            members: 1,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Self::DEFAULT_HEARTBEAT_INTERVAL,
            max_poll_interval: Duration::from_secs(300),
            commit_strategy: CommitStrategy::default(),
            commit_interval: Duration::from_secs(5),
            partition_buffer: 1_000,
            prefetch_bytes: 1024 * 1024,
            drain_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            statistics_interval: Duration::from_secs(5),
            assignment_strategy: AssignmentStrategy::default(),
            group_protocol: GroupProtocol::default(),
            remote_assignor: None,
            group_instance_id: None,
            stage: 0,
            stall_timeout: Self::DEFAULT_STALL_TIMEOUT,
            classic_settings: BTreeSet::new(),
            librdkafka: BTreeMap::new(),
            lifecycle: None,
        }
    }

    /// Start position for partitions the group has never committed (default earliest).
    pub fn start_position(mut self, position: StartPosition) -> Self {
        self.start_position = position;
        self
    }

    /// Start position for the partitions of `topic` the group has never committed, instead
    /// of [`start_position`](Self::start_position)'s. `topic` is a name or, starting with
    /// `^`, a pattern: the position of a topic's name wins over a pattern's.
    pub fn topic_start_position(
        mut self,
        topic: impl Into<String>,
        position: StartPosition,
    ) -> Self {
        self.topic_start_positions.insert(topic.into(), position);
        self
    }

    /// Where the group starts the partitions of `topic` it never committed: the position
    /// set for its name, else for the first pattern (in sorted order) matching it, else the
    /// engine's.
    pub(crate) fn start_position_of(&self, topic: &str) -> StartPosition {
        if let Some(position) = self.topic_start_positions.get(topic) {
            return *position;
        }
        self.topic_start_positions
            .iter()
            .find(|(key, _)| is_pattern(key) && topic_matches(key, topic))
            .map_or(self.start_position, |(_, position)| *position)
    }

    /// Whether some partitions need placing by the engine: an exact start position, or a
    /// topic whose position differs from what `auto.offset.reset` does for the rest.
    pub(crate) fn places_new_partitions(&self) -> bool {
        self.start_position.is_exact()
            || self
                .topic_start_positions
                .values()
                .any(|position| *position != self.start_position)
    }

    /// Number of group members this engine runs in this process, each with its own client
    /// and poll thread (default 1).
    pub fn members(mut self, members: usize) -> Self {
        self.members = members;
        self
    }

    /// Group session timeout (default 45 s). Classic protocol only: under
    /// [`GroupProtocol::Consumer`] the broker's `group.consumer.session.timeout.ms` applies.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self.classic_settings.insert("session_timeout");
        self
    }

    /// Group heartbeat interval; must be below the session timeout (default 3 s). Classic
    /// protocol only, like [`session_timeout`](Self::session_timeout).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.classic_settings.insert("heartbeat_interval");
        self
    }

    /// Longest time a member may go without polling before it leaves the group; at least the
    /// session timeout (default 300 s). Some brokers wait this long for a join.
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }

    /// When acknowledged offsets are committed (default [`CommitStrategy::Interval`]).
    pub fn commit_strategy(mut self, strategy: CommitStrategy) -> Self {
        self.commit_strategy = strategy;
        self
    }

    /// Period of interval commits (default 5 s).
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// The demand window: records a partition may have buffered or in flight (delivered and
    /// not yet acknowledged) before the engine stops taking its records from librdkafka
    /// (default 1,000).
    pub fn partition_buffer(mut self, records: usize) -> Self {
        self.partition_buffer = records;
        self
    }

    /// Bytes librdkafka may prefetch for each assigned partition ahead of the demand
    /// (default 1 MiB).
    pub fn prefetch_bytes(mut self, bytes: usize) -> Self {
        self.prefetch_bytes = bytes;
        self
    }

    /// How long a revoke or shutdown waits for in-flight records to be acknowledged before it
    /// commits what is committable and lets the partition go (default 30 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long start-up retries an unreachable broker before failing (default 30 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often librdkafka reports statistics, which feed the lag and buffered-records
    /// metrics and [`ConsumerEngine::is_ready`](crate::ConsumerEngine::is_ready) (default
    /// 5 s; zero turns them off, and readiness then means holding an assignment).
    pub fn statistics_interval(mut self, interval: Duration) -> Self {
        self.statistics_interval = interval;
        self
    }

    /// Partition assignment strategy (default cooperative-sticky). Classic protocol only:
    /// under [`GroupProtocol::Consumer`] the broker assigns (see
    /// [`remote_assignor`](Self::remote_assignor)).
    pub fn assignment_strategy(mut self, strategy: AssignmentStrategy) -> Self {
        self.assignment_strategy = strategy;
        self.classic_settings.insert("assignment_strategy");
        self
    }

    /// The group protocol (default [`GroupProtocol::Classic`]).
    pub fn group_protocol(mut self, protocol: GroupProtocol) -> Self {
        self.group_protocol = protocol;
        self
    }

    /// The broker-side assignor under [`GroupProtocol::Consumer`] (default: the broker's
    /// choice, `group.consumer.assignors`); refused under the classic protocol.
    pub fn remote_assignor(mut self, assignor: RemoteAssignor) -> Self {
        self.remote_assignor = Some(assignor);
        self
    }

    /// Static membership (KIP-345): each member joins with a fixed id, so a member that
    /// restarts within the session timeout gets its partitions back without a rebalance of
    /// the others. A static member does not leave the group when it shuts down: its
    /// partitions wait for it until the session timeout ends.
    ///
    /// The id may hold `{member}`, the index of the member in this engine (from 0), which it
    /// must when [`members`](Self::members) is above 1, since ids are unique in a group; and
    /// `{stage}`, the retry stage the engine reads (0 outside a
    /// [`RetryTask`](crate::retry::RetryTask)). Without placeholders, an id is at most 249
    /// characters of `a-z A-Z 0-9 . _ -`. Give each process its own id (a host name,
    /// a pod name): two live members with one id fence each other off.
    ///
    /// ```
    /// use sluicegate::ConsumerOptions;
    ///
    /// let options = ConsumerOptions::new("127.0.0.1:9092", "billing", ["orders"])
    ///     .members(2)
    ///     .group_instance_id("billing-host-7-{member}");
    /// assert!(options.validate().is_ok());
    /// ```
    pub fn group_instance_id(mut self, id: impl Into<String>) -> Self {
        self.group_instance_id = Some(id.into());
        self
    }

    /// How long a partition may have work (records unacknowledged, buffered, or not yet
    /// fetched below the end offset) without any record delivered or acknowledged before it
    /// is reported stalled: a warning in the log, the `sluice_partition_stalled` gauge at 1,
    /// and [`Readiness`](crate::Readiness) not ready until it moves again (default 5 min;
    /// zero turns the watch off). It is checked on each round of librdkafka statistics, so
    /// it needs [`statistics_interval`](Self::statistics_interval) above zero.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// The instance id of member `index`, placeholders filled in.
    pub(crate) fn instance_id_of(&self, index: usize) -> Option<String> {
        self.group_instance_id.as_ref().map(|template| {
            template
                .replace("{member}", &index.to_string())
                .replace("{stage}", &self.stage.to_string())
        })
    }

    /// Passes a librdkafka property through unchanged (security settings, tuning). Properties
    /// the engine manages itself are refused by [`validate`](Self::validate).
    pub fn librdkafka(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.librdkafka.insert(key.into(), value.into());
        self
    }

    /// Callbacks on assignment and revocation.
    pub fn lifecycle(mut self, lifecycle: impl PartitionLifecycle) -> Self {
        self.lifecycle = Some(Arc::new(lifecycle));
        self
    }

    /// Checks every option without connecting; the first bad one is returned.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(OptionsError::new(
                "bootstrap_servers",
                "must name at least one host:port",
            ));
        }
        for server in self.bootstrap_servers.split(',') {
            let server = server.trim();
            let port = server.rsplit_once(':').map(|(_, port)| port);
            if !matches!(port.map(str::parse::<u16>), Some(Ok(_))) {
                return Err(OptionsError::new(
                    "bootstrap_servers",
                    format!("`{server}` is not host:port"),
                ));
            }
        }
        if self.group_id.trim().is_empty() {
            return Err(OptionsError::new("group_id", "must not be empty"));
        }
        if self.topics.is_empty() {
            return Err(OptionsError::new("topics", "must name at least one topic"));
        }
        for topic in &self.topics {
            validate_topic(topic)?;
        }
        let positions = std::iter::once(("start_position".to_owned(), self.start_position)).chain(
            self.topic_start_positions
                .iter()
                .map(|(topic, position)| (format!("topic_start_position.{topic}"), *position)),
        );
        for (key, position) in positions {
            if matches!(position, StartPosition::Timestamp(at) | StartPosition::Offset(at) if at < 0)
            {
                return Err(OptionsError::new(key, "must not be negative"));
            }
        }
        for key in self.topic_start_positions.keys() {
            let setting = format!("topic_start_position.{key}");
            if is_pattern(key) {
                compile_pattern(key).map_err(|problem| {
                    OptionsError::new(&setting, format!("not a valid topic pattern: {problem}"))
                })?;
            } else if !self.topics.iter().any(|read| topic_matches(read, key)) {
                return Err(OptionsError::new(
                    setting,
                    "not a topic the engine reads (nor matched by one of its patterns)",
                ));
            }
        }
        if self.members == 0 || self.members > 256 {
            return Err(OptionsError::new("members", "must be between 1 and 256"));
        }
        let ms = |d: Duration| d.as_millis();
        self.validate_group_protocol()?;
        self.validate_instance_id()?;
        if !(1_000..=3_600_000).contains(&ms(self.session_timeout)) {
            return Err(OptionsError::new(
                "session_timeout",
                "must be between 1 s and 1 h",
            ));
        }
        if ms(self.heartbeat_interval) == 0 || self.heartbeat_interval >= self.session_timeout {
            return Err(OptionsError::new(
                "heartbeat_interval",
                "must be above zero and below session_timeout",
            ));
        }
        let classic = self.group_protocol == GroupProtocol::Classic;
        if (classic && self.max_poll_interval < self.session_timeout)
            || ms(self.max_poll_interval) < 1_000
            || ms(self.max_poll_interval) > 86_400_000
        {
            return Err(OptionsError::new(
                "max_poll_interval",
                if classic {
                    "must be at least session_timeout and at most 24 h"
                } else {
                    "must be between 1 s and 24 h"
                },
            ));
        }
        if ms(self.commit_interval) == 0 {
            return Err(OptionsError::new("commit_interval", "must be above zero"));
        }
        if self.partition_buffer == 0 || self.partition_buffer > 1_000_000 {
            return Err(OptionsError::new(
                "partition_buffer",
                "must be between 1 and 1,000,000 records",
            ));
        }
        if self.prefetch_bytes < 1024 || self.prefetch_bytes > 1 << 31 {
            return Err(OptionsError::new(
                "prefetch_bytes",
                "must be between 1 KiB and 2 GiB",
            ));
        }
        if ms(self.connect_timeout) == 0 {
            return Err(OptionsError::new("connect_timeout", "must be above zero"));
        }
        for (key, value) in &self.librdkafka {
            if key.trim().is_empty() {
                return Err(OptionsError::new(
                    "librdkafka",
                    "property names must not be empty",
                ));
            }
            if let Some((_, option)) = MANAGED_PROPERTIES
                .iter()
                .find(|(managed, _)| managed == key)
            {
                return Err(OptionsError::new(
                    format!("librdkafka.{key}"),
                    format!("is managed by the engine; set `{option}` instead"),
                ));
            }
            if value.is_empty() {
                return Err(OptionsError::new(
                    format!("librdkafka.{key}"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

impl ConsumerOptions {
    /// Settings that only one group protocol reads are refused under the other.
    fn validate_group_protocol(&self) -> Result<(), OptionsError> {
        match self.group_protocol {
            GroupProtocol::Classic => {
                if self.remote_assignor.is_some() {
                    return Err(OptionsError::new(
                        "remote_assignor",
                        "applies to group_protocol consumer only; the classic protocol uses assignment_strategy",
                    ));
                }
            }
            GroupProtocol::Consumer => {
                // The session timeout first: a heartbeat interval may have been derived from it.
                let classic_only = [
                    "session_timeout",
                    "heartbeat_interval",
                    "assignment_strategy",
                ];
                if let Some(key) = classic_only
                    .into_iter()
                    .find(|key| self.classic_settings.contains(key))
                {
                    return Err(OptionsError::new(
                        key,
                        "does not apply to group_protocol consumer: the broker decides it (group.consumer.* broker settings)",
                    ));
                }
                if let Some(key) = self
                    .librdkafka
                    .keys()
                    .find(|key| CLASSIC_ONLY_PROPERTIES.contains(&key.as_str()))
                {
                    return Err(OptionsError::new(
                        format!("librdkafka.{key}"),
                        "does not apply to group_protocol consumer: the broker decides it (group.consumer.* broker settings)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// A static member's id: Kafka's id characters around known placeholders, and one id per
    /// member.
    fn validate_instance_id(&self) -> Result<(), OptionsError> {
        let Some(template) = &self.group_instance_id else {
            return Ok(());
        };
        let filled = INSTANCE_ID_PLACEHOLDERS
            .iter()
            .fold(template.clone(), |id, placeholder| {
                id.replace(placeholder, "0")
            });
        let valid_chars = filled
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if filled.is_empty() || filled.len() > 249 || !valid_chars {
            return Err(OptionsError::new(
                "group_instance_id",
                format!(
                    "`{template}` is not a valid id: 1-249 characters of a-z A-Z 0-9 . _ -, with `{{member}}` and `{{stage}}` as the only placeholders"
                ),
            ));
        }
        if self.members > 1 && !template.contains("{member}") {
            return Err(OptionsError::new(
                "group_instance_id",
                format!(
                    "with {} members each needs its own id: put `{{member}}` in it",
                    self.members
                ),
            ));
        }
        Ok(())
    }
}

/// Kafka's topic name rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
/// Whether `topic` is a pattern (a regular expression starting with `^`, as librdkafka reads
/// subscriptions) rather than a name.
pub(crate) fn is_pattern(topic: &str) -> bool {
    topic.starts_with('^')
}

/// The pattern `pattern` compiled, or why it is not one.
pub(crate) fn compile_pattern(pattern: &str) -> Result<regex_automata::meta::Regex, String> {
    regex_automata::meta::Regex::new(pattern).map_err(|error| error.to_string())
}

/// Whether `topic` (a name) is matched by `pattern` (a name or a pattern).
pub(crate) fn topic_matches(pattern: &str, topic: &str) -> bool {
    if is_pattern(pattern) {
        compile_pattern(pattern).is_ok_and(|regex| regex.is_match(topic))
    } else {
        pattern == topic
    }
}

/// A topic name or, starting with `^`, a pattern: checked.
fn validate_topic(topic: &str) -> Result<(), OptionsError> {
    if !is_pattern(topic) {
        return validate_topic_name(topic);
    }
    compile_pattern(topic).map(|_| ()).map_err(|problem| {
        OptionsError::new(
            "topics",
            format!("`{topic}` is not a valid topic pattern: {problem}"),
        )
    })
}

fn validate_topic_name(topic: &str) -> Result<(), OptionsError> {
    let valid_chars = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if topic.is_empty() || topic.len() > 249 || !valid_chars || topic == "." || topic == ".." {
        return Err(OptionsError::new(
            "topics",
            format!("`{topic}` is not a valid topic name (1-249 characters of a-z A-Z 0-9 . _ -)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ConsumerOptions {
        ConsumerOptions::new("127.0.0.1:9092", "group", ["topic"])
    }

    fn key_of(options: ConsumerOptions) -> String {
        options
            .validate()
            .expect_err("options should be refused")
            .key
    }

    #[test]
    fn defaults_are_valid() {
        valid().validate().unwrap();
    }

    #[test]
    fn each_bad_option_is_named() {
        assert_eq!(
            key_of(ConsumerOptions::new("", "g", ["t"])),
            "bootstrap_servers"
        );
        assert_eq!(
            key_of(ConsumerOptions::new("nohost", "g", ["t"])),
            "bootstrap_servers"
        );
        assert_eq!(key_of(ConsumerOptions::new("h:1", " ", ["t"])), "group_id");
        assert_eq!(
            key_of(ConsumerOptions::new("h:1", "g", Vec::<String>::new())),
            "topics"
        );
        assert_eq!(
            key_of(ConsumerOptions::new("h:1", "g", ["bad topic"])),
            "topics"
        );
        assert_eq!(key_of(valid().members(0)), "members");
        assert_eq!(
            key_of(valid().session_timeout(Duration::from_millis(10))),
            "session_timeout"
        );
        assert_eq!(
            key_of(valid().heartbeat_interval(Duration::from_secs(60))),
            "heartbeat_interval"
        );
        assert_eq!(
            key_of(valid().max_poll_interval(Duration::from_secs(1))),
            "max_poll_interval"
        );
        assert_eq!(
            key_of(valid().commit_interval(Duration::ZERO)),
            "commit_interval"
        );
        assert_eq!(key_of(valid().partition_buffer(0)), "partition_buffer");
        assert_eq!(key_of(valid().prefetch_bytes(10)), "prefetch_bytes");
        assert_eq!(
            key_of(valid().connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            key_of(valid().librdkafka("enable.auto.commit", "true")),
            "librdkafka.enable.auto.commit"
        );
        assert_eq!(
            key_of(valid().librdkafka("security.protocol", "")),
            "librdkafka.security.protocol"
        );
    }

    #[test]
    fn settings_of_the_other_group_protocol_are_named() {
        let consumer = || valid().group_protocol(GroupProtocol::Consumer);
        consumer().validate().unwrap();
        consumer()
            .remote_assignor(RemoteAssignor::Range)
            .max_poll_interval(Duration::from_secs(2))
            .validate()
            .unwrap();
        assert_eq!(
            key_of(consumer().session_timeout(Duration::from_secs(10))),
            "session_timeout"
        );
        assert_eq!(
            key_of(consumer().heartbeat_interval(Duration::from_secs(1))),
            "heartbeat_interval"
        );
        assert_eq!(
            key_of(consumer().assignment_strategy(AssignmentStrategy::Eager)),
            "assignment_strategy"
        );
        assert_eq!(
            key_of(consumer().librdkafka("session.timeout.ms", "10000")),
            "librdkafka.session.timeout.ms"
        );
        assert_eq!(
            key_of(valid().remote_assignor(RemoteAssignor::Uniform)),
            "remote_assignor"
        );
        assert_eq!(
            key_of(valid().librdkafka("group.protocol", "consumer")),
            "librdkafka.group.protocol"
        );
        // The classic protocol takes its own settings as before.
        valid()
            .session_timeout(Duration::from_secs(10))
            .assignment_strategy(AssignmentStrategy::Eager)
            .validate()
            .unwrap();
    }

    #[test]
    fn instance_ids_are_checked_and_filled_in_per_member() {
        let options = valid()
            .members(3)
            .group_instance_id("host-a.{stage}-{member}");
        options.validate().unwrap();
        assert_eq!(options.instance_id_of(2).as_deref(), Some("host-a.0-2"));
        assert_eq!(valid().instance_id_of(0), None);
        assert_eq!(
            key_of(valid().members(2).group_instance_id("host-a")),
            "group_instance_id"
        );
        assert_eq!(
            key_of(valid().group_instance_id("host {member}")),
            "group_instance_id"
        );
        assert_eq!(
            key_of(valid().group_instance_id("{hostname}")),
            "group_instance_id"
        );
        assert_eq!(key_of(valid().group_instance_id("")), "group_instance_id");
        assert_eq!(
            key_of(valid().librdkafka("group.instance.id", "x")),
            "librdkafka.group.instance.id"
        );
    }

    #[test]
    fn debug_output_hides_pass_through_values() {
        let options = valid().librdkafka("sasl.password", "hunter2");
        let printed = format!("{options:?}");
        assert!(printed.contains("sasl.password"));
        assert!(!printed.contains("hunter2"));
    }
}
