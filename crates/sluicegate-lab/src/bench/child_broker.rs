//! A development broker run as a child process (this binary's hidden `dev-broker`, which is
//! `sluice dev-broker`), so the broker's data does not count in the benchmark's memory.
//!
//! The child watches its stdin: when this process exits, however it exits, the pipe closes and
//! the broker stops. Dropping a [`ChildBroker`] closes the pipe and waits for it.
//!
//! [`BenchBroker`] is what a bench runs on: the broker passed with `--brokers`, or else a child:
//! a development broker, or Apache Kafka started through `scripts/kafka start` (by
//! `sluicegate_testing::KafkaCluster`, whose watchdog stops it when this process exits).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How long the child may take to print its bootstrap address.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stopping child may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ChildBroker {
    child: Child,
    /// Closing it tells the child to stop.
    stdin: Option<ChildStdin>,
    bootstrap_servers: String,
}

impl ChildBroker {
    /// Starts `sluice-lab dev-broker` with these topics (name, partitions) and waits for its
    /// bootstrap address.
    pub fn start(topics: &[(&str, i32)]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("could not find the sluice-lab executable")?;
        let mut command = Command::new(&exe);
        command
            .args(sluicegate_cli::tool::logging::global_flags())
            .args([
                "dev-broker",
                "--print-bootstrap-only",
                "--exit-on-stdin-close",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, partitions) in topics {
            command.arg("--topic").arg(format!("{name}:{partitions}"));
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("could not start `{} dev-broker`", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .context("the dev-broker's stdout was not captured")?;
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("dev-broker-stdout".to_owned())
            .spawn(move || {
                let mut line = String::new();
                let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
                let _ = line_tx.send(read);
            })
            .context("could not start a thread to read the dev-broker's address")?;
        let mut broker = Self {
            child,
            stdin,
            bootstrap_servers: String::new(),
        };
        let line = match line_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(error)) => return Err(error).context("could not read the dev-broker's address"),
            Err(_) => bail!(
                "the dev-broker printed no address within {} s",
                START_TIMEOUT.as_secs()
            ),
        };
        let address = line.trim();
        if address.is_empty() {
            bail!("the dev-broker exited before printing its address");
        }
        broker.bootstrap_servers = address.to_owned();
        Ok(broker)
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        tracing::warn!(
            pid = self.child.id(),
            "the dev-broker did not stop; killing it"
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker a bench runs on: the one passed with `--brokers`, or else a [`ChildBroker`]
/// (stopped when this is dropped).
pub struct BenchBroker {
    /// Held only so that dropping this stops it.
    _child: Option<ChildBroker>,
    /// Held only so that it runs as long as this; stopped when this process exits.
    _kafka: Option<sluicegate_testing::KafkaCluster>,
    bootstrap_servers: String,
    label: String,
}

impl BenchBroker {
    /// `brokers` when given; otherwise starts a child broker with these topics (name,
    /// partitions).
    pub fn given_or_child(brokers: Option<&str>, topics: &[(&str, i32)]) -> anyhow::Result<Self> {
        Ok(match brokers {
            Some(brokers) => Self {
                _child: None,
                _kafka: None,
                bootstrap_servers: brokers.to_owned(),
                label: brokers.to_owned(),
            },
            None => {
                let child = ChildBroker::start(topics)?;
                let address = child.bootstrap_servers().to_owned();
                Self {
                    _child: Some(child),
                    _kafka: None,
                    label: format!("development broker (child process) at {address}"),
                    bootstrap_servers: address,
                }
            }
        })
    }

    /// `brokers` when given; otherwise a single-node Apache Kafka started for this run
    /// (`scripts/kafka start`, which installs Kafka from Maven Central the first time).
    pub fn given_or_kafka(brokers: Option<&str>) -> anyhow::Result<Self> {
        if brokers.is_some() {
            return Self::given_or_child(brokers, &[]);
        }
        eprintln!("starting Apache Kafka (scripts/kafka start) for this run");
        let kafka =
            sluicegate_testing::KafkaCluster::start(&sluicegate_testing::KafkaSetup::single_node())
                .map_err(|message| anyhow::anyhow!("could not start Apache Kafka: {message}"))?;
        let address = kafka.bootstrap_servers();
        Ok(Self {
            _child: None,
            label: format!("Apache Kafka (single node, started for this run) at {address}"),
            bootstrap_servers: address,
            _kafka: Some(kafka),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// How reports name the broker.
    pub fn label(&self) -> &str {
        &self.label
    }
}
