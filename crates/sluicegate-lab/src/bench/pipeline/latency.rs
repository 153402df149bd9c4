//! The latency scenario, Confluent Parallel Consumer's illustration: 10,000 records on one
//! partition, a message handler whose latency is uniformly random in 0–5 ms (mean 2.5 ms),
//! pipeline concurrency 100, in partition order, key order with 1, 10, 100 and 10,000 distinct
//! keys (record `i` has key `i % K`: one topic per K), and unordered.
//!
//! The ideal is concurrency / mean latency = 40,000 records/s; each mode reports its ratio to
//! it. A fresh consumer group per mode; elapsed time runs from the first handler call to the
//! end of the last handler call, so the group join does not count. The handler's delays come
//! from a seeded generator (the same delays for every mode) and are timed by a
//! [`PreciseTimer`], not by tokio's timer, whose 1 ms resolution rounds every sleep up (a
//! 0–5 ms uniform sleep would average about 3 ms). The actual mean latency seen by the handler
//! is measured and reported. Runs in this process, on Apache Kafka by default (an in-process
//! embedded broker with `--dev-broker`). After each mode, Confluent Parallel Consumer runs the
//! same mode on the same topic in a JVM of its own, with the same delays, so both are measured
//! in the same command on the same broker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use sluicegate::pipeline::{Pipeline, ProcessingOrder};
use sluicegate::{ConsumerEngine, EmbeddedBroker};
use tokio::sync::Notify;

use super::keyed_topic::prepare_keyed_topic;
use super::precise_timer::{PreciseTimer, TimerHandle};
use super::{engine_options, wait_until_done, PipelineArgs};
use crate::bench::peer_programs::{self, PeerProgram};
use crate::bench::{fresh_group, per_second};
use crate::dice::Dice;
use crate::out;
use sluicegate_cli::tool::exit::usage;
use sluicegate_cli::tool::progress::{thousands, Progress};
use sluicegate_cli::tool::{payload, rss};

/// Share of the ideal that key order with every record's own key, and unordered, must reach.
const LATENCY_GOAL: f64 = 0.95;

/// What one mode of the latency scenario measured.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ModeReport {
    /// "partition", "key" or "unordered".
    mode: &'static str,
    /// Distinct keys in key order; null otherwise.
    keys: Option<u64>,
    /// Seconds from the first handler call to the end of the last.
    elapsed_s: f64,
    rps: f64,
    /// `rps` / (concurrency / nominal mean latency).
    ratio_to_ideal: f64,
    /// Whether `ratio_to_ideal` reaches the goal; null for the modes without one.
    meets_goal: Option<bool>,
    /// The shortest elapsed time the order and the concurrency allow with the drawn delays:
    /// the longer of the busiest lane's total delay (the whole partition in partition order,
    /// one key's records in key order, one record when unordered) and the total delay divided
    /// by the concurrency.
    bound_elapsed_s: f64,
    /// `bound_elapsed_s` / `elapsed_s`.
    ratio_to_bound: f64,
    /// Mean handler latency as the handler saw it (timer overshoot and wake-up included).
    mean_latency_ms: f64,
    /// `rps` / (concurrency / `mean_latency_ms`): the pipeline's share of what the handler's
    /// measured latency allows, leaving the timer's overshoot out.
    ratio_to_measured_ideal: f64,
    /// Mean time the timer thread completed a sleep after its deadline (part of
    /// `mean_latency_ms`; the rest of the overshoot is waking the handler's task).
    timer_lateness_ms: f64,
    /// Handler calls running at once on average: total handler time / elapsed.
    mean_in_flight: f64,
    /// Most handler calls seen running at once.
    peak_in_flight: u64,
    /// Seconds from starting the engine to the first handler call (group join, first fetch).
    startup_s: f64,
    /// Confluent Parallel Consumer's run of the same mode on the same topic, right after this
    /// one; null when it did not run (see [`LatencyFacts::parallel_consumer`]).
    parallel_consumer: Option<ParallelConsumerRun>,
    topic: String,
}

/// What Confluent Parallel Consumer measured in one mode (its process's own report).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(super) struct ParallelConsumerRun {
    /// Seconds from its first handler call to the end of its last.
    elapsed_s: f64,
    /// Seconds from creating its consumer to the first handler call.
    startup_s: f64,
    /// Mean handler latency it measured around each sleep.
    mean_latency_ms: f64,
    peak_rss_bytes: u64,
    /// Records/s / ideal (set by the bench).
    #[serde(default)]
    ratio_to_ideal: f64,
    /// Whether our pipeline was faster in this mode (set by the bench).
    #[serde(default)]
    pipeline_faster: bool,
}

/// The scenario as run, for the report.

#[derive(Debug, Serialize)]
pub(super) struct LatencyFacts {
    records: u64,
    concurrency: u64,
    max_latency_ms: f64,
    /// Mean of the uniform latency distribution: max / 2.
    nominal_mean_latency_ms: f64,
    /// Mean of the delays drawn for this run (the same for every mode).
    drawn_mean_latency_ms: f64,
    ideal_rps: f64,
    goal: f64,
    seed: u64,
    broker: String,
    /// How Confluent Parallel Consumer ran: `ran` (0.5.3.3, kafka-clients 3.9.1, in its own
    /// JVM), `skipped` (--without-parallel-consumer), or why it could not.
    parallel_consumer: String,
}

/// Prints the scenario and a table of its modes.
pub(super) fn print_report(facts: &LatencyFacts, modes: &[ModeReport]) -> anyhow::Result<()> {
    out!(
        "sluice-lab bench pipeline: Parallel Consumer's scenario: {} records on 1 partition, handler latency uniform \
         0-{} ms (seeded {}, drawn mean {:.3} ms), concurrency {}, on {}",
        thousands(facts.records),
        facts.max_latency_ms,
        facts.seed,
        facts.drawn_mean_latency_ms,
        facts.concurrency,
        facts.broker
    )?;
    out!(
        "ideal = concurrency / mean latency = {} / {} ms = {} records/s; goal: key order with one key per \
         record and unordered >= {:.0} % of ideal",
        facts.concurrency,
        facts.nominal_mean_latency_ms,
        per_second(facts.ideal_rps),
        facts.goal * 100.0
    )?;
    out!(
        "{:<10} {:>6} {:>9} {:>10} {:>6} {:>8} {:>9} {:>6} {:>10} {:>9} {:>5} {:>9}",
        "mode",
        "keys",
        "elapsed",
        "records/s",
        "ratio",
        "goal",
        "bound",
        "/bound",
        "latency",
        "in flight",
        "peak",
        "PC"
    )?;
    for mode in modes {
        out!(
            "{:<10} {:>6} {:>7.3} s {:>10} {:>6.3} {:>8} {:>7.3} s {:>6.3} {:>7.3} ms {:>9.1} {:>5} {:>9}",
            mode.mode,
            mode.keys.map_or_else(|| "-".to_owned(), thousands),
            mode.elapsed_s,
            per_second(mode.rps),
            mode.ratio_to_ideal,
            match mode.meets_goal {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "-",
            },
            mode.bound_elapsed_s,
            mode.ratio_to_bound,
            mode.mean_latency_ms,
            mode.mean_in_flight,
            mode.peak_in_flight,
            mode.parallel_consumer
                .as_ref()
                .map_or_else(|| "-".to_owned(), |run| format!("{:.3} s", run.elapsed_s)),
        )?;
    }
    out!(
        "ratio = records/s / ideal; bound = the shortest elapsed the order and the concurrency allow with \
         the drawn delays, /bound = bound / elapsed; latency = mean handler latency measured (the timer's \
         overshoot and the task's wake-up included); in flight = handler time / elapsed; PC = Confluent \
         Parallel Consumer's elapsed in the same mode on the same topic, run right after ours"
    )?;
    Ok(())
}

/// The processing orders this scenario runs (Parallel Consumer's three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Partition,
    Key,
    Unordered,
}

impl Order {
    fn processing_order(self) -> ProcessingOrder {
        match self {
            Order::Partition => ProcessingOrder::Partition,
            Order::Key => ProcessingOrder::Key,
            Order::Unordered => ProcessingOrder::Unordered,
        }
    }
}

/// One mode of the latency scenario.
#[derive(Debug, Clone, Copy)]
struct Mode {
    order: Order,
    /// Distinct keys of the topic it reads.
    keys: u64,
}

impl Mode {
    fn name(self) -> &'static str {
        match self.order {
            Order::Partition => "partition",
            Order::Key => "key",
            Order::Unordered => "unordered",
        }
    }

    fn label(self) -> String {
        match self.order {
            Order::Key if self.keys == 1 => "key order, 1 key".to_owned(),
            Order::Key => format!("key order, {} keys", thousands(self.keys)),
            Order::Partition => "partition order".to_owned(),
            Order::Unordered => "unordered".to_owned(),
        }
    }

    /// The shortest elapsed time this order allows with these delays and this concurrency
    /// (timer overshoot left out): record `i` is in lane `i % lanes`, a lane runs one record
    /// at a time, and at most `concurrency` run at once.
    fn bound(self, delays: &[Duration], concurrency: u64) -> Duration {
        let lanes = match self.order {
            Order::Partition => 1,
            Order::Key => self.keys.max(1) as usize,
            Order::Unordered => delays.len().max(1),
        };
        let mut lane_totals = vec![Duration::ZERO; lanes.min(delays.len()).max(1)];
        for (index, delay) in delays.iter().enumerate() {
            lane_totals[index % lanes] += *delay;
        }
        let busiest = lane_totals.iter().max().copied().unwrap_or_default();
        let total: Duration = delays.iter().sum();
        busiest.max(total / u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX))
    }

    /// Runs Confluent Parallel Consumer once in this mode on `topic` (whose first offset is
    /// `low`) in its own JVM, with the same delays (drawn from the same seed) and concurrency.
    fn run_parallel_consumer(
        self,
        program: &PeerProgram,
        bootstrap: &str,
        topic: &str,
        low: i64,
        args: &PipelineArgs,
    ) -> anyhow::Result<ParallelConsumerRun> {
        let group = fresh_group(&format!("parallel-consumer-{}-{}", self.name(), self.keys));
        program.report([
            bootstrap.to_owned(),
            topic.to_owned(),
            group,
            args.records.to_string(),
            low.to_string(),
            self.name().to_owned(),
            args.concurrency.to_string(),
            args.max_latency_us.to_string(),
            args.seed.to_string(),
        ])
    }
}

/// Runs every mode asked for, one after the other.
pub(super) fn run(args: &PipelineArgs) -> anyhow::Result<(Vec<ModeReport>, LatencyFacts)> {
    let embedded = match &args.brokers {
        Some(_) => None,
        None => {
            let stored = payload::stored_bytes(args.records, args.record_bytes as usize);
            if stored > payload::MOCK_PARTITION_BYTES {
                return Err(usage(format!(
                    "{} records of {} bytes is about {} on one partition, above the embedded broker's 5 MiB per \
                     partition limit; use fewer --records, smaller --record-bytes, or pass --brokers",
                    thousands(args.records),
                    args.record_bytes,
                    rss::mib(stored)
                )));
            }
            Some(EmbeddedBroker::start(1).context("could not start the embedded broker")?)
        }
    };
    let (bootstrap, broker_label) = match (&args.brokers, &embedded) {
        (Some(brokers), _) => (
            brokers.clone(),
            args.broker_label.clone().unwrap_or_else(|| brokers.clone()),
        ),
        (None, Some(broker)) => {
            let address = broker.bootstrap_servers();
            (
                address.clone(),
                format!("an embedded broker (in process) at {address}"),
            )
        }
        (None, None) => unreachable!("an embedded broker is started when --brokers is absent"),
    };
    let mut key_counts = args.keys.clone();
    key_counts.sort_unstable();
    key_counts.dedup();
    // Partition and unordered order read the topic with the most keys (keys do not matter to
    // them).
    let widest = key_counts.iter().copied().max().unwrap_or(1);
    let mut topics = Vec::new();
    for &keys in &key_counts {
        let name = format!("{}-{}r-{}k", args.topic_prefix, args.records, keys);
        let low = prepare_keyed_topic(
            &bootstrap,
            embedded.as_ref(),
            &name,
            args.records,
            keys,
            args.record_bytes as usize,
        )?;
        topics.push((keys, name, low));
    }
    let topic_of = |keys: u64| {
        topics
            .iter()
            .find(|(k, _, _)| *k == keys)
            .map(|(_, name, low)| (name.clone(), *low))
            .expect("a topic was prepared for every key count")
    };
    let mut modes = vec![Mode {
        order: Order::Partition,
        keys: widest,
    }];
    modes.extend(key_counts.iter().map(|&keys| Mode {
        order: Order::Key,
        keys,
    }));
    modes.push(Mode {
        order: Order::Unordered,
        keys: widest,
    });

    let parallel_consumer = if args.without_parallel_consumer {
        Err("skipped (--without-parallel-consumer)".to_owned())
    } else {
        peer_programs::parallel_consumer().map_err(|error| format!("unavailable: {error:#}"))
    };
    let delays: Arc<[Duration]> = draw_delays(args.records, args.max_latency_us, args.seed).into();
    let drawn_mean_ms =
        delays.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / delays.len().max(1) as f64;
    let nominal_mean_ms = args.max_latency_us as f64 / 2e3;
    let ideal_rps = args.concurrency as f64 / (nominal_mean_ms / 1e3);
    let timer = PreciseTimer::start()?;
    let runtime = crate::runtime()?;
    let mut reports = Vec::new();
    let mut progress = Progress::new("modes", modes.len() as u64).unit("modes");
    for mode in modes {
        let (topic_name, low) = topic_of(mode.keys);
        progress.note(&format!(
            "{}: {} records of `{topic_name}`, concurrency {}",
            mode.label(),
            thousands(args.records),
            args.concurrency
        ));
        let run = LatencyRun {
            bootstrap: &bootstrap,
            topic: &topic_name,
            low,
            mode,
            delays: delays.clone(),
            timer: timer.handle(),
            args,
        };
        let measured = runtime.block_on(run.run())?;
        let rps = if measured.elapsed_s > 0.0 {
            args.records as f64 / measured.elapsed_s
        } else {
            0.0
        };
        let ratio_to_ideal = rps / ideal_rps;
        let parallel_consumer = match &parallel_consumer {
            Ok(program) => {
                let mut run = mode
                    .run_parallel_consumer(program, &bootstrap, &topic_name, low, args)
                    .with_context(|| format!("Parallel Consumer failed in {}", mode.label()))?;
                if run.elapsed_s > 0.0 {
                    run.ratio_to_ideal = args.records as f64 / run.elapsed_s / ideal_rps;
                }
                run.pipeline_faster = measured.elapsed_s < run.elapsed_s;
                progress.note(&format!(
                    "{}: Parallel Consumer {:.3} s, {:.3} of ideal, mean latency {:.3} ms",
                    mode.label(),
                    run.elapsed_s,
                    run.ratio_to_ideal,
                    run.mean_latency_ms
                ));
                Some(run)
            }
            Err(_) => None,
        };
        let bound_s = mode.bound(&delays, args.concurrency).as_secs_f64();
        let goal_mode = mode.order == Order::Unordered
            || (mode.order == Order::Key && mode.keys >= args.records);
        let report = ModeReport {
            mode: mode.name(),
            keys: (mode.order == Order::Key).then_some(mode.keys),
            elapsed_s: measured.elapsed_s,
            rps,
            ratio_to_ideal,
            meets_goal: goal_mode.then_some(ratio_to_ideal >= LATENCY_GOAL),
            bound_elapsed_s: bound_s,
            ratio_to_bound: if measured.elapsed_s > 0.0 {
                bound_s / measured.elapsed_s
            } else {
                0.0
            },
            mean_latency_ms: measured.mean_latency_ms,
            ratio_to_measured_ideal: if measured.mean_latency_ms > 0.0 {
                rps / (args.concurrency as f64 / (measured.mean_latency_ms / 1e3))
            } else {
                0.0
            },
            timer_lateness_ms: measured.timer_lateness_ms,
            mean_in_flight: measured.mean_in_flight,
            peak_in_flight: measured.peak_in_flight,
            startup_s: measured.startup_s,
            parallel_consumer,
            topic: topic_name,
        };
        progress.note(&format!(
            "{}: {:.3} s, {} records/s, {:.3} of ideal, mean latency {:.3} ms (timer {:.3} ms late), {:.3} of \
             the measured latency's ideal, {:.1} in flight (peak {})",
            mode.label(),
            report.elapsed_s,
            per_second(report.rps),
            report.ratio_to_ideal,
            report.mean_latency_ms,
            report.timer_lateness_ms,
            report.ratio_to_measured_ideal,
            report.mean_in_flight,
            report.peak_in_flight
        ));
        reports.push(report);
        progress.update(reports.len() as u64);
    }
    progress.finish(reports.len() as u64);
    drop(runtime);
    drop(timer);
    drop(embedded);
    Ok((
        reports,
        LatencyFacts {
            records: args.records,
            concurrency: args.concurrency,
            max_latency_ms: args.max_latency_us as f64 / 1e3,
            nominal_mean_latency_ms: nominal_mean_ms,
            drawn_mean_latency_ms: drawn_mean_ms,
            ideal_rps,
            goal: LATENCY_GOAL,
            seed: args.seed,
            broker: broker_label,
            parallel_consumer: match parallel_consumer {
                Ok(_) => {
                    "ran (0.5.3.3, kafka-clients 3.9.1, its own JVM, after each mode)".to_owned()
                }
                Err(reason) => reason,
            },
        },
    ))
}

/// The handler delay of each record: uniform in 0..=`max_us` microseconds (nanosecond steps),
/// from a seeded xorshift64* generator.
fn draw_delays(records: u64, max_us: u64, seed: u64) -> Vec<Duration> {
    let mut random = Dice::new(seed);
    let span = max_us * 1_000 + 1;
    (0..records)
        .map(|_| Duration::from_nanos(random.next_u64() % span))
        .collect()
}

/// What one mode measured.
struct Measured {
    elapsed_s: f64,
    startup_s: f64,
    mean_latency_ms: f64,
    timer_lateness_ms: f64,
    mean_in_flight: f64,
    peak_in_flight: u64,
}

struct LatencyRun<'a> {
    bootstrap: &'a str,
    topic: &'a str,
    low: i64,
    mode: Mode,
    delays: Arc<[Duration]>,
    timer: TimerHandle,
    args: &'a PipelineArgs,
}

/// What the latency handler shares.
struct LatencyState {
    delays: Arc<[Duration]>,
    low: i64,
    timer: TimerHandle,
    expected: u64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    finished: AtomicU64,
    latency_nanos: AtomicU64,
    running: AtomicU64,
    peak_running: AtomicU64,
    done: Notify,
}

impl LatencyRun<'_> {
    async fn run(self) -> anyhow::Result<Measured> {
        let args = self.args;
        let options = engine_options(
            self.bootstrap,
            &fresh_group(&format!("pipeline-{}-{}", self.mode.name(), self.mode.keys)),
            self.topic,
            &args.timeouts,
            args.partition_buffer,
        );
        let state = Arc::new(LatencyState {
            delays: self.delays,
            low: self.low,
            timer: self.timer,
            expected: args.records,
            first: OnceLock::new(),
            last: OnceLock::new(),
            finished: AtomicU64::new(0),
            latency_nanos: AtomicU64::new(0),
            running: AtomicU64::new(0),
            peak_running: AtomicU64::new(0),
            done: Notify::new(),
        });
        let lateness_before = state.timer.lateness();
        let started = Instant::now();
        let engine = ConsumerEngine::start(options)
            .await
            .context("could not start the consumer engine")?;
        let pipeline = Pipeline::builder(state.clone())
            .concurrency(args.concurrency as usize)
            .order(self.mode.order.processing_order())
            .handle_message(|state: Arc<Arc<LatencyState>>, message| async move {
                let called = Instant::now();
                state.first.get_or_init(|| called);
                let running = state.running.fetch_add(1, Ordering::Relaxed) + 1;
                state.peak_running.fetch_max(running, Ordering::Relaxed);
                let index = usize::try_from(message.offset() - state.low).unwrap_or(usize::MAX);
                let delay = state.delays.get(index).copied().unwrap_or_default();
                state.timer.sleep(delay).await;
                let took = called.elapsed();
                state.running.fetch_sub(1, Ordering::Relaxed);
                state
                    .latency_nanos
                    .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                let finished = state.finished.fetch_add(1, Ordering::AcqRel) + 1;
                if finished == state.expected {
                    let _ = state.last.set(Instant::now());
                    state.done.notify_one();
                }
                Ok(message)
            })
            .source(engine)
            .start()
            .context("could not start the pipeline")?;
        let outcome = wait_until_done(&state.done, || state.finished.load(Ordering::Relaxed)).await;
        let summary = pipeline.shutdown().await;
        if let Err(stalled_at) = outcome {
            bail!(
                "{} stalled at {stalled_at} of {} records (pipeline stats: {:?})",
                self.mode.label(),
                args.records,
                summary.stats
            );
        }
        if summary.stats.failed > 0 || summary.stats.processed < args.records {
            bail!(
                "{}: {} of {} records processed, {} failed",
                self.mode.label(),
                summary.stats.processed,
                args.records,
                summary.stats.failed
            );
        }
        let last = state.last.get().copied().unwrap_or_else(Instant::now);
        let first = state.first.get().copied().unwrap_or(last);
        let elapsed = last.duration_since(first).as_secs_f64();
        let latency_s = state.latency_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let finished = state.finished.load(Ordering::Relaxed).max(1);
        let lateness_after = state.timer.lateness();
        let fired = lateness_after.0 - lateness_before.0;
        let timer_lateness_ms = if fired > 0 {
            (lateness_after.1 - lateness_before.1).as_secs_f64() * 1e3 / fired as f64
        } else {
            0.0
        };
        Ok(Measured {
            timer_lateness_ms,
            elapsed_s: elapsed,
            startup_s: first.duration_since(started).as_secs_f64(),
            mean_latency_ms: latency_s * 1e3 / finished as f64,
            mean_in_flight: if elapsed > 0.0 {
                latency_s / elapsed
            } else {
                0.0
            },
            peak_in_flight: state.peak_running.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_seeded_uniform_and_in_range() {
        let delays = draw_delays(20_000, 5_000, 42);
        assert_eq!(delays, draw_delays(20_000, 5_000, 42));
        assert_ne!(delays, draw_delays(20_000, 5_000, 43));
        assert!(delays
            .iter()
            .all(|delay| *delay <= Duration::from_millis(5)));
        let mean_ms = delays.iter().sum::<Duration>().as_secs_f64() * 1e3 / delays.len() as f64;
        assert!((mean_ms - 2.5).abs() < 0.05, "mean {mean_ms} ms");
        let below_one_ms = delays
            .iter()
            .filter(|delay| **delay < Duration::from_millis(1))
            .count();
        assert!((3_600..4_400).contains(&below_one_ms), "{below_one_ms}");
    }

    #[test]
    fn bounds_follow_the_order() {
        let delays = vec![Duration::from_millis(1); 1_000];
        let mode = |order, keys| Mode { order, keys };
        let bound = |order, keys| mode(order, keys).bound(&delays, 100);
        assert_eq!(bound(Order::Partition, 1), Duration::from_secs(1));
        assert_eq!(bound(Order::Key, 1), Duration::from_secs(1));
        assert_eq!(bound(Order::Key, 10), Duration::from_millis(100));
        assert_eq!(bound(Order::Key, 1_000), Duration::from_millis(10));
        assert_eq!(bound(Order::Unordered, 1), Duration::from_millis(10));
        assert_eq!(
            mode(Order::Unordered, 1).bound(&delays, 10_000),
            Duration::from_millis(1)
        );
    }
}
