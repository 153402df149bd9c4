//! Reading a task's dead-letter topics from their beginning to their end as it is now, one
//! partition after another, without a consumer group (nothing is joined or committed).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use sluicegate::retry::{RetryHeaderError, RetryHeaders};
use sluicegate::Header;

use super::select::Selection;
use crate::config::TaskPlan;
use crate::console::consume::raw_headers;
use crate::console::{ClusterArgs, QuietContext};

/// How long the brokers may take to answer, and a partition may go without a record
/// before its end, before reading gives up.
const TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// One record of a dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The dead-letter topic.
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// When it was written there (ms since the epoch), if the broker says.
    pub timestamp_ms: Option<i64>,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value.
    pub value: Option<Vec<u8>>,
    /// Every header: the original ones and the retry history.
    pub headers: Vec<Header>,
    /// The retry history (`None`: not written by Sluicegate).
    pub history: Result<Option<RetryHeaders>, RetryHeaderError>,
}

/// The cluster of `plan`, as the console commands reach it.
fn cluster(plan: &TaskPlan) -> ClusterArgs {
    ClusterArgs {
        brokers: plan.cluster.bootstrap_servers.clone(),
        connect_timeout: Duration::from_secs(5),
        properties: plan
            .cluster
            .properties
            .iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
    }
}

/// The dead letters of `plan` that `selection` picks, by topic, partition and offset. A
/// dead-letter topic that does not exist yet has none.
pub fn read(plan: &TaskPlan, selection: &Selection) -> anyhow::Result<Vec<DeadLetter>> {
    let cluster = cluster(plan);
    let probe = cluster.probe()?;
    let mut config = cluster.client_config();
    config
        .set("group.id", "sluice-dlq")
        .set("client.id", "sluice-dlq")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    for (key, value) in &cluster.properties {
        config.set(key, value);
    }
    let consumer: BaseConsumer<QuietContext> = cluster.create(&config)?;
    let mut topics: Vec<String> = Vec::new();
    for topic in plan.topics.iter().map(|topics| topics.dead_letter()) {
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    let mut letters = Vec::new();
    for topic in topics {
        let Some(partitions) = probe.partitions_of(&topic)? else {
            tracing::info!(topic, "no dead-letter topic yet");
            continue;
        };
        for partition in partitions {
            if selection
                .partition
                .is_some_and(|wanted| wanted != partition)
            {
                continue;
            }
            read_partition(&consumer, &topic, partition, selection, &mut letters)?;
            if selection.is_full(letters.len()) {
                return Ok(letters);
            }
        }
    }
    Ok(letters)
}

/// Appends the picked records of `topic`/`partition` up to its current end.
fn read_partition(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    partition: i32,
    selection: &Selection,
    letters: &mut Vec<DeadLetter>,
) -> anyhow::Result<()> {
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, TIMEOUT)
        .with_context(|| format!("could not read the offsets of {topic}/{partition}"))?;
    let (start, end) = match selection.offsets {
        Some(range) => (range.first.max(low), range.last.saturating_add(1).min(high)),
        None => (low, high),
    };
    if start >= end {
        return Ok(());
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer
        .assign(&assignment)
        .with_context(|| format!("could not read {topic}/{partition}"))?;
    let mut last_progress = Instant::now();
    loop {
        match consumer.poll(POLL) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                if message.topic() != topic || message.partition() != partition {
                    continue;
                }
                if message.offset() >= end {
                    break;
                }
                let letter = dead_letter(&message);
                if selection.matches(&letter) {
                    letters.push(letter);
                    if selection.is_full(letters.len()) {
                        break;
                    }
                }
                if message.offset() + 1 >= end {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(error)) => tracing::debug!(%error, topic, partition, "reading"),
            None => {}
        }
        if last_progress.elapsed() > TIMEOUT {
            let detail = consumer.context().last_problem().unwrap_or_default();
            bail!("reading {topic}/{partition} stalled before offset {end}: {detail}");
        }
    }
    Ok(())
}

fn dead_letter(message: &BorrowedMessage<'_>) -> DeadLetter {
    let headers = headers(message);
    DeadLetter {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        history: RetryHeaders::from_headers(&headers),
        headers,
    }
}

/// A message's headers, names converted lossily (read as `sluice consume` reads them: rdkafka's
/// own reader panics on a header name that is not UTF-8).
fn headers(message: &BorrowedMessage<'_>) -> Vec<Header> {
    raw_headers(message)
        .into_iter()
        .map(|(name, value)| Header {
            key: String::from_utf8_lossy(name).into_owned(),
            value: value.map(<[u8]>::to_vec),
        })
        .collect()
}
