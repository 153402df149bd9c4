//! Sequence-numbered records, as `sluice demo` and `sluice-lab`'s benchmarks and campaigns
//! produce them: a value that starts with its sequence number, padded to a fixed size; what
//! such records cost the embedded broker; and a [`ProducePlan`] of them for a topic.

use std::time::Duration;

/// Bytes of the big-endian sequence number at the start of every value.
pub const SEQUENCE_BYTES: usize = 8;

/// Bytes the embedded broker (librdkafka's mock cluster) keeps per partition before it
/// silently drops the oldest record batches.
pub const MOCK_PARTITION_BYTES: u64 = 5 * 1024 * 1024;

/// Approximate bytes a record adds to a record batch beyond its value (length, attributes,
/// timestamp and offset deltas, key and header counts), plus a share of the batch header.
const RECORD_OVERHEAD_BYTES: u64 = 16;

/// Writes the value of record `sequence` into `buffer` (resized to `record_bytes`, at least
/// [`SEQUENCE_BYTES`]): the sequence number, then a filler that depends on it.
pub fn fill(buffer: &mut Vec<u8>, sequence: u64, record_bytes: usize) {
    buffer.clear();
    buffer.extend_from_slice(&sequence.to_be_bytes());
    let filler = b"sluicegate-"
        .iter()
        .cycle()
        .zip(sequence.to_le_bytes().into_iter().cycle());
    buffer.extend(
        filler
            .take(record_bytes.saturating_sub(SEQUENCE_BYTES))
            .map(|(letter, salt)| letter ^ (salt & 0x1f)),
    );
}

/// The sequence number at the start of a value, if it is long enough.
pub fn sequence_of(value: &[u8]) -> Option<u64> {
    let bytes: [u8; SEQUENCE_BYTES] = value.get(..SEQUENCE_BYTES)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// What to produce: for each `(partition, count)` of `partitions`, `count` records to that
/// partition, numbered from `first_sequence` on and interleaved over the partitions (one record
/// to each partition in turn). Plain data: a fill of any kind (the library's producer in
/// `sluice demo`, a plain librdkafka one in `sluice-lab`) takes it.
#[derive(Debug, Clone)]
pub struct ProducePlan {
    /// The brokers to produce to.
    pub bootstrap_servers: String,
    /// The topic to fill.
    pub topic: String,
    /// (partition, records to add to it).
    pub partitions: Vec<(i32, u64)>,
    /// The sequence number of the first record.
    pub first_sequence: u64,
    /// Bytes of each value (at least [`SEQUENCE_BYTES`]).
    pub record_bytes: usize,
}

impl ProducePlan {
    /// `records` records spread evenly over partitions `0..partitions` (record `n` goes to
    /// partition `n % partitions`), numbered from 0.
    pub fn even(
        bootstrap_servers: &str,
        topic: &str,
        partitions: i32,
        records: u64,
        record_bytes: usize,
    ) -> Self {
        let per_partition = |partition: i32| {
            let partition = partition as u64;
            let partitions = partitions as u64;
            records / partitions + u64::from(partition < records % partitions)
        };
        Self {
            bootstrap_servers: bootstrap_servers.to_owned(),
            topic: topic.to_owned(),
            partitions: (0..partitions).map(|p| (p, per_partition(p))).collect(),
            first_sequence: 0,
            record_bytes,
        }
    }

    /// Records the plan produces.
    pub fn total(&self) -> u64 {
        self.partitions.iter().map(|(_, count)| count).sum()
    }

    /// The plan's records in the order to produce them, as (partition, sequence number): one
    /// to each partition that still wants some in turn, numbered from `first_sequence` on.
    pub fn records(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        let rounds = self.partitions.iter().map(|(_, count)| *count).max();
        (0..rounds.unwrap_or(0))
            .flat_map(move |round| {
                self.partitions
                    .iter()
                    .filter(move |(_, count)| *count > round)
                    .map(|(partition, _)| *partition)
            })
            .zip(self.first_sequence..)
    }
}

/// How producing a [`ProducePlan`] went.
#[derive(Debug, Clone, Copy)]
pub struct ProduceReport {
    /// Records the brokers acknowledged.
    pub delivered: u64,
    /// From the start of producing until the last acknowledgement.
    pub elapsed: Duration,
}

/// Estimated bytes the embedded broker stores for `records` records of `record_bytes` bytes.
pub fn stored_bytes(records: u64, record_bytes: usize) -> u64 {
    records.saturating_mul(record_bytes as u64 + RECORD_OVERHEAD_BYTES)
}

/// Most records of `record_bytes` bytes one partition of the embedded broker keeps.
pub fn mock_partition_capacity(record_bytes: usize) -> u64 {
    MOCK_PARTITION_BYTES / (record_bytes as u64 + RECORD_OVERHEAD_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_sequence_and_size() {
        let mut buffer = Vec::new();
        for (sequence, size) in [(0, 8), (7, 100), (u64::MAX, 1024)] {
            fill(&mut buffer, sequence, size);
            assert_eq!(buffer.len(), size);
            assert_eq!(sequence_of(&buffer), Some(sequence));
        }
        assert_eq!(sequence_of(b"short"), None);
    }

    #[test]
    fn default_demo_fits_the_mock_cluster() {
        assert!(stored_bytes(100_000 / 8, 100) < MOCK_PARTITION_BYTES);
        assert!(stored_bytes(40_000, 100) < MOCK_PARTITION_BYTES);
        assert!(mock_partition_capacity(100) >= 40_000);
    }

    #[test]
    fn even_plans_spread_the_remainder() {
        let plan = ProducePlan::even("h:1", "t", 3, 10, 100);
        assert_eq!(plan.partitions, vec![(0, 4), (1, 3), (2, 3)]);
        assert_eq!(plan.total(), 10);
    }

    #[test]
    fn plans_interleave_their_records() {
        let mut plan = ProducePlan::even("h:1", "t", 2, 0, 100);
        plan.partitions = vec![(3, 1), (1, 0), (0, 3)];
        plan.first_sequence = 7;
        let records: Vec<_> = plan.records().collect();
        assert_eq!(records, [(3, 7), (0, 8), (0, 9), (0, 10)]);
    }
}
