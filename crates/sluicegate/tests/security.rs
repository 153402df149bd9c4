//! SASL and TLS against tansu brokers: SCRAM-SHA-256 credentials produce and consume, and so
//! does a client that trusts the broker's certificate authority; a wrong password or an
//! untrusted certificate fails the engine's start and the producer at once, with a clear
//! reason (and never the password).

mod common;

use std::time::{Duration, Instant};

use common::eventually;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use sluicegate::pipeline::Pipeline;
use sluicegate::producer::{ProduceError, ProduceRecord, Producer, ProducerOptions};
use sluicegate::testing::{
    self, init_tracing, tansu_with_authentication, tansu_with_tls, SCRAM_USER,
};
use sluicegate::{ConsumerEngine, ConsumerOptions, EngineError};

/// The librdkafka properties of a SCRAM-SHA-256 login with `password`.
fn login(password: &str) -> [(&'static str, String); 4] {
    [
        ("security.protocol", "SASL_PLAINTEXT".to_string()),
        ("sasl.mechanism", "SCRAM-SHA-256".to_string()),
        ("sasl.username", SCRAM_USER.0.to_string()),
        ("sasl.password", password.to_string()),
    ]
}

fn consumer(topic: &str, password: &str) -> ConsumerOptions {
    let broker = tansu_with_authentication();
    let options = ConsumerOptions::new(
        broker.bootstrap_servers(),
        testing::unique_name("secure-group"),
        [topic],
    )
    .session_timeout(Duration::from_secs(6))
    .max_poll_interval(Duration::from_secs(10))
    .commit_interval(Duration::from_millis(200))
    .connect_timeout(Duration::from_secs(60));
    login(password)
        .into_iter()
        .fold(options, |options, (key, value)| {
            options.librdkafka(key, value)
        })
}

fn producer(password: &str) -> Producer {
    let options = ProducerOptions::new()
        .bootstrap_servers(tansu_with_authentication().bootstrap_servers())
        .delivery_timeout(Duration::from_secs(60));
    Producer::new(
        login(password)
            .into_iter()
            .fold(options, |options, (key, value)| {
                options.librdkafka(key, value)
            }),
    )
}

async fn create_topic(topic: &str) {
    let mut config = ClientConfig::new();
    config.set(
        "bootstrap.servers",
        tansu_with_authentication().bootstrap_servers(),
    );
    for (key, value) in login(SCRAM_USER.1) {
        config.set(key, value);
    }
    let admin: AdminClient<DefaultClientContext> = config.create().expect("an admin client");
    let results = admin
        .create_topics(
            [&NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("topic creation answered");
    for result in results {
        result.expect("the topic is created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_credentials_produce_and_consume() {
    init_tracing();
    let topic = testing::unique_name("secure");
    create_topic(&topic).await;
    let producer = producer(SCRAM_USER.1);
    for n in 0..10 {
        producer
            .produce(&topic, ProduceRecord::new(format!("{n}").as_bytes()))
            .await
            .expect("delivered with SCRAM credentials");
    }
    let engine = ConsumerEngine::start(consumer(&topic, SCRAM_USER.1))
        .await
        .expect("the engine logs in");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_at_once_with_the_reason_and_without_the_password() {
    init_tracing();
    let wrong = "not-the-password-91a2";
    let started = Instant::now();
    let error = match ConsumerEngine::start(consumer("any-topic", wrong)).await {
        Ok(_) => panic!("the engine started with a wrong password"),
        Err(error) => error,
    };
    let waited = started.elapsed();
    assert!(
        matches!(error, EngineError::Authentication { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("SASL"), "{message}");
    assert!(!message.contains(wrong), "the password leaked: {message}");
    // The connect timeout is 60 s: a refused login must not be retried until then.
    assert!(
        waited < Duration::from_secs(20),
        "took {waited:?} to give up"
    );

    let producer = producer(wrong);
    let started = Instant::now();
    let refused = producer
        .produce("any-topic", ProduceRecord::new(b"x"))
        .await
        .expect_err("nothing is delivered with a wrong password");
    assert!(matches!(refused, ProduceError::Refused(_)), "{refused:?}");
    assert!(!refused.to_string().contains(wrong), "{refused}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the delivery timeout is 60 s; a refused login fails sooner"
    );
    // Later records are refused at once, without being buffered.
    let again = producer
        .produce_and_forget("any-topic", ProduceRecord::new(b"y"))
        .await
        .expect_err("refused again");
    assert!(matches!(again, ProduceError::Refused(_)), "{again:?}");
    producer.shutdown(Duration::from_secs(1)).await;
}

/// A consumer and a producer of the TLS-fronted broker, trusting `ca` if given.
fn tls_clients(topic: &str, ca: Option<&std::path::Path>) -> (ConsumerOptions, Producer) {
    let broker = tansu_with_tls();
    let mut consumer = ConsumerOptions::new(
        broker.bootstrap_servers(),
        testing::unique_name("tls-group"),
        [topic],
    )
    .session_timeout(Duration::from_secs(6))
    .max_poll_interval(Duration::from_secs(10))
    .commit_interval(Duration::from_millis(200))
    .connect_timeout(Duration::from_secs(60))
    .librdkafka("security.protocol", "SSL");
    let mut producer = ProducerOptions::new()
        .bootstrap_servers(broker.bootstrap_servers())
        .delivery_timeout(Duration::from_secs(60))
        .librdkafka("security.protocol", "SSL");
    if let Some(ca) = ca {
        let ca = ca.display().to_string();
        consumer = consumer.librdkafka("ssl.ca.location", ca.clone());
        producer = producer.librdkafka("ssl.ca.location", ca);
    }
    (consumer, Producer::new(producer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_brokers_authority_produces_and_consumes() {
    init_tracing();
    let broker = tansu_with_tls();
    let topic = testing::unique_name("tls");
    let mut admin_config = ClientConfig::new();
    admin_config
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("security.protocol", "SSL")
        .set(
            "ssl.ca.location",
            broker.ca_location().display().to_string(),
        );
    let admin: AdminClient<DefaultClientContext> = admin_config.create().expect("an admin client");
    let created = admin
        .create_topics(
            [&NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("topic creation answered over TLS");
    for result in created {
        result.expect("the topic is created");
    }
    let (consumer, producer) = tls_clients(&topic, Some(broker.ca_location()));
    for n in 0..10 {
        producer
            .produce(&topic, ProduceRecord::new(format!("{n}").as_bytes()))
            .await
            .expect("delivered over TLS");
    }
    let engine = ConsumerEngine::start(consumer)
        .await
        .expect("the engine connects over TLS");
    let pipeline = Pipeline::builder(())
        .handle_message(|_, message| async move { Ok(message) })
        .source(engine)
        .start()
        .unwrap();
    eventually(
        "all ten consumed over TLS",
        Duration::from_secs(30),
        || async { pipeline.stats().processed == 10 },
    )
    .await;
    pipeline.shutdown().await;
    producer.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_at_once_with_the_reason() {
    init_tracing();
    let (consumer, producer) = tls_clients("any-topic", None);
    let started = Instant::now();
    let error = match ConsumerEngine::start(consumer).await {
        Ok(_) => panic!("the engine trusted an unknown certificate authority"),
        Err(error) => error,
    };
    assert!(
        matches!(error, EngineError::Authentication { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("certificate verify failed"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    let refused = producer
        .produce("any-topic", ProduceRecord::new(b"x"))
        .await
        .expect_err("nothing is delivered to an untrusted broker");
    assert!(matches!(refused, ProduceError::Refused(_)), "{refused:?}");
    producer.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_task_with_a_wrong_password_does_not_start() {
    init_tracing();
    let wrong = "not-the-password-5e0d";
    let pipeline = Pipeline::builder(()).handle_message(|_, message| async move { Ok(message) });
    let task = sluicegate::retry::RetryTask::new(
        consumer("any-topic", wrong),
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
