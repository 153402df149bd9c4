//! Where the Java client puts a key: murmur2 of the key bytes, made positive, modulo the
//! partition count. Sluicegate's producer lets librdkafka's `murmur2_random` partitioner do
//! this; the function here says where a key lives without producing, and is what the tests
//! check the producer against.

/// The partition the Java client's default partitioner (and Sluicegate's producer) chooses
/// for `key` in a topic of `partitions` partitions.
///
/// ```
/// assert_eq!(sluicegate::producer::java_partition(b"abc", 1000), 107);
/// ```
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's `Utils.murmur2`: MurmurHash2, 32 bits, seed `0x9747b28c`.
fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut hash: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if tail.len() == 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        hash ^= u32::from(tail[0]);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    hash as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partitions the Java client's `DefaultPartitioner` chooses in a 1,000-partition topic
    /// (the vectors the Python Kafka clients check their own murmur2 against).
    #[test]
    fn keys_land_where_the_java_client_puts_them() {
        let vectors: [(&[u8], i32); 6] = [
            (b"", 681),
            (b"a", 524),
            (b"ab", 434),
            (b"abc", 107),
            (b"123456789", 566),
            (b"\x00 ", 742),
        ];
        for (key, partition) in vectors {
            assert_eq!(java_partition(key, 1000), partition, "key {key:?}");
        }
    }

    #[test]
    fn murmur2_matches_kafka_utils() {
        // Kafka's Utils.murmur2, as unsigned 32-bit values.
        assert_eq!(murmur2(b"") as u32, 275_646_681);
        assert_eq!(murmur2(b"hello") as u32, 2_132_663_229);
        assert_eq!(murmur2(b"kafka") as u32, 3_496_464_228);
        assert_eq!(murmur2(b"test") as u32, 716_234_879);
        assert_eq!(murmur2(b"a") as u32, 2_731_586_172);
    }
}
