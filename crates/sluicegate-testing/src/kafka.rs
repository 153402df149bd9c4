//! Apache Kafka clusters for the tests, started through `scripts/kafka start`.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use std::{env, fs, panic, thread};

/// How long [`KafkaCluster::start`] waits for the cluster to answer (the script's own readiness
/// probe gives up after 90 s; this only guards against a hung script).
const START_TIMEOUT: Duration = Duration::from_secs(150);

/// Runs `scripts/kafka start ...` (`"$@"`) in a session and process group of its own (`setsid`:
/// its process id is the group's id) with its output in `$dir`,
/// polls every 200 ms whether the test process `$parent` is still alive, and once it is gone
/// kills the whole group at once (the data is thrown away) and removes `$dir`, unless a test
/// panicked and left the `keep` marker there. Records the script's exit status in
/// `$dir/exited` if it stops on its own.
const WATCHDOG: &str = r#"
parent=$1; dir=$2; shift 2
setsid "$@" >"$dir/addresses" 2>"$dir/script.log" </dev/null &
child=$!
while kill -0 "$parent" 2>/dev/null; do
  if [ -n "$child" ] && ! kill -0 "$child" 2>/dev/null; then
    wait "$child"; echo "$?" >"$dir/exited"; child=
  fi
  sleep 0.2
done
[ -n "$child" ] && kill -KILL "-$child" 2>/dev/null
[ -e "$dir/keep" ] || rm -rf "$dir"
"#;

/// What to start: node count, extra listeners, broker properties and SCRAM users.
#[derive(Debug, Clone, Default)]
pub struct KafkaSetup {
    nodes: u8,
    listeners: Vec<(String, String)>,
    properties: Vec<(String, String)>,
    scram: Vec<String>,
    respawn: bool,
}

impl KafkaSetup {
    /// One node.
    pub fn single_node() -> KafkaSetup {
        KafkaSetup {
            nodes: 1,
            ..KafkaSetup::default()
        }
    }

    /// Three nodes (ids 1-3), internal topics at replication factor 3 and
    /// `min.insync.replicas` 2.
    pub fn three_nodes() -> KafkaSetup {
        KafkaSetup {
            nodes: 3,
            ..KafkaSetup::default()
        }
    }

    /// One more client listener `name` (capitals) speaking `protocol` (`SSL`, `SASL_SSL`, ...)
    /// on a free port; [`KafkaCluster::listener`] gives its address.
    pub fn listener(mut self, name: &str, protocol: &str) -> KafkaSetup {
        self.listeners.push((name.to_owned(), protocol.to_owned()));
        self
    }

    /// A broker property, added to (or overriding) those `scripts/kafka` writes.
    pub fn property(mut self, key: &str, value: impl Into<String>) -> KafkaSetup {
        self.properties.push((key.to_owned(), value.into()));
        self
    }

    /// Group timings short enough for tests under the consumer group protocol (KIP-848),
    /// whose session timeout and heartbeat interval the broker sets: heartbeats every 500 ms,
    /// a session of 6 s (the classic protocol's minimum session timeout, also 6 s, stays).
    pub fn quick_groups(self) -> KafkaSetup {
        self.property("group.consumer.min.heartbeat.interval.ms", "500")
            .property("group.consumer.heartbeat.interval.ms", "500")
            .property("group.consumer.min.session.timeout.ms", "6000")
            .property("group.consumer.session.timeout.ms", "6000")
    }

    /// A node that stops (a failover test kills it) is started again at once on its storage
    /// (`scripts/kafka start --respawn`); each node's pid is in
    /// [`KafkaCluster::cluster_dir`]`/node-N/pid`.
    pub fn respawn(mut self) -> KafkaSetup {
        self.respawn = true;
        self
    }

    /// A SCRAM credential written when the storage is formatted, e.g.
    /// `("SCRAM-SHA-256", "alice", "secret")`.
    pub fn scram_user(mut self, mechanism: &str, name: &str, password: &str) -> KafkaSetup {
        self.scram
            .push(format!("{mechanism}=[name={name},password={password}]"));
        self
    }
}

/// An Apache Kafka cluster started by `scripts/kafka start` for this test process, on free
/// ports of 127.0.0.1 in a temporary directory.
///
/// A watchdog kills it and removes the directory once the test process exits; if a test
/// panicked, the directory (each node's `kafka.log`) is kept and its path printed.
#[derive(Debug)]
pub struct KafkaCluster {
    bootstrap_servers: String,
    listeners: BTreeMap<String, String>,
    dir: PathBuf,
    nodes: u8,
    /// The `sh` watchdog that runs the script. Never waited for: it outlives the test process.
    _watchdog: Child,
}

impl KafkaCluster {
    /// Starts a cluster as `setup` says and returns once it answers a metadata request with
    /// every broker registered.
    ///
    /// # Errors
    ///
    /// If the script cannot run (Java or Maven missing, Kafka not resolvable) or the cluster
    /// does not become ready; the message ends with the script's log.
    pub fn start(setup: &KafkaSetup) -> Result<KafkaCluster, String> {
        let script = script()?;
        let dir = tempfile::Builder::new()
            .prefix("sluicegate-kafka-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory for Kafka: {e}"))?
            // The watchdog removes it once the test process is gone (statics are never dropped).
            .keep();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sluicegate-kafka-watchdog")
            .arg(std::process::id().to_string())
            .arg(&dir)
            .arg(&script)
            .args(["start", "--port", "0", "--nodes"])
            .arg(setup.nodes.max(1).to_string())
            .arg("--dir")
            .arg(dir.join("cluster"));
        for (name, protocol) in &setup.listeners {
            command.arg("--listener").arg(format!("{name}:{protocol}"));
        }
        for (key, value) in &setup.properties {
            command.arg("--set").arg(format!("{key}={value}"));
        }
        for spec in &setup.scram {
            command.arg("--scram").arg(spec);
        }
        if setup.respawn {
            command.arg("--respawn");
        }
        let watchdog = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: a Ctrl-C on the test run must not kill the watchdog before it
            // has cleaned up.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {} under sh: {e}", script.display()))?;
        keep_dir_on_panic(&dir);
        let addresses = wait_for_addresses(&dir, 1 + setup.listeners.len())?;
        let mut lines = addresses.lines();
        let bootstrap_servers = lines.next().unwrap_or_default().to_owned();
        let listeners = lines
            .filter_map(|line| line.split_once('='))
            .map(|(name, address)| (name.to_owned(), address.to_owned()))
            .collect();
        Ok(KafkaCluster {
            bootstrap_servers,
            listeners,
            dir,
            nodes: setup.nodes.max(1),
            _watchdog: watchdog,
        })
    }

    /// The `bootstrap.servers` value of the PLAINTEXT listener, e.g. `127.0.0.1:41234`.
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap_servers.clone()
    }

    /// The addresses of the extra listener `name` (see [`KafkaSetup::listener`]).
    ///
    /// # Panics
    ///
    /// If the cluster has no such listener.
    pub fn listener(&self, name: &str) -> String {
        match self.listeners.get(name) {
            Some(address) => address.clone(),
            None => panic!("the Kafka cluster has no listener {name}"),
        }
    }

    /// The number of nodes.
    pub fn nodes(&self) -> u8 {
        self.nodes
    }

    /// The cluster's directory: `cluster/node-N/kafka.log`, `script.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory `scripts/kafka start --dir` was given: `node-N/kafka.log`, `node-N/pid`.
    pub fn cluster_dir(&self) -> PathBuf {
        self.dir.join("cluster")
    }
}

/// The single-node Apache Kafka of this test binary, started on first use.
///
/// Topics are not created automatically (`auto.create.topics.enable=false`), so a test sees a
/// missing topic as users with that setting do, and topics a component creates are its own.
/// Groups of the consumer protocol get test timings ([`KafkaSetup::quick_groups`]).
///
/// # Panics
///
/// If Kafka cannot be started (run `scripts/kafka install`, or `scripts/test`, which does). A
/// failed start is remembered: later calls panic with the same message.
pub fn kafka() -> &'static KafkaCluster {
    static KAFKA: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    started(KAFKA.get_or_init(|| {
        KafkaCluster::start(
            &KafkaSetup::single_node()
                .property("auto.create.topics.enable", "false")
                .quick_groups(),
        )
    }))
}

/// The three-node Apache Kafka cluster of this test binary, started on first use: for tests
/// that need replication or a broker failure.
///
/// # Panics
///
/// As [`kafka()`].
pub fn kafka_three_nodes() -> &'static KafkaCluster {
    static KAFKA: OnceLock<Result<KafkaCluster, String>> = OnceLock::new();
    started(KAFKA.get_or_init(|| {
        KafkaCluster::start(
            &KafkaSetup::three_nodes()
                .property("auto.create.topics.enable", "false")
                .quick_groups(),
        )
    }))
}

fn started(result: &'static Result<KafkaCluster, String>) -> &'static KafkaCluster {
    match result {
        Ok(cluster) => cluster,
        Err(message) => panic!("{message}"),
    }
}

/// `scripts/kafka` of this repository, two levels above this crate's directory
/// (`crates/sluicegate-testing`); `$SLUICEGATE_KAFKA_SCRIPT` overrides it.
fn script() -> Result<PathBuf, String> {
    let path = env::var_os("SLUICEGATE_KAFKA_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("..")
                .join("scripts")
                .join("kafka")
        });
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: set SLUICEGATE_KAFKA_SCRIPT to the repository's scripts/kafka",
            path.display()
        ))
    }
}

/// Waits until the script has printed `lines` lines of addresses, or has exited.
fn wait_for_addresses(dir: &Path, lines: usize) -> Result<String, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(addresses) = fs::read_to_string(dir.join("addresses")) {
            if addresses.lines().count() >= lines && addresses.ends_with('\n') {
                return Ok(addresses);
            }
        }
        if let Ok(status) = fs::read_to_string(dir.join("exited")) {
            return Err(format!(
                "scripts/kafka start exited with status {} before Kafka was ready; end of {}:\n{}",
                status.trim(),
                dir.join("script.log").display(),
                log_tail(&dir.join("script.log"))
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "Kafka was not ready within {START_TIMEOUT:?}; end of {}:\n{}",
                dir.join("script.log").display(),
                log_tail(&dir.join("script.log"))
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The last 4 KiB of a log, or why it can't be read.
fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(4096)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("(cannot read the log: {e})"))
}

/// On the first panic of any test, leaves a `keep` marker in every cluster's directory so the
/// watchdogs keep them, and says where the logs are.
fn keep_dir_on_panic(dir: &Path) {
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    static HOOKED: AtomicBool = AtomicBool::new(false);
    DIRS.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(dir.to_path_buf());
    if HOOKED.swap(true, Ordering::SeqCst) {
        return;
    }
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        previous(info);
        if !REPORTED.swap(true, Ordering::SeqCst) {
            let dirs = DIRS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for dir in dirs.iter() {
                // Best effort: the panic is being reported anyway.
                let _ = fs::write(dir.join("keep"), b"");
                eprintln!(
                    "Kafka logs (kept after the tests): {}",
                    dir.join("cluster").display()
                );
            }
        }
    }));
}
