//! The `exec` handler: one run of a command per record, or per batch.
//!
//! # Input
//!
//! With `input = "raw"` (the default for single records) the command reads the record's
//! value on standard input; with `input = "json"` it reads the record as one JSON line (see
//! [`record_json`](super::record_json)). A batch is always JSON lines, one record per line.
//! For a single record the command also gets these environment variables:
//!
//! | variable | value |
//! | --- | --- |
//! | `SLUICE_TOPIC`, `SLUICE_PARTITION`, `SLUICE_OFFSET` | where the record was first read: the input topic, also in a retry stage |
//! | `SLUICE_KEY` | the key, when it is UTF-8 (absent otherwise) |
//! | `SLUICE_ATTEMPT` | 1 on the first handling, `k + 1` in retry `k` |
//! | `SLUICE_ERROR` | on a retry or a dead letter: why the previous handling failed |
//!
//! For a batch it gets `SLUICE_BATCH_SIZE`, the number of lines.
//!
//! # Outcome
//!
//! Exit status 0 is success. Exit status 65 (`EX_DATAERR`) says the record itself is bad: it
//! goes straight to the dead-letter topic (for a batch: every record of it). Any other
//! status, or death by a signal, is a failure worth retrying. The failure's reason is the
//! exit status and the end of what the command wrote to standard error; what it writes to
//! standard output goes to `sluice`'s standard error, as logs do.
//!
//! # Cancel safety
//!
//! The command runs in a process group of its own. When the call's `timeout` passes, or the
//! task's `handler_timeout` drops the call, the whole group is killed: the command and
//! whatever it started.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use sluicegate::pipeline::BoxError;
use sluicegate::retry::Permanent;
use sluicegate::Record;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

use super::process_group::{stdout_to_stderr, ProcessGroup};
use super::record_json::{json_line, json_lines, text_key, Origin};
use super::spec::Encoding;
use crate::console::show_duration;

/// The exit status that marks a record as bad for good (`EX_DATAERR` of sysexits.h).
pub const EXIT_PERMANENT: i32 = 65;
/// How much of the command's standard error a failure keeps: its end.
const REASON_BYTES: usize = 4096;

/// A program found on disk, and its arguments.
#[derive(Debug, Clone)]
pub struct Program {
    path: PathBuf,
    args: Vec<String>,
}

impl Program {
    /// `command` (program, then arguments). The program must exist: a name without `/` is
    /// looked up in `PATH` now.
    pub fn find(command: &[String]) -> Result<Self, String> {
        let (program, args) = command
            .split_first()
            .ok_or("the command is empty: name a program")?;
        Ok(Self {
            path: find_program(program)?,
            args: args.to_vec(),
        })
    }

    /// A command running the program with its arguments.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        command.args(&self.args);
        command
    }

    /// The program's path, for messages.
    pub fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }
}

/// Runs a command per record or per batch.
#[derive(Debug, Clone)]
pub struct ExecHandler {
    program: Program,
    input: Encoding,
    timeout: Option<Duration>,
}

impl ExecHandler {
    /// A handler running `program`, giving single records in `input` form, killing a run
    /// after `timeout`.
    pub fn new(program: Program, input: Encoding, timeout: Option<Duration>) -> Self {
        Self {
            program,
            input,
            timeout,
        }
    }

    /// Handles one record: `Ok` when the command exits 0, a [`Permanent`] error for exit
    /// status 65, any other error to retry.
    pub async fn handle(&self, record: &Record) -> Result<(), BoxError> {
        let input = match self.input {
            Encoding::Raw => record.value.clone().unwrap_or_default(),
            Encoding::Json => json_line(record),
        };
        self.run(input, environment(record)).await
    }

    /// Handles a batch: one run with the records as JSON lines on standard input; the
    /// outcome is every record's.
    pub async fn handle_batch(&self, records: &[&Record]) -> Result<(), BoxError> {
        let variables = vec![("SLUICE_BATCH_SIZE", records.len().to_string())];
        self.run(json_lines(records), variables).await
    }

    async fn run(
        &self,
        input: Vec<u8>,
        variables: Vec<(&'static str, String)>,
    ) -> Result<(), BoxError> {
        let mut command = self.program.command();
        command
            .envs(variables)
            .stdin(Stdio::piped())
            .stdout(stdout_to_stderr())
            .stderr(Stdio::piped());
        let (mut child, group) = ProcessGroup::spawn(&mut command)
            .map_err(|error| format!("could not start {}: {error}", self.program.display()))?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let mut tail = Vec::new();
        let write = async {
            if let Some(mut stdin) = stdin {
                // A command that does not read its input closes the pipe early: not a failure.
                let _ = stdin.write_all(&input).await;
            }
        };
        let run = async {
            let ((), (), status) = tokio::join!(write, read_tail(stderr, &mut tail), child.wait());
            status
        };
        let status = match self.timeout {
            None => run.await,
            Some(timeout) => match tokio::time::timeout(timeout, run).await {
                Ok(status) => status,
                Err(_) => {
                    drop(group);
                    let how = format!(
                        "timed out after {} (killed with its process group)",
                        show_duration(timeout)
                    );
                    return Err(with_stderr(how, &tail).into());
                }
            },
        };
        group.finished();
        let status = status.map_err(|error| format!("could not wait for the command: {error}"))?;
        if status.success() {
            return Ok(());
        }
        let reason = with_stderr(describe(status), &tail);
        if status.code() == Some(EXIT_PERMANENT) {
            Err(Permanent::new(reason).into())
        } else {
            Err(reason.into())
        }
    }
}

/// `program` if it names a file, else the first match in `PATH`.
fn find_program(program: &str) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = Path::new(program);
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(format!("`{program}` is not a file"))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|directory| directory.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("`{program}` is not a program in PATH"))
}

/// The `SLUICE_*` variables for `record`.
fn environment(record: &Record) -> Vec<(&'static str, String)> {
    let origin = Origin::of(record);
    let mut variables = vec![
        ("SLUICE_TOPIC", origin.topic),
        ("SLUICE_PARTITION", origin.partition.to_string()),
        ("SLUICE_OFFSET", origin.offset.to_string()),
        ("SLUICE_ATTEMPT", origin.attempt.to_string()),
    ];
    if let Some(key) = text_key(record) {
        variables.push(("SLUICE_KEY", key.to_owned()));
    }
    // An environment variable cannot hold NUL.
    if let Some(error) = origin.error.filter(|error| !error.contains('\0')) {
        variables.push(("SLUICE_ERROR", error));
    }
    variables
}

/// Reads `stream` to its end into `kept`, keeping the last [`REASON_BYTES`]; what was read
/// stays in `kept` when the read is cancelled.
async fn read_tail(stream: Option<impl AsyncRead + Unpin>, kept: &mut Vec<u8>) {
    let Some(mut stream) = stream else {
        return;
    };
    let mut chunk = [0u8; 8192];
    while let Ok(read) = stream.read(&mut chunk).await {
        if read == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..read]);
        if kept.len() > 2 * REASON_BYTES {
            kept.drain(..kept.len() - REASON_BYTES);
        }
    }
}

/// `exit status 3`, or `killed by signal 9`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// `how`, then `: ` and the end of what the command wrote to standard error, if anything.
fn with_stderr(how: String, stderr: &[u8]) -> String {
    let end = &stderr[stderr.len().saturating_sub(REASON_BYTES)..];
    let said = String::from_utf8_lossy(end);
    let said = said.trim();
    if said.is_empty() {
        how
    } else {
        format!("{how}: {said}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &str, key: Option<&[u8]>) -> Record {
        Record {
            topic: "orders".into(),
            partition: 2,
            offset: 40,
            key: key.map(<[u8]>::to_vec),
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    fn program(script: &str) -> Program {
        Program::find(&["sh".into(), "-c".into(), script.into()]).unwrap()
    }

    fn sh(script: &str) -> ExecHandler {
        ExecHandler::new(program(script), Encoding::Raw, None)
    }

    /// Whether process `pid` is gone (or dead and not yet reaped).
    fn gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
            Err(_) => true,
            Ok(text) => text
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    async fn wait_gone(pid: &str) {
        for _ in 0..100 {
            if gone(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("process {pid} still runs");
    }

    #[tokio::test]
    async fn the_command_sees_the_value_and_the_record() {
        let handler = sh(
            r#"read v; test "$v|$SLUICE_TOPIC|$SLUICE_PARTITION|$SLUICE_OFFSET|$SLUICE_KEY|$SLUICE_ATTEMPT" = "hi|orders|2|40|k|1""#,
        );
        handler.handle(&record("hi", Some(b"k"))).await.unwrap();
        let no_key = sh(r#"test -z "${SLUICE_KEY+set}""#);
        no_key.handle(&record("hi", Some(b"\xff"))).await.unwrap();
        no_key.handle(&record("hi", None)).await.unwrap();
    }

    #[tokio::test]
    async fn json_input_is_one_line_and_a_batch_is_json_lines() {
        let json = ExecHandler::new(
            program(
                r#"read line; case "$line" in '{"topic":"orders",'*'"value":"hi"'*) exit 0;; esac; exit 1"#,
            ),
            Encoding::Json,
            None,
        );
        json.handle(&record("hi", None)).await.unwrap();
        let (a, b) = (record("a", None), record("b", None));
        let batch = sh(r#"test "$(wc -l)" = 2 && test "$SLUICE_BATCH_SIZE" = 2"#);
        batch.handle_batch(&[&a, &b]).await.unwrap();
        let error = sh("echo 'bad batch' >&2; exit 65")
            .handle_batch(&[&a, &b])
            .await
            .unwrap_err();
        assert!(error.is::<Permanent>(), "{error:?}");
    }

    #[tokio::test]
    async fn failures_carry_the_status_and_stderr_and_65_is_permanent() {
        let error = sh("echo 'card declined' >&2; exit 3")
            .handle(&record("x", None))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "exit status 3: card declined");
        assert!(!error.is::<Permanent>());

        let error = sh("echo 'not JSON' >&2; exit 65")
            .handle(&record("x", None))
            .await
            .unwrap_err();
        assert!(error.is::<Permanent>(), "{error:?}");
        assert!(
            error.to_string().contains("exit status 65: not JSON"),
            "{error}"
        );

        let error = sh("kill -9 $$")
            .handle(&record("x", None))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "killed by signal 9");
    }

    #[tokio::test]
    async fn a_long_stderr_keeps_its_end_and_a_big_value_does_not_block() {
        let value = "v".repeat(1 << 20);
        let error = sh("head -c 100000 /dev/zero | tr '\\0' a >&2; echo END >&2; exit 1")
            .handle(&record(&value, None))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.ends_with("aaaaEND"), "{}", &error[error.len() - 20..]);
        assert!(error.len() <= REASON_BYTES + 20, "{}", error.len());
    }

    #[tokio::test]
    async fn the_timeout_kills_the_command_and_its_children_and_keeps_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 30 & echo $! > '{pids}'; echo $$ >> '{pids}'; echo 'working on it' >&2; wait",
            pids = pids.display()
        );
        let handler = ExecHandler::new(
            program(&script),
            Encoding::Raw,
            Some(Duration::from_millis(300)),
        );
        let error = handler
            .handle(&record("x", None))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "timed out after 300 ms (killed with its process group): working on it"
        );
        for pid in std::fs::read_to_string(&pids).unwrap().lines() {
            wait_gone(pid).await;
        }
    }

    #[tokio::test]
    async fn a_dropped_call_kills_the_command_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let handler = sh(&format!(
            "sleep 30 & echo $! > '{pids}'; echo $$ >> '{pids}'; wait",
            pids = pids.display()
        ));
        let record = record("x", None);
        let timed_out =
            tokio::time::timeout(Duration::from_millis(500), handler.handle(&record)).await;
        assert!(timed_out.is_err(), "still running at the timeout");
        for pid in std::fs::read_to_string(&pids).unwrap().lines() {
            wait_gone(pid).await;
        }
    }

    #[test]
    fn a_missing_program_is_found_out_at_once() {
        assert!(Program::find(&["sh".into()]).is_ok());
        assert_eq!(
            Program::find(&["no-such-program-here".into()]).unwrap_err(),
            "`no-such-program-here` is not a program in PATH"
        );
        assert!(Program::find(&["./nope".into()]).is_err());
        assert!(Program::find(&[]).is_err());
    }
}
