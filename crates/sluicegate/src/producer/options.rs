//! Producer settings in two levels: process-wide defaults set once with [`set_defaults`], and
//! per-producer overrides, merged when a producer starts.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::RwLock;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::options::OptionsError;

/// Compression applied to each batch the producer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The librdkafka name of the codec.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// How many acknowledgements the leader waits for before answering a produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acks {
    /// No answer at all: delivery results carry no offset.
    None,
    /// The leader has written the record.
    Leader,
    /// Every in-sync replica has the record (the default; required for idempotence).
    All,
}

impl Acks {
    fn value(self) -> &'static str {
        match self {
            Self::None => "0",
            Self::Leader => "1",
            Self::All => "all",
        }
    }
}

/// Settings of a producer. Every setting is optional: a producer takes what it sets, then
/// the process-wide defaults ([`set_defaults`]), then Sluicegate's defaults.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProducerOptions {
    bootstrap_servers: Option<String>,
    client_id: Option<String>,
    compression: Option<Compression>,
    acks: Option<Acks>,
    idempotence: Option<bool>,
    flush_interval: Option<Duration>,
    buffer_records: Option<usize>,
    buffer_bytes: Option<usize>,
    delivery_timeout: Option<Duration>,
    buffer_wait: Option<Option<Duration>>,
    librdkafka: BTreeMap<String, String>,
}

impl fmt::Debug for ProducerOptions {
    /// Pass-through values may hold secrets (SASL passwords), so only their keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerOptions")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("compression", &self.compression)
            .field("acks", &self.acks)
            .field("idempotence", &self.idempotence)
            .field("flush_interval", &self.flush_interval)
            .field("buffer_records", &self.buffer_records)
            .field("buffer_bytes", &self.buffer_bytes)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("buffer_wait", &self.buffer_wait)
            .field("librdkafka", &self.librdkafka.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Properties Sluicegate sets itself; setting them through [`ProducerOptions::librdkafka`]
/// is refused, naming the option to use instead.
const MANAGED: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("client.id", "client_id"),
    ("compression.codec", "compression"),
    ("compression.type", "compression"),
    ("acks", "acks"),
    ("request.required.acks", "acks"),
    ("enable.idempotence", "idempotence"),
    ("linger.ms", "flush_interval"),
    ("queue.buffering.max.ms", "flush_interval"),
    ("queue.buffering.max.messages", "buffer_records"),
    ("queue.buffering.max.kbytes", "buffer_bytes"),
    ("message.timeout.ms", "delivery_timeout"),
    ("delivery.timeout.ms", "delivery_timeout"),
    ("partitioner", "(Java-compatible murmur2, always)"),
];

impl ProducerOptions {
    /// No settings: everything comes from the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// These options, with `servers` as the brokers unless they name some already.
    pub(crate) fn bootstrap_servers_or(mut self, servers: &str) -> Self {
        self.bootstrap_servers
            .get_or_insert_with(|| servers.to_string());
        self
    }

    /// The brokers to bootstrap from, `host:port` comma-separated.
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.bootstrap_servers = Some(servers.into());
        self
    }

    /// The client id the brokers see. Default: `sluicegate`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Batch compression. Default: none.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// Required acknowledgements. Default: all.
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = Some(acks);
        self
    }

    /// Idempotent producing (no duplicates from retries, order kept per partition). Default:
    /// on; it needs `acks` all.
    pub fn idempotence(mut self, enabled: bool) -> Self {
        self.idempotence = Some(enabled);
        self
    }

    /// How long records may wait in the buffer for more to share their batch (librdkafka's
    /// `linger.ms`). Default: 5 ms.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = Some(interval);
        self
    }

    /// Most records buffered, waiting or in flight. Default: 20,000 (a deeper buffer makes
    /// librdkafka's per-record work run cache-cold, and no faster).
    pub fn buffer_records(mut self, records: usize) -> Self {
        self.buffer_records = Some(records);
        self
    }

    /// Most bytes buffered, waiting or in flight (at least 1 KiB). Default: 64 MiB.
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = Some(bytes);
        self
    }

    /// How long a record may take to be delivered, retries included, before it fails.
    /// Default: 30 s.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = Some(timeout);
        self
    }

    /// How long producing waits for room when the buffer is full before it fails with
    /// [`ProduceError::BufferFull`](super::ProduceError::BufferFull); `None` waits as long as
    /// it takes. Default: `None`.
    pub fn buffer_wait(mut self, limit: Option<Duration>) -> Self {
        self.buffer_wait = Some(limit);
        self
    }

    /// Sets any other librdkafka producer property (security settings, for example).
    pub fn librdkafka(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.librdkafka.insert(key.into(), value.into());
        self
    }

    /// Checks these options, merged over the process-wide defaults, without connecting: the
    /// error names the first invalid setting.
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.clone().over(&defaults()).resolve().map(|_| ())
    }

    /// These options, with anything they leave unset taken from `defaults`.
    pub(crate) fn over(self, defaults: &ProducerOptions) -> ProducerOptions {
        let mut librdkafka = defaults.librdkafka.clone();
        librdkafka.extend(self.librdkafka);
        ProducerOptions {
            bootstrap_servers: self
                .bootstrap_servers
                .or_else(|| defaults.bootstrap_servers.clone()),
            client_id: self.client_id.or_else(|| defaults.client_id.clone()),
            compression: self.compression.or(defaults.compression),
            acks: self.acks.or(defaults.acks),
            idempotence: self.idempotence.or(defaults.idempotence),
            flush_interval: self.flush_interval.or(defaults.flush_interval),
            buffer_records: self.buffer_records.or(defaults.buffer_records),
            buffer_bytes: self.buffer_bytes.or(defaults.buffer_bytes),
            delivery_timeout: self.delivery_timeout.or(defaults.delivery_timeout),
            buffer_wait: self.buffer_wait.or(defaults.buffer_wait),
            librdkafka,
        }
    }

    /// Checks the merged options and resolves every default.
    pub(crate) fn resolve(&self) -> Result<ResolvedOptions, OptionsError> {
        let bootstrap_servers = match &self.bootstrap_servers {
            Some(servers) if !servers.trim().is_empty() => servers.clone(),
            Some(_) => return Err(OptionsError::new("bootstrap_servers", "must not be empty")),
            None => {
                return Err(OptionsError::new(
                    "bootstrap_servers",
                    "not set on the producer nor in the defaults (producer::set_defaults)",
                ))
            }
        };
        let acks = self.acks.unwrap_or(Acks::All);
        let idempotence = self.idempotence.unwrap_or(true);
        if idempotence && acks != Acks::All {
            return Err(OptionsError::new(
                "idempotence",
                "needs acks all; set idempotence(false) to use fewer acks",
            ));
        }
        let buffer_records = self.buffer_records.unwrap_or(20_000);
        if !(1..=10_000_000).contains(&buffer_records) {
            return Err(OptionsError::new(
                "buffer_records",
                "must be between 1 and 10,000,000",
            ));
        }
        let buffer_bytes = self.buffer_bytes.unwrap_or(64 << 20);
        if buffer_bytes < 1024 {
            return Err(OptionsError::new("buffer_bytes", "must be at least 1024"));
        }
        let flush_interval = self.flush_interval.unwrap_or(Duration::from_millis(5));
        if flush_interval > Duration::from_secs(900) {
            return Err(OptionsError::new("flush_interval", "must be at most 900 s"));
        }
        let delivery_timeout = self.delivery_timeout.unwrap_or(Duration::from_secs(30));
        if delivery_timeout.is_zero() {
            return Err(OptionsError::new(
                "delivery_timeout",
                "must be greater than zero",
            ));
        }
        if flush_interval >= delivery_timeout {
            return Err(OptionsError::new(
                "flush_interval",
                "must be shorter than delivery_timeout (a record would expire while waiting)",
            ));
        }
        for key in self.librdkafka.keys() {
            if let Some((_, instead)) = MANAGED.iter().find(|(managed, _)| managed == key) {
                return Err(OptionsError::new(
                    format!("librdkafka.{key}"),
                    format!("managed by Sluicegate; use `{instead}`"),
                ));
            }
        }
        Ok(ResolvedOptions {
            bootstrap_servers,
            client_id: self
                .client_id
                .clone()
                .unwrap_or_else(|| "sluicegate".to_string()),
            compression: self.compression.unwrap_or(Compression::None),
            acks,
            idempotence,
            flush_interval,
            buffer_records,
            buffer_bytes,
            delivery_timeout,
            buffer_wait: self.buffer_wait.unwrap_or(None),
            librdkafka: self.librdkafka.clone(),
        })
    }
}

/// Options with every default applied, ready to configure a client.
#[derive(Clone)]
pub(crate) struct ResolvedOptions {
    pub bootstrap_servers: String,
    pub client_id: String,
    pub compression: Compression,
    pub acks: Acks,
    pub idempotence: bool,
    pub flush_interval: Duration,
    pub buffer_records: usize,
    pub buffer_bytes: usize,
    pub delivery_timeout: Duration,
    pub buffer_wait: Option<Duration>,
    pub librdkafka: BTreeMap<String, String>,
}

impl ResolvedOptions {
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.librdkafka {
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("compression.codec", self.compression.name())
            .set("acks", self.acks.value())
            .set("enable.idempotence", self.idempotence.to_string())
            .set("linger.ms", self.flush_interval.as_millis().to_string())
            .set(
                "queue.buffering.max.messages",
                self.buffer_records.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                (self.buffer_bytes / 1024).to_string(),
            )
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            )
            // The Java client's partitioner: murmur2 of the key; records without a key stick
            // to one partition for a while (sticky.partitioning.linger.ms), as since Kafka 2.4.
            .set("partitioner", "murmur2_random");
        config
    }
}

static DEFAULTS: RwLock<Option<ProducerOptions>> = RwLock::new(None);

/// Sets the process-wide producer defaults (brokers, client id, producer settings): every
/// producer started afterwards takes what it does not set itself from here. Producers that
/// already started keep their settings.
pub fn set_defaults(options: ProducerOptions) {
    *DEFAULTS
        .write()
        .unwrap_or_else(|poison| poison.into_inner()) = Some(options);
}

/// The process-wide defaults, if set.
pub(crate) fn defaults() -> ProducerOptions {
    DEFAULTS
        .read()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_the_rest_comes_from_the_defaults() {
        let defaults = ProducerOptions::new()
            .bootstrap_servers("a:9092")
            .compression(Compression::Zstd)
            .librdkafka("socket.keepalive.enable", "true")
            .librdkafka("retries", "3");
        let merged = ProducerOptions::new()
            .bootstrap_servers("b:9092")
            .librdkafka("retries", "5")
            .over(&defaults)
            .resolve()
            .unwrap();
        assert_eq!(merged.bootstrap_servers, "b:9092");
        assert_eq!(merged.compression, Compression::Zstd);
        assert_eq!(merged.acks, Acks::All);
        assert!(merged.idempotence);
        assert_eq!(merged.librdkafka["retries"], "5");
        assert_eq!(merged.librdkafka["socket.keepalive.enable"], "true");
    }

    #[test]
    fn each_bad_option_is_named() {
        let key = |options: ProducerOptions| options.resolve().err().expect("refused").key;
        let base = || ProducerOptions::new().bootstrap_servers("a:9092");
        assert_eq!(key(ProducerOptions::new()), "bootstrap_servers");
        assert_eq!(key(base().acks(Acks::Leader)), "idempotence");
        assert!(base()
            .acks(Acks::Leader)
            .idempotence(false)
            .resolve()
            .is_ok());
        assert_eq!(key(base().buffer_records(0)), "buffer_records");
        assert_eq!(key(base().buffer_bytes(10)), "buffer_bytes");
        assert_eq!(
            key(base().delivery_timeout(Duration::ZERO)),
            "delivery_timeout"
        );
        assert_eq!(
            key(base().librdkafka("linger.ms", "7")),
            "librdkafka.linger.ms"
        );
    }

    #[test]
    fn validate_checks_without_connecting() {
        assert!(ProducerOptions::new()
            .bootstrap_servers("nowhere:1")
            .validate()
            .is_ok());
        let refused = ProducerOptions::new()
            .bootstrap_servers("nowhere:1")
            .librdkafka("acks", "0")
            .validate()
            .unwrap_err();
        assert_eq!(refused.key, "librdkafka.acks");
        assert_eq!(
            refused.to_string(),
            "invalid option `librdkafka.acks`: managed by Sluicegate; use `acks`"
        );
    }

    #[test]
    fn debug_output_hides_pass_through_values() {
        let options = ProducerOptions::new().librdkafka("sasl.password", "hunter2");
        let shown = format!("{options:?}");
        assert!(shown.contains("sasl.password"));
        assert!(!shown.contains("hunter2"));
    }
}
