//! The `http` handler: one POST per record, or per batch.
//!
//! # Request
//!
//! With `body = "raw"` (the default for single records) the body is the record's value
//! (`Content-Type: application/octet-stream`, empty for a tombstone); with `body = "json"`
//! it is the record as a JSON object (see [`record_json`](super::record_json),
//! `application/json`). A batch is always a JSON array of such objects. A single record's
//! request carries its metadata in headers:
//!
//! | header | value |
//! | --- | --- |
//! | `Sluice-Topic`, `Sluice-Partition`, `Sluice-Offset` | where the record was first read: the input topic, also in a retry stage |
//! | `Sluice-Key` | the key, when it is UTF-8 without control characters (absent otherwise) |
//! | `Sluice-Attempt` | 1 on the first handling, `k + 1` in retry `k` |
//!
//! A batch's request carries `Sluice-Batch-Size`. The configured `headers` go on every
//! request (they may replace `Content-Type`); their values are never logged nor put in a
//! failure's reason.
//!
//! # Outcome
//!
//! A 2xx status is success. 408, 429 and 5xx, no response within `timeout`, and connection
//! errors are failures to retry, per the task's retry settings. Any other status (other 4xx,
//! and 3xx: redirects are not followed) says the record itself is refused: it goes straight
//! to the dead-letter topic. A failure's reason is the status and the start of the response
//! body.
//!
//! # Connections
//!
//! One client serves the whole task and keeps connections open between calls; how many
//! requests are in flight at once is the task's `concurrency`.

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};
use sluicegate::pipeline::BoxError;
use sluicegate::retry::Permanent;
use sluicegate::Record;

use super::record_json::{json_array, text_key, Origin, RecordJson};
use super::spec::{Encoding, HttpSpec};
use crate::console::show_duration;

/// How much of an error response's body a failure quotes.
const QUOTED_BYTES: usize = 300;
/// How much of a success response's body is read (so its connection can be reused).
const DRAINED_BYTES: usize = 1 << 20;

/// POSTs records to a URL.
#[derive(Debug, Clone)]
pub struct HttpHandler {
    client: Client,
    url: Url,
    body: Encoding,
    headers: HeaderMap,
    timeout: Duration,
}

impl HttpHandler {
    /// A handler for `spec`, with its own connection pool.
    pub fn new(spec: &HttpSpec) -> Result<Self, String> {
        let client = Client::builder()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| format!("could not set up the HTTP client: {}", chain(&error)))?;
        Ok(Self {
            client,
            url: spec.url.clone(),
            body: spec.body,
            headers: spec.headers.clone(),
            timeout: spec.timeout,
        })
    }

    /// Handles one record: `Ok` on 2xx, a [`Permanent`] error when the server refuses the
    /// record, any other error to retry.
    pub async fn handle(&self, record: &Record) -> Result<(), BoxError> {
        let origin = Origin::of(record);
        let mut request = self
            .request()
            .header(name("sluice-topic"), topic_value(&origin.topic))
            .header(name("sluice-partition"), origin.partition)
            .header(name("sluice-offset"), origin.offset)
            .header(name("sluice-attempt"), origin.attempt);
        let key = text_key(record).and_then(|key| HeaderValue::from_bytes(key.as_bytes()).ok());
        if let Some(key) = key {
            request = request.header(name("sluice-key"), key);
        }
        let request = match self.body {
            Encoding::Raw => request
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(record.value.clone().unwrap_or_default()),
            Encoding::Json => request
                .header(CONTENT_TYPE, "application/json")
                .body(json(&RecordJson(record))),
        };
        self.send(request).await
    }

    /// Handles a batch: one request whose body is a JSON array of the records; the outcome
    /// is every record's.
    pub async fn handle_batch(&self, records: &[&Record]) -> Result<(), BoxError> {
        let request = self
            .request()
            .header(name("sluice-batch-size"), records.len())
            .header(CONTENT_TYPE, "application/json")
            .body(json(&json_array(records)));
        self.send(request).await
    }

    fn request(&self) -> RequestBuilder {
        self.client.post(self.url.clone()).timeout(self.timeout)
    }

    async fn send(&self, request: RequestBuilder) -> Result<(), BoxError> {
        // Last, so the configured headers replace defaults such as Content-Type.
        let request = request.headers(self.headers.clone());
        let response = request.send().await.map_err(|error| self.failure(error))?;
        let status = response.status();
        if status.is_success() {
            drain(response).await;
            return Ok(());
        }
        let mut reason = format!("HTTP {status}");
        let start = body_start(response).await;
        if !start.is_empty() {
            reason = format!("{reason}: {start}");
        }
        if retriable(status) {
            Err(reason.into())
        } else {
            Err(Permanent::new(reason).into())
        }
    }

    /// A failed request, in words (without the URL: its query may hold secrets).
    fn failure(&self, error: reqwest::Error) -> BoxError {
        let error = error.without_url();
        let text = if error.is_timeout() {
            format!("no response within {}", show_duration(self.timeout))
        } else if error.is_connect() {
            format!("could not connect: {}", chain(&error))
        } else {
            format!("request failed: {}", chain(&error))
        };
        text.into()
    }
}

/// Whether a server might take the record later: 408, 429 and 5xx.
fn retriable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

fn name(lowercase: &'static str) -> HeaderName {
    HeaderName::from_static(lowercase)
}

/// A topic name as a header value (topic names are ASCII letters, digits, `.`, `_`, `-`).
fn topic_value(topic: &str) -> HeaderValue {
    HeaderValue::from_str(topic).unwrap_or(HeaderValue::from_static(""))
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    // Records serialize into memory without failing.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Reads (and drops) a success response's body, so its connection goes back to the pool.
async fn drain(mut response: Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > DRAINED_BYTES {
            break;
        }
    }
}

/// The start of an error response's body, on one line.
async fn body_start(mut response: Response) -> String {
    let mut start = Vec::new();
    while start.len() < QUOTED_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => start.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&start[..start.len().min(QUOTED_BYTES)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its sources: `error sending request: client error (Connect): ...`.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::HeaderMap as Headers;
    use axum::routing::post;
    use axum::Router;

    use super::*;

    /// What the test server saw: headers and body of each request.
    type Seen = Arc<Mutex<Vec<(Headers, Bytes)>>>;

    /// A server that answers with the status the body asks for (`status:503`), after the
    /// delay it asks for (`sleep:2`), else 200.
    async fn server() -> (Url, Seen) {
        let seen: Seen = Arc::default();
        let app = Router::new()
            .route(
                "/",
                post(
                    |State(seen): State<Seen>, headers: Headers, body: Bytes| async move {
                        seen.lock().unwrap().push((headers, body.clone()));
                        let text = String::from_utf8_lossy(&body).to_string();
                        if let Some(seconds) = text.split("sleep:").nth(1) {
                            let seconds: u64 = seconds[..1].parse().unwrap();
                            tokio::time::sleep(Duration::from_secs(seconds)).await;
                        }
                        match text.split("status:").nth(1) {
                            Some(code) => (
                                axum::http::StatusCode::from_u16(code[..3].parse().unwrap())
                                    .unwrap(),
                                "the server says no\n  twice",
                            ),
                            None => (axum::http::StatusCode::OK, "fine"),
                        }
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}/").parse().unwrap(), seen)
    }

    fn handler(url: Url, body: Encoding, timeout: Duration) -> HttpHandler {
        let mut headers = HeaderMap::new();
        let mut secret = HeaderValue::from_static("Bearer s3cret");
        secret.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, secret);
        HttpHandler::new(&HttpSpec {
            url,
            body,
            headers,
            timeout,
        })
        .unwrap()
    }

    fn record(value: &str) -> Record {
        Record {
            topic: "orders".into(),
            partition: 2,
            offset: 40,
            key: Some(b"customer-7".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    #[tokio::test]
    async fn a_record_is_posted_with_its_metadata() {
        let (url, seen) = server().await;
        let raw = handler(url.clone(), Encoding::Raw, Duration::from_secs(5));
        raw.handle(&record("hello")).await.unwrap();
        let json = handler(url, Encoding::Json, Duration::from_secs(5));
        json.handle(&record("hello")).await.unwrap();
        let (a, b) = (record("a"), record("b"));
        json.handle_batch(&[&a, &b]).await.unwrap();

        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(&body[..], b"hello");
        for (name, value) in [
            ("sluice-topic", "orders"),
            ("sluice-partition", "2"),
            ("sluice-offset", "40"),
            ("sluice-attempt", "1"),
            ("sluice-key", "customer-7"),
            ("content-type", "application/octet-stream"),
            ("authorization", "Bearer s3cret"),
        ] {
            assert_eq!(headers[name], value, "{name}");
        }
        let (headers, body) = &seen[1];
        assert_eq!(headers["content-type"], "application/json");
        let object: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(object["value"], "hello");
        let (headers, body) = &seen[2];
        assert_eq!(headers["sluice-batch-size"], "2");
        let array: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(array[1]["value"], "b");
    }

    #[tokio::test]
    async fn statuses_decide_retry_or_dead_letter() {
        let (url, _) = server().await;
        let handler = handler(url, Encoding::Raw, Duration::from_secs(5));
        for (code, permanent) in [(503, false), (500, false), (429, false), (408, false)] {
            let error = handler
                .handle(&record(&format!("status:{code}")))
                .await
                .unwrap_err();
            assert_eq!(error.is::<Permanent>(), permanent, "{code}: {error}");
            assert!(
                error.to_string().starts_with(&format!("HTTP {code} ")),
                "{error}"
            );
        }
        for code in [400, 404, 422, 301] {
            let error = handler
                .handle(&record(&format!("status:{code}")))
                .await
                .unwrap_err();
            assert!(error.is::<Permanent>(), "{code}: {error}");
        }
        let error = handler.handle(&record("status:400")).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "HTTP 400 Bad Request: the server says no twice"
        );
        assert!(!format!("{error:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn timeouts_and_refused_connections_are_retried() {
        let (url, _) = server().await;
        let slow = handler(url, Encoding::Raw, Duration::from_millis(300));
        let error = slow.handle(&record("sleep:2")).await.unwrap_err();
        assert!(!error.is::<Permanent>());
        assert_eq!(error.to_string(), "no response within 300 ms");

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let closed = handler(
            format!("http://127.0.0.1:{port}/").parse().unwrap(),
            Encoding::Raw,
            Duration::from_secs(5),
        );
        let error = closed.handle(&record("x")).await.unwrap_err();
        assert!(!error.is::<Permanent>());
        let text = error.to_string();
        assert!(text.starts_with("could not connect: "), "{text}");
        assert!(!text.contains(&port.to_string()), "no URL: {text}");
    }
}
