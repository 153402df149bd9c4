//! What handlers receive and return: [`Message`], its two data formats, [`Batch`] and
//! [`Failed`].

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::seek_request::SeekRequest;
use crate::record::{Offset, Record, TopicPartition};
use crate::source::{PauseSwitch, Seek};

/// The error a handler returns. Any error type converts into it with `?`, and so do `&str`
/// and `String`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a record is shaped for the handlers: the full [`Record`] (the default) or
/// [`RawValue`], the raw value plus broadway_kafka-style metadata.
pub trait MessageFormat: Send + Sync + Sized + 'static {
    /// Builds the handler's view of a record.
    fn from_record(record: Record) -> Self;
}

impl MessageFormat for Record {
    fn from_record(record: Record) -> Self {
        record
    }
}

/// The raw value of a record plus its metadata, as broadway_kafka hands them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawValue {
    /// The record value, `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Where the record came from and what it carried besides its value.
    pub metadata: Metadata,
}

/// broadway_kafka's message metadata: topic, partition, offset, key, timestamp and headers
/// as (key, value) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Topic the record was read from.
    pub topic: Arc<str>,
    /// Partition the record was read from.
    pub partition: i32,
    /// Offset of the record.
    pub offset: Offset,
    /// The record key, if any.
    pub key: Option<Vec<u8>>,
    /// Timestamp in milliseconds since the Unix epoch, when the broker reported one.
    pub ts: Option<i64>,
    /// Headers as (key, value) pairs in the order the producer wrote them.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl MessageFormat for RawValue {
    fn from_record(record: Record) -> Self {
        Self {
            value: record.value,
            metadata: Metadata {
                topic: record.topic,
                partition: record.partition,
                offset: record.offset,
                key: record.key,
                ts: record.timestamp_ms,
                headers: record
                    .headers
                    .into_iter()
                    .map(|header| (header.key, header.value))
                    .collect(),
            },
        }
    }
}

/// Groups the records of one batcher into batches. Records with equal keys share batches;
/// the default key is the record's partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BatchKey {
    /// The record's own topic and partition (the default): a batch holds one partition's
    /// records.
    Partition(TopicPartition),
    /// A key chosen by the message handler with [`Message::put_batch_key`].
    Custom(Arc<str>),
}

impl fmt::Display for BatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Partition(partition) => partition.fmt(f),
            Self::Custom(key) => f.write_str(key),
        }
    }
}

/// One record travelling through a pipeline. Cloning it is cheap (the data is shared).
///
/// The message handler returns the message it was given, optionally routed to a batcher
/// with [`put_batcher`](Self::put_batcher) and [`put_batch_key`](Self::put_batch_key).
#[derive(Debug)]
pub struct Message<D = Record> {
    data: Arc<D>,
    topic: Arc<str>,
    partition: i32,
    offset: Offset,
    batcher: Option<Arc<str>>,
    batch_key: Option<Arc<str>>,
    pause: Option<PauseSwitch>,
    seek: Option<SeekRequest>,
    /// The span of the message handler call that returned the message (feature `otel`): a
    /// batch handler call links to it.
    #[cfg(feature = "otel")]
    handled_in: Option<opentelemetry::trace::SpanContext>,
}

impl<D> Clone for Message<D> {
    fn clone(&self) -> Self {
        Self {
            data: self.data.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            batcher: self.batcher.clone(),
            batch_key: self.batch_key.clone(),
            pause: self.pause.clone(),
            seek: self.seek.clone(),
            #[cfg(feature = "otel")]
            handled_in: self.handled_in.clone(),
        }
    }
}

impl<D: MessageFormat> Message<D> {
    /// Wraps a record as the pipeline does before calling the message handler.
    pub fn new(record: Record) -> Self {
        let topic = record.topic.clone();
        let (partition, offset) = (record.partition, record.offset);
        Self {
            data: Arc::new(D::from_record(record)),
            topic,
            partition,
            offset,
            batcher: None,
            batch_key: None,
            pause: None,
            seek: None,
            #[cfg(feature = "otel")]
            handled_in: None,
        }
    }
}

impl<D> Message<D> {
    /// With the switch that pauses its partition and where its handler asks for a seek.
    pub(crate) fn with_partition_controls(
        mut self,
        pause: Option<PauseSwitch>,
        seek: Option<SeekRequest>,
    ) -> Self {
        self.pause = pause;
        self.seek = seek;
        self
    }

    /// With the partition controls (and handler span) of `other`, a message of the same
    /// record: a retry in place hands the handler a new message for each attempt.
    pub(crate) fn with_controls_of<E>(mut self, other: &Message<E>) -> Self {
        self.pause = other.pause.clone();
        self.seek = other.seek.clone();
        #[cfg(feature = "otel")]
        {
            self.handled_in = other.handled_in.clone();
        }
        self
    }

    /// Asks to move the message's partition as `seek` says once this message handler call
    /// returns: the partition's records taken after this one and not yet started are
    /// dropped, and the partition is read again from the new position (a replay from a
    /// handler, or a skip past a poisoned range). As with [`PartitionStream::seek`], commits
    /// never go below what was acknowledged before the seek unless it
    /// [rewinds commits](Seek::rewind_commits); this message is finished as usual. A later
    /// request replaces one not yet carried out.
    ///
    /// Returns false, and nothing moves, where the partition cannot seek: records pushed to a
    /// [`TestPipeline`](super::TestPipeline). Ask from the message handler; a batch handler's
    /// request waits for the partition's next message handler call.
    ///
    /// ```
    /// use sluicegate::pipeline::Pipeline;
    /// use sluicegate::Seek;
    ///
    /// let builder = Pipeline::builder(()).handle_message(|_, message| async move {
    ///     if message.data().value.as_deref() == Some(b"replay-from-0") {
    ///         message.seek_partition(Seek::offset(0));
    ///     }
    ///     Ok(message)
    /// });
    /// # let _ = builder;
    /// ```
    ///
    /// [`PartitionStream::seek`]: crate::PartitionStream::seek
    pub fn seek_partition(&self, seek: Seek) -> bool {
        match &self.seek {
            Some(request) => {
                request.ask(seek);
                true
            }
            None => false,
        }
    }

    /// With the span of the message handler call that returned it.
    #[cfg(feature = "otel")]
    pub(crate) fn with_handler_span(mut self, span: opentelemetry::trace::SpanContext) -> Self {
        self.handled_in = Some(span);
        self
    }

    /// The span of the message handler call that returned it, if any.
    #[cfg(feature = "otel")]
    pub(crate) fn handler_span(&self) -> Option<&opentelemetry::trace::SpanContext> {
        self.handled_in.as_ref()
    }

    /// The switch that pauses and resumes the message's partition (a circuit breaker in the
    /// handler: pause while a downstream is down, resume from a task that watches it); `None`
    /// in a [`TestPipeline`](super::TestPipeline). See [`PauseSwitch`].
    pub fn pause_switch(&self) -> Option<&PauseSwitch> {
        self.pause.as_ref()
    }

    /// The record, in the pipeline's message format.
    pub fn data(&self) -> &D {
        &self.data
    }

    /// The topic the record was read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition the record was read from.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The record's offset.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// The record's topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }

    /// Sends the message to the named batcher once the message handler returns it. The
    /// batcher must be declared on the pipeline; a message routed to an unknown batcher fails.
    pub fn put_batcher(mut self, batcher: &str) -> Self {
        self.batcher = Some(batcher.into());
        self
    }

    /// Sets the batch key (see [`BatchKey`]); without it the key is the record's partition.
    pub fn put_batch_key(mut self, key: &str) -> Self {
        self.batch_key = Some(key.into());
        self
    }

    /// The batcher the message is routed to, if any.
    pub fn batcher(&self) -> Option<&str> {
        self.batcher.as_deref()
    }

    /// The batcher name, shared rather than copied.
    pub(crate) fn batcher_name(&self) -> Option<&Arc<str>> {
        self.batcher.as_ref()
    }

    /// The batch key the message will be grouped by.
    pub fn batch_key(&self) -> BatchKey {
        match &self.batch_key {
            Some(key) => BatchKey::Custom(key.clone()),
            None => BatchKey::Partition(self.topic_partition()),
        }
    }
}

/// What started a batch handler call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchTrigger {
    /// The batch reached the batcher's size.
    Size,
    /// The batch timeout passed since the batch's first message.
    Timeout,
    /// A partition of the batch stopped (revoke or shutdown), so partial batches were flushed.
    Flush,
}

/// A batch handed to the batch handler: messages of one batcher with one batch key.
#[derive(Debug)]
pub struct Batch<D = Record> {
    /// The batcher's name.
    pub batcher: Arc<str>,
    /// The batch key the messages share.
    pub key: BatchKey,
    /// Why the batch was handed out now.
    pub trigger: BatchTrigger,
    /// The messages, in the order they reached the batcher.
    pub messages: Vec<Message<D>>,
}

/// How a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The handler returned an error.
    Error,
    /// The handler panicked.
    Panic,
    /// The handler ran past the pipeline's handler timeout.
    Timeout,
    /// The handler returned a [`Permanent`] error: trying the record again cannot help, so
    /// a retry task sends it straight to the dead-letter topic.
    Permanent,
    /// The record did not decode ([`codec::Decode`](crate::codec::Decode)), so no handler
    /// saw it. Not retriable: a retry task sends it straight to the dead-letter topic.
    Decode,
}

impl FailureKind {
    /// Whether handling the record again might succeed.
    pub fn is_retriable(self) -> bool {
        !matches!(self, Self::Permanent | Self::Decode)
    }
}

/// Marks a handler error as permanent (not retriable), for example a payload that cannot be
/// decoded: `Err(Permanent::new("not JSON").into())`. The record fails with
/// [`FailureKind::Permanent`].
#[derive(Debug)]
pub struct Permanent(BoxError);

impl Permanent {
    /// Wraps the error that makes the record unprocessable.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(error.into())
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why a record failed: its kind, and where and how, in words, with how often it was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureReason {
    /// Error, panic, timeout, permanent error or decode error.
    pub kind: FailureKind,
    /// The batcher whose batch handler failed, or `None` for the message handler.
    pub batcher: Option<Arc<str>>,
    /// The error text, the panic message, or the timeout that passed (of the last attempt).
    pub description: String,
    /// How many times the handler was called for the record before it failed for good: 1,
    /// unless a layer retried it (a retry task's in-place mode).
    pub attempts: u32,
    /// When the first attempt failed, in milliseconds since the Unix epoch.
    pub first_failure_ms: i64,
}

impl FailureReason {
    /// A failure of one attempt, now.
    pub(crate) fn new(kind: FailureKind, batcher: Option<Arc<str>>, description: String) -> Self {
        Self {
            kind,
            batcher,
            description,
            attempts: 1,
            first_failure_ms: now_ms(),
        }
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The error a layer that retries a handler returns once it gives up: the last attempt's
/// reason, carrying the attempt count and first failure. [`guarded`](super::guarded) turns
/// it back into that reason, so the failure path sees the record's whole story.
#[derive(Debug)]
pub(crate) struct GaveUp(pub FailureReason);

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (after {} attempts)", self.0, self.0.attempts)
    }
}

impl std::error::Error for GaveUp {}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FailureKind::Error => "error",
            FailureKind::Panic => "panic",
            FailureKind::Timeout => "timeout",
            FailureKind::Permanent => "permanent error",
            FailureKind::Decode => "decode error",
        };
        match &self.batcher {
            Some(batcher) => write!(f, "batch handler `{batcher}` {kind}: {}", self.description),
            None => write!(f, "message handler {kind}: {}", self.description),
        }
    }
}

/// A failed message and why it failed, as the failure handler receives it.
#[derive(Debug, Clone)]
pub struct Failed<D = Record> {
    /// The message as it was when it failed.
    pub message: Message<D>,
    /// Why it failed.
    pub reason: FailureReason,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Header;

    fn record() -> Record {
        Record {
            topic: "orders".into(),
            partition: 3,
            offset: 42,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![Header {
                key: "h".into(),
                value: None,
            }],
            timestamp_ms: Some(7),
        }
    }

    #[test]
    fn raw_value_carries_broadway_kafka_metadata() {
        let message = Message::<RawValue>::new(record());
        let raw = message.data();
        assert_eq!(raw.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(&*raw.metadata.topic, "orders");
        assert_eq!((raw.metadata.partition, raw.metadata.offset), (3, 42));
        assert_eq!(raw.metadata.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(raw.metadata.ts, Some(7));
        assert_eq!(raw.metadata.headers, vec![("h".to_string(), None)]);
    }

    #[test]
    fn batch_key_defaults_to_the_partition() {
        let message = Message::<Record>::new(record());
        assert_eq!(
            message.batch_key(),
            BatchKey::Partition(TopicPartition::new("orders", 3))
        );
        let routed = message.put_batcher("db").put_batch_key("all");
        assert_eq!(routed.batcher(), Some("db"));
        assert_eq!(routed.batch_key(), BatchKey::Custom("all".into()));
    }
}
