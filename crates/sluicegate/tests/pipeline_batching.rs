//! Batchers on a pipeline fed from memory: size and timeout triggers, batch keys, partial
//! batches flushed on revoke and on shutdown, and one batch per key at a time.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluicegate::pipeline::{
    BatchKey, BatchTrigger, BatcherOptions, FailureKind, Pipeline, PipelineBuilder, TestPipeline,
    TestReport,
};
use sluicegate::{Record, TopicPartition};

fn records(partition: i32, offsets: std::ops::Range<i64>) -> Vec<Record> {
    offsets
        .map(|offset| TestPipeline::record("events", partition, offset, None, b"x"))
        .collect()
}

/// The offsets of one partition in the order the batches handed them out.
fn batched_offsets(report: &TestReport, partition: i32) -> Vec<i64> {
    report
        .batches
        .iter()
        .flat_map(|batch| batch.records.iter())
        .filter(|(tp, _)| tp.partition == partition)
        .map(|(_, offset)| *offset)
        .collect()
}

/// Routes every message to the batcher `rows`, with an optional coarse batch key.
fn batching(options: BatcherOptions, key: Option<&'static str>) -> PipelineBuilder<()> {
    Pipeline::builder(())
        .handle_message(move |_, message| async move {
            let message = message.put_batcher("rows");
            Ok(match key {
                Some(key) => message.put_batch_key(key),
                None => message,
            })
        })
        .batcher("rows", options)
        .handle_batch(|_, _batch| async move { Ok(()) })
}

#[tokio::test]
async fn full_batches_go_out_at_once_and_the_rest_on_shutdown() {
    let options = BatcherOptions::new()
        .size(10)
        .timeout(Duration::from_secs(3600));
    let mut test = TestPipeline::start(batching(options, None)).unwrap();
    test.push(records(0, 0..35));
    test.wait_for_acks(30).await;
    let report = test.report();
    assert_eq!(report.batches.len(), 3);
    assert!(report
        .batches
        .iter()
        .all(|batch| batch.trigger == BatchTrigger::Size));
    let offsets: Vec<i64> = report.batches[0]
        .records
        .iter()
        .map(|(_, offset)| *offset)
        .collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());

    let report = test.finish().await;
    assert_eq!(report.batches.len(), 4);
    let last = &report.batches[3];
    assert_eq!(last.trigger, BatchTrigger::Flush);
    assert_eq!(last.records.len(), 5);
    assert_eq!(
        report.acked_offsets("events", 0),
        (0..35).collect::<Vec<_>>()
    );
    assert_eq!(report.stats.batches, 4);
    assert_eq!(report.stats.processed, 35);
}

#[tokio::test]
async fn a_partial_batch_goes_out_when_its_timeout_passes() {
    let options = BatcherOptions::new()
        .size(100)
        .timeout(Duration::from_millis(50));
    let mut test = TestPipeline::start(batching(options, None)).unwrap();
    test.push(records(0, 0..5));
    tokio::time::timeout(Duration::from_secs(5), test.wait_for_acks(5))
        .await
        .expect("the timeout flushes the batch without shutdown");
    let report = test.report();
    assert_eq!(report.batches.len(), 1);
    assert_eq!(report.batches[0].trigger, BatchTrigger::Timeout);
    assert_eq!(report.batches[0].records.len(), 5);
    test.finish().await;
}

#[tokio::test]
async fn the_default_key_keeps_partitions_apart_and_a_coarse_key_mixes_them() {
    let options = BatcherOptions::new()
        .size(8)
        .timeout(Duration::from_secs(3600));
    let mut by_partition = TestPipeline::start(batching(options.clone(), None)).unwrap();
    let mut coarse = TestPipeline::start(batching(options, Some("all"))).unwrap();
    for test in [&mut by_partition, &mut coarse] {
        for offset in 0..16 {
            test.push(records(0, offset..offset + 1));
            test.push(records(1, offset..offset + 1));
            // Let both partitions' records reach the batcher before the next pair.
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        }
    }

    let report = by_partition.finish().await;
    assert_eq!(report.batches.len(), 4);
    for batch in &report.batches {
        let BatchKey::Partition(key) = &batch.key else {
            panic!("default key is the partition")
        };
        assert!(batch.records.iter().all(|(partition, _)| partition == key));
        let offsets: Vec<i64> = batch.records.iter().map(|(_, offset)| *offset).collect();
        assert!(
            offsets.windows(2).all(|pair| pair[0] < pair[1]),
            "{offsets:?}"
        );
    }

    let report = coarse.finish().await;
    assert_eq!(report.batches.len(), 4);
    assert!(report
        .batches
        .iter()
        .all(|batch| batch.key == BatchKey::Custom("all".into())));
    let mixed = report.batches.iter().any(|batch| {
        let partitions: HashSet<_> = batch
            .records
            .iter()
            .map(|(partition, _)| partition)
            .collect();
        partitions.len() == 2
    });
    assert!(
        mixed,
        "a coarse key packs several partitions into one batch"
    );
    for partition in 0..2 {
        // Within and across batches, a partition's records keep their order.
        let offsets = batched_offsets(&report, partition);
        assert_eq!(offsets, (0..16).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_stopped_partition_flushes_its_batches_before_it_reports_stopped() {
    let stopped = Arc::new(Mutex::new(Vec::new()));
    let options = BatcherOptions::new()
        .size(100)
        .timeout(Duration::from_secs(3600));
    let on_stop = stopped.clone();
    let builder = batching(options, None).on_partition_stop(move |partition: &TopicPartition| {
        on_stop.lock().unwrap().push(partition.clone())
    });
    let mut test = TestPipeline::start(builder).unwrap();
    test.push(records(0, 0..7));
    test.push(records(1, 0..3));
    test.stop_partition("events", 0);
    test.wait_for_acks(7).await;
    let report = test.report();
    assert_eq!(
        report.batches.len(),
        1,
        "only the stopped partition's batch goes out"
    );
    assert_eq!(report.batches[0].trigger, BatchTrigger::Flush);
    assert_eq!(report.batches[0].records.len(), 7);
    tokio::time::timeout(Duration::from_secs(5), async {
        while stopped.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the stop callback runs once the partition settled");
    assert_eq!(
        *stopped.lock().unwrap(),
        vec![TopicPartition::new("events", 0)]
    );

    let report = test.finish().await;
    assert_eq!(report.acked_offsets("events", 1), vec![0, 1, 2]);
    assert_eq!(stopped.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_one_key_never_run_at_once() {
    struct Running {
        per_key: Mutex<std::collections::HashMap<String, usize>>,
        overlaps: AtomicUsize,
        most_at_once: AtomicUsize,
        now: AtomicUsize,
    }
    let running = Arc::new(Running {
        per_key: Mutex::default(),
        overlaps: AtomicUsize::new(0),
        most_at_once: AtomicUsize::new(0),
        now: AtomicUsize::new(0),
    });
    let builder = Pipeline::builder(running.clone())
        .handle_message(|_, message| async move { Ok(message.put_batcher("rows")) })
        .batcher("rows", BatcherOptions::new().size(5).concurrency(4))
        .handle_batch(|running, batch| async move {
            let key = batch.key.to_string();
            {
                let mut per_key = running.per_key.lock().unwrap();
                let count = per_key.entry(key.clone()).or_default();
                *count += 1;
                if *count > 1 {
                    running.overlaps.fetch_add(1, Ordering::SeqCst);
                }
            }
            let now = running.now.fetch_add(1, Ordering::SeqCst) + 1;
            running.most_at_once.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            running.now.fetch_sub(1, Ordering::SeqCst);
            *running.per_key.lock().unwrap().get_mut(&key).unwrap() -= 1;
            Ok(())
        });
    let mut test = TestPipeline::start(builder).unwrap();
    for partition in 0..8 {
        test.push(records(partition, 0..100));
    }
    let report = test.finish().await;
    assert_eq!(report.batches.len(), 8 * 20);
    assert_eq!(running.overlaps.load(Ordering::SeqCst), 0);
    assert!(
        running.most_at_once.load(Ordering::SeqCst) > 1,
        "batch concurrency unused"
    );
    for partition in 0..8 {
        let offsets = batched_offsets(&report, partition);
        assert_eq!(
            offsets,
            (0..100).collect::<Vec<_>>(),
            "partition {partition}"
        );
    }
}

#[tokio::test]
async fn a_failing_batch_fails_each_of_its_messages() {
    let builder = Pipeline::builder(())
        .handle_message(|_, message| async move { Ok(message.put_batcher("rows")) })
        .batcher("rows", BatcherOptions::new().size(4))
        .handle_batch(|_, batch| async move {
            if batch.messages[0].offset() == 4 {
                return Err("database refused the batch".into());
            }
            Ok(())
        });
    let mut test = TestPipeline::start(builder).unwrap();
    test.push(records(0, 0..12));
    let report = test.finish().await;
    let failed: Vec<i64> = report.failed.iter().map(|failure| failure.offset).collect();
    assert_eq!(failed, vec![4, 5, 6, 7]);
    let reason = &report.failed[0].reason;
    assert_eq!(reason.kind, FailureKind::Error);
    assert_eq!(reason.batcher.as_deref(), Some("rows"));
    assert_eq!(
        reason.to_string(),
        "batch handler `rows` error: database refused the batch"
    );
    assert_eq!(
        report.acked_offsets("events", 0),
        (0..12).collect::<Vec<_>>()
    );
    assert_eq!((report.stats.processed, report.stats.failed), (8, 4));
}
