//! What Sluicegate measures, through the [`metrics`](https://docs.rs/metrics) facade: install
//! any recorder (the `sluice` binary installs a Prometheus one) and these appear; without a
//! recorder they cost next to nothing.
//!
//! Names follow Prometheus conventions: counters end in `_total`, durations are histograms in
//! seconds. Labels: `group` and `topic` on consumer figures (plus `partition` where the figure
//! is per partition), `topic` on pipeline figures, `topic` (the input topic) and `stage` on
//! retry figures. [`describe`] registers a help text for each.

/// Records the consumer engines took from librdkafka for the application (counter; `group`,
/// `topic`).
pub const RECORDS_CONSUMED: &str = "sluice_records_consumed_total";
/// Records a pipeline's message handler finished successfully (counter; `topic`).
pub const RECORDS_PROCESSED: &str = "sluice_records_processed_total";
/// Records that failed in a pipeline and went to its failure path (counter; `topic`).
pub const RECORDS_FAILED: &str = "sluice_records_failed_total";
/// Records a retry task wrote to a retry topic (counter; `topic`, `stage`).
pub const RECORDS_RETRIED: &str = "sluice_records_retried_total";
/// Records a retry task wrote to a dead-letter topic (counter; `topic`, `stage`).
pub const RECORDS_DEAD_LETTERED: &str = "sluice_records_dead_lettered_total";
/// Records waiting in a partition's buffer for the application (gauge; `group`, `topic`,
/// `partition`).
pub const RECORDS_BUFFERED: &str = "sluice_records_buffered";
/// Records delivered to the application and not yet acknowledged (gauge; `group`, `topic`,
/// `partition`).
pub const RECORDS_IN_FLIGHT: &str = "sluice_records_in_flight";
/// How far the group's position is behind the partition's end, as librdkafka last reported
/// (gauge; `group`, `topic`, `partition`).
pub const CONSUMER_LAG: &str = "sluice_consumer_lag";
/// The offset the group last committed (gauge; `group`, `topic`, `partition`).
pub const COMMITTED_OFFSET: &str = "sluice_committed_offset";
/// How long each offset commit took (histogram, seconds; `group`).
pub const COMMIT_DURATION: &str = "sluice_commit_duration_seconds";
/// Offset commits the broker refused or that failed (counter; `group`).
pub const COMMIT_ERRORS: &str = "sluice_commit_errors_total";
/// How long each handler call took (histogram, seconds; `handler` is `message`, `batch` or
/// `failed`, `topic` for message handlers).
pub const HANDLER_DURATION: &str = "sluice_handler_duration_seconds";
/// Rebalance events a member went through (counter; `group`, `kind` is `assign`, `revoke` or
/// `error`).
pub const REBALANCES: &str = "sluice_rebalances_total";
/// Partitions currently assigned to this process (gauge; `group`).
pub const ASSIGNED_PARTITIONS: &str = "sluice_assigned_partitions";
/// Partitions whose final commit (on revoke or shutdown) the broker refused within the drain
/// timeout, so their records after the last commit are delivered again (counter; `group`,
/// `reason`: `revoke` or `shutdown`).
pub const FINAL_COMMITS_REFUSED: &str = "sluice_final_commits_refused_total";
/// 1 while a partition has work and made no progress for the stall timeout, else 0 (gauge;
/// `group`, `topic`, `partition`).
pub const PARTITION_STALLED: &str = "sluice_partition_stalled";
/// Records a producer holds: buffered or sent and not yet acknowledged (gauge).
pub const PRODUCER_QUEUE_DEPTH: &str = "sluice_producer_queue_depth";
/// Records a producer failed to deliver (counter; `topic`).
pub const PRODUCER_DELIVERY_ERRORS: &str = "sluice_producer_delivery_errors_total";

/// Registers the help text and unit of every metric above with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

    describe_counter!(
        RECORDS_CONSUMED,
        "Records the consumer engines took from librdkafka for the application."
    );
    describe_counter!(
        RECORDS_PROCESSED,
        "Records a pipeline's message handler finished successfully."
    );
    describe_counter!(
        RECORDS_FAILED,
        "Records that failed in a pipeline and went to its failure path."
    );
    describe_counter!(RECORDS_RETRIED, "Records written to a retry topic.");
    describe_counter!(
        RECORDS_DEAD_LETTERED,
        "Records written to a dead-letter topic."
    );
    describe_gauge!(
        RECORDS_BUFFERED,
        "Records waiting in a partition's buffer for the application."
    );
    describe_gauge!(
        RECORDS_IN_FLIGHT,
        "Records delivered to the application and not yet acknowledged."
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Records between the group's position and the end of the partition."
    );
    describe_gauge!(COMMITTED_OFFSET, "The offset the group last committed.");
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "How long each offset commit took."
    );
    describe_counter!(COMMIT_ERRORS, "Offset commits that failed.");
    describe_histogram!(
        HANDLER_DURATION,
        Unit::Seconds,
        "How long each handler call took."
    );
    describe_counter!(REBALANCES, "Rebalance events members went through.");
    describe_gauge!(ASSIGNED_PARTITIONS, "Partitions currently assigned.");
    describe_counter!(
        FINAL_COMMITS_REFUSED,
        "Partitions whose final commit on revoke or shutdown was refused."
    );
    describe_gauge!(
        PARTITION_STALLED,
        "1 while a partition has work and made no progress for the stall timeout."
    );
    describe_gauge!(
        PRODUCER_QUEUE_DEPTH,
        "Records a producer holds: buffered or awaiting acknowledgement."
    );
    describe_counter!(
        PRODUCER_DELIVERY_ERRORS,
        "Records a producer failed to deliver."
    );
}
