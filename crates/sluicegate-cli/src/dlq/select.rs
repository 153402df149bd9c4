//! Which dead letters a `sluice dlq` command looks at: by partition and offsets of the
//! dead-letter topic, by error text, and how many.

use clap::Args;

use super::read::DeadLetter;

/// The options that pick dead letters, shared by `inspect` and `replay`.
#[derive(Debug, Clone, Default, Args)]
pub struct Selection {
    /// Only this partition of the dead-letter topic.
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Only these offsets of the dead-letter topic: A-B (both included) or A.
    #[arg(long, value_name = "A-B", value_parser = parse_offsets)]
    pub offsets: Option<OffsetRange>,
    /// Only dead letters whose error contains TEXT (case-sensitive).
    #[arg(long, value_name = "TEXT")]
    pub error_contains: Option<String>,
    /// At most N dead letters, the first ones by partition and offset.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// Offsets `first..=last` of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    /// The first offset.
    pub first: i64,
    /// The last offset, included.
    pub last: i64,
}

impl Selection {
    /// Whether the dead letter matches the error filter (partition and offsets are applied
    /// while reading).
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        match &self.error_contains {
            None => true,
            Some(text) => letter
                .history
                .as_ref()
                .ok()
                .and_then(Option::as_ref)
                .is_some_and(|history| history.error.contains(text.as_str())),
        }
    }

    /// Whether `count` dead letters are all that is wanted.
    pub fn is_full(&self, count: usize) -> bool {
        self.limit.is_some_and(|limit| count as u64 >= limit)
    }
}

/// Parses `A-B` or `A`.
fn parse_offsets(text: &str) -> Result<OffsetRange, String> {
    let number = |part: &str| {
        part.trim()
            .parse::<i64>()
            .ok()
            .filter(|offset| *offset >= 0)
            .ok_or_else(|| format!("`{text}` is not an offset range such as 10-20 or 15"))
    };
    let (first, last) = match text.split_once('-') {
        Some((first, last)) => (number(first)?, number(last)?),
        None => {
            let offset = number(text)?;
            (offset, offset)
        }
    };
    if first > last {
        return Err(format!("`{text}`: the range is backwards"));
    }
    Ok(OffsetRange { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_ranges() {
        assert_eq!(
            parse_offsets("10-20"),
            Ok(OffsetRange {
                first: 10,
                last: 20
            })
        );
        assert_eq!(parse_offsets("7"), Ok(OffsetRange { first: 7, last: 7 }));
        assert!(parse_offsets("20-10").is_err());
        assert!(parse_offsets("-3").is_err());
        assert!(parse_offsets("a-b").is_err());
    }
}
