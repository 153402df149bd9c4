//! `sluice produce`: lines of standard input or a file become records of a topic, through the
//! library's [`Producer`].
//!
//! A reader thread splits the input into lines and hands them over in batches through a
//! bounded channel; the producing task turns each line into a record and waits for room in
//! the producer's buffer when it is full, so a fast input never grows memory past the buffer.

use std::fs::File;
use std::io::{BufRead as _, BufReader, IsTerminal as _, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluicegate::producer::{
    Acks, Compression, ProduceError, ProduceRecord, Producer, ProducerOptions,
};
use tokio::sync::{mpsc, Notify};

use super::lines::LineFormat;
use super::{parse_topic, show_duration, stop_on_signal, ClusterArgs, Separator};
use crate::tool::exit::usage;
use crate::tool::progress::thousands;

/// Lines per batch handed from the reader thread to the producing task.
const BATCH_LINES: usize = 1024;
/// How long a record may take to be delivered, retries included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
#[command(after_help = "\
Input: one record per line. Lines end at \\n, which is not part of the record; every other byte is \
kept as it is, so a \\r before the \\n stays in the record (strip CRLF line ends with `tr -d '\\r'` \
first if you do not want it), invalid UTF-8 goes through unchanged, and an empty line is a record \
with an empty value. A last line without \\n is a record too.

Line format: [HEADERS<TAB>][KEY<SEP>]VALUE
  --key-separator SEP   the bytes before the first SEP are the key, the rest the value; a line \
without SEP is a record without a key (like kcat -K, or kafka-console-producer's parse.key).
  --parse-headers       each line starts with its headers and a tab: NAME=VALUE pairs separated \
by commas (NAME alone: a null value; just a tab: no headers), like kafka-console-producer's \
parse.headers with kcat's NAME=VALUE. Names and values cannot hold commas or tabs.
  --header NAME=VALUE   a header on every record, before the line's own (like kcat -H).
`sluice consume --print-headers --key-separator SEP` prints records in this same format.

Progress goes to stderr when it is a terminal, and a summary at the end (records, bytes of keys \
and values, time, rate, failures) unless --quiet. Ctrl-C stops reading and sends what was read.

Exit status: 0 when every record was delivered; 1 when one was not, the brokers did not answer, \
the topic does not exist (unless --create-topic) or a line does not fit --parse-headers (what was \
read before it is still sent); 2 for an invalid option.

Examples:
  sluice produce --topic orders orders.txt
  printf 'k1:hello\\nk2:world\\n' | sluice produce -b broker:9092 --topic orders --key-separator :
  sluice produce --topic logs --header source=app1 --compression zstd --rate 1000 app.log")]
pub struct ProduceArgs {
    /// The topic to write to.
    #[arg(long, short = 't', value_parser = parse_topic)]
    topic: String,
    /// Read records from this file (default: standard input).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The key is the text before the first SEP of a line (`\t`, `\\` and `\xHH` escapes).
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<Separator>,
    /// Each line starts with its headers (NAME=VALUE,...) and a tab (see below).
    #[arg(long)]
    parse_headers: bool,
    /// A header for every record, NAME=VALUE (NAME alone: a null value); repeat for more.
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, Option<Vec<u8>>)>,
    /// Write every record to this partition (default: by key, as the Java client does).
    #[arg(long, short = 'p', value_parser = clap::value_parser!(i32).range(0..))]
    partition: Option<i32>,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Acknowledgements each write waits for (all keeps idempotence; fewer turns it off).
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// At most N records per second (default: as fast as the brokers take them).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    rate: Option<u64>,
    /// Create the topic with this many partitions if it does not exist (default: a missing
    /// topic is an error).
    #[arg(long, value_name = "PARTITIONS", value_parser = clap::value_parser!(i32).range(1..=100_000))]
    create_topic: Option<i32>,
    /// No progress and no summary on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(arg: CompressionArg) -> Self {
        match arg {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AcksArg {
    /// Every in-sync replica has the record (-1).
    #[value(alias = "-1")]
    All,
    /// The leader has written it (1).
    #[value(alias = "1")]
    Leader,
    /// No answer at all (0): failures go unseen.
    #[value(alias = "0")]
    None,
}

impl From<AcksArg> for Acks {
    fn from(arg: AcksArg) -> Self {
        match arg {
            AcksArg::All => Acks::All,
            AcksArg::Leader => Acks::Leader,
            AcksArg::None => Acks::None,
        }
    }
}

/// Parses `NAME=VALUE` or `NAME`.
fn parse_header(text: &str) -> Result<(String, Option<Vec<u8>>), String> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value.as_bytes().to_vec())),
        None => (text, None),
    };
    if name.is_empty() {
        return Err(format!("`{text}`: the header name is empty"));
    }
    Ok((name.to_owned(), value))
}

/// Lines read so far, or the read error that ended the input.
type LineBatch = std::io::Result<Vec<Vec<u8>>>;

/// What producing did.
#[derive(Debug, Default)]
struct Tally {
    /// Lines turned into records and handed to the producer (or refused by it).
    records: u64,
    /// Key and value bytes of those records.
    bytes: u64,
    /// Records librdkafka refused before buffering them.
    refused: u64,
    first_refusal: Option<String>,
    /// A line that did not fit the format: its number and the problem.
    bad_line: Option<(u64, String)>,
    interrupted: bool,
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let (input, input_len): (Box<dyn Read + Send>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = File::open(path)
                .map_err(|error| usage(format!("could not open {}: {error}", path.display())))?;
            if file.metadata().is_ok_and(|metadata| metadata.is_dir()) {
                return Err(usage(format!("{} is a directory", path.display())));
            }
            let len = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            (Box::new(file), len)
        }
        None => (Box::new(std::io::stdin()), None),
    };
    let format = LineFormat {
        headers: args.parse_headers,
        key_separator: args
            .key_separator
            .as_ref()
            .map(|separator| separator.0.clone()),
    };
    let runtime = crate::runtime()?;
    let cluster = &args.cluster;
    let admin = cluster.admin(cluster.options())?;
    let partitions = match cluster.partitions_of(&admin, &args.topic)? {
        Some(partitions) => partitions,
        None => match args.create_topic {
            Some(count) => cluster.create_topic(&args.topic, count)?,
            None => bail!(
                "topic `{}` does not exist on {} (--create-topic PARTITIONS creates it)",
                args.topic,
                cluster.brokers
            ),
        },
    };
    drop(admin);
    if let Some(partition) = args.partition {
        if !partitions.contains(&partition) {
            bail!(
                "topic `{}` has no partition {partition} (it has {})",
                args.topic,
                describe_partitions(&partitions)
            );
        }
    }

    let mut options = ProducerOptions::new()
        .bootstrap_servers(&cluster.brokers)
        .client_id("sluice-produce")
        .compression(args.compression.into())
        .acks(args.acks.into())
        .idempotence(args.acks == AcksArg::All)
        .delivery_timeout(DELIVERY_TIMEOUT);
    for (key, value) in &cluster.properties {
        options = options.librdkafka(key, value);
    }
    let producer = Producer::new(options);
    producer.start().map_err(|error| match error {
        ProduceError::Options(problem) => usage(problem.to_string()),
        ProduceError::Client(reason) => usage(format!("invalid producer configuration: {reason}")),
        other => anyhow!(other),
    })?;

    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    stop_on_signal(&runtime, stop.clone(), Some(wake.clone()))?;
    let (lines_tx, lines_rx) = mpsc::channel::<LineBatch>(4);
    std::thread::Builder::new()
        .name("produce-input".to_owned())
        .spawn(move || read_lines(input, &lines_tx))
        .context("could not start the input reader")?;

    let mut progress = ProduceProgress::new(input_len, args.quiet);
    let started = Instant::now();
    let tally = runtime.block_on(produce_lines(
        &args,
        &format,
        &producer,
        lines_rx,
        &stop,
        &wake,
        &mut progress,
    ))?;
    let report = runtime.block_on(producer.shutdown(DELIVERY_TIMEOUT + Duration::from_secs(5)));
    let elapsed = started.elapsed();
    progress.finish();
    // Whatever was handed over and not delivered failed: refused, failed, or left at shutdown.
    let delivered = report.stats.delivered;
    let failed = tally.records.saturating_sub(delivered);
    if !args.quiet {
        let seconds = elapsed.as_secs_f64().max(1e-6);
        eprintln!(
            "sluice produce: {} of {} records ({}) to `{}` in {}, {} records/s; {} failed{}",
            thousands(delivered),
            thousands(tally.records),
            human_bytes(tally.bytes),
            args.topic,
            show_duration(elapsed),
            thousands((delivered as f64 / seconds) as u64),
            thousands(failed),
            if tally.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
    }
    if let Some((line, problem)) = tally.bad_line {
        bail!("line {line}: {problem}; stopped there");
    }
    if failed > 0 {
        let reason = tally
            .first_refusal
            .map(|reason| format!(" (first refusal: {reason})"))
            .unwrap_or_else(|| " (see the warnings above; RUST_LOG=info for more)".to_owned());
        bail!(
            "{} of {} records were not delivered to `{}`{reason}",
            thousands(failed),
            thousands(tally.records),
            args.topic
        );
    }
    Ok(())
}

/// Turns lines into records until the input ends, a line does not fit, or Ctrl-C.
async fn produce_lines(
    args: &ProduceArgs,
    format: &LineFormat,
    producer: &Producer,
    mut lines: mpsc::Receiver<LineBatch>,
    stop: &AtomicBool,
    wake: &Notify,
    progress: &mut ProduceProgress,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let started = tokio::time::Instant::now();
    let mut line_number = 0u64;
    let mut bytes_read = 0u64;
    'input: loop {
        if stop.load(Ordering::SeqCst) {
            tally.interrupted = true;
            break;
        }
        let batch = tokio::select! {
            batch = lines.recv() => batch,
            () = wake.notified() => continue,
        };
        let Some(batch) = batch else { break };
        let batch = batch.context("could not read the input")?;
        for line in &batch {
            line_number += 1;
            bytes_read += line.len() as u64 + 1;
            let parsed = match format.parse(line) {
                Ok(parsed) => parsed,
                Err(problem) => {
                    tally.bad_line = Some((line_number, problem.to_string()));
                    break 'input;
                }
            };
            if let Some(rate) = args.rate {
                let due = started + Duration::from_secs_f64(tally.records as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
            let mut record = ProduceRecord::new(parsed.value);
            if let Some(key) = parsed.key {
                record = record.key(key);
            }
            if let Some(partition) = args.partition {
                record = record.partition(partition);
            }
            for (name, value) in &args.headers {
                record = record.header(name, value.as_deref());
            }
            for (name, value) in parsed.headers {
                record = record.header(name, value);
            }
            tally.records += 1;
            tally.bytes += (parsed.value.len() + parsed.key.map_or(0, <[u8]>::len)) as u64;
            match producer.produce_and_forget(&args.topic, record).await {
                Ok(()) => {}
                Err(ProduceError::Rejected { source, .. }) => {
                    tally.refused += 1;
                    tally.first_refusal.get_or_insert(source.to_string());
                }
                Err(other) => return Err(anyhow!(other).context("producing failed")),
            }
            progress.update(tally.records, bytes_read);
            if stop.load(Ordering::SeqCst) {
                tally.interrupted = true;
                break 'input;
            }
        }
    }
    Ok(tally)
}

/// Reads lines (without their `\n`) into batches; a batch goes as soon as the input has no
/// more bytes ready, so lines typed at a terminal are sent at once.
fn read_lines(input: Box<dyn Read + Send>, batches: &mpsc::Sender<LineBatch>) {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut batch = Vec::with_capacity(BATCH_LINES);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                batch.push(line);
                if batch.len() >= BATCH_LINES || reader.buffer().is_empty() {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_LINES));
                    if batches.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                if !batch.is_empty() {
                    let _ = batches.blocking_send(Ok(std::mem::take(&mut batch)));
                }
                let _ = batches.blocking_send(Err(error));
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.blocking_send(Ok(batch));
    }
}

/// `1 partition: 0`, `4 partitions: 0-3`.
fn describe_partitions(partitions: &[i32]) -> String {
    match (partitions, partitions.first(), partitions.last()) {
        ([only], _, _) => format!("1 partition: {only}"),
        (_, Some(first), Some(last)) if partitions.len() as i64 == i64::from(last - first) + 1 => {
            format!("{} partitions: {first}-{last}", partitions.len())
        }
        _ => format!("{} partitions: {partitions:?}", partitions.len()),
    }
}

/// Bytes in the largest unit that keeps the number at or above 1: `512 B`, `1.5 KiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Progress on stderr: a bar when it is a terminal (over the file's bytes when the size is
/// known, a spinner otherwise, with records and the rate), a plain line every few seconds
/// otherwise (the summary line follows at the end either way).
struct ProduceProgress {
    view: Option<ProduceView>,
    started: Instant,
    last_update: Instant,
}

enum ProduceView {
    Bar(ProgressBar),
    Lines,
}

/// Interval between plain progress lines when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl ProduceProgress {
    fn new(input_len: Option<u64>, quiet: bool) -> Self {
        let view = (!quiet).then(|| {
            if !std::io::stderr().is_terminal() {
                return ProduceView::Lines;
            }
            let (bar, template) = match input_len {
                Some(len) => (
                    ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()),
                    "{spinner} [{bar:30}] {bytes}/{total_bytes} {msg}",
                ),
                None => (
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                    "{spinner} {bytes} read {msg}",
                ),
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            ProduceView::Bar(bar)
        });
        Self {
            view,
            started: Instant::now(),
            last_update: Instant::now(),
        }
    }

    fn update(&mut self, records: u64, bytes_read: u64) {
        let every = match &self.view {
            None => return,
            Some(ProduceView::Bar(_)) => Duration::from_millis(100),
            Some(ProduceView::Lines) => PLAIN_EVERY,
        };
        if self.last_update.elapsed() < every {
            return;
        }
        self.last_update = Instant::now();
        let seconds = self.started.elapsed().as_secs_f64().max(1e-6);
        let figures = format!(
            "{} records · {} records/s · {}",
            thousands(records),
            thousands((records as f64 / seconds) as u64),
            show_duration(Duration::from_secs(self.started.elapsed().as_secs()))
        );
        match &self.view {
            Some(ProduceView::Bar(bar)) => {
                bar.set_position(bytes_read);
                bar.set_message(format!("· {figures}"));
            }
            _ => eprintln!("producing: {figures}"),
        }
    }

    fn finish(self) {
        if let Some(ProduceView::Bar(bar)) = self.view {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_on_the_command_line() {
        assert_eq!(
            parse_header("a=b=c"),
            Ok(("a".to_owned(), Some(b"b=c".to_vec())))
        );
        assert_eq!(parse_header("flag"), Ok(("flag".to_owned(), None)));
        assert_eq!(parse_header("e="), Ok(("e".to_owned(), Some(Vec::new()))));
        assert!(parse_header("=v").is_err());
    }

    #[test]
    fn sizes_and_partition_ranges_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(describe_partitions(&[0]), "1 partition: 0");
        assert_eq!(describe_partitions(&[0, 1, 2, 3]), "4 partitions: 0-3");
        assert_eq!(describe_partitions(&[0, 2]), "2 partitions: [0, 2]");
    }
}
