//! `sluice consume --format json`: one JSON object per record and line.
//!
//! ```text
//! {"topic":"orders","partition":0,"offset":41,"timestamp":1714564800000,
//!  "timestamp_type":"create_time","key":"customer-7","value":{"base64":"/wA="},
//!  "headers":[{"key":"trace","value":"abc"},{"key":"empty","value":null}]}
//! ```
//!
//! Keys, values and header keys and values are bytes. Bytes that are valid UTF-8 are a JSON
//! string; other bytes are an object `{"base64": "..."}` (standard alphabet, padded); a
//! missing key or value, or a null header value, is `null`. So `.value` is a string exactly
//! when the value is text, and nothing is lost either way.

use serde::ser::{Serialize, SerializeMap as _, Serializer};

/// Bytes as a JSON string when they are UTF-8, else `{"base64": ...}`; `None` is `null`.
pub struct Bytes<'a>(pub Option<&'a [u8]>);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => serializer.serialize_none(),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => serializer.serialize_str(text),
                Err(_) => {
                    let mut map = serializer.serialize_map(Some(1))?;
                    map.serialize_entry("base64", &base64(bytes))?;
                    map.end()
                }
            },
        }
    }
}

/// One record, as printed.
#[derive(serde::Serialize)]
pub struct JsonRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, `null` when the record has none.
    pub timestamp: Option<i64>,
    /// `create_time`, `log_append_time`, or `null`.
    pub timestamp_type: Option<&'static str>,
    pub key: Bytes<'a>,
    pub value: Bytes<'a>,
    pub headers: Vec<JsonHeader<'a>>,
}

/// One header, in the record's order (keys may repeat).
#[derive(serde::Serialize)]
pub struct JsonHeader<'a> {
    pub key: Bytes<'a>,
    pub value: Bytes<'a>,
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for index in 0..4 {
            if index <= chunk.len() {
                let sextet = (group >> (18 - 6 * index)) & 0x3f;
                out.push(char::from(ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn text_is_a_string_and_other_bytes_are_base64() {
        let record = JsonRecord {
            topic: "t",
            partition: 2,
            offset: 7,
            timestamp: Some(1),
            timestamp_type: Some("create_time"),
            key: Bytes(None),
            value: Bytes(Some(b"\xff\x00")),
            headers: vec![JsonHeader {
                key: Bytes(Some(b"h\"")),
                value: Bytes(None),
            }],
        };
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"topic":"t","partition":2,"offset":7,"timestamp":1,"timestamp_type":"create_time","key":null,"value":{"base64":"/wA="},"headers":[{"key":"h\"","value":null}]}"#
        );
    }
}
