//! The built-in `exec` handler: one run of a command per record.
//!
//! The command gets the record's value on standard input and these environment variables:
//!
//! | variable | value |
//! | --- | --- |
//! | `SLUICE_TOPIC`, `SLUICE_PARTITION`, `SLUICE_OFFSET` | where the record was first read: the input topic, also in a retry stage |
//! | `SLUICE_KEY` | the key, when it is UTF-8 (absent otherwise) |
//! | `SLUICE_ATTEMPT` | 1 on the first handling, `k + 1` in retry `k` |
//!
//! Exit status 0 is success. Exit status 65 (`EX_DATAERR`) says the record itself is bad: it
//! goes straight to the dead-letter topic. Any other status, or death by a signal, is a
//! failure worth retrying. The failure's reason is the exit status and the end of what the
//! command wrote to standard error; what it writes to standard output goes to `sluice`'s
//! standard error, as logs do.
//!
//! A handler timeout kills the command (the process itself, not processes it started).

use std::os::fd::AsFd as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use sluicegate::pipeline::BoxError;
use sluicegate::retry::{attempt, Permanent, RetryHeaders};
use sluicegate::Record;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

/// The exit status that marks a record as bad for good (`EX_DATAERR` of sysexits.h).
pub const EXIT_PERMANENT: i32 = 65;
/// How much of the command's standard error a failure keeps: its end.
const REASON_BYTES: usize = 4096;

/// Runs a command per record.
#[derive(Debug, Clone)]
pub struct ExecHandler {
    program: PathBuf,
    args: Vec<String>,
}

impl ExecHandler {
    /// A handler running `command` (program, then arguments). The program must exist: a
    /// name without `/` is looked up in `PATH` now.
    pub fn new(command: &[String]) -> Result<Self, String> {
        let (program, args) = command
            .split_first()
            .ok_or("the command is empty: name a program")?;
        Ok(Self {
            program: find_program(program)?,
            args: args.to_vec(),
        })
    }

    /// Handles one record: `Ok` when the command exits 0, a [`Permanent`] error for exit
    /// status 65, any other error to retry.
    pub async fn handle(&self, record: &Record) -> Result<(), BoxError> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .envs(environment(record))
            .stdin(Stdio::piped())
            .stdout(stdout_to_stderr())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("could not start {}: {error}", self.program.display()))?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let value = record.value.as_deref().unwrap_or_default();
        let write = async {
            if let Some(mut stdin) = stdin {
                // A command that does not read its input closes the pipe early: not a failure.
                let _ = stdin.write_all(value).await;
            }
        };
        let ((), tail, status) = tokio::join!(write, read_tail(stderr), child.wait());
        let status = status.map_err(|error| format!("could not wait for the command: {error}"))?;
        if status.success() {
            return Ok(());
        }
        let reason = failure_reason(status, &tail);
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
    let (topic, partition, offset) = match RetryHeaders::from_headers(&record.headers) {
        Ok(Some(history)) => (
            history.original_topic,
            history.original_partition,
            history.original_offset,
        ),
        _ => (record.topic.to_string(), record.partition, record.offset),
    };
    let mut variables = vec![
        ("SLUICE_TOPIC", topic),
        ("SLUICE_PARTITION", partition.to_string()),
        ("SLUICE_OFFSET", offset.to_string()),
        ("SLUICE_ATTEMPT", attempt(record).to_string()),
    ];
    let text_key = record
        .key
        .as_deref()
        .and_then(|key| std::str::from_utf8(key).ok())
        .filter(|key| !key.contains('\0'));
    if let Some(key) = text_key {
        variables.push(("SLUICE_KEY", key.to_owned()));
    }
    variables
}

/// The command's standard output goes where `sluice` logs: standard error.
fn stdout_to_stderr() -> Stdio {
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(stderr) => Stdio::from(stderr),
        Err(_) => Stdio::null(),
    }
}

/// Reads `stream` to its end, keeping the last [`REASON_BYTES`].
async fn read_tail(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut stream) = stream else {
        return kept;
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
    if kept.len() > REASON_BYTES {
        kept.drain(..kept.len() - REASON_BYTES);
    }
    kept
}

/// `exit status 3: <the end of stderr>`, or `killed by signal 9`.
fn failure_reason(status: ExitStatus, stderr: &[u8]) -> String {
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    };
    let said = String::from_utf8_lossy(stderr);
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

    fn sh(script: &str) -> ExecHandler {
        ExecHandler::new(&["sh".into(), "-c".into(), script.into()]).unwrap()
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
    async fn a_timed_out_handling_kills_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let handler = sh(&format!(
            "echo $$ > '{}'; exec sleep 30",
            pid_file.display()
        ));
        let record = record("x", None);
        let handling = handler.handle(&record);
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(500), handling).await;
        assert!(timed_out.is_err(), "still running at the timeout");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        for _ in 0..100 {
            // Gone, or dead and not yet reaped (state Z).
            match std::fs::read_to_string(&stat) {
                Err(_) => return,
                Ok(text)
                    if text
                        .rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) =>
                {
                    return
                }
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
        panic!("the command still runs after its handling was dropped");
    }

    #[test]
    fn a_missing_program_is_found_out_at_once() {
        assert!(ExecHandler::new(&["sh".into()]).is_ok());
        assert_eq!(
            ExecHandler::new(&["no-such-program-here".into()]).unwrap_err(),
            "`no-such-program-here` is not a program in PATH"
        );
        assert!(ExecHandler::new(&["./nope".into()]).is_err());
        assert!(ExecHandler::new(&[]).is_err());
    }
}
