//! `sluice dlq inspect` and `sluice dlq replay`: a task's dead-letter topics, read from the
//! beginning to their current end without a consumer group, and sent back for another try.

mod inspect;
mod read;
mod replay;
mod select;

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::{ConfigFile, TaskPlan};
use crate::exit::usage;

/// The dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List a task's dead letters: where they came from, how often they were handled, when
    /// and why they failed, their key and value.
    Inspect(inspect::InspectArgs),
    /// Send selected dead letters back to the input topic (or to retry stage 1) and report
    /// how many were sent.
    Replay(replay::ReplayArgs),
}

/// The configuration file and the task, as `sluice process` takes them.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The configuration file (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// The task: a [tasks.NAME] table of the file.
    task: String,
}

impl TaskArgs {
    /// The task's settings; a bad file or task is a usage error.
    fn plan(&self) -> anyhow::Result<TaskPlan> {
        ConfigFile::load(&self.config)?
            .plan(&self.task)
            .map_err(|error| usage(format!("{}: {error}", self.config.display())))
    }
}

pub fn run(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::Inspect(args) => inspect::run(args),
        DlqCommand::Replay(args) => replay::run(args),
    }
}
