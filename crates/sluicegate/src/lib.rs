//! Sluicegate: Kafka processing with backpressure.
//!
//! Sluicegate fetches records only as fast as the application processes them, processes every
//! record at least once, and commits an offset only when it and every lower delivered offset
//! of its partition were acknowledged.
//!
//! The [`ConsumerEngine`] runs one or more members of a consumer group and hands the
//! application one [`PartitionStream`] per assigned partition, with an [`Acknowledger`] to
//! finish records. A [`pipeline`] runs handlers over engines the Broadway way: processors
//! with an ordering mode, batchers and a failure handler. The [`producer`] module is the
//! buffered producer, with backpressure when its buffer is full. A [`retry`] task runs a
//! pipeline as stages over delayed retry topics and a dead-letter topic. A [`codec`] decodes
//! records into typed values before a handler runs and encodes values to produce.
//! [`OffsetTracker`] is
//! the pure logic behind commits. A [`reader::TopicReader`] reads a topic as it is (from an
//! offset, a time, N records before the end), and an [`admin::Admin`] looks at the cluster
//! (partitions, watermarks, a group's committed offsets and members) and creates topics; both
//! reach the cluster described by [`ClusterOptions`]. [`EmbeddedBroker`] is an
//! in-process Kafka-compatible mock cluster for demos, tests and local development.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use sluicegate::{ConsumerEngine, ConsumerOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut engine = ConsumerEngine::start(ConsumerOptions::new("127.0.0.1:9092", "billing", ["orders"])).await?;
//! engine.spawn_subscribers((), |mut partition, ()| async move {
//!     let acks = partition.acknowledger();
//!     while let Some(record) = partition.next().await {
//!         println!("{} @ {}", record.partition, record.offset);
//!         let _ = acks.ack(record.offset).await;
//!     }
//! });
//! tokio::signal::ctrl_c().await?;
//! let summary = engine.shutdown().await;
//! println!("committed {:?}", summary.committed);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod admin;
mod client_error;
mod cluster;
pub mod codec;
mod commit_stamp;
pub mod embedded;
pub mod metrics;
mod offsets;
mod options;
pub mod pipeline;
pub mod producer;
pub mod reader;
mod record;
mod refusal;
pub mod retry;
mod source;
mod sync;
#[cfg(feature = "otel")]
mod trace_context;

pub use client_error::ClientError;
pub use cluster::ClusterOptions;
pub use embedded::{EmbeddedBroker, EmbeddedBrokerError};
pub use offsets::{OffsetTracker, TrackerError};
pub use options::{
    AssignmentStrategy, CommitStrategy, ConsumerOptions, GroupProtocol, OptionsError,
    PartitionLifecycle, RemoteAssignor, StartPosition,
};
pub use record::{Header, Offset, Record, TimestampType, TopicPartition};
pub use source::{
    AckError, Acknowledger, ConsumerEngine, EngineError, EngineStats, EngineSummary,
    PartitionStream, PauseSwitch, Readiness, Seek, SeekError,
};
pub use source::{CommitError, CommitMode};

/// The old name of [`EngineSummary`].
#[deprecated(
    since = "0.1.0",
    note = "renamed EngineSummary: every summary is `<thing>Summary`"
)]
pub type ShutdownSummary = EngineSummary;
