//! Clusters and producers of the configuration file, checked: the librdkafka properties of a
//! cluster (its `security` table mapped to librdkafka's names, then its pass-through
//! properties) and the producer options of a `[producers.NAME]` table.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use sluicegate::producer::{Acks, Compression, ProducerOptions};
use sluicegate::{ConsumerOptions, OptionsError};

use super::{
    AcksName, ClusterConfig, CompressionName, ConfigError, ProducerConfig, Protocol, SaslMechanism,
    Security,
};
use crate::secret;

/// librdkafka properties and the configuration key each came from. `Debug` shows the
/// property names only: values may be secrets.
#[derive(Clone, Default)]
pub struct Properties(BTreeMap<String, (String, String)>);

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Properties {
    /// Each property and its value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(property, (value, _))| (property.as_str(), value.as_str()))
    }

    /// The configuration key that set `property`.
    pub fn key_of(&self, property: &str) -> Option<&str> {
        self.0.get(property).map(|(_, key)| key.as_str())
    }

    fn insert(&mut self, property: &str, value: String, key: String) {
        self.0.insert(property.to_owned(), (value, key));
    }
}

/// A checked `[clusters.NAME]`.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    /// Its name in the file.
    pub name: String,
    /// `host:port`, comma-separated.
    pub bootstrap_servers: String,
    /// librdkafka properties for every client of the cluster.
    pub properties: Properties,
}

impl ClusterPlan {
    /// Checks `[clusters.NAME]`; problems go to `problems`.
    pub fn resolve(
        name: &str,
        cluster: &ClusterConfig,
        problems: &mut Vec<ConfigError>,
    ) -> Option<Self> {
        let key = |setting: &str| format!("clusters.{name}.{setting}");
        let found = problems.len();
        let Some(bootstrap_servers) = cluster.bootstrap_servers.clone() else {
            problems.push(ConfigError::new(
                format!("clusters.{name}"),
                "missing key `bootstrap_servers`",
            ));
            return None;
        };
        let mut properties = Properties::default();
        if let Some(security) = &cluster.security {
            security_properties(security, &key, &mut properties, problems);
        }
        for (property, value) in &cluster.librdkafka {
            let at = key(&format!("librdkafka.{property}"));
            if let Some(set_by) = properties.key_of(property) {
                problems.push(ConfigError::new(
                    at,
                    format!("already set by `{set_by}`: give it in one place"),
                ));
                continue;
            }
            if looks_secret(property) {
                secret::remember(value.expose());
            }
            properties.insert(property, value.expose().to_owned(), at);
        }
        let plan = Self {
            name: name.to_owned(),
            bootstrap_servers,
            properties,
        };
        // The engine checks servers and properties: a consumer of this cluster, as tasks have.
        let mut consumer = ConsumerOptions::new(&plan.bootstrap_servers, "sluice", ["sluice"]);
        for (property, value) in plan.properties.iter() {
            consumer = consumer.librdkafka(property, value);
        }
        if let Err(error) = consumer.validate() {
            problems.push(plan.rename(&error));
        }
        (problems.len() == found).then_some(plan)
    }

    /// The configuration key of a library option's problem: the cluster's servers or one of
    /// its properties.
    pub fn rename(&self, error: &OptionsError) -> ConfigError {
        let path = match error.key.as_str() {
            "bootstrap_servers" => format!("clusters.{}.bootstrap_servers", self.name),
            key => match key.strip_prefix("librdkafka.") {
                Some(property) => self
                    .properties
                    .key_of(property)
                    .map_or_else(|| format!("clusters.{}.{key}", self.name), str::to_owned),
                None => format!("clusters.{}.{key}", self.name),
            },
        };
        ConfigError::new(path, error.problem.clone())
    }
}

/// Property names that hold secrets whatever their value is written as.
pub fn looks_secret(property: &str) -> bool {
    ["password", "secret", "token", "jaas", "credentials"]
        .iter()
        .any(|word| property.contains(word))
}

/// The `security` table as librdkafka properties.
fn security_properties(
    security: &Security,
    key: &dyn Fn(&str) -> String,
    properties: &mut Properties,
    problems: &mut Vec<ConfigError>,
) {
    let at = |setting: &str| key(&format!("security.{setting}"));
    let (protocol, sasl, tls) = match security.protocol {
        Protocol::Plaintext => ("plaintext", false, false),
        Protocol::Ssl => ("ssl", false, true),
        Protocol::SaslPlaintext => ("sasl_plaintext", true, false),
        Protocol::SaslSsl => ("sasl_ssl", true, true),
    };
    properties.insert("security.protocol", protocol.to_owned(), at("protocol"));
    let sasl_settings = [
        ("sasl_mechanism", security.sasl_mechanism.is_some()),
        ("username", security.username.is_some()),
        ("password", security.password.is_some()),
    ];
    let tls_settings = [
        ("ca_location", security.ca_location.is_some()),
        (
            "certificate_location",
            security.certificate_location.is_some(),
        ),
        ("key_location", security.key_location.is_some()),
        ("key_password", security.key_password.is_some()),
    ];
    if sasl {
        for (setting, given) in sasl_settings {
            if !given {
                problems.push(ConfigError::new(
                    key("security"),
                    format!(
                        "missing key `{setting}` (protocol {protocol} authenticates with SASL)"
                    ),
                ));
            }
        }
    } else if let Some((setting, _)) = sasl_settings.iter().find(|(_, given)| *given) {
        problems.push(ConfigError::new(
            at(setting),
            format!("only for protocol sasl_plaintext or sasl_ssl (this is {protocol})"),
        ));
    }
    if !tls {
        if let Some((setting, _)) = tls_settings.iter().find(|(_, given)| *given) {
            problems.push(ConfigError::new(
                at(setting),
                format!("only for protocol ssl or sasl_ssl (this is {protocol})"),
            ));
        }
    }
    if let Some(mechanism) = security.sasl_mechanism {
        let name = match mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        };
        properties.insert("sasl.mechanism", name.to_owned(), at("sasl_mechanism"));
    }
    if let Some(username) = &security.username {
        properties.insert("sasl.username", username.clone(), at("username"));
    }
    if let Some(password) = &security.password {
        properties.insert(
            "sasl.password",
            password.expose().to_owned(),
            at("password"),
        );
    }
    for (setting, property, path) in [
        ("ca_location", "ssl.ca.location", &security.ca_location),
        (
            "certificate_location",
            "ssl.certificate.location",
            &security.certificate_location,
        ),
        ("key_location", "ssl.key.location", &security.key_location),
    ] {
        let Some(path) = path else { continue };
        if !Path::new(path).exists() {
            problems.push(ConfigError::new(
                at(setting),
                format!("{}: no such file", path.display()),
            ));
        }
        properties.insert(property, path.display().to_string(), at(setting));
    }
    if let Some(password) = &security.key_password {
        properties.insert(
            "ssl.key.password",
            password.expose().to_owned(),
            at("key_password"),
        );
    }
}

/// A checked `[producers.NAME]`: its cluster and its options (brokers and properties set).
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    /// The cluster it writes to.
    pub cluster: String,
    /// Its options, without a client id.
    pub options: ProducerOptions,
}

impl ProducerPlan {
    /// Checks `[producers.NAME]`, written to `cluster`; problems go to `problems`.
    pub fn resolve(
        name: &str,
        producer: &ProducerConfig,
        cluster: &ClusterPlan,
        problems: &mut Vec<ConfigError>,
    ) -> Option<Self> {
        let key = |setting: &str| format!("producers.{name}.{setting}");
        let mut options = default_options(cluster);
        if let Some(compression) = producer.compression {
            options = options.compression(match compression {
                CompressionName::None => Compression::None,
                CompressionName::Gzip => Compression::Gzip,
                CompressionName::Snappy => Compression::Snappy,
                CompressionName::Lz4 => Compression::Lz4,
                CompressionName::Zstd => Compression::Zstd,
            });
        }
        if let Some(acks) = producer.acks {
            options = options.acks(match acks {
                AcksName::All => Acks::All,
                AcksName::Leader => Acks::Leader,
                AcksName::None => Acks::None,
            });
        }
        if let Some(idempotence) = producer.idempotence {
            options = options.idempotence(idempotence);
        }
        if let Some(interval) = producer.flush_interval {
            options = options.flush_interval(interval.0);
        }
        if let Some(records) = producer.buffer_records {
            options = options.buffer_records(records);
        }
        if let Some(bytes) = producer.buffer_bytes {
            options = options.buffer_bytes(bytes);
        }
        if let Some(timeout) = producer.delivery_timeout {
            options = options.delivery_timeout(timeout.0);
        }
        for (property, value) in &producer.librdkafka {
            if looks_secret(property) {
                secret::remember(value.expose());
            }
            options = options.librdkafka(property, value.expose());
        }
        match options.validate() {
            Ok(()) => Some(Self {
                cluster: cluster.name.clone(),
                options,
            }),
            Err(error) => {
                let own = error
                    .key
                    .strip_prefix("librdkafka.")
                    .is_none_or(|property| producer.librdkafka.contains_key(property));
                problems.push(if own {
                    ConfigError::new(key(&error.key), error.problem)
                } else {
                    cluster.rename(&error)
                });
                None
            }
        }
    }
}

/// A producer with default settings on `cluster`.
pub fn default_options(cluster: &ClusterPlan) -> ProducerOptions {
    let mut options = ProducerOptions::new().bootstrap_servers(&cluster.bootstrap_servers);
    for (property, value) in cluster.properties.iter() {
        options = options.librdkafka(property, value);
    }
    options
}
