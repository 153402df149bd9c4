//! The `sluice-lab` command line: its subcommands, logging, and the exit status.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::{bench, exit, torture};

/// Sluicegate's benchmarks and reliability campaigns.
#[derive(Debug, Parser)]
#[command(name = "sluice-lab", version, about, propagate_version = true)]
#[command(
    after_help = "Exit status: 0 ok, 1 runtime failure (or a failed campaign), 2 usage error.\n\
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

impl LogFormat {
    /// The flag's value.
    fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
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

/// The log format chosen on the command line, once tracing is set up.
static LOG_FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The global flags as given, for child processes of this binary (bench workers, campaign
/// members, the development broker), so that their log lines look like ours.
pub fn global_flags() -> [&'static str; 2] {
    [
        "--log-format",
        LOG_FORMAT.get().copied().unwrap_or(LogFormat::Text).name(),
    ]
}

/// Runs the command line `args` (the program's name first) and returns the exit status.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match parse_cli(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Bench(command) => logged(cli.log_format, || bench::run(command)),
        Command::Torture(command) => logged(cli.log_format, || torture::run(command)),
        Command::DevBroker { args } => {
            // `sluice` sets its own logging up, from the same flag.
            let argv = [
                "sluice",
                "--log-format",
                cli.log_format.name(),
                "dev-broker",
            ]
            .map(OsString::from)
            .into_iter()
            .chain(args);
            sluicegate_cli::Sluice::new().run_from(argv)
        }
    }
}

/// Sets logging up, runs `work`, and prints its error, if any, once.
fn logged(format: LogFormat, work: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    init_tracing(format);
    exit::code(work())
}

/// Parses the command line. Help and version print as usual (the status is returned); a
/// usage error is one line on stderr (`sluice-lab: unexpected argument '--x' found (tip:
/// ...); try --help`) and exit status 2.
fn parse_cli<I, T>(args: I) -> Result<Cli, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::error::ErrorKind;
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = error.print();
                Err(ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2)))
            }
            _ => {
                eprintln!("sluice-lab: {}", one_line(&error.render().to_string()));
                Err(ExitCode::from(2))
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

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings and errors), as text or JSON.
/// Text is coloured only when stderr is a terminal and `NO_COLOR` is not set, so a log file
/// holds no escape codes.
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal as _;
    if LOG_FORMAT.set(format).is_err() {
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            builder.with_ansi(colour).try_init()
        }
        LogFormat::Json => builder.json().try_init(),
    };
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
        let line = usage_line(&["sluice-lab", "bench", "consume", "--roundz", "3"]);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains("tip: a similar argument exists: '--rounds'"),
            "{line}"
        );
        assert!(line.ends_with("; try --help"), "{line}");
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
        assert_eq!(cli.log_format, LogFormat::Json);
        let Command::DevBroker { args } = cli.command else {
            panic!("not dev-broker: {:?}", cli.command);
        };
        assert_eq!(args, ["--print-bootstrap-only", "--topic", "t:2"]);
    }
}
