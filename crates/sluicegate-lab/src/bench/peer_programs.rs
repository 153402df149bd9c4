//! The peers of `sluice-lab bench peers` written in other languages, under
//! `benchmarks/peers/` of the repository: built (or installed) on first use into
//! `target/peers/`, then run once per round as child processes.
//!
//! - Java: `java/ConsumeLoop.java` and `java/ProduceLoop.java`, Apache Kafka's `KafkaConsumer`
//!   and `KafkaProducer`, compiled with `javac`
//!   against the classpath `scripts/kafka classpath` resolves from Maven Central (kafka-clients
//!   of the broker's version, 4.x);
//! - Go: `go/`, franz-go from the Go module proxy, built with `go build`;
//! - Python: `python/aiokafka_consume.py`, aiokafka from PyPI, installed into a virtual
//!   environment;
//! - Confluent Parallel Consumer: `parallel-consumer/ParallelConsumerScenario.java`, compiled
//!   against the classpath Maven resolves from its `pom.xml` (for `bench pipeline`'s latency
//!   scenario, not for `bench peers`).
//!
//! Each prints one JSON object (for the consume loops, see
//! [`PeerReport`](super::peers::PeerReport)). A peer whose tool is missing is reported as
//! unavailable, with the reason, instead of failing the bench.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use serde::de::DeserializeOwned;

/// A peer program ready to run: the command before its own arguments (for the consume loops:
/// brokers, topic, group, expected records).
#[derive(Debug, Clone)]
pub struct PeerProgram {
    program: PathBuf,
    leading_args: Vec<String>,
}

impl PeerProgram {
    /// Runs the program once with `args` (its stderr on ours) and reads the JSON object it
    /// prints last on stdout.
    pub fn report<T: DeserializeOwned>(
        &self,
        args: impl IntoIterator<Item = String>,
    ) -> anyhow::Result<T> {
        let output = Command::new(&self.program)
            .args(&self.leading_args)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("could not start {}", self.program.display()))?;
        if !output.status.success() {
            bail!("{} exited with {}", self.program.display(), output.status);
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|line| line.trim_start().starts_with('{'))
            .with_context(|| format!("{} printed no report", self.program.display()))?;
        serde_json::from_str(line)
            .with_context(|| format!("{} printed a bad report: {line}", self.program.display()))
    }
}

/// The repository's root: two levels above this crate's directory.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// Where the peers' sources are.
fn sources() -> PathBuf {
    repository().join("benchmarks").join("peers")
}

/// Where the peers are built.
fn build_dir() -> PathBuf {
    repository().join("target").join("peers")
}

/// Runs `command` to its end, all its output on our stderr (our stdout is the report); an
/// error naming `what` if it fails.
fn run(what: &str, command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("could not run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// `KafkaConsumer` in a tuned poll loop (`java/ConsumeLoop.java`).
pub fn java_consumer() -> anyhow::Result<PeerProgram> {
    java_program("ConsumeLoop")
}

/// `KafkaProducer` sending as fast as it accepts (`java/ProduceLoop.java`).
pub fn java_producer() -> anyhow::Result<PeerProgram> {
    java_program("ProduceLoop")
}

/// The programs of `java/`, compiled against Kafka's classpath; `main_class` to run.
fn java_program(main_class: &str) -> anyhow::Result<PeerProgram> {
    let classpath = kafka_classpath()?;
    let classes = build_dir().join("java");
    std::fs::create_dir_all(&classes)
        .with_context(|| format!("could not create {}", classes.display()))?;
    let source_dir = sources().join("java");
    javac(
        &classes,
        &classpath,
        &[
            source_dir.join("ConsumeLoop.java"),
            source_dir.join("ProduceLoop.java"),
        ],
    )?;
    Ok(PeerProgram {
        program: "java".into(),
        leading_args: vec![
            "-cp".to_owned(),
            format!("{}:{classpath}", classes.display()),
            main_class.to_owned(),
        ],
    })
}

/// Confluent Parallel Consumer's scenario: `ParallelConsumerScenario.java` compiled against
/// the classpath of `parallel-consumer/pom.xml` (Parallel Consumer 0.5.3.3 and its
/// kafka-clients, from Maven Central).
pub fn parallel_consumer() -> anyhow::Result<PeerProgram> {
    let source_dir = sources().join("parallel-consumer");
    let classes = build_dir().join("parallel-consumer");
    std::fs::create_dir_all(&classes)
        .with_context(|| format!("could not create {}", classes.display()))?;
    let classpath_file = classes.join("classpath");
    eprintln!("peers: resolving Confluent Parallel Consumer from Maven Central");
    run(
        "mvn dependency:build-classpath",
        Command::new("mvn")
            .args(["-B", "-q", "-Dstyle.color=never", "-f"])
            .arg(source_dir.join("pom.xml"))
            .arg("dependency:build-classpath")
            .arg(format!("-Dmdep.outputFile={}", classpath_file.display())),
    )?;
    let classpath = std::fs::read_to_string(&classpath_file)
        .with_context(|| format!("could not read {}", classpath_file.display()))?;
    let classpath = classpath.trim();
    javac(
        &classes,
        classpath,
        &[source_dir.join("ParallelConsumerScenario.java")],
    )?;
    Ok(PeerProgram {
        program: "java".into(),
        leading_args: vec![
            "-cp".to_owned(),
            format!("{}:{classpath}", classes.display()),
            "ParallelConsumerScenario".to_owned(),
        ],
    })
}

/// Compiles `sources` against `classpath` into `classes`.
fn javac(classes: &Path, classpath: &str, sources: &[PathBuf]) -> anyhow::Result<()> {
    eprintln!(
        "peers: compiling {} Java source(s) into {}",
        sources.len(),
        classes.display()
    );
    run(
        "javac",
        Command::new("javac")
            .arg("-d")
            .arg(classes)
            .arg("-cp")
            .arg(classpath)
            .args(sources),
    )
}

/// Kafka's classpath, kafka-clients among it (`scripts/kafka classpath`, which resolves
/// Kafka from Maven Central the first time).
fn kafka_classpath() -> anyhow::Result<String> {
    let script = repository().join("scripts").join("kafka");
    let output = Command::new(&script)
        .arg("classpath")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not run {} classpath", script.display()))?;
    if !output.status.success() {
        bail!("scripts/kafka classpath failed ({})", output.status);
    }
    let classpath = String::from_utf8(output.stdout).context("the classpath is not UTF-8")?;
    Ok(classpath.trim().to_owned())
}

/// franz-go's poll loop, built with `go build` (modules from the Go module proxy).
pub fn franz_go() -> anyhow::Result<PeerProgram> {
    let binary = build_dir().join("franz-consume");
    eprintln!("peers: building franz-go's loop");
    run(
        "go build",
        Command::new("go")
            .current_dir(sources().join("go"))
            .args(["build", "-o"])
            .arg(&binary)
            .arg("."),
    )?;
    Ok(PeerProgram {
        program: binary,
        leading_args: Vec::new(),
    })
}

/// aiokafka's `getmany` loop, in a virtual environment with aiokafka from PyPI.
pub fn aiokafka() -> anyhow::Result<PeerProgram> {
    let venv = build_dir().join("venv");
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        eprintln!("peers: creating a Python virtual environment for aiokafka");
        run(
            "python3 -m venv",
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
        )?;
    }
    run(
        "pip install aiokafka",
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(sources().join("python").join("requirements.txt")),
    )?;
    Ok(PeerProgram {
        program: python,
        leading_args: vec![sources()
            .join("python")
            .join("aiokafka_consume.py")
            .display()
            .to_string()],
    })
}
