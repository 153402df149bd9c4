//! The running client behind a [`Producer`](super::Producer): a librdkafka producer, the
//! thread that serves its delivery reports, and the waiters for results and for room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::ClientContext;
use tokio::sync::{oneshot, Notify};

use super::options::ResolvedOptions;
use super::{Delivery, ProduceError, ProduceRecord, ProducerStats};
use crate::refusal::{self, Refusal};
use crate::sync::lock;

/// How often the delivery thread looks for its stop flag when nothing is delivered.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The longest a producer waiting for room sleeps before trying again without a wake-up.
const ROOM_RECHECK: Duration = Duration::from_millis(100);
/// Failed fire-and-forget deliveries are logged at most this often, with a count.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The opaque of a fire-and-forget record; awaited records carry their waiter's id.
const FORGOTTEN: usize = 0;

type Waiter = oneshot::Sender<Result<Delivery, ProduceError>>;

/// What the delivery thread and the producing tasks share.
#[derive(Default)]
pub(crate) struct Shared {
    waiters: Mutex<HashMap<usize, Waiter>>,
    next_waiter: AtomicUsize,
    /// Producers waiting for room in the buffer; deliveries wake them only when non-zero.
    waiting_for_room: AtomicUsize,
    room: Notify,
    sent: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    failure_log: Mutex<FailureLog>,
    /// Set when the brokers refused the client's credentials or TLS handshake.
    refusal: Refusal,
}

#[derive(Default)]
struct FailureLog {
    last: Option<Instant>,
    unreported: u64,
}

impl Shared {
    pub fn stats(&self) -> ProducerStats {
        ProducerStats {
            sent: self.sent.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Waiter>> {
        lock(&self.waiters)
    }

    /// A fire-and-forget record failed: counted always, logged at most once a second.
    fn note_forgotten_failure(&self, topic: &str, error: &KafkaError) {
        let mut log = lock(&self.failure_log);
        log.unreported += 1;
        if log
            .last
            .is_none_or(|last| last.elapsed() >= FAILURE_LOG_INTERVAL)
        {
            tracing::warn!(
                topic,
                %error,
                failed = log.unreported,
                "fire-and-forget records failed delivery"
            );
            log.last = Some(Instant::now());
            log.unreported = 0;
        }
    }
}

/// librdkafka's callbacks land here, on the delivery thread.
pub(crate) struct DeliveryContext {
    shared: Arc<Shared>,
}

impl ClientContext for DeliveryContext {
    /// A refused login or TLS handshake does not heal: the records waiting for a delivery
    /// report fail now, and new records are refused (see [`Client::enqueue`]).
    fn error(&self, error: KafkaError, reason: &str) {
        if self.shared.refusal.note(&error, reason) {
            self.fail_waiting(reason);
        } else {
            tracing::warn!(%error, reason, "producer client error");
        }
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        refusal::forward_log(level, facility, message);
        let first = self.shared.refusal.reason().is_none();
        if self.shared.refusal.note_log(facility, message) && first {
            self.fail_waiting(message);
        }
    }
}

impl DeliveryContext {
    /// Fails every record waiting for its delivery report: the brokers refused the client.
    fn fail_waiting(&self, reason: &str) {
        tracing::error!(
            reason,
            "the brokers refused the producer's credentials or TLS handshake"
        );
        let waiting: Vec<Waiter> = self.shared.lock_waiters().drain().map(|(_, w)| w).collect();
        for waiter in waiting {
            let _ = waiter.send(Err(ProduceError::Refused(reason.to_string())));
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, waiter: usize) {
        let outcome = match result {
            Ok(message) => {
                self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                Ok(Delivery {
                    partition: message.partition(),
                    offset: message.offset(),
                })
            }
            Err((error, message)) => {
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(
                    crate::metrics::PRODUCER_DELIVERY_ERRORS,
                    "topic" => message.topic().to_string()
                )
                .increment(1);
                if waiter == FORGOTTEN {
                    self.shared.note_forgotten_failure(message.topic(), error);
                }
                Err(ProduceError::Delivery {
                    topic: message.topic().to_string(),
                    source: error.clone().into(),
                })
            }
        };
        if waiter != FORGOTTEN {
            if let Some(sender) = self.shared.lock_waiters().remove(&waiter) {
                // The caller may have stopped waiting; the outcome is counted either way.
                let _ = sender.send(outcome);
            }
        }
        if self.shared.waiting_for_room.load(Ordering::Acquire) > 0 {
            self.shared.room.notify_waiters();
        }
    }
}

/// A started producer client.
pub(crate) struct Client {
    producer: Arc<BaseProducer<DeliveryContext>>,
    pub shared: Arc<Shared>,
    buffer_wait: Option<Duration>,
    stop: Arc<AtomicBool>,
    delivery_thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Client {
    pub fn start(options: &ResolvedOptions) -> Result<Self, ProduceError> {
        let shared = Arc::new(Shared {
            // Waiter ids start above FORGOTTEN.
            next_waiter: AtomicUsize::new(FORGOTTEN + 1),
            ..Shared::default()
        });
        let producer: BaseProducer<DeliveryContext> = options
            .client_config()
            .create_with_context(DeliveryContext {
                shared: shared.clone(),
            })
            .map_err(|error| ProduceError::Client(error.into()))?;
        let producer = Arc::new(producer);
        let stop = Arc::new(AtomicBool::new(false));
        let queue_depth = metrics::gauge!(
            crate::metrics::PRODUCER_QUEUE_DEPTH,
            "client" => options.client_id.clone()
        );
        let thread = {
            let (producer, stop) = (producer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sluicegate-delivery".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        producer.poll(POLL_INTERVAL);
                        queue_depth.set(f64::from(producer.in_flight_count()));
                    }
                    queue_depth.set(0.0);
                })
                .map_err(|error| {
                    let error = KafkaError::ClientCreation(format!("delivery thread: {error}"));
                    ProduceError::Client(error.into())
                })?
        };
        Ok(Self {
            producer,
            shared,
            buffer_wait: options.buffer_wait,
            stop,
            delivery_thread: Mutex::new(Some(thread)),
            closed: AtomicBool::new(false),
        })
    }

    /// Enqueues a record, waiting for room while the buffer is full. With `waiter`, the
    /// delivery result goes there.
    pub async fn enqueue(
        &self,
        topic: &str,
        record: &ProduceRecord<'_>,
        waiter: Option<Waiter>,
    ) -> Result<(), ProduceError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ProduceError::ShutDown);
        }
        if let Some(reason) = self.shared.refusal.reason() {
            return Err(ProduceError::Refused(reason));
        }
        let id = match waiter {
            Some(waiter) => {
                let id = self.shared.next_waiter.fetch_add(1, Ordering::Relaxed);
                self.shared.lock_waiters().insert(id, waiter);
                id
            }
            None => FORGOTTEN,
        };
        let outcome = self.send_when_room(topic, record, id).await;
        if outcome.is_err() && id != FORGOTTEN {
            self.shared.lock_waiters().remove(&id);
        }
        outcome
    }

    async fn send_when_room(
        &self,
        topic: &str,
        record: &ProduceRecord<'_>,
        id: usize,
    ) -> Result<(), ProduceError> {
        if self.try_enqueue(topic, record, id)? {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            // Full: serve the delivery reports already waiting (which frees their records)
            // and try again at once.
            self.producer.poll(Duration::ZERO);
            if self.try_enqueue(topic, record, id)? {
                return Ok(());
            }
            // Still full: wait for a delivery to make room.
            let wait = match self.buffer_wait {
                Some(limit) => match limit.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => left.min(ROOM_RECHECK),
                    _ => return Err(ProduceError::BufferFull { waited: limit }),
                },
                None => ROOM_RECHECK,
            };
            self.shared.waiting_for_room.fetch_add(1, Ordering::AcqRel);
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // A delivery between the last try and `enable` would not wake us: try once more.
            let sent = self.try_enqueue(topic, record, id);
            if matches!(sent, Ok(false)) {
                let _ = tokio::time::timeout(wait, room).await;
            }
            self.shared.waiting_for_room.fetch_sub(1, Ordering::AcqRel);
            if sent? {
                return Ok(());
            }
        }
    }

    /// One attempt to buffer a record: `Ok(false)` when the buffer is full.
    fn try_enqueue(
        &self,
        topic: &str,
        record: &ProduceRecord<'_>,
        id: usize,
    ) -> Result<bool, ProduceError> {
        match self.try_send(topic, record, id) {
            Ok(()) => {
                self.shared.sent.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => Ok(false),
            Err(error) => Err(ProduceError::Rejected {
                topic: topic.to_string(),
                source: error.into(),
            }),
        }
    }

    fn try_send(
        &self,
        topic: &str,
        record: &ProduceRecord<'_>,
        id: usize,
    ) -> Result<(), KafkaError> {
        let mut base = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, id);
        if let Some(value) = record.value {
            base = base.payload(value);
        }
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(timestamp) = record.timestamp_ms {
            base = base.timestamp(timestamp);
        }
        if !record.headers.is_empty() {
            let headers = record.headers.iter().fold(
                OwnedHeaders::new_with_capacity(record.headers.len()),
                |headers, (key, value)| headers.insert(KafkaHeader { key, value: *value }),
            );
            base = base.headers(headers);
        }
        self.producer.send(base).map_err(|(error, _)| error)
    }

    /// Records buffered or in flight.
    pub fn in_flight(&self) -> usize {
        usize::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }

    /// Refuses further records, waits up to `timeout` for the buffer to be delivered, stops
    /// the delivery thread and returns how many records were not delivered. Blocking.
    pub fn close(&self, timeout: Duration) -> usize {
        self.closed.store(true, Ordering::Release);
        if let Err(code) = flush_now(&self.producer, timeout) {
            tracing::warn!(error = %code, "flush at shutdown did not finish");
        }
        let undelivered = self.in_flight();
        self.stop.store(true, Ordering::Release);
        let thread = lock(&self.delivery_thread).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the delivery thread panicked");
            }
        }
        if undelivered > 0 {
            // Fail what is left now rather than when the client is dropped.
            self.producer
                .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
            self.producer.poll(Duration::ZERO);
        }
        undelivered
    }
}

/// Sends everything buffered at once, whatever `linger.ms` (the flush interval) says, and waits
/// up to `timeout` for it to be delivered; the delivery thread goes on serving the reports.
///
/// rust-rdkafka's `flush` calls `rd_kafka_flush` with a timeout of 0 in a loop. Each call
/// raises librdkafka's "flushing" flag, which makes the broker threads send without lingering,
/// only for an instant, so a broker thread may never see it and the buffer waits out
/// `linger.ms`. One call with the whole timeout keeps the flag raised until the buffer is
/// delivered or the timeout passes.
#[allow(unsafe_code)]
fn flush_now<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> Result<(), RDKafkaErrorCode> {
    let timeout_ms =
        std::os::raw::c_int::try_from(timeout.as_millis()).unwrap_or(std::os::raw::c_int::MAX);
    // SAFETY: `native_ptr` is the live `rd_kafka_t` of `producer`, which outlives the call.
    // `rd_kafka_flush` is thread-safe: with delivery reports as events (rust-rdkafka's
    // setting) it only waits for the message count to reach zero while the delivery thread
    // serves the event queue.
    let code = unsafe { rdkafka_sys::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
    match code {
        rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        code => Err(RDKafkaErrorCode::from(code)),
    }
}
