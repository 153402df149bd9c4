//! Logging to stderr and the global flag that shapes it, `--log-format text|json`, as `sluice`
//! and `sluice-lab` have them.
//!
//! Flatten [`GlobalArgs`] into the command line, call [`init`] with it once parsed, and pass
//! [`global_flags`] to child processes of the same kind so that their log lines look the same.

use std::sync::OnceLock;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::secret::ScrubbingWriter;

/// The global flags as [`init`] received them.
static GLOBALS: OnceLock<GlobalArgs> = OnceLock::new();

/// The flags every subcommand takes: `#[command(flatten)]` them into a `clap` command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
#[non_exhaustive]
pub struct GlobalArgs {
    /// How log lines on stderr look: text for people (coloured on a terminal), or JSON, one
    /// object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, display_order = 1000)]
    pub log_format: LogFormat,
}

impl GlobalArgs {
    /// These flags as arguments, for a child process that takes them too.
    pub fn flags(&self) -> [&'static str; 2] {
        ["--log-format", self.log_format.name()]
    }
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[non_exhaustive]
pub enum LogFormat {
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

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings and errors), as text or JSON,
/// with secrets read through [`Secret`](crate::Secret) hidden. Text is coloured only when
/// stderr is a terminal and `NO_COLOR` is not set, so a log file holds no escape codes. Only
/// the first call in a process sets logging up.
///
/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, handler spans are exported over OTLP as well (see
/// [`otel`](super::otel)), whatever `RUST_LOG` says; call [`otel::shutdown`](super::otel::shutdown)
/// before exiting to send the last ones.
pub fn init(globals: &GlobalArgs) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    if GLOBALS.set(*globals).is_err() {
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let lines = tracing_subscriber::fmt::layer().with_writer(|| ScrubbingWriter(std::io::stderr()));
    let lines = match globals.log_format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            lines.with_ansi(colour).with_filter(filter).boxed()
        }
        LogFormat::Json => lines.json().with_filter(filter).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(lines)
        .with(super::otel::layer())
        .try_init();
}

/// The global flags [`init`] set logging up with (the defaults before that), as arguments for
/// a child process that takes them too.
pub fn global_flags() -> [&'static str; 2] {
    GLOBALS
        .get()
        .copied()
        .unwrap_or(GlobalArgs {
            log_format: LogFormat::Text,
        })
        .flags()
}
