//! A group member's assignment as the broker hands it out: the bytes of Kafka's consumer
//! protocol (`ConsumerProtocolAssignment`), which DescribeGroups returns as they are.
//!
//! The layout (every version so far starts the same, big-endian):
//!
//! ```text
//! version: i16
//! assigned partitions: i32 count, then for each topic:
//!     topic: i16 length + UTF-8 bytes
//!     partitions: i32 count, then i32 each
//! user data: i32 length + bytes (ignored), version 1 and later add nothing before it
//! ```

use crate::record::TopicPartition;

/// Parses assignment bytes into the partitions one member owns, in the order the bytes list
/// them; empty bytes (a member whose assignment is not settled yet, during a rebalance) are an
/// empty assignment.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<TopicPartition>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut reader = Reader { bytes };
    let version = reader.i16()?;
    if version < 0 {
        return Err(format!("unknown assignment version {version}"));
    }
    let topics = reader.count()?;
    let mut assignment = Vec::new();
    for _ in 0..topics {
        let length = usize::try_from(reader.i16()?)
            .map_err(|_| "a null topic name in the assignment".to_owned())?;
        let topic = String::from_utf8(reader.take(length)?.to_vec())
            .map_err(|_| "a topic name in the assignment is not UTF-8".to_owned())?;
        let partitions = reader.count()?;
        for _ in 0..partitions {
            assignment.push(TopicPartition::new(topic.clone(), reader.i32()?));
        }
    }
    Ok(assignment)
}

/// Reads big-endian integers off the front of a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < length {
            return Err("the assignment bytes end too early".to_owned());
        }
        let (head, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, String> {
        let head = self.take(2)?;
        Ok(i16::from_be_bytes([head[0], head[1]]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let head = self.take(4)?;
        Ok(i32::from_be_bytes([head[0], head[1], head[2], head[3]]))
    }

    /// An array length; -1 (null) counts as empty.
    fn count(&mut self) -> Result<usize, String> {
        match self.i32()? {
            -1 => Ok(0),
            count => usize::try_from(count).map_err(|_| format!("a bad array length {count}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes an assignment the way the Java client and librdkafka do.
    fn encode(version: i16, assignment: &[(&str, &[i32])], user_data: &[u8]) -> Vec<u8> {
        let mut bytes = version.to_be_bytes().to_vec();
        bytes.extend((assignment.len() as i32).to_be_bytes());
        for (topic, partitions) in assignment {
            bytes.extend((topic.len() as i16).to_be_bytes());
            bytes.extend(topic.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for partition in *partitions {
                bytes.extend(partition.to_be_bytes());
            }
        }
        bytes.extend((user_data.len() as i32).to_be_bytes());
        bytes.extend(user_data);
        bytes
    }

    #[test]
    fn reads_topics_and_partitions_of_any_version() {
        for version in [0, 1, 3] {
            let bytes = encode(version, &[("orders", &[0, 2]), ("audit", &[1])], b"sticky");
            assert_eq!(
                parse(&bytes),
                Ok(vec![
                    TopicPartition::new("orders", 0),
                    TopicPartition::new("orders", 2),
                    TopicPartition::new("audit", 1)
                ])
            );
        }
    }

    #[test]
    fn empty_bytes_are_an_empty_assignment() {
        assert_eq!(parse(&[]), Ok(Vec::new()));
        assert_eq!(parse(&encode(0, &[], &[])), Ok(Vec::new()));
    }

    #[test]
    fn truncated_or_bad_bytes_are_errors() {
        let bytes = encode(0, &[("orders", &[0, 1])], &[]);
        assert!(parse(&bytes[..bytes.len() - 9]).is_err());
        assert!(parse(&[0]).is_err());
        assert!(parse(&[0, 0, 0xff, 0xff, 0xff, 0xfe]).is_err());
        assert!(parse(&[0xff, 0xff, 0, 0, 0, 0]).is_err());
    }
}
