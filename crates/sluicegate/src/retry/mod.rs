//! Retries through delayed retry topics and a dead-letter topic: Uber's reliable
//! reprocessing pattern, as Super::Flux tasks use it.
//!
//! A [`RetryTask`] runs a pipeline declaration as stages. Stage 0 reads the input topics. A
//! record that fails there is written to retry topic 1 with [`RetryHeaders`] saying where it
//! came from, how often it failed, why, and when it is due; only once that write is
//! delivered is the record acknowledged, so a crash in between delivers it again instead of
//! losing it. Stage `k` reads retry topic `k`, holds each record until it is due, and writes
//! what fails again to retry topic `k + 1`, or, after the last retry, to the dead-letter
//! topic. The stage after the last retry watches the dead-letter topic, logs each dead
//! letter and hands it to the task's dead-letter handler, if it has one
//! ([`RetryTask::dead_letter_handler`]). [`RetryPolicy`] says how many retries and how long each waits, [`RetryTopics`]
//! names the topics, and [`Stages`] selects the stages a process runs.
//!
//! # Failure classes
//!
//! An error, a panic or a timeout is retried. An error wrapped in [`Permanent`] is not, nor
//! is a record that does not decode ([`FailureKind::Decode`](crate::pipeline::FailureKind)):
//! the record goes straight to the dead-letter topic.
//!
//! # Timing
//!
//! A retry stage does not sleep holding records: it leaves a partition's records in the
//! engine's buffer until the head record is due, so the partition's demand window stays
//! full and fetching pauses, and a rebalance takes the partition away at once. Records of a
//! retry topic all wait the same delay, so the head is always the first due. A stage with
//! nothing due is idle.
//!
//! # Order
//!
//! The input stage is never slowed by retries, but a retried record is handled after
//! records that came after it. For strict order, [`RetryMode::InPlace`] retries within the
//! handler call instead: the partition (or, in key order, the key) waits until the record
//! succeeds or its retries are spent, then the record goes to the dead-letter topic.
//!
//! # Topics and groups
//!
//! For input topic `orders` and group `billing`: retry topics `orders.billing.retry.1` ...
//! and dead-letter topic `orders.billing.dlq` (both can be renamed), created when missing
//! with the input topic's partition count. Stage 0 uses group `billing`, stage `k` group
//! `billing.retry.<k>`, the dead-letter stage `billing.dlq`.

mod dead_letter;
mod headers;
mod in_place;
mod policy;
mod route;
mod stage;
mod stages;
mod task;
mod topics;

pub use crate::pipeline::Permanent;
pub use dead_letter::DeadLetter;
pub use headers::{
    attempt, names as header_names, without_retry_headers, RetryHeaderError, RetryHeaders,
};
pub use policy::RetryPolicy;
pub use stages::{Stages, StagesError};
pub use task::{RetryError, RetryMode, RetryTask, RunningTask, TaskStats, TaskSummary};
pub use topics::RetryTopics;
