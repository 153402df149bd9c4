//! Running the built `sluice-lab` binary in tests: runs with a deadline and what they left;
//! [`torture`] runs the campaigns and checks their reports.

#![allow(dead_code)] // Each test binary uses a different part.

pub mod torture;

use std::io::{Read as _, Write as _};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The longest one `sluice-lab` run may take before the test fails (it would otherwise hang).
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// The binary under test.
pub fn sluice_lab() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice-lab"));
    // The tests count stderr lines: no extra logging from the environment.
    command.env_remove("RUST_LOG");
    command
}

/// What a finished run left.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
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

    /// Asserts success, showing stderr if not.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "sluice-lab failed ({:?}): {}",
            self.status,
            self.stderr
        );
        self
    }

    /// Asserts this exit code and exactly one stderr line, `sluice-lab: ...` containing
    /// `needle`.
    pub fn assert_one_line_error(&self, code: i32, needle: &str) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "exit status; stderr: {}",
            self.stderr
        );
        let lines = self.stderr_lines();
        assert_eq!(lines.len(), 1, "one line on stderr, got: {:?}", self.stderr);
        assert!(lines[0].starts_with("sluice-lab: "), "{}", lines[0]);
        assert!(lines[0].contains(needle), "`{needle}` not in: {}", lines[0]);
    }
}

/// Runs `sluice-lab args...` with `stdin` as its input; fails the test past [`RUN_DEADLINE`].
pub fn run(args: &[&str], stdin: &[u8]) -> Run {
    run_with_deadline(args, stdin, RUN_DEADLINE)
}

/// Runs `sluice-lab args...` with `stdin` as its input; fails the test past `deadline`.
pub fn run_with_deadline(args: &[&str], stdin: &[u8], deadline: Duration) -> Run {
    let started = Instant::now();
    let mut child = sluice_lab()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice-lab starts");
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
                "`sluice-lab {}` still running after {deadline:?}; stderr: {}",
                args.join(" "),
                err_reader.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Run {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
        elapsed: started.elapsed(),
    }
}
