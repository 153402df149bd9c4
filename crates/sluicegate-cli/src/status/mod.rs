//! `sluice status`: where a consumer group stands on each partition.
//!
//! For every partition of the group's topics (or of `--topic`) it shows the committed offset,
//! the end offset (high watermark), the lag between them and the member that owns the
//! partition. The group's topics are those it committed offsets on or has assigned; where it
//! committed nothing the lag counts from the oldest record kept, and is marked.
//!
//! The look is read-only: the client uses the group's id but never joins it, so it triggers no
//! rebalance. Owners come from the group description; a broker that cannot describe groups
//! (some Kafka-compatible brokers lack DescribeGroups or ListGroups) leaves them unknown, said
//! once on stderr, and the rest is shown all the same.
//!
//! # Watching
//!
//! `--watch` looks again every `--interval`: on a terminal it redraws the table in place,
//! otherwise it prints one table (or one batch of JSON lines) per look. Ctrl-C ends it with
//! status 0. A failed look while watching is one line on stderr, and the watch goes on.

mod lookup;
mod render;

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio::sync::Notify;

use crate::console::{parse_duration, parse_topic, show_duration, stop_on_signal, ClusterArgs};
use lookup::{Lookup, Membership, Snapshot};

/// ANSI: cursor to the top left, then clear the screen.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

#[derive(Debug, Args)]
#[command(after_help = "\
Columns: COMMITTED is the group's committed offset (the next record it reads; - when it committed \
none), END the partition's end offset, LAG END - COMMITTED (END minus the oldest offset kept, \
marked *, when nothing is committed; marked ! when the partition is stalled: it has lag and a \
Sluicegate engine committed no progress there for --stall-after); OWNER, HOST and CLIENT-ID name the member the partition \
is assigned to (- when none, during a rebalance, or when the brokers cannot describe the group).

--format json prints one object per partition and line: \
{\"group\", \"topic\", \"partition\", \"committed\" (null: none), \"end\", \"lag\", \
\"owner\" (null, or {\"member_id\", \"client_id\", \"host\"}), \"committed_at_ms\" (null unless a \
Sluicegate engine committed), \"stalled\"}.

Exit status: 0 ok (and after Ctrl-C with --watch); 1 when the brokers do not answer, the topic \
does not exist or the group has neither committed offsets nor members; 2 for an invalid option.

Examples:
  sluice status --group orders-app
  sluice status -b broker:9092 --group orders-app --topic orders --watch --interval 5s
  sluice status --group orders-app --format json | jq 'select(.lag > 0)'")]
pub struct StatusArgs {
    /// The consumer group to look at.
    #[arg(long, short = 'g')]
    group: String,
    /// Only this topic (default: every topic the group committed offsets on or is assigned).
    #[arg(long, short = 't', value_parser = parse_topic)]
    topic: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Look again every --interval until Ctrl-C.
    #[arg(long, short = 'w')]
    watch: bool,
    /// Time between looks with --watch, e.g. 2s, 500ms, 1m.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, requires = "watch")]
    interval: Duration,
    /// A partition with lag whose last commit by a Sluicegate engine is this old is marked
    /// stalled (engines commit a partition only when it made progress).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    stall_after: Duration,
    /// A table for people, or JSON lines for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned columns, then a line with the group's state and total lag.
    Table,
    /// One JSON object per partition and line.
    Json,
}

/// Runs `sluice status`: one look, or looks until Ctrl-C with `--watch`.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let lookup = Lookup::new(
        args.cluster.clone(),
        args.group.clone(),
        args.topic.clone(),
        args.stall_after,
    )?;
    let mut screen = Screen::new(
        args.format,
        args.watch.then_some(args.interval),
        args.stall_after,
    );
    if !args.watch {
        return screen.show(&lookup.snapshot()?);
    }
    let runtime = crate::runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    stop_on_signal(&runtime, stop.clone(), Some(wake.clone()))?;
    screen.show(&lookup.snapshot()?)?;
    let outcome = runtime.block_on(watch(Arc::new(lookup), args.interval, screen, &stop, &wake));
    // A look still waiting on the brokers must not hold up the exit.
    runtime.shutdown_background();
    outcome
}

/// Looks every `interval` until Ctrl-C or SIGTERM sets `stop` (and wakes `wake`).
async fn watch(
    lookup: Arc<Lookup>,
    interval: Duration,
    mut screen: Screen,
    stop: &AtomicBool,
    wake: &Notify,
) -> anyhow::Result<()> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = wake.notified() => return Ok(()),
        }
        let lookup = lookup.clone();
        let look = tokio::task::spawn_blocking(move || lookup.snapshot());
        let snapshot = tokio::select! {
            joined = look => joined.context("the status lookup failed")?,
            () = wake.notified() => return Ok(()),
        };
        match snapshot {
            Ok(snapshot) => screen.show(&snapshot)?,
            Err(error) => eprintln!("sluice status: {error:#}"),
        }
    }
}

/// Where looks are shown: stdout, redrawn in place when watching a table on a terminal.
struct Screen {
    format: Format,
    /// The interval, when watching.
    watch: Option<Duration>,
    redraw: bool,
    /// Looks shown so far.
    shown: u64,
    /// Whether the note about unknown owners was printed.
    noted_unknown: bool,
    /// `--stall-after`, for the table's note.
    stall_after: Duration,
}

impl Screen {
    fn new(format: Format, watch: Option<Duration>, stall_after: Duration) -> Self {
        Self {
            format,
            watch,
            redraw: watch.is_some() && format == Format::Table && std::io::stdout().is_terminal(),
            shown: 0,
            noted_unknown: false,
            stall_after,
        }
    }

    fn show(&mut self, snapshot: &Snapshot) -> anyhow::Result<()> {
        if let Membership::Unknown(reason) = &snapshot.membership {
            if !self.noted_unknown {
                self.noted_unknown = true;
                eprintln!(
                    "sluice status: the brokers could not describe group `{}` ({reason}): owners are not shown",
                    snapshot.group
                );
            }
        }
        let mut text = match self.format {
            Format::Table => render::table(snapshot, self.stall_after),
            Format::Json => render::json_lines(snapshot)?,
        };
        if self.redraw {
            // The screen is cleared each time: the note about owners stays on it.
            if matches!(snapshot.membership, Membership::Unknown(_)) {
                text.push_str("owners unknown: the brokers could not describe the group\n");
            }
            let every = self.watch.map(show_duration).unwrap_or_default();
            text = format!("{CLEAR_SCREEN}{text}(every {every}; Ctrl-C to stop)\n");
        } else if self.format == Format::Table && self.shown > 0 {
            // One table per look, a blank line between them.
            text.insert(0, '\n');
        }
        self.shown += 1;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }
}
