//! A task of the configuration file, checked and turned into the library's settings: consumer
//! and producer options, the retry policy, the topic names and the pipeline's settings.

use std::time::Duration;

use sluicegate::pipeline::{BatcherOptions, ProcessingOrder};
use sluicegate::producer::ProducerOptions;
use sluicegate::retry::{RetryPolicy, RetryTopics};
use sluicegate::{ConsumerOptions, GroupProtocol, OptionsError, RemoteAssignor, StartPosition};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use super::clients::{default_options, ClusterPlan, ProducerPlan};
use super::path::{deserialize_all, KeyPath};
use super::{
    Backoff, BatchConfig, ConfigDuration, ConfigError, GroupProtocolName, HandlerConfig,
    HandlerTable, HandlerType, Order, RemoteAssignorName, RetryMode, Task,
};
use crate::handlers::registry::Registry;
use crate::handlers::spec::{
    BatchSpec, CustomSpec, Encoding, ExecSpec, HandlerKind, HandlerSpec, HeaderTable, HttpSpec,
};

/// The delays of `retries = N` without `retry_backoff`: 1 s, doubling up to 1 min.
const DEFAULT_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// How long an HTTP request may take when the handler does not say.
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a task needs, checked (without connecting).
#[derive(Debug, Clone)]
pub struct TaskPlan {
    /// The task's name in the file.
    pub name: String,
    /// Stage 0's consumer group.
    pub group: String,
    /// The cluster it reads from and writes to.
    pub cluster: ClusterPlan,
    /// Stage 0's consumer settings (the library derives the retry stages' from them).
    pub consumer: ConsumerOptions,
    /// The producer that writes retries and dead letters.
    pub producer: ProducerOptions,
    /// How many retries, and their delays.
    pub policy: RetryPolicy,
    /// Whether retries wait in the handler instead of in retry topics.
    pub in_place: bool,
    /// The retry and dead-letter topics of each input topic, overrides applied.
    pub topics: Vec<RetryTopics>,
    /// The pipeline's processing order.
    pub order: ProcessingOrder,
    /// Records handled at once per stage, when set.
    pub concurrency: Option<usize>,
    /// The limit on one handling, when set.
    pub handler_timeout: Option<Duration>,
    /// The handler, and whether it takes batches.
    pub handler: HandlerSpec,
    /// What the dead-letter stage calls with each dead letter, if anything.
    pub dead_letter_handler: Option<HandlerSpec>,
    /// Whether records are retried forever (the last delay repeats; see `config check`'s
    /// warning).
    pub retry_forever: bool,
}

/// What a task is resolved with: its cluster and its producer, checked already.
pub struct TaskContext<'a> {
    /// The task's cluster; `None` when it has a problem (reported already).
    pub cluster: Option<&'a ClusterPlan>,
    /// The named producer, or `None` for the default one; `Err` when it has a problem
    /// (reported already).
    pub producer: Result<Option<&'a ProducerPlan>, ()>,
    /// The handlers a `type` may name.
    pub registry: &'a Registry,
    /// Whether the task's table had problems already: then only its handler is checked
    /// (the other checks would repeat them, or be misled by what is missing).
    pub broken: bool,
}

impl TaskPlan {
    /// Checks `task` (named `name`) and builds its settings; every problem found goes to
    /// `problems`, naming its key path.
    pub fn resolve(
        name: &str,
        task: &Task,
        context: &TaskContext<'_>,
        problems: &mut Vec<ConfigError>,
    ) -> Option<Self> {
        let key = |setting: &str| format!("tasks.{name}.{setting}");
        let found = problems.len();
        if context.broken {
            if let Some(table) = &task.handler {
                handler(table, name, "handler", context.registry, problems);
            }
            if let Some(table) = &task.dead_letter_handler {
                dead_letter_handler(table, name, context.registry, problems);
            }
            return None;
        }
        let group = task.group.clone().unwrap_or_else(|| name.to_owned());
        let topics = match &task.topics {
            Some(topics) => topics.clone(),
            None => {
                problems.push(ConfigError::new(
                    format!("tasks.{name}"),
                    "missing key `topics`",
                ));
                Vec::new()
            }
        };
        let positions = StartPositions::of(task, &key)
            .map_err(|error| problems.push(error))
            .ok();
        let consumer = match (&task.topics, context.cluster, &positions) {
            (Some(_), Some(cluster), Some(positions)) => {
                consumer_options(task, &topics, cluster, &group, positions)
                    .map_err(|error| problems.push(rename(error, name, cluster)))
                    .ok()
            }
            _ => None,
        };
        let producer = match (context.producer, context.cluster) {
            (Ok(Some(plan)), _) => Some(plan.options.clone()),
            (Ok(None), Some(cluster)) => Some(default_options(cluster)),
            _ => None,
        }
        .map(|options| options.client_id(format!("sluice-{name}")));

        let policy = policy(task, &key)
            .map_err(|error| problems.push(error))
            .ok();
        let in_place = task.retry_mode == RetryMode::InPlace;
        if task.concurrency == Some(0) {
            problems.push(ConfigError::new(key("concurrency"), "must be at least 1"));
        }
        if task
            .handler_timeout
            .is_some_and(|timeout| timeout.0.is_zero())
        {
            problems.push(ConfigError::new(
                key("handler_timeout"),
                "must be greater than zero",
            ));
        }
        let retry_topics = match (&policy, &task.topics) {
            (Some(policy), Some(topics)) => {
                retry_topics(task, topics, &group, policy, in_place, &key)
                    .map_err(|error| problems.push(error))
                    .ok()
            }
            _ => None,
        };
        let task_handler = match &task.handler {
            Some(table) => handler(table, name, "handler", context.registry, problems),
            None => {
                problems.push(ConfigError::new(
                    format!("tasks.{name}"),
                    "missing key `handler`",
                ));
                None
            }
        };
        let dead_letters = task
            .dead_letter_handler
            .as_ref()
            .map(|table| dead_letter_handler(table, name, context.registry, problems));
        if problems.len() != found {
            return None;
        }
        Some(Self {
            name: name.to_owned(),
            group,
            cluster: context.cluster?.clone(),
            consumer: consumer?,
            producer: producer?,
            policy: policy?,
            in_place,
            topics: retry_topics?,
            order: match task.order {
                Order::Partition => ProcessingOrder::Partition,
                Order::Key => ProcessingOrder::Key,
                Order::Unordered => ProcessingOrder::Unordered,
            },
            concurrency: task.concurrency,
            handler_timeout: task.handler_timeout.map(|timeout| timeout.0),
            handler: task_handler?,
            dead_letter_handler: dead_letters.flatten(),
            retry_forever: task.retry_forever,
        })
    }

    /// The number of retries (stages 1 to this read retry topics, unless in place).
    pub fn retries(&self) -> usize {
        self.policy.retries()
    }
}

/// A task's `start_position` and `topic_start_positions`, parsed.
#[derive(Debug, Default)]
struct StartPositions {
    all: Option<StartPosition>,
    topics: Vec<(String, StartPosition)>,
}

impl StartPositions {
    /// Parses the task's start positions; a bad one is a problem naming its key.
    fn of(task: &Task, key: &dyn Fn(&str) -> String) -> Result<Self, ConfigError> {
        let all = task
            .start_position
            .as_deref()
            .map(|text| {
                start_position(text)
                    .map_err(|problem| ConfigError::new(key("start_position"), problem))
            })
            .transpose()?;
        let topics = task
            .topic_start_positions
            .iter()
            .flatten()
            .map(|(topic, text)| {
                start_position(text)
                    .map(|position| (topic.clone(), position))
                    .map_err(|problem| {
                        ConfigError::new(key(&format!("topic_start_positions.{topic}")), problem)
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { all, topics })
    }
}

fn consumer_options(
    task: &Task,
    topics: &[String],
    cluster: &ClusterPlan,
    group: &str,
    positions: &StartPositions,
) -> Result<ConsumerOptions, OptionsError> {
    let mut options =
        ConsumerOptions::new(&cluster.bootstrap_servers, group, topics.iter().cloned());
    let duration = |setting: Option<ConfigDuration>| setting.map(|duration| duration.0);
    if let Some(protocol) = task.group_protocol {
        options = options.group_protocol(match protocol {
            GroupProtocolName::Classic => GroupProtocol::Classic,
            GroupProtocolName::Consumer => GroupProtocol::Consumer,
        });
    }
    if let Some(assignor) = task.remote_assignor {
        options = options.remote_assignor(match assignor {
            RemoteAssignorName::Uniform => RemoteAssignor::Uniform,
            RemoteAssignorName::Range => RemoteAssignor::Range,
        });
    }
    if let Some(template) = &task.group_instance_id {
        options = options.group_instance_id(template.replace("{hostname}", &host_name()));
    }
    if let Some(timeout) = duration(task.stall_timeout) {
        options = options.stall_timeout(timeout);
    }
    if let Some(timeout) = duration(task.session_timeout) {
        options = options
            .session_timeout(timeout)
            // The library's heartbeat, or a third of a shorter session timeout.
            .heartbeat_interval(
                ConsumerOptions::DEFAULT_HEARTBEAT_INTERVAL
                    .min(timeout / 3)
                    .max(Duration::from_millis(1)),
            );
    }
    if let Some(interval) = duration(task.max_poll_interval) {
        options = options.max_poll_interval(interval);
    }
    if let Some(interval) = duration(task.commit_interval) {
        options = options.commit_interval(interval);
    }
    if let Some(timeout) = duration(task.drain_timeout) {
        options = options.drain_timeout(timeout);
    }
    if let Some(records) = task.partition_buffer {
        options = options.partition_buffer(records);
    }
    if let Some(position) = positions.all {
        options = options.start_position(position);
    }
    for (topic, position) in &positions.topics {
        options = options.topic_start_position(topic, *position);
    }
    for (property, value) in cluster.properties.iter() {
        options = options.librdkafka(property, value);
    }
    options.validate()?;
    Ok(options)
}

/// `earliest`, `latest`, `datetime:T` (RFC 3339, or ms since the epoch) or `offset:N`.
fn start_position(text: &str) -> Result<StartPosition, String> {
    let expected = || format!("`{text}`: expected earliest, latest, datetime:T or offset:N");
    match text.split_once(':') {
        None if text == "earliest" => Ok(StartPosition::Earliest),
        None if text == "latest" => Ok(StartPosition::Latest),
        Some(("offset", offset)) => offset
            .parse::<i64>()
            .ok()
            .filter(|offset| *offset >= 0)
            .map(StartPosition::Offset)
            .ok_or_else(expected),
        Some(("datetime", time)) => time
            .parse::<i64>()
            .ok()
            .filter(|ms| *ms >= 0)
            .or_else(|| crate::console::start::parse_rfc3339(time))
            .map(StartPosition::Timestamp)
            .ok_or_else(|| {
                format!("`{time}` is not a time like 2024-05-01T12:00:00Z or 1714564800000 (ms)")
            }),
        _ => Err(expected()),
    }
}

/// This machine's name for `{hostname}` in `group_instance_id`, with characters an instance
/// id may not hold replaced by `-`.
fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Maps a library option's name to the configuration key that set it.
fn rename(error: OptionsError, task: &str, cluster: &ClusterPlan) -> ConfigError {
    match error.key.as_str() {
        "bootstrap_servers" => cluster.rename(&error),
        key if key.starts_with("librdkafka") => cluster.rename(&error),
        "group_id" => ConfigError::new(format!("tasks.{task}.group"), error.problem),
        key if key.starts_with("topic_start_position.") => ConfigError::new(
            format!(
                "tasks.{task}.topic_start_positions.{}",
                &key["topic_start_position.".len()..]
            ),
            error.problem,
        ),
        key => ConfigError::new(format!("tasks.{task}.{key}"), error.problem),
    }
}

/// `retry_delays`, or `retries` with `retry_backoff`, or neither (no retries).
fn policy(task: &Task, key: &dyn Fn(&str) -> String) -> Result<RetryPolicy, ConfigError> {
    let policy = match (&task.retry_delays, task.retries, task.retry_backoff) {
        (Some(_), Some(_), _) => {
            return Err(ConfigError::new(
                key("retries"),
                "give `retries` (with `retry_backoff`) or `retry_delays`, not both",
            ))
        }
        (Some(_), None, Some(_)) => {
            return Err(ConfigError::new(
                key("retry_backoff"),
                "goes with `retries`; `retry_delays` lists every delay already",
            ))
        }
        (None, None, Some(_)) => {
            return Err(ConfigError::new(
                key("retry_backoff"),
                "needs `retries`: how many retries to make",
            ))
        }
        (None, None, None) => RetryPolicy::none(),
        (Some(delays), None, None) => RetryPolicy::delays(delays.iter().map(|delay| delay.0))
            .map_err(|error| ConfigError::new(key("retry_delays"), error.problem))?,
        (None, Some(retries), backoff) => {
            let (base, cap) =
                backoff.map_or(DEFAULT_BACKOFF, |Backoff { base, cap }| (base.0, cap.0));
            RetryPolicy::exponential(retries, base, cap).map_err(|error| {
                let field = match error.key.as_str() {
                    "retry.base" => "retry_backoff.base",
                    "retry.cap" => "retry_backoff.cap",
                    _ => "retries",
                };
                ConfigError::new(key(field), error.problem)
            })?
        }
    };
    if !task.retry_forever {
        return Ok(policy);
    }
    policy.forever().map_err(|_| {
        ConfigError::new(
            key("retry_forever"),
            "needs `retries` or `retry_delays`: the last delay is the one repeated",
        )
    })
}

/// The retry and dead-letter topics of each input topic, with the configured names.
fn retry_topics(
    task: &Task,
    inputs: &[String],
    group: &str,
    policy: &RetryPolicy,
    in_place: bool,
    key: &dyn Fn(&str) -> String,
) -> Result<Vec<RetryTopics>, ConfigError> {
    let overrides = task.retry_topic_names.is_some() || task.dead_letter_topic.is_some();
    if overrides && inputs.len() != 1 {
        let setting = if task.retry_topic_names.is_some() {
            "retry_topic_names"
        } else {
            "dead_letter_topic"
        };
        return Err(ConfigError::new(
            key(setting),
            format!(
                "names one task's topics, so it needs exactly one input topic (the task reads {})",
                inputs.len()
            ),
        ));
    }
    let retry_topics = if in_place { 0 } else { policy.retries() };
    if let Some(names) = &task.retry_topic_names {
        if in_place {
            return Err(ConfigError::new(
                key("retry_topic_names"),
                "retry_mode \"in_place\" uses no retry topics",
            ));
        }
        if names.len() != retry_topics {
            return Err(ConfigError::new(
                key("retry_topic_names"),
                format!(
                    "names {} topics, but the task has {retry_topics} retries",
                    names.len()
                ),
            ));
        }
    }
    inputs
        .iter()
        .map(|input| {
            let mut topics = RetryTopics::new(input, group);
            for (index, topic) in task.retry_topic_names.iter().flatten().enumerate() {
                topics = topics.retry_topic_named(index + 1, topic);
            }
            if let Some(topic) = &task.dead_letter_topic {
                topics = topics.dead_letter_named(topic);
            }
            topics.validate(retry_topics).map_err(|error| {
                // A derived name is bad because of the group (the input was checked).
                let path = match error.key.strip_prefix("retry_topic.") {
                    Some(retry) if task.retry_topic_names.is_some() => {
                        let index = retry.parse::<usize>().unwrap_or(1).saturating_sub(1);
                        format!("retry_topic_names[{index}]")
                    }
                    None if task.dead_letter_topic.is_some() => "dead_letter_topic".to_owned(),
                    _ => "group".to_owned(),
                };
                ConfigError::new(key(&path), error.problem)
            })?;
            Ok(topics)
        })
        .collect()
}

/// The `handler` table of task `task`, checked: a built-in handler's settings, or a
/// registered handler's.
fn handler(
    table: &HandlerTable,
    task: &str,
    slot: &str,
    registry: &Registry,
    problems: &mut Vec<ConfigError>,
) -> Option<HandlerSpec> {
    let at = KeyPath::keys(["tasks", task, slot]);
    let task_key = |setting: &str| format!("tasks.{task}.{setting}");
    let kind = match table.0.get("type") {
        None => {
            problems.push(ConfigError::at(
                at,
                format!(
                    "missing key `type` (one of {})",
                    registry.names().join(", ")
                ),
            ));
            return None;
        }
        Some(toml::Value::String(kind)) => kind.clone(),
        Some(_) => {
            problems.push(ConfigError::at(
                at.key("type"),
                format!("must be a string: one of {}", registry.names().join(", ")),
            ));
            return None;
        }
    };
    if kind == "exec" || kind == "http" {
        let config: HandlerConfig =
            deserialize_all(toml::Value::Table(table.0.clone()), &at, problems)?;
        return builtin(&config, slot, &task_key)
            .map_err(|error| problems.push(error))
            .ok();
    }
    if !registry.contains(&kind) {
        let names = registry.names();
        let hint = match super::error::did_you_mean(&kind, names.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("the handlers are {}", names.join(", ")),
        };
        problems.push(ConfigError::at(
            at.key("type"),
            format!("no handler named `{kind}` ({hint})"),
        ));
        return None;
    }
    let mut settings = table.0.clone();
    settings.remove("type");
    let batch = match settings.remove("batch") {
        None => None,
        Some(batch) => {
            let config: BatchConfig = deserialize_all(batch, &at.key("batch"), problems)?;
            Some(
                batch_spec(config, &|setting| task_key(&format!("{slot}.{setting}")))
                    .map_err(|error| problems.push(error))
                    .ok()?,
            )
        }
    };
    if !registry.check(&kind, &settings, &at, problems) {
        return None;
    }
    Some(HandlerSpec {
        kind: HandlerKind::Custom(CustomSpec {
            name: kind,
            settings: HandlerTable(settings),
        }),
        batch,
    })
}

/// The `dead_letter_handler` table of task `task`, checked as a handler table; it takes one
/// dead letter at a time, so it has no `batch`.
fn dead_letter_handler(
    table: &HandlerTable,
    task: &str,
    registry: &Registry,
    problems: &mut Vec<ConfigError>,
) -> Option<HandlerSpec> {
    if table.0.contains_key("batch") {
        problems.push(ConfigError::new(
            format!("tasks.{task}.dead_letter_handler.batch"),
            "a dead-letter handler takes one dead letter at a time",
        ));
        return None;
    }
    handler(table, task, "dead_letter_handler", registry, problems)
}

/// A built-in handler's table, checked.
fn builtin(
    config: &HandlerConfig,
    slot: &str,
    task_key: &dyn Fn(&str) -> String,
) -> Result<HandlerSpec, ConfigError> {
    let key = |setting: &str| task_key(&format!("{slot}.{setting}"));
    let positive = |setting: &str, duration: Option<ConfigDuration>| match duration {
        Some(ConfigDuration(duration)) if duration.is_zero() => {
            Err(ConfigError::new(key(setting), "must be greater than zero"))
        }
        other => Ok(other.map(|duration| duration.0)),
    };
    let (kind, own, others) = match config.kind {
        HandlerType::Exec => ("exec", EXEC_KEYS, HTTP_KEYS),
        HandlerType::Http => ("http", HTTP_KEYS, EXEC_KEYS),
    };
    let given = [
        ("command", config.command.is_some()),
        ("input", config.input.is_some()),
        ("workers", config.workers.is_some()),
        ("url", config.url.is_some()),
        ("body", config.body.is_some()),
        ("headers", config.headers.is_some()),
    ];
    if let Some((foreign, _)) = given
        .iter()
        .find(|(name, set)| *set && others.contains(name))
    {
        return Err(ConfigError::new(
            key(foreign),
            format!(
                "not a setting of the {kind} handler (it takes {})",
                own.join(", ")
            ),
        ));
    }
    let missing = |name: &str| {
        ConfigError::new(
            task_key(slot),
            format!("missing key `{name}` (the {kind} handler needs it)"),
        )
    };
    let kind = match config.kind {
        HandlerType::Exec => {
            let command = config.command.as_ref().ok_or_else(|| missing("command"))?;
            if command.first().is_none_or(|program| program.is_empty()) {
                return Err(ConfigError::new(
                    key("command"),
                    "must name a program (and its arguments): [\"./handle.sh\"]",
                ));
            }
            if config.workers == Some(0) {
                return Err(ConfigError::new(key("workers"), "must be at least 1"));
            }
            let json_only = if config.workers.is_some() {
                Some("workers read JSON lines")
            } else if config.batch.is_some() {
                Some("a batch reaches the command as JSON lines")
            } else {
                None
            };
            HandlerKind::Exec(ExecSpec {
                command: command.clone(),
                input: encoding(config.input, json_only, &key("input"))?,
                workers: config.workers,
                timeout: positive("timeout", config.timeout)?,
            })
        }
        HandlerType::Http => {
            let url = config.url.as_deref().ok_or_else(|| missing("url"))?;
            let json_only = config.batch.map(|_| "a batch is POSTed as a JSON array");
            HandlerKind::Http(HttpSpec {
                url: http_url(url).map_err(|problem| ConfigError::new(key("url"), problem))?,
                body: encoding(config.body, json_only, &key("body"))?,
                headers: header_map(config.headers.as_ref(), &key)?,
                timeout: positive("timeout", config.timeout)?.unwrap_or(DEFAULT_HTTP_TIMEOUT),
            })
        }
    };
    let batch = config
        .batch
        .map(|batch| batch_spec(batch, &key))
        .transpose()?;
    Ok(HandlerSpec { kind, batch })
}

/// `batch = { size, timeout }`, checked; `key` names a key of the handler table.
fn batch_spec(
    BatchConfig { size, timeout }: BatchConfig,
    key: &dyn Fn(&str) -> String,
) -> Result<BatchSpec, ConfigError> {
    if size == Some(0) {
        return Err(ConfigError::new(key("batch.size"), "must be at least 1"));
    }
    if timeout.is_some_and(|timeout| timeout.0.is_zero()) {
        return Err(ConfigError::new(
            key("batch.timeout"),
            "must be greater than zero",
        ));
    }
    // The library's defaults when the handler does not say.
    Ok(BatchSpec {
        size: size.unwrap_or(BatcherOptions::DEFAULT_SIZE),
        timeout: timeout.map_or(BatcherOptions::DEFAULT_TIMEOUT, |timeout| timeout.0),
    })
}

/// The keys only an exec handler takes.
const EXEC_KEYS: &[&str] = &["command", "input", "workers", "timeout", "batch"];
/// The keys only an http handler takes.
const HTTP_KEYS: &[&str] = &["url", "body", "headers", "timeout", "batch"];

/// `input` or `body`: `raw` unless set, or `json` when `json_only` says why only JSON fits.
fn encoding(
    set: Option<Encoding>,
    json_only: Option<&str>,
    key: &str,
) -> Result<Encoding, ConfigError> {
    match (set, json_only) {
        (Some(Encoding::Raw), Some(why)) => Err(ConfigError::new(
            key,
            format!("must be \"json\" (or left out): {why}"),
        )),
        (Some(encoding), _) => Ok(encoding),
        (None, Some(_)) => Ok(Encoding::Json),
        (None, None) => Ok(Encoding::Raw),
    }
}

/// An http or https URL. Problems do not quote it: it may hold credentials.
fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("not a URL ({error})"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        scheme => Err(format!(
            "`{scheme}:` is not http or https: write \"http://host:port/path\""
        )),
    }
}

/// The `headers` table as request headers, values marked sensitive. Problems name the
/// header, never its value.
fn header_map(
    table: Option<&HeaderTable>,
    key: &dyn Fn(&str) -> String,
) -> Result<HeaderMap, ConfigError> {
    let mut headers = HeaderMap::new();
    for (name, value) in table.iter().flat_map(|table| &table.0) {
        let value = value.expose();
        let at = || key(&format!("headers.{name}"));
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new(at(), "not a valid HTTP header name"))?;
        if header.as_str().starts_with("sluice-") {
            return Err(ConfigError::new(
                at(),
                "Sluice-* headers carry the record's metadata: pick another name",
            ));
        }
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            ConfigError::new(
                at(),
                "the value is not a valid HTTP header value (printable ASCII; not shown here)",
            )
        })?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::super::load::{load_text, task_file};
    use super::*;

    /// A file of one cluster and one task with an exec handler and these lines added.
    fn file(task: &str) -> String {
        task_file(&format!(
            r#"handler = {{ type = "exec", command = ["true"] }}
{task}"#
        ))
    }

    /// The plan of task `billing` in `text`, or its first problem (`path: problem`).
    fn parse_plan(text: &str) -> Result<TaskPlan, String> {
        let mut loaded = load_text(
            std::path::Path::new("sluice.toml"),
            text,
            [],
            &[],
            &Registry::default(),
        );
        match loaded.problems.first() {
            Some(problem) => Err(format!("{}: {}", problem.path, problem.problem)),
            None => Ok(loaded.tasks.remove("billing").expect("the task")),
        }
    }

    fn plan(task: &str) -> Result<TaskPlan, String> {
        parse_plan(&file(task))
    }

    fn problem(task: &str) -> String {
        plan(task).unwrap_err().to_string()
    }

    #[test]
    fn retries_come_from_delays_or_a_backoff() {
        let plan = plan(r#"retry_delays = ["1s", "5s", "30s"]"#).unwrap();
        assert_eq!(plan.retries(), 3);
        assert_eq!(plan.policy.delay_before(2), Some(Duration::from_secs(5)));
        assert_eq!(plan.group, "billing");
        assert_eq!(plan.topics[0].retry(1), "orders.billing.retry.1");
        assert_eq!(plan.topics[0].dead_letter(), "orders.billing.dlq");

        let plan = self::plan(
            "retries = 4\nretry_backoff = { base = \"2s\", cap = \"5s\" }\ngroup = \"b2\"",
        )
        .unwrap();
        let delays: Vec<u64> = (1..=4)
            .map(|retry| plan.policy.delay_before(retry).unwrap().as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 5, 5]);
        assert_eq!(plan.topics[0].retry(4), "orders.b2.retry.4");

        assert_eq!(plan_retries("retries = 2"), 2);
        assert_eq!(plan_retries(""), 0);
    }

    #[test]
    fn group_settings_reach_the_consumer_options() {
        let plan = plan(
            "group_protocol = \"consumer\"\nremote_assignor = \"range\"\n\
             group_instance_id = \"{hostname}-{stage}\"\nstall_timeout = \"1m\"",
        )
        .unwrap();
        let printed = format!("{:?}", plan.consumer);
        assert!(printed.contains("group_protocol: Consumer"), "{printed}");
        assert!(
            printed.contains("remote_assignor: Some(Range)"),
            "{printed}"
        );
        assert!(printed.contains("stall_timeout: 60s"), "{printed}");
        let host = host_name();
        assert!(!host.is_empty());
        assert!(
            printed.contains(&format!("group_instance_id: Some(\"{host}-{{stage}}\")")),
            "{printed}"
        );
        assert!(
            problem("group_protocol = \"consumer\"\nsession_timeout = \"10s\"").starts_with(
                "tasks.billing.session_timeout: does not apply to group_protocol consumer"
            )
        );
        assert!(problem("remote_assignor = \"uniform\"")
            .starts_with("tasks.billing.remote_assignor: applies to group_protocol consumer only"));
        assert!(problem("group_instance_id = \"{pod}\"")
            .starts_with("tasks.billing.group_instance_id: "));
        assert!(problem("group_protocol = \"kip848\"").starts_with("tasks.billing.group_protocol"));
    }

    fn plan_retries(task: &str) -> usize {
        plan(task).unwrap().retries()
    }

    #[test]
    fn contradictions_and_bad_values_name_their_key() {
        assert_eq!(
            problem("retries = 2\nretry_delays = [\"1s\"]"),
            "tasks.billing.retries: give `retries` (with `retry_backoff`) or `retry_delays`, not both"
        );
        assert!(problem("retry_backoff = { base = \"1s\", cap = \"1m\" }")
            .starts_with("tasks.billing.retry_backoff: needs `retries`"));
        assert!(
            problem("retries = 2\nretry_backoff = { base = \"1m\", cap = \"1s\" }")
                .starts_with("tasks.billing.retry_backoff.cap: ")
        );
        assert!(problem("concurrency = 0").starts_with("tasks.billing.concurrency: "));
        assert!(problem("session_timeout = \"0s\"").starts_with("tasks.billing.session_timeout: "));
        assert!(
            problem("session_timeout = \"20s\"\nmax_poll_interval = \"10s\"")
                .starts_with("tasks.billing.max_poll_interval: ")
        );
        assert!(problem("group = \"a b\"").starts_with("tasks.billing.group: "));
        assert!(problem("retries = 2\nretry_topic_names = [\"r1\"]")
            .starts_with("tasks.billing.retry_topic_names: names 1 topics, but the task has 2"));
        assert!(
            problem("retries = 2\nretry_topic_names = [\"r1\", \"orders\"]")
                .starts_with("tasks.billing.retry_topic_names[1]: `orders` is the input topic")
        );
        assert!(problem("dead_letter_topic = \"bad name\"")
            .starts_with("tasks.billing.dead_letter_topic: "));
        assert!(
            problem("retries = 1\nretry_mode = \"in_place\"\nretry_topic_names = [\"r\"]")
                .starts_with("tasks.billing.retry_topic_names: ")
        );
        let two_topics = file("retries = 1\ndead_letter_topic = \"dead\"")
            .replace(r#"["orders"]"#, r#"["orders", "refunds"]"#);
        assert!(parse_plan(&two_topics)
            .unwrap_err()
            .starts_with("tasks.billing.dead_letter_topic: names one task's topics"));
        let bad_servers = file("").replace("127.0.0.1:9092", "nowhere");
        assert!(parse_plan(&bad_servers)
            .unwrap_err()
            .starts_with("clusters.main.bootstrap_servers: "));
    }

    #[test]
    fn overrides_name_the_topics() {
        let plan = plan(
            "retries = 2\nretry_topic_names = [\"slow-1\", \"slow-2\"]\ndead_letter_topic = \"dead\"",
        )
        .unwrap();
        assert_eq!(plan.topics[0].retry(2), "slow-2");
        assert_eq!(plan.topics[0].dead_letter(), "dead");
    }

    /// The plan of a task whose handler table is `handler`.
    fn with_handler(handler: &str) -> Result<TaskPlan, String> {
        let text = file("").replace(r#"{ type = "exec", command = ["true"] }"#, handler);
        parse_plan(&text)
    }

    fn handler_problem(handler: &str) -> String {
        with_handler(handler).unwrap_err().to_string()
    }

    #[test]
    fn handlers_get_their_defaults() {
        let plan = with_handler(r#"{ type = "exec", command = ["true"] }"#).unwrap();
        let HandlerKind::Exec(exec) = &plan.handler.kind else {
            panic!("{:?}", plan.handler)
        };
        assert_eq!(
            (exec.input, exec.workers, exec.timeout),
            (Encoding::Raw, None, None)
        );
        assert_eq!(plan.handler.batch, None);

        let plan = with_handler(
            r#"{ type = "exec", command = ["true"], workers = 4, timeout = "2s", batch = {} }"#,
        )
        .unwrap();
        let HandlerKind::Exec(exec) = &plan.handler.kind else {
            panic!("{:?}", plan.handler)
        };
        assert_eq!(exec.input, Encoding::Json);
        assert_eq!(exec.workers, Some(4));
        assert_eq!(exec.timeout, Some(Duration::from_secs(2)));
        assert_eq!(
            plan.handler.batch,
            Some(BatchSpec {
                size: 100,
                timeout: Duration::from_secs(1)
            })
        );

        let plan = with_handler(
            r#"{ type = "http", url = "https://example.com/in?x=1", headers = { Authorization = "Bearer s3cret" }, batch = { size = 10, timeout = "200ms" } }"#,
        )
        .unwrap();
        let HandlerKind::Http(http) = &plan.handler.kind else {
            panic!("{:?}", plan.handler)
        };
        assert_eq!(http.url.as_str(), "https://example.com/in?x=1");
        assert_eq!(http.body, Encoding::Json);
        assert_eq!(http.timeout, DEFAULT_HTTP_TIMEOUT);
        assert!(http.headers["authorization"].is_sensitive());
        assert!(!format!("{plan:?}").contains("s3cret"));
        assert_eq!(plan.handler.batch.map(|batch| batch.size), Some(10));
    }

    #[test]
    fn handler_problems_name_their_key() {
        for (handler, expected) in [
            (
                r#"{ type = "exec", url = "http://h/" }"#,
                "tasks.billing.handler.url: not a setting of the exec handler (it takes command, input, workers, timeout, batch)",
            ),
            (
                r#"{ type = "http", url = "http://h/", workers = 2 }"#,
                "tasks.billing.handler.workers: not a setting of the http handler",
            ),
            (
                r#"{ type = "http" }"#,
                "tasks.billing.handler: missing key `url` (the http handler needs it)",
            ),
            (
                r#"{ type = "exec" }"#,
                "tasks.billing.handler: missing key `command`",
            ),
            (
                r#"{ type = "exec", command = [] }"#,
                "tasks.billing.handler.command: must name a program",
            ),
            (
                r#"{ type = "exec", command = ["true"], workers = 0 }"#,
                "tasks.billing.handler.workers: must be at least 1",
            ),
            (
                r#"{ type = "exec", command = ["true"], workers = 2, input = "raw" }"#,
                "tasks.billing.handler.input: must be \"json\" (or left out): workers read JSON lines",
            ),
            (
                r#"{ type = "exec", command = ["true"], input = "raw", batch = { size = 5 } }"#,
                "tasks.billing.handler.input: must be \"json\" (or left out): a batch reaches",
            ),
            (
                r#"{ type = "exec", command = ["true"], timeout = "0s" }"#,
                "tasks.billing.handler.timeout: must be greater than zero",
            ),
            (
                r#"{ type = "exec", command = ["true"], batch = { size = 0 } }"#,
                "tasks.billing.handler.batch.size: must be at least 1",
            ),
            (
                r#"{ type = "http", url = "http://h/", batch = { timeout = "0ms" } }"#,
                "tasks.billing.handler.batch.timeout: must be greater than zero",
            ),
            (
                r#"{ type = "http", url = "http://h/", body = "raw", batch = {} }"#,
                "tasks.billing.handler.body: must be \"json\" (or left out): a batch is POSTed",
            ),
            (
                r#"{ type = "http", url = "h:8080" }"#,
                "tasks.billing.handler.url: `h:` is not http or https",
            ),
            (
                r#"{ type = "http", url = "/in" }"#,
                "tasks.billing.handler.url: not a URL",
            ),
            (
                r#"{ type = "http", url = "http://h/", headers = { "a b" = "x" } }"#,
                "tasks.billing.handler.headers.a b: not a valid HTTP header name",
            ),
            (
                r#"{ type = "http", url = "http://h/", headers = { Sluice-Topic = "x" } }"#,
                "tasks.billing.handler.headers.Sluice-Topic: Sluice-* headers",
            ),
        ] {
            let problem = handler_problem(handler);
            assert!(problem.starts_with(expected), "{handler}: {problem}");
        }
        let problem = handler_problem(
            r#"{ type = "http", url = "http://h/", headers = { Token = "s3cret\n" } }"#,
        );
        assert!(
            problem.starts_with("tasks.billing.handler.headers.Token: the value is not"),
            "{problem}"
        );
        assert!(!problem.contains("s3cret"), "{problem}");
    }

    #[test]
    fn handler_keys_are_strict() {
        let text = file("").replace(
            r#"{ type = "exec", command = ["true"] }"#,
            r#"{ type = "http", url = "http://h/", batch = { sise = 5 } }"#,
        );
        assert!(parse_plan(&text)
            .unwrap_err()
            .starts_with("tasks.billing.handler.batch.sise: unknown key (did you mean `size`?)"));
        let text = file("").replace(
            r#"{ type = "exec", command = ["true"] }"#,
            r#"{ type = "http", url = "http://h/", bdy = "json" }"#,
        );
        assert!(parse_plan(&text)
            .unwrap_err()
            .starts_with("tasks.billing.handler.bdy: unknown key (did you mean `body`?)"));
    }
}
