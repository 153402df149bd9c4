//! Topic administration for the retry stages: how many partitions an input topic has, and
//! creating the retry and dead-letter topics that are missing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::options::ConsumerOptions;
use crate::refusal::RefusalContext;

/// Why the topics a task needs are not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TopicSetupError {
    /// The cluster did not answer, or the admin client could not be made.
    #[error("{0}")]
    Cluster(String),
    /// A topic is missing and could not be created.
    #[error("topic `{topic}` is missing: {reason}")]
    Missing { topic: String, reason: String },
}

/// How long one metadata request or topic creation may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes sure each input topic exists and each of its derived topics exists too, creating
/// missing ones with the input topic's partition count and the broker's default
/// replication. Returns the topics it created.
pub(crate) async fn ensure_topics(
    options: &ConsumerOptions,
    wanted: &[(String, Vec<String>)],
) -> Result<Vec<String>, TopicSetupError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &options.bootstrap_servers);
    for (key, value) in &options.librdkafka {
        config.set(key, value);
    }
    let probe: Arc<BaseConsumer<RefusalContext>> = Arc::new(
        config
            .create_with_context(RefusalContext::default())
            .map_err(|error| TopicSetupError::Cluster(format!("metadata client: {error}")))?,
    );
    let metadata = fetch_metadata(&probe).await?;
    let mut missing = Vec::new();
    for (input, derived) in wanted {
        let partitions =
            partition_count(&metadata, input).ok_or_else(|| TopicSetupError::Missing {
                topic: input.clone(),
                reason: format!(
                    "the input topic does not exist on {}",
                    options.bootstrap_servers
                ),
            })?;
        for topic in derived {
            if partition_count(&metadata, topic).is_none() {
                missing.push(NewTopic::new(
                    topic,
                    partitions as i32,
                    TopicReplication::Fixed(-1),
                ));
            }
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let cannot_create = |topic: &str, reason: String| TopicSetupError::Missing {
        topic: topic.to_string(),
        reason: format!("could not create it: {reason}"),
    };
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|error| TopicSetupError::Cluster(format!("admin client: {error}")))?;
    let refused = match admin
        .create_topics(
            &missing,
            &AdminOptions::new()
                .operation_timeout(Some(REQUEST_TIMEOUT))
                .request_timeout(Some(REQUEST_TIMEOUT)),
        )
        .await
    {
        Ok(results) => results.into_iter().find_map(|result| match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
            Err((topic, code)) => Some((topic, code.to_string())),
        }),
        Err(error) => Some((missing[0].name.to_string(), error.to_string())),
    };
    let created: Vec<String> = missing.iter().map(|topic| topic.name.to_string()).collect();
    if let Some((topic, reason)) = refused {
        // A broker without CreateTopics (librdkafka's mock cluster, behind `sluice
        // dev-broker`) may still create a topic when a client asks for its metadata.
        if !auto_create(&config, &created).await {
            return Err(cannot_create(&topic, reason));
        }
        tracing::warn!(topics = ?created, %reason, "the broker did not create the topics; they were auto-created on a metadata request instead, with the broker's default partition count rather than the input topic's");
    }
    wait_until_visible(&probe, &created).await?;
    tracing::info!(topics = ?created, "created retry and dead-letter topics");
    Ok(created)
}

/// Asks for `topics`' metadata with auto-creation allowed; returns whether every one of them
/// exists afterwards. Brokers that do not auto-create topics (Kafka with
/// `auto.create.topics.enable=false`) leave them missing.
async fn auto_create(config: &ClientConfig, topics: &[String]) -> bool {
    let mut config = config.clone();
    config.set("allow.auto.create.topics", "true");
    let Ok(client) = config.create::<BaseConsumer>() else {
        return false;
    };
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        topics.iter().all(|topic| {
            client
                .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                .is_ok_and(|metadata| partition_count(&metadata, topic).is_some())
        })
    })
    .await
    .unwrap_or(false)
}

/// The cluster's metadata; a refused login or TLS handshake is reported as such.
async fn fetch_metadata(
    probe: &Arc<BaseConsumer<RefusalContext>>,
) -> Result<Metadata, TopicSetupError> {
    let probe = probe.clone();
    tokio::task::spawn_blocking(move || {
        probe
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|error| {
                // Serves the queued log lines and errors, where a refused login shows up.
                let _ = probe.poll(Duration::from_millis(100));
                match probe.context().refusal.reason() {
                    Some(reason) => TopicSetupError::Cluster(format!(
                        "the brokers refused the connection: {reason}"
                    )),
                    None => TopicSetupError::Cluster(format!("cluster metadata: {error}")),
                }
            })
    })
    .await
    .map_err(|error| TopicSetupError::Cluster(error.to_string()))?
}

fn partition_count(metadata: &Metadata, topic: &str) -> Option<usize> {
    metadata
        .topics()
        .iter()
        .find(|known| known.name() == topic && known.error().is_none())
        .map(|known| known.partitions().len())
        .filter(|count| *count > 0)
}

/// New topics take a moment to appear, with a leader for each partition, in every broker's
/// metadata; consumers subscribing before that would find them missing.
async fn wait_until_visible(
    probe: &Arc<BaseConsumer<RefusalContext>>,
    topics: &[String],
) -> Result<(), TopicSetupError> {
    let started = Instant::now();
    loop {
        let metadata = fetch_metadata(probe).await?;
        let led = |topic: &&String| {
            metadata.topics().iter().any(|known| {
                known.name() == topic.as_str()
                    && known.error().is_none()
                    && !known.partitions().is_empty()
                    && known
                        .partitions()
                        .iter()
                        .all(|partition| partition.leader() >= 0)
            })
        };
        let Some(absent) = topics.iter().find(|topic| !led(topic)) else {
            return Ok(());
        };
        if started.elapsed() > REQUEST_TIMEOUT {
            return Err(TopicSetupError::Missing {
                topic: absent.clone(),
                reason: "created, but the cluster does not list it".to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
