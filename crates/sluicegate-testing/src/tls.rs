//! An Apache Kafka with Kafka's own secure listeners, for tests of clients' TLS and SASL
//! settings.
//!
//! The certificate authority, the broker's certificate (for `127.0.0.1`), a client certificate
//! for mutual TLS and a second authority the broker does not know are made with the `openssl`
//! command at start. The broker reads its key and certificates as PEM files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::kafka::{KafkaCluster, KafkaSetup};

/// The user of [`secured_kafka`] for every SASL mechanism: PLAIN, SCRAM-SHA-256 and
/// SCRAM-SHA-512.
pub const SASL_USER: (&str, &str) = ("alice", "wonderland-7f3c");

/// A single-node Apache Kafka with secure listeners, started by [`secured_kafka`]:
///
/// | listener | protocol | what it asks of a client |
/// | --- | --- | --- |
/// | [`plaintext`](Self::plaintext) | PLAINTEXT | nothing (for set-up) |
/// | [`ssl`](Self::ssl) | SSL | trust in [`ca_location`](Self::ca_location) |
/// | [`mutual_tls`](Self::mutual_tls) | SSL, client authentication required | also the client certificate ([`client_certificate`](Self::client_certificate), [`client_key`](Self::client_key)) signed by the same authority |
/// | [`sasl_ssl`](Self::sasl_ssl) | SASL_SSL | trust, and [`SASL_USER`] with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 |
#[derive(Debug)]
pub struct SecuredKafka {
    cluster: KafkaCluster,
    certificates: PathBuf,
}

impl SecuredKafka {
    /// The PLAINTEXT listener's `bootstrap.servers` (no security: for creating topics).
    pub fn plaintext(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The SSL listener's `bootstrap.servers`.
    pub fn ssl(&self) -> String {
        self.cluster.listener("SSL")
    }

    /// The SSL listener that requires a client certificate.
    pub fn mutual_tls(&self) -> String {
        self.cluster.listener("MTLS")
    }

    /// The SASL_SSL listener.
    pub fn sasl_ssl(&self) -> String {
        self.cluster.listener("SASL")
    }

    /// The certificate authority that signed the broker's and the client's certificates (PEM),
    /// for `ssl.ca.location`.
    pub fn ca_location(&self) -> PathBuf {
        self.certificates.join("ca.pem")
    }

    /// An authority that signed nothing the broker uses: a client trusting only it must fail.
    pub fn other_ca_location(&self) -> PathBuf {
        self.certificates.join("other-ca.pem")
    }

    /// The client certificate for [`mutual_tls`](Self::mutual_tls) (PEM), for
    /// `ssl.certificate.location`.
    pub fn client_certificate(&self) -> PathBuf {
        self.certificates.join("client.pem")
    }

    /// The client certificate's key (PEM), for `ssl.key.location`.
    pub fn client_key(&self) -> PathBuf {
        self.certificates.join("client.key")
    }

    /// The cluster (its directory holds the logs).
    pub fn cluster(&self) -> &KafkaCluster {
        &self.cluster
    }
}

/// The secured Apache Kafka of this test binary, started on first use.
///
/// # Panics
///
/// As [`kafka()`](crate::kafka()), or if the certificates cannot be made (the `openssl`
/// command is needed).
pub fn secured_kafka() -> &'static SecuredKafka {
    static KAFKA: OnceLock<Result<SecuredKafka, String>> = OnceLock::new();
    match KAFKA.get_or_init(start_secured) {
        Ok(kafka) => kafka,
        Err(message) => panic!("{message}"),
    }
}

fn start_secured() -> Result<SecuredKafka, String> {
    let certificates = tempfile::Builder::new()
        .prefix("sluicegate-certificates-")
        .tempdir()
        .map_err(|e| format!("cannot create a directory for certificates: {e}"))?
        .keep();
    make_certificates(&certificates)?;
    let path = |file: &str| certificates.join(file).display().to_string();
    let (user, password) = SASL_USER;
    let plain = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required user_{user}=\"{password}\";"
    );
    let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
    let setup = KafkaSetup::single_node()
        .listener("SSL", "SSL")
        .listener("MTLS", "SSL")
        .listener("SASL", "SASL_SSL")
        .property("ssl.keystore.type", "PEM")
        .property("ssl.keystore.location", path("server-keystore.pem"))
        .property("ssl.truststore.type", "PEM")
        .property("ssl.truststore.location", path("ca.pem"))
        .property("listener.name.mtls.ssl.client.auth", "required")
        .property(
            "sasl.enabled.mechanisms",
            "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        )
        .property("listener.name.sasl.plain.sasl.jaas.config", plain)
        .property("listener.name.sasl.scram-sha-256.sasl.jaas.config", scram)
        .property("listener.name.sasl.scram-sha-512.sasl.jaas.config", scram)
        .property("auto.create.topics.enable", "false")
        .scram_user("SCRAM-SHA-256", user, password)
        .scram_user("SCRAM-SHA-512", user, password);
    let cluster = KafkaCluster::start(&setup)?;
    Ok(SecuredKafka {
        cluster,
        certificates,
    })
}

/// Two certificate authorities, a broker certificate for 127.0.0.1 and a client certificate
/// signed by the first, in `dir`; `server-keystore.pem` is the broker's key and certificate in
/// one PEM file, as Kafka's PEM key store reads them.
fn make_certificates(dir: &Path) -> Result<(), String> {
    let write = |file: &str, contents: String| {
        std::fs::write(dir.join(file), contents).map_err(|e| format!("cannot write {file}: {e}"))
    };
    write(
        "server.ext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n".into(),
    )?;
    write("client.ext", "extendedKeyUsage=clientAuth\n".into())?;
    let authority = "req -x509 -newkey rsa:2048 -nodes -days 2";
    let request = "req -newkey rsa:2048 -nodes";
    let sign = "x509 -req -CA ca.pem -CAkey ca.key -CAcreateserial -days 2";
    let steps = [
        format!("{authority} -subj /CN=sluicegate-test-ca -keyout ca.key -out ca.pem"),
        format!(
            "{authority} -subj /CN=sluicegate-untrusted-ca -keyout other-ca.key -out other-ca.pem"
        ),
        format!("{request} -subj /CN=127.0.0.1 -keyout server.key -out server.csr"),
        format!("{sign} -in server.csr -extfile server.ext -out server.pem"),
        format!("{request} -subj /CN=sluicegate-test-client -keyout client.key -out client.csr"),
        format!("{sign} -in client.csr -extfile client.ext -out client.pem"),
    ];
    for step in steps {
        let output = Command::new("openssl")
            .args(step.split_whitespace())
            .current_dir(dir)
            .output()
            .map_err(|e| format!("cannot run openssl (install it): {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "openssl {step} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).map_err(|e| format!("cannot read {file}: {e}"))
    };
    write(
        "server-keystore.pem",
        read("server.key")? + &read("server.pem")?,
    )
}
