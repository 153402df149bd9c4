//! A binary of your own through the library, in process on Apache Kafka: a registered handler's
//! settings are checked like the built-in ones', and `process` runs it, a `Permanent` error
//! going to the dead-letter topic.
//!
//! One test in this binary: it ends its `process` run with a SIGTERM to itself.

mod common;
mod handler_support;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;

use serde::Deserialize;
use sluicegate_cli::{BoxError, Handler, Permanent, Record, Sluice};

use common::task::{wait_until, TaskFixture};
use handler_support::configure;

/// `handler = { type = "collect", reject = "..." }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectSettings {
    /// The value refused for good.
    reject: String,
}

/// Keeps every value it handles; refuses one for good.
struct Collect {
    seen: Arc<Mutex<Vec<String>>>,
    reject: String,
}

impl Handler for Collect {
    async fn handle(&self, record: &Record) -> Result<(), BoxError> {
        let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default());
        if value == self.reject {
            return Err(Permanent::new(format!("`{value}` is refused")).into());
        }
        self.seen.lock().expect("seen").push(value.into_owned());
        Ok(())
    }
}

#[test]
fn a_registered_handler_is_checked_and_run_by_the_same_commands() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sluice = {
        let seen = seen.clone();
        move || {
            let seen = seen.clone();
            Sluice::new().handler("collect", move |settings: CollectSettings| {
                Ok(Collect {
                    seen: seen.clone(),
                    reject: settings.reject,
                })
            })
        }
    };
    let task = TaskFixture::new("custom", 1, "");
    let config = task.config.display().to_string();

    // A mistake in the handler's settings is a configuration problem (exit status 2).
    configure(&task, "", "type = \"collect\"\nrejct = \"bad\"\n");
    let check = ["sluice", "config", "check", config.as_str()];
    assert_eq!(sluice().run_from(check), ExitCode::from(2));
    configure(
        &task,
        "retry_delays = [\"200ms\"]\n",
        "type = \"collect\"\nreject = \"bad\"\n",
    );
    assert_eq!(sluice().run_from(check), ExitCode::SUCCESS);
    // The plain `sluice` does not know the handler.
    let plain = common::run(&["config", "check", &config], b"");
    assert_eq!(plain.status.code(), Some(2), "{}", plain.stderr);
    assert!(
        plain.stderr.contains(
            "tasks.work.handler.type: no handler named `collect` (the handlers are exec, http)"
        ),
        "{}",
        plain.stderr
    );

    task.produce(&[(0, "a"), (0, "bad"), (0, "b")]);
    let process = {
        let sluice = sluice.clone();
        let config = config.clone();
        let name = task.name.clone();
        thread::spawn(move || {
            sluice().run_from(["sluice", "process", "-c", config.as_str(), name.as_str()])
        })
    };
    wait_until(
        "the good records handled and the bad one dead-lettered",
        || {
            assert!(!process.is_finished(), "the process run ended early");
            let seen = seen.lock().expect("seen").clone();
            seen == ["a", "b"] && task.count(&task.dead_letter_topic()) == 1
        },
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    assert_eq!(process.join().expect("the run"), ExitCode::SUCCESS);
    assert_eq!(task.count(&task.retry_topic(1)), 0);
}
