//! Recognizing a refused login or TLS handshake among librdkafka's client errors and
//! connection-failure log lines (librdkafka reports a failed SASL login only there; its error
//! callback just says that all brokers are down): a wrong password or an untrusted
//! certificate does not heal by retrying, so clients stop at once with the reason instead of
//! retrying until a timeout.

use std::sync::Mutex;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::sync::lock;

/// What librdkafka's connection-failure (`FAIL`) log lines say when the brokers refused the
/// login or the TLS handshake.
const REFUSED: &[&str] = &[
    "SASL authentication error",
    "SASL authentication failed",
    "SSL handshake failed",
    "certificate verify failed",
    // The broker wanted a client certificate (mutual TLS) and got none or one it does not
    // trust: OpenSSL reports the broker's alert when the first response is read.
    "alert bad certificate",
    "alert certificate required",
];

/// Whether `error` says the brokers refused this client's credentials or TLS handshake.
pub(crate) fn is_refusal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::SaslAuthenticationFailed
        )
    )
}

/// The first refusal a client reported, kept for whoever asks next.
#[derive(Debug, Default)]
pub(crate) struct Refusal {
    reason: Mutex<Option<String>>,
}

impl Refusal {
    /// Keeps `reason` if `error` is a refusal (the first one wins); returns whether it was.
    pub fn note(&self, error: &KafkaError, reason: &str) -> bool {
        if !is_refusal(error) {
            return false;
        }
        self.lock().get_or_insert_with(|| reason.to_string());
        true
    }

    /// Keeps `message` if it is a connection-failure log line saying the brokers refused the
    /// login or the TLS handshake; returns whether it was.
    pub fn note_log(&self, facility: &str, message: &str) -> bool {
        if facility != "FAIL" || !REFUSED.iter().any(|words| message.contains(words)) {
            return false;
        }
        self.lock().get_or_insert_with(|| message.to_string());
        true
    }

    /// The refusal's reason, if there was one.
    pub fn reason(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        lock(&self.reason)
    }
}

/// A client context that watches for a refusal (for short-lived clients: the engine's
/// start-up probe, the admin client).
#[derive(Debug, Default)]
pub(crate) struct RefusalContext {
    pub refusal: Refusal,
}

impl rdkafka::ClientContext for RefusalContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.refusal.note_log(facility, message);
        forward_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if !self.refusal.note(&error, reason) {
            tracing::debug!(%error, reason, "client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RefusalContext {}

/// Logs a librdkafka log line through `tracing`, as rust-rdkafka's default log callback does;
/// for contexts that look at log lines themselves.
pub(crate) fn forward_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", "librdkafka: {facility} {message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", "librdkafka: {facility} {message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", "librdkafka: {facility} {message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", "librdkafka: {facility} {message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_login_is_recognized_in_connection_failures_only() {
        let refusal = Refusal::default();
        assert!(!refusal.note_log(
            "FAIL",
            "Connect to ipv4#127.0.0.1:9 failed: Connection refused"
        ));
        assert!(!refusal.note_log("SASL", "SASL authentication error: sent"));
        assert_eq!(refusal.reason(), None);
        let line = "sasl_plaintext://b:9092/bootstrap: SASL authentication error: invalid-proof";
        assert!(refusal.note_log("FAIL", line));
        assert!(refusal.note_log("FAIL", "SSL handshake failed: certificate verify failed"));
        let missing_client_certificate = "ssl://127.0.0.1:53411/bootstrap: Receive failed: \
            error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42";
        assert!(refusal.note_log("FAIL", missing_client_certificate));
        assert_eq!(
            refusal.reason().as_deref(),
            Some(line),
            "the first refusal is kept"
        );
    }

    #[test]
    fn refusal_error_codes() {
        let refused = KafkaError::Global(RDKafkaErrorCode::Authentication);
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        assert!(is_refusal(&refused));
        assert!(!is_refusal(&down));
    }
}
