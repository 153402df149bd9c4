//! The built-in handlers of `sluice process`: what a task's `handler` table names.
//!
//! | handler | calls | module |
//! | --- | --- | --- |
//! | `exec` | a command per record or batch | [`exec`] |
//! | `exec` with `workers = N` | N long-lived processes speaking JSON lines | [`exec_pool`] |
//! | `http` | a POST per record or batch | [`http`] |
//! | any other `type` | a [`Handler`] registered with [`Sluice::handler`](crate::Sluice::handler) | [`registry`] |
//!
//! # Contract
//!
//! A call handles one record, or one batch when the handler has `batch = {...}`. It returns
//! `Ok` when the record (every record of the batch) was handled; an error fails the record
//! (every record of the batch), and the task retries it or, for a [`Permanent`] error, sends
//! it to the dead-letter topic at once. Calls run concurrently, as many as the task's
//! `concurrency` allows (for a worker pool, at most one per worker). A call may be dropped
//! when the task's `handler_timeout` passes: what it started is then stopped (a command is
//! killed, a request abandoned).
//!
//! [`Permanent`]: sluicegate::retry::Permanent

pub mod exec;
pub mod exec_pool;
pub mod http;
mod process_group;
pub mod record_json;
pub mod registry;
pub mod spec;

use sluicegate::pipeline::{BoxError, BoxHandler};
use sluicegate::Record;

use exec::{ExecHandler, Program};
use exec_pool::WorkerPool;
use http::HttpHandler;
use spec::{HandlerKind, HandlerSpec};

/// What a task calls on its records: a built-in handler, or one of your own registered with
/// [`Sluice::handler`](crate::Sluice::handler). It is the library's
/// [`Handler`](sluicegate::pipeline::Handler), with the same contract; with `batch = { size,
/// timeout }` in the task's `handler` table, the task calls
/// [`handle_batch`](sluicegate::pipeline::Handler::handle_batch).
///
/// ```
/// use sluicegate_cli::{BoxError, Handler, Record};
///
/// struct Print;
///
/// impl Handler for Print {
///     async fn handle(&self, record: &Record) -> Result<(), BoxError> {
///         println!("{:?}", record.value);
///         Ok(())
///     }
/// }
/// ```
pub use sluicegate::pipeline::Handler;

/// A running built-in handler, shared by every call of a task.
#[derive(Debug)]
pub enum Builtin {
    /// One command run per call.
    Exec(ExecHandler),
    /// Long-lived workers.
    Pool(WorkerPool),
    /// POSTs to a URL.
    Http(HttpHandler),
}

/// A handler that cannot start: the handler key at fault (`command[0]`, or empty for the
/// table as a whole) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    /// The key under the task's `handler`.
    pub key: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl Builtin {
    /// Builds the built-in handler `spec` describes: finds the program, sets up the HTTP
    /// client. Starts nothing yet (workers start when calls first need them).
    fn start(spec: &HandlerSpec) -> Result<Self, StartError> {
        match &spec.kind {
            HandlerKind::Exec(exec) => Program::find(&exec.command)
                .map_err(|problem| StartError {
                    key: "command[0]",
                    problem,
                })
                .map(|program| match exec.workers {
                    Some(workers) => Self::Pool(WorkerPool::new(program, workers, exec.timeout)),
                    None => Self::Exec(ExecHandler::new(program, exec.input, exec.timeout)),
                }),
            HandlerKind::Http(http) => {
                HttpHandler::new(http)
                    .map(Self::Http)
                    .map_err(|problem| StartError {
                        key: "url",
                        problem,
                    })
            }
            HandlerKind::Custom(custom) => Err(StartError {
                key: "type",
                problem: format!("`{}` is not a built-in handler", custom.name),
            }),
        }
    }
}

impl Handler for Builtin {
    async fn handle(&self, record: &Record) -> Result<(), BoxError> {
        match self {
            Self::Exec(handler) => handler.handle(record).await,
            Self::Pool(pool) => pool.handle(record).await,
            Self::Http(handler) => handler.handle(record).await,
        }
    }

    async fn handle_batch(&self, records: &[&Record]) -> Result<(), BoxError> {
        match self {
            Self::Exec(handler) => handler.handle_batch(records).await,
            Self::Pool(pool) => pool.handle_batch(records).await,
            Self::Http(handler) => handler.handle_batch(records).await,
        }
    }
}

/// Builds the handler `spec` describes: a built-in one, or a registered one from `registry`.
pub fn start(spec: &HandlerSpec, registry: &registry::Registry) -> Result<BoxHandler, StartError> {
    match &spec.kind {
        HandlerKind::Custom(custom) => registry
            .build(custom)
            .map_err(|problem| StartError { key: "", problem }),
        _ => Builtin::start(spec).map(BoxHandler::new),
    }
}
