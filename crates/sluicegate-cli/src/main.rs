//! `sluice`: the command-line face of Sluicegate.
//!
//! A thin binary over the `sluicegate` library: it parses and validates the command line (no
//! I/O), then runs one subcommand. Exit status: 0 ok, 1 runtime failure, 2 usage or
//! configuration error. A closed stdout (broken pipe) is not an error.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod demo;
mod dev_broker;
mod exit;
mod payload;
mod produce;
mod progress;
mod rss;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
                        Logs go to stderr; set RUST_LOG (for example RUST_LOG=sluicegate=info) for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce records to an embedded broker and consume them through the engine, checking that
    /// every record was processed and committed.
    Demo(demo::DemoArgs),
    /// Run the embedded broker (librdkafka's mock cluster) as a process of its own.
    DevBroker(dev_broker::DevBrokerArgs),
    /// Benchmarks that print figures measured against a baseline in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::DevBroker(args) => dev_broker::run(args),
        Command::Bench(command) => bench::run(command),
    };
    exit::code(outcome)
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings and errors).
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A multi-threaded tokio runtime for the subcommands that need one.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}
