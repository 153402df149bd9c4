//! Start-up checks: bad options fail fast without connecting, an unreachable broker fails
//! after the connect timeout, and a missing topic is named.

mod common;

use std::time::{Duration, Instant};

use common::options;
use sluicegate::{ConsumerEngine, ConsumerOptions, EngineError, StartPosition};
use sluicegate_testing::{init_tracing, unique_name, TestBroker};

/// An address where nothing listens: connecting to it would fail slowly or not at all.
const NOWHERE: &str = "127.0.0.1:1";

#[tokio::test]
async fn bad_options_are_named_without_connecting() {
    init_tracing();
    let cases: Vec<(ConsumerOptions, &str)> = vec![
        (ConsumerOptions::new(NOWHERE, "", ["t"]), "group_id"),
        (
            ConsumerOptions::new(NOWHERE, "g", ["not a topic"]),
            "topics",
        ),
        (
            ConsumerOptions::new(NOWHERE, "g", ["t"]).partition_buffer(0),
            "partition_buffer",
        ),
        (
            ConsumerOptions::new(NOWHERE, "g", ["t"]).members(0),
            "members",
        ),
        (
            ConsumerOptions::new(NOWHERE, "g", ["t"]).librdkafka("group.id", "other"),
            "librdkafka.group.id",
        ),
        (ConsumerOptions::new(NOWHERE, "g", ["^orders-("]), "topics"),
        (
            ConsumerOptions::new(NOWHERE, "g", ["^orders-.*"])
                .topic_start_position("refunds", StartPosition::Latest),
            "topic_start_position.refunds",
        ),
        (
            ConsumerOptions::new(NOWHERE, "g", ["t"]).start_position(StartPosition::Offset(-1)),
            "start_position",
        ),
        (
            ConsumerOptions::new(NOWHERE, "g", ["t"])
                .topic_start_position("other", StartPosition::Latest),
            "topic_start_position.other",
        ),
    ];
    for (options, key) in cases {
        let started = Instant::now();
        match ConsumerEngine::start(options).await {
            Err(EngineError::Options(error)) => {
                assert_eq!(error.key, key);
                assert!(
                    error.to_string().contains(key),
                    "message names the key: {error}"
                );
            }
            Err(other) => panic!("expected an options error naming {key}, got {other}"),
            Ok(_) => panic!("expected an options error naming {key}, the engine started"),
        }
        // A connection attempt would wait for the connect timeout (30 s by default).
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

#[tokio::test]
async fn an_unreachable_broker_fails_after_the_connect_timeout() {
    init_tracing();
    let options = ConsumerOptions::new(NOWHERE, "g", ["t"]).connect_timeout(Duration::from_secs(2));
    let started = Instant::now();
    match ConsumerEngine::start(options).await {
        Err(EngineError::BrokerUnreachable {
            bootstrap_servers, ..
        }) => assert_eq!(bootstrap_servers, NOWHERE),
        Err(other) => panic!("expected BrokerUnreachable, got {other}"),
        Ok(_) => panic!("expected BrokerUnreachable, the engine started"),
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "gave up after {waited:?}");
    assert!(
        waited < Duration::from_secs(15),
        "kept trying for {waited:?}"
    );
}

async fn a_missing_topic_is_named(broker: TestBroker) {
    let topic = unique_name("missing");
    match ConsumerEngine::start(options(&broker, "g", &topic)).await {
        Err(EngineError::TopicNotFound { topic: missing, .. }) => assert_eq!(missing, topic),
        Err(other) => panic!("expected TopicNotFound, got {other}"),
        Ok(_) => panic!("expected TopicNotFound, the engine started"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_named_on_the_embedded_broker() {
    init_tracing();
    a_missing_topic_is_named(TestBroker::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_named_on_kafka() {
    init_tracing();
    a_missing_topic_is_named(TestBroker::kafka()).await;
}
