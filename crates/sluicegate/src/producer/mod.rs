//! A buffered producer: records are batched and sent on an interval or when a batch fills,
//! with async backpressure when the buffer is full.
//!
//! ```no_run
//! use sluicegate::producer::{self, Compression, ProduceRecord, ProducerOptions, TopicProducer};
//!
//! // Declared once, used everywhere; it starts on first use.
//! static ORDERS: TopicProducer = TopicProducer::new("orders");
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! producer::set_defaults(
//!     ProducerOptions::new()
//!         .bootstrap_servers("127.0.0.1:9092")
//!         .compression(Compression::Zstd),
//! );
//! // Waits for the broker's answer: the partition and offset, or the error.
//! let delivery = ORDERS.produce(ProduceRecord::new(b"order 1").key(b"customer-7")).await?;
//! println!("at {}:{}", delivery.partition, delivery.offset);
//! // Returns once buffered; a failed delivery is counted and logged.
//! ORDERS.produce_and_forget(ProduceRecord::new(b"order 2").key(b"customer-7")).await?;
//! let report = ORDERS.producer().shutdown(std::time::Duration::from_secs(10)).await;
//! assert_eq!(report.undelivered, 0);
//! # Ok(()) }
//! ```
//!
//! # Configuration
//!
//! Two levels: [`set_defaults`] sets process-wide defaults (brokers, client id, producer
//! settings) once; each [`Producer`] can override any of them, so one process can talk to
//! several clusters. A producer resolves its settings when it starts, on first use.
//!
//! # Backpressure
//!
//! The buffer holds at most [`ProducerOptions::buffer_records`] records and
//! [`ProducerOptions::buffer_bytes`] bytes, waiting or in flight. When it is full, producing
//! waits for deliveries to make room instead of growing memory; with
//! [`ProducerOptions::buffer_wait`] the wait has a deadline, past which producing fails with
//! [`ProduceError::BufferFull`].
//!
//! # Delivery semantics
//!
//! [`Producer::produce`] returns the delivery result. [`Producer::produce_and_forget`]
//! returns once the record is buffered; its delivery failures are counted
//! ([`ProducerStats::failed`]) and logged, never dropped silently. Idempotence is on by
//! default (with `acks` all), so retries neither duplicate nor reorder records.
//!
//! # Partitioning
//!
//! Keyed records go where the Java client puts them (murmur2 of the key, see
//! [`java_partition`]); records without a key stick to one partition for a few milliseconds
//! at a time, as the Java client's sticky partitioner does.
//!
//! # Shutdown
//!
//! [`Producer::shutdown`] refuses new records, flushes the buffer within a timeout and
//! reports how many records were not delivered.

mod client;
mod options;
mod partitioner;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;

pub use options::{set_defaults, Acks, Compression, ProducerOptions};
pub use partitioner::java_partition;

use crate::client_error::ClientError;
use crate::options::OptionsError;
use crate::record::Offset;
use crate::sync::lock;
use client::Client;

/// A record to produce. Borrows its bytes: librdkafka copies them when the record is
/// buffered.
#[derive(Debug, Clone, Default)]
pub struct ProduceRecord<'a> {
    value: Option<&'a [u8]>,
    key: Option<&'a [u8]>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
    partition: Option<i32>,
    timestamp_ms: Option<i64>,
}

impl<'a> ProduceRecord<'a> {
    /// A record with this value and no key.
    pub fn new(value: &'a [u8]) -> Self {
        Self {
            value: Some(value),
            ..Self::default()
        }
    }

    /// A record with no value (a tombstone, once it has a key).
    pub fn tombstone() -> Self {
        Self::default()
    }

    /// The key: it chooses the partition (unless one is set) and is kept with the record.
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// Adds a header; `None` is a null header value.
    pub fn header(mut self, key: &'a str, value: Option<&'a [u8]>) -> Self {
        self.headers.push((key, value));
        self
    }

    /// Sends to this partition instead of the key's.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The record's timestamp in milliseconds since the Unix epoch (default: when it is
    /// produced).
    pub fn timestamp_ms(mut self, timestamp: i64) -> Self {
        self.timestamp_ms = Some(timestamp);
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The partition.
    pub partition: i32,
    /// The record's offset (`-1` with `acks` none: the broker does not answer).
    pub offset: Offset,
}

/// Why a record was not produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// The producer's settings are invalid; nothing was sent.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The buffer stayed full for the whole buffer wait.
    #[error("the producer's buffer stayed full for {waited:?}")]
    BufferFull {
        /// How long producing waited.
        waited: Duration,
    },
    /// librdkafka refused the record before buffering it (too large, unknown partition...).
    /// [`ClientError::is_permanent`] says whether producing it again can succeed.
    #[error("record for `{topic}` refused")]
    Rejected {
        /// The topic.
        topic: String,
        /// librdkafka's reason.
        source: ClientError,
    },
    /// The record was buffered but not delivered (retries exhausted, timed out, or refused
    /// by the broker). [`ClientError::is_permanent`] says whether producing it again can
    /// succeed.
    #[error("delivery to `{topic}` failed")]
    Delivery {
        /// The topic.
        topic: String,
        /// Why, as the client reported it.
        source: ClientError,
    },
    /// The brokers refused the producer's credentials or TLS handshake (wrong password,
    /// untrusted certificate): nothing is sent until the settings are fixed.
    #[error("the brokers refused the connection: {0}")]
    Refused(String),
    /// The producer was shut down.
    #[error("the producer is shut down")]
    ShutDown,
    /// librdkafka could not create the client.
    #[error("producer client")]
    Client(#[source] ClientError),
}

impl ProduceError {
    /// Whether producing the same record again can never succeed: the settings are invalid,
    /// or the client or broker refused the record for good (see
    /// [`ClientError::is_permanent`]).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Options(_) => true,
            Self::Rejected { source, .. } | Self::Delivery { source, .. } => source.is_permanent(),
            Self::BufferFull { .. } | Self::Refused(_) | Self::ShutDown | Self::Client(_) => false,
        }
    }
}

/// A producer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerStats {
    /// Records buffered.
    pub sent: u64,
    /// Records the broker acknowledged.
    pub delivered: u64,
    /// Records whose delivery failed (both forms).
    pub failed: u64,
}

/// The old name of [`ProducerSummary`].
#[deprecated(
    since = "0.1.0",
    note = "renamed ProducerSummary: every summary is `<thing>Summary`"
)]
pub type ShutdownReport = ProducerSummary;

/// What [`Producer::shutdown`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerSummary {
    /// Records still buffered or in flight when the timeout ran out; they were discarded.
    pub undelivered: usize,
    /// The counters at shutdown.
    pub stats: ProducerStats,
}

/// A producer. Cheap to clone (clones share one client); it starts on first use, from any
/// task or thread, exactly once.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Lazy>,
}

/// The settings a producer was declared with and, once started, its client.
struct Lazy {
    options: Option<ProducerOptions>,
    client: OnceLock<Client>,
    /// Held while starting, so concurrent first uses start one client. A start that fails
    /// (bad settings, defaults not set yet) is tried again on the next use.
    starting: Mutex<()>,
    /// Set by shutdown: no client starts afterwards.
    shut_down: AtomicBool,
}

impl Producer {
    /// A producer with these overrides over the process-wide defaults. Nothing connects
    /// until the first record.
    pub fn new(options: ProducerOptions) -> Self {
        Self {
            inner: Arc::new(Lazy {
                options: Some(options),
                client: OnceLock::new(),
                starting: Mutex::new(()),
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    /// A producer that uses the process-wide defaults as they are when it starts.
    pub fn with_defaults() -> Self {
        Self {
            inner: Arc::new(Lazy {
                options: None,
                client: OnceLock::new(),
                starting: Mutex::new(()),
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    /// Starts the client now instead of on first use, so bad settings fail early.
    pub fn start(&self) -> Result<(), ProduceError> {
        self.client().map(|_| ())
    }

    fn client(&self) -> Result<&Client, ProduceError> {
        if let Some(client) = self.inner.client.get() {
            return Ok(client);
        }
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(ProduceError::ShutDown);
        }
        let _starting = lock(&self.inner.starting);
        if let Some(client) = self.inner.client.get() {
            return Ok(client);
        }
        let options = match &self.inner.options {
            Some(options) => options.clone().over(&options::defaults()),
            None => options::defaults(),
        };
        let client = Client::start(&options.resolve()?)?;
        Ok(self.inner.client.get_or_init(|| client))
    }

    /// Produces a record and waits for its delivery: where it was written, or why not.
    /// Waits for room first when the buffer is full.
    ///
    /// For throughput, await many deliveries at once, spread over several tasks: thousands of
    /// these futures in one `FuturesUnordered` inside one task exhaust tokio's cooperative
    /// budget and spin (`sluice-lab bench produce` uses 8,000 over 32 tasks).
    pub async fn produce(
        &self,
        topic: &str,
        record: ProduceRecord<'_>,
    ) -> Result<Delivery, ProduceError> {
        let (waiter, delivered) = oneshot::channel();
        self.client()?.enqueue(topic, &record, Some(waiter)).await?;
        delivered.await.unwrap_or(Err(ProduceError::ShutDown))
    }

    /// Produces a record and returns once it is buffered (waiting for room when the buffer
    /// is full). A failed delivery is counted in [`ProducerStats::failed`] and logged.
    pub async fn produce_and_forget(
        &self,
        topic: &str,
        record: ProduceRecord<'_>,
    ) -> Result<(), ProduceError> {
        self.client()?.enqueue(topic, &record, None).await
    }

    /// The producer's counters (zero before it started).
    pub fn stats(&self) -> ProducerStats {
        self.inner
            .client
            .get()
            .map_or_else(ProducerStats::default, |client| client.shared.stats())
    }

    /// Records buffered or in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.client.get().map_or(0, Client::in_flight)
    }

    /// Refuses further records, waits up to `timeout` for the buffer to be delivered and
    /// reports what was not. Records still awaited get [`ProduceError::Delivery`] or
    /// [`ProduceError::ShutDown`].
    pub async fn shutdown(&self, timeout: Duration) -> ProducerSummary {
        {
            let _starting = lock(&self.inner.starting);
            self.inner.shut_down.store(true, Ordering::Release);
        }
        if self.inner.client.get().is_none() {
            return ProducerSummary::default();
        }
        let producer = self.clone();
        let undelivered = tokio::task::spawn_blocking(move || {
            producer
                .inner
                .client
                .get()
                .map_or(0, |client| client.close(timeout))
        })
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, "producer shutdown task failed");
            0
        });
        ProducerSummary {
            undelivered,
            stats: self.stats(),
        }
    }
}

/// A producer bound to one topic: declare it once (in a `static`, even) and use it anywhere.
/// It starts on first use, with the process-wide defaults unless given a producer.
pub struct TopicProducer {
    topic: &'static str,
    producer: OnceLock<Producer>,
}

impl TopicProducer {
    /// A producer for `topic` using the process-wide defaults ([`set_defaults`]).
    pub const fn new(topic: &'static str) -> Self {
        Self {
            topic,
            producer: OnceLock::new(),
        }
    }

    /// A producer for `topic` through `producer` (its own settings, another cluster...).
    pub fn with_producer(topic: &'static str, producer: Producer) -> Self {
        let bound = Self::new(topic);
        let _ = bound.producer.set(producer);
        bound
    }

    /// The topic.
    pub fn topic(&self) -> &'static str {
        self.topic
    }

    /// The underlying producer (for stats and shutdown).
    pub fn producer(&self) -> &Producer {
        self.producer.get_or_init(Producer::with_defaults)
    }

    /// [`Producer::produce`] to this topic.
    pub async fn produce(&self, record: ProduceRecord<'_>) -> Result<Delivery, ProduceError> {
        self.producer().produce(self.topic, record).await
    }

    /// [`Producer::produce_and_forget`] to this topic.
    pub async fn produce_and_forget(&self, record: ProduceRecord<'_>) -> Result<(), ProduceError> {
        self.producer().produce_and_forget(self.topic, record).await
    }
}
