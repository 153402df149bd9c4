//! The `sluice-lab` command line: its subcommands, logging, and the exit status.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluicegate_cli::tool::exit;
use sluicegate_cli::tool::logging::{self, GlobalArgs};

use crate::{bench, torture};

/// Sluicegate's benchmarks and reliability campaigns.
#[derive(Debug, Parser)]
#[command(name = "sluice-lab", version, about, propagate_version = true)]
#[command(
    after_help = "Exit status: 0 ok, 1 runtime failure (or a failed campaign), 2 usage error.\n\
                        Logs go to stderr (--log-format json for JSON lines); set RUST_LOG (for example RUST_LOG=sluicegate=info) for more."
)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks that print figures measured against a baseline in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Reliability campaigns: attack a consuming group (kills, rebalance storms, broker
    /// faults, poison input, a slow consumer) and check the invariants, PASS or FAIL.
    #[command(subcommand)]
    Torture(torture::TortureCommand),
    /// `sluice dev-broker` with these arguments: the development broker the benchmarks and
    /// campaigns start as a child process.
    #[command(hide = true, disable_help_flag = true)]
    DevBroker {
        /// Everything `sluice dev-broker` takes.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Runs the command line `args` (the program's name first) and returns the exit status.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli: Cli = match exit::parse(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Bench(command) => logged(&cli.globals, || bench::run(command)),
        Command::Torture(command) => logged(&cli.globals, || torture::run(command)),
        Command::DevBroker { args } => {
            // `sluice` sets its own logging up, from the same flags.
            let argv = std::iter::once("sluice")
                .chain(cli.globals.flags())
                .chain(["dev-broker"])
                .map(OsString::from)
                .chain(args);
            sluicegate_cli::Sluice::new().run_from(argv)
        }
    }
}

/// Sets logging up, runs `work`, and prints its error, if any, once.
fn logged(globals: &GlobalArgs, work: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    logging::init(globals);
    exit::code("sluice-lab", work())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A misspelt flag gets clap's tip, which `exit::parse` prints on the one line.
    #[test]
    fn usage_errors_come_with_tips() {
        let error = Cli::try_parse_from(["sluice-lab", "bench", "consume", "--roundz", "3"])
            .expect_err("a usage error");
        let text = error.render().to_string();
        assert!(
            text.contains("tip: a similar argument exists: '--rounds'"),
            "{text}"
        );
    }

    #[test]
    fn dev_broker_takes_sluice_dev_broker_flags() {
        let cli = Cli::try_parse_from([
            "sluice-lab",
            "--log-format",
            "json",
            "dev-broker",
            "--print-bootstrap-only",
            "--topic",
            "t:2",
        ])
        .expect("parses");
        assert_eq!(cli.globals.flags(), ["--log-format", "json"]);
        let Command::DevBroker { args } = cli.command else {
            panic!("not dev-broker: {:?}", cli.command);
        };
        assert_eq!(args, ["--print-bootstrap-only", "--topic", "t:2"]);
    }
}
