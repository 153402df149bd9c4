//! What the engine writes in a commit's metadata: when the commit was made. Since the engine
//! commits a partition only when its acknowledged offset moved, the stamp is the time of the
//! group's last progress there, which [`Admin::commits`](crate::admin::Admin::commits) reads
//! back (for `sluice status`'s stall mark).

/// The metadata of a commit made at `now_ms` (milliseconds since the Unix epoch).
pub(crate) fn stamp(now_ms: i64) -> String {
    format!("{PREFIX}{now_ms}")
}

/// When a commit with this metadata was made, if the engine made it.
pub(crate) fn committed_at_ms(metadata: &str) -> Option<i64> {
    metadata.strip_prefix(PREFIX)?.parse().ok()
}

const PREFIX: &str = "sluicegate committed_at_ms=";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_and_other_metadata_does_not() {
        assert_eq!(
            committed_at_ms(&stamp(1_764_900_000_123)),
            Some(1_764_900_000_123)
        );
        assert_eq!(committed_at_ms(""), None);
        assert_eq!(committed_at_ms("my app's metadata"), None);
        assert_eq!(committed_at_ms("sluicegate committed_at_ms=soon"), None);
    }
}
