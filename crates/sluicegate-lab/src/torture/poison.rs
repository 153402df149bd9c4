//! `sluice-lab torture poison`: bad input mixed into good records under a key-ordered pipeline.
//!
//! Each key's records are produced in sequence at a steady rate; a record's fate is fixed by
//! its key and sequence number (about 2 % each of invalid UTF-8, not JSON, a handler panic, a
//! `Permanent` rejection; 1 % a handler that hangs past `--handler-timeout-ms`; a few
//! oversized records of `--oversized-bytes`, above the consumer's prefetch). The handler
//! refuses values over `--max-record-bytes` and undecodable ones with a `Permanent` error,
//! panics, hangs or rejects as the record's JSON asks, and succeeds on the rest.
//!
//! # Checks
//!
//! - every bad record reaches the failure handler once, with the expected
//!   [`FailureKind`] and reason text (`undecodable payload: invalid utf-8 ...`, the panic
//!   message, `still running after ...`, ...), and no good record does;
//! - nothing lost, per-key order of first handlings;
//! - no good record is held up longer than its key requires: its *delay*, from the later of
//!   its delivery and the end of its key's previous handler call (a hang ends at the handler
//!   timeout) to the start of its own, stays within `--delay-bound-ms`. Bad records of other
//!   keys, and of the same partition, must not delay it.
//!
//! `worst_pause_ms` is the worst such delay of a good record. The broker is an embedded one in
//! this process unless `--brokers` names another, so `peak_rss_bytes` includes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use sluicegate::pipeline::{Failed, FailureKind, Message, Permanent, Pipeline, ProcessingOrder};
use sluicegate::producer::{Producer, ProducerOptions};
use sluicegate::{ConsumerEngine, ConsumerOptions, EmbeddedBroker, Record};
use tokio::sync::watch;

use super::faults::wait_until;
use super::ledger::{tally, KeyedProducer, Ledger, RecordId};
use super::{CampaignArgs, CampaignReport};
use sluicegate_cli::tool::progress::thousands;
use sluicegate_cli::tool::{rss, topic};

/// How long the end of the run waits for the last records to be handled or failed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct PoisonArgs {
    #[command(flatten)]
    campaign: CampaignArgs,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=64))]
    partitions: i32,
    /// Keys; each key's records are produced in sequence.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    keys: u32,
    /// Records per key [default: 250, short: 80].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    records_per_key: Option<u64>,
    /// Records per second produced (all keys together).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// The pipeline's handler timeout; hanging records fail after it.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    handler_timeout_ms: u64,
    /// Keys that get one oversized record each (in the middle of the key's records).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=1000))]
    oversized_keys: u32,
    /// Size of an oversized record's value.
    #[arg(long, default_value_t = 1_572_864, value_parser = clap::value_parser!(u64).range(1..=8_000_000))]
    oversized_bytes: u64,
    /// The handler refuses values larger than this.
    #[arg(long, default_value_t = 262_144, value_parser = clap::value_parser!(u64).range(1..=8_000_000))]
    max_record_bytes: u64,
    /// Longest delay a good record may see beyond what its key requires.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    delay_bound_ms: u64,
}

/// What a record is made to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Good,
    InvalidUtf8,
    NotJson,
    Oversized,
    Panic,
    Hang,
    Reject,
}

impl Fate {
    /// The record's fate: a fixed mix spread over keys and sequence numbers.
    fn of(id: RecordId, args: &Plan) -> Fate {
        if id.key < args.oversized_keys && id.seq == args.per_key / 2 {
            return Fate::Oversized;
        }
        match (id.seq * 7 + u64::from(id.key) * 13) % 100 {
            0 | 1 => Fate::InvalidUtf8,
            2 | 3 => Fate::NotJson,
            4 | 5 => Fate::Panic,
            6 => Fate::Hang,
            7 | 8 => Fate::Reject,
            _ => Fate::Good,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Fate::Good => "good",
            Fate::InvalidUtf8 => "invalid utf-8",
            Fate::NotJson => "not json",
            Fate::Oversized => "oversized",
            Fate::Panic => "panic",
            Fate::Hang => "hang",
            Fate::Reject => "rejected",
        }
    }

    /// The value produced for a record of this fate.
    fn value(self, id: RecordId, plan: &Plan) -> Vec<u8> {
        match self {
            Fate::InvalidUtf8 => b"\xff\xfe not utf-8 \xc3\x28".to_vec(),
            Fate::NotJson => b"{not json".to_vec(),
            Fate::Oversized => vec![b'x'; plan.oversized_bytes],
            Fate::Good => action("ok", id),
            Fate::Panic => action("panic", id),
            Fate::Hang => action("hang", id),
            Fate::Reject => action("reject", id),
        }
    }

    /// The failure kind and a text the reason must contain; `None` for a good record.
    fn expected(self, id: RecordId, plan: &Plan) -> Option<(FailureKind, String)> {
        let name = format!("{}/{}", id.key_text(), id.seq);
        Some(match self {
            Fate::Good => return None,
            Fate::InvalidUtf8 => (
                FailureKind::Permanent,
                "undecodable payload: invalid utf-8".into(),
            ),
            Fate::NotJson => (
                FailureKind::Permanent,
                "undecodable payload: key must be a string".into(),
            ),
            Fate::Oversized => (
                FailureKind::Permanent,
                format!(
                    "oversized record: {} bytes, limit {}",
                    plan.oversized_bytes, plan.max_record_bytes
                ),
            ),
            Fate::Panic => (FailureKind::Panic, format!("poison record {name}")),
            Fate::Hang => (FailureKind::Timeout, "still running after".into()),
            Fate::Reject => (FailureKind::Permanent, format!("rejected {name}")),
        })
    }
}

fn action(action: &str, id: RecordId) -> Vec<u8> {
    format!(
        r#"{{"action":"{action}","key":{},"seq":{}}}"#,
        id.key, id.seq
    )
    .into_bytes()
}

/// The campaign's sizes, resolved from the flags.
#[derive(Debug, Clone)]
struct Plan {
    per_key: u64,
    oversized_keys: u32,
    oversized_bytes: usize,
    max_record_bytes: usize,
}

/// What the handlers saw besides the ledger: failures, and when each call ended.
#[derive(Default)]
struct Outcomes {
    /// Failures as the failure handler received them.
    failed: Mutex<Vec<(RecordId, FailureKind, String)>>,
    /// When each handler call ended (returned, panicked or was dropped at the timeout).
    ended: Mutex<HashMap<RecordId, Instant>>,
}

/// The campaign's handler state.
struct Campaign {
    ledger: Arc<Ledger>,
    outcomes: Outcomes,
    plan: Plan,
}

/// Records when a handler call ends, however it ends.
struct EndOfCall<'a> {
    outcomes: &'a Outcomes,
    id: RecordId,
}

impl Drop for EndOfCall<'_> {
    fn drop(&mut self) {
        let mut ended = self
            .outcomes
            .ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ended.insert(self.id, Instant::now());
    }
}

/// The handler: refuses oversized and undecodable values, then does what the JSON asks.
async fn handle(
    campaign: &Campaign,
    record: &Record,
) -> Result<(), sluicegate::pipeline::BoxError> {
    let Some(id) = RecordId::of(record) else {
        return Err(Permanent::new("a record without a campaign id").into());
    };
    campaign.ledger.handled(id);
    let _end = EndOfCall {
        outcomes: &campaign.outcomes,
        id,
    };
    let value = record.value.as_deref().unwrap_or_default();
    if value.len() > campaign.plan.max_record_bytes {
        return Err(Permanent::new(format!(
            "oversized record: {} bytes, limit {}",
            value.len(),
            campaign.plan.max_record_bytes
        ))
        .into());
    }
    let decoded = std::str::from_utf8(value)
        .map_err(|error| error.to_string())
        .and_then(|text| {
            serde_json::from_str::<serde_json::Value>(text).map_err(|error| error.to_string())
        })
        .map_err(|error| {
            Permanent::new(format!("undecodable payload: {}", error.to_lowercase()))
        })?;
    match decoded.get("action").and_then(serde_json::Value::as_str) {
        Some("ok") => Ok(()),
        Some("panic") => panic!("poison record {}/{}", id.key_text(), id.seq),
        Some("hang") => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        Some("reject") => {
            Err(Permanent::new(format!("rejected {}/{}", id.key_text(), id.seq)).into())
        }
        other => Err(Permanent::new(format!("unknown action {other:?}")).into()),
    }
}

pub fn run(args: PoisonArgs) -> anyhow::Result<()> {
    quiet_poison_panics();
    let report = crate::runtime()?.block_on(campaign(&args))?;
    args.campaign.finish(&report)
}

/// Keeps the campaign's own panics (`poison record ...`) off stderr; any other panic is
/// reported as usual.
fn quiet_poison_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload().downcast_ref::<String>();
        if !message.is_some_and(|text| text.starts_with("poison record ")) {
            report(info);
        }
    }));
}

async fn campaign(args: &PoisonArgs) -> anyhow::Result<CampaignReport> {
    let plan = Plan {
        per_key: args
            .records_per_key
            .unwrap_or(if args.campaign.short { 80 } else { 250 }),
        oversized_keys: args.oversized_keys.min(args.keys),
        oversized_bytes: usize::try_from(args.oversized_bytes)?,
        max_record_bytes: usize::try_from(args.max_record_bytes)?,
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let topic_name = format!("torture-poison-{}-{nanos}", std::process::id());
    let group = topic_name.clone();
    let (bootstrap, _embedded) = match &args.campaign.brokers {
        Some(brokers) => {
            let (given, name, partitions) = (brokers.clone(), topic_name.clone(), args.partitions);
            tokio::task::spawn_blocking(move || topic::create(&given, &name, partitions)).await??;
            (brokers.clone(), None)
        }
        None => {
            let broker = EmbeddedBroker::start(1).context("could not start the embedded broker")?;
            broker.create_topic(&topic_name, args.partitions)?;
            (broker.bootstrap_servers(), Some(broker))
        }
    };
    let handler_timeout = Duration::from_millis(args.handler_timeout_ms);
    let options = ConsumerOptions::new(&bootstrap, &group, [&topic_name])
        .session_timeout(Duration::from_secs(6))
        .max_poll_interval(Duration::from_secs(10))
        .commit_interval(Duration::from_millis(500));
    let engine = ConsumerEngine::start(options)
        .await
        .context("could not start the consumer engine")?;
    let ledger = Arc::new(Ledger::default());
    let campaign = Arc::new(Campaign {
        ledger: ledger.clone(),
        outcomes: Outcomes::default(),
        plan: plan.clone(),
    });
    let pipeline = Pipeline::builder(campaign.clone())
        .order(ProcessingOrder::Key)
        .concurrency(64)
        .handler_timeout(handler_timeout)
        .handle_message(
            |campaign: Arc<Arc<Campaign>>, message: Message| async move {
                handle(&campaign, message.data()).await.map(|()| message)
            },
        )
        .handle_failed(
            |campaign: Arc<Arc<Campaign>>, failed: Vec<Failed>| async move {
                let mut seen = campaign
                    .outcomes
                    .failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for failure in failed {
                    if let Some(id) = RecordId::of(failure.message.data()) {
                        seen.push((id, failure.reason.kind, failure.reason.description));
                    }
                }
            },
        )
        .source(engine)
        .start()?;

    let producer = Producer::new(
        ProducerOptions::new()
            .bootstrap_servers(&bootstrap)
            .delivery_timeout(Duration::from_secs(60))
            .librdkafka(
                "message.max.bytes",
                (plan.oversized_bytes + 65_536).to_string(),
            ),
    );
    let (_stop, stopped) = watch::channel(false);
    let value_plan = plan.clone();
    let started = Instant::now();
    let mut producing = KeyedProducer {
        producer: producer.clone(),
        topic: topic_name.clone(),
        keys: args.keys,
        rate_per_key: f64::from(args.rate) / f64::from(args.keys),
        per_key: Some(plan.per_key),
    }
    .spawn(
        ledger.clone(),
        Arc::new(move |id| Fate::of(id, &value_plan).value(id, &value_plan)),
        stopped,
    );
    while producing.join_next().await.is_some() {}
    // Every record handled, and every handled record finished (succeeded or failed).
    let settled = || {
        let stats = pipeline.stats();
        ledger.all_handled() && stats.processed + stats.failed >= stats.received
    };
    let drained = wait_until(DRAIN_TIMEOUT, settled).await;
    let end = Instant::now();
    let stats = pipeline.stats();
    pipeline.shutdown().await;
    let undelivered = producer.shutdown(Duration::from_secs(10)).await.undelivered;

    let (produced, handled) = ledger.snapshot();
    let figures = tally(&produced, &handled, end);
    let mut report = CampaignReport::new("poison");
    report.produced = figures.produced;
    report.processed = figures.processed;
    report.lost = figures.lost;
    report.duplicated = figures.duplicated;
    report.order_violations = figures.order_violations;
    report.peak_rss_bytes = rss::peak_bytes().unwrap_or(0);

    let failed = campaign
        .outcomes
        .failed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let ended = campaign
        .outcomes
        .ended
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let verdicts = judge_failures(&produced, &failed, &plan);
    let delays = good_delays(&produced, &handled, &ended, &plan);
    let worst_delay = delays
        .iter()
        .map(|(_, delay)| *delay)
        .max()
        .unwrap_or_default();
    report.worst_pause_ms = worst_delay.as_millis() as u64;

    report.note(
        "broker",
        args.campaign
            .brokers
            .clone()
            .unwrap_or_else(|| "embedded, in this process".into()),
    );
    report.note(
        "topic",
        format!(
            "{} partitions, {} keys x {} records, {} records/s",
            args.partitions, args.keys, plan.per_key, args.rate
        ),
    );
    let mut mix: Vec<(Fate, u64)> = Vec::new();
    for id in produced.keys() {
        let fate = Fate::of(*id, &plan);
        match mix.iter_mut().find(|(known, _)| *known == fate) {
            Some((_, count)) => *count += 1,
            None => mix.push((fate, 1)),
        }
    }
    mix.sort_by_key(|(fate, _)| fate.label());
    report.note(
        "mix",
        mix.iter()
            .map(|(fate, count)| format!("{} {}", thousands(*count), fate.label()))
            .collect::<Vec<_>>()
            .join(", "),
    );
    report.note(
        "handler timeout",
        format!("{} ms", handler_timeout.as_millis()),
    );
    report.note(
        "pipeline",
        format!(
            "{} succeeded, {} failed",
            thousands(stats.processed),
            thousands(stats.failed)
        ),
    );
    report.note(
        "delivery failures",
        thousands(ledger.delivery_failures() + undelivered as u64),
    );
    report.note("run time", format!("{} s", started.elapsed().as_secs()));

    report.check_delivery();
    report.check(
        "bad records failed with their reason",
        verdicts.wrong.is_empty() && verdicts.missing == 0 && verdicts.repeated == 0,
        format!(
            "{} failed as expected; {} missing, {} repeated, {} wrong{}",
            thousands(verdicts.right),
            thousands(verdicts.missing),
            thousands(verdicts.repeated),
            thousands(verdicts.wrong.len() as u64),
            verdicts
                .wrong
                .first()
                .map_or(String::new(), |first| format!(" (e.g. {first})")),
        ),
    );
    let bound = Duration::from_millis(args.delay_bound_ms);
    report.check(
        "good records not held up",
        worst_delay <= bound && drained,
        format!(
            "worst delay of {} good records {} ms <= {} ms; all settled: {drained}",
            thousands(delays.len() as u64),
            worst_delay.as_millis(),
            bound.as_millis()
        ),
    );
    Ok(report)
}

/// How the failures compare with the records' fates.
#[derive(Debug, Default)]
struct FailureVerdicts {
    right: u64,
    /// Bad records that never reached the failure handler.
    missing: u64,
    /// Failure handler calls beyond the first for a record.
    repeated: u64,
    /// Failures of the wrong kind or text, and good records that failed.
    wrong: Vec<String>,
}

fn judge_failures(
    produced: &HashMap<RecordId, Instant>,
    failed: &[(RecordId, FailureKind, String)],
    plan: &Plan,
) -> FailureVerdicts {
    let mut verdicts = FailureVerdicts::default();
    let mut seen: HashMap<RecordId, u32> = HashMap::new();
    for (id, kind, description) in failed {
        *seen.entry(*id).or_default() += 1;
        if seen[id] > 1 {
            verdicts.repeated += 1;
            continue;
        }
        match Fate::of(*id, plan).expected(*id, plan) {
            Some((want, text)) if want == *kind && description.contains(&text) => {
                verdicts.right += 1
            }
            expected => verdicts.wrong.push(format!(
                "{}/{}: {kind:?} `{description}`, expected {expected:?}",
                id.key_text(),
                id.seq
            )),
        }
    }
    verdicts.missing = produced
        .keys()
        .filter(|id| Fate::of(**id, plan) != Fate::Good && !seen.contains_key(id))
        .count() as u64;
    verdicts
}

/// Each good record's delay beyond what its key requires: from the later of its delivery and
/// the end of its key's previous handler call to the start of its own first call.
fn good_delays(
    produced: &HashMap<RecordId, Instant>,
    handled: &[(RecordId, Instant)],
    ended: &HashMap<RecordId, Instant>,
    plan: &Plan,
) -> Vec<(RecordId, Duration)> {
    let mut first: HashMap<RecordId, Instant> = HashMap::new();
    for (id, at) in handled {
        first.entry(*id).or_insert(*at);
    }
    produced
        .iter()
        .filter(|(id, _)| Fate::of(**id, plan) == Fate::Good)
        .filter_map(|(id, delivered)| {
            let started = first.get(id)?;
            let previous = id
                .seq
                .checked_sub(1)
                .and_then(|seq| ended.get(&RecordId { key: id.key, seq }));
            let ready = previous.map_or(*delivered, |ended| (*delivered).max(*ended));
            Some((*id, started.saturating_duration_since(ready)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            per_key: 100,
            oversized_keys: 2,
            oversized_bytes: 10,
            max_record_bytes: 5,
        }
    }

    #[test]
    fn the_mix_has_every_fate() {
        let plan = plan();
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for key in 0..4 {
            for seq in 0..plan.per_key {
                *counts
                    .entry(Fate::of(RecordId { key, seq }, &plan).label())
                    .or_default() += 1;
            }
        }
        assert_eq!(counts["oversized"], 2);
        assert_eq!(counts["hang"], 4);
        assert!(counts["good"] > 300, "{counts:?}");
        assert_eq!(counts.len(), 7, "{counts:?}");
    }

    #[test]
    fn failures_are_judged_by_kind_and_text() {
        let plan = plan();
        let now = Instant::now();
        let bad = (0..100)
            .map(|seq| RecordId { key: 0, seq })
            .find(|id| Fate::of(*id, &plan) == Fate::Panic)
            .unwrap();
        let good = RecordId { key: 0, seq: 99 };
        assert_eq!(Fate::of(good, &plan), Fate::Good);
        let produced: HashMap<_, _> = [(bad, now), (good, now)].into();
        let right = (
            bad,
            FailureKind::Panic,
            format!("poison record k000/{}", bad.seq),
        );
        let verdicts = judge_failures(&produced, &[right.clone(), right.clone()], &plan);
        assert_eq!(
            (verdicts.right, verdicts.repeated, verdicts.missing),
            (1, 1, 0)
        );
        assert!(verdicts.wrong.is_empty());
        let verdicts = judge_failures(&produced, &[(good, FailureKind::Error, "x".into())], &plan);
        assert_eq!((verdicts.missing, verdicts.wrong.len()), (1, 1));
    }
}
