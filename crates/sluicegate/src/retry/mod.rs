//! Retries through delayed retry topics and a dead-letter topic (Uber's reliable
//! reprocessing pattern, as Super::Flux tasks use it): the building blocks.
//!
//! A task reads its input topic in stage 0. A record that fails there goes to retry topic 1
//! with [`RetryHeaders`] saying where it came from and when it is due; stage `k` reads retry
//! topic `k` and sends what fails again to retry topic `k + 1`, and what fails its last retry
//! to the dead-letter topic. [`RetryPolicy`] says how many retries and how long each waits,
//! [`RetryTopics`] names the topics, and [`Stages`] selects the stages a process runs.
//!
//! The stages themselves (consuming retry topics until records are due, producing failures
//! onward) are not built yet; these pieces are what they will share.

mod headers;
mod policy;
mod stages;
mod topics;

pub use headers::{names as header_names, RetryHeaderError, RetryHeaders};
pub use policy::RetryPolicy;
pub use stages::{Stages, StagesError};
pub use topics::RetryTopics;
