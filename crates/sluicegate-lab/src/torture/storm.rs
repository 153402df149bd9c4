//! `sluice-lab torture storm`: members join and leave every few seconds while records flow.
//!
//! Every `--interval-ms` (give or take half of it), a random member leaves gracefully
//! (SIGTERM: it drains, commits and leaves the group) or a new one joins in an empty slot;
//! at least one member always runs. Each change is a rebalance of the whole group
//! (cooperative-sticky by default, so only moved partitions are revoked). The report's worst
//! pause is the longest time a partition had records waiting and none handled, which here
//! is a rebalance's doing. See [`super::audit`] for the rules checked.

use std::time::Duration;

use clap::Args;

use super::driver::{self, restart_dead, Campaign, Disruption, GroupArgs};
use super::group::Group;
use super::CampaignArgs;
use crate::dice::Dice;

#[derive(Debug, Args)]
pub struct StormArgs {
    #[command(flatten)]
    common: CampaignArgs,
    /// Records to produce [default: 200000; 20000 with --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    records: Option<u64>,
    /// Member slots; all start running [default: 5; 4 with --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=64))]
    members: Option<u64>,
    /// Seconds of the storm, over which the records are produced [default: 60; 20 with
    /// --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    duration: Option<u64>,
    /// Mean time between membership changes, in milliseconds.
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    interval_ms: u64,
    #[command(flatten)]
    group: GroupArgs,
}

pub fn run(args: StormArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let campaign = Campaign::new(
        "storm",
        common,
        &args.group,
        common.size(args.records, 200_000, 20_000),
        common.size(args.duration, 60, 20),
        common.size(args.members, 5, 4),
    );
    let storm = Storm {
        interval: Duration::from_millis(args.interval_ms),
        joins: 0,
        leaves: 0,
        restarted_dead: 0,
    };
    let report = driver::run(&campaign, storm)?;
    args.common.finish(&report)
}

/// The storm campaign's disruption: graceful leaves and joins.
struct Storm {
    interval: Duration,
    joins: u64,
    leaves: u64,
    restarted_dead: u64,
}

impl Disruption for Storm {
    async fn disrupt(
        &mut self,
        group: &mut Group,
        dice: &mut Dice,
        window: Duration,
    ) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        let deadline = started + window;
        loop {
            let pause = self.interval / 2 + dice.duration_up_to(self.interval);
            if tokio::time::Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            self.restarted_dead += restart_dead(group)?;
            let (running, empty) = (group.running_slots(), group.empty_slots());
            let leave = running.len() > 1 && (empty.is_empty() || dice.below(2) == 0);
            if leave {
                group
                    .stop(running[dice.below(running.len() as u64) as usize])
                    .await?;
                self.leaves += 1;
            } else if !empty.is_empty() {
                group.start(empty[dice.below(empty.len() as u64) as usize])?;
                self.joins += 1;
            }
        }
        tokio::time::sleep_until(deadline).await;
        Ok(())
    }

    fn notes(&self) -> Vec<(String, String)> {
        vec![
            (
                "membership changes".to_owned(),
                format!("{} graceful leaves, {} joins", self.leaves, self.joins),
            ),
            (
                "restarted after dying".to_owned(),
                self.restarted_dead.to_string(),
            ),
        ]
    }
}
