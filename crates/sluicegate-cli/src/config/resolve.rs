//! A task of the configuration file, checked and turned into the library's settings: consumer
//! and producer options, the retry policy, the topic names and the pipeline's settings.

use std::collections::BTreeMap;
use std::time::Duration;

use sluicegate::pipeline::ProcessingOrder;
use sluicegate::producer::ProducerOptions;
use sluicegate::retry::{RetryPolicy, RetryTopics};
use sluicegate::{ConsumerOptions, OptionsError};

use super::{Backoff, Cluster, ConfigDuration, ConfigError, HandlerConfig, Order, RetryMode, Task};

/// The delays of `retries = N` without `retry_backoff`: 1 s, doubling up to 1 min.
const DEFAULT_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// The group heartbeat: librdkafka's 3 s, or a third of a shorter session timeout.
const HEARTBEAT: Duration = Duration::from_secs(3);

/// Everything a task needs, checked (without connecting).
#[derive(Debug, Clone)]
pub struct TaskPlan {
    /// The task's name in the file.
    pub name: String,
    /// Stage 0's consumer group.
    pub group: String,
    /// The brokers.
    pub bootstrap_servers: String,
    /// librdkafka properties for every client.
    pub librdkafka: BTreeMap<String, String>,
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
    /// The exec handler's program and arguments.
    pub command: Vec<String>,
}

impl TaskPlan {
    /// Checks `task` (named `name`) and builds its settings; errors name the key path.
    pub fn resolve(name: &str, task: &Task, cluster: &Cluster) -> Result<Self, ConfigError> {
        let key = |setting: &str| format!("tasks.{name}.{setting}");
        let group = task.group.clone().unwrap_or_else(|| name.to_owned());
        let consumer =
            consumer_options(task, cluster, &group).map_err(|error| rename(error, name))?;
        let mut producer = ProducerOptions::new()
            .bootstrap_servers(&cluster.bootstrap_servers)
            .client_id(format!("sluice-{name}"));
        for (property, value) in &cluster.librdkafka {
            producer = producer.librdkafka(property, value);
        }
        producer.validate().map_err(|error| rename(error, name))?;

        let policy = policy(task, &key)?;
        let in_place = task.retry_mode == RetryMode::InPlace;
        if let Some(concurrency) = task.concurrency {
            if concurrency == 0 {
                return Err(ConfigError::new(key("concurrency"), "must be at least 1"));
            }
        }
        if task
            .handler_timeout
            .is_some_and(|timeout| timeout.0.is_zero())
        {
            return Err(ConfigError::new(
                key("handler_timeout"),
                "must be greater than zero",
            ));
        }
        let topics = retry_topics(task, &group, &policy, in_place, &key)?;
        let HandlerConfig::Exec { command } = &task.handler;
        if command.first().is_none_or(|program| program.is_empty()) {
            return Err(ConfigError::new(
                key("handler.command"),
                "must name a program (and its arguments): [\"./handle.sh\"]",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            group,
            bootstrap_servers: cluster.bootstrap_servers.clone(),
            librdkafka: cluster.librdkafka.clone(),
            consumer,
            producer,
            policy,
            in_place,
            topics,
            order: match task.order {
                Order::Partition => ProcessingOrder::Partition,
                Order::Key => ProcessingOrder::Key,
                Order::Unordered => ProcessingOrder::Unordered,
            },
            concurrency: task.concurrency,
            handler_timeout: task.handler_timeout.map(|timeout| timeout.0),
            command: command.clone(),
        })
    }

    /// The number of retries (stages 1 to this read retry topics, unless in place).
    pub fn retries(&self) -> usize {
        self.policy.retries()
    }
}

fn consumer_options(
    task: &Task,
    cluster: &Cluster,
    group: &str,
) -> Result<ConsumerOptions, OptionsError> {
    let mut options = ConsumerOptions::new(
        &cluster.bootstrap_servers,
        group,
        task.topics.iter().cloned(),
    );
    let duration = |setting: Option<ConfigDuration>| setting.map(|duration| duration.0);
    if let Some(timeout) = duration(task.session_timeout) {
        options = options
            .session_timeout(timeout)
            .heartbeat_interval(HEARTBEAT.min(timeout / 3).max(Duration::from_millis(1)));
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
    for (property, value) in &cluster.librdkafka {
        options = options.librdkafka(property, value);
    }
    options.validate()?;
    Ok(options)
}

/// Maps a library option's name to the configuration key that set it.
fn rename(error: OptionsError, task: &str) -> ConfigError {
    let path = match error.key.as_str() {
        "bootstrap_servers" => "cluster.bootstrap_servers".to_owned(),
        "group_id" => format!("tasks.{task}.group"),
        key if key.starts_with("librdkafka") => format!("cluster.{key}"),
        key => format!("tasks.{task}.{key}"),
    };
    ConfigError::new(path, error.problem)
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
        (None, None, None) => return Ok(RetryPolicy::none()),
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
    Ok(policy)
}

/// The retry and dead-letter topics of each input topic, with the configured names.
fn retry_topics(
    task: &Task,
    group: &str,
    policy: &RetryPolicy,
    in_place: bool,
    key: &dyn Fn(&str) -> String,
) -> Result<Vec<RetryTopics>, ConfigError> {
    let overrides = task.retry_topic_names.is_some() || task.dead_letter_topic.is_some();
    if overrides && task.topics.len() != 1 {
        let setting = if task.retry_topic_names.is_some() {
            "retry_topic_names"
        } else {
            "dead_letter_topic"
        };
        return Err(ConfigError::new(
            key(setting),
            format!(
                "names one task's topics, so it needs exactly one input topic (the task reads {})",
                task.topics.len()
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
    task.topics
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

#[cfg(test)]
mod tests {
    use super::super::ConfigFile;
    use super::*;

    fn file(task: &str) -> String {
        format!(
            r#"
            [cluster]
            bootstrap_servers = "127.0.0.1:9092"
            [tasks.billing]
            topics = ["orders"]
            handler = {{ type = "exec", command = ["true"] }}
            {task}
            "#
        )
    }

    fn plan(task: &str) -> Result<TaskPlan, ConfigError> {
        ConfigFile::parse(&file(task)).unwrap().plan("billing")
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

        let plan = super::super::ConfigFile::parse(&file(
            "retries = 4\nretry_backoff = { base = \"2s\", cap = \"5s\" }\ngroup = \"b2\"",
        ))
        .unwrap()
        .plan("billing")
        .unwrap();
        let delays: Vec<u64> = (1..=4)
            .map(|retry| plan.policy.delay_before(retry).unwrap().as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 5, 5]);
        assert_eq!(plan.topics[0].retry(4), "orders.b2.retry.4");

        assert_eq!(plan_retries("retries = 2"), 2);
        assert_eq!(plan_retries(""), 0);
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
        assert!(ConfigFile::parse(&two_topics)
            .unwrap()
            .plan("billing")
            .unwrap_err()
            .to_string()
            .starts_with("tasks.billing.dead_letter_topic: names one task's topics"));
        let bad_servers = file("").replace("127.0.0.1:9092", "nowhere");
        assert!(ConfigFile::parse(&bad_servers)
            .unwrap()
            .plan("billing")
            .unwrap_err()
            .to_string()
            .starts_with("cluster.bootstrap_servers: "));
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
}
