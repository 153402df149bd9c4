//! Tracing across hops (feature `otel`): every message handler call runs in a span named
//! `process <topic>`, the child of the W3C trace context the record carries in its
//! `traceparent` header (and `tracestate`), with the messaging attributes of OpenTelemetry's
//! semantic conventions: topic, partition, offset, the key when it is UTF-8, and the attempt.
//!
//! The spans are `tracing` spans; install `tracing_opentelemetry`'s layer to export them
//! (`sluice process` exports them over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set). A
//! retry or a dead letter keeps the record's headers, so it carries the same trace context on:
//! every handling of a record, in any stage, joins the producer's trace.
//!
//! A batch handler call is a span of its own, `process <topic>` (or `process` when the batch
//! holds several topics), with `messaging.batch.message_count` and the batcher's name, linked
//! to the message handler call of each of its records: the batch has many parents, so it
//! starts a trace and points at theirs, as OpenTelemetry's messaging conventions ask of batch
//! processing.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::record::{Header, Record};

/// A record's headers as the carrier of a trace context.
struct Headers<'a>(&'a [Header]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // The last header of a name wins, as with Kafka headers read by most clients.
        self.0
            .iter()
            .rev()
            .find(|header| header.key.eq_ignore_ascii_case(key))
            .and_then(|header| header.value.as_deref())
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key.as_str()).collect()
    }
}

/// What the spans of one record's handler calls are made of.
pub(crate) struct HandlerTrace {
    parent: opentelemetry::Context,
    topic: std::sync::Arc<str>,
    partition: i32,
    offset: i64,
    key: Option<String>,
    attempt: u32,
}

impl HandlerTrace {
    /// The trace of `record`, whose first call here is attempt `attempt`.
    pub fn of(record: &Record, attempt: u32) -> Self {
        Self {
            parent: TraceContextPropagator::new().extract(&Headers(&record.headers)),
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            key: record
                .key
                .as_deref()
                .and_then(|key| std::str::from_utf8(key).ok())
                .map(str::to_owned),
            attempt,
        }
    }

    /// The span of a handler call, `again` calls after the first here.
    pub fn span(&self, again: u32) -> Span {
        let span = tracing::info_span!(
            target: "sluicegate::handler",
            "sluice.handle",
            otel.name = %format!("process {}", self.topic),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %self.topic,
            messaging.destination.partition.id = self.partition,
            messaging.kafka.offset = self.offset,
            messaging.kafka.message.key = tracing::field::Empty,
            sluice.attempt = i64::from(self.attempt + again),
        );
        if let Some(key) = &self.key {
            span.record("messaging.kafka.message.key", key.as_str());
        }
        if self.parent.span().span_context().is_valid() {
            // Fails only when no OpenTelemetry layer is installed: then nothing is exported.
            let _ = span.set_parent(self.parent.clone());
        }
        span
    }
}

/// The OpenTelemetry span context of `span`: invalid when no OpenTelemetry layer is installed.
pub(crate) fn span_context(span: &Span) -> SpanContext {
    span.context().span().span_context().clone()
}

/// The span of a batch handler call of `batcher` on `count` records whose message handler
/// calls were `links`; `topic` when the records share one.
pub(crate) fn batch_span(
    batcher: &str,
    topic: Option<&str>,
    count: usize,
    links: impl IntoIterator<Item = SpanContext>,
) -> Span {
    let span = tracing::info_span!(
        target: "sluicegate::handler",
        "sluice.handle_batch",
        otel.name = %topic.map_or_else(|| "process".to_owned(), |topic| format!("process {topic}")),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = tracing::field::Empty,
        messaging.batch.message_count = count as i64,
        sluice.batcher = batcher,
    );
    if let Some(topic) = topic {
        span.record("messaging.destination.name", topic);
    }
    for link in links {
        // Invalid contexts (no OpenTelemetry layer when the message was handled) are skipped.
        span.add_link(link);
    }
    span
}
