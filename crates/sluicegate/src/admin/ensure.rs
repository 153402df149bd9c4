//! Topic set-up for the retry stages: how many partitions an input topic has, and creating the
//! retry and dead-letter topics that are missing, through an [`Admin`].

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use super::{Admin, AdminError, NewTopic, TopicMetadata};
use crate::cluster::ClusterOptions;
use crate::options::ConsumerOptions;

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
    let cluster = options.librdkafka.iter().fold(
        ClusterOptions::new(&options.bootstrap_servers)
            .connect_timeout(REQUEST_TIMEOUT)
            .request_timeout(REQUEST_TIMEOUT)
            .forward_logs(),
        |cluster, (key, value)| cluster.librdkafka(key, value),
    );
    let admin = Arc::new(Admin::new(cluster).map_err(|error| {
        TopicSetupError::Cluster(format!("metadata client: {}", cause(&error)))
    })?);
    let topics = blocking(&admin, Admin::topics)
        .await?
        .map_err(metadata_error)?;
    let mut missing = Vec::new();
    for (input, derived) in wanted {
        let partitions =
            partition_count(&topics, input).ok_or_else(|| TopicSetupError::Missing {
                topic: input.clone(),
                reason: format!(
                    "the input topic does not exist on {}",
                    options.bootstrap_servers
                ),
            })?;
        for topic in derived {
            if partition_count(&topics, topic).is_none() {
                missing.push(NewTopic::new(topic, partitions as i32));
            }
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let created: Vec<String> = missing.iter().map(|topic| topic.name.clone()).collect();
    let refused = {
        let missing = missing.clone();
        match blocking(&admin, move |admin| admin.create_topics(&missing)).await? {
            Ok(_) => None,
            Err(AdminError::CreateTopic { topic, source }) => Some((topic, source.to_string())),
            Err(other) => Some((created[0].clone(), cause(&other))),
        }
    };
    if let Some((topic, reason)) = refused {
        // A broker without CreateTopics (librdkafka's mock cluster, behind `sluice
        // dev-broker`) may still create a topic when a client asks for its metadata.
        let names = created.clone();
        if !blocking(&admin, move |admin| admin.auto_create(&names)).await? {
            return Err(TopicSetupError::Missing {
                topic,
                reason: format!("could not create it: {reason}"),
            });
        }
        tracing::warn!(topics = ?created, %reason, "the broker did not create the topics; they were auto-created on a metadata request instead, with the broker's default partition count rather than the input topic's");
    }
    // New topics take a moment to appear, with a leader for each partition, in every
    // broker's metadata; consumers subscribing before that would find them missing.
    let names = created.clone();
    match blocking(&admin, move |admin| {
        admin.wait_for_topics(&names, REQUEST_TIMEOUT)
    })
    .await?
    {
        Ok(()) => {}
        Err(AdminError::NotVisible { topic }) => {
            return Err(TopicSetupError::Missing {
                topic,
                reason: "created, but the cluster does not list it".to_string(),
            })
        }
        Err(other) => return Err(metadata_error(other)),
    }
    tracing::info!(topics = ?created, "created retry and dead-letter topics");
    Ok(created)
}

/// Runs a blocking admin request off the runtime's workers.
async fn blocking<T: Send + 'static>(
    admin: &Arc<Admin>,
    request: impl FnOnce(&Admin) -> T + Send + 'static,
) -> Result<T, TopicSetupError> {
    let admin = Arc::clone(admin);
    tokio::task::spawn_blocking(move || request(&admin))
        .await
        .map_err(|error| TopicSetupError::Cluster(error.to_string()))
}

/// The cluster's metadata could not be read; a refused login or TLS handshake is reported as
/// such.
fn metadata_error(error: AdminError) -> TopicSetupError {
    match error {
        AdminError::Refused { reason, .. } => {
            TopicSetupError::Cluster(format!("the brokers refused the connection: {reason}"))
        }
        other => TopicSetupError::Cluster(format!("cluster metadata: {}", cause(&other))),
    }
}

/// librdkafka's own words for what went wrong: the error's source, else the error.
fn cause(error: &AdminError) -> String {
    error
        .source()
        .map_or_else(|| error.to_string(), ToString::to_string)
}

fn partition_count(topics: &[TopicMetadata], topic: &str) -> Option<usize> {
    topics
        .iter()
        .find(|known| known.name == topic && known.error.is_none())
        .map(|known| known.partitions.len())
        .filter(|count| *count > 0)
}
