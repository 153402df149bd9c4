//! `sluice`: the command-line face of Sluicegate.
//!
//! A thin binary over the `sluicegate` library: it parses and validates the command line (no
//! I/O), then runs one subcommand. Exit status: 0 ok, 1 runtime failure, 2 usage or
//! configuration error. A closed stdout (broken pipe) is not an error.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod config;
mod console;
mod demo;
mod dev_broker;
mod dlq;
mod exit;
mod handlers;
mod observe;
mod payload;
mod process;
mod produce;
mod progress;
mod rss;
mod status;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Writes a line to stdout, returning the I/O error (a broken pipe ends the program quietly)
/// instead of panicking like `println!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use out;

/// Sluicegate: Kafka processing with backpressure.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
#[command(
    after_help = "Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error.\n\
                        Logs go to stderr (--log-format json for JSON lines); set RUST_LOG (for example RUST_LOG=sluicegate=info) for more."
)]
struct Cli {
    /// How log lines on stderr look: text for people (coloured on a terminal), or JSON, one
    /// object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, display_order = 1000)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One line of text per event; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce records to an embedded broker and consume them through the engine, checking that
    /// every record was processed and committed.
    Demo(demo::DemoArgs),
    /// Run the embedded broker (librdkafka's mock cluster) as a process of its own.
    DevBroker(dev_broker::DevBrokerArgs),
    /// Write lines of standard input or a file to a topic, one record per line (keys and
    /// headers optional).
    Produce(console::produce::ProduceArgs),
    /// Print a topic's records: values one per line, or JSON objects.
    Consume(console::consume::ConsumeArgs),
    /// Run a task of a configuration file: its handler on every record, with retry topics
    /// and a dead-letter topic, until SIGINT or SIGTERM.
    Process(process::ProcessArgs),
    /// Look at a task's dead letters and send them back.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Benchmarks that print figures measured against a baseline in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Show a consumer group's position per partition: committed offset, end offset, lag and
    /// the member that owns it.
    Status(status::StatusArgs),
}

fn main() -> ExitCode {
    let cli = parse_cli();
    init_tracing(cli.log_format);
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::DevBroker(args) => dev_broker::run(args),
        Command::Produce(args) => console::produce::run(args),
        Command::Consume(args) => console::consume::run(args),
        Command::Process(args) => process::run(args),
        Command::Dlq(command) => dlq::run(command),
        Command::Bench(command) => bench::run(command),
        Command::Status(args) => status::run(args),
    };
    exit::code(outcome)
}

/// Parses the command line. Help and version print as usual; a usage error is one line on
/// stderr (`sluice: unexpected argument '--x' found (tip: ...); try --help`) and exit status 2.
fn parse_cli() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
            _ => {
                eprintln!("sluice: {}", one_line(&error.render().to_string()));
                std::process::exit(2)
            }
        },
    }
}

/// clap's error text on one line: the message, then its tips in parentheses, without the
/// usage block.
fn one_line(rendered: &str) -> String {
    let mut paragraphs = rendered
        .split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|paragraph| {
            !paragraph.is_empty()
                && !paragraph.starts_with("Usage:")
                && !paragraph.starts_with("For more information")
        });
    let message = paragraphs.next().unwrap_or_default();
    let mut line = message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned();
    for tip in paragraphs {
        line.push_str(&format!(" ({tip})"));
    }
    line.push_str("; try --help");
    line
}

/// The log format chosen on the command line, once tracing is set up.
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// The global flags as given, for child processes of this binary (bench workers, the bench's
/// development broker), so that their log lines look like ours.
pub(crate) fn global_flags() -> [&'static str; 2] {
    let format = match LOG_FORMAT.get() {
        Some(LogFormat::Json) => "json",
        Some(LogFormat::Text) | None => "text",
    };
    ["--log-format", format]
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings and errors), as text or JSON.
/// Text is coloured only when stderr is a terminal and `NO_COLOR` is not set, so a log file
/// holds no escape codes.
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal as _;
    let _ = LOG_FORMAT.set(format);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder.json().init(),
    }
}

/// A multi-threaded tokio runtime for the subcommands that need one.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-line rendering of what `argv` fails with.
    fn usage_line(argv: &[&str]) -> String {
        let error = Cli::try_parse_from(argv).expect_err("a usage error");
        one_line(&error.render().to_string())
    }

    #[test]
    fn usage_errors_fit_on_one_line() {
        let line = usage_line(&["sluice", "produce", "--topic", "t", "--rate", "0"]);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("invalid value '0' for '--rate <N>'"),
            "{line}"
        );
        assert!(line.ends_with("; try --help"), "{line}");

        let line = usage_line(&["sluice", "consume"]);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("--topic <TOPIC>"), "{line}");
        assert!(!line.contains("Usage:"), "{line}");

        let line = usage_line(&["sluice", "consume", "--topic", "t", "--brokerz", "x"]);
        assert!(
            line.contains("tip: a similar argument exists: '--brokers'"),
            "{line}"
        );
    }
}
