//! What a retried record carries about its history, as record headers: where it came from,
//! which attempt this is, when it failed, why, and when it is due.

use crate::record::{Header, Offset, Record};

/// Header names, shared by every stage and by `sluice dlq`.
pub mod names {
    /// The topic the record was first read from.
    pub const ORIGINAL_TOPIC: &str = "sluice.retry.original-topic";
    /// Its partition there.
    pub const ORIGINAL_PARTITION: &str = "sluice.retry.original-partition";
    /// Its offset there.
    pub const ORIGINAL_OFFSET: &str = "sluice.retry.original-offset";
    /// The attempt the next handling will be: 2 for the first retry.
    pub const ATTEMPT: &str = "sluice.retry.attempt";
    /// When the record first failed, in milliseconds since the Unix epoch.
    pub const FIRST_FAILURE_MS: &str = "sluice.retry.first-failure-ms";
    /// When it last failed.
    pub const LAST_FAILURE_MS: &str = "sluice.retry.last-failure-ms";
    /// Why it last failed.
    pub const ERROR: &str = "sluice.retry.error";
    /// When its next handling is due, in milliseconds since the Unix epoch.
    pub const DUE_MS: &str = "sluice.retry.due-ms";
}

/// The retry history of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryHeaders {
    /// The topic the record was first read from.
    pub original_topic: String,
    /// Its partition there.
    pub original_partition: i32,
    /// Its offset there.
    pub original_offset: Offset,
    /// The attempt the next handling will be (the first handling is attempt 1).
    pub attempt: u32,
    /// When the record first failed, in milliseconds since the Unix epoch.
    pub first_failure_ms: i64,
    /// When it last failed.
    pub last_failure_ms: i64,
    /// Why it last failed.
    pub error: String,
    /// When its next handling is due, in milliseconds since the Unix epoch.
    pub due_ms: i64,
}

/// A record whose retry headers are missing some fields or hold unreadable values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retry header `{header}`: {problem}")]
#[non_exhaustive]
pub struct RetryHeaderError {
    /// The header at fault.
    pub header: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl RetryHeaders {
    /// The headers to write: the record's own headers should be kept beside them.
    pub fn to_headers(&self) -> Vec<Header> {
        let header = |key: &str, value: String| Header {
            key: key.to_string(),
            value: Some(value.into_bytes()),
        };
        vec![
            header(names::ORIGINAL_TOPIC, self.original_topic.clone()),
            header(
                names::ORIGINAL_PARTITION,
                self.original_partition.to_string(),
            ),
            header(names::ORIGINAL_OFFSET, self.original_offset.to_string()),
            header(names::ATTEMPT, self.attempt.to_string()),
            header(names::FIRST_FAILURE_MS, self.first_failure_ms.to_string()),
            header(names::LAST_FAILURE_MS, self.last_failure_ms.to_string()),
            header(names::ERROR, self.error.clone()),
            header(names::DUE_MS, self.due_ms.to_string()),
        ]
    }

    /// Reads the retry history from a record's headers: `Ok(None)` for a record that was
    /// never retried (no retry headers at all), an error when some are missing or unreadable.
    pub fn from_headers(headers: &[Header]) -> Result<Option<Self>, RetryHeaderError> {
        if !headers.iter().any(|h| h.key.starts_with(RETRY_PREFIX)) {
            return Ok(None);
        }
        let text = |name: &'static str| -> Result<String, RetryHeaderError> {
            let value = headers
                .iter()
                .rev()
                .find(|header| header.key == name)
                .and_then(|header| header.value.as_deref())
                .ok_or(RetryHeaderError {
                    header: name,
                    problem: "missing",
                })?;
            String::from_utf8(value.to_vec()).map_err(|_| RetryHeaderError {
                header: name,
                problem: "not UTF-8",
            })
        };
        let number = |name: &'static str| -> Result<i64, RetryHeaderError> {
            text(name)?.parse().map_err(|_| RetryHeaderError {
                header: name,
                problem: "not a number",
            })
        };
        let narrow = |name: &'static str| -> Result<i32, RetryHeaderError> {
            i32::try_from(number(name)?).map_err(|_| RetryHeaderError {
                header: name,
                problem: "out of range",
            })
        };
        Ok(Some(Self {
            original_topic: text(names::ORIGINAL_TOPIC)?,
            original_partition: narrow(names::ORIGINAL_PARTITION)?,
            original_offset: number(names::ORIGINAL_OFFSET)?,
            attempt: u32::try_from(number(names::ATTEMPT)?).map_err(|_| RetryHeaderError {
                header: names::ATTEMPT,
                problem: "out of range",
            })?,
            first_failure_ms: number(names::FIRST_FAILURE_MS)?,
            last_failure_ms: number(names::LAST_FAILURE_MS)?,
            error: text(names::ERROR)?,
            due_ms: number(names::DUE_MS)?,
        }))
    }
}

/// The attempt that handling `record` is: 1 for a record never retried, 2 in its first
/// retry, and so on. A record without readable retry headers counts as a first attempt.
pub fn attempt(record: &Record) -> u32 {
    match RetryHeaders::from_headers(&record.headers) {
        Ok(Some(history)) => history.attempt,
        _ => 1,
    }
}

/// The record's own headers: all but the retry headers.
pub fn without_retry_headers(headers: &[Header]) -> Vec<Header> {
    headers
        .iter()
        .filter(|header| !header.key.starts_with(RETRY_PREFIX))
        .cloned()
        .collect()
}

/// What every retry header name starts with.
const RETRY_PREFIX: &str = "sluice.retry.";

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> RetryHeaders {
        RetryHeaders {
            original_topic: "orders".into(),
            original_partition: 3,
            original_offset: 42,
            attempt: 2,
            first_failure_ms: 1_700_000_000_000,
            last_failure_ms: 1_700_000_000_500,
            error: "card declined: ünïcode".into(),
            due_ms: 1_700_000_010_500,
        }
    }

    #[test]
    fn headers_round_trip() {
        let mut headers = vec![Header {
            key: "trace".into(),
            value: Some(b"abc".to_vec()),
        }];
        headers.extend(history().to_headers());
        assert_eq!(RetryHeaders::from_headers(&headers), Ok(Some(history())));
    }

    #[test]
    fn a_record_never_retried_has_no_history() {
        let headers = vec![Header {
            key: "trace".into(),
            value: None,
        }];
        assert_eq!(RetryHeaders::from_headers(&headers), Ok(None));
    }

    #[test]
    fn a_later_header_wins_and_broken_ones_are_named() {
        let mut headers = history().to_headers();
        headers.push(Header {
            key: names::ATTEMPT.into(),
            value: Some(b"3".to_vec()),
        });
        assert_eq!(
            RetryHeaders::from_headers(&headers)
                .unwrap()
                .unwrap()
                .attempt,
            3
        );

        let mut broken = history().to_headers();
        broken.retain(|header| header.key != names::DUE_MS);
        assert_eq!(
            RetryHeaders::from_headers(&broken),
            Err(RetryHeaderError {
                header: names::DUE_MS,
                problem: "missing"
            })
        );
        let mut garbled = history().to_headers();
        garbled.push(Header {
            key: names::ORIGINAL_PARTITION.into(),
            value: Some(b"many".to_vec()),
        });
        assert_eq!(
            RetryHeaders::from_headers(&garbled)
                .unwrap_err()
                .to_string(),
            "retry header `sluice.retry.original-partition`: not a number"
        );
    }

    #[test]
    fn attempt_and_own_headers_of_a_record() {
        let trace = Header {
            key: "trace".into(),
            value: Some(b"abc".to_vec()),
        };
        let mut record = Record {
            topic: "orders.billing.retry.1".into(),
            partition: 0,
            offset: 7,
            key: None,
            value: None,
            headers: vec![trace.clone()],
            timestamp_ms: None,
        };
        assert_eq!(attempt(&record), 1);
        record.headers.extend(history().to_headers());
        assert_eq!(attempt(&record), 2);
        assert_eq!(without_retry_headers(&record.headers), vec![trace]);
    }
}
