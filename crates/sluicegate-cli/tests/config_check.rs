//! `sluice config check` and `sluice config show`: every problem of a file listed at once,
//! each with its key path (exit status 2); a good file summarised (exit status 0); and the
//! merge order file, then `SLUICE__*` environment variables, then `--set` flags.

mod common;

use std::path::Path;
use std::process::Output;

use common::sluice;

/// Runs `sluice ARGS` with these environment variables (and no other `SLUICE__*` ones).
fn run(args: &[&str], environment: &[(&str, &str)]) -> Output {
    let mut command = sluice();
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SLUICE__") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .envs(environment.iter().copied())
        .output()
        .expect("sluice runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file with a problem of every kind, the lines numbered as the problems say.
const BAD: &str = r#"[clusters.main]
bootstrap_servers = "127.0.0.1:9092"
security = { protocol = "sasl_plaintext", sasl_mechanism = "PLAIN", username = "u", password = { env = "SLUICE_TEST_UNSET_PASSWORD" } }

[clusters.backup]
bootstrap_servers = "127.0.0.1:9093"
security = { protocol = "sasl_ssl", sasl_mechanism = "SCRAM-SHA-256", username = "u", password = { file = "/nonexistent/sluice-secret" } }

[producers.fast]
cluster = "main"
compresion = "zstd"

[tasks.billing]
cluster = "main"
topics = ["orders"]
concurrency = "many"
handler_timeout = "5 parsecs"
handler = { type = "exec", command = ["true"] }

[tasks.refunds]
cluster = "mian"
topics = ["refunds"]
handler = { type = "exec", command = ["true"] }

[tasks.audit]
cluster = "main"
producer = "slow"
topics = ["audit"]
handler = { type = "exec", command = ["true"] }

[tasks.ledger]
cluster = "backup"
handler = { type = "http", url = "http://127.0.0.1:1/", bdy = "json" }
"#;

#[test]
fn config_check_reports_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, BAD).unwrap();
    let file = file.display().to_string();
    let output = run(
        &[
            "config",
            "check",
            &file,
            "--set",
            "tasks.billing.order=keys",
            "--set",
            "tasks.nosuch.concurrency=2",
            "--set",
            "nonsense",
        ],
        &[("SLUICE__TASKS__BILLING__RETRIS", "2")],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        // A bad --set: no `=`, or no such task.
        "--set nonsense: no `=` (write --set tasks.NAME.KEY=VALUE)",
        "tasks.nosuch: no such task in the file (the file has audit, billing, ledger, refunds) (from --set tasks.nosuch.concurrency)",
        // An unset secret variable, a missing secret file.
        "clusters.main.security.password: environment variable `SLUICE_TEST_UNSET_PASSWORD` is not set (line 3)",
        "clusters.backup.security.password: could not read secret file /nonexistent/sluice-secret: no such file (line 7)",
        // An unknown key, with a did-you-mean.
        "producers.fast.compresion: unknown key (did you mean `compression`?) (line 11)",
        // A bad value from --set, an unknown key from the environment.
        "tasks.billing.order: unknown variant `keys`, expected one of `partition`, `key`, `unordered` (from --set tasks.billing.order)",
        "tasks.billing.retris: unknown key (did you mean `retries`?) (from SLUICE__TASKS__BILLING__RETRIS)",
        // A wrong type and a bad duration in the same task.
        "tasks.billing.concurrency: invalid type: string \"many\", expected usize (line 16)",
        "tasks.billing.handler_timeout: \"5 parsecs\" is not a duration (write \"500ms\", \"5s\", \"1m\" or \"2h\") (line 17)",
        // References to no such cluster or producer.
        "tasks.refunds.cluster: no such cluster `mian` (did you mean `main`?) (line 21)",
        "tasks.audit.producer: no such producer `slow` (the file has fast) (line 27)",
        // A missing key, and an unknown key in the handler of the same task.
        "tasks.ledger: missing key `topics` (line 31)",
        "tasks.ledger.handler.bdy: unknown key (did you mean `body`?) (line 33)",
    ];
    for problem in expected {
        let line = format!("{file}: {problem}");
        assert!(
            lines.contains(&line.as_str()),
            "`{line}` is not in:\n{stderr}"
        );
    }
    assert_eq!(
        lines.last(),
        Some(
            &format!(
                "sluice: config check: {} problems in {file}",
                expected.len()
            )
            .as_str()
        ),
        "{stderr}"
    );
    assert_eq!(lines.len(), expected.len() + 1, "{stderr}");
}

const GOOD: &str = r#"[clusters.main]
bootstrap_servers = "127.0.0.1:9092"
librdkafka = { "socket.keepalive.enable" = true }

[producers.compressed]
compression = "zstd"
flush_interval = "20ms"

[tasks.billing]
producer = "compressed"
topics = ["orders"]
concurrency = 2
retry_delays = ["1s", "5s"]
handler = { type = "exec", command = ["true"] }

[tasks.notify]
topics = ["orders"]
handler = { type = "http", url = "http://127.0.0.1:1/in", batch = { size = 10 } }
"#;

fn good_file(dir: &Path) -> String {
    let file = dir.join("good.toml");
    std::fs::write(&file, GOOD).unwrap();
    file.display().to_string()
}

#[test]
fn a_good_file_passes_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = good_file(dir.path());
    let output = run(&["config", "check", &file], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "{file}: ok; clusters: main; producers: compressed; tasks: billing, notify
  billing on main: group billing reads orders; 2 retries (stages 1-2) in orders.billing.retry.1, orders.billing.retry.2; dead letters to orders.billing.dlq; handler exec
  notify on main: group notify reads orders; no retries; dead letters to orders.notify.dlq; handler http in batches
"
        )
    );
}

#[test]
fn dead_letter_handlers_and_retrying_forever_are_checked_and_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dead.toml");
    let good = r#"[clusters.main]
bootstrap_servers = "127.0.0.1:9092"

[tasks.ledger]
topics = ["payments"]
retry_delays = ["1s", "1m"]
retry_forever = true
handler = { type = "exec", command = ["true"] }
dead_letter_handler = { type = "http", url = "http://127.0.0.1:1/alert" }
"#;
    std::fs::write(&file, good).unwrap();
    let path = file.display().to_string();
    let output = run(&["config", "check", &path], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "{path}: ok; clusters: main; producers: none; tasks: ledger
  ledger on main: group ledger reads payments; 2 retries (stages 1-2) in payments.ledger.retry.1, payments.ledger.retry.2, then the last again forever; dead letters to payments.ledger.dlq (handler http); handler exec
"
        )
    );
    assert_eq!(
        text(&output.stderr),
        format!(
            "{path}: warning: tasks.ledger.retry_forever: a record that always fails is retried \
             every 60s for as long as the task runs and never reaches the dead-letter topic; \
             alert on the growth of the last retry topic\n"
        )
    );

    let bad = r#"[clusters.main]
bootstrap_servers = "127.0.0.1:9092"

[tasks.ledger]
topics = ["payments"]
retry_forever = true
handler = { type = "exec", command = ["true"] }
dead_letter_handler = { type = "http", url = "http://127.0.0.1:1/alert", batch = { size = 5 } }

[tasks.audit]
topics = ["audit"]
handler = { type = "exec", command = ["true"] }
dead_letter_handler = { type = "pager" }

[tasks.refunds]
topics = ["refunds"]
handler = { type = "exec", command = ["true"] }
dead_letter_handler = { type = "exec" }
"#;
    std::fs::write(&file, bad).unwrap();
    let output = run(&["config", "check", &path], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    for problem in [
        "tasks.ledger.retry_forever: needs `retries` or `retry_delays`: the last delay is the one repeated (line 6)",
        "tasks.ledger.dead_letter_handler.batch: a dead-letter handler takes one dead letter at a time (line 8)",
        "tasks.audit.dead_letter_handler.type: no handler named `pager` (the handlers are exec, http) (line 13)",
        "tasks.refunds.dead_letter_handler: missing key `command` (the exec handler needs it) (line 18)",
    ] {
        let line = format!("{path}: {problem}");
        assert!(
            stderr.lines().any(|found| found == line),
            "`{line}` is not in:\n{stderr}"
        );
    }
    assert!(
        stderr.ends_with(&format!("sluice: config check: 4 problems in {path}\n")),
        "{stderr}"
    );
}

#[test]
fn flags_override_the_environment_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = good_file(dir.path());
    let show = |environment: &[(&str, &str)], sets: &[&str]| {
        let mut args = vec!["config", "show", file.as_str()];
        for set in sets {
            args.extend(["--set", set]);
        }
        let output = run(&args, environment);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let shown: toml::Table = toml::from_str(&text(&output.stdout)).expect("TOML");
        let billing = &shown["tasks"]["billing"];
        (
            billing["concurrency"].as_integer().unwrap(),
            billing
                .get("group")
                .and_then(|group| group.as_str())
                .map(str::to_owned),
        )
    };
    assert_eq!(show(&[], &[]), (2, None));
    let environment = [
        ("SLUICE__TASKS__BILLING__CONCURRENCY", "4"),
        ("SLUICE__TASKS__BILLING__GROUP", "from-env"),
    ];
    assert_eq!(show(&environment, &[]), (4, Some("from-env".to_owned())));
    assert_eq!(
        show(&environment, &["tasks.billing.concurrency=8"]),
        (8, Some("from-env".to_owned()))
    );

    // The same merge reaches the checked settings.
    let output = run(
        &[
            "config",
            "check",
            &file,
            "--set",
            "tasks.billing.group=from-flag",
        ],
        &environment,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("billing on main: group from-flag reads orders"),
        "{}",
        text(&output.stdout)
    );

    // `process` and `dlq` read the same way: a bad override stops them before connecting.
    let output = run(
        &[
            "process",
            "-c",
            &file,
            "--set",
            "tasks.billing.concurrency=0",
            "billing",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        format!("sluice: {file}: tasks.billing.concurrency: must be at least 1 (from --set tasks.billing.concurrency)\n")
    );
    let output = run(
        &["dlq", "inspect", "-c", &file, "billing"],
        &[("SLUICE__TASKS__BILLING__HANDLER__COMAND", "x")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains(
            "tasks.billing.handler.comand: unknown key (did you mean `command`?) (from SLUICE__TASKS__BILLING__HANDLER__COMAND)"
        ),
        "{}",
        text(&output.stderr)
    );
}
