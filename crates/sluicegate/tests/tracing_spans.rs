//! Tracing across hops (feature `otel`), asserted with OpenTelemetry's in-memory exporter: a
//! handler call is a span, the child of the producer's `traceparent`, with the messaging
//! attributes; the retry and the dead letter carry the trace on, so their handlings join the
//! same trace with their attempt; a record without a trace context starts a trace of its own.
//! A batch handler call is a span linked to the message handler call of each of its records.
#![cfg(feature = "otel")]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::eventually;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use sluicegate::pipeline::{BatcherOptions, Pipeline};
use sluicegate::retry::{self, RetryPolicy, RetryTask, Stages};
use sluicegate::ConsumerEngine;
use sluicegate_testing::{TestBroker, TestRecord};
use tracing_subscriber::layer::SubscriberExt as _;

on_both_brokers!(
    handler_calls_are_spans_that_join_the_producers_trace_across_retries,
    a_batch_call_is_a_span_linked_to_the_handler_call_of_each_record,
);

/// The exporter every test of this binary reads; installed once, as the global subscriber.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("sluicegate-tests")));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        exporter
    })
}

/// Called by `on_both_brokers!` first in every test.
fn init_tracing() {
    exporter();
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key.as_str() == key)
        .map(|attribute| &attribute.value)
}

/// The finished spans of handler calls on `topic`.
fn spans_on(topic: &str) -> Vec<SpanData> {
    exporter()
        .get_finished_spans()
        .expect("the exporter's spans")
        .into_iter()
        .filter(|span| {
            attribute(span, "messaging.destination.name") == Some(&Value::from(topic.to_owned()))
        })
        .collect()
}

async fn handler_calls_are_spans_that_join_the_producers_trace_across_retries(broker: TestBroker) {
    let topic = sluicegate_testing::unique_name("traced");
    broker.create_topic(&topic, 1).await;
    let traceparent = format!("00-{TRACE}-{PRODUCER_SPAN}-01");
    let records = vec![
        TestRecord::keyed("k1", "ok").header("traceparent", traceparent.clone()),
        TestRecord::value("fail-once").header("traceparent", traceparent.clone()),
        TestRecord::value("untraced"),
        TestRecord::value("always").header("traceparent", traceparent.clone()),
    ];
    sluicegate_testing::produce_records(&broker.bootstrap_servers(), &topic, records).await;
    let group = sluicegate_testing::unique_name("traced-group");
    let pipeline = Pipeline::builder(()).handle_message(|_, message| async move {
        let record = message.data();
        match (record.value.as_deref(), retry::attempt(record)) {
            (Some(b"fail-once"), 1) | (Some(b"always"), _) => Err("not yet".into()),
            _ => Ok(message),
        }
    });
    let task = RetryTask::new(
        common::options(&broker, &group, &topic),
        RetryPolicy::delays([Duration::from_millis(200)]).unwrap(),
        pipeline,
    );
    let names = task.topics()[0].clone();
    if broker.as_embedded().is_some() {
        for created in [names.retry(1), names.dead_letter()] {
            broker.create_topic(&created, 1).await;
        }
    }
    let running = task.start(&Stages::All).await.expect("the task starts");
    eventually(
        "the dead letter was handled",
        Duration::from_secs(60),
        || async { !spans_on(&names.dead_letter()).is_empty() },
    )
    .await;
    running.shutdown().await;

    let trace = TraceId::from_hex(TRACE).unwrap();
    let producer_span = SpanId::from_hex(PRODUCER_SPAN).unwrap();
    let input = spans_on(&topic);
    assert_eq!(
        input.len(),
        4,
        "{}: one span per call: {input:#?}",
        broker.name()
    );
    for span in &input {
        assert_eq!(span.name, format!("process {topic}"));
        assert_eq!(
            attribute(span, "messaging.system"),
            Some(&Value::from("kafka"))
        );
        assert_eq!(attribute(span, "sluice.attempt"), Some(&Value::I64(1)));
        assert_eq!(
            attribute(span, "messaging.destination.partition.id"),
            Some(&Value::I64(0))
        );
    }
    let at = |offset: i64| {
        input
            .iter()
            .find(|span| attribute(span, "messaging.kafka.offset") == Some(&Value::I64(offset)))
            .unwrap_or_else(|| panic!("a span for offset {offset}"))
    };
    let keyed = at(0);
    assert_eq!(keyed.span_context.trace_id(), trace, "the producer's trace");
    assert_eq!(
        keyed.parent_span_id, producer_span,
        "the producer's span is the parent"
    );
    assert_eq!(
        attribute(keyed, "messaging.kafka.message.key"),
        Some(&Value::from("k1"))
    );
    assert_eq!(at(1).span_context.trace_id(), trace);
    let untraced = at(2);
    assert_ne!(
        untraced.span_context.trace_id(),
        trace,
        "a trace of its own"
    );
    assert_eq!(untraced.parent_span_id, SpanId::INVALID);
    assert_eq!(attribute(untraced, "messaging.kafka.message.key"), None);

    // The retry carries the trace on: its handling, attempt 2, is in the producer's trace.
    let retried = spans_on(&names.retry(1));
    assert_eq!(retried.len(), 2, "fail-once and always: {retried:#?}");
    for span in &retried {
        assert_eq!(span.name, format!("process {}", names.retry(1)));
        assert_eq!(span.span_context.trace_id(), trace);
        assert_eq!(span.parent_span_id, producer_span);
        assert_eq!(attribute(span, "sluice.attempt"), Some(&Value::I64(2)));
    }
    // So does the dead letter: the dead-letter stage's call, after two handlings, too.
    let dead = spans_on(&names.dead_letter());
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0].span_context.trace_id(), trace);
    assert_eq!(attribute(&dead[0], "sluice.attempt"), Some(&Value::I64(3)));
}

async fn a_batch_call_is_a_span_linked_to_the_handler_call_of_each_record(broker: TestBroker) {
    let topic = sluicegate_testing::unique_name("traced-batch");
    broker.create_topic(&topic, 1).await;
    let traceparent = format!("00-{TRACE}-{PRODUCER_SPAN}-01");
    let records = vec![
        TestRecord::value("a").header("traceparent", traceparent.clone()),
        TestRecord::value("b"),
        TestRecord::value("c").header("traceparent", traceparent),
    ];
    sluicegate_testing::produce_records(&broker.bootstrap_servers(), &topic, records).await;
    let group = sluicegate_testing::unique_name("traced-batch-group");
    let engine = ConsumerEngine::start(common::options(&broker, &group, &topic))
        .await
        .expect("the engine starts");
    let pipeline = Pipeline::builder(())
        .handle_message(|_, message| async move { Ok(message.put_batcher("rows")) })
        .batcher(
            "rows",
            BatcherOptions::new()
                .size(3)
                .timeout(Duration::from_secs(3600)),
        )
        .handle_batch(|_, _batch| async move { Ok(()) })
        .source(engine)
        .start()
        .expect("the pipeline starts");
    let batch_spans = || {
        spans_on(&topic)
            .into_iter()
            .filter(|span| attribute(span, "sluice.batcher").is_some())
            .collect::<Vec<_>>()
    };
    eventually("the batch was handled", Duration::from_secs(60), || async {
        !batch_spans().is_empty()
    })
    .await;
    pipeline.shutdown().await;

    let batches = batch_spans();
    assert_eq!(
        batches.len(),
        1,
        "{}: one batch call: {batches:#?}",
        broker.name()
    );
    let batch = &batches[0];
    assert_eq!(batch.name, format!("process {topic}"));
    assert_eq!(
        attribute(batch, "sluice.batcher"),
        Some(&Value::from("rows"))
    );
    assert_eq!(
        attribute(batch, "messaging.batch.message_count"),
        Some(&Value::I64(3))
    );
    let mut records: Vec<SpanData> = spans_on(&topic)
        .into_iter()
        .filter(|span| attribute(span, "sluice.batcher").is_none())
        .collect();
    records.sort_by_key(|span| match attribute(span, "messaging.kafka.offset") {
        Some(Value::I64(offset)) => *offset,
        other => panic!("a record span without its offset: {other:?}"),
    });
    assert_eq!(records.len(), 3, "one message handler call per record");
    let linked: Vec<_> = batch
        .links
        .iter()
        .map(|link| link.span_context.clone())
        .collect();
    let handled: Vec<_> = records
        .iter()
        .map(|span| span.span_context.clone())
        .collect();
    assert_eq!(
        linked, handled,
        "linked to each record's call, in batch order"
    );
    let trace = TraceId::from_hex(TRACE).unwrap();
    assert_eq!(
        linked[0].trace_id(),
        trace,
        "the producer's trace, reached by the link"
    );
    assert_ne!(
        linked[1].trace_id(),
        trace,
        "an untraced record's own trace"
    );
    assert_eq!(linked[2].trace_id(), trace);
    assert_ne!(
        batch.span_context.trace_id(),
        trace,
        "a batch of many parents starts a trace of its own"
    );
}
