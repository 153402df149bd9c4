//! Source concurrency: a pipeline over one engine with two members and a second engine of
//! the same group. Each partition is owned by one member at a time, the members share the
//! work, and everything is handled and committed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{committed_offsets, end_offsets, eventually, options, produce};
use sluicegate::pipeline::Pipeline;
use sluicegate::{ConsumerEngine, TopicPartition};
use sluicegate_testing::{init_tracing, unique_name, TestBroker};

const PARTITIONS: i32 = 4;
const PER_PARTITION: usize = 500;
const WAIT: Duration = Duration::from_secs(60);

/// What the pipelines saw: the handled positions, and ownership events in order.
#[derive(Default)]
struct Seen {
    handled: BTreeSet<(i32, i64)>,
    owners: BTreeMap<i32, usize>,
    double_owned: Vec<String>,
    pipelines_that_handled: BTreeSet<&'static str>,
    second_started: bool,
}

fn pipeline(
    name: &'static str,
    engine: ConsumerEngine,
    seen: &Arc<Mutex<Seen>>,
) -> sluicegate::pipeline::Pipeline {
    let (on_start, on_stop) = (seen.clone(), seen.clone());
    Pipeline::builder(seen.clone())
        .concurrency(8)
        .handle_message(move |seen, message| async move {
            let mut seen = seen.lock().unwrap();
            seen.handled.insert((message.partition(), message.offset()));
            seen.pipelines_that_handled.insert(name);
            Ok(message)
        })
        .on_partition_start(move |partition: &TopicPartition| {
            let mut seen = on_start.lock().unwrap();
            seen.second_started |= name == "one member";
            let owners = seen.owners.entry(partition.partition).or_default();
            *owners += 1;
            if *owners > 1 {
                seen.double_owned
                    .push(format!("{partition} taken by {name}"));
            }
        })
        .on_partition_stop(move |partition: &TopicPartition| {
            *on_stop
                .lock()
                .unwrap()
                .owners
                .entry(partition.partition)
                .or_default() -= 1;
        })
        .source(engine)
        .start()
        .unwrap()
}

async fn members_share_partitions_without_overlap(broker: TestBroker) {
    let topic = unique_name("pipeline-sources");
    let group = unique_name("pipeline-sources");
    broker.create_topic(&topic, PARTITIONS).await;
    // Half the records before the second engine joins, half once it owns a partition: both
    // pipelines get work however long the rebalance takes.
    let half = PER_PARTITION / 2;
    let mut produced = produce(&broker, &topic, PARTITIONS, 0..half).await;
    let seen = Arc::new(Mutex::new(Seen::default()));

    let two_members = ConsumerEngine::start(options(&broker, &group, &topic).members(2))
        .await
        .unwrap();
    let first = pipeline("two members", two_members, &seen);
    eventually("some records handled", WAIT, || async {
        seen.lock().unwrap().handled.len() > 100
    })
    .await;
    let one_member = ConsumerEngine::start(options(&broker, &group, &topic))
        .await
        .unwrap();
    let second = pipeline("one member", one_member, &seen);
    eventually("the second pipeline owns a partition", WAIT, || async {
        seen.lock().unwrap().second_started
    })
    .await;
    produced.extend(produce(&broker, &topic, PARTITIONS, half..PER_PARTITION).await);
    eventually("every record handled", WAIT, || async {
        seen.lock().unwrap().handled.len() == produced.len()
    })
    .await;
    let (first, second) = tokio::join!(first.shutdown(), second.shutdown());

    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.handled, produced, "{}", broker.name());
        assert!(seen.double_owned.is_empty(), "{:?}", seen.double_owned);
        assert_eq!(
            seen.pipelines_that_handled.len(),
            2,
            "{}: both pipelines got work",
            broker.name()
        );
    }
    // The two engines left together, so each one's final commit may meet the rebalance the
    // other's leaving started. Kafka takes commits then; the mock cluster refuses them while
    // it waits (5 s) for members to rejoin, and a member that stays out of the new generation
    // cannot commit at all. Where a final commit did not land, the summary says so with the
    // acknowledged offset.
    let uncommitted: BTreeMap<i32, i64> = [first, second]
        .iter()
        .flat_map(|summary| &summary.sources)
        .flat_map(|source| &source.uncommitted)
        .map(|(partition, offset)| (partition.partition, *offset))
        .collect();
    let committed = committed_offsets(&broker, &group, &topic, PARTITIONS).await;
    let ends = end_offsets(&produced);
    if broker.as_embedded().is_none() {
        assert!(uncommitted.is_empty(), "kafka refused: {uncommitted:?}");
        assert_eq!(committed, ends, "kafka");
    }
    for (partition, end) in &ends {
        assert!(
            committed.get(partition) == Some(end) || uncommitted.get(partition) == Some(end),
            "{}: partition {partition} is neither committed to {end} nor reported: committed \
             {committed:?}, reported {uncommitted:?}",
            broker.name()
        );
    }
}

on_both_brokers!(members_share_partitions_without_overlap);
