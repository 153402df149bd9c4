//! Ordering under concurrency, on a pipeline fed from memory: random handler delays must
//! never reorder a partition (partition order) or a (partition, key) (key order), and key
//! order must really run distinct keys of one partition at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluicegate::pipeline::{Pipeline, ProcessingOrder, TestPipeline, TestReport};
use sluicegate::{Offset, Record};

const PARTITIONS: i32 = 6;
const PER_PARTITION: i64 = 600;

/// What the handlers saw: for each lane (partition, or partition and key), the offsets in
/// the order their handler calls began, and how many ran at once.
#[derive(Default)]
struct Observed {
    started: HashMap<(i32, Option<Vec<u8>>), Vec<Offset>>,
    running_per_lane: HashMap<(i32, Option<Vec<u8>>), usize>,
    running_per_partition: HashMap<i32, usize>,
    lane_overlaps: usize,
    most_in_one_partition: usize,
    running: usize,
    most_running: usize,
}

struct Recorder {
    observed: Mutex<Observed>,
    seed: AtomicU64,
    by_key: bool,
}

impl Recorder {
    fn new(by_key: bool) -> Self {
        Self {
            observed: Mutex::default(),
            seed: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
            by_key,
        }
    }

    fn lane(&self, record: &Record) -> (i32, Option<Vec<u8>>) {
        let key = if self.by_key {
            record.key.clone()
        } else {
            None
        };
        (record.partition, key)
    }

    fn begin(&self, record: &Record) {
        let lane = self.lane(record);
        let mut seen = self.observed.lock().unwrap();
        seen.started
            .entry(lane.clone())
            .or_default()
            .push(record.offset);
        let in_lane = seen.running_per_lane.entry(lane).or_default();
        *in_lane += 1;
        if *in_lane > 1 {
            seen.lane_overlaps += 1;
        }
        let in_partition = seen
            .running_per_partition
            .entry(record.partition)
            .or_default();
        *in_partition += 1;
        let in_partition = *in_partition;
        seen.most_in_one_partition = seen.most_in_one_partition.max(in_partition);
        seen.running += 1;
        seen.most_running = seen.most_running.max(seen.running);
    }

    fn end(&self, record: &Record) {
        let lane = self.lane(record);
        let mut seen = self.observed.lock().unwrap();
        *seen.running_per_lane.get_mut(&lane).unwrap() -= 1;
        *seen
            .running_per_partition
            .get_mut(&record.partition)
            .unwrap() -= 1;
        seen.running -= 1;
    }

    /// A pseudo-random delay of 0–1.5 ms (xorshift), shared by all handlers.
    fn delay(&self) -> Duration {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        Duration::from_micros(x % 1_500)
    }
}

fn records(keys: usize) -> Vec<Record> {
    let mut records = Vec::new();
    for offset in 0..PER_PARTITION {
        for partition in 0..PARTITIONS {
            // Every seventh record has no key: unkeyed records form their own lane.
            let key = (offset % 7 != 0).then(|| format!("k{}", (offset as usize * 31) % keys));
            records.push(TestPipeline::record(
                "orders",
                partition,
                offset,
                key.as_deref().map(str::as_bytes),
                format!("{partition}-{offset}").as_bytes(),
            ));
        }
    }
    records
}

async fn run(order: ProcessingOrder, concurrency: usize, keys: usize) -> (TestReport, Observed) {
    let recorder = Arc::new(Recorder::new(order == ProcessingOrder::Key));
    let builder = Pipeline::builder(recorder.clone())
        .order(order)
        .concurrency(concurrency)
        .handle_message(|recorder: Arc<Arc<Recorder>>, message| async move {
            recorder.begin(message.data());
            tokio::time::sleep(recorder.delay()).await;
            recorder.end(message.data());
            Ok(message)
        });
    let mut test = TestPipeline::start(builder).unwrap();
    // Pushed in several slices, as fetches would arrive.
    let all = records(keys);
    for slice in all.chunks(500) {
        test.push(slice.to_vec());
        tokio::task::yield_now().await;
    }
    let report = test.finish().await;
    let observed = std::mem::take(&mut *recorder.observed.lock().unwrap());
    (report, observed)
}

fn assert_everything_acked(report: &TestReport) {
    for partition in 0..PARTITIONS {
        assert_eq!(
            report.acked_offsets("orders", partition),
            (0..PER_PARTITION).collect::<Vec<_>>(),
            "partition {partition}"
        );
    }
    assert_eq!(
        report.stats.processed,
        (PARTITIONS as i64 * PER_PARTITION) as u64
    );
    assert!(report.failed.is_empty());
}

fn assert_lanes_in_offset_order(observed: &Observed) {
    assert_eq!(
        observed.lane_overlaps, 0,
        "two records of one lane ran at once"
    );
    for (lane, offsets) in &observed.started {
        assert!(
            offsets.windows(2).all(|pair| pair[0] < pair[1]),
            "lane {lane:?} started out of order: {offsets:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_runs_each_partition_one_record_at_a_time() {
    let (report, observed) = run(ProcessingOrder::Partition, 8, 10).await;
    assert_everything_acked(&report);
    assert_lanes_in_offset_order(&observed);
    assert_eq!(observed.started.len(), PARTITIONS as usize);
    assert_eq!(observed.most_in_one_partition, 1);
    assert!(
        observed.most_running > 1,
        "partitions should run concurrently"
    );
    assert!(observed.most_running <= 8, "concurrency exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_keeps_each_key_in_order_and_runs_keys_at_once() {
    let (report, observed) = run(ProcessingOrder::Key, 32, 10).await;
    assert_everything_acked(&report);
    assert_lanes_in_offset_order(&observed);
    // Ten keys plus the unkeyed lane, in each partition.
    assert_eq!(observed.started.len(), PARTITIONS as usize * 11);
    assert!(
        observed.most_in_one_partition > 1,
        "distinct keys of one partition never overlapped"
    );
    assert!(observed.most_running <= 32, "concurrency exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_fills_the_concurrency_and_never_exceeds_it() {
    let (report, observed) = run(ProcessingOrder::Unordered, 16, 10).await;
    assert_everything_acked(&report);
    assert_eq!(observed.most_running, 16);
}
