//! A task's handler as its configuration describes it, checked: what
//! [`Handler::start`](super::Handler::start) builds the running handler from.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Url;
use serde::Deserialize;

use crate::config::HandlerTable;
use crate::secret::Secret;

/// How a record reaches a command or a URL: `raw` (the value's bytes) or `json` (the record
/// with its metadata, see [`RecordJson`](super::record_json::RecordJson)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The value as it is; metadata goes beside it (environment variables, HTTP headers).
    Raw,
    /// A JSON object per record: metadata, key, value and headers.
    Json,
}

/// A checked handler: what it calls, and whether it is called per record or per batch.
#[derive(Debug, Clone)]
pub struct HandlerSpec {
    /// The command or the URL.
    pub kind: HandlerKind,
    /// Batch the records first, when set: the handler is then called once per batch.
    pub batch: Option<BatchSpec>,
}

/// What the handler calls.
#[derive(Debug, Clone)]
pub enum HandlerKind {
    /// A command: one run per call, or long-lived workers.
    Exec(ExecSpec),
    /// An HTTP endpoint: one POST per call.
    Http(HttpSpec),
    /// A handler registered with [`Sluice::handler`](crate::Sluice::handler).
    Custom(CustomSpec),
}

/// `handler = { type = "NAME", ... }` of a registered handler: its name and its settings
/// (without `type` and `batch`), checked by the handler's settings type.
#[derive(Debug, Clone)]
pub struct CustomSpec {
    /// The name it was registered under.
    pub name: String,
    /// Its settings, as the file has them.
    pub settings: HandlerTable,
}

/// `handler = { type = "exec", ... }`, checked.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// The program and its arguments (not empty).
    pub command: Vec<String>,
    /// What a command run reads on standard input (always JSON for workers and batches).
    pub input: Encoding,
    /// Long-lived worker processes instead of one run per call, when set (at least 1).
    pub workers: Option<usize>,
    /// How long one call may take before its command (or worker) is killed.
    pub timeout: Option<Duration>,
}

/// `handler = { type = "http", ... }`, checked.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// Where records are POSTed (http or https).
    pub url: Url,
    /// The request body: the value (raw), or the record as JSON.
    pub body: Encoding,
    /// Extra headers of every request; values are marked sensitive, so they never print.
    pub headers: HeaderMap,
    /// How long one request may take, connecting included.
    pub timeout: Duration,
}

/// `batch = { size = 100, timeout = "200ms" }`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    /// A batch is handed out when it holds this many records (at least 1).
    pub size: usize,
    /// ...or this long after its first record arrived (more than zero).
    pub timeout: Duration,
}

/// `headers = { Authorization = "Bearer ..." }` as the file has it. Every value is a
/// [`Secret`] (so it may come from the environment or a file): `Debug` shows the names only.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct HeaderTable(pub BTreeMap<String, Secret>);

impl fmt::Debug for HeaderTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|name| (name, "<not shown>")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_never_print() {
        let table = HeaderTable(BTreeMap::from([(
            "Authorization".to_owned(),
            Secret::new("Bearer s3cret"),
        )]));
        let shown = format!("{table:?}");
        assert!(shown.contains("Authorization"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
