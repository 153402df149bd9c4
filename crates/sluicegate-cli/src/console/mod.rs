//! `sluice produce` and `sluice consume`: records between a topic and lines of text (or JSON),
//! for scripts and for looking at a topic by hand, as kcat and Kafka's console producer and
//! consumer do.
//!
//! Both commands check the cluster before anything else: the brokers must answer within the
//! connect timeout and the topic must exist, or the command ends with one line on stderr. The
//! metadata client that checks is quiet: librdkafka's own log lines about the failed
//! connections are kept, and the last one ends up in that line.
//!
//! # Lines
//!
//! A line is the bytes up to a newline (`\n`), which is not part of the record; nothing else is
//! special, so a carriage return before the newline is kept and any byte but `\n` goes through
//! as it is. The line format, shared by both commands, is `[HEADERS<TAB>][KEY<SEP>]VALUE`; see
//! [`lines`].

pub mod consume;
pub(crate) mod json;
pub mod lines;
pub mod produce;
mod start;

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::ClientContext;

use crate::exit::usage;

/// Where the cluster is and how to reach it: the options both commands share.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// The brokers to bootstrap from, HOST:PORT, comma-separated.
    #[arg(
        long,
        short = 'b',
        value_name = "HOST:PORT[,..]",
        default_value = "localhost:9092"
    )]
    pub brokers: String,
    /// How long to wait for the brokers to answer before giving up, e.g. 5s, 500ms, 1m.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// A librdkafka property, KEY=VALUE (security settings, for example); repeat for more.
    #[arg(long = "property", short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

impl ClusterArgs {
    /// A client configuration with the brokers, the connect timeout and the pass-through
    /// properties (which may override anything set before them).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        let millis = self.connect_timeout.as_millis().clamp(1_000, 2_147_483_647);
        config
            .set("bootstrap.servers", &self.brokers)
            .set("socket.connection.setup.timeout.ms", millis.to_string());
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// Creates a client of any kind from `config` with a [`QuietContext`]; a refused
    /// configuration is a usage error.
    pub fn create<C>(&self, config: &ClientConfig) -> anyhow::Result<C>
    where
        C: rdkafka::config::FromClientConfigAndContext<QuietContext>,
    {
        config
            .create_with_context(QuietContext::default())
            .map_err(|error| match error {
                KafkaError::ClientConfig(_, description, key, value) => {
                    usage(format!("invalid property {key}={value}: {description}"))
                }
                KafkaError::ClientCreation(reason) => {
                    usage(format!("invalid client configuration: {reason}"))
                }
                other => anyhow!(other).context("could not create a Kafka client"),
            })
    }

    /// The one line that says the brokers did not answer: librdkafka's last complaint kept in
    /// `context`, else `error`.
    pub fn unreachable(&self, context: &QuietContext, error: &KafkaError) -> anyhow::Error {
        let detail = context.last_problem().unwrap_or_else(|| error.to_string());
        anyhow!(
            "could not reach the brokers at {} within {}: {detail}",
            self.brokers,
            show_duration(self.connect_timeout)
        )
    }

    /// A short-lived client that looks at the cluster before the real work starts.
    pub fn probe(&self) -> anyhow::Result<Probe<'_>> {
        Ok(Probe {
            cluster: self,
            client: self.create(&self.client_config())?,
        })
    }
}

/// Looks at the cluster: whether it answers, what partitions a topic has, creating a topic.
///
/// A producer client, because rdkafka hands a producer's error events (with librdkafka's
/// reason, such as "Connection refused") to its context, where a consumer's lose the reason.
pub struct Probe<'a> {
    cluster: &'a ClusterArgs,
    client: BaseProducer<QuietContext>,
}

impl Probe<'_> {
    /// The partitions of `topic`, sorted, or `None` if the cluster has no such topic. Asks for
    /// the metadata of every topic, which (unlike asking for one) never auto-creates it.
    pub fn partitions_of(&self, topic: &str) -> anyhow::Result<Option<Vec<i32>>> {
        let metadata = self
            .client
            .client()
            .fetch_metadata(None, self.cluster.connect_timeout)
            .map_err(|error| self.unreachable(&error))?;
        let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
            return Ok(None);
        };
        match found.error().map(RDKafkaErrorCode::from) {
            None => {}
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(None),
            Some(code) => bail!(
                "the brokers at {} could not describe topic `{topic}`: {code}",
                self.cluster.brokers
            ),
        }
        let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        if partitions.is_empty() {
            return Ok(None);
        }
        partitions.sort_unstable();
        Ok(Some(partitions))
    }

    /// Creates `topic` through the admin API, then waits (up to the connect timeout, at least
    /// 5 s) until its metadata shows; returns its partitions.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        runtime: &tokio::runtime::Runtime,
    ) -> anyhow::Result<Vec<i32>> {
        let cluster = self.cluster;
        let cannot = |problem: String| {
            anyhow!(
                "could not create topic `{topic}` on {}: {problem} (a broker without the \
                 CreateTopics API, like `sluice dev-broker`, needs its topics given at start: \
                 --topic {topic}:{partitions})",
                cluster.brokers
            )
        };
        let admin: AdminClient<QuietContext> = cluster.create(&cluster.client_config())?;
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new()
            .request_timeout(Some(cluster.connect_timeout))
            .operation_timeout(Some(cluster.connect_timeout));
        let results = runtime
            .block_on(admin.create_topics([&new_topic], &options))
            .map_err(|error| cannot(error.to_string()))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(cannot(code.to_string())),
            }
        }
        let deadline = Instant::now() + cluster.connect_timeout.max(Duration::from_secs(5));
        loop {
            if let Some(found) = self.partitions_of(topic)? {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                bail!(
                    "topic `{topic}` was created on {} but its metadata does not show it",
                    cluster.brokers
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The one line that says the brokers did not answer, with librdkafka's last complaint.
    fn unreachable(&self, error: &KafkaError) -> anyhow::Error {
        // Serve the error events queued meanwhile: they carry librdkafka's reason.
        self.client.poll(Duration::ZERO);
        self.cluster.unreachable(self.client.context(), error)
    }
}

/// A client context that keeps librdkafka's warnings and errors instead of logging them (they
/// are logged at debug level only), so a failed start prints one line, not a dozen.
#[derive(Default)]
pub struct QuietContext {
    last_problem: Mutex<Option<String>>,
}

impl QuietContext {
    /// librdkafka's last warning or error, if any.
    pub fn last_problem(&self) -> Option<String> {
        self.last_problem
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn note(&self, problem: &str) {
        // "[thrd:host:port/bootstrap]: host:port/bootstrap: Connect to ..." names the thread
        // first; the rest says it all.
        let problem = match problem
            .strip_prefix("[thrd:")
            .and_then(|rest| rest.split_once("]: "))
        {
            Some((_, rest)) => rest,
            None => problem,
        };
        *self
            .last_problem
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(problem.to_owned());
    }
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, facility, message);
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        ) {
            self.note(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason);
        self.note(reason);
    }
}

impl ConsumerContext for QuietContext {}

impl ProducerContext for QuietContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, (): ()) {}
}

/// Checks a topic name: 1-249 characters of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
pub fn parse_topic(name: &str) -> Result<String, String> {
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 249 || !valid || name == "." || name == ".." {
        return Err(format!(
            "`{name}` is not a valid topic name (1-249 characters of a-z A-Z 0-9 . _ -)"
        ));
    }
    Ok(name.to_owned())
}

/// Parses `KEY=VALUE`.
fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// Parses a duration: a number with a unit `ms`, `s` or `m` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (for example 5s, 500ms, 1m)"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s or m")),
    };
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("`{text}` is not a duration (for example 5s, 500ms, 1m)"))?;
    if duration < Duration::from_millis(1) || duration > Duration::from_secs(3600) {
        return Err(format!("`{text}` must be between 1ms and 60m"));
    }
    Ok(duration)
}

/// A duration as people write it: `5 s`, `250 ms`.
pub fn show_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// A separator given on the command line, as bytes: `\t`, `\\` and `\xHH` are escapes, so a
/// tab can be typed as `'\t'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Separator(pub Vec<u8>);

impl FromStr for Separator {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = Vec::with_capacity(text.len());
        let mut rest = text.as_bytes();
        while let Some((&byte, tail)) = rest.split_first() {
            rest = tail;
            if byte != b'\\' {
                bytes.push(byte);
                continue;
            }
            match rest.split_first() {
                Some((b't', tail)) => {
                    bytes.push(b'\t');
                    rest = tail;
                }
                Some((b'\\', tail)) => {
                    bytes.push(b'\\');
                    rest = tail;
                }
                Some((b'x', tail)) => {
                    let hex = tail
                        .get(..2)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                        .ok_or_else(|| format!("`{text}`: \\x needs two hex digits"))?;
                    bytes.push(hex);
                    rest = &tail[2..];
                }
                _ => return Err(format!("`{text}`: unknown escape (use \\t, \\\\ or \\xHH)")),
            }
        }
        if bytes.is_empty() {
            return Err("the separator must not be empty".to_owned());
        }
        if bytes.contains(&b'\n') {
            return Err("the separator cannot contain a newline: lines end there".to_owned());
        }
        Ok(Self(bytes))
    }
}

/// Waits for Ctrl-C (or SIGTERM) in the background: the first sets `stop`, the second ends
/// the process at once with status 130.
pub fn stop_on_signal(
    runtime: &tokio::runtime::Runtime,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    wake: Option<std::sync::Arc<tokio::sync::Notify>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let _guard = runtime.enter();
    let mut interrupt = signal(SignalKind::interrupt()).context("could not listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("could not listen for SIGTERM")?;
    runtime.spawn(async move {
        let mut first = true;
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if !first {
                std::process::exit(130);
            }
            first = false;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(wake) = &wake {
                wake.notify_one();
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_take_escapes() {
        let parse = |text: &str| text.parse::<Separator>().map(|separator| separator.0);
        assert_eq!(parse(":"), Ok(b":".to_vec()));
        assert_eq!(parse("\\t"), Ok(b"\t".to_vec()));
        assert_eq!(parse("a\\\\b"), Ok(b"a\\b".to_vec()));
        assert_eq!(parse("\\xff|"), Ok(vec![0xff, b'|']));
        assert!(parse("").is_err());
        assert!(parse("\\q").is_err());
        assert!(parse("\\x4").is_err());
        assert!(parse("\\x0a").is_err());
    }

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("fast").is_err());
        assert_eq!(show_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(show_duration(Duration::from_secs(5)), "5 s");
    }

    #[test]
    fn topic_names_are_checked() {
        assert!(parse_topic("orders.v2_x-1").is_ok());
        assert!(parse_topic("").is_err());
        assert!(parse_topic("a b").is_err());
        assert!(parse_topic("..").is_err());
    }

    #[test]
    fn properties_are_key_value() {
        assert_eq!(
            parse_property("security.protocol=SSL"),
            Ok(("security.protocol".into(), "SSL".into()))
        );
        assert_eq!(parse_property("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=x").is_err());
    }
}
