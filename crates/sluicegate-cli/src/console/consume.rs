//! `sluice consume`: a topic's records on stdout, through the library's [`TopicReader`] polled
//! on this thread.
//!
//! Without `--group` the reader starts each partition at the `--from` offset and commits
//! nothing. With `--group` it joins the group, resumes from the group's committed offsets
//! (`--from` only says where partitions without one start) and commits what it has printed:
//! an offset is stored only once its record was flushed to stdout, so a record is printed at
//! least once across runs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use sluicegate::reader::{ReadEvent, ReadFrom, ReaderOptions, TopicReader};
use sluicegate::{Record, TimestampType};

use super::json::{Bytes, JsonHeader, JsonRecord};
use super::lines::LineFormat;
use super::start::StartFrom;
use super::{cause, parse_topic, stop_on_signal, ClusterArgs, Separator};
use crate::tool::exit::usage;

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
    let options = cluster
        .options()
        .client_id("sluice-consume")
        .request_timeout(cluster.connect_timeout.max(Duration::from_secs(5)));
    let mut options = ReaderOptions::new(options, &args.topic).from(match args.from {
        StartFrom::Beginning => ReadFrom::Earliest,
        StartFrom::End => ReadFrom::Latest,
        StartFrom::Offset(offset) => ReadFrom::Offset(offset),
        StartFrom::BeforeEnd(records) => ReadFrom::BeforeEnd(records.unsigned_abs()),
        StartFrom::Time(millis) => ReadFrom::Time(millis),
    });
    if let Some(partition) = args.partition {
        options = options.partitions([partition]);
    }
    if let Some(group) = &args.group {
        options = options.group(group);
    }
    let mut reader = TopicReader::open(options).map_err(|error| cluster.read_error(error))?;

    let runtime = crate::runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(&runtime, stop.clone(), None)?;
    let outcome = print_records(&args, &mut reader, &stop);
    if let Err(error) = reader.commit() {
        tracing::warn!(error = %cause(&error), "could not commit the printed records' offsets");
    }
    outcome
}

/// Polls and prints until the count, the end, Ctrl-C or a closed stdout.
fn print_records(
    args: &ConsumeArgs,
    reader: &mut TopicReader,
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
    let mut last_error_log: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) || args.count.is_some_and(|count| printed >= count) {
            break;
        }
        match reader.next(if unflushed { Duration::ZERO } else { POLL }) {
            Ok(None) => {
                if unflushed {
                    flush(&mut out, reader, &mut to_store)?;
                    unflushed = false;
                }
            }
            Ok(Some(ReadEvent::Record {
                record,
                timestamp_type,
                ..
            })) => {
                line.clear();
                let headers: Vec<(&[u8], Option<&[u8]>)> = record
                    .headers
                    .iter()
                    .map(|header| (header.key.as_bytes(), header.value.as_deref()))
                    .collect();
                match args.format {
                    Format::Value => line_format.write(
                        &mut line,
                        &headers,
                        record.key.as_deref(),
                        record.value.as_deref(),
                    ),
                    Format::Json => {
                        write_json(&mut line, &record, timestamp_type, &headers)?;
                    }
                }
                out.write_all(&line)?;
                printed += 1;
                unflushed = true;
                if args.group.is_some() {
                    to_store.insert(record.partition, record.offset + 1);
                }
            }
            Ok(Some(ReadEvent::PartitionEnd { .. })) => {
                if args.exit_at_end && reader.caught_up() {
                    break;
                }
            }
            Ok(Some(_)) => {}
            Err(error) => {
                if last_error_log.is_none_or(|last| last.elapsed() >= ERROR_LOG_INTERVAL) {
                    last_error_log = Some(Instant::now());
                    let error = cause(&error);
                    match reader.last_problem() {
                        Some(detail) => tracing::warn!(%error, detail, "consuming"),
                        None => tracing::warn!(%error, "consuming"),
                    }
                }
            }
        }
    }
    flush(&mut out, reader, &mut to_store)
}

/// Flushes stdout, then (group mode) stores the next offsets after what was flushed, for the
/// next commit.
fn flush(
    out: &mut impl std::io::Write,
    reader: &TopicReader,
    to_store: &mut BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    out.flush()?;
    if to_store.is_empty() {
        return Ok(());
    }
    // Fails only for a partition revoked meanwhile; its next owner prints those again.
    if let Err(error) = reader.store_offsets(std::mem::take(to_store)) {
        tracing::debug!(error = %cause(&error), "offsets not stored");
    }
    Ok(())
}

fn write_json(
    line: &mut Vec<u8>,
    record: &Record,
    timestamp_type: Option<TimestampType>,
    headers: &[(&[u8], Option<&[u8]>)],
) -> anyhow::Result<()> {
    let (timestamp, timestamp_type) = match timestamp_type {
        None => (None, None),
        Some(TimestampType::LogAppendTime) => (record.timestamp_ms, Some("log_append_time")),
        Some(_) => (record.timestamp_ms, Some("create_time")),
    };
    let record = JsonRecord {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp,
        timestamp_type,
        key: Bytes(record.key.as_deref()),
        value: Bytes(record.value.as_deref()),
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
