//! `sluice dlq replay`: sends dead letters back to be processed again, and waits until the
//! brokers have them.
//!
//! `--to input` (the default) writes each back to its input topic as a fresh record: its
//! key, value and own headers, without the retry history, so it starts again at stage 0.
//! `--to stage-1` writes it to retry topic 1 with its history kept, due at once: it is
//! handled as attempt 2 by stage 1.
//!
//! The dead letters stay in the dead-letter topic (Kafka deletes nothing on request):
//! replaying the same ones twice sends them twice. `--offsets` and `--partition` pick exact
//! ones; `sluice dlq inspect` with the same options shows what would be sent.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use clap::{Args, ValueEnum};
use futures_util::StreamExt as _;
use sluicegate::producer::{ProduceError, ProduceRecord, Producer};
use sluicegate::retry::{without_retry_headers, RetryHeaders};
use sluicegate::Header;

use super::read::{read, DeadLetter};
use super::select::Selection;
use super::TaskArgs;
use crate::config::TaskPlan;
use crate::handlers::registry::Registry;
use crate::out;
use crate::tool::exit::usage;
use crate::tool::progress::Progress;

/// Deliveries awaited at once.
const IN_FLIGHT: usize = 64;
/// How long the producer may take to deliver what is left when replaying ends.
const SHUTDOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    task: TaskArgs,
    /// Where the dead letters go.
    #[arg(long, value_enum, default_value_t = Destination::Input)]
    to: Destination,
    #[command(flatten)]
    selection: Selection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Destination {
    /// The input topic, as fresh records (stage 0 handles them as attempt 1).
    Input,
    /// Retry topic 1, due now, history kept (stage 1 handles them as attempt 2).
    #[value(name = "stage-1")]
    Stage1,
}

/// A dead letter on its way back: where it goes and its headers there.
struct Replay<'a> {
    letter: &'a DeadLetter,
    topic: String,
    headers: Vec<Header>,
}

pub fn run(args: ReplayArgs, registry: &Registry) -> anyhow::Result<()> {
    let plan = args.task.plan(registry)?;
    if args.to == Destination::Stage1 && (plan.in_place || plan.retries() == 0) {
        return Err(usage(format!(
            "--to stage-1: task `{}` has no retry topics ({})",
            plan.name,
            if plan.in_place {
                "it retries in place"
            } else {
                "it makes no retries"
            }
        )));
    }
    let letters = read(&plan, &args.selection)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        });
    let mut skipped = Vec::new();
    let replays: Vec<Replay<'_>> = letters
        .iter()
        .filter_map(|letter| match destination(&plan, args.to, letter, now) {
            Ok(replay) => Some(replay),
            Err(problem) => {
                skipped.push(format!(
                    "{} {}@{}: {problem}",
                    letter.topic, letter.partition, letter.offset
                ));
                None
            }
        })
        .collect();

    let runtime = crate::runtime()?;
    let producer = Producer::new(plan.producer.clone().client_id("sluice-dlq-replay"));
    producer.start().map_err(|error| match error {
        ProduceError::Options(problem) => usage(problem.to_string()),
        other => anyhow!(other),
    })?;
    let mut progress = Progress::new("replaying", replays.len() as u64).unit("dead letters");
    let outcomes = runtime.block_on(send(&producer, &replays, &mut progress));
    runtime.block_on(producer.shutdown(SHUTDOWN));
    progress.finish(outcomes.len() as u64);

    let mut replayed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (replay, outcome) in replays.iter().zip(outcomes) {
        match outcome {
            Ok(()) => *replayed.entry(replay.topic.as_str()).or_default() += 1,
            Err(error) => failures.push(error),
        }
    }
    let places: Vec<String> = replayed
        .iter()
        .map(|(topic, count)| format!("{count} to {topic}"))
        .collect();
    out!(
        "sluice dlq replay: replayed {} of {} dead letters of task `{}`{}{}",
        replayed.values().sum::<usize>(),
        letters.len(),
        plan.name,
        if places.is_empty() { "" } else { ": " },
        places.join(", ")
    )?;
    for problem in &skipped {
        eprintln!("sluice dlq replay: skipped {problem}");
    }
    if let Some(first) = failures.first() {
        bail!(
            "{} of {} dead letters were not replayed (first: {first})",
            failures.len(),
            replays.len()
        );
    }
    if !skipped.is_empty() {
        bail!("{} dead letters could not be replayed", skipped.len());
    }
    Ok(())
}

/// Where `letter` goes and with which headers, or why it cannot go back.
fn destination<'a>(
    plan: &TaskPlan,
    to: Destination,
    letter: &'a DeadLetter,
    now: i64,
) -> Result<Replay<'a>, String> {
    let history = match &letter.history {
        Ok(Some(history)) => history,
        Ok(None) => return Err("no retry headers: its input topic is unknown".to_owned()),
        Err(problem) => return Err(problem.to_string()),
    };
    let topics = plan
        .topics
        .iter()
        .find(|topics| topics.input() == history.original_topic)
        .ok_or_else(|| {
            format!(
                "its input topic `{}` is not one of the task's",
                history.original_topic
            )
        })?;
    let mut headers = without_retry_headers(&letter.headers);
    let topic = match to {
        Destination::Input => topics.input().to_owned(),
        Destination::Stage1 => {
            headers.extend(
                RetryHeaders {
                    attempt: 2,
                    due_ms: now,
                    ..history.clone()
                }
                .to_headers(),
            );
            topics.retry(1)
        }
    };
    Ok(Replay {
        letter,
        topic,
        headers,
    })
}

/// Produces every replay, awaiting the deliveries; the outcomes are in the replays' order.
/// `progress` counts the deliveries awaited.
async fn send(
    producer: &Producer,
    replays: &[Replay<'_>],
    progress: &mut Progress,
) -> Vec<Result<(), String>> {
    let mut deliveries = futures_util::stream::iter(replays)
        .map(|replay| async move {
            let letter = replay.letter;
            let mut record = match &letter.value {
                Some(value) => ProduceRecord::new(value),
                None => ProduceRecord::tombstone(),
            };
            if let Some(key) = &letter.key {
                record = record.key(key);
            }
            for header in &replay.headers {
                record = record.header(&header.key, header.value.as_deref());
            }
            producer
                .produce(&replay.topic, record)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
        .buffered(IN_FLIGHT);
    let mut outcomes = Vec::with_capacity(replays.len());
    while let Some(outcome) = deliveries.next().await {
        outcomes.push(outcome);
        progress.update(outcomes.len() as u64);
    }
    outcomes
}
