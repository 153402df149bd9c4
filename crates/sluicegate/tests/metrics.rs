//! What a pipeline run records through the `metrics` facade: exact counts of consumed,
//! processed and failed records, handler timings, committed offsets, assignments, and the
//! engine's readiness.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, options};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sluicegate::pipeline::Pipeline;
use sluicegate::{metrics as names, ConsumerEngine};
use sluicegate_testing::{init_tracing, TestBroker, TestRecord};

/// Every sample of the Prometheus text as `name{label="value",...}` (labels sorted) and its
/// value.
fn samples(metrics: &PrometheusHandle) -> BTreeMap<String, f64> {
    metrics
        .render()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                    labels.sort();
                    (name, labels.join(","))
                }
                None => (series, String::new()),
            };
            (
                format!("{name}{{{labels}}}"),
                value.parse().expect("a number"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_run_is_counted_exactly() {
    init_tracing();
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test binary");

    let broker = TestBroker::embedded();
    let topic = sluicegate_testing::unique_name("metrics");
    let group = sluicegate_testing::unique_name("metrics-group");
    broker.create_topic(&topic, 2).await;
    let records = (0..40)
        .map(|n| TestRecord::to_partition(n % 2, format!("{n}")))
        .collect();
    sluicegate_testing::produce_records(&broker.bootstrap_servers(), &topic, records).await;

    let engine = ConsumerEngine::start(
        options(&broker, &group, &topic).statistics_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let readiness = engine.readiness();
    let pipeline = Pipeline::builder(())
        .handle_message(|_, message| async move {
            let value: u32 = std::str::from_utf8(message.data().value.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            if value % 5 == 0 {
                return Err("every fifth fails".into());
            }
            Ok(message)
        })
        .source(engine)
        .start()
        .unwrap();
    eventually("every record handled", Duration::from_secs(30), || async {
        let stats = pipeline.stats();
        stats.processed + stats.failed == 40
    })
    .await;
    eventually("ready once assigned", Duration::from_secs(10), || async {
        readiness.is_ready()
    })
    .await;
    let q = |value: &str| format!("\"{value}\"");
    let labels = |extra: &str| format!("group={},{extra}topic={}", q(&group), q(&topic));
    let per_partition = |name: &str, partition: i32| {
        format!(
            "{name}{{{}}}",
            labels(&format!("partition={},", q(&partition.to_string())))
        )
    };
    eventually(
        "committed at the end, no lag, nothing buffered",
        Duration::from_secs(10),
        || async {
            let now = samples(&metrics);
            (0..2).all(|partition| {
                let gauge = |name: &str| now.get(&per_partition(name, partition)).copied();
                gauge(names::COMMITTED_OFFSET) == Some(20.0)
                    && gauge(names::CONSUMER_LAG) == Some(0.0)
                    && gauge(names::RECORDS_BUFFERED) == Some(0.0)
                    && gauge(names::RECORDS_IN_FLIGHT) == Some(0.0)
            })
        },
    )
    .await;

    let now = samples(&metrics);
    let value = |name: &str, labels: String| now.get(&format!("{name}{{{labels}}}")).copied();
    let by_topic = format!("topic={}", q(&topic));
    assert_eq!(value(names::RECORDS_CONSUMED, labels("")), Some(40.0));
    assert_eq!(
        value(names::RECORDS_PROCESSED, by_topic.clone()),
        Some(32.0)
    );
    assert_eq!(value(names::RECORDS_FAILED, by_topic.clone()), Some(8.0));
    let timings = format!("{}_count", names::HANDLER_DURATION);
    assert_eq!(
        value(&timings, format!("handler={},{by_topic}", q("message"))),
        Some(40.0),
        "one timing per message handler call"
    );
    let by_group = format!("group={}", q(&group));
    assert_eq!(
        value(names::ASSIGNED_PARTITIONS, by_group.clone()),
        Some(2.0)
    );
    assert!(
        value(
            names::REBALANCES,
            format!("{by_group},kind={}", q("assign"))
        ) >= Some(1.0),
        "the assignment was counted"
    );

    pipeline.shutdown().await;
    let now = samples(&metrics);
    assert_eq!(
        now.get(&format!("{}{{{by_group}}}", names::ASSIGNED_PARTITIONS)),
        Some(&0.0),
        "shutdown released both partitions"
    );
    assert!(!readiness.is_ready(), "not ready once shut down");
}
