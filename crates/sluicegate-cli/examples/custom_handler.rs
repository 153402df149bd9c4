//! Your own `sluice`, with a handler of your own: the same subcommands, configuration file and
//! flags as `sluice`, and `type = "word-count"` in a task's `handler` table runs the handler
//! below.
//!
//! ```sh
//! cargo run -p sluicegate-cli --example custom_handler -- dev-broker --topic lines:2 &   # prints ADDR
//! cat > words.toml <<'TOML'
//! [clusters.local]
//! bootstrap_servers = "ADDR"
//!
//! [tasks.words]
//! topics = ["lines"]
//! retries = 2
//! handler = { type = "word-count", min_words = 2 }
//! TOML
//! cargo run -p sluicegate-cli --example custom_handler -- config check words.toml
//! printf 'hello brave new world\nhi\n' |
//!     cargo run -p sluicegate-cli --example custom_handler -- produce -b ADDR --topic lines
//! cargo run -p sluicegate-cli --example custom_handler -- process -c words.toml words
//! ```
//!
//! "hello brave new world" is counted; "hi" has too few words, which the handler calls
//! permanent: it goes straight to the dead-letter topic (`sluice dlq inspect -c words.toml
//! words` lists it). A mistake in the handler's settings (`min_word = 2`) is reported by
//! `config check` and every other command with its key path and a did-you-mean.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use sluicegate_cli::{BoxError, Handler, Permanent, Record, Sluice};

/// The settings of `handler = { type = "word-count", ... }`: checked when the configuration
/// is read, unknown keys refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WordCountSettings {
    /// Fewer words than this is a bad record: dead-lettered, never retried.
    #[serde(default = "one")]
    min_words: usize,
}

fn one() -> usize {
    1
}

/// Counts the words of each record's value.
struct WordCount {
    settings: WordCountSettings,
    total: AtomicU64,
}

impl Handler for WordCount {
    async fn handle(&self, record: &Record) -> Result<(), BoxError> {
        let value = record.value.as_deref().unwrap_or_default();
        let text = std::str::from_utf8(value).map_err(|_| Permanent::new("not UTF-8"))?;
        let words = text.split_whitespace().count();
        if words < self.settings.min_words {
            // Permanent: straight to the dead-letter topic.
            return Err(Permanent::new(format!(
                "{words} words, fewer than {}",
                self.settings.min_words
            ))
            .into());
        }
        let total = self.total.fetch_add(words as u64, Ordering::Relaxed) + words as u64;
        println!(
            "{words} words at {}@{}; {total} so far",
            record.partition, record.offset
        );
        // Any other error would be retried through the task's retry topics.
        Ok(())
    }
}

fn main() -> ExitCode {
    Sluice::new()
        .handler("word-count", |settings: WordCountSettings| {
            Ok(WordCount {
                settings,
                total: AtomicU64::new(0),
            })
        })
        .run()
}
