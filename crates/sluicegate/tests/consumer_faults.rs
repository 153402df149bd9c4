//! Faults injected into the embedded broker (librdkafka's mock cluster): the only broker goes
//! down for a few seconds while records are consumed, and OffsetCommit requests fail. The
//! engine recovers, processes every record, and its commits reach the broker without ever
//! passing an unacknowledged record.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sluicegate::embedded::{ApiKey, BrokerError};
use tokio::sync::watch;

use common::{committed_offsets, end_offsets, eventually, options, produce};
use sluicegate::{AckError, ConsumerEngine, ConsumerOptions, Offset, PartitionStream};
use sluicegate_testing::{init_tracing, unique_name, TestBroker};

const WAIT: Duration = Duration::from_secs(30);
/// The id of the only broker of the embedded cluster.
const BROKER: i32 = 1;

/// What the subscribers of one engine did.
#[derive(Default)]
struct Outcomes {
    /// Records acknowledged successfully.
    acked: Mutex<BTreeSet<(i32, Offset)>>,
    /// Acknowledgements refused because the partition was revoked (re-delivered later).
    refused: AtomicUsize,
    /// Any other acknowledgement error.
    errors: Mutex<Vec<AckError>>,
    /// Records currently held in flight by the hold rule.
    held: AtomicUsize,
}

impl Outcomes {
    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

#[derive(Clone)]
struct Subscriber {
    outcomes: Arc<Outcomes>,
    /// Records matching the rule stay unacknowledged until the rule changes.
    hold: watch::Receiver<Option<(i32, Offset)>>,
    /// Processing time of each record.
    work: Duration,
}

/// Takes one partition's records in order, works on each for `work`, acknowledges it.
async fn subscribe(mut stream: PartitionStream, subscriber: Subscriber) {
    let Subscriber {
        outcomes,
        mut hold,
        work,
    } = subscriber;
    let acks = stream.acknowledger();
    let partition = stream.partition().partition;
    while let Some(record) = stream.next().await {
        let position = (partition, record.offset);
        if *hold.borrow() == Some(position) {
            outcomes.held.fetch_add(1, Ordering::SeqCst);
            // An error means the test dropped the sender: stop holding.
            let _ = hold.wait_for(|rule| *rule != Some(position)).await;
            outcomes.held.fetch_sub(1, Ordering::SeqCst);
        }
        tokio::time::sleep(work).await;
        match acks.ack(record.offset).await {
            Ok(()) => {
                outcomes.acked.lock().unwrap().insert(position);
            }
            Err(AckError::Revoked(_)) => {
                outcomes.refused.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => outcomes.errors.lock().unwrap().push(error),
        }
    }
}

/// Starts an engine whose subscribers report to the returned outcomes.
async fn start(
    options: ConsumerOptions,
    work: Duration,
    hold: watch::Receiver<Option<(i32, Offset)>>,
) -> (ConsumerEngine, Arc<Outcomes>) {
    let mut engine = ConsumerEngine::start(options)
        .await
        .expect("the engine starts");
    let outcomes = Arc::new(Outcomes::default());
    engine.spawn_subscribers(
        Subscriber {
            outcomes: outcomes.clone(),
            hold,
            work,
        },
        subscribe,
    );
    (engine, outcomes)
}

/// The common test options; `SLUICEGATE_TEST_RDKAFKA_DEBUG` (for example `cgrp`) turns on
/// librdkafka's debug contexts, shown with `RUST_LOG=librdkafka=debug`.
fn engine_options(broker: &TestBroker, group: &str, topic: &str) -> ConsumerOptions {
    let options = options(broker, group, topic);
    match std::env::var("SLUICEGATE_TEST_RDKAFKA_DEBUG") {
        Ok(debug) => options.librdkafka("debug", debug),
        Err(_) => options,
    }
}

fn assert_every_record_acked(outcomes: &Outcomes, produced: &BTreeSet<(i32, Offset)>) {
    let acked = outcomes.acked.lock().unwrap();
    let missing: Vec<_> = produced.difference(&acked).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} produced records were never acknowledged, e.g. {missing:?}",
        produced.difference(&acked).count()
    );
    let errors = outcomes.errors.lock().unwrap();
    assert!(errors.is_empty(), "acknowledgements failed: {errors:?}");
}

/// The only broker goes down for 3 s while records are being processed and acknowledged
/// (interval commits every 200 ms), then comes back. Records already fetched keep being
/// processed during the outage; afterwards the engine fetches again (records produced after the
/// outage arrive), every record is processed, and the commits reach the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_recovers_from_a_broker_outage() {
    const PARTITIONS: i32 = 3;
    init_tracing();
    let started = Instant::now();
    let broker = TestBroker::embedded();
    let embedded = broker.as_embedded().expect("embedded broker");
    let topic = unique_name("outage");
    broker.create_topic(&topic, PARTITIONS).await;
    let mut produced = produce(&broker, &topic, PARTITIONS, 0..300).await;
    let group = unique_name("outage");
    let (_hold, no_hold) = watch::channel(None);
    let (engine, outcomes) = start(
        engine_options(&broker, &group, &topic),
        Duration::from_millis(5),
        no_hold,
    )
    .await;

    eventually("a third of the first records processed", WAIT, || async {
        outcomes.acked() >= produced.len() / 3
    })
    .await;
    let before = engine.stats();
    let acked_at_down = outcomes.acked();
    assert!(
        acked_at_down < produced.len(),
        "the outage must begin while records are left to process"
    );
    embedded.broker_down(BROKER).expect("broker down");
    // The outage itself: the broker stays down for 3 s whatever the engine does.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let acked_at_up = outcomes.acked();
    let during = engine.stats();
    embedded.broker_up(BROKER).expect("broker up");
    assert!(
        acked_at_up > acked_at_down,
        "records already fetched were processed during the outage ({acked_at_down} before, \
         {acked_at_up} after)"
    );

    // Records produced after the outage must be fetched by the recovered engine.
    produced.extend(produce(&broker, &topic, PARTITIONS, 300..400).await);
    let what = format!("all {} records processed after the outage", produced.len());
    eventually(&what, WAIT, || async {
        outcomes.acked.lock().unwrap().is_superset(&produced)
    })
    .await;
    let ends = end_offsets(&produced);
    eventually(
        "commits to reach the broker after the outage",
        WAIT,
        || async { committed_offsets(&broker, &group, &topic, PARTITIONS).await == ends },
    )
    .await;
    let after = engine.stats();
    assert!(
        after.commits > during.commits,
        "commits after the outage: {} during, {} after",
        during.commits,
        after.commits
    );
    assert_eq!(
        after.assigned_partitions, PARTITIONS as usize,
        "partitions still assigned"
    );

    let summary = engine.shutdown().await;
    assert_eq!(summary.undrained, 0, "shutdown drained");
    assert_every_record_acked(&outcomes, &produced);
    assert_eq!(
        committed_offsets(&broker, &group, &topic, PARTITIONS).await,
        ends,
        "committed offsets after shutdown"
    );
    eprintln!(
        "broker outage: {:?} in all; commits {} / commit errors {} before the outage, {} / {} at its end, {} / {} at shutdown; {} acknowledgements refused",
        started.elapsed(),
        before.commits,
        before.commit_errors,
        during.commits,
        during.commit_errors,
        summary.stats.commits,
        summary.stats.commit_errors,
        outcomes.refused.load(Ordering::SeqCst),
    );
}

/// OffsetCommit requests fail for a while (request timed out, not coordinator, coordinator
/// loading) while one record stays unacknowledged: the engine counts the failed commits, the
/// committed offset never passes the unacknowledged record, and once the errors are over and
/// the record is acknowledged everything is committed and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_errors_never_commit_past_an_unacknowledged_record() {
    const PARTITIONS: i32 = 2;
    const HELD: (i32, Offset) = (0, 100);
    init_tracing();
    let started = Instant::now();
    let broker = TestBroker::embedded();
    let embedded = broker.as_embedded().expect("embedded broker");
    let topic = unique_name("commit-errors");
    broker.create_topic(&topic, PARTITIONS).await;
    let produced = produce(&broker, &topic, PARTITIONS, 0..200).await;
    let ends = end_offsets(&produced);
    let group = unique_name("commit-errors");

    let errors = [
        BrokerError::RequestTimedOut,
        BrokerError::NotCoordinator,
        BrokerError::CoordinatorLoadInProgress,
    ]
    .repeat(4);
    embedded.push_request_errors(ApiKey::OffsetCommit, &errors);
    let (hold, holding) = watch::channel(Some(HELD));
    let (engine, outcomes) = start(
        engine_options(&broker, &group, &topic),
        Duration::ZERO,
        holding,
    )
    .await;

    // Every commit the broker takes while the record is held stops at the held record.
    let check_committed = || async {
        let committed = committed_offsets(&broker, &group, &topic, PARTITIONS).await;
        if let Some(&offset) = committed.get(&HELD.0) {
            assert!(
                offset <= HELD.1,
                "partition {} committed up to {offset}, past unacknowledged offset {}",
                HELD.0,
                HELD.1
            );
        }
        committed
    };
    eventually("the engine to count failed commits", WAIT, || async {
        check_committed().await;
        engine.stats().commit_errors > 0
    })
    .await;
    let expected = BTreeMap::from([(HELD.0, HELD.1), (1, ends[&1])]);
    eventually(
        "commits up to the held record once the errors are over",
        WAIT,
        || async { check_committed().await == expected },
    )
    .await;
    assert_eq!(
        outcomes.held.load(Ordering::SeqCst),
        1,
        "the record is still held"
    );
    let failed = engine.stats().commit_errors;

    hold.send_replace(None);
    eventually(
        "everything committed once the record is acknowledged",
        WAIT,
        || async { committed_offsets(&broker, &group, &topic, PARTITIONS).await == ends },
    )
    .await;
    let summary = engine.shutdown().await;
    assert_eq!(summary.undrained, 0, "shutdown drained");
    assert_every_record_acked(&outcomes, &produced);
    assert_eq!(
        outcomes.refused.load(Ordering::SeqCst),
        0,
        "no acknowledgement refused"
    );
    eprintln!(
        "commit errors: {:?} in all; {} injected errors, {failed} commits failed, {} succeeded",
        started.elapsed(),
        errors.len(),
        summary.stats.commits
    );
}
