//! Test support for integration tests (feature `testing`).
//!
//! Behaviour that involves a broker is tested against two brokers:
//!
//! - [`TestBroker::embedded`]: librdkafka's in-process mock cluster ([`EmbeddedBroker`]), fresh
//!   per test, with fault injection. It keeps at most 5 MiB and 100,000 record batches per
//!   partition and silently drops older batches.
//! - [`TestBroker::tansu`]: a real broker process, [tansu] 0.6.0, one per test binary, started on
//!   first use on a free port of 127.0.0.1 with sqlite storage in a temporary directory, and
//!   stopped when the test process exits. `scripts/test` installs it. If a test panics, the
//!   broker's directory and log are kept and the log's path is printed.
//!
//! Plain rdkafka clients fill in around the code under test: [`produce_records`] writes
//! [`TestRecord`]s, [`committed_offset`] reads a group's commit, and [`consumer_config`] holds
//! the consumer settings tansu needs for fast group joins.
//!
//! Tests run with `cargo test` (not nextest): the tansu broker is per test binary process.
//!
//! [tansu]: https://github.com/tansu-io/tansu
//! [`EmbeddedBroker`]: crate::embedded::EmbeddedBroker

mod broker;
mod clients;
mod tansu;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use broker::TestBroker;
pub use clients::{
    committed_offset, consumer_config, produce_records, producer_config, TestRecord,
};
pub use tansu::{tansu, tansu_with_authentication, TansuBroker, SCRAM_USER};
pub use tls::{tansu_with_tls, TlsTansu};

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
