//! Exit status and the one place errors are printed, as `sluice` and `sluice-lab` have them.
//!
//! 0 ok, 1 runtime failure, 2 usage or configuration error: a bad flag ([`parse`]) or a
//! [`usage`] error found later. An error is one line on stderr, `PROGRAM: outer: inner: root`.
//! A broken pipe on stdout (`sluice ... | head`) ends the program with 0.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::process::ExitCode;

use clap::Parser;
use sluicegate::{EngineError, OptionsError};

/// A usage or configuration problem found after parsing: exit status 2 (see [`usage`]).
#[derive(Debug)]
struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns a usage error (exit status 2) with this message.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Prints the error chain once (`PROGRAM: outer: inner: root`, `program` being the command's
/// name) and maps it to an exit status: 2 when a [`usage`] error or the library's
/// [`OptionsError`] is in the chain, 0 for a broken pipe, 1 otherwise.
pub fn code(program: &str, outcome: anyhow::Result<()>) -> ExitCode {
    let Err(error) = outcome else {
        return ExitCode::SUCCESS;
    };
    if is_broken_pipe(&error) {
        return ExitCode::SUCCESS;
    }
    eprintln!("{program}: {error:#}");
    if is_usage(&error) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// Writes a line to stdout (`write_line(format_args!(...))`), returning the I/O error instead
/// of panicking like `println!`: a broken pipe then ends the program quietly, through [`code`].
pub fn write_line(line: fmt::Arguments<'_>) -> io::Result<()> {
    use io::Write as _;
    writeln!(io::stdout().lock(), "{line}")
}

/// Parses the command line `args` (the program's name first). Help and version print as
/// clap prints them (the status is returned); a usage error is one line on stderr
/// (`PROGRAM: unexpected argument '--x' found (tip: ...); try --help`, `PROGRAM` being the
/// command's name) and exit status 2.
pub fn parse<C, I, T>(args: I) -> Result<C, ExitCode>
where
    C: Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::error::ErrorKind;
    match C::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = error.print();
                Err(ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2)))
            }
            _ => {
                let program = C::command().get_name().to_owned();
                eprintln!("{program}: {}", one_line(&error.render().to_string()));
                Err(ExitCode::from(2))
            }
        },
    }
}

/// clap's error text on one line: the message, then its tips in parentheses, without the
/// usage block.
pub(crate) fn one_line(rendered: &str) -> String {
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

fn is_usage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<OptionsError>()
            || matches!(
                cause.downcast_ref::<EngineError>(),
                Some(EngineError::Options(_))
            )
    })
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn usage_errors_exit_with_2_even_with_context() {
        let error = Err::<(), _>(usage("bad")).context("while starting");
        assert_eq!(code("sluice", error), ExitCode::from(2));
    }

    #[test]
    fn option_errors_are_usage_errors() {
        let options = sluicegate::ConsumerOptions::new("nohost", "g", ["t"]);
        let error = anyhow::Error::new(options.validate().unwrap_err());
        assert!(is_usage(&error));
    }

    #[test]
    fn runtime_errors_exit_with_1_and_broken_pipes_with_0() {
        assert_eq!(
            code("sluice", Err(anyhow::anyhow!("broker gone"))),
            ExitCode::from(1)
        );
        let pipe = io::Error::new(io::ErrorKind::BrokenPipe, "closed");
        assert_eq!(
            code("sluice", Err(anyhow::Error::new(pipe).context("writing"))),
            ExitCode::SUCCESS
        );
    }
}
