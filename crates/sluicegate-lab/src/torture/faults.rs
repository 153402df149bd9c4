//! `sluice-lab torture faults`: broker faults under a consuming pipeline.
//!
//! An embedded broker of three brokers (librdkafka's mock cluster, in this process, since
//! only it can inject faults) holds a keyed topic whose partitions are led by all three. A
//! producer writes each key's records in sequence at a steady rate while a key-ordered
//! pipeline consumes them, and a schedule of faults runs, each for `--fault-seconds`:
//!
//! - request errors on Fetch, OffsetCommit, Heartbeat, JoinGroup and SyncGroup (a Heartbeat
//!   `REBALANCE_IN_PROGRESS` forces the rejoin that meets them) and Produce, every request of
//!   that kind failing for the whole window (mixing retriable codes and dropped connections);
//! - one broker down, then up; then every broker down, then up;
//! - a round-trip time of `--rtt-ms` on every broker.
//!
//! After each fault is cleared the campaign waits for a record to be handled (up to
//! `--recovery-timeout-seconds`), then `--settle-seconds`. When the schedule is over it stops
//! producing, waits for every record to be handled, shuts the pipeline down, and checks:
//! nothing lost, per-key order, duplicates within what can be in flight (partitions ×
//! partition buffer), every fault recovered from, the pipeline still assigned every
//! partition, and the group's committed offsets at the end of every partition.
//!
//! # Figures
//!
//! `worst_pause_ms` is the longest time a delivered record waited with no handler call
//! starting. Each fault's notes give its recovery time (fault cleared to the first record
//! handled after it) and its catch-up time (fault cleared to every record delivered before
//! that handled). `peak_rss_bytes` includes the in-process broker, which holds the topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use sluicegate::embedded::{ApiKey, BrokerError};
use sluicegate::pipeline::{Message, Pipeline, ProcessingOrder};
use sluicegate::producer::{Producer, ProducerOptions};
use sluicegate::{ConsumerEngine, ConsumerOptions, EmbeddedBroker};
use tokio::sync::watch;

use super::ledger::{tally, KeyedProducer, Ledger, RecordId};
use super::{CampaignArgs, CampaignReport};
use sluicegate_cli::tool::exit::usage;
use sluicegate_cli::tool::progress::thousands;
use sluicegate_cli::tool::{rss, topic};

/// How many requests of a kind fail while a request-error fault lasts: more than a client
/// sends in any window, so the window's end (clearing the stack) ends the fault.
const ERRORS_PER_WINDOW: usize = 100_000;
/// How long the end of the run waits for the last records to be handled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
const TOPIC: &str = "torture-faults";
const GROUP: &str = "torture-faults";
/// Brokers of the embedded cluster; partitions are spread over all of them.
const BROKERS: i32 = 3;

#[derive(Debug, Args)]
pub struct FaultsArgs {
    #[command(flatten)]
    campaign: CampaignArgs,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=64))]
    partitions: i32,
    /// Keys; each key's records are produced in sequence.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    keys: u32,
    /// Records per second produced (all keys together) [default: 400, short: 200].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: Option<u32>,
    /// How long each fault lasts [default: 4, short: 2].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600))]
    fault_seconds: Option<u64>,
    /// Pause after a fault recovered, before the next one [default: 2, short: 1].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=600))]
    settle_seconds: Option<u64>,
    /// Round-trip time of the slow-network fault, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    rtt_ms: u64,
    /// Longest wait for the first record handled after a fault before it counts as not
    /// recovered.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    recovery_timeout_seconds: u64,
    /// The pipeline's partition buffer (records per partition).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    partition_buffer: u64,
}

/// One fault of the schedule.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Every request of `api` fails with these codes, in turn.
    Requests {
        name: &'static str,
        api: ApiKey,
        errors: &'static [BrokerError],
    },
    /// JoinGroup and SyncGroup fail, and one Heartbeat error forces the member to rejoin.
    Rejoin,
    /// One broker down.
    BrokerDown(i32),
    /// Every broker down.
    AllDown,
    /// Every broker answers after this long.
    SlowNetwork(Duration),
}

use BrokerError as E;

const FETCH_ERRORS: &[E] = &[E::NotLeaderForPartition, E::RequestTimedOut, E::Disconnect];
const COMMIT_ERRORS: &[E] = &[
    E::RequestTimedOut,
    E::NotCoordinator,
    E::CoordinatorLoadInProgress,
];
const HEARTBEAT_ERRORS: &[E] = &[
    E::NotCoordinator,
    E::CoordinatorNotAvailable,
    E::RebalanceInProgress,
];
const JOIN_ERRORS: &[E] = &[E::CoordinatorLoadInProgress, E::NotCoordinator];
const SYNC_ERRORS: &[E] = &[E::RebalanceInProgress, E::CoordinatorNotAvailable];
const PRODUCE_ERRORS: &[E] = &[
    E::NotLeaderForPartition,
    E::RequestTimedOut,
    E::NotEnoughReplicas,
];

impl Fault {
    fn schedule(rtt: Duration) -> [Fault; 8] {
        use ApiKey as Api;
        let requests = |name, api, errors| Fault::Requests { name, api, errors };
        [
            requests("fetch errors", Api::Fetch, FETCH_ERRORS),
            requests("offset-commit errors", Api::OffsetCommit, COMMIT_ERRORS),
            requests("heartbeat errors", Api::Heartbeat, HEARTBEAT_ERRORS),
            Fault::Rejoin,
            requests("produce errors", Api::Produce, PRODUCE_ERRORS),
            Fault::BrokerDown(2),
            Fault::AllDown,
            Fault::SlowNetwork(rtt),
        ]
    }

    fn name(&self) -> String {
        match self {
            Fault::Requests { name, .. } => (*name).to_owned(),
            Fault::Rejoin => "join/sync-group errors".to_owned(),
            Fault::BrokerDown(id) => format!("broker {id} down"),
            Fault::AllDown => "all brokers down".to_owned(),
            Fault::SlowNetwork(rtt) => format!("round trip {} ms", rtt.as_millis()),
        }
    }

    fn inject(&self, broker: &EmbeddedBroker) -> anyhow::Result<()> {
        let push = |api, errors: &[E]| {
            let many: Vec<E> = errors
                .iter()
                .copied()
                .cycle()
                .take(ERRORS_PER_WINDOW)
                .collect();
            broker.push_request_errors(api, &many);
        };
        match *self {
            Fault::Requests { api, errors, .. } => push(api, errors),
            Fault::Rejoin => {
                push(ApiKey::JoinGroup, JOIN_ERRORS);
                push(ApiKey::SyncGroup, SYNC_ERRORS);
                broker.push_request_errors(ApiKey::Heartbeat, &[E::RebalanceInProgress]);
            }
            Fault::BrokerDown(id) => broker.broker_down(id)?,
            Fault::AllDown => broker.broker_down(EmbeddedBroker::ALL_BROKERS)?,
            Fault::SlowNetwork(rtt) => {
                broker.set_round_trip_time(EmbeddedBroker::ALL_BROKERS, rtt)?
            }
        }
        Ok(())
    }

    fn clear(&self, broker: &EmbeddedBroker) -> anyhow::Result<()> {
        match *self {
            Fault::Requests { api, .. } => broker.clear_request_errors(api),
            Fault::Rejoin => {
                for api in [ApiKey::JoinGroup, ApiKey::SyncGroup, ApiKey::Heartbeat] {
                    broker.clear_request_errors(api);
                }
            }
            Fault::BrokerDown(id) => broker.broker_up(id)?,
            Fault::AllDown => broker.broker_up(EmbeddedBroker::ALL_BROKERS)?,
            Fault::SlowNetwork(_) => {
                broker.set_round_trip_time(EmbeddedBroker::ALL_BROKERS, Duration::ZERO)?
            }
        }
        Ok(())
    }
}

/// A fault as it ran.
struct FaultRun {
    name: String,
    cleared: Instant,
}

pub fn run(args: FaultsArgs) -> anyhow::Result<()> {
    if args.campaign.brokers.is_some() {
        return Err(usage(
            "`torture faults` injects faults into its own embedded broker: --brokers does not apply",
        ));
    }
    let report = crate::runtime()?.block_on(campaign(&args))?;
    args.campaign.finish(&report)
}

async fn campaign(args: &FaultsArgs) -> anyhow::Result<CampaignReport> {
    let short = args.campaign.short;
    let rate = args.rate.unwrap_or(if short { 200 } else { 400 });
    let fault_time = Duration::from_secs(args.fault_seconds.unwrap_or(if short { 2 } else { 4 }));
    let settle = Duration::from_secs(args.settle_seconds.unwrap_or(if short { 1 } else { 2 }));
    let recovery_timeout = Duration::from_secs(args.recovery_timeout_seconds);
    let partition_buffer = usize::try_from(args.partition_buffer)?;

    let broker = EmbeddedBroker::start(BROKERS).context("could not start the embedded broker")?;
    broker
        .create_topic(TOPIC, args.partitions)
        .context("could not create the topic")?;
    let bootstrap = broker.bootstrap_servers();
    let options = ConsumerOptions::new(&bootstrap, GROUP, [TOPIC])
        .session_timeout(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_secs(1))
        .max_poll_interval(Duration::from_secs(20))
        .commit_interval(Duration::from_millis(500))
        .partition_buffer(partition_buffer);
    let engine = ConsumerEngine::start(options)
        .await
        .context("could not start the consumer engine")?;
    let ledger = Arc::new(Ledger::default());
    let pipeline = Pipeline::builder(ledger.clone())
        .order(ProcessingOrder::Key)
        .concurrency(64)
        .handle_message(|ledger: Arc<Arc<Ledger>>, message: Message| async move {
            match RecordId::of(message.data()) {
                Some(id) => ledger.handled(id),
                None => tracing::warn!(offset = message.offset(), "torture: a foreign record"),
            }
            Ok(message)
        })
        .source(engine)
        .start()?;

    let producer = Producer::new(
        ProducerOptions::new()
            .bootstrap_servers(&bootstrap)
            .delivery_timeout(Duration::from_secs(120)),
    );
    let (stop, stopped) = watch::channel(false);
    let mut producing = KeyedProducer {
        producer: producer.clone(),
        topic: TOPIC.to_owned(),
        keys: args.keys,
        rate_per_key: f64::from(rate) / f64::from(args.keys),
        per_key: None,
    }
    .spawn(ledger.clone(), Arc::new(|_| vec![b'.'; 100]), stopped);

    let started = Instant::now();
    let mut recovered_all = true;
    let mut runs = Vec::new();
    // Traffic flows before the first fault.
    tokio::time::sleep(settle.max(Duration::from_secs(1))).await;
    for fault in Fault::schedule(Duration::from_millis(args.rtt_ms)) {
        eprintln!(
            "torture faults: {} for {} s",
            fault.name(),
            fault_time.as_secs()
        );
        fault.inject(&broker)?;
        tokio::time::sleep(fault_time).await;
        fault.clear(&broker)?;
        let cleared = Instant::now();
        let recovered = wait_until(recovery_timeout, || {
            ledger.first_handled_since(cleared).is_some()
        })
        .await;
        recovered_all &= recovered;
        runs.push(FaultRun {
            name: fault.name(),
            cleared,
        });
        tokio::time::sleep(settle).await;
    }
    let _ = stop.send(true);
    while producing.join_next().await.is_some() {}
    let drained = wait_until(DRAIN_TIMEOUT, || ledger.all_handled()).await;
    let end = Instant::now();
    let stats = pipeline.stats();
    let assigned_at_end = pipeline.is_ready();
    let summary = pipeline.shutdown().await;
    let produced_report = producer.shutdown(Duration::from_secs(10)).await;

    let (produced, handled) = ledger.snapshot();
    let figures = tally(&produced, &handled, end);
    let mut report = CampaignReport::new("faults");
    report.produced = figures.produced;
    report.processed = figures.processed;
    report.lost = figures.lost;
    report.duplicated = figures.duplicated;
    report.order_violations = figures.order_violations;
    report.worst_pause_ms = figures.worst_pause.as_millis() as u64;
    report.peak_rss_bytes = rss::peak_bytes().unwrap_or(0);

    report.note("brokers", format!("{BROKERS} (embedded, in this process)"));
    report.note(
        "topic",
        format!(
            "{} partitions, {} keys, {rate} records/s",
            args.partitions, args.keys
        ),
    );
    report.note("fault window", format!("{} s each", fault_time.as_secs()));
    let mut worst_recovery = Duration::ZERO;
    for run in &runs {
        let first = handled
            .iter()
            .filter(|(_, at)| *at >= run.cleared)
            .map(|(_, at)| *at)
            .min();
        let recovery = first.map(|at| at - run.cleared);
        worst_recovery = worst_recovery.max(recovery.unwrap_or(recovery_timeout));
        report.note(
            &run.name,
            format!(
                "recovery {}, caught up {}",
                recovery.map_or("never".to_owned(), |d| format!("{} ms", d.as_millis())),
                catch_up(&produced, &handled, run.cleared)
                    .map_or("never".to_owned(), |d| format!("{} ms", d.as_millis()))
            ),
        );
    }
    report.note(
        "worst recovery",
        format!("{} ms", worst_recovery.as_millis()),
    );
    report.note(
        "engine",
        format!(
            "{} commits, {} commit errors, {} rebalances",
            thousands(summary.sources.iter().map(|s| s.stats.commits).sum()),
            thousands(summary.sources.iter().map(|s| s.stats.commit_errors).sum()),
            thousands(summary.sources.iter().map(|s| s.stats.rebalances).sum()),
        ),
    );
    report.note("pipeline received", thousands(stats.received));
    report.note(
        "delivery failures",
        thousands(ledger.delivery_failures() + produced_report.undelivered as u64),
    );
    report.note("unconfirmed handled", thousands(figures.unconfirmed));
    report.note("run time", format!("{} s", started.elapsed().as_secs()));

    report.check_delivery();
    let in_flight_bound = args.partitions as u64 * args.partition_buffer;
    report.check(
        "duplicates bounded",
        report.duplicated <= in_flight_bound,
        format!(
            "{} duplicates <= {} (partitions x partition buffer)",
            thousands(report.duplicated),
            thousands(in_flight_bound)
        ),
    );
    report.check(
        "recovered from every fault",
        recovered_all && drained,
        format!(
            "worst recovery {} ms (limit {} s); all handled at the end: {drained}",
            worst_recovery.as_millis(),
            recovery_timeout.as_secs()
        ),
    );
    report.check(
        "kept running",
        assigned_at_end,
        format!("pipeline ready with its partitions at the end: {assigned_at_end}"),
    );
    let (committed_ok, detail) = committed_at_end(&bootstrap).await?;
    report.check("committed at the end", committed_ok, detail);
    drop(broker);
    Ok(report)
}

/// From `cleared` until every record delivered before it was handled; `None` if some never
/// was.
fn catch_up(
    produced: &std::collections::HashMap<RecordId, Instant>,
    handled: &[(RecordId, Instant)],
    cleared: Instant,
) -> Option<Duration> {
    let mut first = std::collections::HashMap::new();
    for (id, at) in handled {
        first.entry(*id).or_insert(*at);
    }
    produced
        .iter()
        .filter(|(_, delivered)| **delivered < cleared)
        .map(|(id, _)| {
            first
                .get(id)
                .map(|at| at.saturating_duration_since(cleared))
        })
        .try_fold(Duration::ZERO, |worst, wait| Some(worst.max(wait?)))
}

/// Whether the group's committed offset of every partition is the partition's end.
async fn committed_at_end(bootstrap: &str) -> anyhow::Result<(bool, String)> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let ends = topic::partition_offsets(&bootstrap, TOPIC)?
            .context("the campaign's topic vanished")?;
        let committed =
            topic::committed_offsets(&bootstrap, GROUP, TOPIC, ends.iter().map(|o| o.partition))?;
        let behind: Vec<String> = ends
            .iter()
            .filter(|end| committed.get(&end.partition) != Some(&end.high))
            .map(|end| {
                format!(
                    "{}: {:?} of {}",
                    end.partition,
                    committed.get(&end.partition),
                    end.high
                )
            })
            .collect();
        let detail = if behind.is_empty() {
            format!("all {} partitions committed to their end", ends.len())
        } else {
            format!("behind: {}", behind.join(", "))
        };
        Ok((behind.is_empty(), detail))
    })
    .await
    .context("the commit check failed")?
}

/// Polls `done` every 50 ms until it holds (true) or `timeout` passes (false).
pub(super) async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
