//! Loading a configuration: the file, then `SLUICE__*` environment variables, then `--set`
//! flags, merged into one table; then every cluster, producer and task checked, with every
//! problem kept.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Args;

use super::clients::{ClusterPlan, ProducerPlan};
use super::error::{did_you_mean, ConfigError};
use super::overrides::{self, Override};
use super::path::{deserialize_all, KeyPath, Lines, Segment};
use super::resolve::{TaskContext, TaskPlan};
use super::ConfigFile;
use crate::handlers::registry::Registry;
use crate::tool::exit::usage;

/// The configuration file of a command, and the values that override it.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The configuration file (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    #[command(flatten)]
    pub sets: SetArgs,
}

/// `--set PATH=VALUE` flags.
#[derive(Debug, Clone, Default, Args)]
pub struct SetArgs {
    /// Override a value of the file, such as tasks.billing.concurrency=8 (over the file and
    /// SLUICE__* environment variables); repeat for more.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
}

impl ConfigArgs {
    /// Loads the file with its overrides.
    pub fn load(&self, registry: &Registry) -> anyhow::Result<Loaded> {
        load(&self.config, &self.sets.sets, registry)
    }

    /// Loads the file and returns task `name`'s plan; any problem of the task, or of the
    /// file's clusters and producers, is a usage error listing them.
    pub fn plan(&self, name: &str, registry: &Registry) -> anyhow::Result<TaskPlan> {
        self.load(registry)?.task(name)
    }
}

/// A loaded configuration: the merged table, what was checked, and every problem found.
/// `Debug` leaves the merged table out: it holds the file's secrets as written.
pub struct Loaded {
    /// The file.
    pub path: PathBuf,
    /// The file's table with the overrides applied.
    pub merged: toml::Table,
    /// The clusters that passed their checks.
    pub clusters: BTreeMap<String, ClusterPlan>,
    /// The producers that passed their checks.
    pub producers: BTreeMap<String, ProducerPlan>,
    /// The tasks that passed their checks.
    pub tasks: BTreeMap<String, TaskPlan>,
    /// Every task named in the merged table.
    pub task_names: Vec<String>,
    /// Every problem, in the order of the file's lines.
    pub problems: Vec<ConfigError>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("path", &self.path)
            .field("clusters", &self.clusters)
            .field("producers", &self.producers)
            .field("tasks", &self.tasks)
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

/// Loads `path` with the environment's `SLUICE__*` variables and `sets`. Only an unreadable
/// file is an error; problems in it are in [`Loaded::problems`].
pub fn load(path: &Path, sets: &[String], registry: &Registry) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| usage(format!("could not read {}: {error}", path.display())))?;
    Ok(load_text(path, &text, std::env::vars_os(), sets, registry))
}

/// [`load`] of `text`, with these environment variables.
pub fn load_text(
    path: &Path,
    text: &str,
    environment: impl IntoIterator<Item = (OsString, OsString)>,
    sets: &[String],
    registry: &Registry,
) -> Loaded {
    let mut loaded = Loaded {
        path: path.to_path_buf(),
        merged: toml::Table::new(),
        clusters: BTreeMap::new(),
        producers: BTreeMap::new(),
        tasks: BTreeMap::new(),
        task_names: Vec::new(),
        problems: Vec::new(),
    };
    let mut problems = Vec::new();
    let mut merged: toml::Table = match toml::from_str(text) {
        Ok(table) => table,
        Err(error) => {
            loaded.problems.push(ConfigError::syntax(text, &error));
            return loaded;
        }
    };

    // The overrides: environment first, flags last.
    let mut variables = Vec::new();
    for (name, value) in environment {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(overrides::ENV_PREFIX) {
            continue;
        }
        match value.into_string() {
            Ok(value) => variables.push((name.to_owned(), value)),
            Err(_) => problems.push(ConfigError::new(
                "",
                format!("environment variable {name}: the value is not UTF-8"),
            )),
        }
    }
    let mut all: Vec<Override> = overrides::from_env(variables, &mut problems);
    for set in sets {
        match overrides::from_flag(set) {
            Ok(flag) => all.push(flag),
            Err(problem) => problems.push(problem),
        }
    }
    let mut origins: Vec<(KeyPath, String)> = Vec::new();
    for each in &all {
        match each.apply(&mut merged) {
            Ok(set) => origins.push((set, each.origin.clone())),
            Err(problem) => problems.push(problem),
        }
    }

    // `[cluster]` was the one-cluster form before clusters had names.
    let old_cluster = merged.remove("cluster").is_some();
    if old_cluster {
        problems.push(ConfigError::new(
            "cluster",
            "clusters have names now: write [clusters.NAME] (for example [clusters.main])",
        ));
    }

    loaded.task_names = match merged.get("tasks") {
        Some(toml::Value::Table(tasks)) => tasks.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let file: ConfigFile = deserialize_all(
        toml::Value::Table(merged.clone()),
        &KeyPath::default(),
        &mut problems,
    )
    .unwrap_or_default();
    loaded.merged = merged;

    // An entry with a problem of its own is not checked further: what depends on it would
    // only repeat that problem.
    let broken: BTreeSet<(String, String)> = problems
        .iter()
        .filter_map(|problem| match &problem.key_path().0[..] {
            [Segment::Key(section), Segment::Key(name), ..] => {
                Some((section.clone(), name.clone()))
            }
            _ => None,
        })
        .collect();
    let is_broken =
        |section: &str, name: &str| broken.contains(&(section.to_owned(), name.to_owned()));

    let mut clusters_broken = BTreeSet::new();
    for (name, cluster) in &file.clusters {
        if is_broken("clusters", name) {
            clusters_broken.insert(name.clone());
            continue;
        }
        match ClusterPlan::resolve(name, cluster, &mut problems) {
            Some(plan) => {
                loaded.clusters.insert(name.clone(), plan);
            }
            None => {
                clusters_broken.insert(name.clone());
            }
        }
    }
    let cluster_names: Vec<&str> = file.clusters.keys().map(String::as_str).collect();
    if cluster_names.is_empty()
        && !old_cluster
        && !(file.tasks.is_empty() && file.producers.is_empty())
    {
        problems.push(ConfigError::new(
            "clusters",
            "no cluster: add a [clusters.NAME] table with its bootstrap_servers",
        ));
    }
    // The cluster an entry names (or the one there is); `None` when it is broken or a
    // problem was recorded.
    let cluster_of = |named: Option<&String>, at: &str, problems: &mut Vec<ConfigError>| {
        let name = match named {
            Some(name) => name.as_str(),
            None => match cluster_names[..] {
                [only] => only,
                [] => return None,
                _ => {
                    problems.push(ConfigError::new(
                        at,
                        format!(
                            "missing key `cluster` (the file has several: {})",
                            cluster_names.join(", ")
                        ),
                    ));
                    return None;
                }
            },
        };
        if clusters_broken.contains(name) {
            return None;
        }
        let found = loaded.clusters.get(name);
        if found.is_none() {
            problems.push(ConfigError::new(
                format!("{at}.cluster"),
                no_such("cluster", name, &cluster_names),
            ));
        }
        found
    };

    let mut producers_broken = BTreeSet::new();
    for (name, producer) in &file.producers {
        let at = format!("producers.{name}");
        let plan = if is_broken("producers", name) {
            None
        } else {
            cluster_of(producer.cluster.as_ref(), &at, &mut problems)
                .and_then(|cluster| ProducerPlan::resolve(name, producer, cluster, &mut problems))
        };
        match plan {
            Some(plan) => {
                loaded.producers.insert(name.clone(), plan);
            }
            None => {
                producers_broken.insert(name.clone());
            }
        }
    }
    let producer_names: Vec<&str> = file.producers.keys().map(String::as_str).collect();

    for (name, task) in &file.tasks {
        // A task with a problem of its own still has its references and handler checked.
        let broken = is_broken("tasks", name);
        let at = format!("tasks.{name}");
        let cluster = cluster_of(task.cluster.as_ref(), &at, &mut problems);
        let producer = match &task.producer {
            None => Ok(None),
            Some(producer) if producers_broken.contains(producer) => Err(()),
            Some(producer) => match loaded.producers.get(producer) {
                None => {
                    problems.push(ConfigError::new(
                        format!("{at}.producer"),
                        no_such("producer", producer, &producer_names),
                    ));
                    Err(())
                }
                Some(plan) if cluster.is_some_and(|cluster| plan.cluster != cluster.name) => {
                    problems.push(ConfigError::new(
                        format!("{at}.producer"),
                        format!(
                            "producer `{producer}` writes to cluster `{}`, but the task reads from `{}`: its retries and dead letters go to its own cluster",
                            plan.cluster,
                            cluster.map_or("", |cluster| cluster.name.as_str())
                        ),
                    ));
                    Err(())
                }
                Some(plan) => Ok(Some(plan)),
            },
        };
        let context = TaskContext {
            cluster,
            producer,
            registry,
            broken,
        };
        if let Some(plan) = TaskPlan::resolve(name, task, &context, &mut problems) {
            loaded.tasks.insert(name.clone(), plan);
        }
    }

    // Each problem once, with where it was set, in the order of the file.
    let lines = Lines::of(text);
    let mut seen = BTreeSet::new();
    problems.retain(|problem| seen.insert(problem.to_string()));
    let mut placed: Vec<(usize, ConfigError)> = problems
        .into_iter()
        .map(|mut problem| {
            let path = problem.key_path();
            let line = lines.find(&path);
            if problem.at.is_none() {
                let origin = origins
                    .iter()
                    .rev()
                    .find(|(set, _)| !problem.path.is_empty() && path.starts_with(set));
                problem.at = match (origin, line) {
                    (Some((_, origin)), _) => Some(format!("from {origin}")),
                    (None, Some(line)) if !problem.path.is_empty() => Some(format!("line {line}")),
                    _ => None,
                };
            }
            (line.unwrap_or(0), problem)
        })
        .collect();
    placed.sort_by_key(|(line, _)| *line);
    loaded.problems = placed.into_iter().map(|(_, problem)| problem).collect();
    loaded
}

/// "no such cluster `x` (did you mean `y`?)", or with the names the file has.
fn no_such(kind: &str, name: &str, known: &[&str]) -> String {
    match did_you_mean(name, known.iter().copied()) {
        Some(near) => format!("no such {kind} `{name}` (did you mean `{near}`?)"),
        None if known.is_empty() => format!("no such {kind} `{name}` (the file has none)"),
        None => format!(
            "no such {kind} `{name}` (the file has {})",
            known.join(", ")
        ),
    }
}

impl Loaded {
    /// Task `name`'s plan. Problems of other tasks do not stop it; any other problem does,
    /// as a usage error listing them all.
    pub fn task(mut self, name: &str) -> anyhow::Result<TaskPlan> {
        let relevant: Vec<&ConfigError> = self
            .problems
            .iter()
            .filter(|problem| match &problem.key_path().0[..] {
                [Segment::Key(section), Segment::Key(task), ..] if section == "tasks" => {
                    task == name
                }
                _ => true,
            })
            .collect();
        if !relevant.is_empty() {
            return Err(self.usage_error(&relevant));
        }
        if let Some(plan) = self.tasks.remove(name) {
            return Ok(plan);
        }
        let known: Vec<&str> = self.task_names.iter().map(String::as_str).collect();
        let problem = ConfigError::new(
            format!("tasks.{name}"),
            match (did_you_mean(name, known.iter().copied()), known.is_empty()) {
                (_, true) => "no such task (the file has no [tasks.NAME] table)".to_owned(),
                (Some(near), _) => format!("no such task (did you mean `{near}`?)"),
                (None, _) => format!("no such task (the file has {})", known.join(", ")),
            },
        );
        Err(self.usage_error(&[&problem]))
    }

    /// The problems as one usage error: `FILE: path: problem`, a line each.
    pub fn usage_error(&self, problems: &[&ConfigError]) -> anyhow::Error {
        let lines: Vec<String> = problems
            .iter()
            .map(|problem| format!("{}: {problem}", self.path.display()))
            .collect();
        usage(lines.join("\n"))
    }
}

/// A file of cluster `main` and task `billing` reading topic `orders`, with these lines ending
/// the task (its handler among them); the tests of loading and resolving start from it.
#[cfg(test)]
pub(super) fn task_file(task: &str) -> String {
    format!(
        r#"
[clusters.main]
bootstrap_servers = "127.0.0.1:9092"

[tasks.billing]
topics = ["orders"]
{task}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of one cluster and one task with these lines added to the task.
    fn file(task: &str) -> String {
        task_file(&format!(
            r#"retry_delays = ["1s", "5s"]
order = "key"
handler = {{ type = "exec", command = ["sh", "-c", "cat"] }}
{task}"#
        ))
    }

    fn loaded(text: &str, environment: &[(&str, &str)], sets: &[&str]) -> Loaded {
        let environment = environment
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)));
        let sets: Vec<String> = sets.iter().map(|set| (*set).to_owned()).collect();
        load_text(
            Path::new("sluice.toml"),
            text,
            environment,
            &sets,
            &Registry::default(),
        )
    }

    fn problems(text: &str) -> Vec<String> {
        loaded(text, &[], &[])
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_file_resolves() {
        let loaded = loaded(&file(""), &[], &[]);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let plan = &loaded.tasks["billing"];
        assert_eq!(plan.retries(), 2);
        assert_eq!(plan.cluster.name, "main");
        assert_eq!(plan.topics[0].dead_letter(), "orders.billing.dlq");
    }

    #[test]
    fn errors_name_the_key_path_and_line() {
        let bad = file("").replace(r#"["1s", "5s"]"#, r#"["1s", "5 parsecs"]"#);
        assert_eq!(
            problems(&bad),
            [
                r#"tasks.billing.retry_delays[1]: "5 parsecs" is not a duration (write "500ms", "5s", "1m" or "2h") (line 7)"#
            ]
        );
        let bad = file("").replace(r#"order = "key""#, r#"order = "keys""#);
        assert!(
            problems(&bad)[0].starts_with("tasks.billing.order: unknown variant `keys`"),
            "{:?}",
            problems(&bad)
        );
        let bad = file("").replace("retry_delays", "retry_delay");
        assert_eq!(
            problems(&bad),
            ["tasks.billing.retry_delay: unknown key (did you mean `retry_delays`?) (line 7)"]
        );
        let bad = file("").replace(r#"type = "exec""#, r#"type = "exce""#);
        assert_eq!(
            problems(&bad),
            ["tasks.billing.handler.type: no handler named `exce` (did you mean `exec`?) (line 9)"]
        );
        let bad = file("").replace("command = ", "argv = ");
        assert!(
            problems(&bad)[0].starts_with("tasks.billing.handler.argv: unknown key"),
            "{:?}",
            problems(&bad)
        );
        let bad = file("").replace(r#"topics = ["orders"]"#, "");
        assert_eq!(
            problems(&bad),
            ["tasks.billing: missing key `topics` (line 5)"]
        );
        assert_eq!(
            problems("[clusters\n"),
            ["unclosed table, expected `]` (line 1)"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let bad = file("concurrency = 0\nhandler_timeout = \"soon\"\ncolour = 1\n")
            .replace(r#"order = "key""#, r#"order = "keys""#)
            + "\n[clusters.other]\nbootstrap_servers = \"nowhere\"\n\n[tasks.refunds]\ncluster = \"mian\"\ntopics = [\"r\"]\nhandler = { type = \"exec\", command = [\"true\"] }\n"
            + "\n[tasks.extra]\ntopics = [\"e\"]\nhandler = { type = \"exec\", command = [\"true\"] }\n";
        let found = problems(&bad);
        for expected in [
            "clusters.other.bootstrap_servers: `nowhere` is not host:port",
            "tasks.billing.order: unknown variant `keys`",
            "tasks.billing.handler_timeout: \"soon\" is not a duration",
            "tasks.billing.colour: unknown key",
            "tasks.extra: missing key `cluster` (the file has several: main, other)",
            "tasks.refunds.cluster: no such cluster `mian` (did you mean `main`?)",
        ] {
            assert!(
                found.iter().any(|problem| problem.starts_with(expected)),
                "{expected} not in {found:#?}"
            );
        }
    }

    #[test]
    fn overrides_take_precedence_and_name_their_origin() {
        let text = file("concurrency = 2");
        let environment = [
            ("SLUICE__TASKS__BILLING__CONCURRENCY", "4"),
            ("SLUICE__TASKS__BILLING__GROUP", "from-env"),
        ];
        let loaded = loaded(&text, &environment, &["tasks.billing.group=from-flag"]);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let plan = &loaded.tasks["billing"];
        assert_eq!(plan.concurrency, Some(4));
        assert_eq!(plan.group, "from-flag");

        let bad = self::loaded(
            &text,
            &[("SLUICE__TASKS__BILLING__CONCURENCY", "4")],
            &["tasks.billing.retry_delays=[\"1s\", \"x\"]"],
        );
        let found: Vec<String> = bad.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "tasks.billing.concurency: unknown key (did you mean `concurrency`?) (from SLUICE__TASKS__BILLING__CONCURENCY)",
                "tasks.billing.retry_delays[1]: \"x\" is not a duration (write \"500ms\", \"5s\", \"1m\" or \"2h\") (from --set tasks.billing.retry_delays)",
            ]
        );
    }

    #[test]
    fn a_task_runs_despite_problems_of_other_tasks() {
        let text = file("") + "\n[tasks.broken]\ntopics = [\"x\"]\n";
        let loaded = loaded(&text, &[], &[]);
        assert_eq!(loaded.problems.len(), 1);
        assert!(loaded.task("billing").is_ok());
        let loaded = self::loaded(&text, &[], &[]);
        let error = loaded.task("broken").unwrap_err().to_string();
        assert_eq!(
            error,
            "sluice.toml: tasks.broken: missing key `handler` (line 12)"
        );
        let error = self::loaded(&text, &[], &[])
            .task("biling")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "sluice.toml: tasks.biling: no such task (did you mean `billing`?)"
        );
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let text = file("")
            .replace(
                "bootstrap_servers = \"127.0.0.1:9092\"",
                "bootstrap_servers = \"127.0.0.1:9092\"\nsecurity = { protocol = \"sasl_plaintext\", sasl_mechanism = \"PLAIN\", username = \"u\", password = \"debug-s3cret-1\" }\nlibrdkafka = { \"sasl.oauthbearer.client.secret\" = \"debug-s3cret-2\" }",
            )
            .replace(
                r#"{ type = "exec", command = ["sh", "-c", "cat"] }"#,
                r#"{ type = "http", url = "http://h/", headers = { Token = "debug-s3cret-3" } }"#,
            );
        let loaded = loaded(&text, &[], &[]);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let shown = format!("{loaded:?}");
        assert!(shown.contains("sasl.password"), "{shown}");
        for secret in ["debug-s3cret-1", "debug-s3cret-2", "debug-s3cret-3"] {
            assert!(!shown.contains(secret), "{shown}");
            assert_eq!(crate::secret::scrub(secret), "***");
        }
    }

    #[test]
    fn the_old_cluster_table_says_what_to_write() {
        let text = file("").replace("[clusters.main]", "[cluster]");
        assert_eq!(
            problems(&text),
            ["cluster: clusters have names now: write [clusters.NAME] (for example [clusters.main]) (line 2)"]
        );
    }
}
