//! The `exec` handler with `workers = N`: long-lived worker processes that speak
//! line-delimited JSON, for commands too slow to start once per record.
//!
//! # Protocol
//!
//! `sluice` starts up to N copies of the command, each when a call first needs it. A call
//! takes a free worker, writes one line to its standard input, and reads one line from its
//! standard output:
//!
//! - the request: the record as a JSON object (see [`record_json`](super::record_json)),
//!   or, for a batch, a JSON array of such objects;
//! - the reply: `{"ok": true}` for success, or `{"ok": false, "error": "why"}` for a
//!   failure, retried unless the reply says `"retriable": false` (then the record goes
//!   straight to the dead-letter topic). Other fields are ignored.
//!
//! A worker handles one call at a time, so calls run N at once at most. What a worker
//! writes to standard error goes to `sluice`'s standard error. When `sluice` stops, each
//! worker's standard input closes and its process group gets SIGTERM: a worker should exit
//! then.
//!
//! # Faults
//!
//! A worker that exits, replies with anything but such a line, or does not reply within the
//! handler's `timeout` (or the task's `handler_timeout`) is killed with its process group;
//! the call fails with the reason (a failure to retry), and a new worker takes the place on
//! a later call.

use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use sluicegate::pipeline::BoxError;
use sluicegate::retry::Permanent;
use sluicegate::Record;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;

use super::exec::Program;
use super::process_group::ProcessGroup;
use super::record_json::{json_array_line, json_line};
use crate::console::show_duration;

/// The longest reply line read; a longer one is garbage.
const MAX_REPLY_BYTES: u64 = 1 << 20;
/// How much of a garbage reply a failure quotes.
const QUOTED_BYTES: usize = 200;

/// Up to N long-lived workers running a command.
#[derive(Debug)]
pub struct WorkerPool {
    program: Program,
    timeout: Option<Duration>,
    /// One permit per worker: a call holds one while it uses a worker.
    free: Semaphore,
    /// Workers started and not in use (fewer than N until calls needed them all).
    idle: Mutex<Vec<Worker>>,
}

impl WorkerPool {
    /// A pool of up to `workers` copies of `program`, each call limited to `timeout`.
    pub fn new(program: Program, workers: usize, timeout: Option<Duration>) -> Self {
        Self {
            program,
            timeout,
            free: Semaphore::new(workers),
            idle: Mutex::new(Vec::with_capacity(workers)),
        }
    }

    /// Handles one record: its JSON object on one line.
    pub async fn handle(&self, record: &Record) -> Result<(), BoxError> {
        self.call(&json_line(record)).await
    }

    /// Handles a batch: a JSON array of its records on one line; the reply is every
    /// record's outcome.
    pub async fn handle_batch(&self, records: &[&Record]) -> Result<(), BoxError> {
        self.call(&json_array_line(records)).await
    }

    async fn call(&self, request: &[u8]) -> Result<(), BoxError> {
        let _permit = self
            .free
            .acquire()
            .await
            .map_err(|_| "the worker pool is closed")?;
        let idle = self.idle_workers().pop();
        let mut worker = match idle {
            Some(worker) => worker,
            None => Worker::start(&self.program).map_err(|error| {
                format!(
                    "could not start a worker ({}): {error}",
                    self.program.display()
                )
            })?,
        };
        let exchange = worker.exchange(request);
        let outcome = match self.timeout {
            None => exchange.await,
            Some(timeout) => tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(format!("did not reply within {}", show_duration(timeout)))
                }),
        };
        match outcome {
            Ok(reply) => {
                self.idle_workers().push(worker);
                reply.into_result()
            }
            // Dropping the worker kills it; a later call starts a new one.
            Err(fault) => Err(format!("worker {fault}; it was killed and will be replaced").into()),
        }
    }

    fn idle_workers(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for WorkerPool {
    /// Lets the idle workers go gracefully (busy ones are killed with their calls).
    fn drop(&mut self) {
        for worker in self.idle_workers().drain(..) {
            worker.retire();
        }
    }
}

/// One worker process; dropping it kills its process group.
#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    group: ProcessGroup,
}

impl Worker {
    fn start(program: &Program) -> std::io::Result<Self> {
        let mut command = program.command();
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let (mut child, group) = ProcessGroup::spawn(&mut command)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("no pipes to the worker"));
        };
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            group,
        })
    }

    /// Ends the worker gracefully: end of input, and SIGTERM to its process group.
    fn retire(self) {
        let Self { stdin, group, .. } = self;
        drop(stdin);
        group.terminate();
    }

    /// Writes `request` (a line) and reads the reply line; an error describes what the
    /// worker did wrong.
    async fn exchange(&mut self, request: &[u8]) -> Result<Reply, String> {
        if let Err(error) = self.stdin.write_all(request).await {
            return Err(format!(
                "did not take the request ({error}){}",
                self.exit().await
            ));
        }
        let _ = self.stdin.flush().await;
        let mut line = Vec::new();
        let read = (&mut self.stdout)
            .take(MAX_REPLY_BYTES)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|error| format!("could not be read from: {error}"))?;
        if read == 0 {
            return Err(format!("closed its standard output{}", self.exit().await));
        }
        serde_json::from_slice::<Reply>(&line).map_err(|_| {
            let quoted = String::from_utf8_lossy(&line[..line.len().min(QUOTED_BYTES)]);
            format!(
                "replied {:?}, not {{\"ok\": true}} or {{\"ok\": false, \"error\": \"...\"}}",
                quoted.trim_end()
            )
        })
    }

    /// ` (exit status 3)` when the worker exited (waiting briefly for it), else nothing.
    async fn exit(&mut self) -> String {
        match tokio::time::timeout(Duration::from_millis(200), self.child.wait()).await {
            Ok(Ok(status)) => format!(" ({status})"),
            _ => String::new(),
        }
    }
}

/// A worker's reply line.
#[derive(Debug, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default = "retriable_by_default")]
    retriable: bool,
}

fn retriable_by_default() -> bool {
    true
}

impl Reply {
    fn into_result(self) -> Result<(), BoxError> {
        if self.ok {
            return Ok(());
        }
        let reason = self
            .error
            .unwrap_or_else(|| "the worker replied ok: false without an error".to_owned());
        if self.retriable {
            Err(reason.into())
        } else {
            Err(Permanent::new(reason).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn record(value: &str) -> Record {
        Record {
            topic: "orders".into(),
            partition: 0,
            offset: 1,
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    /// A worker in sh: replies by the value's prefix, and says its pid in the error.
    const WORKER: &str = r#"
while IFS= read -r line; do
  case "$line" in
    *'"value":"ok'*) echo '{"ok":true}' ;;
    *'"value":"bad'*) echo '{"ok":false,"error":"bad record","retriable":false}' ;;
    *'"value":"fail'*) echo "{\"ok\":false,\"error\":\"failed in $$\"}" ;;
    *'"value":"garbage'*) echo 'hello' ;;
    *'"value":"exit'*) exit 3 ;;
    *'"value":"hang'*) sleep 30 ;;
    '['*) echo '{"ok":true}' ;;
  esac
done
"#;

    fn pool(workers: usize, timeout: Option<Duration>) -> WorkerPool {
        let program = Program::find(&["sh".into(), "-c".into(), WORKER.into()]).unwrap();
        WorkerPool::new(program, workers, timeout)
    }

    /// The pid a worker says in its failure.
    async fn worker_pid(pool: &WorkerPool) -> String {
        let error = pool.handle(&record("fail")).await.unwrap_err().to_string();
        error.strip_prefix("failed in ").unwrap().to_owned()
    }

    #[tokio::test]
    async fn replies_decide_the_outcome_and_workers_live_on() {
        let pool = pool(1, None);
        pool.handle(&record("ok")).await.unwrap();
        let first = worker_pid(&pool).await;
        let error = pool.handle(&record("bad")).await.unwrap_err();
        assert!(error.is::<Permanent>(), "{error:?}");
        assert_eq!(error.to_string(), "bad record");
        let (a, b) = (record("a"), record("b"));
        pool.handle_batch(&[&a, &b]).await.unwrap();
        assert_eq!(worker_pid(&pool).await, first, "one long-lived worker");
    }

    #[tokio::test]
    async fn a_worker_that_misbehaves_is_replaced() {
        let pool = pool(1, Some(Duration::from_millis(300)));
        let first = worker_pid(&pool).await;

        let error = pool.handle(&record("garbage")).await.unwrap_err();
        assert!(!error.is::<Permanent>());
        assert_eq!(
            error.to_string(),
            "worker replied \"hello\", not {\"ok\": true} or {\"ok\": false, \"error\": \"...\"}; \
             it was killed and will be replaced"
        );
        let second = worker_pid(&pool).await;
        assert_ne!(first, second);

        let error = pool.handle(&record("exit")).await.unwrap_err().to_string();
        assert_eq!(
            error,
            "worker closed its standard output (exit status: 3); it was killed and will be replaced"
        );
        let third = worker_pid(&pool).await;
        assert_ne!(second, third);

        let error = pool.handle(&record("hang")).await.unwrap_err().to_string();
        assert_eq!(
            error,
            "worker did not reply within 300 ms; it was killed and will be replaced"
        );
        assert_ne!(worker_pid(&pool).await, third);
        pool.handle(&record("ok")).await.unwrap();
    }

    #[tokio::test]
    async fn dropping_the_pool_ends_its_workers() {
        let pool = pool(1, None);
        let pid = worker_pid(&pool).await;
        drop(pool);
        for _ in 0..100 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
            // Gone, or dead and not yet reaped (state Z).
            if stat.map_or(true, |stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("worker {pid} still runs after the pool was dropped");
    }

    #[tokio::test]
    async fn calls_share_n_workers() {
        let pool = Arc::new(pool(2, None));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { worker_pid(&pool).await })
            })
            .collect();
        let mut pids = std::collections::BTreeSet::new();
        for call in calls {
            pids.insert(call.await.unwrap());
        }
        assert!((1..=2).contains(&pids.len()), "at most 2 workers: {pids:?}");
    }
}
