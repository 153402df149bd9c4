//! `sluice-lab torture member`: one member of a campaign's consumer group, run as a child process.
//!
//! A [`ConsumerEngine`] and a [`Pipeline`] whose handler waits a little (a delay drawn from
//! the record's partition and offset, up to `--handler-max-us`) and appends the record to
//! this process's journal; partition starts and stops, successful commits
//! ([`super::commits`]) and the peak RSS (every second) go to the journal too.
//!
//! # Shutdown
//!
//! SIGTERM or SIGINT shut the pipeline down gracefully (drain, commit, leave the group). The
//! end of stdin (the driver is gone) does the same, so a member never outlives its campaign.
//! SIGKILL is what the crash campaign sends.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use sluicegate::pipeline::{Pipeline, ProcessingOrder};
use sluicegate::{CommitStrategy, ConsumerEngine, ConsumerOptions, GroupProtocol, StartPosition};
use tokio::sync::mpsc;

use super::commits;
use super::journal::{now_us, Handled, JournalWriter};
use super::workload::decode;
use sluicegate_cli::tool::rss;

/// The ordering mode the group processes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Order {
    /// One record per (partition, key) at a time, in offset order.
    Key,
    /// One record per partition at a time, in offset order.
    Partition,
}

impl Order {
    fn name(self) -> &'static str {
        match self {
            Order::Key => "key",
            Order::Partition => "partition",
        }
    }
}

impl std::fmt::Display for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The members' session timeout on the development broker, unless `--session-timeout-ms`.
const DEV_BROKER_SESSION_TIMEOUT_MS: u64 = 4_000;
/// ... and with `--brokers`: Apache Kafka's smallest by default (`group.min.session.timeout.ms`).
const KAFKA_SESSION_TIMEOUT_MS: u64 = 6_000;
/// The longest heartbeat interval the members use unless `--heartbeat-interval-ms`: under the
/// classic protocol a member learns of a rebalance only from a heartbeat's answer, so every
/// rebalance round waits up to one interval for the members to rejoin.
const MAX_HEARTBEAT_INTERVAL_MS: u64 = 1_000;

/// The group protocol of a campaign's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// The classic protocol, cooperative-sticky.
    Classic,
    /// The consumer group protocol of KIP-848 (Apache Kafka 4.x; the broker sets the session
    /// timeout, so `--session-timeout-ms` does not apply).
    Consumer,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Classic => "classic",
            Protocol::Consumer => "consumer",
        })
    }
}

/// How every member of a campaign consumes: the settings the duplicate bound depends on.
#[derive(Debug, Clone, Args)]
pub struct MemberSettings {
    /// Ordering mode of the members' pipelines.
    #[arg(long, value_enum, default_value_t = Order::Key)]
    pub order: Order,
    /// Engine demand window per partition (records buffered or in flight).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub partition_buffer: u64,
    /// Interval between the members' asynchronous commits, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub commit_interval_ms: u64,
    /// Group session timeout, in milliseconds: how long a killed member holds its partitions
    /// (classic protocol) [default: 4000 on the development broker; 6000, Apache Kafka's
    /// smallest by default (`group.min.session.timeout.ms`), with --brokers; 45000, Kafka's
    /// default, in `failover`].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1_000..=60_000))]
    pub session_timeout_ms: Option<u64>,
    /// Group heartbeat interval, in milliseconds (classic protocol): how long a rebalance
    /// round may wait for a member to notice it [default: a quarter of the session timeout,
    /// at most 1000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(100..=20_000))]
    pub heartbeat_interval_ms: Option<u64>,
    /// Each handling waits from 0 to this many microseconds (drawn from partition and offset).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub handler_max_us: u64,
    /// Message handler calls running at once in each member.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: u64,
    /// The members' group protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Classic)]
    pub group_protocol: Protocol,
    /// Static membership: each member slot joins with its own fixed instance id, so a member
    /// restarted within the session timeout gets its partitions back without a rebalance.
    #[arg(long)]
    pub static_membership: bool,
}

impl MemberSettings {
    /// These settings with the session timeout's default filled in for a broker that was
    /// `given` (`--brokers`) or the development broker.
    pub fn for_broker(&self, given: bool) -> MemberSettings {
        MemberSettings {
            session_timeout_ms: Some(self.session_timeout_ms.unwrap_or(if given {
                KAFKA_SESSION_TIMEOUT_MS
            } else {
                DEV_BROKER_SESSION_TIMEOUT_MS
            })),
            ..self.clone()
        }
    }

    /// The session timeout in milliseconds (after [`for_broker`](Self::for_broker)).
    pub fn session_timeout_ms(&self) -> u64 {
        self.session_timeout_ms
            .unwrap_or(DEV_BROKER_SESSION_TIMEOUT_MS)
    }

    /// The heartbeat interval in milliseconds: `--heartbeat-interval-ms`, or a quarter of the
    /// session timeout, at most [`MAX_HEARTBEAT_INTERVAL_MS`].
    pub fn heartbeat_interval_ms(&self) -> u64 {
        self.heartbeat_interval_ms
            .unwrap_or((self.session_timeout_ms() / 4).min(MAX_HEARTBEAT_INTERVAL_MS))
    }

    /// The flags that pass these settings on to a member.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--order".into(),
            self.order.to_string(),
            "--partition-buffer".into(),
            self.partition_buffer.to_string(),
            "--commit-interval-ms".into(),
            self.commit_interval_ms.to_string(),
            "--session-timeout-ms".into(),
            self.session_timeout_ms().to_string(),
            "--heartbeat-interval-ms".into(),
            self.heartbeat_interval_ms().to_string(),
            "--handler-max-us".into(),
            self.handler_max_us.to_string(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--group-protocol".into(),
            self.group_protocol.to_string(),
        ]
        .into_iter()
        .chain(self.static_membership.then(|| "--static-membership".into()))
        .collect()
    }

    /// The engine options of the member in `slot`.
    fn consumer_options(
        &self,
        brokers: &str,
        group: &str,
        topic: &str,
        slot: usize,
    ) -> ConsumerOptions {
        let session = Duration::from_millis(self.session_timeout_ms());
        let mut options = ConsumerOptions::new(brokers, group, [topic])
            .start_position(StartPosition::Earliest)
            // A rebalance waits this long for members to rejoin; at least the session timeout.
            .max_poll_interval(session.max(Duration::from_secs(10)))
            .commit_strategy(CommitStrategy::Interval)
            .commit_interval(Duration::from_millis(self.commit_interval_ms))
            .partition_buffer(self.partition_buffer as usize)
            .drain_timeout(Duration::from_secs(10));
        options = match self.group_protocol {
            Protocol::Classic => options
                .session_timeout(session)
                .heartbeat_interval(Duration::from_millis(self.heartbeat_interval_ms())),
            Protocol::Consumer => options.group_protocol(GroupProtocol::Consumer),
        };
        if self.static_membership {
            options = options.group_instance_id(format!("{group}-m{slot}"));
        }
        options
    }
}

#[derive(Debug, Args)]
pub struct MemberArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    /// Where this process appends its journal.
    #[arg(long)]
    journal: PathBuf,
    /// The member slot this process fills (its static member id with `--static-membership`).
    #[arg(long)]
    slot: usize,
    #[command(flatten)]
    settings: MemberSettings,
}

/// What the handler shares.
struct Handling {
    journal: Arc<JournalWriter>,
    max_delay_us: u64,
}

pub fn run(args: MemberArgs) -> anyhow::Result<()> {
    let journal = Arc::new(
        JournalWriter::create(&args.journal)
            .with_context(|| format!("could not open the journal {}", args.journal.display()))?,
    );
    commits::journal_commits(journal.clone())?;
    crate::runtime()?.block_on(consume(&args, journal))
}

async fn consume(args: &MemberArgs, journal: Arc<JournalWriter>) -> anyhow::Result<()> {
    let settings = &args.settings;
    let options = settings.consumer_options(&args.brokers, &args.group, &args.topic, args.slot);
    let engine = ConsumerEngine::start(options)
        .await
        .context("could not start the consumer engine")?;
    let order = match settings.order {
        Order::Key => ProcessingOrder::Key,
        Order::Partition => ProcessingOrder::Partition,
    };
    let (on_start, on_stop) = (journal.clone(), journal.clone());
    let pipeline = Pipeline::builder(Handling {
        journal: journal.clone(),
        max_delay_us: settings.handler_max_us,
    })
    .concurrency(settings.concurrency as usize)
    .order(order)
    .on_partition_start(move |partition| {
        if let Err(error) = on_start.assigned(partition.partition) {
            tracing::error!(%error, "could not journal a partition start");
        }
    })
    .on_partition_stop(move |partition| {
        if let Err(error) = on_stop.revoked(partition.partition) {
            tracing::error!(%error, "could not journal a partition stop");
        }
    })
    .handle_message(|handling: Arc<Handling>, message| async move {
        let start_us = now_us();
        let record = message.data();
        let (key, seq, produced_us) =
            decode(record.key.as_deref(), record.value.as_deref()).ok_or("not a torture record")?;
        let delay = spread(record.partition, record.offset) % (handling.max_delay_us + 1);
        tokio::time::sleep(Duration::from_micros(delay)).await;
        // The line is written before the handler returns, so before the record is acked.
        handling.journal.handled(&Handled {
            key,
            seq,
            partition: record.partition,
            offset: record.offset,
            produced_us,
            start_us,
            end_us: now_us(),
        })?;
        Ok(message)
    })
    .source(engine)
    .start()?;
    let sampler = tokio::spawn(sample_memory(journal.clone()));
    let reason = wait_for_stop().await?;
    tracing::info!(reason, "torture member stopping");
    pipeline.shutdown().await;
    sampler.abort();
    journal.memory(rss::peak_bytes().unwrap_or(0))?;
    Ok(())
}

/// Journals the peak RSS every second.
async fn sample_memory(journal: Arc<JournalWriter>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(error) = journal.memory(rss::peak_bytes().unwrap_or(0)) {
            tracing::error!(%error, "could not journal the peak RSS");
        }
    }
}

/// A well-mixed number from a record's position (splitmix64), for its handler delay.
fn spread(partition: i32, offset: i64) -> u64 {
    let mut z = (offset as u64) ^ ((partition as u64) << 48);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Waits for SIGTERM, SIGINT or the end of stdin; returns which.
async fn wait_for_stop() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("could not listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("could not listen for SIGTERM")?;
    let (closed, mut closed_rx) = mpsc::channel::<()>(1);
    // A plain thread: reading stdin blocks, and it must not hold a runtime worker.
    std::thread::Builder::new()
        .name("stdin-watch".to_owned())
        .spawn(move || {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = closed.blocking_send(());
        })
        .context("could not start the stdin watcher")?;
    Ok(tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
        Some(()) = closed_rx.recv() => "stdin closed",
    })
}
