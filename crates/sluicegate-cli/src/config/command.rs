//! `sluice config check FILE` and `sluice config show FILE`: a configuration checked without
//! connecting, every problem listed; and the configuration as the commands see it, overrides
//! applied and secrets hidden.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::clients::looks_secret;
use super::load::{load, SetArgs};
use super::TaskPlan;
use crate::handlers::registry::Registry;
use crate::handlers::spec::HandlerKind;
use crate::out;
use crate::secret::scrub;
use crate::tool::exit::usage;

/// The configuration commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file without connecting: every cluster, producer and task, with
    /// the SLUICE__* environment variables and --set flags applied. Lists every problem with
    /// its key path (exit status 2), or says what the tasks will do.
    Check(FileArgs),
    /// Print the configuration as the other commands see it: the file with the SLUICE__*
    /// environment variables and --set flags applied, secrets shown as ***.
    Show(FileArgs),
}

/// A configuration file and its overrides.
#[derive(Debug, Args)]
#[command(after_help = "\
Environment variables override the file: SLUICE__TASKS__BILLING__CONCURRENCY=8 sets \
tasks.billing.concurrency (`__` between keys; keys match ignoring case). --set flags \
override both. A value is TOML when it parses as TOML, else a string.")]
pub struct FileArgs {
    /// The configuration file (TOML).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    sets: SetArgs,
}

/// Runs a configuration command.
pub fn run(command: ConfigCommand, registry: &Registry) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check(args) => check(&args, registry),
        ConfigCommand::Show(args) => show(&args, registry),
    }
}

fn check(args: &FileArgs, registry: &Registry) -> anyhow::Result<()> {
    let loaded = load(&args.file, &args.sets.sets, registry)?;
    let file = args.file.display();
    if !loaded.problems.is_empty() {
        for problem in &loaded.problems {
            eprintln!("{}", scrub(&format!("{file}: {problem}")));
        }
        let count = loaded.problems.len();
        return Err(usage(format!(
            "config check: {count} problem{} in {file}",
            if count == 1 { "" } else { "s" }
        )));
    }
    let names = |names: Vec<&String>| match names.len() {
        0 => "none".to_owned(),
        _ => names
            .iter()
            .map(|name| name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    out!(
        "{file}: ok; clusters: {}; producers: {}; tasks: {}",
        names(loaded.clusters.keys().collect()),
        names(loaded.producers.keys().collect()),
        names(loaded.tasks.keys().collect()),
    )?;
    for plan in loaded.tasks.values() {
        out!("  {}", describe(plan))?;
    }
    for plan in loaded.tasks.values().filter(|plan| plan.retry_forever) {
        eprintln!(
            "{file}: warning: tasks.{}.retry_forever: a record that always fails is retried \
             every {:?} for as long as the task runs and never reaches the dead-letter topic; \
             alert on the growth of the last retry topic",
            plan.name,
            plan.policy
                .delay_after_failures(plan.retries())
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `billing on main: group billing reads orders; 2 retries (stages 1-2) in
/// orders.billing.retry.1, orders.billing.retry.2; dead letters to orders.billing.dlq;
/// handler exec`
fn describe(plan: &TaskPlan) -> String {
    let inputs: Vec<&str> = plan.topics.iter().map(|topics| topics.input()).collect();
    let retries = match (plan.retries(), plan.in_place) {
        (0, _) => "no retries".to_owned(),
        (count, true) => format!("{count} retries in place"),
        (count, false) => {
            let topics: Vec<String> = plan
                .topics
                .iter()
                .flat_map(|topics| (1..=count).map(|retry| topics.retry(retry)))
                .collect();
            format!(
                "{count} retr{} (stage{} {}) in {}",
                if count == 1 { "y" } else { "ies" },
                if count == 1 { "" } else { "s" },
                if count == 1 {
                    "1".to_owned()
                } else {
                    format!("1-{count}")
                },
                topics.join(", ")
            )
        }
    };
    let dead: Vec<String> = plan
        .topics
        .iter()
        .map(|topics| topics.dead_letter())
        .collect();
    let kind = |kind: &HandlerKind| -> String {
        match kind {
            HandlerKind::Exec(exec) if exec.workers.is_some() => "exec (workers)".to_owned(),
            HandlerKind::Exec(_) => "exec".to_owned(),
            HandlerKind::Http(_) => "http".to_owned(),
            HandlerKind::Custom(custom) => custom.name.clone(),
        }
    };
    let handler = kind(&plan.handler.kind);
    let retries = if plan.retry_forever {
        format!("{retries}, then the last again forever")
    } else {
        retries
    };
    let dead_letter_handler = match &plan.dead_letter_handler {
        Some(spec) => format!(" (handler {})", kind(&spec.kind)),
        None => String::new(),
    };
    format!(
        "{} on {}: group {} reads {}; {}; dead letters to {}{}; handler {}{}",
        plan.name,
        plan.cluster.name,
        plan.group,
        inputs.join(", "),
        retries,
        dead.join(", "),
        dead_letter_handler,
        handler,
        if plan.handler.batch.is_some() {
            " in batches"
        } else {
            ""
        }
    )
}

fn show(args: &FileArgs, registry: &Registry) -> anyhow::Result<()> {
    let loaded = load(&args.file, &args.sets.sets, registry)?;
    let mut merged = toml::Value::Table(loaded.merged.clone());
    hide_secrets(&mut merged);
    let text = toml::to_string(&merged)
        .map_err(|error| anyhow::anyhow!("could not print the configuration: {error}"))?;
    out!("{}", text.trim_end())?;
    if loaded.problems.is_empty() {
        return Ok(());
    }
    let problems: Vec<_> = loaded.problems.iter().collect();
    Err(loaded.usage_error(&problems))
}

/// Replaces every secret in the strings of `value` with `***`, and every string under a key
/// that names a secret (`password`, `sasl.password`, ...).
fn hide_secrets(value: &mut toml::Value) {
    match value {
        toml::Value::String(text) => *text = scrub(text),
        toml::Value::Array(array) => array.iter_mut().for_each(hide_secrets),
        toml::Value::Table(table) => {
            for (key, inner) in table.iter_mut() {
                if looks_secret(key) && !inner.is_table() {
                    *inner = toml::Value::String("***".to_owned());
                } else {
                    hide_secrets(inner);
                }
            }
        }
        _ => {}
    }
}
