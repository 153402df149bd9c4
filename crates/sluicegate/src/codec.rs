//! Typed records: [`Decode`] turns a record into the value a handler works on, [`Encode`]
//! turns a value into the bytes a producer writes.
//!
//! Built in: [`Text`] (UTF-8), [`Raw`] (the bytes as they are) and, with feature `json`,
//! [`Json`] through serde. A pipeline decodes before its handler runs
//! ([`PipelineBuilder::handle_decoded`](crate::pipeline::PipelineBuilder::handle_decoded));
//! a record that does not decode never reaches the handler: it fails with
//! [`FailureKind::Decode`](crate::pipeline::FailureKind::Decode), which a retry task does
//! not retry (it goes straight to the dead-letter topic, with its bytes as they were).
//!
//! Decoding is async and sees the whole record (headers too), so a decoder that looks a
//! schema up in a registry (Avro, Protobuf) fits the same trait later.
//!
//! ```
//! use sluicegate::codec::{Decode, Encode, Text};
//! use sluicegate::Record;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let bytes = Text.encode("paid").unwrap();
//! let record = Record {
//!     topic: "orders".into(),
//!     partition: 0,
//!     offset: 7,
//!     key: None,
//!     value: Some(bytes),
//!     headers: Vec::new(),
//!     timestamp_ms: None,
//! };
//! assert_eq!(Text.decode(&record).await.unwrap(), "paid");
//! # }
//! ```

use std::fmt;
use std::future::Future;

use crate::record::{Offset, Record};

/// The same type as [`pipeline::BoxError`](crate::pipeline::BoxError), named here so that
/// codecs do not depend on pipelines (pipelines depend on codecs).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Turns a record into a typed value. An error means the record cannot be handled as it is:
/// the pipeline fails it with [`FailureKind::Decode`](crate::pipeline::FailureKind::Decode)
/// and its error, without calling the handler.
///
/// ```
/// use sluicegate::codec::Decode;
/// use sluicegate::pipeline::BoxError;
/// use sluicegate::Record;
///
/// /// An amount in cents, written as decimal text.
/// struct Cents;
///
/// impl Decode for Cents {
///     type Value = u64;
///
///     async fn decode(&self, record: &Record) -> Result<u64, BoxError> {
///         let text = std::str::from_utf8(record.value.as_deref().unwrap_or_default())?;
///         Ok(text.trim().parse()?)
///     }
/// }
/// ```
pub trait Decode: Send + Sync + 'static {
    /// What a record decodes into.
    type Value: Send + 'static;

    /// Decodes `record` (its value, and its key or headers when the format needs them).
    fn decode(&self, record: &Record)
        -> impl Future<Output = Result<Self::Value, BoxError>> + Send;
}

/// Turns a value into the bytes of a record value.
///
/// ```
/// use sluicegate::codec::{Encode, Raw};
/// use sluicegate::producer::ProduceRecord;
///
/// let bytes = Raw.encode(b"paid".as_slice()).unwrap();
/// let record = ProduceRecord::new(&bytes);
/// # drop(record);
/// ```
pub trait Encode<T: ?Sized>: Send + Sync {
    /// The bytes for `value`.
    fn encode(&self, value: &T) -> Result<Vec<u8>, BoxError>;
}

/// Why a record did not decode: where it is and the decoder's error (its
/// [`source`](std::error::Error::source)). A handler that decodes by itself can return it to
/// fail the record with [`FailureKind::Decode`](crate::pipeline::FailureKind::Decode).
#[derive(Debug)]
pub struct DecodeError {
    topic: String,
    partition: i32,
    offset: Offset,
    source: BoxError,
}

impl DecodeError {
    /// `record` did not decode because of `source`.
    pub fn new(record: &Record, source: impl Into<BoxError>) -> Self {
        Self {
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            source: source.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}@{} does not decode: {}",
            self.topic, self.partition, self.offset, self.source
        )
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The value of a record that must have one: a tombstone does not decode.
fn value_of(record: &Record) -> Result<&[u8], BoxError> {
    record
        .value
        .as_deref()
        .ok_or_else(|| "the record has no value (a tombstone)".into())
}

/// UTF-8 text: decodes a value into a `String` (a tombstone or invalid UTF-8 does not
/// decode) and encodes a `str`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Text;

impl Decode for Text {
    type Value = String;

    async fn decode(&self, record: &Record) -> Result<String, BoxError> {
        Ok(String::from_utf8(value_of(record)?.to_vec())?)
    }
}

impl Encode<str> for Text {
    fn encode(&self, value: &str) -> Result<Vec<u8>, BoxError> {
        Ok(value.as_bytes().to_vec())
    }
}

/// The bytes as they are: decodes into `Option<Vec<u8>>` (`None` for a tombstone) and
/// never fails; encodes a byte slice.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Decode for Raw {
    type Value = Option<Vec<u8>>;

    async fn decode(&self, record: &Record) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(record.value.clone())
    }
}

impl Encode<[u8]> for Raw {
    fn encode(&self, value: &[u8]) -> Result<Vec<u8>, BoxError> {
        Ok(value.to_vec())
    }
}

/// JSON through serde (feature `json`): decodes a value into `T`, encodes any
/// `Serialize` value. A tombstone or a value that is not `T` in JSON does not decode.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sluicegate::codec::{Decode, Encode, Json};
/// # use sluicegate::Record;
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Order {
///     id: u32,
///     cents: u64,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let json = Json::<Order>::new();
/// let bytes = json.encode(&Order { id: 1, cents: 250 }).unwrap();
/// # let record = Record { topic: "orders".into(), partition: 0, offset: 0, key: None,
/// #     value: Some(bytes), headers: Vec::new(), timestamp_ms: None };
/// assert_eq!(json.decode(&record).await.unwrap(), Order { id: 1, cents: 250 });
/// # }
/// ```
#[cfg(feature = "json")]
pub struct Json<T>(std::marker::PhantomData<fn() -> T>);

#[cfg(feature = "json")]
impl<T> Json<T> {
    /// A JSON codec for `T`.
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

#[cfg(feature = "json")]
impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "json")]
impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

#[cfg(feature = "json")]
impl<T> fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

#[cfg(feature = "json")]
impl<T> Decode for Json<T>
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    type Value = T;

    async fn decode(&self, record: &Record) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(value_of(record)?)?)
    }
}

#[cfg(feature = "json")]
impl<T: serde::Serialize + ?Sized, U> Encode<T> for Json<U> {
    fn encode(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(value)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: Option<&[u8]>) -> Record {
        Record {
            topic: "orders".into(),
            partition: 2,
            offset: 9,
            key: None,
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    #[tokio::test]
    async fn text_refuses_tombstones_and_invalid_utf8() {
        assert_eq!(Text.decode(&record(Some(b"ok"))).await.unwrap(), "ok");
        let tombstone = Text.decode(&record(None)).await.unwrap_err();
        assert!(tombstone.to_string().contains("tombstone"), "{tombstone}");
        assert!(Text.decode(&record(Some(&[0xff, 0xfe]))).await.is_err());
        assert_eq!(Raw.decode(&record(None)).await.unwrap(), None);
    }

    #[test]
    fn a_decode_error_names_the_record_and_keeps_its_source() {
        let error = DecodeError::new(&record(None), "expected value at line 1");
        assert_eq!(
            error.to_string(),
            "orders/2@9 does not decode: expected value at line 1"
        );
        let source = std::error::Error::source(&error).expect("a source");
        assert_eq!(source.to_string(), "expected value at line 1");
    }

    #[cfg(feature = "json")]
    #[tokio::test]
    async fn json_round_trips_and_names_what_is_wrong() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Order {
            id: u32,
        }
        let json = Json::<Order>::new();
        let bytes = json.encode(&Order { id: 4 }).unwrap();
        assert_eq!(
            json.decode(&record(Some(&bytes))).await.unwrap(),
            Order { id: 4 }
        );
        let wrong = json
            .decode(&record(Some(br#"{"id":"four"}"#)))
            .await
            .unwrap_err();
        assert!(wrong.to_string().contains("invalid type"), "{wrong}");
    }
}
