//! The failure path on a pipeline fed from memory: errors, panics and timeouts reach the
//! failure handler with their reasons, in batches; their offsets advance; nothing else stops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluicegate::pipeline::{FailureKind, Pipeline, ProcessingOrder, TestPipeline};
use sluicegate::Record;

fn records(partition: i32, values: &[&str]) -> Vec<Record> {
    values
        .iter()
        .enumerate()
        .map(|(offset, value)| {
            TestPipeline::record("payments", partition, offset as i64, None, value.as_bytes())
        })
        .collect()
}

/// A message handler that fails according to the record's value.
fn misbehaving(order: ProcessingOrder) -> sluicegate::pipeline::PipelineBuilder<()> {
    Pipeline::builder(())
        .order(order)
        .concurrency(4)
        .handler_timeout(Duration::from_millis(100))
        .handle_message(|_, message| async move {
            match message.data().value.as_deref() {
                Some(b"error") => Err("card declined".into()),
                Some(b"panic") => panic!("index out of bounds"),
                Some(b"hang") => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(message)
                }
                Some(b"lost") => Ok(message.put_batcher("nowhere")),
                _ => Ok(message),
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_panics_and_timeouts_reach_the_failure_handler_and_advance() {
    for order in [
        ProcessingOrder::Partition,
        ProcessingOrder::Key,
        ProcessingOrder::Unordered,
    ] {
        let mut test = TestPipeline::start(misbehaving(order)).unwrap();
        test.push(records(
            0,
            &[
                "ok", "error", "ok", "panic", "ok", "hang", "ok", "lost", "ok",
            ],
        ));
        test.push(records(1, &["ok", "ok", "ok"]));
        let report = test.finish().await;

        let mut failed: Vec<_> = report
            .failed
            .iter()
            .map(|failure| {
                (
                    failure.offset,
                    failure.reason.kind,
                    failure.reason.to_string(),
                )
            })
            .collect();
        failed.sort_by_key(|(offset, _, _)| *offset);
        assert_eq!(
            failed,
            vec![
                (
                    1,
                    FailureKind::Error,
                    "message handler error: card declined".to_string()
                ),
                (
                    3,
                    FailureKind::Panic,
                    "message handler panic: index out of bounds".to_string()
                ),
                (
                    5,
                    FailureKind::Timeout,
                    "message handler timeout: still running after 100ms".to_string()
                ),
                (
                    7,
                    FailureKind::Error,
                    "message handler error: routed to the undeclared batcher `nowhere`".to_string()
                ),
            ],
            "{order:?}"
        );
        assert_eq!(
            report.acked_offsets("payments", 0),
            (0..9).collect::<Vec<_>>(),
            "{order:?}"
        );
        assert_eq!(
            report.acked_offsets("payments", 1),
            vec![0, 1, 2],
            "{order:?}"
        );
        assert_eq!(
            (report.stats.processed, report.stats.failed),
            (8, 4),
            "{order:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_arrive_in_batches_and_a_failing_failure_handler_still_acks() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let builder = Pipeline::builder(calls.clone())
        .order(ProcessingOrder::Unordered)
        .concurrency(64)
        .handle_message(|_, _message| async move { Err("always".into()) })
        .handle_failed(|calls, failed| async move {
            calls.lock().unwrap().push(failed.len());
            // Slow, so failures queue up behind it; and it panics on its first call.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if calls.lock().unwrap().len() == 1 {
                panic!("the dead-letter sink is down");
            }
        });
    let mut test = TestPipeline::start(builder).unwrap();
    let values = vec!["x"; 500];
    test.push(records(0, &values));
    let report = test.finish().await;
    let sizes = calls.lock().unwrap().clone();
    assert_eq!(sizes.iter().sum::<usize>(), 500);
    assert!(
        sizes.iter().any(|size| *size > 1),
        "failures came one by one: {sizes:?}"
    );
    assert!(sizes.iter().all(|size| *size <= 100), "{sizes:?}");
    assert_eq!(
        report.acked_offsets("payments", 0),
        (0..500).collect::<Vec<_>>()
    );
    assert_eq!(report.failed.len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_does_not_stop_its_partition_or_others() {
    let handled = Arc::new(AtomicUsize::new(0));
    let builder =
        Pipeline::builder(handled.clone()).handle_message(|handled, message| async move {
            if message.offset() % 10 == 0 {
                panic!("every tenth record");
            }
            handled.fetch_add(1, Ordering::SeqCst);
            Ok(message)
        });
    let mut test = TestPipeline::start(builder).unwrap();
    let values = vec!["x"; 100];
    for partition in 0..3 {
        test.push(records(partition, &values));
    }
    let report = test.finish().await;
    assert_eq!(handled.load(Ordering::SeqCst), 270);
    assert_eq!(report.failed.len(), 30);
    for partition in 0..3 {
        assert_eq!(
            report.acked_offsets("payments", partition),
            (0..100).collect::<Vec<_>>()
        );
    }
}
