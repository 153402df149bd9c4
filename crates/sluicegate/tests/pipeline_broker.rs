//! Pipelines on a broker: processors in partition and key order, a batcher, the failure path,
//! and a rebalance between two pipelines of one group, each checked against what the handlers
//! saw and what the group committed.
//!
//! Every scenario writes a journal: the partition callbacks of every pipeline, every message
//! handler call, every batch and every failure, in one global order. The checks run on the
//! journal afterwards. An *epoch* is one partition in one pipeline from its
//! `on_partition_start` to its `on_partition_stop`: inside an epoch the handler must see the
//! partition's records (or each key's records) in offset order, without gaps; a partition is
//! in at most one epoch at a time, and a new epoch never starts past a record no earlier epoch
//! handled.

mod common;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{committed_offsets, end_offsets, eventually, options};
use sluicegate::pipeline::{
    Batch, BatchKey, BatchTrigger, BatcherOptions, BoxError, Failed, FailureKind, FailureReason,
    Message, Pipeline, PipelineSummary, ProcessingOrder,
};
use sluicegate::{ConsumerEngine, ConsumerOptions, Offset, TopicPartition};
use sluicegate_testing::{init_tracing, unique_name, TestBroker, TestRecord};

const WAIT: Duration = Duration::from_secs(60);
/// The batcher the message handlers route to.
const BATCHER: &str = "db";

/// A produced record: its key, its value `"{partition}-{n}"` and `n`.
#[derive(Debug, Clone)]
struct Produced {
    key: Vec<u8>,
    value: String,
    n: usize,
}

type Position = (i32, Offset);

/// Produces records `numbers` to each of `partitions`, interleaved across partitions, with
/// value `"{partition}-{n}"` and key `"k{n % keys}"`; returns what went where.
async fn produce_keyed(
    broker: &TestBroker,
    topic: &str,
    partitions: i32,
    numbers: Range<usize>,
    keys: usize,
) -> BTreeMap<Position, Produced> {
    let records: Vec<Produced> = numbers
        .flat_map(|n| {
            (0..partitions).map(move |p| Produced {
                key: format!("k{}", n % keys).into_bytes(),
                value: format!("{p}-{n}"),
                n,
            })
        })
        .collect();
    let to_send = records
        .iter()
        .map(|record| {
            let partition = record.value.split('-').next().unwrap().parse().unwrap();
            TestRecord::to_partition(partition, record.value.clone()).key(record.key.clone())
        })
        .collect();
    let positions =
        sluicegate_testing::produce_records(&broker.bootstrap_servers(), topic, to_send).await;
    let count = records.len();
    let produced: BTreeMap<Position, Produced> = positions.into_iter().zip(records).collect();
    assert_eq!(
        produced.len(),
        count,
        "{}: distinct positions of the produced records",
        broker.name()
    );
    produced
}

fn positions(produced: &BTreeMap<Position, Produced>) -> BTreeSet<Position> {
    produced.keys().copied().collect()
}

/// What a pipeline (or the test) did.
#[derive(Debug, Clone)]
enum Event {
    /// `on_partition_start`.
    Start {
        pipeline: &'static str,
        partition: i32,
    },
    /// `on_partition_stop`.
    Stop {
        pipeline: &'static str,
        partition: i32,
    },
    /// The message handler was called (stamped before it does anything).
    Handled {
        pipeline: &'static str,
        partition: i32,
        offset: Offset,
        key: Option<Vec<u8>>,
    },
    /// The batch handler was called.
    Batch {
        pipeline: &'static str,
        key: BatchKey,
        trigger: BatchTrigger,
        messages: Vec<Position>,
    },
    /// The failure handler was called with this message.
    Failed {
        pipeline: &'static str,
        position: Position,
        value: String,
        reason: FailureReason,
    },
}

/// Handler calls running now and the most seen at once.
#[derive(Debug, Default)]
struct Gauges {
    running: HashMap<Gauge, usize>,
    peak: HashMap<Gauge, usize>,
}

/// What a gauge counts: calls of one pipeline, calls on one partition (whichever pipeline),
/// calls on one key of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Gauge {
    Pipeline(&'static str),
    Partition(i32),
    Key(i32, Option<Vec<u8>>),
}

/// The events of one scenario in the order they were logged, and the handler gauges.
#[derive(Default)]
struct Journal {
    events: Mutex<Vec<Event>>,
    gauges: Mutex<Gauges>,
}

impl Journal {
    fn log(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Records whose message handler was called, by anyone.
    fn handled(&self) -> BTreeSet<Position> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|event| match event {
                Event::Handled {
                    partition, offset, ..
                } => Some((*partition, *offset)),
                _ => None,
            })
            .collect()
    }

    fn handled_by(&self, label: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|event| matches!(event, Event::Handled { pipeline, .. } if *pipeline == label))
            .count()
    }

    /// Partitions a pipeline has started and not stopped.
    fn running_partitions(&self, label: &str) -> usize {
        let mut open = BTreeSet::new();
        for event in self.events.lock().unwrap().iter() {
            match event {
                Event::Start {
                    pipeline,
                    partition,
                } if *pipeline == label => {
                    open.insert(*partition);
                }
                Event::Stop {
                    pipeline,
                    partition,
                } if *pipeline == label => {
                    open.remove(partition);
                }
                _ => {}
            }
        }
        open.len()
    }

    /// A handler call began: counts it until the returned guard is dropped.
    fn enter(&self, pipeline: &'static str, partition: i32, key: Option<Vec<u8>>) -> Running<'_> {
        let gauges = [
            Gauge::Pipeline(pipeline),
            Gauge::Partition(partition),
            Gauge::Key(partition, key),
        ];
        let mut state = self.gauges.lock().unwrap();
        for gauge in &gauges {
            let running = state.running.entry(gauge.clone()).or_default();
            *running += 1;
            let now = *running;
            let peak = state.peak.entry(gauge.clone()).or_default();
            *peak = (*peak).max(now);
        }
        Running {
            journal: self,
            gauges,
        }
    }

    fn peak(&self, gauge: &Gauge) -> usize {
        self.gauges
            .lock()
            .unwrap()
            .peak
            .get(gauge)
            .copied()
            .unwrap_or(0)
    }

    fn peaks(&self) -> HashMap<Gauge, usize> {
        self.gauges.lock().unwrap().peak.clone()
    }
}

/// A handler call in progress (see [`Journal::enter`]).
struct Running<'a> {
    journal: &'a Journal,
    gauges: [Gauge; 3],
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = self.journal.gauges.lock().unwrap();
        for gauge in &self.gauges {
            if let Some(running) = state.running.get_mut(gauge) {
                *running -= 1;
            }
        }
    }
}

/// Which records (by `n`) the message handler routes to the batcher.
type Route = fn(usize) -> bool;

/// How a scenario's pipeline behaves.
#[derive(Clone)]
struct Setup {
    label: &'static str,
    order: ProcessingOrder,
    concurrency: usize,
    /// The message handler sleeps a pseudo-random time in this range (µs) per record.
    delay_micros: Range<u64>,
    /// The message handler fails records whose value ends in this digit.
    fail_digit: Option<char>,
    /// With a batcher: which records (by `n`) the message handler routes to it.
    batcher: Option<(BatcherOptions, Route)>,
}

/// The shared state of a scenario's handlers.
struct Handlers {
    setup: Setup,
    journal: Arc<Journal>,
    seed: RandomState,
}

impl Handlers {
    fn delay(&self, partition: i32, offset: Offset) -> Duration {
        let range = &self.setup.delay_micros;
        let spread = (range.end - range.start).max(1);
        Duration::from_micros(range.start + self.seed.hash_one((partition, offset)) % spread)
    }
}

fn failure_description(value: &str, digit: char) -> String {
    format!("value {value} ends in {digit}")
}

async fn handle_message(handlers: Arc<Handlers>, message: Message) -> Result<Message, BoxError> {
    let setup = &handlers.setup;
    let (partition, offset) = (message.partition(), message.offset());
    let key = message.data().key.clone();
    handlers.journal.log(Event::Handled {
        pipeline: setup.label,
        partition,
        offset,
        key: key.clone(),
    });
    {
        let _running = handlers.journal.enter(setup.label, partition, key);
        tokio::time::sleep(handlers.delay(partition, offset)).await;
    }
    let value =
        String::from_utf8_lossy(message.data().value.as_deref().unwrap_or_default()).into_owned();
    if let Some(digit) = setup.fail_digit {
        if value.ends_with(digit) {
            return Err(failure_description(&value, digit).into());
        }
    }
    if let Some((_, route)) = &setup.batcher {
        let n: usize = value.rsplit('-').next().unwrap_or_default().parse()?;
        if route(n) {
            return Ok(message.put_batcher(BATCHER));
        }
    }
    Ok(message)
}

async fn handle_batch(handlers: Arc<Handlers>, batch: Batch) -> Result<(), BoxError> {
    handlers.journal.log(Event::Batch {
        pipeline: handlers.setup.label,
        key: batch.key.clone(),
        trigger: batch.trigger,
        messages: batch
            .messages
            .iter()
            .map(|message| (message.partition(), message.offset()))
            .collect(),
    });
    Ok(())
}

async fn handle_failed(handlers: Arc<Handlers>, failed: Vec<Failed>) {
    for failure in failed {
        let message = &failure.message;
        handlers.journal.log(Event::Failed {
            pipeline: handlers.setup.label,
            position: (message.partition(), message.offset()),
            value: String::from_utf8_lossy(message.data().value.as_deref().unwrap_or_default())
                .into_owned(),
            reason: failure.reason.clone(),
        });
    }
}

async fn start_engine(
    broker: &TestBroker,
    label: &str,
    options: ConsumerOptions,
) -> ConsumerEngine {
    ConsumerEngine::start(options)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "{}: engine of {label} did not start: {error}",
                broker.name()
            )
        })
}

fn start_pipeline(journal: &Arc<Journal>, setup: Setup, engine: ConsumerEngine) -> Pipeline {
    let label = setup.label;
    let batcher = setup.batcher.as_ref().map(|(options, _)| options.clone());
    let (starts, stops) = (journal.clone(), journal.clone());
    let mut builder = Pipeline::builder(Handlers {
        setup: setup.clone(),
        journal: journal.clone(),
        seed: RandomState::new(),
    })
    .concurrency(setup.concurrency)
    .order(setup.order)
    .handle_message(handle_message)
    .handle_failed(handle_failed)
    .on_partition_start(move |partition: &TopicPartition| {
        starts.log(Event::Start {
            pipeline: label,
            partition: partition.partition,
        })
    })
    .on_partition_stop(move |partition: &TopicPartition| {
        stops.log(Event::Stop {
            pipeline: label,
            partition: partition.partition,
        })
    })
    .source(engine);
    if let Some(options) = batcher {
        builder = builder.batcher(BATCHER, options).handle_batch(handle_batch);
    }
    builder
        .start()
        .unwrap_or_else(|error| panic!("pipeline {label} did not start: {error}"))
}

/// One partition in one pipeline, from `on_partition_start` to `on_partition_stop` (positions
/// in the journal), and the message handler calls in between.
#[derive(Debug, Clone)]
struct Epoch {
    pipeline: &'static str,
    partition: i32,
    start: usize,
    stop: usize,
    /// (journal position, offset, key) of each handler call.
    handled: Vec<(usize, Offset, Option<Vec<u8>>)>,
}

impl Epoch {
    fn offsets(&self) -> Vec<Offset> {
        self.handled.iter().map(|(_, offset, _)| *offset).collect()
    }
}

/// Checks the journal of a finished scenario (every pipeline shut down) and returns its epochs
/// in start order:
///
/// 1. epochs are well formed: a pipeline starts a partition it is not running, stops only one
///    it runs, has stopped every partition after shutdown, and calls the message handler only
///    for partitions it runs;
/// 2. inside an epoch the handler sees each lane (the partition in partition order, each key
///    in key order) in offset order, each record followed by the lane's next produced record:
///    nothing reordered, nothing skipped;
/// 3. a partition is in one epoch at a time (any pipeline), and a new epoch starts at or
///    before the first record no earlier epoch handled;
/// 4. at most one handler call at a time per lane (partition, or partition and key), and at
///    most `concurrency` per pipeline.
fn verify_epochs(
    broker: &TestBroker,
    journal: &Journal,
    produced: &BTreeMap<Position, Produced>,
    setups: &[&Setup],
) -> Vec<Epoch> {
    let name = broker.name();
    let order = setups[0].order;
    assert!(setups.iter().all(|setup| setup.order == order));
    let events = journal.events();

    // 1.
    let mut open: BTreeMap<(&'static str, i32), Epoch> = BTreeMap::new();
    let mut epochs = Vec::new();
    for (at, event) in events.iter().enumerate() {
        match event {
            Event::Start {
                pipeline,
                partition,
            } => {
                let earlier = open.insert(
                    (pipeline, *partition),
                    Epoch {
                        pipeline,
                        partition: *partition,
                        start: at,
                        stop: usize::MAX,
                        handled: Vec::new(),
                    },
                );
                assert!(
                    earlier.is_none(),
                    "{name}: {pipeline} started partition {partition} at {at} while running it since {:?}",
                    earlier.map(|epoch| epoch.start)
                );
            }
            Event::Stop {
                pipeline,
                partition,
            } => {
                let mut epoch = open.remove(&(*pipeline, *partition)).unwrap_or_else(|| {
                    panic!("{name}: {pipeline} stopped partition {partition} at {at} without running it")
                });
                epoch.stop = at;
                epochs.push(epoch);
            }
            Event::Handled {
                pipeline,
                partition,
                offset,
                key,
            } => open
                .get_mut(&(*pipeline, *partition))
                .unwrap_or_else(|| {
                    panic!("{name}: {pipeline} handled {partition}/{offset} at {at} outside an epoch of the partition")
                })
                .handled
                .push((at, *offset, key.clone())),
            Event::Batch { .. } | Event::Failed { .. } => {}
        }
    }
    assert!(
        open.is_empty(),
        "{name}: partitions still running after shutdown: {:?}",
        open.keys().collect::<Vec<_>>()
    );
    epochs.sort_by_key(|epoch| epoch.start);

    // 2. The next produced record of each record's lane.
    let lane = |position: &Position, key: Option<Vec<u8>>| match order {
        ProcessingOrder::Key => (position.0, key),
        _ => (position.0, None),
    };
    let mut lanes: BTreeMap<(i32, Option<Vec<u8>>), Vec<Offset>> = BTreeMap::new();
    for (position, record) in produced {
        lanes
            .entry(lane(position, Some(record.key.clone())))
            .or_default()
            .push(position.1);
    }
    let mut next_in_lane: BTreeMap<Position, Offset> = BTreeMap::new();
    for ((partition, _), offsets) in &lanes {
        for pair in offsets.windows(2) {
            next_in_lane.insert((*partition, pair[0]), pair[1]);
        }
    }
    for epoch in &epochs {
        let mut last: BTreeMap<Option<Vec<u8>>, Offset> = BTreeMap::new();
        for (index, (at, offset, key)) in epoch.handled.iter().enumerate() {
            let position = (epoch.partition, *offset);
            assert!(
                produced.contains_key(&position),
                "{name}: {} handled {}/{offset}, which was never produced",
                epoch.pipeline,
                epoch.partition
            );
            let (_, lane_key) = lane(&position, key.clone());
            if let Some(previous) = last.insert(lane_key.clone(), *offset) {
                let expected = next_in_lane.get(&(epoch.partition, previous));
                assert_eq!(
                    Some(offset),
                    expected,
                    "{name}: {} handled {}/{offset} (key {:?}) at {at} after {previous}: out of {order:?} order or skipping a record; the epoch's offsets around it: {:?}",
                    epoch.pipeline,
                    epoch.partition,
                    lane_key.map(|key| String::from_utf8_lossy(&key).into_owned()),
                    &epoch.offsets()[index.saturating_sub(10)..(index + 10).min(epoch.handled.len())]
                );
            }
        }
    }

    // 3.
    let mut by_partition: BTreeMap<i32, Vec<&Epoch>> = BTreeMap::new();
    for epoch in &epochs {
        by_partition.entry(epoch.partition).or_default().push(epoch);
    }
    for (partition, epochs) in &by_partition {
        let produced_here: Vec<Offset> = produced
            .keys()
            .filter(|(p, _)| p == partition)
            .map(|(_, offset)| *offset)
            .collect();
        let mut handled_before = BTreeSet::new();
        for pair in epochs.windows(2) {
            assert!(
                pair[1].start > pair[0].stop,
                "{name}: partition {partition}: {} started it at {} before {} stopped it at {}",
                pair[1].pipeline,
                pair[1].start,
                pair[0].pipeline,
                pair[0].stop
            );
        }
        for epoch in epochs {
            let first_unhandled = produced_here
                .iter()
                .find(|offset| !handled_before.contains(*offset));
            // In key order the calls of an epoch start in offset order per key only; the
            // lowest offset is where it started.
            if let (Some(first), Some(unhandled)) = (epoch.offsets().iter().min(), first_unhandled)
            {
                assert!(
                    first <= unhandled,
                    "{name}: partition {partition}: {} started at offset {first}, past {unhandled} which no earlier epoch handled",
                    epoch.pipeline
                );
            }
            handled_before.extend(epoch.offsets());
        }
    }

    // 4.
    for (gauge, peak) in journal.peaks() {
        match gauge {
            Gauge::Pipeline(label) => {
                let setup = setups
                    .iter()
                    .find(|setup| setup.label == label)
                    .expect("a pipeline of the scenario");
                assert!(
                    peak <= setup.concurrency,
                    "{name}: {label} ran {peak} message handler calls at once, above its concurrency {}",
                    setup.concurrency
                );
            }
            Gauge::Partition(partition) if order == ProcessingOrder::Partition => assert_eq!(
                peak, 1,
                "{name}: handler calls on partition {partition} at once in partition order"
            ),
            Gauge::Key(partition, key) => assert_eq!(
                peak,
                1,
                "{name}: handler calls on partition {partition} key {:?} at once",
                key.map(|key| String::from_utf8_lossy(&key).into_owned())
            ),
            Gauge::Partition(_) => {}
        }
    }
    epochs
}

/// The batches a pipeline handed to the batch handler: (journal position, trigger, messages).
fn batches(journal: &Journal, label: &str) -> Vec<(usize, BatchKey, BatchTrigger, Vec<Position>)> {
    journal
        .events()
        .into_iter()
        .enumerate()
        .filter_map(|(at, event)| match event {
            Event::Batch {
                pipeline,
                key,
                trigger,
                messages,
            } if pipeline == label => Some((at, key, trigger, messages)),
            _ => None,
        })
        .collect()
}

/// Shuts a pipeline down and checks it drained: nothing undrained, and every record it took
/// finished (processed or failed).
async fn stop(broker: &TestBroker, label: &str, pipeline: Pipeline) -> PipelineSummary {
    let name = broker.name();
    let summary = pipeline.shutdown().await;
    assert_eq!(
        summary.sources.len(),
        1,
        "{name}: {label}'s engine summaries"
    );
    assert_eq!(
        summary.sources[0].undrained, 0,
        "{name}: {label} left records undrained: {summary:?}"
    );
    let stats = summary.stats;
    assert_eq!(
        stats.processed + stats.failed,
        stats.received,
        "{name}: {label} finished every record it took: {stats:?}"
    );
    summary
}

/// The committed offsets in an engine's shutdown summary, by partition.
fn summary_commits(summary: &PipelineSummary) -> BTreeMap<i32, Offset> {
    summary.sources[0]
        .committed
        .iter()
        .map(|(partition, offset)| (partition.partition, *offset))
        .collect()
}

/// After shutdown, the group committed the end of every partition, on the broker and in the
/// shutdown summary.
async fn assert_committed_the_end(
    broker: &TestBroker,
    group: &str,
    topic: &str,
    partitions: i32,
    summary: &PipelineSummary,
    all: &BTreeSet<(i32, Offset)>,
) {
    let name = broker.name();
    let ends = end_offsets(all);
    assert_eq!(
        committed_offsets(broker, group, topic, partitions).await,
        ends,
        "{name}: committed offsets after shutdown"
    );
    assert_eq!(
        summary_commits(summary),
        ends,
        "{name}: committed offsets in the shutdown summary"
    );
}

/// One pipeline in partition order over a keyed topic: random handler delays, records with
/// `n % 3 != 0` routed to a batcher, records whose value ends in 9 failed (among them the last
/// record of every partition). Every record reaches the handler in partition order, failures
/// reach the failure handler with their reason, batches form by size and hold one partition's
/// records in order, and after shutdown the group committed the end of every partition.
async fn partition_order_with_batcher_and_failures(broker: TestBroker) {
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: usize = 750;
    const BATCH_SIZE: usize = 40;
    let name = broker.name();
    let started = Instant::now();
    let topic = unique_name("pipeline-partition");
    broker.create_topic(&topic, PARTITIONS).await;
    let produced = produce_keyed(&broker, &topic, PARTITIONS, 0..PER_PARTITION, 5).await;
    let group = unique_name("pipeline-partition");
    let journal = Arc::new(Journal::default());
    let routed = |n: usize| n % 3 != 0;
    let setup = Setup {
        label: "P",
        order: ProcessingOrder::Partition,
        // Below the number of partitions, so the cap is what limits the calls at once.
        concurrency: 3,
        delay_micros: 200..2_000,
        fail_digit: Some('9'),
        batcher: Some((
            // Long enough for most batches to fill up first.
            BatcherOptions::new()
                .size(BATCH_SIZE)
                .timeout(Duration::from_secs(1)),
            routed,
        )),
    };
    let engine = start_engine(&broker, "P", options(&broker, &group, &topic)).await;
    let pipeline = start_pipeline(&journal, setup.clone(), engine);
    let all = positions(&produced);
    eventually(&format!("{name}: every record handled"), WAIT, || async {
        journal.handled().is_superset(&all)
    })
    .await;
    let summary = stop(&broker, "P", pipeline).await;
    let took = started.elapsed();

    verify_epochs(&broker, &journal, &produced, &[&setup]);
    assert_eq!(journal.handled(), all, "{name}: records handled");

    // Failures: exactly the records ending in 9, each with the handler's error.
    let expected_failures: BTreeSet<Position> = produced
        .iter()
        .filter(|(_, record)| record.value.ends_with('9'))
        .map(|(position, _)| *position)
        .collect();
    let mut failed = BTreeSet::new();
    let mut failure_events = 0;
    for event in journal.events() {
        if let Event::Failed {
            pipeline,
            position,
            value,
            reason,
        } = event
        {
            failure_events += 1;
            assert_eq!(pipeline, "P", "{name}: the failure handler's pipeline");
            assert_eq!(
                value, produced[&position].value,
                "{name}: the failed message of {position:?}"
            );
            assert_eq!(
                (
                    reason.kind,
                    reason.batcher,
                    reason.description,
                    reason.attempts
                ),
                (
                    FailureKind::Error,
                    None,
                    failure_description(&value, '9'),
                    1
                ),
                "{name}: reason of {position:?}"
            );
            failed.insert(position);
        }
    }
    assert_eq!(
        failed, expected_failures,
        "{name}: records that reached the failure handler"
    );

    // Batches: one partition's records each, in offset order, never above the size; together
    // exactly the routed records that did not fail.
    let expected_batched: BTreeSet<Position> = produced
        .iter()
        .filter(|(_, record)| routed(record.n) && !record.value.ends_with('9'))
        .map(|(position, _)| *position)
        .collect();
    let batches = batches(&journal, "P");
    let mut batched = BTreeSet::new();
    for (_, key, trigger, messages) in &batches {
        assert!(
            !messages.is_empty() && messages.len() <= BATCH_SIZE,
            "{name}: a {trigger:?} batch of {} messages",
            messages.len()
        );
        let BatchKey::Partition(partition) = key else {
            panic!("{name}: batch key {key:?} is not the partition")
        };
        assert_eq!(partition.topic, topic, "{name}: batch key topic");
        assert!(
            messages.iter().all(|(p, _)| *p == partition.partition),
            "{name}: a batch for {partition} holds {messages:?}"
        );
        assert!(
            messages.windows(2).all(|pair| pair[0].1 < pair[1].1),
            "{name}: a batch for {partition} out of offset order: {messages:?}"
        );
        batched.extend(messages.iter().copied());
    }
    assert_eq!(batched, expected_batched, "{name}: records in batches");
    let by_size = batches
        .iter()
        .filter(|(_, _, trigger, _)| *trigger == BatchTrigger::Size)
        .count();
    assert!(
        by_size >= expected_batched.len() / BATCH_SIZE / 2,
        "{name}: only {by_size} of {} batches were full",
        batches.len()
    );

    // Counters and concurrency.
    let stats = summary.stats;
    assert!(
        stats.received >= all.len() as u64,
        "{name}: received {stats:?}"
    );
    assert_eq!(
        stats.failed, failure_events,
        "{name}: failed count {stats:?}"
    );
    assert_eq!(
        stats.batches,
        batches.len() as u64,
        "{name}: batch count {stats:?}"
    );
    let peak = journal.peak(&Gauge::Pipeline("P"));
    assert!(
        peak >= 2,
        "{name}: at most {peak} message handler calls ran at once with concurrency 3"
    );

    // Commits: the end of every partition, past the failed last records.
    assert_committed_the_end(&broker, &group, &topic, PARTITIONS, &summary, &all).await;
    eprintln!(
        "{name}: partition order: {} records, {} failed, {} batches ({by_size} full), peak {peak} calls at once, in {took:?}",
        all.len(),
        failed.len(),
        batches.len(),
    );
}

/// One pipeline in key order over partitions with four keys each: each key's records reach
/// the handler in order and one at a time, while different keys of one partition run at once;
/// the group commits the end of every partition although records finish out of order.
async fn key_order_runs_keys_of_a_partition_concurrently(broker: TestBroker) {
    const PARTITIONS: i32 = 3;
    const PER_PARTITION: usize = 400;
    let name = broker.name();
    let started = Instant::now();
    let topic = unique_name("pipeline-key");
    broker.create_topic(&topic, PARTITIONS).await;
    let produced = produce_keyed(&broker, &topic, PARTITIONS, 0..PER_PARTITION, 4).await;
    let group = unique_name("pipeline-key");
    let journal = Arc::new(Journal::default());
    let setup = Setup {
        label: "K",
        order: ProcessingOrder::Key,
        concurrency: 8,
        delay_micros: 200..2_000,
        fail_digit: None,
        batcher: None,
    };
    let engine = start_engine(&broker, "K", options(&broker, &group, &topic)).await;
    let pipeline = start_pipeline(&journal, setup.clone(), engine);
    let all = positions(&produced);
    eventually(&format!("{name}: every record handled"), WAIT, || async {
        journal.handled().is_superset(&all)
    })
    .await;
    let summary = stop(&broker, "K", pipeline).await;
    let took = started.elapsed();

    verify_epochs(&broker, &journal, &produced, &[&setup]);
    assert_eq!(journal.handled(), all, "{name}: records handled");
    let overlaps: BTreeMap<i32, usize> = (0..PARTITIONS)
        .map(|partition| (partition, journal.peak(&Gauge::Partition(partition))))
        .collect();
    assert!(
        overlaps.values().any(|peak| *peak >= 2),
        "{name}: no two keys of one partition were handled at once: peaks {overlaps:?}"
    );
    assert_committed_the_end(&broker, &group, &topic, PARTITIONS, &summary, &all).await;
    eprintln!(
        "{name}: key order: {} records, peak calls at once per partition {overlaps:?}, in {took:?}",
        all.len()
    );
}

/// Pipeline A runs alone on six partitions; once it handled some records, pipeline B (its
/// own engine, same group) joins and takes some of A's partitions; more records follow. Both
/// batch every record in a batcher whose size and timeout are never reached, so a batch is
/// only ever handed out when its partition stops: on revoke or shutdown. Nothing is lost,
/// order holds in every epoch, a partition that moved from A to B had A's batch flushed
/// (before A let it go, so B resumes no later than right after A's last record), and after both shut down
/// the group committed the end of every partition.
async fn rebalance_flushes_partial_batches_and_loses_nothing(broker: TestBroker) {
    const PARTITIONS: i32 = 6;
    let name = broker.name();
    let started = Instant::now();
    let topic = unique_name("pipeline-rebalance");
    broker.create_topic(&topic, PARTITIONS).await;
    let mut produced = produce_keyed(&broker, &topic, PARTITIONS, 0..400, 3).await;
    let group = unique_name("pipeline-rebalance");
    let journal = Arc::new(Journal::default());
    let setup = |label| Setup {
        label,
        order: ProcessingOrder::Partition,
        concurrency: 2,
        delay_micros: 1_000..3_000,
        fail_digit: None,
        batcher: Some((
            BatcherOptions::new()
                .size(100_000)
                .timeout(Duration::from_secs(600)),
            |_| true,
        )),
    };
    let engine_options = || {
        // Batched records stay unacknowledged until their partition stops: the demand window
        // must hold all of a partition's records.
        let options = options(&broker, &group, &topic).partition_buffer(10_000);
        if broker.as_embedded().is_some() {
            // As in consumer_rebalance: the mock cluster lets each rebalance round wait the
            // session timeout less one second; 3 s keeps a cooperative join short and still
            // longer than a revoke.
            options.session_timeout(Duration::from_secs(3))
        } else {
            options
        }
    };
    let (setup_a, setup_b) = (setup("A"), setup("B"));

    let engine = start_engine(&broker, "A", engine_options()).await;
    let a = start_pipeline(&journal, setup_a.clone(), engine);
    eventually(
        &format!("{name}: A to handle 300 records"),
        WAIT,
        || async { journal.handled_by("A") >= 300 },
    )
    .await;
    assert_eq!(
        journal.running_partitions("A"),
        PARTITIONS as usize,
        "{name}: A runs every partition"
    );

    let engine = start_engine(&broker, "B", engine_options()).await;
    let b = start_pipeline(&journal, setup_b.clone(), engine);
    eventually(
        &format!("{name}: A and B to split the partitions"),
        WAIT,
        || async {
            let (on_a, on_b) = (
                journal.running_partitions("A"),
                journal.running_partitions("B"),
            );
            on_a > 0 && on_b > 0 && on_a + on_b == PARTITIONS as usize
        },
    )
    .await;
    produced.extend(produce_keyed(&broker, &topic, PARTITIONS, 400..600, 3).await);
    let all = positions(&produced);
    eventually(&format!("{name}: every record handled"), WAIT, || async {
        journal.handled().is_superset(&all)
    })
    .await;

    // B leaves first; A takes its partitions back before it stops too.
    let summary_b = stop(&broker, "B", b).await;
    eventually(
        &format!("{name}: A to run every partition again"),
        WAIT,
        || async { journal.running_partitions("A") == PARTITIONS as usize },
    )
    .await;
    let summary_a = stop(&broker, "A", a).await;
    let took = started.elapsed();

    let epochs = verify_epochs(&broker, &journal, &produced, &[&setup_a, &setup_b]);
    let handled = journal.handled();
    let missing: Vec<_> = all.difference(&handled).take(10).collect();
    assert!(
        missing.is_empty(),
        "{name}: {} records never handled, e.g. {missing:?}",
        all.difference(&handled).count()
    );
    assert!(journal.handled_by("B") > 0, "{name}: B handled no record");

    // Every epoch that handled records handed them all out in one batch, flushed when the
    // partition stopped and before its stop was reported.
    let mut batches_of: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for label in ["A", "B"] {
        batches_of.insert(label, batches(&journal, label));
    }
    for epoch in &epochs {
        let inside: Vec<_> = batches_of[epoch.pipeline]
            .iter()
            .filter(|(at, key, _, _)| {
                *key == BatchKey::Partition(TopicPartition::new(&topic, epoch.partition))
                    && epoch.start < *at
                    && *at < epoch.stop
            })
            .collect();
        if epoch.handled.is_empty() {
            assert!(
                inside.is_empty(),
                "{name}: {} had batches for partition {} without handling records: {inside:?}",
                epoch.pipeline,
                epoch.partition
            );
            continue;
        }
        let expected: Vec<Position> = epoch
            .offsets()
            .into_iter()
            .map(|offset| (epoch.partition, offset))
            .collect();
        assert!(
            inside.len() == 1 && inside[0].2 == BatchTrigger::Flush && inside[0].3 == expected,
            "{name}: {} partition {} (epoch {}..{}) handled {} records; batches before its stop (first 10, with position, trigger and size): {:?}",
            epoch.pipeline,
            epoch.partition,
            epoch.start,
            epoch.stop,
            expected.len(),
            inside
                .iter()
                .take(10)
                .map(|(at, _, trigger, messages)| (at, trigger, messages.len()))
                .collect::<Vec<_>>()
        );
    }
    let total_batches: usize = batches_of.values().map(Vec::len).sum();
    let with_records = epochs.iter().filter(|e| !e.handled.is_empty()).count();
    assert_eq!(
        total_batches, with_records,
        "{name}: batches outside any epoch that handled records"
    );

    // Partitions that moved from A to B while A ran: B picks up where A's revoke committed.
    let mut moved = Vec::new();
    for partition in 0..PARTITIONS {
        let of_partition: Vec<&Epoch> =
            epochs.iter().filter(|e| e.partition == partition).collect();
        for pair in of_partition.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            if from.pipeline == "A" && to.pipeline == "B" && !from.handled.is_empty() {
                let last = *from.offsets().last().unwrap();
                let first = to.offsets().first().copied();
                moved.push((partition, last, first));
            }
        }
    }
    assert!(
        !moved.is_empty(),
        "{name}: no partition that A handled records of moved to B"
    );
    for (partition, last, first) in &moved {
        let next = produced
            .range((*partition, last + 1)..(*partition + 1, 0))
            .next()
            .map(|((_, offset), _)| *offset);
        // Normally exactly the next record (A's revoke committed its flushed batch). A final
        // commit the broker refuses mid-rebalance (the mock cluster may, under load) makes B
        // start earlier: duplicates, which at-least-once allows. Never later: that is a loss.
        if let (Some(first), Some(next)) = (*first, next) {
            assert!(
                first <= next,
                "{name}: partition {partition} moved from A (last handled {last}) to B, whose \
                 first record {first} is past the next record {next}: records were skipped"
            );
        }
    }

    let ends = end_offsets(&all);
    assert_eq!(
        committed_offsets(&broker, &group, &topic, PARTITIONS).await,
        ends,
        "{name}: committed offsets after both pipelines stopped"
    );
    // A shutdown summary lists what the engine committed during its last assignments: A's
    // commits of the partitions it kept throughout, B's of the partitions it had; A committed
    // nothing on the partitions it took back, which had nothing left.
    let (commits_a, commits_b) = (summary_commits(&summary_a), summary_commits(&summary_b));
    for (label, commits) in [("A", &commits_a), ("B", &commits_b)] {
        assert!(
            !commits.is_empty()
                && commits
                    .iter()
                    .all(|(partition, offset)| ends.get(partition) == Some(offset)),
            "{name}: {label}'s final commits {commits:?}, ends {ends:?}"
        );
    }
    let summarized: BTreeSet<i32> = commits_a.keys().chain(commits_b.keys()).copied().collect();
    assert_eq!(
        summarized.len(),
        PARTITIONS as usize,
        "{name}: final commits of A {commits_a:?} and B {commits_b:?}"
    );
    eprintln!(
        "{name}: rebalance: {} records, A handled {}, B handled {}, moved A→B {moved:?}, {} epochs, in {took:?}",
        all.len(),
        journal.handled_by("A"),
        journal.handled_by("B"),
        epochs.len()
    );
}

on_both_brokers!(
    partition_order_with_batcher_and_failures,
    key_order_runs_keys_of_a_partition_concurrently,
    rebalance_flushes_partial_batches_and_loses_nothing,
);
