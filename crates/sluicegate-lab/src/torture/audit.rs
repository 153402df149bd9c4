//! Judging a campaign from its members' journals.
//!
//! # Rules checked
//!
//! - Lost: a produced record (key, sequence number) that no journal holds.
//! - Duplicated: handlings beyond the first of each record.
//! - Order: within one assignment of a partition to one member process (the journal lines
//!   between the pipeline's start and stop of that partition), in key mode each key's
//!   records must come in strictly increasing offsets and sequence numbers, one at a time
//!   (a handling starts no earlier than the previous one of its key ended); in partition
//!   mode the same holds for the whole partition. Each handling that breaks this counts as
//!   one violation. Across assignments a new owner restarts from the committed offset, which
//!   repeats records (counted as duplicates, bounded below) but never skips any (a skip
//!   shows as lost).
//! - Duplicate bound: a record is repeated only when the partition moves on (a revoke, a
//!   shutdown, a kill, a lost assignment) and the next owner resumes from the last committed
//!   offset. So duplicates may not exceed the sum, over every assignment of a partition to a
//!   member process, of the records it handled at or past the last offset it knew committed
//!   (the member journals every commit the broker accepted, see [`super::commits`]). Over
//!   that bound means a new owner resumed before the committed offset.
//! - In-flight bound (reported, not judged): what a kill could repeat if commits always
//!   succeeded: the records the killed process handled in its last commit interval plus
//!   [`COMMIT_SLACK`], plus one demand window (`--partition-buffer`) per partition it held.
//!   Commits the broker refuses while the group rebalances (`RebalanceInProgress`,
//!   `IllegalGeneration`) let more pile up, so kills during a rebalance exceed it.
//! - Worst pause: per partition, from its first handling on, the longest time in which a
//!   record of the partition was produced and waiting and none of its records was handled.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::group::{Ending, Incarnation};
use super::journal::{Entry, Handled, JournalRead};
use super::member::Order;
use super::workload::Workload;

/// Time allowed, beyond the commit interval, for an asynchronous commit to reach the broker.
pub const COMMIT_SLACK: Duration = Duration::from_millis(500);

/// What the audit needs to know about the campaign's settings.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub order: Order,
    pub partition_buffer: u64,
    pub commit_interval: Duration,
}

/// The longest pause found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pause {
    pub micros: u64,
    pub partition: i32,
    /// When the pause began.
    pub from_us: u64,
}

/// The audit's findings.
#[derive(Debug, Default)]
pub struct Findings {
    pub processed: u64,
    pub distinct: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub order_violations: u64,
    /// Handlings of records the campaign did not produce (or with unreadable keys).
    pub unknown: u64,
    /// Handlings outside any start/stop of their partition in their journal.
    pub unassigned: u64,
    pub duplicate_bound: u64,
    pub kills: u64,
    /// Kills that repeated more than the in-flight bound.
    pub kills_over_in_flight_bound: u64,
    /// Partition stops journaled (revokes and shutdowns).
    pub graceful_stops: u64,
    pub worst_pause: Pause,
    pub peak_rss_bytes: u64,
    pub torn_lines: u64,
    /// A few lost records, as `kKEY#SEQ`, for the report.
    pub lost_sample: Vec<String>,
}

/// One assignment of a partition to a member process: the offsets it handled and the last
/// offset it knew committed.
#[derive(Default)]
struct Assignment {
    offsets: Vec<i64>,
    committed: Option<i64>,
}

impl Assignment {
    /// Handlings at or past the last commit: what the next owner may repeat.
    fn uncommitted(&self) -> u64 {
        let committed = self.committed.unwrap_or(i64::MIN);
        self.offsets
            .iter()
            .filter(|offset| **offset >= committed)
            .count() as u64
    }
}

/// The last handling seen in an order stream.
#[derive(Clone, Copy)]
struct Last {
    offset: i64,
    seq: u64,
    end_us: u64,
}

/// Audits the journals (one per incarnation, in the same order) of a campaign that produced
/// `workload.records` records.
pub fn audit(
    workload: &Workload,
    incarnations: &[Incarnation],
    journals: &[JournalRead],
    rules: Rules,
) -> Findings {
    let mut findings = Findings::default();
    let records = workload.records as usize;
    let mut handled_count = vec![0u32; records];
    let mut first_end = vec![u64::MAX; records];
    let mut produced_at = vec![0u64; records];
    let mut partition_of = vec![0i32; records];
    let mut handling_times: HashMap<i32, Vec<u64>> = HashMap::new();
    let mut first_handler = vec![usize::MAX; records];
    let mut epochs = 0u64;
    let mut kills = Vec::new();
    for (number, (incarnation, journal)) in incarnations.iter().zip(journals).enumerate() {
        findings.torn_lines += journal.torn_lines;
        // Open assignments (global id for the order streams, index into `assignments`).
        let mut open: HashMap<i32, (u64, usize)> = HashMap::new();
        let mut latest: HashMap<i32, usize> = HashMap::new();
        let mut assignments: Vec<Assignment> = Vec::new();
        let mut last_seen: HashMap<(u64, Option<u32>), Last> = HashMap::new();
        let mut end_times = Vec::new();
        for entry in &journal.entries {
            match *entry {
                Entry::Assigned { partition, .. } => {
                    epochs += 1;
                    assignments.push(Assignment::default());
                    open.insert(partition, (epochs, assignments.len() - 1));
                    latest.insert(partition, assignments.len() - 1);
                }
                Entry::Revoked { partition, .. } => {
                    open.remove(&partition);
                    findings.graceful_stops += 1;
                }
                Entry::Committed { partition, offset } => {
                    // A final commit may be journaled just after the stop.
                    if let Some(index) = latest.get(&partition) {
                        let assignment = &mut assignments[*index];
                        assignment.committed = assignment.committed.max(Some(offset));
                    }
                }
                Entry::Memory { peak_rss_bytes } => {
                    findings.peak_rss_bytes = findings.peak_rss_bytes.max(peak_rss_bytes);
                }
                Entry::Handled(handled) => {
                    findings.processed += 1;
                    end_times.push(handled.end_us);
                    handling_times
                        .entry(handled.partition)
                        .or_default()
                        .push(handled.end_us);
                    if let Some(index) = workload.index(handled.key, handled.seq) {
                        let index = index as usize;
                        handled_count[index] += 1;
                        if handled.end_us < first_end[index] {
                            first_end[index] = handled.end_us;
                            produced_at[index] = handled.produced_us;
                            partition_of[index] = handled.partition;
                            first_handler[index] = number;
                        }
                    } else {
                        findings.unknown += 1;
                    }
                    let Some((epoch, index)) = open.get(&handled.partition).copied() else {
                        findings.unassigned += 1;
                        continue;
                    };
                    assignments[index].offsets.push(handled.offset);
                    let stream = match rules.order {
                        Order::Key => (epoch, Some(handled.key)),
                        Order::Partition => (epoch, None),
                    };
                    if let Some(last) = last_seen.get(&stream) {
                        if out_of_order(last, &handled, rules.order) {
                            findings.order_violations += 1;
                        }
                    }
                    last_seen.insert(
                        stream,
                        Last {
                            offset: handled.offset,
                            seq: handled.seq,
                            end_us: handled.end_us,
                        },
                    );
                }
            }
        }
        findings.duplicate_bound += assignments.iter().map(Assignment::uncommitted).sum::<u64>();
        if let Some((at_us, Ending::Killed | Ending::Died)) = incarnation.ended {
            let window = (rules.commit_interval + COMMIT_SLACK).as_micros() as u64;
            let recent = end_times
                .iter()
                .filter(|end| **end + window > at_us)
                .count() as u64;
            kills.push((number, recent + rules.partition_buffer * open.len() as u64));
        }
    }
    // Repeats of the records each process handled first.
    let mut repeated = vec![0u64; incarnations.len()];
    for (index, count) in handled_count.iter().enumerate() {
        if *count == 0 {
            findings.lost += 1;
            if findings.lost_sample.len() < 5 {
                let keys = u64::from(workload.keys);
                let index = index as u64;
                findings
                    .lost_sample
                    .push(format!("k{}#{}", index % keys, index / keys));
            }
        } else {
            findings.distinct += 1;
            repeated[first_handler[index]] += u64::from(*count - 1);
        }
    }
    findings.kills = kills.len() as u64;
    findings.kills_over_in_flight_bound = kills
        .iter()
        .filter(|(number, bound)| repeated[*number] > *bound)
        .count() as u64;
    findings.duplicated = findings.processed - findings.unknown - findings.distinct;
    findings.worst_pause = worst_pause(&handling_times, &first_end, &produced_at, &partition_of);
    findings
}

/// How long after `mark_us` every partition handled a record produced after it: the end of
/// the latest such first handling. `None` when no record produced after the mark was handled
/// (a record never handled is counted lost by [`audit`]).
pub fn recovery_after(journals: &[JournalRead], mark_us: u64) -> Option<Duration> {
    let mut first_after: HashMap<i32, u64> = HashMap::new();
    for journal in journals {
        for entry in &journal.entries {
            if let Entry::Handled(handled) = entry {
                if handled.produced_us > mark_us {
                    let first = first_after.entry(handled.partition).or_insert(u64::MAX);
                    *first = (*first).min(handled.end_us);
                }
            }
        }
    }
    let latest = first_after.values().copied().max()?;
    Some(Duration::from_micros(latest.saturating_sub(mark_us)))
}

/// Whether `next` breaks the order after `last` in the same stream.
fn out_of_order(last: &Last, next: &Handled, order: Order) -> bool {
    let overlaps = next.start_us < last.end_us;
    let backwards = next.offset <= last.offset;
    match order {
        Order::Key => backwards || overlaps || next.seq <= last.seq,
        Order::Partition => backwards || overlaps,
    }
}

/// The longest pause of any partition (see the module docs).
fn worst_pause(
    handling_times: &HashMap<i32, Vec<u64>>,
    first_end: &[u64],
    produced_at: &[u64],
    partition_of: &[i32],
) -> Pause {
    // Per partition: (first handled, produced) of its records, by first handling.
    let mut firsts: HashMap<i32, Vec<(u64, u64)>> = HashMap::new();
    for index in 0..first_end.len() {
        if first_end[index] != u64::MAX {
            firsts
                .entry(partition_of[index])
                .or_default()
                .push((first_end[index], produced_at[index]));
        }
    }
    let mut worst = Pause::default();
    let partitions: BTreeSet<i32> = handling_times.keys().copied().collect();
    for partition in partitions {
        let mut times = handling_times[&partition].clone();
        times.sort_unstable();
        let mut records = firsts.remove(&partition).unwrap_or_default();
        records.sort_unstable();
        // waiting_from[j]: the earliest production among records first handled at or after
        // the j-th first handling.
        let mut waiting_from = vec![u64::MAX; records.len() + 1];
        for j in (0..records.len()).rev() {
            waiting_from[j] = waiting_from[j + 1].min(records[j].1);
        }
        let mut next_unhandled = 0;
        for pair in times.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            while next_unhandled < records.len() && records[next_unhandled].0 <= from {
                next_unhandled += 1;
            }
            let waiting_since = waiting_from[next_unhandled];
            if waiting_since < to {
                let start = from.max(waiting_since);
                if to - start > worst.micros {
                    worst = Pause {
                        micros: to - start,
                        partition,
                        from_us: start,
                    };
                }
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const RULES: Rules = Rules {
        order: Order::Key,
        partition_buffer: 10,
        commit_interval: Duration::from_millis(200),
    };

    fn handled(key: u32, seq: u64, offset: i64, at: u64) -> Entry {
        Entry::Handled(Handled {
            key,
            seq,
            partition: 0,
            offset,
            produced_us: 0,
            start_us: at,
            end_us: at + 1,
        })
    }

    fn assigned() -> Entry {
        Entry::Assigned {
            partition: 0,
            at_us: 0,
        }
    }

    fn committed(offset: i64) -> Entry {
        Entry::Committed {
            partition: 0,
            offset,
        }
    }

    fn incarnation(ended: Option<(u64, Ending)>) -> Incarnation {
        Incarnation {
            journal: PathBuf::new(),
            ended,
        }
    }

    fn journal(entries: Vec<Entry>) -> JournalRead {
        JournalRead {
            entries,
            torn_lines: 0,
        }
    }

    fn workload(records: u64) -> Workload {
        Workload {
            records,
            keys: 2,
            window: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_kill_repeats_records_within_the_bound() {
        // Records 0..4: k0#0 k1#0 k0#1 k1#1 at offsets 0..4.
        let first = journal(vec![
            assigned(),
            handled(0, 0, 0, 10),
            handled(1, 0, 1, 20),
            committed(2),
            handled(0, 1, 2, 30),
        ]);
        let second = journal(vec![
            assigned(),
            handled(0, 1, 2, 2_000_000),
            handled(1, 1, 3, 2_000_010),
            committed(4),
        ]);
        let findings = audit(
            &workload(4),
            &[incarnation(Some((40, Ending::Killed))), incarnation(None)],
            &[first, second],
            RULES,
        );
        assert_eq!(findings.lost, 0);
        assert_eq!(findings.duplicated, 1);
        assert_eq!(findings.order_violations, 0);
        assert_eq!(findings.kills, 1);
        // Offset 2 was handled and not committed when the process was killed.
        assert_eq!(findings.duplicate_bound, 1);
        // Within 3 journaled in the window before the kill + one window for the partition.
        assert_eq!(findings.kills_over_in_flight_bound, 0);
        assert_eq!(findings.worst_pause.micros, 2_000_001 - 31);
    }

    #[test]
    fn backwards_and_overlapping_handlings_are_violations() {
        let entries = journal(vec![
            assigned(),
            handled(0, 1, 2, 10),
            handled(0, 0, 0, 20),
            handled(1, 0, 1, 30),
            // Starts before the previous k1 handling ended.
            Entry::Handled(Handled {
                key: 1,
                seq: 1,
                partition: 0,
                offset: 3,
                produced_us: 0,
                start_us: 30,
                end_us: 40,
            }),
        ]);
        let findings = audit(&workload(4), &[incarnation(None)], &[entries], RULES);
        assert_eq!(findings.order_violations, 2);
        assert_eq!(findings.lost, 0);
    }

    #[test]
    fn a_new_assignment_starts_a_new_order_stream() {
        let entries = journal(vec![
            assigned(),
            handled(0, 0, 0, 10),
            handled(0, 1, 2, 20),
            Entry::Revoked {
                partition: 0,
                at_us: 25,
            },
            // The final commit of the revoke, journaled after the stop.
            committed(2),
            assigned(),
            handled(0, 1, 2, 30),
            handled(1, 0, 1, 40),
            handled(1, 1, 3, 50),
            committed(4),
        ]);
        let findings = audit(&workload(4), &[incarnation(None)], &[entries], RULES);
        assert_eq!(findings.order_violations, 0);
        assert_eq!(findings.duplicated, 1);
        assert_eq!(findings.duplicate_bound, 1);
    }

    #[test]
    fn resuming_before_the_committed_offset_exceeds_the_bound() {
        let first = journal(vec![
            assigned(),
            handled(0, 0, 0, 10),
            handled(1, 0, 1, 20),
            committed(2),
        ]);
        let second = journal(vec![
            assigned(),
            handled(0, 0, 0, 30),
            handled(1, 0, 1, 40),
            committed(2),
        ]);
        let findings = audit(
            &workload(2),
            &[incarnation(Some((25, Ending::Killed))), incarnation(None)],
            &[first, second],
            RULES,
        );
        assert_eq!(findings.duplicated, 2);
        assert_eq!(findings.duplicate_bound, 0);
    }

    #[test]
    fn unhandled_records_are_lost() {
        let entries = journal(vec![assigned(), handled(0, 0, 0, 10)]);
        let findings = audit(&workload(3), &[incarnation(None)], &[entries], RULES);
        assert_eq!(findings.lost, 2);
        assert_eq!(findings.lost_sample, ["k1#0", "k0#1"]);
    }
}
