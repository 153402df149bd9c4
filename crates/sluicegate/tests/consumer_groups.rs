//! Group membership beyond plain rebalances: static members coming back into their partitions,
//! handlers slower than `max_poll_interval`, partitions that stall, and final commits the
//! broker refuses.
//!
//! Membership scenarios run on Apache Kafka under both group protocols (the mock cluster does
//! not keep static members); the stall watch runs on both brokers; refused final commits need
//! the mock cluster's injected errors.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;

use common::{committed_offsets, end_offsets, eventually, group_options, options, produce};
use sluicegate::embedded::{ApiKey, BrokerError};
use sluicegate::{
    ConsumerEngine, ConsumerOptions, GroupProtocol, Offset, PartitionLifecycle, PartitionStream,
    TopicPartition,
};
use sluicegate_testing::{init_tracing, unique_name, TestBroker};

const WAIT: Duration = Duration::from_secs(60);

/// What the members of one engine were assigned and revoked, and what its subscribers took.
#[derive(Default)]
struct Log {
    /// Lifecycle callbacks in order: `(true, p)` assigned partition p, `(false, p)` revoked it.
    lifecycle: Mutex<Vec<(bool, i32)>>,
    delivered: Mutex<Vec<(i32, Offset)>>,
    /// When the subscriber took the record [`Treatment::Hold`] keeps in flight.
    held_at: Mutex<Option<Instant>>,
    acked: AtomicUsize,
}

impl Log {
    /// Partitions assigned and not revoked since.
    fn owned(&self) -> BTreeSet<i32> {
        let mut owned = BTreeSet::new();
        for (assigned, partition) in self.lifecycle.lock().unwrap().iter() {
            if *assigned {
                owned.insert(*partition);
            } else {
                owned.remove(partition);
            }
        }
        owned
    }

    fn assigned(&self) -> Vec<i32> {
        self.callbacks(true)
    }

    fn revoked(&self) -> Vec<i32> {
        self.callbacks(false)
    }

    fn callbacks(&self, assigned: bool) -> Vec<i32> {
        let lifecycle = self.lifecycle.lock().unwrap();
        lifecycle
            .iter()
            .filter(|(kind, _)| *kind == assigned)
            .map(|(_, partition)| *partition)
            .collect()
    }
}

struct Recorder(Arc<Log>);

impl PartitionLifecycle for Recorder {
    fn on_assign(&self, partitions: &[TopicPartition]) {
        let mut lifecycle = self.0.lifecycle.lock().unwrap();
        lifecycle.extend(partitions.iter().map(|tp| (true, tp.partition)));
    }

    fn on_revoke(&self, partitions: &[TopicPartition]) {
        let mut lifecycle = self.0.lifecycle.lock().unwrap();
        lifecycle.extend(partitions.iter().map(|tp| (false, tp.partition)));
    }
}

/// How subscribers treat a record before acknowledging it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Treatment {
    /// Acknowledge at once.
    Quick,
    /// Sleep this long on one record, then acknowledge it.
    SlowOn((i32, Offset), Duration),
    /// Keep this record in flight while the switch says so.
    Hold((i32, Offset)),
}

/// Starts an engine whose subscribers log every record and acknowledge it as `treatment`
/// says; `release` ends a [`Treatment::Hold`].
async fn start(
    options: ConsumerOptions,
    treatment: Treatment,
    release: watch::Receiver<bool>,
) -> (ConsumerEngine, Arc<Log>) {
    let log = Arc::new(Log::default());
    let options = options.lifecycle(Recorder(log.clone()));
    let mut engine = ConsumerEngine::start(options).await.expect("engine starts");
    let shared = log.clone();
    engine.spawn_subscribers(
        (shared, release),
        move |mut stream: PartitionStream, (log, mut release)| async move {
            let acks = stream.acknowledger();
            while let Some(record) = stream.next().await {
                let at = (record.partition, record.offset);
                log.delivered.lock().unwrap().push(at);
                match treatment {
                    Treatment::SlowOn(slow, pause) if slow == at => tokio::time::sleep(pause).await,
                    Treatment::Hold(held) if held == at => {
                        *log.held_at.lock().unwrap() = Some(Instant::now());
                        let _ = release.wait_for(|released| *released).await;
                    }
                    _ => {}
                }
                if acks.ack(record.offset).await.is_ok() {
                    log.acked.fetch_add(1, Ordering::SeqCst);
                }
            }
        },
    );
    (engine, log)
}

fn no_release() -> watch::Receiver<bool> {
    watch::channel(true).1
}

/// Two static members split a topic; one stops and starts again with its id within the session
/// timeout. It gets the same partitions back, the other member goes through no rebalance, and
/// the records produced meanwhile are processed once, by the member that came back.
async fn static_member_gets_its_partitions_back_without_a_rebalance(protocol: GroupProtocol) {
    const PARTITIONS: i32 = 4;
    let broker = TestBroker::kafka();
    let topic = unique_name("static");
    broker.create_topic(&topic, PARTITIONS).await;
    let group = unique_name("static");
    // The classic session is longer than the tests' 6 s so that a restart fits in it with room;
    // under the consumer protocol the test broker's 6 s apply.
    let member = |id: &str| {
        let options = group_options(&broker, &group, &topic, protocol).group_instance_id(id);
        match protocol {
            GroupProtocol::Classic => options
                .session_timeout(Duration::from_secs(15))
                .max_poll_interval(Duration::from_secs(15)),
            _ => options,
        }
    };
    let session = match protocol {
        GroupProtocol::Classic => Duration::from_secs(15),
        _ => Duration::from_secs(6),
    };
    // B first: under the classic protocol the first member leads, and the one that restarts
    // is not the leader.
    let (b, b_log) = start(member("member-b"), Treatment::Quick, no_release()).await;
    eventually("B to own every partition", WAIT, || async {
        b_log.owned().len() == PARTITIONS as usize
    })
    .await;
    let (a, a_log) = start(member("member-a"), Treatment::Quick, no_release()).await;
    eventually("A and B to split the partitions", WAIT, || async {
        let (a, b) = (a_log.owned(), b_log.owned());
        !a.is_empty() && !b.is_empty() && a.len() + b.len() == PARTITIONS as usize
    })
    .await;
    let before = produce(&broker, &topic, PARTITIONS, 0..10).await;
    eventually("the first records to be processed", WAIT, || async {
        a_log.acked.load(Ordering::SeqCst) + b_log.acked.load(Ordering::SeqCst) >= before.len()
    })
    .await;
    let a_partitions = a_log.owned();
    let b_rebalances = b.stats().rebalances;
    let b_revoked = b_log.revoked().len();

    let stopped = Instant::now();
    let summary = a.shutdown().await;
    assert!(
        summary.uncommitted.is_empty(),
        "A's final commit: {summary:?}"
    );
    let during = produce(&broker, &topic, PARTITIONS, 10..20).await;
    let (a, a_log) = start(member("member-a"), Treatment::Quick, no_release()).await;
    eventually("A to get its partitions back", WAIT, || async {
        a_log.owned() == a_partitions
    })
    .await;
    let pause = stopped.elapsed();
    let a_records: usize = during
        .iter()
        .filter(|(partition, _)| a_partitions.contains(partition))
        .count();
    eventually(
        "A to process what was produced while it was away",
        WAIT,
        || async { a_log.acked.load(Ordering::SeqCst) >= a_records },
    )
    .await;

    assert!(
        pause < session,
        "A came back after {pause:?}, not within the session timeout of {session:?}"
    );
    assert_eq!(
        b.stats().rebalances,
        b_rebalances,
        "B went through a rebalance while A restarted"
    );
    assert_eq!(b_log.revoked().len(), b_revoked);
    assert_eq!(
        b_log.owned().len() + a_partitions.len(),
        PARTITIONS as usize
    );
    let taken = a_log.delivered.lock().unwrap().clone();
    assert_eq!(
        taken.len(),
        a_records,
        "the restarted A took each record of its partitions produced while it was away once: {taken:?}"
    );
    let all: BTreeSet<_> = before.union(&during).copied().collect();
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(
        committed_offsets(&broker, &group, &topic, PARTITIONS).await,
        end_offsets(&all),
    );
    eprintln!(
        "{protocol:?}: a static member was back in its partitions {pause:?} after it stopped"
    );
}

/// A handler takes twice `max_poll_interval` over one record. The poll thread keeps the member
/// in the group: no partition is revoked or assigned again, no record is delivered twice, and
/// every record is processed and committed.
async fn handler_slower_than_max_poll_interval_keeps_the_membership(protocol: GroupProtocol) {
    const PARTITIONS: i32 = 2;
    // At least the session timeout (6 s, the broker's minimum) under the classic protocol.
    const MAX_POLL: Duration = Duration::from_secs(6);
    let broker = TestBroker::kafka();
    let topic = unique_name("slow-handler");
    broker.create_topic(&topic, PARTITIONS).await;
    let group = unique_name("slow-handler");
    let produced = produce(&broker, &topic, PARTITIONS, 0..20).await;
    let options = group_options(&broker, &group, &topic, protocol).max_poll_interval(MAX_POLL);
    let started = Instant::now();
    let (engine, log) = start(
        options,
        Treatment::SlowOn((0, 5), 2 * MAX_POLL),
        no_release(),
    )
    .await;
    eventually("every record to be processed", WAIT, || async {
        log.acked.load(Ordering::SeqCst) >= produced.len()
    })
    .await;
    let took = started.elapsed();
    assert!(
        took >= 2 * MAX_POLL,
        "the slow record took {took:?}, less than it slept"
    );
    let ends = end_offsets(&produced);
    eventually("commits to reach the end", WAIT, || async {
        committed_offsets(&broker, &group, &topic, PARTITIONS).await == ends
    })
    .await;
    let summary = engine.shutdown().await;
    let assigned = log.assigned();
    let revoked = log.revoked();
    let delivered = log.delivered.lock().unwrap().clone();
    let mut counts: BTreeMap<(i32, Offset), usize> = BTreeMap::new();
    for at in &delivered {
        *counts.entry(*at).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{protocol:?}: delivered twice: {twice:?}");
    assert_eq!(delivered.len(), produced.len());
    assert_eq!(
        assigned.len(),
        PARTITIONS as usize,
        "{protocol:?}: each partition assigned once (assigned {assigned:?})"
    );
    assert_eq!(
        revoked.len(),
        PARTITIONS as usize,
        "{protocol:?}: revoked only at shutdown ({revoked:?})"
    );
    assert!(summary.uncommitted.is_empty());
}

/// A record held in flight with records behind it stalls its partition: after the stall
/// timeout the engine counts it stalled and is not ready; once the record is acknowledged the
/// partition moves again, and a partition with nothing left to do never counts as stalled.
async fn a_stalled_partition_is_reported_until_it_moves(broker: TestBroker) {
    const STALL: Duration = Duration::from_secs(2);
    let name = broker.name();
    let topic = unique_name("stall");
    broker.create_topic(&topic, 1).await;
    let group = unique_name("stall");
    let produced = produce(&broker, &topic, 1, 0..10).await;
    let options = options(&broker, &group, &topic)
        .stall_timeout(STALL)
        .statistics_interval(Duration::from_millis(250));
    let (release, released) = watch::channel(false);
    let (engine, log) = start(options, Treatment::Hold((0, 3)), released).await;
    eventually("the held record to be delivered", WAIT, || async {
        log.held_at.lock().unwrap().is_some()
    })
    .await;
    // The partition's last progress was the held record's delivery, just before this: the
    // stall is measured from there (not from when this loop noticed it, which a busy machine
    // delays past the stall clock's own start).
    let held_at = log.held_at.lock().unwrap().expect("held");
    eventually("the partition to be reported stalled", WAIT, || async {
        engine.stats().stalled_partitions == 1
    })
    .await;
    let stalled_after = held_at.elapsed();
    assert!(
        stalled_after >= STALL,
        "{name}: stalled after {stalled_after:?}, before the stall timeout"
    );
    assert!(!engine.is_ready(), "{name}: ready while stalled");

    release.send_replace(true);
    eventually("the partition to move again", WAIT, || async {
        engine.stats().stalled_partitions == 0 && engine.is_ready()
    })
    .await;
    eventually("every record to be processed", WAIT, || async {
        log.acked.load(Ordering::SeqCst) == produced.len()
    })
    .await;
    // Nothing left to do: twice the stall timeout passes without a stall.
    let idle = Instant::now();
    while idle.elapsed() < 2 * STALL {
        assert_eq!(
            engine.stats().stalled_partitions,
            0,
            "{name}: an idle partition was reported stalled"
        );
        assert!(engine.is_ready(), "{name}: idle and not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.shutdown().await;
    eprintln!("{name}: stalled {stalled_after:?} after the record was held");
}

/// The broker refuses the final commit of a shutdown for longer than the drain timeout: the
/// summary names the partition and its acknowledged offset, and the engine counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_final_commit_is_reported_and_counted() {
    init_tracing();
    let broker = TestBroker::embedded();
    let embedded = broker.as_embedded().expect("embedded broker");
    let topic = unique_name("final-refused");
    broker.create_topic(&topic, 1).await;
    let group = unique_name("final-refused");
    let produced = produce(&broker, &topic, 1, 0..10).await;
    let options = options(&broker, &group, &topic)
        .commit_interval(Duration::from_secs(600))
        .drain_timeout(Duration::from_secs(1));
    let (engine, log) = start(options, Treatment::Quick, no_release()).await;
    eventually("every record to be processed", WAIT, || async {
        log.acked.load(Ordering::SeqCst) == produced.len()
    })
    .await;
    // More refusals than attempts fit in the drain timeout (pauses from 200 ms, doubling).
    embedded.push_request_errors(ApiKey::OffsetCommit, &[BrokerError::RequestTimedOut; 50]);
    let summary = engine.shutdown().await;
    embedded.clear_request_errors(ApiKey::OffsetCommit);
    assert_eq!(
        summary.uncommitted,
        BTreeMap::from([(TopicPartition::new(topic.as_str(), 0), 10)]),
        "the refused final commit: {summary:?}"
    );
    assert_eq!(summary.stats.final_commits_refused, 1);
    assert_eq!(
        committed_offsets(&broker, &group, &topic, 1).await,
        BTreeMap::new()
    );
}

mod kafka {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn static_member_gets_its_partitions_back_without_a_rebalance() {
        init_tracing();
        super::static_member_gets_its_partitions_back_without_a_rebalance(GroupProtocol::Classic)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handler_slower_than_max_poll_interval_keeps_the_membership() {
        init_tracing();
        super::handler_slower_than_max_poll_interval_keeps_the_membership(GroupProtocol::Classic)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_partition_is_reported_until_it_moves() {
        init_tracing();
        super::a_stalled_partition_is_reported_until_it_moves(TestBroker::kafka()).await;
    }
}

mod kafka_consumer_protocol {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn static_member_gets_its_partitions_back_without_a_rebalance() {
        init_tracing();
        super::static_member_gets_its_partitions_back_without_a_rebalance(GroupProtocol::Consumer)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handler_slower_than_max_poll_interval_keeps_the_membership() {
        init_tracing();
        super::handler_slower_than_max_poll_interval_keeps_the_membership(GroupProtocol::Consumer)
            .await;
    }
}

mod embedded {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_partition_is_reported_until_it_moves() {
        init_tracing();
        super::a_stalled_partition_is_reported_until_it_moves(TestBroker::embedded()).await;
    }
}
