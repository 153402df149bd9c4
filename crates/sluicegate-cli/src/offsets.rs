//! `sluice offsets reset`: moves a consumer group's committed offsets on a topic, as
//! `kafka-consumer-groups.sh --reset-offsets` does, to replay records or skip them.
//!
//! It is a dry run unless `--execute` is given: it prints, per partition, the offset the group
//! committed and the one it would commit. It refuses while the group has members (the brokers
//! refuse a commit from outside an active group too), so stop the group's consumers first; they
//! resume from the new offsets when they start again.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use sluicegate::admin::{Admin, AdminError, Watermarks};
use sluicegate::TopicPartition;

use crate::console::start::parse_rfc3339;
use crate::console::{parse_topic, ClusterArgs};
use crate::out;

/// `sluice offsets ...`.
#[derive(Debug, Subcommand)]
pub enum OffsetsCommand {
    /// Move a group's committed offsets on a topic (a dry run unless --execute).
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
--to: earliest (the oldest record kept), latest (the end: skip everything written so far), \
datetime:T (the first record at or after T, RFC 3339 such as 2024-05-01T00:00:00Z, or ms since \
the epoch; the end where none is that late), offset:N (clamped to what the partition keeps), \
shift:-N or shift:+N (from the committed offset, clamped; a partition without one shifts from \
its oldest record).

Prints TOPIC PARTITION CURRENT NEW per partition (CURRENT - when nothing is committed). Without \
--execute nothing changes. The group must have no members: stop its consumers first.

Exit status: 0 ok (dry run or done); 1 when the brokers do not answer, the topic does not \
exist or the group has members; 2 for an invalid option.

Examples:
  sluice offsets reset --group billing --topic orders --to datetime:2024-05-01T00:00:00Z
  sluice offsets reset --group billing --topic orders --to shift:-100 --partition 3 --execute")]
pub struct ResetArgs {
    /// The consumer group whose offsets move.
    #[arg(long, short = 'g')]
    group: String,
    /// The topic.
    #[arg(long, short = 't', value_parser = parse_topic)]
    topic: String,
    /// Where to: earliest, latest, datetime:T, offset:N, shift:-N or shift:+N.
    #[arg(long)]
    to: ResetTo,
    /// Only this partition (repeat for more; default: every partition of the topic).
    #[arg(long, short = 'p')]
    partition: Vec<i32>,
    /// Commit the new offsets (without it: a dry run).
    #[arg(long)]
    execute: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Where `--to` moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The oldest record kept.
    Earliest,
    /// The end.
    Latest,
    /// The first record at or after this time (ms since the epoch).
    Datetime(i64),
    /// This offset.
    Offset(i64),
    /// The committed offset plus this.
    Shift(i64),
}

impl fmt::Display for ResetTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Latest => f.write_str("latest"),
            Self::Datetime(ms) => write!(f, "datetime:{ms}"),
            Self::Offset(offset) => write!(f, "offset:{offset}"),
            Self::Shift(by) => write!(f, "shift:{by:+}"),
        }
    }
}

impl FromStr for ResetTo {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = || {
            format!(
                "`{text}`: expected earliest, latest, datetime:T, offset:N, shift:-N or shift:+N"
            )
        };
        match text {
            "earliest" => return Ok(Self::Earliest),
            "latest" => return Ok(Self::Latest),
            _ => {}
        }
        let (kind, value) = text.split_once(':').ok_or_else(expected)?;
        match kind {
            "datetime" => match value.parse::<i64>() {
                Ok(ms) if ms >= 0 => Ok(Self::Datetime(ms)),
                Ok(_) => Err(expected()),
                Err(_) => parse_rfc3339(value).map(Self::Datetime).ok_or_else(|| {
                    format!(
                        "`{value}` is not a time like 2024-05-01T12:00:00Z or 1714564800000 (ms)"
                    )
                }),
            },
            "offset" => value
                .parse::<i64>()
                .ok()
                .filter(|offset| *offset >= 0)
                .map(Self::Offset)
                .ok_or_else(expected),
            "shift" if value.starts_with(['-', '+']) => value
                .parse::<i64>()
                .map(Self::Shift)
                .map_err(|_| expected()),
            _ => Err(expected()),
        }
    }
}

/// One partition's move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Move {
    partition: i32,
    current: Option<i64>,
    new: i64,
}

pub fn run(command: OffsetsCommand) -> anyhow::Result<()> {
    match command {
        OffsetsCommand::Reset(args) => reset(&args),
    }
}

fn reset(args: &ResetArgs) -> anyhow::Result<()> {
    let cluster = &args.cluster;
    let admin = cluster.admin(cluster.options())?;
    let Some(all) = cluster.partitions_of(&admin, &args.topic)? else {
        return Err(anyhow!(
            "topic `{}` does not exist on {}",
            args.topic,
            cluster.brokers
        ));
    };
    let partitions = if args.partition.is_empty() {
        all
    } else {
        if let Some(missing) = args.partition.iter().find(|p| !all.contains(p)) {
            return Err(anyhow!(
                "topic `{}` has no partition {missing} (it has {})",
                args.topic,
                all.len()
            ));
        }
        let mut chosen = args.partition.clone();
        chosen.sort_unstable();
        chosen.dedup();
        chosen
    };
    refuse_if_active(&admin, &args.group, cluster)?;
    let moves = plan(&admin, args, &partitions).map_err(|error| cluster.error(error))?;
    out!("TOPIC\tPARTITION\tCURRENT\tNEW")?;
    for change in &moves {
        let current = change
            .current
            .map_or_else(|| "-".to_owned(), |offset| offset.to_string());
        out!(
            "{}\t{}\t{current}\t{}",
            args.topic,
            change.partition,
            change.new
        )?;
    }
    if !args.execute {
        eprintln!(
            "sluice offsets reset: dry run, nothing changed; add --execute to commit group `{}` \
             to these offsets",
            args.group
        );
        return Ok(());
    }
    let offsets: BTreeMap<TopicPartition, i64> = moves
        .iter()
        .map(|change| {
            (
                TopicPartition::new(&args.topic, change.partition),
                change.new,
            )
        })
        .collect();
    match admin.commit_offsets(&args.group, &offsets) {
        Ok(()) => {}
        Err(AdminError::GroupActive { group }) => return Err(active(&group, None)),
        Err(other) => return Err(cluster.error(other)),
    }
    eprintln!(
        "sluice offsets reset: group `{}` now starts {} partition(s) of `{}` at the NEW offsets",
        args.group,
        moves.len(),
        args.topic
    );
    Ok(())
}

/// Refuses a group the brokers describe with members (a group on the consumer protocol is not
/// described that way: the brokers refuse the commit instead).
fn refuse_if_active(admin: &Admin, group: &str, cluster: &ClusterArgs) -> anyhow::Result<()> {
    match admin.describe_group(group) {
        Ok(Some(description)) if !description.members.is_empty() => Err(active(
            group,
            Some(format!(
                "{} member(s), state {}",
                description.members.len(),
                description.state
            )),
        )),
        Ok(_) => Ok(()),
        // A broker that cannot describe groups still refuses a commit into an active one.
        Err(AdminError::DescribeGroup { .. }) => Ok(()),
        Err(other) => Err(cluster.error(other)),
    }
}

fn active(group: &str, detail: Option<String>) -> anyhow::Error {
    let detail = detail
        .map(|detail| format!(" ({detail})"))
        .unwrap_or_default();
    anyhow!(
        "group `{group}` has active members{detail}: offsets can be reset only while the group \
         is inactive; stop its consumers first"
    )
}

/// The move of each partition.
fn plan(admin: &Admin, args: &ResetArgs, partitions: &[i32]) -> Result<Vec<Move>, AdminError> {
    let committed = admin.committed_offsets(
        &args.group,
        partitions
            .iter()
            .map(|&partition| TopicPartition::new(&args.topic, partition)),
    )?;
    let by_time = match args.to {
        ResetTo::Datetime(ms) => admin.offsets_for_time(&args.topic, partitions, ms)?,
        _ => BTreeMap::new(),
    };
    partitions
        .iter()
        .map(|&partition| {
            let watermarks = admin.watermarks(&args.topic, partition)?;
            let current = committed
                .get(&TopicPartition::new(&args.topic, partition))
                .copied();
            let new = target(
                args.to,
                current,
                watermarks,
                by_time.get(&partition).copied(),
            );
            Ok(Move {
                partition,
                current,
                new,
            })
        })
        .collect()
}

/// Where `to` moves a partition with these watermarks, committed offset and (for a time) the
/// offset of that time; always within what the partition keeps.
fn target(to: ResetTo, current: Option<i64>, ends: Watermarks, at_time: Option<i64>) -> i64 {
    let wanted = match to {
        ResetTo::Earliest => ends.low,
        ResetTo::Latest => ends.high,
        ResetTo::Datetime(_) => at_time.unwrap_or(ends.high),
        ResetTo::Offset(offset) => offset,
        ResetTo::Shift(by) => current.unwrap_or(ends.low).saturating_add(by),
    };
    wanted.clamp(ends.low, ends.high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_target_parses_and_prints_back() {
        for (text, to) in [
            ("earliest", ResetTo::Earliest),
            ("latest", ResetTo::Latest),
            (
                "datetime:1714564800000",
                ResetTo::Datetime(1_714_564_800_000),
            ),
            (
                "datetime:2024-05-01T12:00:00Z",
                ResetTo::Datetime(1_714_564_800_000),
            ),
            ("offset:42", ResetTo::Offset(42)),
            ("shift:-5", ResetTo::Shift(-5)),
            ("shift:+5", ResetTo::Shift(5)),
        ] {
            assert_eq!(text.parse::<ResetTo>(), Ok(to), "{text}");
        }
        assert_eq!(ResetTo::Shift(-5).to_string(), "shift:-5");
        for bad in [
            "begin",
            "offset:-1",
            "shift:5",
            "datetime:yesterday",
            "offset",
        ] {
            assert!(bad.parse::<ResetTo>().is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_stay_within_what_the_partition_keeps() {
        let ends = Watermarks::new(10, 20);
        assert_eq!(target(ResetTo::Earliest, Some(15), ends, None), 10);
        assert_eq!(target(ResetTo::Latest, Some(15), ends, None), 20);
        assert_eq!(target(ResetTo::Offset(3), None, ends, None), 10);
        assert_eq!(target(ResetTo::Offset(30), None, ends, None), 20);
        assert_eq!(target(ResetTo::Shift(-3), Some(15), ends, None), 12);
        assert_eq!(target(ResetTo::Shift(-30), Some(15), ends, None), 10);
        assert_eq!(target(ResetTo::Shift(4), None, ends, None), 14);
        assert_eq!(target(ResetTo::Datetime(0), None, ends, Some(17)), 17);
    }
}
