//! Exit status and the one place errors are printed.
//!
//! 0 ok, 1 runtime failure, 2 usage or configuration error (clap exits with 2 on its own for
//! bad flags). A broken pipe on stdout (`sluice ... | head`) ends the program with 0.

use std::fmt;
use std::io;
use std::process::ExitCode;

use sluicegate::{EngineError, OptionsError};

/// A usage or configuration problem found after parsing: exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

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

/// Prints the error chain once (`sluice: outer: inner: root`) and maps it to an exit status.
pub fn code(outcome: anyhow::Result<()>) -> ExitCode {
    let Err(error) = outcome else {
        return ExitCode::SUCCESS;
    };
    if is_broken_pipe(&error) {
        return ExitCode::SUCCESS;
    }
    eprintln!("sluice: {error:#}");
    if is_usage(&error) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
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
        assert_eq!(code(error), ExitCode::from(2));
    }

    #[test]
    fn option_errors_are_usage_errors() {
        let options = sluicegate::ConsumerOptions::new("nohost", "g", ["t"]);
        let error = anyhow::Error::new(options.validate().unwrap_err());
        assert!(is_usage(&error));
    }

    #[test]
    fn runtime_errors_exit_with_1_and_broken_pipes_with_0() {
        assert_eq!(code(Err(anyhow::anyhow!("broker gone"))), ExitCode::from(1));
        let pipe = io::Error::new(io::ErrorKind::BrokenPipe, "closed");
        assert_eq!(
            code(Err(anyhow::Error::new(pipe).context("writing"))),
            ExitCode::SUCCESS
        );
    }
}
