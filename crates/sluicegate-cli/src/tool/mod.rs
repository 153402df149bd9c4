//! Building blocks for command-line tools on Sluicegate, the ones `sluice` and `sluice-lab`
//! are made of: exit status and error printing, logging and the global flags, progress on
//! stderr, memory, and the sequence-numbered records the demo and the benchmarks produce.
//!
//! A custom-handler binary needs none of this ([`Sluice`](crate::Sluice) does it all); it is for
//! tools with command lines of their own.

pub mod exit;
pub mod logging;
pub mod otel;
pub mod payload;
pub mod progress;
pub mod rss;
pub mod topic;

/// A multi-threaded tokio runtime, for the subcommands that need one.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}
