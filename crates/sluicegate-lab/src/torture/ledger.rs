//! The in-process campaigns' bookkeeping (`faults`, `poison`): which records were produced and
//! when their delivery was confirmed, which the handlers saw and when, and the report figures
//! derived from both.
//!
//! A record is named by a [`RecordId`]: its key (`k007`) and its sequence number within the
//! key, carried in the [`SEQ_HEADER`] header so that even an undecodable value can be named.
//! Each key's records are produced one at a time, the next only once the previous one's
//! delivery is confirmed, so a key's sequence numbers are in offset order on the topic.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sluicegate::producer::{ProduceRecord, Producer};
use sluicegate::Record;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The header holding a record's sequence number within its key (decimal).
pub const SEQ_HEADER: &str = "torture-seq";

/// A campaign record: its key and its sequence number within the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    pub key: u32,
    pub seq: u64,
}

impl RecordId {
    /// The record key on the topic, e.g. `k007`.
    pub fn key_text(&self) -> String {
        format!("k{:03}", self.key)
    }

    /// Reads the id back from a record's key and [`SEQ_HEADER`]; `None` for a foreign record.
    pub fn of(record: &Record) -> Option<RecordId> {
        let key = std::str::from_utf8(record.key.as_deref()?).ok()?;
        let key = key.strip_prefix('k')?.parse().ok()?;
        let header = record.headers.iter().find(|h| h.key == SEQ_HEADER)?;
        let seq = std::str::from_utf8(header.value.as_deref()?).ok()?;
        Some(RecordId {
            key,
            seq: seq.parse().ok()?,
        })
    }
}

/// What a campaign produced and what its handlers saw; shared by producer tasks and handlers.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Delivery confirmed: when.
    produced: Mutex<HashMap<RecordId, Instant>>,
    /// Every handler call, in the order they started.
    handled: Mutex<Vec<(RecordId, Instant)>>,
    /// Records whose delivery failed (never counted as produced).
    delivery_failures: Mutex<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ledger {
    /// A record's delivery was confirmed now.
    pub fn delivered(&self, id: RecordId) {
        lock(&self.produced).insert(id, Instant::now());
    }

    /// A handler started on a record now.
    pub fn handled(&self, id: RecordId) {
        lock(&self.handled).push((id, Instant::now()));
    }

    /// The start of the first handler call at or after `since`, if any.
    pub fn first_handled_since(&self, since: Instant) -> Option<Instant> {
        lock(&self.handled)
            .iter()
            .rev()
            .take_while(|(_, at)| *at >= since)
            .last()
            .map(|(_, at)| *at)
    }

    /// Records whose delivery failed.
    pub fn delivery_failures(&self) -> u64 {
        *lock(&self.delivery_failures)
    }

    /// Whether every record produced so far was handled at least once.
    pub fn all_handled(&self) -> bool {
        let produced = lock(&self.produced);
        let handled = lock(&self.handled);
        let seen: std::collections::HashSet<RecordId> = handled.iter().map(|(id, _)| *id).collect();
        produced.keys().all(|id| seen.contains(id))
    }

    /// Copies of what was produced and handled, for [`tally`].
    pub fn snapshot(&self) -> (HashMap<RecordId, Instant>, Vec<(RecordId, Instant)>) {
        (lock(&self.produced).clone(), lock(&self.handled).clone())
    }
}

/// The figures of a run, derived from a ledger's snapshot by [`tally`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub produced: u64,
    /// Handler calls on produced records, duplicates included.
    pub processed: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// First handlings of a record while a lower sequence number of its key, produced, had
    /// not been handled yet.
    pub order_violations: u64,
    /// Handled records whose delivery was never confirmed (a failed or unfinished delivery
    /// that reached the topic anyway): neither lost nor counted as produced.
    pub unconfirmed: u64,
    /// The longest time in which a produced record was waiting (delivered, not yet handled)
    /// and no handler call started; a lost record waits until `end`.
    pub worst_pause: Duration,
}

/// Derives the report figures from what was produced and handled, as of `end`.
pub fn tally(
    produced: &HashMap<RecordId, Instant>,
    handled: &[(RecordId, Instant)],
    end: Instant,
) -> Tally {
    let mut tally = Tally {
        produced: produced.len() as u64,
        ..Tally::default()
    };
    // Order: per key, the produced sequence numbers not handled yet.
    let mut waiting: HashMap<u32, BTreeSet<u64>> = HashMap::new();
    for id in produced.keys() {
        waiting.entry(id.key).or_default().insert(id.seq);
    }
    let mut calls: Vec<&(RecordId, Instant)> = handled.iter().collect();
    calls.sort_by_key(|(_, at)| *at);
    let mut first: HashMap<RecordId, Instant> = HashMap::new();
    for (id, at) in &calls {
        if !produced.contains_key(id) {
            if first.insert(*id, *at).is_none() {
                tally.unconfirmed += 1;
            }
            continue;
        }
        tally.processed += 1;
        if first.contains_key(id) {
            tally.duplicated += 1;
            continue;
        }
        first.insert(*id, *at);
        if let Some(seqs) = waiting.get_mut(&id.key) {
            if seqs.first().is_some_and(|lowest| *lowest < id.seq) {
                tally.order_violations += 1;
            }
            seqs.remove(&id.seq);
        }
    }
    tally.lost = produced.keys().filter(|id| !first.contains_key(id)).count() as u64;
    tally.worst_pause = worst_pause(produced, &first, &calls, end);
    tally
}

/// See [`Tally::worst_pause`]. For each gap between consecutive handler calls, the records
/// waiting are those first handled after the gap (or never): the pause is the part of the
/// gap after the earliest of them was delivered.
fn worst_pause(
    produced: &HashMap<RecordId, Instant>,
    first: &HashMap<RecordId, Instant>,
    calls: &[&(RecordId, Instant)],
    end: Instant,
) -> Duration {
    // Produced records by first handling (never handled: at `end`), with the earliest
    // delivery among them and every later one.
    let mut by_first: Vec<(Instant, Instant)> = produced
        .iter()
        .map(|(id, delivered)| (first.get(id).copied().unwrap_or(end), *delivered))
        .collect();
    by_first.sort();
    let mut earliest_after = vec![end; by_first.len() + 1];
    for index in (0..by_first.len()).rev() {
        earliest_after[index] = earliest_after[index + 1].min(by_first[index].1);
    }
    let mut times: Vec<Instant> = calls.iter().map(|(_, at)| *at).collect();
    times.push(end);
    let mut worst = Duration::ZERO;
    let mut waiting_from = 0;
    for pair in times.windows(2) {
        let (previous, next) = (pair[0], pair[1]);
        // Records first handled at or before `previous` no longer wait.
        while waiting_from < by_first.len() && by_first[waiting_from].0 <= previous {
            waiting_from += 1;
        }
        let since = earliest_after[waiting_from].max(previous);
        worst = worst.max(next.saturating_duration_since(since));
    }
    worst
}

/// Produces each key's records in sequence, one at a time per key, recording confirmed
/// deliveries in the ledger. Each key runs as a task producing at `rate_per_key` records per
/// second until it produced `per_key` records (when given) or `stop` turns true.
pub struct KeyedProducer {
    pub producer: Producer,
    pub topic: String,
    pub keys: u32,
    pub rate_per_key: f64,
    pub per_key: Option<u64>,
}

/// The value of a record, given its id.
pub type ValueOf = Arc<dyn Fn(RecordId) -> Vec<u8> + Send + Sync>;

impl KeyedProducer {
    /// Starts one task per key; they end on their own or when `stop` turns true.
    pub fn spawn(
        &self,
        ledger: Arc<Ledger>,
        value_of: ValueOf,
        stop: watch::Receiver<bool>,
    ) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let every = Duration::from_secs_f64(1.0 / self.rate_per_key.max(0.001));
        for key in 0..self.keys {
            let (producer, topic, per_key) =
                (self.producer.clone(), self.topic.clone(), self.per_key);
            let (ledger, value_of, mut stop) = (ledger.clone(), value_of.clone(), stop.clone());
            tasks.spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut seq = 0;
                while per_key.is_none_or(|limit| seq < limit) {
                    tokio::select! {
                        _ = stop.wait_for(|stop| *stop) => break,
                        _ = ticks.tick() => {}
                    }
                    let id = RecordId { key, seq };
                    let (key_text, seq_text, value) =
                        (id.key_text(), seq.to_string(), value_of(id));
                    let record = ProduceRecord::new(&value)
                        .key(key_text.as_bytes())
                        .header(SEQ_HEADER, Some(seq_text.as_bytes()));
                    match producer.produce(&topic, record).await {
                        Ok(_) => ledger.delivered(id),
                        Err(error) => {
                            tracing::warn!(%error, key = %key_text, seq, "torture: delivery failed");
                            *lock(&ledger.delivery_failures) += 1;
                        }
                    }
                    seq += 1;
                }
            });
        }
        tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: u32, seq: u64) -> RecordId {
        RecordId { key, seq }
    }

    #[test]
    fn counts_lost_duplicated_and_out_of_order_records() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let produced: HashMap<_, _> = [
            (id(0, 0), at(0)),
            (id(0, 1), at(0)),
            (id(0, 2), at(0)),
            (id(1, 0), at(0)),
            (id(1, 1), at(100)),
        ]
        .into();
        let handled = vec![
            (id(0, 1), at(10)), // before 0/0: out of order
            (id(0, 0), at(20)),
            (id(0, 1), at(30)), // duplicate, not a violation
            (id(0, 2), at(40)),
            (id(1, 0), at(50)),
            (id(9, 0), at(60)), // never confirmed
        ];
        assert_eq!(
            tally(&produced, &handled, at(1000)),
            Tally {
                produced: 5,
                processed: 5,
                // 1/1 (delivered at 100) is never handled: it waits until the end.
                lost: 1,
                duplicated: 1,
                order_violations: 1,
                unconfirmed: 1,
                worst_pause: Duration::from_millis(900),
            }
        );
    }

    #[test]
    fn a_pause_counts_only_while_records_wait() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Nothing waits between 10 and 500; the second record waits from 600 to 900.
        let produced: HashMap<_, _> = [(id(0, 0), at(0)), (id(0, 1), at(600))].into();
        let handled = vec![(id(0, 0), at(10)), (id(0, 1), at(900))];
        let tally = tally(&produced, &handled, at(900));
        assert_eq!(tally.lost, 0);
        assert_eq!(tally.worst_pause, Duration::from_millis(300));
    }

    #[test]
    fn ids_round_trip_through_key_and_header() {
        let original = id(7, 42);
        let record = Record {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: Some(original.key_text().into_bytes()),
            value: Some(vec![0xff]),
            headers: vec![sluicegate::Header {
                key: SEQ_HEADER.into(),
                value: Some(b"42".to_vec()),
            }],
            timestamp_ms: None,
        };
        assert_eq!(original.key_text(), "k007");
        assert_eq!(RecordId::of(&record), Some(original));
    }
}
