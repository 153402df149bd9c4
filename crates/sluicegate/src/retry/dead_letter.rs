//! The dead-letter stage: it reads the dead-letter topics, logs each dead letter with its
//! reason, and hands it to the task's dead-letter handler, if it has one.

use super::headers::RetryHeaders;
use crate::pipeline::{BoxHandler, Failed, Handler, Message, Pipeline, PipelineBuilder};
use crate::record::Record;

/// A record of a dead-letter topic, as a task's dead-letter handler receives it (see
/// [`RetryTask::dead_letter_handler`](super::RetryTask::dead_letter_handler)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The record as it was written to the dead-letter topic: the original key, value and
    /// headers, plus the retry headers.
    pub record: Record,
    /// Where it came from, how often it was handled and why it failed last; `None` when its
    /// retry headers are missing or unreadable (a record written there by something else).
    pub history: Option<RetryHeaders>,
}

impl DeadLetter {
    /// The dead letter `record`, with its history read from its headers.
    pub fn new(record: Record) -> Self {
        let history = RetryHeaders::from_headers(&record.headers).ok().flatten();
        Self { record, history }
    }
}

/// The dead-letter stage's pipeline: one record of a partition at a time; `handler`, when
/// set, is called once per dead letter (again if the stage stops before committing it). A
/// handler that fails is logged, as the stage's failure path, and the dead letter is
/// committed all the same: it stays in the topic for `sluice dlq` to inspect and replay.
pub(crate) fn pipeline(handler: Option<BoxHandler<DeadLetter>>) -> PipelineBuilder<(), Record> {
    let concurrent = handler.is_some();
    let pipeline = Pipeline::builder(())
        .attempt_of(std::sync::Arc::new(super::attempt))
        .handle_message(move |_, message| {
            let handler = handler.clone();
            async move {
                let dead_letter = DeadLetter::new(message.data().clone());
                log_dead_letter(&dead_letter);
                if let Some(handler) = handler {
                    handler.handle(&dead_letter).await?;
                }
                Ok(message)
            }
        })
        .handle_failed(|_, failed| async move { log_handler_failures(&failed) });
    // Logging alone is cheap; a handler may wait on I/O, so partitions run side by side.
    if concurrent {
        pipeline
    } else {
        pipeline.concurrency(1)
    }
}

fn log_dead_letter(dead_letter: &DeadLetter) {
    let record = &dead_letter.record;
    match &dead_letter.history {
        Some(history) => tracing::warn!(
            dead_letter_topic = %record.topic,
            offset = record.offset,
            original_topic = %history.original_topic,
            original_partition = history.original_partition,
            original_offset = history.original_offset,
            handled = history.attempt.saturating_sub(1),
            reason = %history.error,
            "dead letter"
        ),
        None => tracing::warn!(
            dead_letter_topic = %record.topic,
            offset = record.offset,
            "dead letter without a readable retry history"
        ),
    }
}

fn log_handler_failures(failed: &[Failed<Record>]) {
    for failure in failed {
        let message: &Message<Record> = &failure.message;
        tracing::error!(
            dead_letter_topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            reason = %failure.reason,
            "the dead-letter handler failed; the dead letter stays in its topic"
        );
    }
}
