//! `sluice dev-broker`: the embedded broker (librdkafka's mock cluster) as a process of its own,
//! for local development and for benchmarks that must not count the broker's memory.
//!
//! The first line of stdout is the bootstrap address and nothing else, written once the topics
//! exist, so a script can read it and connect at once.
//!
//! The mock brokers always listen on ports of their own choosing. With `--port`, each broker
//! advertises a port of ours instead, where this process forwards the bytes to it unchanged.

use std::io::Read as _;
use std::str::FromStr;

use anyhow::Context as _;
use clap::Args;
use sluicegate::EmbeddedBroker;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::out;

#[derive(Debug, Args)]
#[command(
    after_help = "Limits: the embedded broker keeps at most 5 MiB and 100,000 record batches per \
partition and silently drops the oldest batches beyond that, so a consumer that starts late may find \
records (and its committed offset) gone. Keep each partition's data below that, or consume while \
producing. It has no CreateTopics API: create topics with --topic. A client asking for an unknown \
topic's metadata with auto-creation allowed creates it with 4 partitions; `sluice process` does so \
for a task's retry and dead-letter topics, after its CreateTopics request times out (10 s).

The first line of stdout is the bootstrap address (for example 127.0.0.1:39541), printed once the \
topics exist. Runs until SIGINT or SIGTERM."
)]
pub struct DevBrokerArgs {
    /// Brokers in the cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    brokers: i32,
    /// The port of 127.0.0.1 to serve broker 1 on (broker N: PORT+N-1), so the address stays
    /// the same across restarts; default: free ports that change at every start.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// A topic to create, as NAME:PARTITIONS (NAME alone: 1 partition); repeat for more.
    #[arg(long = "topic", value_name = "NAME:PARTITIONS")]
    topics: Vec<TopicSpec>,
    /// Print only the bootstrap address: no banner on stderr.
    #[arg(long)]
    print_bootstrap_only: bool,
    /// Also stop when stdin reaches end of file (used when it runs as a child process, of
    /// `sluice-lab` or a test, so it never outlives its parent).
    #[arg(long, hide = true)]
    exit_on_stdin_close: bool,
}

/// A topic given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
}

impl FromStr for TopicSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (name, partitions) = match spec.rsplit_once(':') {
            Some((name, partitions)) => {
                let partitions = partitions
                    .parse::<i32>()
                    .ok()
                    .filter(|partitions| (1..=100_000).contains(partitions))
                    .ok_or_else(|| {
                        format!("`{partitions}` is not a partition count from 1 to 100000")
                    })?;
                (name, partitions)
            }
            None => (spec, 1),
        };
        let valid = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if name.is_empty() || name.len() > 249 || !valid || name == "." || name == ".." {
            return Err(format!(
                "`{name}` is not a valid topic name (1-249 characters of a-z A-Z 0-9 . _ -)"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            partitions,
        })
    }
}

pub fn run(args: DevBrokerArgs) -> anyhow::Result<()> {
    let broker =
        EmbeddedBroker::start(args.brokers).context("could not start the embedded broker")?;
    for topic in &args.topics {
        broker
            .create_topic(&topic.name, topic.partitions)
            .with_context(|| format!("could not create topic `{}`", topic.name))?;
    }
    let runtime = crate::runtime()?;
    let bootstrap = match args.port {
        Some(port) => runtime.block_on(serve_on_port(&broker, port))?,
        None => broker.bootstrap_servers(),
    };
    out!("{bootstrap}")?;
    if !args.print_bootstrap_only {
        eprintln!(
            "sluice dev-broker: {} broker(s) at {bootstrap} (bootstrap.servers={bootstrap})",
            args.brokers
        );
        for topic in &args.topics {
            eprintln!(
                "  topic {} with {} partition(s)",
                topic.name, topic.partitions
            );
        }
        eprintln!("  keeps at most 5 MiB and 100,000 record batches per partition; Ctrl-C to stop");
    }
    let reason = runtime.block_on(wait_for_stop(args.exit_on_stdin_close))?;
    if !args.print_bootstrap_only {
        eprintln!("sluice dev-broker: stopping ({reason})");
    }
    drop(runtime);
    drop(broker);
    Ok(())
}

/// Listens on 127.0.0.1:`port` + N - 1 for each broker N, makes the broker advertise that
/// port, and forwards every connection to the port it really listens on. Returns the new
/// bootstrap address list.
async fn serve_on_port(broker: &EmbeddedBroker, port: u16) -> anyhow::Result<String> {
    let upstreams = broker.bootstrap_servers();
    let mut addresses = Vec::new();
    for (index, upstream) in upstreams.split(',').enumerate() {
        let port = u16::try_from(usize::from(port) + index)
            .ok()
            .context("--port: the brokers' ports would pass 65535")?;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("--port: cannot listen on 127.0.0.1:{port}"))?;
        let broker_id = i32::try_from(index + 1).unwrap_or(i32::MAX);
        broker
            .advertise(broker_id, "127.0.0.1", port)
            .context("could not change the embedded broker's advertised port")?;
        tokio::spawn(forward(listener, upstream.to_owned()));
        addresses.push(format!("127.0.0.1:{port}"));
    }
    Ok(addresses.join(","))
}

/// Copies the bytes of every connection accepted on `listener` to and from `upstream`.
async fn forward(listener: TcpListener, upstream: String) {
    while let Ok((mut client, _)) = listener.accept().await {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&upstream).await {
                Ok(mut broker) => {
                    let _ = client.set_nodelay(true);
                    let _ = broker.set_nodelay(true);
                    // Either side closing ends the connection; nothing to report.
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                }
                Err(error) => tracing::warn!(%upstream, %error, "cannot reach the embedded broker"),
            }
        });
    }
}

/// Waits for SIGINT, SIGTERM or (optionally) the end of stdin; returns which.
async fn wait_for_stop(watch_stdin: bool) -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("could not listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("could not listen for SIGTERM")?;
    let (stdin_closed, mut stdin_closed_rx) = mpsc::channel::<()>(1);
    // Without the watcher, this sender stays alive (and silent) until we return.
    let _idle_sender = if watch_stdin {
        // A plain thread: reading stdin blocks, and it must not hold a runtime worker.
        std::thread::Builder::new()
            .name("stdin-watch".to_owned())
            .spawn(move || {
                let mut sink = [0u8; 256];
                let mut stdin = std::io::stdin().lock();
                while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
                let _ = stdin_closed.blocking_send(());
            })
            .context("could not start the stdin watcher")?;
        None
    } else {
        Some(stdin_closed)
    };
    Ok(tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
        Some(()) = stdin_closed_rx.recv() => "stdin closed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_topic_specs() {
        assert_eq!(
            "orders:8".parse::<TopicSpec>(),
            Ok(TopicSpec {
                name: "orders".into(),
                partitions: 8
            })
        );
        assert_eq!(
            "orders".parse::<TopicSpec>().map(|spec| spec.partitions),
            Ok(1)
        );
        assert!("orders:0".parse::<TopicSpec>().is_err());
        assert!("orders:x".parse::<TopicSpec>().is_err());
        assert!("bad name:3".parse::<TopicSpec>().is_err());
        assert!(":3".parse::<TopicSpec>().is_err());
    }
}
