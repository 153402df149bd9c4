//! For the built-in handler tests: a task whose configuration names a handler of the test's
//! choosing, and a local HTTP server that records what it is sent.

#![allow(dead_code)] // Each test binary uses a different part.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::Router;

use crate::common::task::TaskFixture;

/// Rewrites `task`'s configuration: its task keeps its topic, group and the short group
/// timeouts, gets `settings` (TOML lines) and the `handler` table's lines.
pub fn configure(task: &TaskFixture, settings: &str, handler: &str) {
    let text = format!(
        r#"[clusters.main]
bootstrap_servers = "{bootstrap}"

[tasks.{name}]
topics = ["{topic}"]
group = "{group}"
session_timeout = "6s"
max_poll_interval = "10s"
{settings}
[tasks.{name}.handler]
{handler}
"#,
        bootstrap = task.bootstrap,
        name = task.name,
        topic = task.topic,
        group = task.group,
    );
    fs::write(&task.config, text).expect("write the configuration");
}

/// A file path beside `task`'s configuration.
pub fn beside(task: &TaskFixture, name: &str) -> PathBuf {
    task.config
        .parent()
        .expect("the configuration's directory")
        .join(name)
}

/// Writes an executable shell script beside `task`'s configuration; returns its path.
pub fn script(task: &TaskFixture, name: &str, body: &str) -> PathBuf {
    let path = beside(task, name);
    fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write the script");
    let status = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .expect("chmod");
    assert!(status.success());
    path
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The path it was sent to.
    pub path: String,
    /// Header names in lowercase; the last value of each.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The status it was answered with (0 while being answered).
    pub status: u16,
}

impl Request {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or_else(|| panic!("no {name} header in {self:?}"), String::as_str)
    }
}

/// How the server answers a request: status, body, and a delay before answering.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    pub fn ok() -> Answer {
        Answer::status(200, "ok")
    }

    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

/// Decides the answer to a request, given how many earlier requests had the same body.
type Decide = dyn Fn(&Request, usize) -> Answer + Send + Sync;

#[derive(Clone)]
struct Shared {
    seen: Arc<Mutex<Vec<Request>>>,
    decide: Arc<Decide>,
}

/// An HTTP server on 127.0.0.1 answering POSTs to any path as `decide` says, in a runtime of
/// its own; it stops when dropped.
pub struct TestServer {
    pub url: String,
    seen: Arc<Mutex<Vec<Request>>>,
    _runtime: tokio::runtime::Runtime,
}

impl TestServer {
    pub fn start(decide: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let shared = Shared {
            seen: Arc::default(),
            decide: Arc::new(decide),
        };
        let app = Router::new()
            .route("/{*path}", post(answer))
            .route("/", post(answer))
            .with_state(shared.clone());
        let address: SocketAddr = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let address = listener.local_addr().expect("address");
            tokio::spawn(async move { axum::serve(listener, app).await });
            address
        });
        TestServer {
            url: format!("http://{address}/records"),
            seen: shared.seen,
            _runtime: runtime,
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().expect("requests").clone()
    }
}

async fn answer(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let request = Request {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        status: 0,
    };
    let (index, earlier) = {
        let mut seen = shared.seen.lock().expect("requests");
        let earlier = seen.iter().filter(|r| r.body == request.body).count();
        seen.push(request.clone());
        (seen.len() - 1, earlier)
    };
    let answer = (shared.decide)(&request, earlier);
    tokio::time::sleep(answer.delay).await;
    shared.seen.lock().expect("requests")[index].status = answer.status;
    (
        StatusCode::from_u16(answer.status).expect("a status code"),
        answer.body,
    )
}
