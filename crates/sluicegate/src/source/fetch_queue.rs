//! A partition's librdkafka queue, read in batches through librdkafka's C API.
//!
//! rust-rdkafka reads a queue one message per call, each wrapped in a reference-counted event.
//! The poll thread is the engine's hot path, so it takes up to a batch of messages in one call
//! (`rd_kafka_consume_batch_queue`) and copies each into an owned [`Record`] straight from the
//! C message. This module is one of the few places that call librdkafka's raw API; every
//! `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rdkafka::client::Client;
use rdkafka::ClientContext;
use rdkafka_sys as rdsys;

use crate::record::{Header, Record};

/// A handle on one partition's fetch queue (split from the consumer queue beforehand).
pub(crate) struct FetchQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    topic: Arc<str>,
    /// Scratch space for the message pointers of one batch.
    slots: Vec<*mut rdsys::rd_kafka_message_t>,
}

// SAFETY: librdkafka queue handles may be used from any thread; `slots` only ever holds
// pointers during `take_into`, which returns none of them.
unsafe impl Send for FetchQueue {}

impl FetchQueue {
    /// Opens the queue of `topic`/`partition`. The handle must be dropped before the client.
    pub fn open<C: ClientContext>(
        client: &Client<C>,
        topic: Arc<str>,
        partition: i32,
    ) -> Option<Self> {
        let name = CString::new(topic.as_bytes()).ok()?;
        // SAFETY: the client pointer is live for the call, `name` is a NUL-terminated string
        // that outlives it; the returned handle is a new reference that `Drop` releases.
        let queue = unsafe {
            rdsys::rd_kafka_queue_get_partition(client.native_ptr(), name.as_ptr(), partition)
        };
        Some(Self {
            queue: NonNull::new(queue)?,
            topic,
            slots: Vec::new(),
        })
    }

    /// Takes up to `max` queued records without waiting and appends them to `records`.
    pub fn take_into(&mut self, max: usize, records: &mut Vec<Record>) {
        self.slots.clear();
        self.slots.resize(max, ptr::null_mut());
        // SAFETY: `slots` has room for `max` pointers, the most librdkafka writes; a zero
        // timeout never blocks.
        let taken = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                0,
                self.slots.as_mut_ptr(),
                max,
            )
        };
        let Ok(taken) = usize::try_from(taken) else {
            tracing::warn!(topic = %self.topic, "reading a partition queue failed");
            return;
        };
        for &message in &self.slots[..taken] {
            // SAFETY: librdkafka handed us `taken` valid messages, each ours until destroyed;
            // the reference does not outlive this iteration.
            let message_ref = unsafe { &*message };
            if message_ref.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                // SAFETY: as above; `to_record` copies everything it keeps.
                records.push(unsafe { to_record(message_ref, self.topic.clone()) });
            } else {
                // SAFETY: rd_kafka_err2str returns a static NUL-terminated string.
                let reason = unsafe { CStr::from_ptr(rdsys::rd_kafka_err2str(message_ref.err)) };
                tracing::warn!(topic = %self.topic, partition = message_ref.partition,
                    error = %reason.to_string_lossy(), "fetch error");
            }
            // SAFETY: each message is destroyed exactly once, after its last use.
            unsafe { rdsys::rd_kafka_message_destroy(message) };
        }
        self.slots.clear();
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the handle came from rd_kafka_queue_get_partition and is released once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Copies a message rust-rdkafka handed out into an owned [`Record`], exactly as the batch
/// path does (header names that are not UTF-8 are converted lossily rather than panicking, as
/// rust-rdkafka's header accessors would).
pub(crate) fn copy_borrowed(
    message: &rdkafka::message::BorrowedMessage<'_>,
    topic: Arc<str>,
) -> Record {
    // SAFETY: a `BorrowedMessage` keeps its C message alive for the borrow, and `to_record`
    // copies everything it keeps before returning.
    unsafe { to_record(&*message.ptr(), topic) }
}

/// Copies a fetched message into an owned [`Record`].
///
/// # Safety
///
/// `message` must be a valid message returned by librdkafka and not yet destroyed.
unsafe fn to_record(message: &rdsys::rd_kafka_message_t, topic: Arc<str>) -> Record {
    let mut timestamp_type = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    let timestamp = rdsys::rd_kafka_message_timestamp(message, &mut timestamp_type);
    Record {
        topic,
        partition: message.partition,
        offset: message.offset,
        key: copy_bytes(message.key, message.key_len),
        value: copy_bytes(message.payload, message.len),
        headers: headers(message),
        timestamp_ms: (timestamp_type
            != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
            .then_some(timestamp),
    }
}

/// # Safety
///
/// `data` must be null or point to `len` readable bytes.
unsafe fn copy_bytes(data: *const c_void, len: usize) -> Option<Vec<u8>> {
    (!data.is_null()).then(|| std::slice::from_raw_parts(data.cast::<u8>(), len).to_vec())
}

/// # Safety
///
/// `message` must be a valid, not yet destroyed message.
unsafe fn headers(message: &rdsys::rd_kafka_message_t) -> Vec<Header> {
    let mut list = ptr::null_mut();
    if rdsys::rd_kafka_message_headers(message, &mut list)
        != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        || list.is_null()
    {
        return Vec::new();
    }
    let mut headers = Vec::new();
    loop {
        let mut name: *const c_char = ptr::null();
        let mut value: *const c_void = ptr::null();
        let mut size = 0usize;
        // The list belongs to the message; names are NUL-terminated, values `size` bytes.
        if rdsys::rd_kafka_header_get_all(list, headers.len(), &mut name, &mut value, &mut size)
            != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            return headers;
        }
        headers.push(Header {
            key: CStr::from_ptr(name).to_string_lossy().into_owned(),
            value: copy_bytes(value, size),
        });
    }
}
