//! `sluice-lab torture failover`: brokers of a three-node Apache Kafka are killed with SIGKILL
//! and come back while records are produced (idempotent, acks all) and consumed.
//!
//! The cluster is one started with `scripts/kafka start --nodes 3 --respawn --dir DIR`: each
//! node's pid is in `DIR/node-N/pid`, and the script starts a killed node again on its
//! storage at once. The campaign's topic gets the cluster's default replication (3, with
//! `min.insync.replicas` 2), so one node down at a time loses nothing. The kills fall evenly
//! over the production window, one node at a time, each on a random node, and the next waits
//! until the killed node is running again.
//!
//! Besides the group checks of [`super::audit`], each kill's recovery is measured: from the
//! kill until every partition has handled a record produced after it (the producer's and the
//! group's failover together). It must stay under `--recovery-limit-s`.
//!
//! The members' session timeout is Apache Kafka's default, 45 s, unless
//! `--session-timeout-ms`: killing the node that is both the active controller and the group
//! coordinator leaves the group without a coordinator for about 6 s (the controllers elect a
//! new leader, which fences the killed broker after `broker.session.timeout.ms`). A member
//! session shorter than that expires on the client, and the group rebalances from scratch
//! on the new coordinator, waiting again for the expired member ids: 12-13 s and thousands
//! of duplicates instead of one quiet move.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;

use super::driver::{self, restart_dead, Campaign, Disruption, GroupArgs};
use super::group::Group;
use super::journal::now_us;
use super::CampaignArgs;
use crate::dice::Dice;

#[derive(Debug, Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    common: CampaignArgs,
    /// The cluster's directory (`scripts/kafka start --nodes 3 --respawn --dir DIR`); its
    /// bootstrap servers go in `--brokers`.
    #[arg(long, value_name = "DIR")]
    kafka_dir: PathBuf,
    /// Records to produce [default: 200000; 20000 with --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    records: Option<u64>,
    /// Member processes in the group [default: 3; 2 with --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    members: Option<u64>,
    /// Broker kills [default: 6; 2 with --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=100))]
    kills: Option<u64>,
    /// Seconds over which the records are produced and the kills fall [default: 120; 40 with
    /// --short].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    duration: Option<u64>,
    /// The longest recovery after a kill that passes, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    recovery_limit_s: u64,
    #[command(flatten)]
    group: GroupArgs,
}

/// The members' session timeout unless `--session-timeout-ms`: Apache Kafka's default (see
/// the module docs).
const FAILOVER_SESSION_TIMEOUT_MS: u64 = 45_000;

pub fn run(mut args: FailoverArgs) -> anyhow::Result<()> {
    args.group
        .members
        .session_timeout_ms
        .get_or_insert(FAILOVER_SESSION_TIMEOUT_MS);
    let common = &args.common;
    if common.brokers.is_none() {
        bail!(
            "failover kills the brokers of a cluster it is given: start one with \
             `scripts/kafka start --nodes 3 --respawn --dir DIR` and pass --brokers and --kafka-dir DIR"
        );
    }
    let nodes = node_pid_files(&args.kafka_dir)?;
    let campaign = Campaign::new(
        "failover",
        common,
        &args.group,
        common.size(args.records, 200_000, 20_000),
        common.size(args.duration, 120, 40),
        common.size(args.members, 3, 2),
    );
    let kills = BrokerKills {
        nodes,
        planned: common.size(args.kills, 6, 2),
        kills: Vec::new(),
        restarted_dead: 0,
        recovery_limit: Duration::from_secs(args.recovery_limit_s),
    };
    let report = driver::run(&campaign, kills)?;
    args.common.finish(&report)
}

/// `DIR/node-N/pid` of every node, in node order.
fn node_pid_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = (1..=9)
        .map(|node| dir.join(format!("node-{node}")).join("pid"))
        .take_while(|file| file.exists())
        .collect();
    if files.len() < 3 {
        bail!(
            "{} holds {} node pid files (node-N/pid), not 3: start the cluster with \
             `scripts/kafka start --nodes 3 --respawn --dir {}`",
            dir.display(),
            files.len(),
            dir.display()
        );
    }
    files.truncate(3);
    Ok(files)
}

fn read_pid(file: &Path) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("could not read {}", file.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", file.display()))
}

/// The failover campaign's disruption: SIGKILL a broker, wait for its respawn.
struct BrokerKills {
    nodes: Vec<PathBuf>,
    planned: u64,
    /// Node and moment (µs since the epoch) of each kill sent.
    kills: Vec<(usize, u64)>,
    restarted_dead: u64,
    recovery_limit: Duration,
}

impl BrokerKills {
    async fn kill(&mut self, node: usize) -> anyhow::Result<()> {
        let file = &self.nodes[node];
        let pid = read_pid(file)?;
        let process = rustix::process::Pid::from_raw(pid)
            .with_context(|| format!("{} holds no valid process id", file.display()))?;
        rustix::process::kill_process(process, rustix::process::Signal::KILL)
            .with_context(|| format!("could not kill node {} (pid {pid})", node + 1))?;
        self.kills.push((node, now_us()));
        eprintln!("torture failover: killed node {} (pid {pid})", node + 1);
        // The script notices within a fraction of a second and starts the node again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while read_pid(file)? == pid {
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "node {} was not started again within 30 s: is the cluster running with --respawn?",
                    node + 1
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

impl Disruption for BrokerKills {
    async fn disrupt(
        &mut self,
        group: &mut Group,
        dice: &mut Dice,
        window: Duration,
    ) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        // Evenly spread, so that each node is back (and catches up) before the next kill.
        for kill in 1..=self.planned {
            tokio::time::sleep_until(
                started + window.mul_f64(kill as f64 / (self.planned + 1) as f64),
            )
            .await;
            self.restarted_dead += restart_dead(group)?;
            let node = dice.below(self.nodes.len() as u64) as usize;
            self.kill(node).await?;
        }
        tokio::time::sleep_until(started + window).await;
        Ok(())
    }

    fn notes(&self) -> Vec<(String, String)> {
        vec![
            (
                "broker kills".to_owned(),
                format!(
                    "{} SIGKILLs, nodes {:?}, each started again by scripts/kafka --respawn",
                    self.kills.len(),
                    self.kills
                        .iter()
                        .map(|(node, _)| node + 1)
                        .collect::<Vec<_>>()
                ),
            ),
            (
                "restarted after dying".to_owned(),
                self.restarted_dead.to_string(),
            ),
        ]
    }

    fn recovery_marks(&self) -> Option<(Vec<u64>, Duration)> {
        Some((
            self.kills.iter().map(|(_, at)| *at).collect(),
            self.recovery_limit,
        ))
    }
}
