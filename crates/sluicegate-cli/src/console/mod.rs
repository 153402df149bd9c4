//! `sluice produce` and `sluice consume`: records between a topic and lines of text (or JSON),
//! for scripts and for looking at a topic by hand, as kcat and Kafka's console producer and
//! consumer do.
//!
//! Both commands check the cluster before anything else, through the library's
//! [`Admin`]: the brokers must answer within the connect timeout and the topic must exist, or
//! the command ends with one line on stderr. The library's clients are quiet: librdkafka's own
//! complaint about the failed connections is kept, and ends up in that line.
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
pub(crate) mod start;

use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use sluicegate::admin::{Admin, AdminError, NewTopic};
use sluicegate::reader::ReadError;
use sluicegate::ClusterOptions;

use crate::tool::exit::usage;

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
    /// The library's cluster options: the brokers, the connect timeout and the pass-through
    /// properties (which may override anything the client sets itself).
    pub fn options(&self) -> ClusterOptions {
        self.properties.iter().fold(
            ClusterOptions::new(&self.brokers).connect_timeout(self.connect_timeout),
            |options, (key, value)| options.librdkafka(key, value),
        )
    }

    /// A client that looks at the cluster; a refused configuration is a usage error.
    pub fn admin(&self, options: ClusterOptions) -> anyhow::Result<Admin> {
        Admin::new(options).map_err(|error| self.error(error))
    }

    /// What went wrong reaching the cluster, as one line: a refused configuration is a usage
    /// error; brokers that did not answer are named with librdkafka's last complaint.
    pub fn error(&self, error: AdminError) -> anyhow::Error {
        match error {
            AdminError::InvalidProperty {
                key,
                value,
                description,
                ..
            } => usage(format!("invalid property {key}={value}: {description}")),
            AdminError::InvalidConfiguration { reason, .. } => {
                usage(format!("invalid client configuration: {reason}"))
            }
            AdminError::Unreachable { detail, source, .. } => {
                self.unreachable(detail.unwrap_or_else(|| source.to_string()))
            }
            AdminError::Refused { reason, .. } => self.unreachable(reason),
            AdminError::Topic { topic, source } => anyhow!(
                "the brokers at {} could not describe topic `{topic}`: {source}",
                self.brokers
            ),
            other => anyhow::Error::new(other),
        }
    }

    /// The one line that says the brokers did not answer, with librdkafka's complaint.
    fn unreachable(&self, detail: String) -> anyhow::Error {
        anyhow!(
            "could not reach the brokers at {} within {}: {detail}",
            self.brokers,
            show_duration(self.connect_timeout)
        )
    }

    /// What went wrong opening or reading a topic: the cluster's errors as [`error`](Self::error)
    /// words them, the rest as they are.
    pub fn read_error(&self, error: ReadError) -> anyhow::Error {
        match error {
            ReadError::Cluster(error) => self.error(error),
            other => anyhow::Error::new(other),
        }
    }

    /// The partitions of `topic`, sorted, or `None` if the cluster has no such topic.
    pub fn partitions_of(&self, admin: &Admin, topic: &str) -> anyhow::Result<Option<Vec<i32>>> {
        admin.partitions(topic).map_err(|error| self.error(error))
    }

    /// Creates `topic` (replication factor 1), then waits (up to the connect timeout, at
    /// least 5 s) until the cluster lists it; returns its partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<Vec<i32>> {
        let cannot = |problem: String| {
            anyhow!(
                "could not create topic `{topic}` on {}: {problem} (a broker without the \
                 CreateTopics API, like `sluice dev-broker`, needs its topics given at start: \
                 --topic {topic}:{partitions})",
                self.brokers
            )
        };
        let admin = self.admin(self.options().request_timeout(self.connect_timeout))?;
        match admin.create_topics(&[NewTopic::new(topic, partitions).replication_factor(1)]) {
            Ok(_) => {}
            Err(AdminError::CreateTopic { source, .. }) => return Err(cannot(source.to_string())),
            Err(other) => return Err(self.error(other)),
        }
        match admin.wait_for_topics([topic], self.connect_timeout.max(Duration::from_secs(5))) {
            Ok(()) => {}
            Err(AdminError::NotVisible { .. }) => {
                return Err(anyhow!(
                    "topic `{topic}` was created on {} but its metadata does not show it",
                    self.brokers
                ))
            }
            Err(other) => return Err(self.error(other)),
        }
        self.partitions_of(&admin, topic)?.with_context(|| {
            format!(
                "topic `{topic}` was created on {} but its metadata does not show it",
                self.brokers
            )
        })
    }
}

/// librdkafka's own words for what went wrong: an error's source, else the error.
pub(crate) fn cause(error: &dyn std::error::Error) -> String {
    error
        .source()
        .map_or_else(|| error.to_string(), ToString::to_string)
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
