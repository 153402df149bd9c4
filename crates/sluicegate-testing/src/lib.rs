//! Test brokers and clients for Sluicegate's integration tests: a crate of its own, not
//! published, that the workspace's crates take as a dev-dependency, so the `sluicegate`
//! library carries no test code (and no `tempfile` or `tracing-subscriber`) for its users.
//!
//! Behaviour that involves a broker is tested against two brokers:
//!
//! - [`TestBroker::embedded`]: librdkafka's in-process mock cluster ([`EmbeddedBroker`]), fresh
//!   per test, with fault injection. It keeps at most 5 MiB and 100,000 record batches per
//!   partition and silently drops older batches.
//! - [`TestBroker::kafka`]: Apache Kafka, the broker users run, one node per test binary
//!   ([`kafka()`]), started on first use through `scripts/kafka start` on free ports of
//!   127.0.0.1 in a temporary directory, ready once it answers a metadata request, and killed
//!   when the test process exits. `scripts/test` installs it (from Maven Central). If a test
//!   panics, the cluster's directory with each node's `kafka.log` is kept and its path printed.
//!
//! [`kafka_three_nodes()`] starts a three-node cluster for tests that need replication or a
//! broker failure, and [`secured_kafka()`] one with Kafka's own TLS, mutual TLS and SASL
//! listeners.
//!
//! Plain rdkafka clients fill in around the code under test: [`produce_records`] writes
//! [`TestRecord`]s, [`committed_offset`] reads a group's commit, and [`consumer_config`] holds
//! consumer settings for quick group joins.
//!
//! [`process`] runs a built binary of the workspace (`sluice`, `sluice-lab`) with a deadline
//! and keeps what it left.
//!
//! Tests run with `cargo test` (not nextest): a Kafka cluster is per test binary process.
//!
//! A crate of the workspace takes it as a dev-dependency, so only its tests (`tests/`) and
//! examples use it:
//!
//! ```toml
//! [dev-dependencies]
//! sluicegate-testing = { path = "../sluicegate-testing" }
//! ```
//!
//! [`EmbeddedBroker`]: sluicegate::EmbeddedBroker

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod broker;
mod clients;
mod kafka;
pub mod process;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use broker::TestBroker;
pub use clients::{
    commit_offset, committed_offset, consumer_config, produce_records, producer_config, TestRecord,
};
pub use kafka::{kafka, kafka_three_nodes, KafkaCluster, KafkaSetup};
pub use tls::{secured_kafka, SecuredKafka, SASL_USER};

/// A name no other test (in this or another test process) uses, for topics and groups:
/// `prefix` followed by the process id, a counter and the clock's nanoseconds, e.g.
/// `orders-4711-3-123456789`.
///
/// Characters of `prefix` that Kafka does not allow in topic names (anything but ASCII
/// letters, digits, `.`, `_` and `-`) become `_`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{count}-{nanos}", std::process::id())
}

/// Sends `tracing` output to the test harness (shown for failing tests), filtered by
/// `RUST_LOG` (default: errors only). Call it at the start of each test; only the first call
/// in a process installs the subscriber.
pub fn init_tracing() {
    // Fails only if a global subscriber is already set, which is what we want to allow.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::unique_name;

    #[test]
    fn unique_names_differ_and_are_valid_topic_names() {
        let first = unique_name("a b/c");
        let second = unique_name("a b/c");
        assert_ne!(first, second);
        assert!(first.starts_with("a_b_c-"), "{first}");
        assert!(first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
        assert!(first.len() < 249, "{first}");
    }
}
