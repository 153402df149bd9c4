//! Where a cluster is and how to reach it, for the clients that look at it
//! ([`Admin`](crate::admin::Admin)) and read topics from it
//! ([`TopicReader`](crate::reader::TopicReader)) outside a consumer group's engine.
//!
//! These clients are quiet: librdkafka's own log lines go to `tracing` at debug level only,
//! and its last warning or error is kept for the error that ends a request (the brokers at
//! `localhost:9092` refused the connection, say), so a failed look at the cluster is one error,
//! not a dozen log lines.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use crate::admin::AdminError;
use crate::client_error::ClientError;
use crate::refusal::{self, Refusal};
use crate::sync::lock;

/// Settings of the clients that look at a cluster and read from it: where the brokers are,
/// how long to wait for them, and librdkafka properties passed through (security settings,
/// for example).
///
/// ```
/// use std::time::Duration;
/// use sluicegate::ClusterOptions;
///
/// let cluster = ClusterOptions::new("127.0.0.1:9092")
///     .client_id("orders-report")
///     .connect_timeout(Duration::from_secs(5))
///     .librdkafka("security.protocol", "SSL");
/// assert_eq!(cluster.bootstrap_servers(), "127.0.0.1:9092");
/// ```
#[derive(Clone)]
pub struct ClusterOptions {
    pub(crate) bootstrap_servers: String,
    pub(crate) client_id: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) librdkafka: BTreeMap<String, String>,
    /// Forward librdkafka's log lines at their own level instead of at debug level.
    pub(crate) forward_logs: bool,
}

impl fmt::Debug for ClusterOptions {
    /// Pass-through values may hold secrets (SASL passwords), so only their keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("librdkafka", &self.librdkafka.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ClusterOptions {
    /// How long a client waits for the brokers to answer at first, unless told otherwise.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long one request may take once the brokers answered, unless told otherwise.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// The brokers in `bootstrap_servers` (comma-separated `host:port`), every other setting
    /// at its default.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            librdkafka: BTreeMap::new(),
            forward_logs: false,
        }
    }

    /// The client id the brokers see (default: librdkafka's, `rdkafka`; a
    /// [`TopicReader`](crate::reader::TopicReader) uses `sluicegate-reader`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// How long to wait for the brokers to answer the first request (the cluster's
    /// metadata), connection set-up included (default 30 s). librdkafka takes at least 1 s
    /// to set up a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long any other request may take (default 10 s): offsets, group descriptions,
    /// topic creation.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets any other librdkafka property (security settings, for example). These are
    /// applied last, over what the client sets itself.
    pub fn librdkafka(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.librdkafka.insert(key.into(), value.into());
        self
    }

    /// The brokers to bootstrap from.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// These options, logging librdkafka's lines at their own level (as the engine's clients
    /// do) rather than at debug level.
    pub(crate) fn forward_logs(mut self) -> Self {
        self.forward_logs = true;
        self
    }

    /// A client configuration: the brokers, the connect timeout, the client id and `extra`
    /// (the client's own settings), then the pass-through properties over all of them.
    pub(crate) fn client_config(&self, extra: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        let millis = self.connect_timeout.as_millis().clamp(1_000, 2_147_483_647);
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("socket.connection.setup.timeout.ms", millis.to_string());
        if let Some(id) = &self.client_id {
            config.set("client.id", id);
        }
        for (key, value) in extra {
            config.set(*key, *value);
        }
        for (key, value) in &self.librdkafka {
            config.set(key, value);
        }
        config
    }

    /// Creates a client of any kind from `config`, with a [`QuietContext`].
    pub(crate) fn create<C>(&self, config: &ClientConfig) -> Result<C, AdminError>
    where
        C: FromClientConfigAndContext<QuietContext>,
    {
        config
            .create_with_context(QuietContext::new(self.forward_logs))
            .map_err(creation_error)
    }
}

/// Why librdkafka would not create a client.
pub(crate) fn creation_error(error: KafkaError) -> AdminError {
    match &error {
        KafkaError::ClientConfig(_, description, key, value) => AdminError::InvalidProperty {
            key: key.clone(),
            value: value.clone(),
            description: description.clone(),
            source: ClientError::from(error),
        },
        KafkaError::ClientCreation(reason) => AdminError::InvalidConfiguration {
            reason: reason.clone(),
            source: ClientError::from(error),
        },
        _ => AdminError::Client {
            source: ClientError::from(error),
        },
    }
}

/// A client context that keeps librdkafka's last warning or error (for the error that ends a
/// request) and watches for a refused login or TLS handshake. Log lines go to `tracing` at
/// debug level, or at their own level when forwarding.
#[derive(Default)]
pub(crate) struct QuietContext {
    last_problem: Mutex<Option<String>>,
    pub refusal: Refusal,
    forward: bool,
}

impl QuietContext {
    fn new(forward: bool) -> Self {
        Self {
            forward,
            ..Self::default()
        }
    }

    /// librdkafka's last warning or error, if any.
    pub fn last_problem(&self) -> Option<String> {
        lock(&self.last_problem).clone()
    }

    fn note(&self, problem: &str) {
        // "[thrd:host:port/bootstrap]: host:port/bootstrap: Connect to ..." names the thread
        // first; the rest says it all.
        let problem = match problem
            .strip_prefix("[thrd:")
            .and_then(|rest| rest.split_once("]: "))
        {
            Some((_, rest)) => rest,
            None => problem,
        };
        *lock(&self.last_problem) = Some(problem.to_owned());
    }
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.refusal.note_log(facility, message);
        if self.forward {
            refusal::forward_log(level, facility, message);
        } else {
            tracing::debug!(target: "librdkafka", ?level, facility, message);
        }
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        ) {
            self.note(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.refusal.note(&error, reason);
        tracing::debug!(target: "librdkafka", %error, reason);
        self.note(reason);
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}

impl ProducerContext for QuietContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, (): ()) {}
}

/// Runs a future to completion on this thread. For rust-rdkafka's admin futures, which
/// librdkafka's own thread completes: no async runtime is needed.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_properties_go_last_and_stay_hidden() {
        let options = ClusterOptions::new("a:1")
            .client_id("mine")
            .connect_timeout(Duration::from_millis(10))
            .librdkafka("client.id", "theirs")
            .librdkafka("sasl.password", "hunter2");
        let config = options.client_config(&[("group.id", "g")]);
        assert_eq!(config.get("client.id"), Some("theirs"));
        assert_eq!(config.get("group.id"), Some("g"));
        // librdkafka refuses less than a second.
        assert_eq!(
            config.get("socket.connection.setup.timeout.ms"),
            Some("1000")
        );
        let shown = format!("{options:?}");
        assert!(shown.contains("sasl.password") && !shown.contains("hunter2"));
    }

    #[test]
    fn the_last_problem_drops_the_thread_name() {
        let context = QuietContext::default();
        assert_eq!(context.last_problem(), None);
        context.note("[thrd:h:1/bootstrap]: h:1/bootstrap: Connect to h:1 failed");
        assert_eq!(
            context.last_problem().as_deref(),
            Some("h:1/bootstrap: Connect to h:1 failed")
        );
    }

    #[test]
    fn block_on_waits_for_another_thread() {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let _ = sender.send(7);
        });
        assert_eq!(block_on(receiver), Ok(7));
        thread.join().unwrap();
    }
}
