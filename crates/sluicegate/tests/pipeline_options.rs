//! Pipeline declarations: invalid ones fail naming the setting; message formats, the rate
//! limit and the partition lifecycle callbacks do what they say.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluicegate::pipeline::{BatcherOptions, Pipeline, PipelineBuilder, RawValue, TestPipeline};
use sluicegate::{Header, Record, TopicPartition};

fn passing() -> PipelineBuilder<()> {
    Pipeline::builder(()).handle_message(|_, message| async move { Ok(message) })
}

fn refused(builder: PipelineBuilder<()>) -> String {
    match TestPipeline::start(builder) {
        Ok(_) => panic!("the declaration was accepted"),
        Err(error) => {
            let text = error.to_string();
            assert!(text.contains(&error.key), "{text}");
            error.key
        }
    }
}

#[tokio::test]
async fn each_invalid_declaration_names_its_setting() {
    let batched = || {
        passing()
            .batcher("db", BatcherOptions::new())
            .handle_batch(|_, _| async move { Ok(()) })
    };
    assert_eq!(refused(Pipeline::builder(())), "handle_message");
    assert_eq!(refused(passing().concurrency(0)), "concurrency");
    assert_eq!(
        refused(passing().handler_timeout(Duration::ZERO)),
        "handler_timeout"
    );
    assert_eq!(
        refused(passing().rate_limit(0, Duration::from_secs(1))),
        "rate_limit"
    );
    assert_eq!(
        refused(passing().rate_limit(5, Duration::ZERO)),
        "rate_limit"
    );
    assert_eq!(
        refused(passing().batcher("db", BatcherOptions::new())),
        "handle_batch"
    );
    assert_eq!(
        refused(passing().handle_batch(|_, _| async move { Ok(()) })),
        "batcher"
    );
    assert_eq!(
        refused(batched().batcher("db", BatcherOptions::new())),
        "batcher.db"
    );
    assert_eq!(
        refused(batched().batcher("small", BatcherOptions::new().size(0))),
        "batcher.small.size"
    );
    assert_eq!(
        refused(batched().batcher("fast", BatcherOptions::new().timeout(Duration::ZERO))),
        "batcher.fast.timeout"
    );
    assert_eq!(
        refused(batched().batcher("idle", BatcherOptions::new().concurrency(0))),
        "batcher.idle.concurrency"
    );
    // A real pipeline needs a consumer engine.
    let error = passing().start().err().expect("no source");
    assert_eq!(error.key, "source");
}

#[tokio::test]
async fn raw_values_carry_the_value_and_broadway_kafka_metadata() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder =
        Pipeline::raw_value_builder(seen.clone()).handle_message(|seen, message| async move {
            let raw: &RawValue = message.data();
            seen.lock().unwrap().push(raw.clone());
            Ok(message)
        });
    let mut test = TestPipeline::start(builder).unwrap();
    let mut record = TestPipeline::record("orders", 2, 9, Some(b"customer-1"), b"{}");
    record.headers = vec![Header {
        key: "trace".into(),
        value: Some(b"abc".to_vec()),
    }];
    record.timestamp_ms = Some(1_700_000_000_000);
    test.push([record]);
    test.finish().await;
    let seen = seen.lock().unwrap();
    let raw = &seen[0];
    assert_eq!(raw.value.as_deref(), Some(&b"{}"[..]));
    assert_eq!(
        (
            &*raw.metadata.topic,
            raw.metadata.partition,
            raw.metadata.offset
        ),
        ("orders", 2, 9)
    );
    assert_eq!(raw.metadata.key.as_deref(), Some(&b"customer-1"[..]));
    assert_eq!(raw.metadata.ts, Some(1_700_000_000_000));
    assert_eq!(
        raw.metadata.headers,
        vec![("trace".to_string(), Some(b"abc".to_vec()))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_caps_the_whole_pipeline() {
    let builder = passing()
        .concurrency(16)
        .rate_limit(20, Duration::from_millis(100));
    let mut test = TestPipeline::start(builder).unwrap();
    let started = Instant::now();
    for partition in 0..4 {
        test.push((0..25).map(|offset| TestPipeline::record("t", partition, offset, None, b"x")));
    }
    let report = test.finish().await;
    // 100 records at 20 per 100 ms: the fifth window opens after 400 ms.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert_eq!(report.stats.processed, 100);
}

#[tokio::test]
async fn partition_callbacks_bracket_each_assignment() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let (on_start, on_stop) = (events.clone(), events.clone());
    let builder = passing()
        .on_partition_start(move |partition: &TopicPartition| {
            on_start.lock().unwrap().push(format!("start {partition}"))
        })
        .on_partition_stop(move |partition: &TopicPartition| {
            on_stop.lock().unwrap().push(format!("stop {partition}"))
        });
    let mut test = TestPipeline::start(builder).unwrap();
    let record = |offset| -> Record { TestPipeline::record("t", 0, offset, None, b"x") };
    test.push([record(0)]);
    test.wait_for_acks(1).await;
    test.stop_partition("t", 0);
    tokio::time::timeout(Duration::from_secs(5), async {
        while events.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the stop callback runs");
    // Assigned again, as after a rebalance.
    test.push([record(1)]);
    test.finish().await;
    assert_eq!(
        *events.lock().unwrap(),
        vec!["start t/0", "stop t/0", "start t/0", "stop t/0"]
    );
}
