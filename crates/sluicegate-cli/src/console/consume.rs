//! `sluice consume`: a topic's records on stdout, through a plain rdkafka consumer polled on
//! this thread.
//!
//! Without `--group` the consumer assigns itself the partitions at the `--from` offsets and
//! commits nothing. With `--group` it joins the group, resumes from the group's committed
//! offsets (`--from` only says where partitions without one start) and commits what it has
//! printed: an offset is stored only once its record was flushed to stdout, so a record is
//! printed at least once across runs.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

use super::json::{Bytes, JsonHeader, JsonRecord};
use super::lines::LineFormat;
use super::start::StartFrom;
use super::{parse_topic, stop_on_signal, ClusterArgs, QuietContext, Separator};
use crate::exit::usage;

/// How long one poll waits when nothing is left to flush.
const POLL: Duration = Duration::from_millis(100);
/// Consumer errors (the broker going away...) are logged at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
#[command(after_help = "\
Output: with --format value (the default) each record's value, byte for byte, then \\n; a null \
value prints as an empty line and a value that holds \\n spans lines, so use --format json when \
that matters. --key-separator SEP prints KEY<SEP>VALUE (records without a key: VALUE alone) and \
--print-headers starts each line with NAME=VALUE,...<TAB>: the format `sluice produce` reads with \
the same options.

--format json prints one object per line: {\"topic\", \"partition\", \"offset\", \"timestamp\" \
(ms since the epoch or null), \"timestamp_type\" (create_time, log_append_time or null), \"key\", \
\"value\", \"headers\": [{\"key\", \"value\"}, ...]}. Keys, values and header names and values \
are a JSON string when their bytes are UTF-8, {\"base64\": \"...\"} when they are not, and null \
when absent.

Start (--from, for each partition): beginning; end (the default: only new records, like \
kafka-console-consumer); offset:N (clamped to what the partition keeps); offset:-N (N records \
before the end); time:T, the first record at or after T, an RFC 3339 time \
(2024-05-01T12:00:00Z) or ms since the epoch (brokers answer this from their time index; \
partitions with no such record start at the end).

Without --group nothing is committed and every partition is read (or only --partition). With \
--group G the consumer joins group G, resumes where it committed and commits what it printed; \
--from then only applies to partitions without a committed offset, so it must be beginning or \
end.

Runs until --count records were printed, every partition was read to its end (--exit-at-end), \
or Ctrl-C. Exit status: 0 ok (a closed stdout, as with `| head`, is ok too); 1 when the brokers \
did not answer or the topic or partition does not exist; 2 for an invalid option.

Examples:
  sluice consume --topic orders --from beginning --exit-at-end > orders.txt
  sluice consume -b broker:9092 --topic orders --from time:2024-05-01T00:00:00Z --format json | jq .value
  sluice consume --topic orders --group audit --count 100")]
pub struct ConsumeArgs {
    /// The topic to read.
    #[arg(long, short = 't', value_parser = parse_topic)]
    topic: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Where to start in each partition: beginning, end, offset:N, offset:-N or time:T.
    #[arg(long, short = 'o', value_name = "POSITION", default_value = "end")]
    from: StartFrom,
    /// Stop after printing this many records.
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop once every partition was read to its end.
    #[arg(long, short = 'e')]
    exit_at_end: bool,
    /// Read only this partition (not with --group).
    #[arg(long, short = 'p', value_parser = clap::value_parser!(i32).range(0..))]
    partition: Option<i32>,
    /// Consume as a member of this consumer group, committing what was printed.
    #[arg(long, short = 'g', value_name = "GROUP")]
    group: Option<String>,
    /// How to print records.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Value)]
    format: Format,
    /// With --format value: print the key, then SEP, before the value.
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<Separator>,
    /// With --format value: start each line with the headers (NAME=VALUE,...) and a tab.
    #[arg(long)]
    print_headers: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The value (optionally key and headers) as raw bytes, one record per line.
    Value,
    /// One JSON object per record and line.
    Json,
}

impl ConsumeArgs {
    /// Checks the combinations clap cannot.
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(group) = &self.group {
            if group.trim().is_empty() {
                return Err(usage("--group must not be empty"));
            }
            if !matches!(self.from, StartFrom::Beginning | StartFrom::End) {
                return Err(usage(format!(
                    "--from {} cannot be used with --group: the group resumes from its committed \
                     offsets, and --from beginning|end only says where partitions without one start",
                    self.from
                )));
            }
            if self.partition.is_some() {
                return Err(usage(
                    "--partition cannot be used with --group: the group assigns the partitions",
                ));
            }
        }
        if self.format == Format::Json && (self.key_separator.is_some() || self.print_headers) {
            return Err(usage(
                "--key-separator and --print-headers go with --format value; JSON has the key \
                 and headers already",
            ));
        }
        Ok(())
    }
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    args.validate()?;
    let cluster = &args.cluster;
    let mut config = cluster.client_config();
    config
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", args.exit_at_end.to_string())
        .set(
            "auto.offset.reset",
            if args.from == StartFrom::Beginning {
                "earliest"
            } else {
                "latest"
            },
        )
        .set("client.id", "sluice-consume");
    match &args.group {
        Some(group) => config
            .set("group.id", group)
            .set("enable.auto.commit", "true"),
        // librdkafka assigns only with a group id; this one is never joined nor committed to.
        None => config
            .set("group.id", "sluice-consume")
            .set("enable.auto.commit", "false"),
    };
    for (key, value) in &cluster.properties {
        config.set(key, value);
    }
    let consumer: BaseConsumer<QuietContext> = cluster.create(&config)?;
    let Some(mut partitions) = cluster.probe()?.partitions_of(&args.topic)? else {
        bail!(
            "topic `{}` does not exist on {}",
            args.topic,
            cluster.brokers
        );
    };
    if let Some(partition) = args.partition {
        if !partitions.contains(&partition) {
            bail!(
                "topic `{}` has no partition {partition} (it has {} partitions)",
                args.topic,
                partitions.len()
            );
        }
        partitions = vec![partition];
    }
    match &args.group {
        Some(_) => consumer
            .subscribe(&[&args.topic])
            .with_context(|| format!("could not subscribe to `{}`", args.topic))?,
        None => {
            let start = start_offsets(&consumer, cluster, &args.topic, &partitions, args.from)?;
            consumer
                .assign(&start)
                .with_context(|| format!("could not assign the partitions of `{}`", args.topic))?;
        }
    }

    let runtime = crate::runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(&runtime, stop.clone(), None)?;
    let outcome = print_records(&args, &consumer, &stop);
    if args.group.is_some() {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "could not commit the printed records' offsets"),
        }
    }
    outcome
}

/// The offset each partition starts at.
fn start_offsets(
    consumer: &BaseConsumer<QuietContext>,
    cluster: &ClusterArgs,
    topic: &str,
    partitions: &[i32],
    from: StartFrom,
) -> anyhow::Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    let timeout = cluster.connect_timeout.max(Duration::from_secs(5));
    match from {
        StartFrom::Beginning | StartFrom::End => {
            let offset = if from == StartFrom::Beginning {
                Offset::Beginning
            } else {
                Offset::End
            };
            for &partition in partitions {
                list.add_partition_offset(topic, partition, offset)?;
            }
        }
        StartFrom::Offset(_) | StartFrom::BeforeEnd(_) => {
            for &partition in partitions {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, timeout)
                    .with_context(|| {
                        format!("could not read the offsets of {topic}/{partition}")
                    })?;
                let wanted = match from {
                    StartFrom::Offset(offset) => offset,
                    StartFrom::BeforeEnd(records) => high.saturating_sub(records),
                    _ => high,
                };
                list.add_partition_offset(
                    topic,
                    partition,
                    Offset::Offset(wanted.clamp(low, high)),
                )?;
            }
        }
        StartFrom::Time(millis) => {
            let mut query = TopicPartitionList::new();
            for &partition in partitions {
                query.add_partition_offset(topic, partition, Offset::Offset(millis))?;
            }
            let found = consumer
                .offsets_for_times(query, timeout)
                .with_context(|| {
                    format!("could not look up the offsets of `{topic}` at {millis} ms")
                })?;
            for element in found.elements() {
                // No record at or after the time: librdkafka answers the end.
                let offset = match element.offset() {
                    Offset::Offset(offset) if offset >= 0 => Offset::Offset(offset),
                    _ => Offset::End,
                };
                list.add_partition_offset(topic, element.partition(), offset)?;
            }
        }
    }
    Ok(list)
}

/// Polls and prints until the count, the end, Ctrl-C or a closed stdout.
fn print_records(
    args: &ConsumeArgs,
    consumer: &BaseConsumer<QuietContext>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let line_format = LineFormat {
        headers: args.print_headers,
        key_separator: args
            .key_separator
            .as_ref()
            .map(|separator| separator.0.clone()),
    };
    let mut line = Vec::new();
    let mut printed = 0u64;
    let mut unflushed = false;
    // Group mode: the next offset of each partition whose records are printed but not flushed.
    let mut to_store: BTreeMap<i32, i64> = BTreeMap::new();
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut last_error_log: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) || args.count.is_some_and(|count| printed >= count) {
            break;
        }
        match consumer.poll(if unflushed { Duration::ZERO } else { POLL }) {
            None => {
                if unflushed {
                    flush(&mut out, consumer, &args.topic, &mut to_store)?;
                    unflushed = false;
                }
            }
            Some(Ok(message)) => {
                line.clear();
                let headers = raw_headers(&message);
                match args.format {
                    Format::Value => {
                        line_format.write(&mut line, &headers, message.key(), message.payload())
                    }
                    Format::Json => {
                        write_json(&mut line, &message, &headers)?;
                    }
                }
                out.write_all(&line)?;
                printed += 1;
                unflushed = true;
                at_end.remove(&message.partition());
                if args.group.is_some() {
                    to_store.insert(message.partition(), message.offset() + 1);
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
                if args.exit_at_end && every_partition_at_end(consumer, &at_end) {
                    break;
                }
            }
            Some(Err(error)) => {
                if last_error_log.is_none_or(|last| last.elapsed() >= ERROR_LOG_INTERVAL) {
                    last_error_log = Some(Instant::now());
                    match consumer.context().last_problem() {
                        Some(detail) => tracing::warn!(%error, detail, "consuming"),
                        None => tracing::warn!(%error, "consuming"),
                    }
                }
            }
        }
    }
    flush(&mut out, consumer, &args.topic, &mut to_store)
}

/// Whether every assigned partition was read to its end (never with nothing assigned yet).
fn every_partition_at_end(consumer: &BaseConsumer<QuietContext>, at_end: &BTreeSet<i32>) -> bool {
    match consumer.assignment() {
        Ok(assignment) => {
            let elements = assignment.elements();
            !elements.is_empty() && elements.iter().all(|e| at_end.contains(&e.partition()))
        }
        Err(_) => false,
    }
}

/// Flushes stdout, then (group mode) stores the next offsets after what was flushed, for the
/// next commit.
fn flush(
    out: &mut impl std::io::Write,
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    to_store: &mut BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    out.flush()?;
    if to_store.is_empty() {
        return Ok(());
    }
    let mut next = TopicPartitionList::new();
    for (partition, offset) in std::mem::take(to_store) {
        next.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    // Fails only for a partition revoked meanwhile; its next owner prints those again.
    if let Err(error) = consumer.store_offsets(&next) {
        tracing::debug!(%error, "offsets not stored");
    }
    Ok(())
}

fn write_json(
    line: &mut Vec<u8>,
    message: &BorrowedMessage<'_>,
    headers: &[(&[u8], Option<&[u8]>)],
) -> anyhow::Result<()> {
    let (timestamp, timestamp_type) = match message.timestamp() {
        Timestamp::NotAvailable => (None, None),
        Timestamp::CreateTime(millis) => (Some(millis), Some("create_time")),
        Timestamp::LogAppendTime(millis) => (Some(millis), Some("log_append_time")),
    };
    let record = JsonRecord {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp,
        timestamp_type,
        key: Bytes(message.key()),
        value: Bytes(message.payload()),
        headers: headers
            .iter()
            .map(|(key, value)| JsonHeader {
                key: Bytes(Some(key)),
                value: Bytes(*value),
            })
            .collect(),
    };
    serde_json::to_writer(&mut *line, &record).context("could not encode a record as JSON")?;
    line.push(b'\n');
    Ok(())
}

/// A message's headers as (name, value) bytes, in order.
///
/// rdkafka's `Headers::get` panics on a header name that is not UTF-8 (it unwraps the
/// conversion), and nothing stops a producer from writing one, so this reads the headers
/// through librdkafka directly.
pub(crate) fn raw_headers<'m>(
    message: &'m BorrowedMessage<'_>,
) -> Vec<(&'m [u8], Option<&'m [u8]>)> {
    use rdkafka::bindings as rd;
    let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `message.ptr()` is the live rd_kafka_message_t that `message` owns. On success
    // librdkafka points `headers` at the message's own header list, which lives (unchanged,
    // as nothing here modifies it) as long as the message; we only read it while `message`
    // is borrowed for 'm.
    let error = unsafe { rd::rd_kafka_message_headers(message.ptr(), &mut headers) };
    if error != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
        return Vec::new();
    }
    // SAFETY: `headers` is the valid list obtained above.
    let count = unsafe { rd::rd_kafka_header_cnt(headers) };
    (0..count)
        .filter_map(|index| {
            let mut name: *const std::os::raw::c_char = std::ptr::null();
            let mut value: *const std::os::raw::c_void = std::ptr::null();
            let mut size: usize = 0;
            // SAFETY: `headers` is valid and `index < count`; librdkafka writes pointers into
            // the list's own storage, valid as long as the list.
            let error = unsafe {
                rd::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
            };
            if error != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return None;
            }
            // SAFETY: librdkafka keeps header names NUL-terminated; the bytes live as long as
            // the list, which lives as long as the message ('m).
            let name: &'m [u8] = unsafe { CStr::from_ptr(name) }.to_bytes();
            let value: Option<&'m [u8]> = (!value.is_null()).then(|| {
                // SAFETY: a non-null value points at `size` bytes owned by the list.
                unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }
            });
            Some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn args(extra: &[&str]) -> ConsumeArgs {
        let mut argv = vec!["consume", "--topic", "t"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("parses").args
    }

    #[test]
    fn groups_resume_where_they_committed() {
        assert!(args(&["--group", "g", "--from", "beginning"])
            .validate()
            .is_ok());
        assert!(args(&["--group", "g", "--from", "offset:5"])
            .validate()
            .is_err());
        assert!(args(&["--group", "g", "--from", "time:0"])
            .validate()
            .is_err());
        assert!(args(&["--group", "g", "--partition", "1"])
            .validate()
            .is_err());
        assert!(args(&["--group", " "]).validate().is_err());
        assert!(args(&["--from", "offset:5", "--partition", "1"])
            .validate()
            .is_ok());
    }

    #[test]
    fn line_options_go_with_the_value_format() {
        assert!(args(&["--format", "json", "--print-headers"])
            .validate()
            .is_err());
        assert!(args(&["--format", "json", "-K", ":"]).validate().is_err());
        assert!(args(&["--print-headers", "-K", "\\t"]).validate().is_ok());
    }
}
