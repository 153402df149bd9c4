//! Exporting handler spans over OTLP: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (for example
//! `http://collector:4318`), [`layer`] sends the spans of the library's handler calls
//! (`process <topic>`, children of each record's `traceparent`) to its `/v1/traces` as
//! OTLP/HTTP protobuf, in batches, with service name `sluice` unless `OTEL_SERVICE_NAME` says
//! otherwise. The other `OTEL_EXPORTER_OTLP_*` variables (headers, timeout) apply as the
//! OpenTelemetry SDK reads them.

use std::sync::Mutex;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The provider the layer exports through, kept to flush it at exit.
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// The environment variable that turns the export on.
pub const ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// A layer exporting the library's spans over OTLP, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set;
/// `None` otherwise, or (with a warning on stderr) when the exporter cannot be built.
pub fn layer<S>() -> Option<Box<dyn Layer<S> + Send + Sync>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    std::env::var_os(ENDPOINT_VARIABLE).filter(|endpoint| !endpoint.is_empty())?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!(
                "sluice: {ENDPOINT_VARIABLE} is set but the OTLP exporter cannot start: {error}"
            );
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "sluice".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("sluicegate");
    *PROVIDER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(provider);
    // The library's spans only, whatever RUST_LOG lets through to the log lines.
    let spans = Targets::new().with_target("sluicegate", LevelFilter::INFO);
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(spans)
            .boxed(),
    )
}

/// Sends the spans not exported yet and stops the exporter (nothing without one).
pub fn shutdown() {
    let provider = PROVIDER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(provider) = provider {
        if let Err(error) = provider.shutdown() {
            eprintln!("sluice: the last spans could not be exported: {error}");
        }
    }
}
