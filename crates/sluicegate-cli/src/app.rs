//! The command line: [`Sluice`], its subcommands, logging, and the exit status.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::de::DeserializeOwned;
use sluicegate::pipeline::BoxError;

use crate::handlers::registry::Registry;
use crate::handlers::Handler;
use crate::tool::{exit, logging};
use crate::{config, console, demo, dev_broker, dlq, offsets, process, status};

/// The `sluice` command line, with the handlers a task's `type` may name.
///
/// `Sluice::new().run()` is the `sluice` binary; register handlers of your own with
/// [`handler`](Sluice::handler) first to build yours. See the [crate docs](crate) for an
/// example.
#[derive(Debug, Default)]
pub struct Sluice {
    registry: Registry,
}

impl Sluice {
    /// The command line with the built-in handlers (`exec` and `http`) only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a handler: a task whose `handler` table has `type = "NAME"` runs what
    /// `factory` builds from the table's other keys (all but `type` and `batch`).
    ///
    /// The keys are deserialized as `S` when the configuration is read, by every command
    /// (`sluice config check` included), so a problem names its key path, like any other
    /// (use `#[serde(deny_unknown_fields)]` to refuse unknown keys, and [`Secret`] for
    /// secrets). `factory` runs when a task starts; its error stops the start, with exit
    /// status 2. With `batch = { size, timeout }` in the table, the task calls
    /// [`Handler::handle_batch`].
    ///
    /// [`Secret`]: crate::Secret
    ///
    /// # Panics
    ///
    /// When `name` is `exec` or `http` (the built-in handlers) or is registered already.
    pub fn handler<S, H, F>(mut self, name: &str, factory: F) -> Self
    where
        S: DeserializeOwned + 'static,
        H: Handler,
        F: Fn(S) -> Result<H, BoxError> + Send + Sync + 'static,
    {
        self.registry.register(name, factory);
        self
    }

    /// Runs the command line of this process and returns its exit status: 0 ok, 1 runtime
    /// failure, 2 usage or configuration error.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// Runs the command line `args` (the program's name first), as [`run`](Sluice::run)
    /// does. Logging is set up on the first call in a process.
    pub fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli: Cli = match exit::parse(args) {
            Ok(cli) => cli,
            Err(code) => return code,
        };
        logging::init(&cli.globals);
        let registry = &self.registry;
        let outcome = match cli.command {
            Command::Demo(args) => demo::run(args),
            Command::DevBroker(args) => dev_broker::run(args),
            Command::Produce(args) => console::produce::run(args),
            Command::Consume(args) => console::consume::run(args),
            Command::Process(args) => process::run(args, registry),
            Command::Dlq(command) => dlq::run(command, registry),
            Command::Config(command) => config::run_command(command, registry),
            Command::Status(args) => status::run(args),
            Command::Offsets(command) => offsets::run(command),
        };
        crate::tool::otel::shutdown();
        exit::code("sluice", outcome)
    }
}

/// Sluicegate: Kafka processing with backpressure.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
#[command(
    after_help = "Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error.\n\
                        Logs go to stderr (--log-format json for JSON lines); set RUST_LOG (for example RUST_LOG=sluicegate=info) for more."
)]
struct Cli {
    #[command(flatten)]
    globals: logging::GlobalArgs,
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
    /// Check a configuration file without connecting, or print it as the commands see it.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Show a consumer group's position per partition: committed offset, end offset, lag and
    /// the member that owns it.
    Status(status::StatusArgs),
    /// Move a consumer group's committed offsets: replay from a time or an offset, or skip
    /// to the end (a dry run unless --execute; the group must be inactive).
    #[command(subcommand)]
    Offsets(offsets::OffsetsCommand),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::exit::one_line;

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
