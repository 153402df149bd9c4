//! The shape every group campaign (crash, storm) shares: start a broker and a topic, start the
//! members, produce the workload while a [`Disruption`] attacks the group, wait until the
//! group committed everything (or the settle timeout), stop the members gracefully, then
//! audit their journals into a [`CampaignReport`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use super::audit::{self, Rules, COMMIT_SLACK};
use super::group::{Ending, Group};
use super::journal::{self, now_us};
use super::member::{MemberSettings, Protocol};
use super::workload::{self, Workload};
use super::{CampaignArgs, CampaignReport};
use crate::bench::child_broker::BenchBroker;
use crate::dice::Dice;
use sluicegate_cli::tool::progress::thousands;
use sluicegate_cli::tool::topic;

/// Flags of the group campaigns besides their sizes.
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    /// Partitions of the campaign's topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=256))]
    pub partitions: i32,
    /// Distinct keys of the records (each with its own sequence numbers).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub keys: u32,
    /// How long, after producing ended, the group may take to commit every record.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub settle_timeout_s: u64,
    /// Keep the work directory (journals and member logs) even when the campaign passes.
    #[arg(long)]
    pub keep: bool,
    /// Seed of the campaign's random choices (default: from the clock; the report shows it).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub members: MemberSettings,
}

/// What attacks the group while the workload is produced.
pub(super) trait Disruption {
    /// Runs for about `window`, acting on `group`.
    async fn disrupt(
        &mut self,
        group: &mut Group,
        dice: &mut Dice,
        window: Duration,
    ) -> anyhow::Result<()>;

    /// Figures about what it did, for the report.
    fn notes(&self) -> Vec<(String, String)>;

    /// Moments (µs since the epoch) after which the group must recover, and within how long:
    /// the report checks each recovery ([`audit::recovery_after`]). None by default.
    fn recovery_marks(&self) -> Option<(Vec<u64>, Duration)> {
        None
    }
}

/// One campaign's plan.
pub struct Campaign<'a> {
    pub name: &'static str,
    pub common: &'a CampaignArgs,
    pub group: &'a GroupArgs,
    pub workload: Workload,
    /// Member slots of the group.
    pub members: usize,
}

impl<'a> Campaign<'a> {
    /// A campaign producing `records` over `duration_s` seconds to a group of `members` slots.
    pub fn new(
        name: &'static str,
        common: &'a CampaignArgs,
        group: &'a GroupArgs,
        records: u64,
        duration_s: u64,
        members: u64,
    ) -> Self {
        Self {
            name,
            common,
            group,
            workload: Workload {
                records,
                keys: group.keys,
                window: Duration::from_secs(duration_s),
            },
            members: members as usize,
        }
    }
}

/// Runs the campaign and audits it.
pub fn run(campaign: &Campaign<'_>, disruption: impl Disruption) -> anyhow::Result<CampaignReport> {
    let name = campaign.name;
    let label = unique_label(name);
    let partitions = campaign.group.partitions;
    let broker =
        BenchBroker::given_or_child(campaign.common.brokers.as_deref(), &[(&label, partitions)])?;
    let bootstrap = broker.bootstrap_servers().to_owned();
    crate::bench::ensure_topic(&bootstrap, &label, partitions)?;
    let dir = std::env::temp_dir().join(&label);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("could not create the work directory {}", dir.display()))?;
    let seed = campaign.group.seed.unwrap_or_else(now_us);
    let mut member_args = vec![
        "--brokers".to_owned(),
        bootstrap.clone(),
        "--topic".to_owned(),
        label.clone(),
        "--group".to_owned(),
        label.clone(),
    ];
    let settings = campaign
        .group
        .members
        .for_broker(campaign.common.brokers.is_some());
    member_args.extend(settings.to_args());
    let mut group = Group::new(&dir, campaign.members, member_args);
    let started = Instant::now();
    let outcome = crate::runtime()?.block_on(drive(
        campaign,
        disruption,
        &mut group,
        Target {
            bootstrap: &bootstrap,
            topic: &label,
        },
        seed,
    ))?;
    let elapsed = started.elapsed();
    let journals = group
        .incarnations
        .iter()
        .map(|incarnation| {
            journal::read(&incarnation.journal)
                .with_context(|| format!("could not read {}", incarnation.journal.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rules = Rules {
        order: settings.order,
        partition_buffer: settings.partition_buffer,
        commit_interval: Duration::from_millis(settings.commit_interval_ms),
    };
    let workload = Workload {
        records: outcome.produced,
        ..campaign.workload
    };
    let findings = audit::audit(&workload, &group.incarnations, &journals, rules);
    let died = group
        .incarnations
        .iter()
        .filter(|incarnation| matches!(incarnation.ended, Some((_, Ending::Died))))
        .count();

    let mut report = CampaignReport::new(name);
    report.produced = outcome.produced;
    report.processed = findings.processed;
    report.lost = findings.lost;
    report.duplicated = findings.duplicated;
    report.order_violations = findings.order_violations;
    report.worst_pause_ms = findings.worst_pause.micros / 1_000;
    report.peak_rss_bytes = findings.peak_rss_bytes;
    report.check_delivery();
    report.check(
        "duplicates bounded",
        findings.duplicated <= findings.duplicate_bound,
        format!(
            "{} duplicates <= {} handled past the last accepted commit when partitions moved",
            thousands(findings.duplicated),
            thousands(findings.duplicate_bound),
        ),
    );
    if let Some((marks, limit)) = &outcome.recovery_marks {
        let recoveries: Vec<Option<Duration>> = marks
            .iter()
            .map(|mark| audit::recovery_after(&journals, *mark))
            .collect();
        let shown: Vec<String> = recoveries
            .iter()
            .map(|recovery| match recovery {
                Some(took) => format!("{:.1} s", took.as_secs_f64()),
                None => "never".to_owned(),
            })
            .collect();
        report.check(
            "recovered after each disruption",
            recoveries
                .iter()
                .all(|recovery| recovery.is_some_and(|took| took < *limit)),
            format!(
                "every partition handled a record produced after each one within {} s: {}",
                limit.as_secs(),
                if shown.is_empty() {
                    "none happened".to_owned()
                } else {
                    shown.join(", ")
                }
            ),
        );
    }
    report.check(
        "members ended only when told",
        died == 0,
        format!("{died} member processes exited on their own"),
    );
    report.check(
        "journals consistent",
        findings.unknown == 0 && findings.unassigned == 0 && findings.torn_lines <= findings.kills,
        format!(
            "{} unknown records, {} handlings outside an assignment, {} torn lines",
            findings.unknown, findings.unassigned, findings.torn_lines
        ),
    );
    report.note("broker", broker.label());
    report.note(
        "shape",
        format!(
            "{} records, {} keys, {} partitions, {} member slots, {} order",
            thousands(outcome.produced),
            campaign.group.keys,
            partitions,
            campaign.members,
            settings.order
        ),
    );
    report.note(
        "member settings",
        format!(
            "partition buffer {}, commit interval {} ms, session timeout {}, handler 0-{} us, \
             concurrency {}, group protocol {}{}",
            settings.partition_buffer,
            settings.commit_interval_ms,
            match settings.group_protocol {
                Protocol::Classic => format!(
                    "{} ms (heartbeat {} ms)",
                    settings.session_timeout_ms(),
                    settings.heartbeat_interval_ms()
                ),
                Protocol::Consumer => "the broker's".to_owned(),
            },
            settings.handler_max_us,
            settings.concurrency,
            settings.group_protocol,
            if settings.static_membership {
                ", static membership"
            } else {
                ""
            }
        ),
    );
    for (name, value) in outcome.disruption_notes {
        report.note(&name, value);
    }
    report.note("member processes", group.incarnations.len());
    report.note(
        "kills over the in-flight bound",
        format!(
            "{} of {} (bound: handled in the last {} ms + {} per held partition; commits refused \
             during rebalances let more pile up)",
            findings.kills_over_in_flight_bound,
            findings.kills,
            (rules.commit_interval + COMMIT_SLACK).as_millis(),
            rules.partition_buffer
        ),
    );
    report.note(
        "worst pause at",
        format!(
            "partition {}, {:.1} s into the run",
            findings.worst_pause.partition,
            findings
                .worst_pause
                .from_us
                .saturating_sub(outcome.started_us) as f64
                / 1e6
        ),
    );
    report.note(
        "settled",
        match outcome.settled_after {
            Some(after) => format!(
                "all committed {:.1} s after producing ended",
                after.as_secs_f64()
            ),
            None => format!(
                "NOT all committed within {} s after producing ended",
                campaign.group.settle_timeout_s
            ),
        },
    );
    if !findings.lost_sample.is_empty() {
        report.note("lost (first)", findings.lost_sample.join(" "));
    }
    report.note("elapsed", format!("{:.1} s", elapsed.as_secs_f64()));
    report.note("seed", seed);
    drop(group);
    keep_or_remove(&dir, campaign.group.keep, &mut report);
    Ok(report)
}

/// Where the campaign's records go.
struct Target<'a> {
    bootstrap: &'a str,
    topic: &'a str,
}

/// What happened while driving the group.
struct Outcome {
    produced: u64,
    started_us: u64,
    settled_after: Option<Duration>,
    disruption_notes: Vec<(String, String)>,
    recovery_marks: Option<(Vec<u64>, Duration)>,
}

async fn drive(
    campaign: &Campaign<'_>,
    mut disruption: impl Disruption,
    group: &mut Group,
    target: Target<'_>,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let workload = campaign.workload;
    eprintln!(
        "torture {}: {} records over {} s to {} partitions, {} members",
        campaign.name,
        thousands(workload.records),
        workload.window.as_secs(),
        campaign.group.partitions,
        campaign.members
    );
    for slot in 0..campaign.members {
        group.start(slot)?;
    }
    let started_us = now_us();
    let producer = tokio::spawn({
        let (bootstrap, topic) = (target.bootstrap.to_owned(), target.topic.to_owned());
        async move { workload::produce(&bootstrap, &topic, workload).await }
    });
    let mut dice = Dice::new(seed);
    disruption
        .disrupt(group, &mut dice, workload.window)
        .await?;
    let produced = producer.await.context("the producer task failed")??;
    eprintln!(
        "torture {}: produced {} records; waiting for the group to commit them",
        campaign.name,
        thousands(produced)
    );
    let settled_after = settle(
        group,
        &target,
        Duration::from_secs(campaign.group.settle_timeout_s),
    )
    .await?;
    group.stop_all().await?;
    Ok(Outcome {
        produced,
        started_us,
        settled_after,
        disruption_notes: disruption.notes(),
        recovery_marks: disruption.recovery_marks(),
    })
}

/// Waits until the group committed every record of the topic (its committed offsets reach
/// the end offsets), restarting members that died on their own; `None` after `timeout`.
async fn settle(
    group: &mut Group,
    target: &Target<'_>,
    timeout: Duration,
) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        restart_dead(group)?;
        let (bootstrap, topic) = (target.bootstrap.to_owned(), target.topic.to_owned());
        let caught_up = tokio::task::spawn_blocking(move || all_committed(&bootstrap, &topic))
            .await
            .context("the offsets probe failed")??;
        if caught_up {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(None)
}

/// Starts again the members that died on their own; returns how many.
pub fn restart_dead(group: &mut Group) -> anyhow::Result<u64> {
    let before = group.empty_slots();
    group.reap_dead();
    let dead: Vec<usize> = group
        .empty_slots()
        .into_iter()
        .filter(|slot| !before.contains(slot))
        .collect();
    for &slot in &dead {
        group.start(slot)?;
    }
    Ok(dead.len() as u64)
}

/// Whether the group (named like the topic) committed up to the end of every partition.
fn all_committed(bootstrap: &str, topic_name: &str) -> anyhow::Result<bool> {
    let offsets = topic::partition_offsets(bootstrap, topic_name)?
        .with_context(|| format!("topic `{topic_name}` vanished"))?;
    let committed = topic::committed_offsets(
        bootstrap,
        topic_name,
        topic_name,
        offsets.iter().map(|offsets| offsets.partition),
    )?;
    Ok(offsets.iter().all(|offsets| {
        offsets.records() == 0
            || committed
                .get(&offsets.partition)
                .is_some_and(|committed| *committed >= offsets.high)
    }))
}

/// A topic, group and work directory name no other run uses.
fn unique_label(campaign: &str) -> String {
    format!(
        "sluice-torture-{campaign}-{}-{}",
        std::process::id(),
        now_us()
    )
}

/// Removes the work directory of a passing campaign unless asked to keep it; otherwise keeps
/// it and says where.
fn keep_or_remove(dir: &Path, keep: bool, report: &mut CampaignReport) {
    if report.pass && !keep {
        if let Err(error) = std::fs::remove_dir_all(dir) {
            tracing::warn!(%error, dir = %dir.display(), "could not remove the work directory");
        }
    } else {
        report.note("journals kept in", PathBuf::from(dir).display());
    }
}
