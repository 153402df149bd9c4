//! `sluice-lab torture crash`: a group of member processes consumes keyed, sequenced records
//! while the driver kills a random member with SIGKILL at random moments and restarts it.
//!
//! The kills fall at random times between 10 % and 90 % of the production window, so they
//! hit the group mid-stream; each victim restarts after a random 0-1 s. A killed member's
//! partitions wait for the group session timeout before they move, so the worst pause is
//! about that long by design. See [`super::audit`] for the rules checked.
//!
//! Random moments may fall close together. Under the classic protocol a kill during a
//! rebalance stretches it: a member killed after it joined (worst, the group's leader, which
//! computes the assignment) holds every member in the rebalance until its own session
//! expires, so one partition can wait for several sessions in a row. `--even-kills` spreads
//! the kills evenly instead; with a window long enough for each kill's rebalance to end
//! before the next, it measures the pause one kill causes.

use std::time::Duration;

use clap::Args;

use super::driver::{self, restart_dead, Campaign, Disruption, GroupArgs};
use super::group::Group;
use super::CampaignArgs;
use crate::dice::Dice;

#[derive(Debug, Args)]
pub struct CrashArgs {
    #[command(flatten)]
    common: CampaignArgs,
    /// Records to produce [default: 200000; 20000 with --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    records: Option<u64>,
    /// Member processes in the group [default: 4; 3 with --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    members: Option<u64>,
    /// SIGKILLs to send [default: 8; 3 with --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    kills: Option<u64>,
    /// Seconds over which the records are produced and the kills fall [default: 60; 15 with
    /// --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    duration: Option<u64>,
    /// Kill at evenly spread moments of the window instead of random ones.
    #[arg(long)]
    even_kills: bool,
    #[command(flatten)]
    group: GroupArgs,
}

pub fn run(args: CrashArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let campaign = Campaign::new(
        "crash",
        common,
        &args.group,
        common.size(args.records, 200_000, 20_000),
        common.size(args.duration, 60, 15),
        common.size(args.members, 4, 3),
    );
    let kills = Kills {
        planned: common.size(args.kills, 8, 3),
        even: args.even_kills,
        sent: 0,
        restarted_dead: 0,
    };
    let report = driver::run(&campaign, kills)?;
    args.common.finish(&report)
}

/// The crash campaign's disruption: SIGKILL and restart.
struct Kills {
    planned: u64,
    /// Evenly spread moments (`--even-kills`) rather than random ones.
    even: bool,
    sent: u64,
    restarted_dead: u64,
}

impl Disruption for Kills {
    async fn disrupt(
        &mut self,
        group: &mut Group,
        dice: &mut Dice,
        window: Duration,
    ) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        let mut moments: Vec<Duration> = if self.even {
            (1..=self.planned)
                .map(|kill| window.mul_f64(kill as f64 / (self.planned + 1) as f64))
                .collect()
        } else {
            (0..self.planned)
                .map(|_| window / 10 + dice.duration_up_to(window * 8 / 10))
                .collect()
        };
        moments.sort_unstable();
        for moment in moments {
            tokio::time::sleep_until(started + moment).await;
            self.restarted_dead += restart_dead(group)?;
            let running = group.running_slots();
            let victim = running[dice.below(running.len() as u64) as usize];
            group.kill(victim)?;
            self.sent += 1;
            tokio::time::sleep(dice.duration_up_to(Duration::from_secs(1))).await;
            group.start(victim)?;
        }
        tokio::time::sleep_until(started + window).await;
        Ok(())
    }

    fn notes(&self) -> Vec<(String, String)> {
        vec![
            (
                "kills".to_owned(),
                format!(
                    "{} SIGKILLs at {} moments, each followed by a restart",
                    self.sent,
                    if self.even { "evenly spread" } else { "random" }
                ),
            ),
            (
                "restarted after dying".to_owned(),
                self.restarted_dead.to_string(),
            ),
        ]
    }
}
