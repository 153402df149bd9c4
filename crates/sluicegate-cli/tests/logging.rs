//! Log lines on stderr: JSON objects with `--log-format json`, plain text without escape codes
//! when stderr is not a terminal. The logging run is `sluice produce` against a closed port
//! with `RUST_LOG=debug`: librdkafka's complaints about the refused connections are logged at
//! debug level, and the run ends within its one-second connect timeout.

mod common;

use std::fs::File;
use std::process::Stdio;

use common::{closed_port, sluice};
use serde_json::Value;

/// Runs the logging `sluice produce` with these extra global flags, stderr into a file;
/// returns the exit code and stderr.
fn failing_produce(global: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stderr_path = dir.path().join("stderr");
    let brokers = format!("127.0.0.1:{}", closed_port());
    let status = sluice()
        .env("RUST_LOG", "debug")
        .args(global)
        .args([
            "produce",
            "--topic",
            "logged",
            "-b",
            &brokers,
            "--connect-timeout",
            "1s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).expect("stderr file"))
        .status()
        .expect("sluice runs");
    let stderr = std::fs::read_to_string(&stderr_path).expect("stderr is UTF-8");
    (status.code(), stderr)
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (code, stderr) = failing_produce(&["--log-format", "json"]);
    assert_eq!(code, Some(1), "{stderr}");
    let mut logged = 0;
    for line in stderr.lines().filter(|line| !line.is_empty()) {
        if line.starts_with("sluice: ") {
            // The error that ends the run is not a log line.
            continue;
        }
        let object: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"));
        for field in ["timestamp", "level", "target", "fields"] {
            assert!(object.get(field).is_some(), "no `{field}` in {line}");
        }
        logged += 1;
    }
    assert!(logged > 0, "RUST_LOG=debug logged nothing: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("sluice: could not reach the brokers"),
        "{last}"
    );
}

#[test]
fn text_logs_into_a_file_have_no_escape_codes() {
    for global in [&[][..], &["--log-format", "text"][..]] {
        let (code, stderr) = failing_produce(global);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(" DEBUG "), "debug lines expected: {stderr}");
        assert!(
            !stderr.contains('\x1b'),
            "escape codes in a file: {stderr:?}"
        );
    }
}

#[test]
fn an_unknown_log_format_is_a_usage_error() {
    let output = sluice()
        .args(["--log-format", "xml", "status", "--group", "g"])
        .output()
        .expect("sluice runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("sluice: invalid value 'xml' for '--log-format"),
        "{stderr}"
    );
}
