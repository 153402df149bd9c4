//! The records the demo and the benchmarks produce: a value that starts with its sequence
//! number, padded to a fixed size, and what such records cost the embedded broker.

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
}
