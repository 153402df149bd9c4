//! An in-process Kafka broker: librdkafka's mock cluster.
//!
//! [`EmbeddedBroker`] starts librdkafka's built-in mock cluster inside the current process. It
//! speaks enough of the Kafka protocol for producers, consumers, consumer groups and offset
//! commits, needs nothing installed, and can inject faults: brokers going down and up
//! ([`EmbeddedBroker::broker_down`], [`EmbeddedBroker::broker_up`]), errors returned for a given
//! request type ([`EmbeddedBroker::push_request_errors`]) and round-trip delays
//! ([`EmbeddedBroker::set_round_trip_time`]). It backs the integration tests, `sluice demo` and
//! `sluice dev-broker`.
//!
//! Things to know about the mock cluster:
//!
//! - It keeps at most 5 MiB and 100,000 record batches per partition and **silently drops the
//!   oldest batches** beyond that, so a consumer that starts late may find its committed offset
//!   gone. Keep test and demo volumes below that, or consume while producing.
//! - It has no CreateTopics API (nor DeleteTopics or DescribeGroups): an admin client's
//!   `create_topics` fails. Create topics with [`EmbeddedBroker::create_topic`]. Like Kafka's
//!   default, it also auto-creates a topic (4 partitions) when a client asks for its metadata.
//! - Its brokers listen on TCP ports of 127.0.0.1, so other processes can reach it at
//!   [`EmbeddedBroker::bootstrap_servers`] for as long as the [`EmbeddedBroker`] lives.
//! - Broker ids are `1..=n` for a cluster of `n` brokers; [`EmbeddedBroker::ALL_BROKERS`]
//!   (`-1`) addresses all of them at once.
//! - The consumer group initial rebalance delay, 3 s by default, is set to 0 by
//!   [`EmbeddedBroker::start`], so a group's first member is assigned its partitions at once.
//!
//! ```no_run
//! use sluicegate::embedded::EmbeddedBroker;
//!
//! # fn main() -> Result<(), sluicegate::embedded::EmbeddedBrokerError> {
//! let broker = EmbeddedBroker::start(1)?;
//! broker.create_topic("orders", 4)?;
//! println!("bootstrap.servers={}", broker.bootstrap_servers());
//! # Ok(())
//! # }
//! ```

// The mock cluster's handle is private in rdkafka's own `MockCluster`, and we need calls it does
// not wrap, so this module owns the handle and makes the (few) FFI calls itself.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::c_int;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka_sys as rdsys;

use crate::client_error::ClientError;

/// Why an [`EmbeddedBroker`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedBrokerError {
    /// The librdkafka client that hosts the mock cluster could not be created.
    #[error("embedded broker: could not create the librdkafka client that hosts it")]
    Client(#[source] ClientError),
    /// The requested number of brokers is not at least 1.
    #[error("embedded broker: the number of brokers must be at least 1, got {brokers}")]
    InvalidBrokerCount {
        /// The number of brokers asked for.
        brokers: i32,
    },
    /// librdkafka could not start the mock cluster (for example, no free TCP port).
    #[error("embedded broker: librdkafka could not start a mock cluster of {brokers} broker(s)")]
    Start {
        /// The number of brokers asked for.
        brokers: i32,
    },
    /// The topic name cannot be passed to librdkafka (it contains a NUL byte).
    #[error("embedded broker: invalid topic name {topic:?}: it contains a NUL byte")]
    InvalidTopicName {
        /// The topic name given.
        topic: String,
    },
    /// The host name cannot be passed to librdkafka (it contains a NUL byte).
    #[error("embedded broker: invalid host name {host:?}: it contains a NUL byte")]
    InvalidHost {
        /// The host name given.
        host: String,
    },
    /// The topic could not be created (for example, it already exists).
    #[error("embedded broker: could not create topic {topic:?} with {partitions} partition(s)")]
    CreateTopic {
        /// The topic name given.
        topic: String,
        /// The number of partitions asked for.
        partitions: i32,
        /// librdkafka's error, e.g. code `TopicAlreadyExists`.
        source: ClientError,
    },
    /// An operation on one broker (or on all, id `-1`) failed, for example because no broker
    /// has that id.
    #[error("embedded broker: could not {operation} broker id {broker_id}")]
    Broker {
        /// The broker id given (`-1` for all brokers).
        broker_id: i32,
        /// What was attempted, e.g. "take down".
        operation: &'static str,
        /// librdkafka's error, e.g. code `BrokerNotAvailable` for an unknown id.
        source: ClientError,
    },
}

/// An in-process Kafka cluster (librdkafka's mock cluster), stopped when dropped.
///
/// See the [module documentation](self) for what the mock cluster keeps and what it lacks.
pub struct EmbeddedBroker {
    /// The mock cluster, created by `rd_kafka_mock_cluster_new` on `client`; never null. Owned:
    /// destroyed in `Drop`, before `client`.
    cluster: *mut rdsys::rd_kafka_mock_cluster_t,
    /// The client whose handle hosts the cluster; it must outlive `cluster`.
    _client: BaseProducer,
    brokers: i32,
    bootstrap_servers: String,
}

// SAFETY: the mock cluster is built to be driven from any thread: it runs on its own thread, and
// every operation we call either sends an op to that thread's queue and waits for the reply
// (topic create, broker up/down, RTT), or takes the cluster's mutex (request error stacks, group
// rebalance delay). `bootstraps` is an immutable string written at creation. The hosting client
// (`BaseProducer`) is itself `Send + Sync`. Destruction happens once, in `Drop`, which has
// exclusive access.
unsafe impl Send for EmbeddedBroker {}
// SAFETY: see `Send` above; no operation needs `&mut self`.
unsafe impl Sync for EmbeddedBroker {}

impl EmbeddedBroker {
    /// Use as `broker_id` to address every broker of the cluster at once.
    pub const ALL_BROKERS: i32 = -1;

    /// Starts a mock cluster of `brokers` brokers (ids `1..=brokers`) listening on 127.0.0.1,
    /// with the consumer group initial rebalance delay set to 0.
    ///
    /// # Errors
    ///
    /// [`EmbeddedBrokerError::InvalidBrokerCount`] if `brokers < 1`,
    /// [`EmbeddedBrokerError::Client`] or [`EmbeddedBrokerError::Start`] if librdkafka fails.
    pub fn start(brokers: i32) -> Result<EmbeddedBroker, EmbeddedBrokerError> {
        if brokers < 1 {
            return Err(EmbeddedBrokerError::InvalidBrokerCount { brokers });
        }
        let client: BaseProducer = ClientConfig::new()
            .create()
            .map_err(|error| EmbeddedBrokerError::Client(error.into()))?;
        // SAFETY: `native_ptr` is a live `rd_kafka_t` owned by `client`, which we keep alive in
        // the returned struct for longer than the cluster (see `Drop`).
        let cluster =
            unsafe { rdsys::rd_kafka_mock_cluster_new(client.client().native_ptr(), brokers) };
        if cluster.is_null() {
            return Err(EmbeddedBrokerError::Start { brokers });
        }
        // SAFETY: `cluster` is non-null and was just created; the returned string is owned by
        // the cluster and valid until it is destroyed, and we copy it out at once.
        let bootstrap_servers =
            unsafe { CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(cluster)) }
                .to_string_lossy()
                .into_owned();
        // SAFETY: `cluster` is a live mock cluster; the call only sets a default under its lock.
        unsafe { rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0) };
        Ok(EmbeddedBroker {
            cluster,
            _client: client,
            brokers,
            bootstrap_servers,
        })
    }

    /// The `bootstrap.servers` value that reaches this cluster, e.g. `127.0.0.1:40313`.
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap_servers.clone()
    }

    /// The number of brokers; their ids are `1..=broker_count()`.
    pub fn broker_count(&self) -> i32 {
        self.brokers
    }

    /// Creates `topic` with `partitions` partitions and replication factor 1.
    ///
    /// # Errors
    ///
    /// [`EmbeddedBrokerError::InvalidTopicName`] if the name contains a NUL byte,
    /// [`EmbeddedBrokerError::CreateTopic`] if the cluster refuses (e.g. it already exists, or
    /// `partitions < 1`).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), EmbeddedBrokerError> {
        let name = CString::new(topic).map_err(|_| EmbeddedBrokerError::InvalidTopicName {
            topic: topic.to_owned(),
        })?;
        if partitions < 1 {
            return Err(EmbeddedBrokerError::CreateTopic {
                topic: topic.to_owned(),
                partitions,
                source: RDKafkaErrorCode::InvalidPartitions.into(),
            });
        }
        // SAFETY: `self.cluster` is live for `&self`; `name` is a valid C string that outlives
        // the call (librdkafka copies it).
        let err = unsafe {
            rdsys::rd_kafka_mock_topic_create(self.cluster, name.as_ptr(), partitions, 1)
        };
        check(err).map_err(|code| EmbeddedBrokerError::CreateTopic {
            topic: topic.to_owned(),
            partitions,
            source: code.into(),
        })
    }

    /// Makes broker `broker_id` advertise `host:port` in its metadata instead of the port it
    /// listens on, for a forwarder in front of it (librdkafka's mock brokers always listen on
    /// a free port of their own choosing). [`Self::bootstrap_servers`] keeps naming the ports
    /// the brokers listen on.
    ///
    /// # Errors
    ///
    /// [`EmbeddedBrokerError::Broker`] if no broker has that id, or
    /// [`EmbeddedBrokerError::InvalidHost`] if `host` contains a NUL byte.
    pub fn advertise(
        &self,
        broker_id: i32,
        host: &str,
        port: u16,
    ) -> Result<(), EmbeddedBrokerError> {
        if broker_id < 1 || broker_id > self.brokers {
            return Err(broker_error(
                broker_id,
                "advertise another address for",
                RDKafkaErrorCode::BrokerNotAvailable,
            ));
        }
        let host_name = CString::new(host).map_err(|_| EmbeddedBrokerError::InvalidHost {
            host: host.to_owned(),
        })?;
        // SAFETY: `self.cluster` is live for `&self`; `host_name` is a valid C string that
        // outlives the call (librdkafka copies it under the cluster lock).
        unsafe {
            rdsys::rd_kafka_mock_broker_set_host_port(
                self.cluster,
                broker_id,
                host_name.as_ptr(),
                c_int::from(port),
            )
        };
        Ok(())
    }

    /// Takes broker `broker_id` down ([`Self::ALL_BROKERS`] for all): closes its connections
    /// and refuses new ones, keeping its port. Partition leadership does not move.
    ///
    /// # Errors
    ///
    /// [`EmbeddedBrokerError::Broker`] if no broker has that id.
    pub fn broker_down(&self, broker_id: i32) -> Result<(), EmbeddedBrokerError> {
        // SAFETY: `self.cluster` is live for `&self`; the call sends an op to the cluster thread.
        let err = unsafe { rdsys::rd_kafka_mock_broker_set_down(self.cluster, broker_id) };
        check(err).map_err(|code| broker_error(broker_id, "take down", code))
    }

    /// Brings broker `broker_id` back up ([`Self::ALL_BROKERS`] for all) on the same port.
    ///
    /// # Errors
    ///
    /// [`EmbeddedBrokerError::Broker`] if no broker has that id.
    pub fn broker_up(&self, broker_id: i32) -> Result<(), EmbeddedBrokerError> {
        // SAFETY: `self.cluster` is live for `&self`; the call sends an op to the cluster thread.
        let err = unsafe { rdsys::rd_kafka_mock_broker_set_up(self.cluster, broker_id) };
        check(err).map_err(|code| broker_error(broker_id, "bring up", code))
    }

    /// Delays every response of broker `broker_id` ([`Self::ALL_BROKERS`] for all) by `rtt`
    /// (millisecond precision, saturating); `Duration::ZERO` removes the delay.
    ///
    /// # Errors
    ///
    /// [`EmbeddedBrokerError::Broker`] if no broker has that id.
    pub fn set_round_trip_time(
        &self,
        broker_id: i32,
        rtt: Duration,
    ) -> Result<(), EmbeddedBrokerError> {
        let rtt_ms = c_int::try_from(rtt.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: `self.cluster` is live for `&self`; the call sends an op to the cluster thread.
        let err = unsafe { rdsys::rd_kafka_mock_broker_set_rtt(self.cluster, broker_id, rtt_ms) };
        check(err).map_err(|code| broker_error(broker_id, "set the round-trip time of", code))
    }

    /// Makes the next `errors.len()` requests of type `api` (to any broker) fail, in order, with
    /// these errors ([`BrokerError::Disconnect`]: the broker closes the connection instead of
    /// answering).
    ///
    /// ```no_run
    /// use sluicegate::embedded::{ApiKey, BrokerError, EmbeddedBroker};
    ///
    /// # fn main() -> Result<(), sluicegate::embedded::EmbeddedBrokerError> {
    /// let broker = EmbeddedBroker::start(1)?;
    /// // The next two offset commits are refused, the third goes through.
    /// broker.push_request_errors(
    ///     ApiKey::OffsetCommit,
    ///     &[BrokerError::NotCoordinator, BrokerError::RequestTimedOut],
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn push_request_errors(&self, api: ApiKey, errors: &[BrokerError]) {
        let codes: Vec<RDKafkaRespErr> = errors.iter().map(|error| error.code()).collect();
        // SAFETY: `self.cluster` is live for `&self`; `codes` points to `codes.len()` valid
        // codes for the duration of the call (librdkafka copies them under the cluster lock).
        unsafe {
            rdsys::rd_kafka_mock_push_request_errors_array(
                self.cluster,
                api.key().into(),
                codes.len(),
                codes.as_ptr(),
            )
        }
    }

    /// Forgets the errors still queued by [`Self::push_request_errors`] for `api`.
    pub fn clear_request_errors(&self, api: ApiKey) {
        // SAFETY: `self.cluster` is live for `&self`; the call takes the cluster lock.
        unsafe { rdsys::rd_kafka_mock_clear_request_errors(self.cluster, api.key().into()) }
    }
}

/// A request type of the Kafka protocol, for [`EmbeddedBroker::push_request_errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiKey {
    /// Produce.
    Produce,
    /// Fetch.
    Fetch,
    /// ListOffsets.
    ListOffsets,
    /// Metadata.
    Metadata,
    /// OffsetCommit.
    OffsetCommit,
    /// OffsetFetch.
    OffsetFetch,
    /// FindCoordinator.
    FindCoordinator,
    /// JoinGroup.
    JoinGroup,
    /// Heartbeat.
    Heartbeat,
    /// LeaveGroup.
    LeaveGroup,
    /// SyncGroup.
    SyncGroup,
}

impl ApiKey {
    fn key(self) -> RDKafkaApiKey {
        match self {
            ApiKey::Produce => RDKafkaApiKey::Produce,
            ApiKey::Fetch => RDKafkaApiKey::Fetch,
            ApiKey::ListOffsets => RDKafkaApiKey::ListOffsets,
            ApiKey::Metadata => RDKafkaApiKey::Metadata,
            ApiKey::OffsetCommit => RDKafkaApiKey::OffsetCommit,
            ApiKey::OffsetFetch => RDKafkaApiKey::OffsetFetch,
            ApiKey::FindCoordinator => RDKafkaApiKey::FindCoordinator,
            ApiKey::JoinGroup => RDKafkaApiKey::JoinGroup,
            ApiKey::Heartbeat => RDKafkaApiKey::Heartbeat,
            ApiKey::LeaveGroup => RDKafkaApiKey::LeaveGroup,
            ApiKey::SyncGroup => RDKafkaApiKey::SyncGroup,
        }
    }
}

/// How the mock cluster answers a request instead of serving it, for
/// [`EmbeddedBroker::push_request_errors`]: a Kafka error code, or a dropped connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker closes the connection instead of answering.
    Disconnect,
    /// `REQUEST_TIMED_OUT`.
    RequestTimedOut,
    /// `NOT_LEADER_OR_FOLLOWER` (formerly `NOT_LEADER_FOR_PARTITION`).
    NotLeaderForPartition,
    /// `NOT_ENOUGH_REPLICAS`.
    NotEnoughReplicas,
    /// `INVALID_RECORD`: the broker refuses the record for good.
    InvalidRecord,
    /// `NOT_COORDINATOR`.
    NotCoordinator,
    /// `COORDINATOR_NOT_AVAILABLE`.
    CoordinatorNotAvailable,
    /// `COORDINATOR_LOAD_IN_PROGRESS`.
    CoordinatorLoadInProgress,
    /// `REBALANCE_IN_PROGRESS`.
    RebalanceInProgress,
}

impl BrokerError {
    fn code(self) -> RDKafkaRespErr {
        use RDKafkaRespErr::*;
        match self {
            BrokerError::Disconnect => RD_KAFKA_RESP_ERR__TRANSPORT,
            BrokerError::RequestTimedOut => RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            BrokerError::NotLeaderForPartition => RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            BrokerError::NotEnoughReplicas => RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            BrokerError::InvalidRecord => RD_KAFKA_RESP_ERR_INVALID_RECORD,
            BrokerError::NotCoordinator => RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            BrokerError::CoordinatorNotAvailable => RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            BrokerError::CoordinatorLoadInProgress => {
                RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS
            }
            BrokerError::RebalanceInProgress => RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        }
    }
}

impl fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("brokers", &self.brokers)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // SAFETY: `self.cluster` was created by `rd_kafka_mock_cluster_new`, is destroyed only
        // here, and its hosting client (`self._client`) is dropped after this body returns.
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.cluster) }
    }
}

/// Maps librdkafka's response code to `Ok` or the error code.
fn check(err: RDKafkaRespErr) -> Result<(), RDKafkaErrorCode> {
    if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(RDKafkaErrorCode::from(err))
    }
}

fn broker_error(
    broker_id: i32,
    operation: &'static str,
    code: RDKafkaErrorCode,
) -> EmbeddedBrokerError {
    EmbeddedBrokerError::Broker {
        broker_id,
        operation,
        source: code.into(),
    }
}
