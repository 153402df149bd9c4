//! The producer's buffer: a full buffer makes producing wait (or fail at its deadline) and
//! resumes once the broker catches up; shutdown flushes what is buffered; producers start
//! once, lazily, from the process-wide defaults.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::eventually;
use sluicegate::producer::{
    self, ProduceError, ProduceRecord, Producer, ProducerOptions, TopicProducer,
};
use sluicegate::EmbeddedBroker;
use sluicegate_testing::{init_tracing, unique_name, TestBroker};

const WAIT: Duration = Duration::from_secs(30);
const BUFFER: usize = 20;

/// A producer whose buffer holds `BUFFER` records and that sends one record per request, so
/// a slow broker fills the buffer at once.
fn small_buffer(broker: &TestBroker) -> ProducerOptions {
    ProducerOptions::new()
        .bootstrap_servers(broker.bootstrap_servers())
        .buffer_records(BUFFER)
        .flush_interval(Duration::ZERO)
}

/// An embedded broker with a one-partition topic, and a producer with `options` that has
/// already delivered one record (metadata and connections in place).
async fn warmed_up(
    name: &str,
    options: impl FnOnce(&TestBroker) -> ProducerOptions,
) -> (TestBroker, String, Producer) {
    init_tracing();
    let broker = TestBroker::embedded();
    let topic = unique_name(name);
    broker.create_topic(&topic, 1).await;
    let producer = Producer::new(options(&broker));
    producer
        .produce(&topic, ProduceRecord::new(b"warm"))
        .await
        .unwrap();
    (broker, topic, producer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_waits_and_resumes_when_the_broker_catches_up() {
    let (broker, topic, producer) = warmed_up("full-buffer", small_buffer).await;
    let embedded = broker.as_embedded().unwrap();

    // Every answer now takes 2 s: the buffer fills and stays full.
    embedded
        .set_round_trip_time(EmbeddedBroker::ALL_BROKERS, Duration::from_secs(2))
        .unwrap();
    let produced = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (producer, topic, produced) = (producer.clone(), topic.clone(), produced.clone());
        tokio::spawn(async move {
            for n in 0..100 {
                let value = format!("{n}");
                producer
                    .produce_and_forget(&topic, ProduceRecord::new(value.as_bytes()))
                    .await
                    .expect("producing waits, it does not fail");
                produced.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    eventually("the buffer fills", WAIT, || async {
        produced.load(Ordering::SeqCst) >= BUFFER
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let while_slow = produced.load(Ordering::SeqCst);
    assert!(
        while_slow < 100,
        "the writer never waited: {while_slow} records buffered against a slow broker"
    );
    assert!(
        producer.in_flight() <= BUFFER,
        "the buffer grew past its bound: {}",
        producer.in_flight()
    );

    embedded
        .set_round_trip_time(EmbeddedBroker::ALL_BROKERS, Duration::ZERO)
        .unwrap();
    tokio::time::timeout(WAIT, writer)
        .await
        .expect("producing resumes once the broker catches up")
        .unwrap();
    let report = producer.shutdown(WAIT).await;
    assert_eq!(report.undelivered, 0);
    assert_eq!(report.stats.delivered, 101);
    assert_eq!(report.stats.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_wait_deadline_turns_into_a_clear_error() {
    let (broker, topic, producer) = warmed_up("buffer-deadline", |broker| {
        small_buffer(broker).buffer_wait(Some(Duration::from_millis(300)))
    })
    .await;
    let embedded = broker.as_embedded().unwrap();
    embedded
        .set_round_trip_time(EmbeddedBroker::ALL_BROKERS, Duration::from_secs(3))
        .unwrap();
    for _ in 0..BUFFER {
        producer
            .produce_and_forget(&topic, ProduceRecord::new(b"fills"))
            .await
            .unwrap();
    }
    let started = Instant::now();
    let refused = producer
        .produce_and_forget(&topic, ProduceRecord::new(b"one too many"))
        .await;
    let waited = started.elapsed();
    assert_eq!(
        refused,
        Err(ProduceError::BufferFull {
            waited: Duration::from_millis(300)
        })
    );
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert_eq!(
        refused.unwrap_err().to_string(),
        "the producer's buffer stayed full for 300ms"
    );
    embedded
        .set_round_trip_time(EmbeddedBroker::ALL_BROKERS, Duration::ZERO)
        .unwrap();
    assert_eq!(producer.shutdown(WAIT).await.undelivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_what_is_buffered() {
    init_tracing();
    let broker = TestBroker::embedded();
    let topic = unique_name("shutdown-flush");
    broker.create_topic(&topic, 4).await;
    // A long flush interval: without the shutdown flush, these would still be waiting.
    let producer = Producer::new(
        ProducerOptions::new()
            .bootstrap_servers(broker.bootstrap_servers())
            .flush_interval(Duration::from_secs(60))
            .delivery_timeout(Duration::from_secs(120)),
    );
    for n in 0..1_000 {
        let value = format!("{n}");
        producer
            .produce_and_forget(
                &topic,
                ProduceRecord::new(value.as_bytes()).key(value.as_bytes()),
            )
            .await
            .unwrap();
    }
    assert!(
        producer.in_flight() > 0,
        "records wait for the flush interval"
    );
    let started = Instant::now();
    let report = producer.shutdown(WAIT).await;
    // At once: not after the 60 s flush interval, whatever librdkafka's broker threads were
    // doing when the shutdown began.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(report.undelivered, 0);
    assert_eq!(report.stats.delivered, 1_000);
    assert_eq!(
        producer
            .produce_and_forget(&topic, ProduceRecord::new(b"late"))
            .await,
        Err(ProduceError::ShutDown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_what_it_could_not_deliver() {
    let (broker, topic, producer) = warmed_up("shutdown-undelivered", small_buffer).await;
    let embedded = broker.as_embedded().unwrap();
    embedded.broker_down(EmbeddedBroker::ALL_BROKERS).unwrap();
    for _ in 0..5 {
        producer
            .produce_and_forget(&topic, ProduceRecord::new(b"stuck"))
            .await
            .unwrap();
    }
    let report = producer.shutdown(Duration::from_millis(500)).await;
    assert_eq!(report.undelivered, 5);
    embedded.broker_up(EmbeddedBroker::ALL_BROKERS).unwrap();
}

static EVENTS: TopicProducer = TopicProducer::new("events-from-defaults");

/// One static topic-bound producer, used at once from many tasks and threads, starts once
/// with the process-wide defaults and delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_producer_starts_once_from_the_defaults() {
    init_tracing();
    let broker = TestBroker::embedded();
    broker.create_topic(EVENTS.topic(), 3).await;
    producer::set_defaults(ProducerOptions::new().bootstrap_servers(broker.bootstrap_servers()));

    let mut tasks = Vec::new();
    for task in 0..8 {
        tasks.push(tokio::spawn(async move {
            for n in 0..50 {
                let value = format!("task {task} record {n}");
                EVENTS
                    .produce_and_forget(ProduceRecord::new(value.as_bytes()))
                    .await
                    .unwrap();
            }
        }));
    }
    let threads: Vec<_> = (0..2)
        .map(|thread| {
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    for n in 0..50 {
                        let value = format!("thread {thread} record {n}");
                        EVENTS
                            .produce(ProduceRecord::new(value.as_bytes()))
                            .await
                            .unwrap();
                    }
                });
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for thread in threads {
        thread.join().unwrap();
    }
    let report = EVENTS.producer().shutdown(WAIT).await;
    assert_eq!(report.stats.sent, 500, "one producer saw every record");
    assert_eq!(report.stats.delivered, 500);
    assert_eq!(report.undelivered, 0);
}

#[tokio::test]
async fn a_producer_without_brokers_fails_naming_the_option() {
    // No defaults in this test binary's other tests reach this producer: it sets its own.
    let producer = Producer::new(ProducerOptions::new().bootstrap_servers(" "));
    let refused = producer
        .produce_and_forget("any", ProduceRecord::new(b"x"))
        .await
        .unwrap_err();
    match refused {
        ProduceError::Options(error) => assert_eq!(error.key, "bootstrap_servers"),
        other => panic!("expected an options error, got {other:?}"),
    }
}
