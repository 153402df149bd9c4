//! `sluice dlq inspect` and `sluice dlq replay`: a task's dead-letter topics, read from the
//! beginning to their current end without a consumer group, and sent back for another try.

mod inspect;
mod read;
mod replay;
mod select;

use clap::{Args, Subcommand};

use crate::config::{ConfigArgs, TaskPlan};
use crate::handlers::registry::Registry;

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
    #[command(flatten)]
    config: ConfigArgs,
    /// The task: a [tasks.NAME] table of the file.
    task: String,
}

impl TaskArgs {
    /// The task's settings; a bad file or task is a usage error.
    fn plan(&self, registry: &Registry) -> anyhow::Result<TaskPlan> {
        self.config.plan(&self.task, registry)
    }
}

pub fn run(command: DlqCommand, registry: &Registry) -> anyhow::Result<()> {
    match command {
        DlqCommand::Inspect(args) => inspect::run(args, registry),
        DlqCommand::Replay(args) => replay::run(args, registry),
    }
}
