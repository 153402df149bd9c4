//! Running a built binary of the workspace in a test: with its input, a deadline past which
//! the test fails instead of hanging, and what it left ([`Run`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use sluicegate_testing::process::{binary, run, RUN_DEADLINE};
//!
//! // In an integration test of the binary's crate: env!("CARGO_BIN_EXE_sluice").
//! let outcome = run(
//!     binary("target/debug/sluice").args(["config", "check", "sluice.toml"]),
//!     b"",
//!     RUN_DEADLINE,
//! );
//! outcome.assert_ok();
//! ```

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The longest one run may take before the test fails (it would otherwise hang), unless the
/// test says otherwise.
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// The binary at `path` (`env!("CARGO_BIN_EXE_<name>")`), without `RUST_LOG` from the
/// environment: tests count its stderr lines, so no extra logging.
pub fn binary(path: impl AsRef<Path>) -> Command {
    let mut command = Command::new(path.as_ref());
    command.env_remove("RUST_LOG");
    command
}

/// What a finished run left.
#[derive(Debug)]
pub struct Run {
    /// The program's name (the file name of its path), for messages: `sluice`.
    pub program: String,
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// From its start until it exited.
    pub elapsed: Duration,
}

impl Run {
    /// The stderr lines (non-empty ones).
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// Asserts success, showing stderr and stdout (a campaign's report, say) if not.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "{} failed ({:?}): {}\nstdout:\n{}",
            self.program,
            self.status,
            self.stderr,
            String::from_utf8_lossy(&self.stdout)
        );
        self
    }

    /// Asserts this exit code and exactly one stderr line, `PROGRAM: ...` containing `needle`.
    pub fn assert_one_line_error(&self, code: i32, needle: &str) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "exit status; stderr: {}",
            self.stderr
        );
        let lines = self.stderr_lines();
        assert_eq!(lines.len(), 1, "one line on stderr, got: {:?}", self.stderr);
        let prefix = format!("{}: ", self.program);
        assert!(lines[0].starts_with(&prefix), "{}", lines[0]);
        assert!(lines[0].contains(needle), "`{needle}` not in: {}", lines[0]);
    }
}

/// Runs `command` (stdin, stdout and stderr piped) with `stdin` as its input and waits for it
/// to exit; kills it and fails the test past `deadline`.
pub fn run(command: &mut Command, stdin: &[u8], deadline: Duration) -> Run {
    let program = Path::new(command.get_program())
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let args: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{program} does not start: {error}"));
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    // A command that exits early closes the pipe: that write error is fine.
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{program} {}` still running after {deadline:?}; stderr: {}",
                args.join(" "),
                err_reader.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Run {
        program,
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
        elapsed: started.elapsed(),
    }
}
