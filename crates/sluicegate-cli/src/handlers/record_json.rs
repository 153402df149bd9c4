//! What the built-in handlers tell about a record: where it was first read and which attempt
//! this is ([`Origin`]), and the record as JSON ([`RecordJson`]).
//!
//! ```text
//! {"topic":"orders","partition":0,"offset":41,"key":"customer-7","value":{"base64":"/wA="},
//!  "headers":[{"key":"trace","value":"abc"}],"timestamp_ms":1714564800000,"attempt":1}
//! ```
//!
//! `topic`, `partition` and `offset` say where the record was first read: the input topic,
//! also when a retry stage handles it. `attempt` is 1 on the first handling and `k + 1` in
//! retry `k`. On a retry or a dead letter, `error` says why the previous handling failed
//! (it is absent on a first handling). Keys, values and headers are bytes, written as `sluice consume --format json`
//! writes them: a string when they are UTF-8, else `{"base64": "..."}`, and `null` when
//! absent. `headers` are the record's own (the retry headers are left out);
//! `timestamp_ms` is `null` when the broker gave none.

use serde::ser::{Serialize, SerializeStruct as _, Serializer};
use sluicegate::retry::{attempt, without_retry_headers, RetryHeaders};
use sluicegate::Record;

use crate::console::json::{Bytes, JsonHeader};

/// Where a record was first read, and the attempt its handling is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The input topic.
    pub topic: String,
    /// The partition there.
    pub partition: i32,
    /// The offset there.
    pub offset: i64,
    /// 1 on the first handling, `k + 1` in retry `k`.
    pub attempt: u32,
    /// Why the previous handling failed, on a retry or a dead letter.
    pub error: Option<String>,
}

impl Origin {
    /// The origin of `record`, from its retry headers when it is a retry.
    pub fn of(record: &Record) -> Self {
        let (topic, partition, offset, error) = match RetryHeaders::from_headers(&record.headers) {
            Ok(Some(history)) => (
                history.original_topic,
                history.original_partition,
                history.original_offset,
                Some(history.error),
            ),
            _ => (
                record.topic.to_string(),
                record.partition,
                record.offset,
                None,
            ),
        };
        Self {
            topic,
            partition,
            offset,
            attempt: attempt(record),
            error,
        }
    }
}

/// The key of `record` when it is text (UTF-8 without NUL), for environment variables and
/// headers.
pub fn text_key(record: &Record) -> Option<&str> {
    record
        .key
        .as_deref()
        .and_then(|key| std::str::from_utf8(key).ok())
        .filter(|key| !key.contains('\0'))
}

/// A record as the JSON object the module docs show.
pub struct RecordJson<'a>(pub &'a Record);

impl Serialize for RecordJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let record = self.0;
        let origin = Origin::of(record);
        let own_headers = without_retry_headers(&record.headers);
        let headers: Vec<JsonHeader<'_>> = own_headers
            .iter()
            .map(|header| JsonHeader {
                key: Bytes(Some(header.key.as_bytes())),
                value: Bytes(header.value.as_deref()),
            })
            .collect();
        let fields = if origin.error.is_some() { 9 } else { 8 };
        let mut object = serializer.serialize_struct("Record", fields)?;
        object.serialize_field("topic", &origin.topic)?;
        object.serialize_field("partition", &origin.partition)?;
        object.serialize_field("offset", &origin.offset)?;
        object.serialize_field("key", &Bytes(record.key.as_deref()))?;
        object.serialize_field("value", &Bytes(record.value.as_deref()))?;
        object.serialize_field("headers", &headers)?;
        object.serialize_field("timestamp_ms", &record.timestamp_ms)?;
        object.serialize_field("attempt", &origin.attempt)?;
        if let Some(error) = &origin.error {
            object.serialize_field("error", error)?;
        }
        object.end()
    }
}

/// One record as a JSON line (ending in `\n`).
pub fn json_line(record: &Record) -> Vec<u8> {
    finish_line(serde_json::to_vec(&RecordJson(record)))
}

/// A batch as one JSON line: an array of record objects.
pub fn json_array_line(records: &[&Record]) -> Vec<u8> {
    finish_line(serde_json::to_vec(&json_array(records)))
}

/// A batch as JSON lines: one record object per line.
pub fn json_lines(records: &[&Record]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|record| json_line(record))
        .collect()
}

/// A batch as a serializable array.
pub fn json_array<'a>(records: &[&'a Record]) -> Vec<RecordJson<'a>> {
    records.iter().map(|record| RecordJson(record)).collect()
}

fn finish_line(json: serde_json::Result<Vec<u8>>) -> Vec<u8> {
    // Serializing strings, numbers and byte wrappers into memory cannot fail.
    let mut line = json.unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use sluicegate::retry::RetryHeaders;
    use sluicegate::Header;

    use super::*;

    pub(crate) fn record(value: &str) -> Record {
        Record {
            topic: "orders".into(),
            partition: 2,
            offset: 40,
            key: Some(b"k".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![Header {
                key: "trace".into(),
                value: Some(b"\xff".to_vec()),
            }],
            timestamp_ms: Some(7),
        }
    }

    #[test]
    fn a_first_attempt_is_where_it_was_read() {
        assert_eq!(
            String::from_utf8(json_line(&record("hi"))).unwrap(),
            "{\"topic\":\"orders\",\"partition\":2,\"offset\":40,\"key\":\"k\",\"value\":\"hi\",\
             \"headers\":[{\"key\":\"trace\",\"value\":{\"base64\":\"/w==\"}}],\
             \"timestamp_ms\":7,\"attempt\":1}\n"
        );
    }

    #[test]
    fn a_retry_names_its_input_and_attempt_and_hides_retry_headers() {
        let mut retried = record("hi");
        retried.topic = "orders.billing.retry.1".into();
        retried.offset = 3;
        retried.headers.extend(
            RetryHeaders {
                original_topic: "orders".into(),
                original_partition: 1,
                original_offset: 99,
                attempt: 2,
                first_failure_ms: 1,
                last_failure_ms: 1,
                error: "boom".into(),
                due_ms: 1,
            }
            .to_headers(),
        );
        assert_eq!(
            Origin::of(&retried),
            Origin {
                topic: "orders".into(),
                partition: 1,
                offset: 99,
                attempt: 2,
                error: Some("boom".into()),
            }
        );
        let json: serde_json::Value = serde_json::from_slice(&json_line(&retried)).unwrap();
        assert_eq!(json["topic"], "orders");
        assert_eq!(json["offset"], 99);
        assert_eq!(json["attempt"], 2);
        assert_eq!(json["error"], "boom", "why the previous handling failed");
        assert_eq!(json["headers"].as_array().unwrap().len(), 1, "{json}");
    }

    #[test]
    fn batches_are_an_array_line_or_json_lines() {
        let (a, b) = (record("a"), record("b"));
        let array: serde_json::Value = serde_json::from_slice(&json_array_line(&[&a, &b])).unwrap();
        assert_eq!(array[1]["value"], "b");
        let lines = String::from_utf8(json_lines(&[&a, &b])).unwrap();
        assert_eq!(lines.lines().count(), 2);
        assert!(lines.ends_with('\n'));
    }
}
