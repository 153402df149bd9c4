//! TLS and SASL on Apache Kafka's own listeners: a client trusting the broker's authority
//! (SSL), one that also presents a client certificate (mutual TLS), and logins with PLAIN,
//! SCRAM-SHA-256 and SCRAM-SHA-512 over SASL_SSL each produce and consume through the
//! library's producer and engine. A wrong password, an untrusted certificate and a missing
//! client certificate each fail the engine's start and the producer at once, with the reason,
//! and never show the password.

mod common;

use std::time::{Duration, Instant};

use common::eventually;
use sluicegate::pipeline::Pipeline;
use sluicegate::producer::{ProduceError, ProduceRecord, Producer, ProducerOptions};
use sluicegate::{ConsumerEngine, ConsumerOptions, EngineError};
use sluicegate_testing::{init_tracing, secured_kafka, TestBroker, SASL_USER};

/// How a client reaches the secured broker: the listener and the librdkafka properties.
struct Client {
    bootstrap_servers: String,
    properties: Vec<(&'static str, String)>,
}

impl Client {
    /// SSL, trusting `ca`.
    fn ssl(ca: std::path::PathBuf) -> Client {
        Client {
            bootstrap_servers: secured_kafka().ssl(),
            properties: vec![
                ("security.protocol", "SSL".into()),
                ("ssl.ca.location", ca.display().to_string()),
            ],
        }
    }

    /// SSL to the listener that requires a client certificate, presenting ours if `present`.
    fn mutual_tls(present: bool) -> Client {
        let kafka = secured_kafka();
        let mut client = Client::ssl(kafka.ca_location());
        client.bootstrap_servers = kafka.mutual_tls();
        if present {
            client.properties.extend([
                (
                    "ssl.certificate.location",
                    kafka.client_certificate().display().to_string(),
                ),
                ("ssl.key.location", kafka.client_key().display().to_string()),
            ]);
        }
        client
    }

    /// SASL_SSL with `mechanism` and `password`.
    fn sasl(mechanism: &str, password: &str) -> Client {
        let kafka = secured_kafka();
        let mut client = Client::ssl(kafka.ca_location());
        client.bootstrap_servers = kafka.sasl_ssl();
        client.properties[0].1 = "SASL_SSL".into();
        client.properties.extend([
            ("sasl.mechanism", mechanism.to_owned()),
            ("sasl.username", SASL_USER.0.to_owned()),
            ("sasl.password", password.to_owned()),
        ]);
        client
    }

    fn consumer(&self, topic: &str) -> ConsumerOptions {
        let options = ConsumerOptions::new(
            self.bootstrap_servers.clone(),
            sluicegate_testing::unique_name("secure-group"),
            [topic],
        )
        .session_timeout(Duration::from_secs(6))
        .max_poll_interval(Duration::from_secs(10))
        .commit_interval(Duration::from_millis(200))
        .connect_timeout(Duration::from_secs(60));
        self.properties
            .iter()
            .fold(options, |options, (key, value)| {
                options.librdkafka(*key, value.clone())
            })
    }

    fn producer(&self) -> Producer {
        let options = ProducerOptions::new()
            .bootstrap_servers(self.bootstrap_servers.clone())
            .delivery_timeout(Duration::from_secs(60));
        Producer::new(
            self.properties
                .iter()
                .fold(options, |options, (key, value)| {
                    options.librdkafka(*key, value.clone())
                }),
        )
    }
}

/// A fresh topic, created over the broker's PLAINTEXT listener.
async fn topic() -> String {
    let topic = sluicegate_testing::unique_name("secure");
    TestBroker::Kafka(secured_kafka().cluster())
        .create_topic(&topic, 1)
        .await;
    topic
}

/// Ten records produced and consumed through `client`.
async fn round_trip(client: Client) {
    let topic = topic().await;
    let producer = client.producer();
    for n in 0..10 {
        producer
            .produce(&topic, ProduceRecord::new(format!("{n}").as_bytes()))
            .await
            .expect("delivered");
    }
    let engine = ConsumerEngine::start(client.consumer(&topic))
        .await
        .expect("the engine connects");
    let pipeline = Pipeline::builder(())
        .handle_message(|_, message| async move { Ok(message) })
        .source(engine)
        .start()
        .unwrap();
    eventually("all ten consumed", Duration::from_secs(30), || async {
        pipeline.stats().processed == 10
    })
    .await;
    pipeline.shutdown().await;
    producer.shutdown(Duration::from_secs(5)).await;
}

/// The engine's start and the producer both fail through `client` within 20 s (the connect
/// and delivery timeouts are 60 s), with a reason containing `reason` and never `secret`.
async fn refused(client: Client, reason: &str, secret: &str) {
    let started = Instant::now();
    let error = match ConsumerEngine::start(client.consumer("any-topic")).await {
        Ok(_) => panic!("the engine connected"),
        Err(error) => error,
    };
    let waited = started.elapsed();
    assert!(
        matches!(error, EngineError::Authentication { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(reason), "{message}");
    assert!(!message.contains(secret), "the secret leaked: {message}");
    assert!(
        waited < Duration::from_secs(20),
        "took {waited:?} to give up"
    );

    let producer = client.producer();
    let started = Instant::now();
    let refused = producer
        .produce("any-topic", ProduceRecord::new(b"x"))
        .await
        .expect_err("nothing is delivered");
    assert!(matches!(refused, ProduceError::Refused(_)), "{refused:?}");
    assert!(!refused.to_string().contains(secret), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(20), "refused late");
    // Later records are refused at once, without being buffered.
    let again = producer
        .produce_and_forget("any-topic", ProduceRecord::new(b"y"))
        .await
        .expect_err("refused again");
    assert!(matches!(again, ProduceError::Refused(_)), "{again:?}");
    producer.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_brokers_authority_produces_and_consumes() {
    init_tracing();
    round_trip(Client::ssl(secured_kafka().ca_location())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate_produces_and_consumes() {
    init_tracing();
    round_trip(Client::mutual_tls(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_over_tls_produces_and_consumes() {
    init_tracing();
    round_trip(Client::sasl("PLAIN", SASL_USER.1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_over_tls_produces_and_consumes() {
    init_tracing();
    round_trip(Client::sasl("SCRAM-SHA-256", SASL_USER.1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_over_tls_produces_and_consumes() {
    init_tracing();
    round_trip(Client::sasl("SCRAM-SHA-512", SASL_USER.1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_at_once_with_the_reason_and_without_the_password() {
    init_tracing();
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let wrong = "not-the-password-91a2";
        refused(Client::sasl(mechanism, wrong), "SASL", wrong).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_at_once_with_the_reason() {
    init_tracing();
    let client = Client::ssl(secured_kafka().other_ca_location());
    refused(client, "certificate verify failed", SASL_USER.1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_client_certificate_fails_at_once() {
    init_tracing();
    refused(Client::mutual_tls(false), "SSL", SASL_USER.1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_task_with_a_wrong_password_does_not_start() {
    init_tracing();
    let wrong = "not-the-password-5e0d";
    let pipeline = Pipeline::builder(()).handle_message(|_, message| async move { Ok(message) });
    let task = sluicegate::retry::RetryTask::new(
        Client::sasl("SCRAM-SHA-256", wrong).consumer("any-topic"),
        sluicegate::retry::RetryPolicy::delays([Duration::from_secs(1)]).unwrap(),
        pipeline,
    );
    let started = Instant::now();
    let error = match task.start(&sluicegate::retry::Stages::All).await {
        Ok(_) => panic!("the task started with a wrong password"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("refused the connection") && error.contains("SASL"),
        "{error}"
    );
    assert!(!error.contains(wrong), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
