//! Reading a task's dead-letter topics from their beginning to their end as it is now, one
//! partition after another, through the library's [`TopicReader`] without a consumer group
//! (nothing is joined or committed).

use std::time::{Duration, Instant};

use anyhow::bail;
use sluicegate::admin::Admin;
use sluicegate::reader::{ReadEvent, ReadFrom, ReadUntil, ReaderOptions, TopicReader};
use sluicegate::retry::{RetryHeaderError, RetryHeaders};
use sluicegate::{ClusterOptions, Header, Record};

use super::select::Selection;
use crate::config::TaskPlan;
use crate::console::{cause, ClusterArgs};

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
    let options = cluster
        .options()
        .client_id("sluice-dlq")
        .request_timeout(TIMEOUT);
    let admin = cluster.admin(options.clone())?;
    let mut topics: Vec<String> = Vec::new();
    for topic in plan.topics.iter().map(|topics| topics.dead_letter()) {
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    let mut letters = Vec::new();
    for topic in topics {
        let Some(partitions) = cluster.partitions_of(&admin, &topic)? else {
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
            read_partition(
                &cluster,
                &admin,
                &options,
                &topic,
                partition,
                selection,
                &mut letters,
            )?;
            if selection.is_full(letters.len()) {
                return Ok(letters);
            }
        }
    }
    Ok(letters)
}

/// Appends the picked records of `topic`/`partition` up to its current end.
fn read_partition(
    cluster: &ClusterArgs,
    admin: &Admin,
    options: &ClusterOptions,
    topic: &str,
    partition: i32,
    selection: &Selection,
    letters: &mut Vec<DeadLetter>,
) -> anyhow::Result<()> {
    let ends = admin.watermarks(topic, partition)?;
    let (start, end) = match selection.offsets {
        Some(range) => (
            range.first.max(ends.low),
            range.last.saturating_add(1).min(ends.high),
        ),
        None => (ends.low, ends.high),
    };
    if start >= end {
        return Ok(());
    }
    let mut reader = TopicReader::open(
        ReaderOptions::new(options.clone(), topic)
            .partitions([partition])
            .from(ReadFrom::Offset(start))
            .until(ReadUntil::End),
    )
    .map_err(|error| cluster.read_error(error))?;
    let mut last_progress = Instant::now();
    while !reader.is_finished() {
        match reader.next(POLL) {
            Ok(Some(ReadEvent::Record { record, .. })) => {
                last_progress = Instant::now();
                if record.offset >= end {
                    break;
                }
                let offset = record.offset;
                let letter = dead_letter(record);
                if selection.matches(&letter) {
                    letters.push(letter);
                    if selection.is_full(letters.len()) {
                        break;
                    }
                }
                if offset + 1 >= end {
                    break;
                }
            }
            Ok(Some(ReadEvent::PartitionEnd { .. })) => break,
            Ok(_) => {}
            Err(error) => tracing::debug!(error = %cause(&error), topic, partition, "reading"),
        }
        if last_progress.elapsed() > TIMEOUT {
            let detail = reader.last_problem().unwrap_or_default();
            bail!("reading {topic}/{partition} stalled before offset {end}: {detail}");
        }
    }
    Ok(())
}

/// A dead letter: the record, its headers (names converted lossily, as the library reads them)
/// and the retry history they carry.
fn dead_letter(record: Record) -> DeadLetter {
    let headers: Vec<Header> = record.headers;
    DeadLetter {
        topic: record.topic.to_string(),
        partition: record.partition,
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
        key: record.key,
        value: record.value,
        history: RetryHeaders::from_headers(&headers),
        headers,
    }
}
