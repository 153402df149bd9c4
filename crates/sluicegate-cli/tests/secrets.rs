//! Secrets of a configuration (a SASL password from a file and from an environment override,
//! an HTTP header from the environment) never appear in what `sluice` writes: not in
//! `config check` or `config show`, not in `--help`, not in problems, and not in the debug
//! logs of a `sluice process` run that tries to authenticate with them.

mod common;

use std::fs;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use common::sluice;
use common::task::TaskFixture;

const FILE_PASSWORD: &str = "pw-from-file-4f1c9e";
const OVERRIDE_PASSWORD: &str = "pw-from-override-7d2a31";
const HEADER_TOKEN: &str = "token-from-env-b83e02";
const SECRETS: [&str; 3] = [FILE_PASSWORD, OVERRIDE_PASSWORD, HEADER_TOKEN];

/// The environment of every run: the header's token, and the override of the password.
const ENVIRONMENT: [(&str, &str); 2] = [
    ("SLUICE_TEST_HEADER_TOKEN", HEADER_TOKEN),
    (
        "SLUICE__CLUSTERS__MAIN__SECURITY__PASSWORD",
        OVERRIDE_PASSWORD,
    ),
];

fn command(args: &[&str]) -> Command {
    let mut command = sluice();
    command.args(args).envs(ENVIRONMENT);
    command
}

/// Everything a run wrote, both streams.
fn written(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_no_secret(what: &str, written: &str) {
    for secret in SECRETS {
        assert!(
            !written.contains(secret),
            "{what} shows a secret:\n{written}"
        );
    }
}

#[test]
fn secrets_never_appear_in_output_help_problems_or_logs() {
    let task = TaskFixture::new("secrets", 1, "");
    let dir = task.config.parent().unwrap().to_path_buf();
    let password_file = dir.join("password");
    fs::write(&password_file, format!("{FILE_PASSWORD}\n")).unwrap();
    // SASL against a broker that does not speak it: the client tries, and fails, to log in.
    fs::write(
        &task.config,
        format!(
            r#"[clusters.main]
bootstrap_servers = "{bootstrap}"
security = {{ protocol = "sasl_plaintext", sasl_mechanism = "SCRAM-SHA-256", username = "billing", password = {{ file = "{password}" }} }}
# librdkafka's own debug logs of security and the connections: where a password could show.
librdkafka = {{ debug = "security,broker,protocol" }}

[tasks.{name}]
topics = ["{topic}"]
session_timeout = "6s"
max_poll_interval = "10s"
handler = {{ type = "http", url = "http://127.0.0.1:1/in", headers = {{ Authorization = {{ env = "SLUICE_TEST_HEADER_TOKEN" }} }} }}
"#,
            bootstrap = task.bootstrap,
            password = password_file.display(),
            name = task.name,
            topic = task.topic,
        ),
    )
    .unwrap();
    let config = task.config.display().to_string();

    let check = command(&["config", "check", &config]).output().unwrap();
    assert!(check.status.success(), "{}", written(&check));
    assert_no_secret("config check", &written(&check));

    let show = command(&["config", "show", &config]).output().unwrap();
    assert!(show.status.success(), "{}", written(&show));
    let shown = written(&show);
    assert_no_secret("config show", &shown);
    assert!(shown.contains("password = \"***\""), "{shown}");
    assert!(
        shown.contains("env = \"SLUICE_TEST_HEADER_TOKEN\""),
        "{shown}"
    );

    for help in [
        &["process", "--help"][..],
        &["config", "check", "--help"],
        &["dlq", "replay", "--help"],
        &["--help"],
    ] {
        let output = command(help).output().unwrap();
        assert!(output.status.success(), "{help:?}: {}", written(&output));
        assert_no_secret(&format!("{help:?}"), &written(&output));
    }

    // A secret that ends up where a problem quotes values is hidden there too.
    let misplaced = command(&[
        "config",
        "check",
        &config,
        "--set",
        &format!("tasks.{}.concurrency={OVERRIDE_PASSWORD}", task.name),
    ])
    .output()
    .unwrap();
    assert_eq!(misplaced.status.code(), Some(2), "{}", written(&misplaced));
    assert_no_secret("a problem", &written(&misplaced));
    assert!(
        written(&misplaced).contains("***"),
        "{}",
        written(&misplaced)
    );

    // Runs with every debug log line, librdkafka's included: the clients try to authenticate
    // with the password, and fail. `process` may fail at once or keep trying: it is stopped
    // after a few seconds; `dlq inspect` gives up after its connect timeout.
    let mut logged = String::new();
    for (args, stop_after) in [
        (
            ["process", "-c", &config, &task.name].to_vec(),
            Some(Duration::from_secs(4)),
        ),
        (["dlq", "inspect", "-c", &config, &task.name].to_vec(), None),
    ] {
        let log = dir.join("run.stderr");
        let mut child = command(&args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        if let Some(after) = stop_after {
            thread::sleep(after);
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for _ in 0..600 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        logged.push_str(&String::from_utf8_lossy(&output.stdout));
        logged.push_str(&fs::read_to_string(&log).unwrap());
    }
    assert!(
        logged.lines().filter(|line| line.contains("DEBUG")).count() > 10,
        "the runs logged little:\n{logged}"
    );
    assert!(
        logged.contains("SASL"),
        "the runs did not try SASL:\n{logged}"
    );
    assert_no_secret("the debug logs", &logged);
}
