//! `sluice process --config FILE [--stages SPEC] TASK`: runs a task of the configuration
//! file, with its retry stages and dead-letter topic, until SIGINT or SIGTERM.
//!
//! Stage 0 reads the input topics; stage `k` reads retry topic `k`. Each stage is a consumer
//! group of its own, so processes started with different `--stages` share a task's work, and
//! processes with the same stages share a stage's partitions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::anyhow;
use clap::Args;
use sluicegate::pipeline::{
    BatcherOptions, BoxError, BoxHandler, Handler, Pipeline, PipelineSummary,
};
use sluicegate::retry::{DeadLetter, RetryError, RetryMode, RetryTask, Stages, TaskSummary};
use sluicegate::Readiness;
use tokio::sync::Notify;

use crate::config::{ConfigArgs, TaskPlan};
use crate::console::stop_on_signal;
use crate::handlers::registry::Registry;
use crate::observe;
use crate::out;
use crate::tool::exit::usage;

#[derive(Debug, Args)]
#[command(after_help = "\
Stages: 0 reads the input topics, k reads retry topic k (<topic>.<group>.retry.<k>); a record that \
fails its last retry, or that its handler refuses for good (exec: exit status 65; http: a 4xx), \
goes to the dead-letter topic (<topic>.<group>.dlq). \
Start one process with --stages 0 and another with --stages 1-3 to run them apart.

Stops on SIGINT or SIGTERM: records in flight finish, offsets are committed, and a summary is \
printed. A second signal ends the process at once.

Configuration: SLUICE__* environment variables override the file \
(SLUICE__TASKS__BILLING__CONCURRENCY=8: `__` between keys), and --set flags override both; \
sluice config check FILE lists every problem of a file.

Examples:
  sluice process --config tasks.toml billing
  sluice process --config tasks.toml --stages 1-3 billing
  sluice process --config tasks.toml --set tasks.billing.concurrency=16 billing")]
pub struct ProcessArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The stages to run: 0, 1-5, all, or a comma list such as 0,2-3.
    #[arg(long, value_name = "SPEC", default_value = "all")]
    stages: Stages,
    /// Serve Prometheus metrics (/metrics) and health (/health/live, /health/ready) on this
    /// address, such as 0.0.0.0:9464.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// The task: a [tasks.NAME] table of the file.
    task: String,
}

pub fn run(args: ProcessArgs, registry: &Registry) -> anyhow::Result<()> {
    let plan = args.config.plan(&args.task, registry)?;
    let in_file = |problem: String| usage(format!("{}: {problem}", args.config.config.display()));
    let handler = crate::handlers::start(&plan.handler, registry).map_err(|error| {
        in_file(format!(
            "tasks.{}.handler{}: {}",
            plan.name,
            dotted(error.key),
            error.problem
        ))
    })?;
    let dead_letters = match &plan.dead_letter_handler {
        None => None,
        Some(spec) => Some(crate::handlers::start(spec, registry).map_err(|error| {
            in_file(format!(
                "tasks.{}.dead_letter_handler{}: {}",
                plan.name,
                dotted(error.key),
                error.problem
            ))
        })?),
    };
    let mut task = retry_task(&plan, handler);
    if let Some(handler) = dead_letters {
        task = task.dead_letter_handler(DeadLetterRecord(handler));
    }
    let stages = task.validate(&args.stages).map_err(|error| match error {
        RetryError::Stages(problem) => usage(format!("--stages: {problem}")),
        other => in_file(format!("tasks.{}: {other}", plan.name)),
    })?;

    let runtime = crate::runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    stop_on_signal(&runtime, stop.clone(), Some(wake.clone()))?;
    let readiness: Arc<OnceLock<Readiness>> = Arc::default();
    if let Some(addr) = args.metrics_addr {
        let ready = readiness.clone();
        let bound = runtime.block_on(async {
            let metrics = observe::install_recorder()?;
            let ready = Arc::new(move || ready.get().is_some_and(Readiness::is_ready));
            observe::serve(addr, metrics, ready).await
        })?;
        eprintln!("sluice process: metrics on http://{bound}/metrics, health on /health/live and /health/ready");
    }
    let running = runtime
        .block_on(task.start(&args.stages))
        .map_err(|error| match error {
            RetryError::Options(problem) => in_file(format!("tasks.{}: {problem}", plan.name)),
            other => anyhow!(other).context(format!("could not start task `{}`", plan.name)),
        })?;
    let _ = readiness.set(running.readiness());
    let listed: Vec<String> = stages.iter().map(usize::to_string).collect();
    eprintln!(
        "sluice process: task `{}` running stage{} {} (group `{}`); SIGINT or SIGTERM stops it",
        plan.name,
        if stages.len() == 1 { "" } else { "s" },
        listed.join(","),
        plan.group
    );
    let failed = runtime.block_on(async {
        let stopped = async {
            while !stop.load(Ordering::SeqCst) {
                wake.notified().await;
            }
        };
        tokio::select! {
            () = stopped => None,
            error = running.failed() => Some(error),
        }
    });
    if let Some(error) = &failed {
        eprintln!("sluice process: {:#}; stopping", anyhow!(error.clone()));
    }
    let summary = runtime.block_on(running.shutdown());
    out!("{}", summary_line(&plan, &summary))?;
    match failed {
        Some(error) => Err(anyhow!(error).context(format!("task `{}` stopped", plan.name))),
        None => Ok(()),
    }
}

/// `.key` for a key inside a handler table, nothing for the table itself.
fn dotted(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(".{key}")
    }
}

/// A handler of records as a dead-letter handler: it receives the dead letter's record, whose
/// retry headers (`sluice.retry.*`, with the original topic, partition, offset, attempt and
/// error) tell where it came from and why it failed.
struct DeadLetterRecord(BoxHandler);

impl Handler<DeadLetter> for DeadLetterRecord {
    async fn handle(&self, dead_letter: &DeadLetter) -> Result<(), BoxError> {
        self.0.handle(&dead_letter.record).await
    }
}

/// The library task for `plan`: its pipeline runs `handler` on every record, or, when the
/// handler takes batches, on batches of one batcher.
fn retry_task(plan: &TaskPlan, handler: BoxHandler) -> RetryTask<()> {
    let mut pipeline = Pipeline::builder(()).order(plan.order);
    pipeline = match plan.handler.batch {
        None => pipeline.handler(handler),
        Some(batch) => {
            // As many batches in flight as records would be: the task's concurrency.
            let concurrency = plan.concurrency.unwrap_or_else(default_concurrency);
            let options = BatcherOptions::new()
                .size(batch.size)
                .timeout(batch.timeout)
                .concurrency(concurrency);
            pipeline.batched_handler(handler, options)
        }
    };
    if let Some(concurrency) = plan.concurrency {
        pipeline = pipeline.concurrency(concurrency);
    }
    if let Some(timeout) = plan.handler_timeout {
        pipeline = pipeline.handler_timeout(timeout);
    }
    let mut task = RetryTask::new(plan.consumer.clone(), plan.policy.clone(), pipeline)
        .producer_options(plan.producer.clone())
        .mode(if plan.in_place {
            RetryMode::InPlace
        } else {
            RetryMode::Topics
        });
    // The names `sluice dlq` reads are the names the task writes: name every topic.
    for topics in &plan.topics {
        if !plan.in_place {
            for retry in 1..=plan.retries() {
                task = task.retry_topic_named(topics.input(), retry, topics.retry(retry));
            }
        }
        task = task.dead_letter_named(topics.input(), topics.dead_letter());
    }
    task
}

/// The pipeline's default concurrency: twice the CPU cores, as Broadway's processors.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from) * 2
}

/// `sluice process billing: stage 0 processed 10 (3 failed), stage 1 processed 3 (0 failed),
/// stage 2 (dead letters) saw 0; retried 3, dead-lettered 0`
fn summary_line(plan: &TaskPlan, summary: &TaskSummary) -> String {
    let dead_letter_stage = plan.retries() + 1;
    let stages: Vec<String> = summary
        .stages
        .iter()
        .map(|(stage, PipelineSummary { stats, .. })| {
            if *stage == dead_letter_stage {
                format!("stage {stage} (dead letters) saw {}", stats.processed)
            } else {
                format!(
                    "stage {stage} processed {} ({} failed)",
                    stats.processed, stats.failed
                )
            }
        })
        .collect();
    let uncommitted: usize = summary
        .stages
        .iter()
        .flat_map(|(_, pipeline)| &pipeline.sources)
        .map(|source| source.uncommitted.len())
        .sum();
    let refused = if uncommitted > 0 {
        format!(
            "; the broker refused the final commit of {uncommitted} partition(s): their records \
             after the last commit will be processed again"
        )
    } else {
        String::new()
    };
    format!(
        "sluice process {}: {}; retried {}, dead-lettered {}{refused}",
        plan.name,
        stages.join(", "),
        summary.retried,
        summary.dead_lettered
    )
}
