//! `sluice-lab torture <campaign>`: reliability campaigns that attack a running consumer group and
//! check Sluicegate's invariants (at-least-once, order, bounded duplicates) from what the
//! handlers recorded.
//!
//! Each campaign is bounded in records and time and ends with a [`CampaignReport`]: records
//! produced, processed, lost, duplicated, order violations, worst pause, peak RSS, and PASS or
//! FAIL per invariant (a table, or one JSON object with `--json`). A failed campaign exits with
//! status 1 after printing its report. Every campaign has a `--short` size that CI runs.
//!
//! # Campaigns
//!
//! - `crash`: a group of member processes consumes keyed, sequenced records while a driver
//!   kills random members with SIGKILL and restarts them.
//! - `storm`: members join and leave every few seconds while records flow; also reports the
//!   longest processing pause a rebalance caused.
//! - `failover`: brokers of a three-node Apache Kafka (`scripts/kafka start --nodes 3
//!   --respawn`) are killed with SIGKILL one at a time and come back while records flow; also
//!   reports each kill's recovery time.
//! - `faults`: broker faults on an embedded three-broker cluster in this process (request
//!   errors per API, brokers down and up, a slow network) under a key-ordered pipeline;
//!   reports each fault's recovery time.
//! - `poison`: undecodable, oversized, panicking, hanging and rejected records among good
//!   ones; each bad record must fail with its reason, no good one be held up.
//! - `slow`: a slow handler under a backlog of many partition buffers; held records and
//!   memory must stay within their bounds.
//!
//! # Processes
//!
//! The broker is the embedded one in a child process (`sluice-lab dev-broker`, which is
//! `sluice dev-broker`) unless `--brokers` names another. Members are child processes of this
//! binary running the hidden `sluice-lab torture member` subcommand, each appending one line
//! per handled record to a journal file of its own; the driver reads the journals when the
//! campaign ends. `faults` and `poison` run their pipeline in this process (`faults` with its
//! own embedded broker there, as only it can inject faults); `slow` too, with the broker in a
//! child process.

mod audit;
mod commits;
mod crash;
mod driver;
mod failover;
mod faults;
mod group;
mod journal;
mod ledger;
mod member;
mod poison;
mod slow;
mod storm;
mod verdict;
mod workload;

use clap::{Args, Subcommand};

pub use verdict::CampaignReport;

#[derive(Debug, Subcommand)]
pub enum TortureCommand {
    /// Kill random members of a consuming group with SIGKILL and restart them; check that
    /// nothing was lost, order held, and duplicates stayed within what was in flight.
    Crash(crash::CrashArgs),
    /// Members join and leave every few seconds while records flow; the crash checks plus the
    /// longest processing pause caused by a rebalance.
    Storm(storm::StormArgs),
    /// Kill brokers of a three-node Apache Kafka with SIGKILL (one at a time; each comes back)
    /// while records are produced and consumed; the crash checks plus each kill's recovery.
    Failover(failover::FailoverArgs),
    /// Broker faults (embedded cluster): request errors on Fetch, OffsetCommit, Heartbeat,
    /// JoinGroup/SyncGroup and Produce, brokers down and up, a slow network; check that the
    /// pipeline recovers, loses nothing, keeps key order and commits everything.
    Faults(faults::FaultsArgs),
    /// Poison input: undecodable and oversized records, handlers that panic, hang or reject;
    /// check that each bad record fails with its reason and no good one is held up.
    Poison(poison::PoisonArgs),
    /// A slow consumer under a backlog many times its buffer; check that buffered records
    /// and memory stay within their bounds.
    Slow(slow::SlowArgs),
    /// One member of a campaign's group, run as a child process.
    #[command(hide = true)]
    Member(member::MemberArgs),
}

pub fn run(command: TortureCommand) -> anyhow::Result<()> {
    match command {
        TortureCommand::Crash(args) => crash::run(args),
        TortureCommand::Storm(args) => storm::run(args),
        TortureCommand::Failover(args) => failover::run(args),
        TortureCommand::Faults(args) => faults::run(args),
        TortureCommand::Poison(args) => poison::run(args),
        TortureCommand::Slow(args) => slow::run(args),
        TortureCommand::Member(args) => member::run(args),
    }
}

/// Flags every campaign takes.
#[derive(Debug, Clone, Args)]
pub struct CampaignArgs {
    /// Print the report as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Bootstrap servers of the broker to torture (default: a development broker started as a
    /// child process).
    #[arg(long)]
    pub brokers: Option<String>,
    /// The short size that CI runs (about 20-40 s); explicit size flags still win.
    #[arg(long)]
    pub short: bool,
}

impl CampaignArgs {
    /// Prints the report and fails (exit status 1) when it did not pass.
    pub fn finish(&self, report: &CampaignReport) -> anyhow::Result<()> {
        report.print(self.json)?;
        report.verdict()
    }

    /// A size flag's value: the one `given`, else the `short` size with `--short`, else the
    /// `full` one.
    pub fn size(&self, given: Option<u64>, full: u64, short: u64) -> u64 {
        given.unwrap_or(if self.short { short } else { full })
    }
}
