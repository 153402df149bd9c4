//! The observability endpoint of a running task (`--metrics-addr`): Prometheus metrics and
//! health over HTTP.
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | every `sluice_*` metric in the Prometheus text format |
//! | `/health/live` | `200 live` while the process runs |
//! | `/health/ready` | `200 ready` while every stage holds an assignment or is idle in a stable group, `503 not ready` otherwise |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for durations, in seconds: from a millisecond to a minute.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// How often histograms are compacted (the exporter needs it done periodically).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Says whether the process is ready for work.
pub type ReadinessCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Installs the Prometheus recorder as the process's metrics recorder and describes every
/// Sluicegate metric. Call once, before anything records.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    sluicegate::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Binds `addr` and serves the endpoints until the runtime stops; returns the bound address
/// (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    ready: ReadinessCheck,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health/live", get(|| async { (StatusCode::OK, "live\n") }))
        .route("/health/ready", get(readiness))
        .with_state(Endpoints { metrics, ready });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });
    Ok(bound)
}

#[derive(Clone)]
struct Endpoints {
    metrics: PrometheusHandle,
    ready: ReadinessCheck,
}

async fn render_metrics(State(endpoints): State<Endpoints>) -> String {
    endpoints.metrics.render()
}

async fn readiness(State(endpoints): State<Endpoints>) -> (StatusCode, &'static str) {
    if (endpoints.ready)() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
