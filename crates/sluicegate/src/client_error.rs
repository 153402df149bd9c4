//! [`ClientError`]: an error the Kafka client (librdkafka) reported, kept whole and
//! classified, without rdkafka's types in Sluicegate's public API.

use std::fmt;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// An error the Kafka client reported: what went wrong, with its Kafka or librdkafka error
/// code when it has one.
///
/// Errors of Sluicegate that a client error caused keep it as their
/// [`source`](std::error::Error::source), so an error chain ends at the client's own words.
///
/// ```no_run
/// use sluicegate::producer::{ProduceError, ProduceRecord, Producer, ProducerOptions};
///
/// # async fn run() {
/// let producer = Producer::new(ProducerOptions::new().bootstrap_servers("127.0.0.1:9092"));
/// match producer.produce("orders", ProduceRecord::new(&vec![0u8; 2 << 20])).await {
///     Err(ProduceError::Rejected { source, .. }) if source.is_permanent() => {
///         eprintln!("this record can never be written: {source} ({:?})", source.code());
///     }
///     other => println!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ClientError(Reported);

/// What the client reported: an error, or a bare code (from the mock cluster's API). The
/// error is boxed so that a `ClientError` (and every error that keeps one) stays small.
#[derive(Clone, PartialEq, Eq)]
enum Reported {
    Error(Box<KafkaError>),
    Code(RDKafkaErrorCode),
}

impl ClientError {
    /// The error code's name (`MessageSizeTooLarge`, `UnknownTopicOrPartition`...), when
    /// the client reported a code.
    pub fn code(&self) -> Option<String> {
        self.code_value().map(|code| format!("{code:?}"))
    }

    /// Whether trying the same thing again can never succeed: the broker or the client
    /// refuses this record or request for good (too large, invalid, not authorised,
    /// against a topic policy), whatever the cluster's state. Anything else (a broker down,
    /// a timeout, a leader moving) may heal.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.code_value(),
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidMessageSize
                    | RDKafkaErrorCode::MessageBatchTooLarge
                    | RDKafkaErrorCode::InvalidRecord
                    | RDKafkaErrorCode::InvalidTopic
                    | RDKafkaErrorCode::InvalidTimestamp
                    | RDKafkaErrorCode::InvalidRequiredAcks
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::UnsupportedForMessageFormat
                    | RDKafkaErrorCode::PolicyViolation
                    | RDKafkaErrorCode::InvalidArgument
            )
        )
    }

    fn code_value(&self) -> Option<RDKafkaErrorCode> {
        match &self.0 {
            Reported::Error(error) => error.rdkafka_error_code(),
            Reported::Code(code) => Some(*code),
        }
    }
}

impl From<KafkaError> for ClientError {
    fn from(error: KafkaError) -> Self {
        Self(Reported::Error(Box::new(error)))
    }
}

impl From<RDKafkaErrorCode> for ClientError {
    fn from(code: RDKafkaErrorCode) -> Self {
        Self(Reported::Code(code))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Reported::Error(error) => error.fmt(f),
            Reported::Code(code) => code.fmt(f),
        }
    }
}

impl fmt::Debug for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Reported::Error(error) => f.debug_tuple("ClientError").field(error).finish(),
            Reported::Code(code) => f.debug_tuple("ClientError").field(code).finish(),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Reported::Error(error) => error.source(),
            Reported::Code(_) => None,
        }
    }
}

/// An error and its sources, joined with `: `, for a log line: Sluicegate's errors keep
/// their cause as [`source`](std::error::Error::source) instead of repeating it.
pub(crate) struct Chain<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_refused_for_good_are_permanent_and_outages_are_not() {
        let too_large = ClientError::from(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge,
        ));
        assert!(too_large.is_permanent());
        assert_eq!(too_large.code().as_deref(), Some("MessageSizeTooLarge"));
        assert!(too_large.to_string().contains("too large"), "{too_large}");

        for transient in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            let error = ClientError::from(KafkaError::MessageProduction(transient));
            assert!(!error.is_permanent(), "{transient:?} may heal");
        }
        let creation = ClientError::from(KafkaError::ClientCreation("bad".into()));
        assert_eq!((creation.code(), creation.is_permanent()), (None, false));
    }

    #[test]
    fn a_chain_shows_every_cause_once() {
        let error = crate::producer::ProduceError::Delivery {
            topic: "orders".into(),
            source: ClientError::from(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge,
            )),
        };
        assert!(error.is_permanent());
        let chain = Chain(&error).to_string();
        assert!(
            chain.starts_with("delivery to `orders` failed: ") && chain.contains("too large"),
            "{chain}"
        );
    }
}
