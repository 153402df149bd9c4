//! `sluice dlq inspect`: the dead letters of a task, with where they came from, how often
//! they were handled, when and why they failed.
//!
//! Text: a line per dead letter, then its error, key and value, indented:
//!
//! ```text
//! orders.billing.dlq 0@3: from orders 1@42, handled 3 times, failed 2024-05-01T12:00:00.120Z .. 2024-05-01T12:00:31.450Z
//!   error: exit status 1: card declined
//!   key: customer-7
//!   value: {"amount": 3}
//! ```
//!
//! JSON: one object per line with `dlq_topic`, `dlq_partition`, `dlq_offset`,
//! `original_topic`, `original_partition`, `original_offset`, `handled`,
//! `first_failure_ms`, `last_failure_ms`, `error`, `key`, `value` and the record's own
//! `headers`; bytes as `sluice consume --format json` writes them (a string when UTF-8, else
//! `{"base64": ...}`). A record without readable retry headers has `null` there and a
//! `problem`.

use std::io::Write as _;

use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use sluicegate::retry::without_retry_headers;

use super::read::{read, DeadLetter};
use super::select::Selection;
use super::TaskArgs;
use crate::console::json::Bytes;
use crate::handlers::registry::Registry;

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    task: TaskArgs,
    /// How to print each dead letter.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    selection: Selection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A readable block per dead letter.
    Text,
    /// One JSON object per line.
    Json,
}

pub fn run(args: InspectArgs, registry: &Registry) -> anyhow::Result<()> {
    let plan = args.task.plan(registry)?;
    let letters = read(&plan, &args.selection)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for letter in &letters {
        match args.format {
            Format::Text => write_text(&mut out, letter)?,
            Format::Json => writeln!(out, "{}", to_json(letter))?,
        }
    }
    out.flush()?;
    if args.format == Format::Text {
        eprintln!(
            "sluice dlq inspect: {} dead letter{} of task `{}`",
            letters.len(),
            if letters.len() == 1 { "" } else { "s" },
            plan.name
        );
    }
    Ok(())
}

fn write_text(out: &mut impl std::io::Write, letter: &DeadLetter) -> std::io::Result<()> {
    write!(
        out,
        "{} {}@{}: ",
        letter.topic, letter.partition, letter.offset
    )?;
    match &letter.history {
        Ok(Some(history)) => {
            let handled = history.attempt.saturating_sub(1);
            writeln!(
                out,
                "from {} {}@{}, handled {handled} time{}, failed {} .. {}",
                history.original_topic,
                history.original_partition,
                history.original_offset,
                if handled == 1 { "" } else { "s" },
                utc(history.first_failure_ms),
                utc(history.last_failure_ms)
            )?;
            writeln!(out, "  error: {}", readable(history.error.as_bytes()))?;
        }
        Ok(None) => writeln!(out, "no retry headers (not written by sluice)")?,
        Err(problem) => writeln!(out, "unreadable retry headers: {problem}")?,
    }
    if let Some(key) = &letter.key {
        writeln!(out, "  key: {}", readable(key))?;
    }
    match &letter.value {
        Some(value) => writeln!(out, "  value: {}", readable(value)),
        None => writeln!(out, "  value: (none)"),
    }
}

fn to_json(letter: &DeadLetter) -> Value {
    let mut object = json!({
        "dlq_topic": letter.topic,
        "dlq_partition": letter.partition,
        "dlq_offset": letter.offset,
        "timestamp": letter.timestamp_ms,
        "original_topic": null,
        "original_partition": null,
        "original_offset": null,
        "handled": null,
        "first_failure_ms": null,
        "last_failure_ms": null,
        "error": null,
        "key": bytes(letter.key.as_deref()),
        "value": bytes(letter.value.as_deref()),
        "headers": without_retry_headers(&letter.headers)
            .iter()
            .map(|header| json!({"key": header.key, "value": bytes(header.value.as_deref())}))
            .collect::<Vec<_>>(),
    });
    match &letter.history {
        Ok(Some(history)) => {
            object["original_topic"] = json!(history.original_topic);
            object["original_partition"] = json!(history.original_partition);
            object["original_offset"] = json!(history.original_offset);
            object["handled"] = json!(history.attempt.saturating_sub(1));
            object["first_failure_ms"] = json!(history.first_failure_ms);
            object["last_failure_ms"] = json!(history.last_failure_ms);
            object["error"] = json!(history.error);
        }
        Ok(None) => object["problem"] = json!("no retry headers"),
        Err(problem) => object["problem"] = json!(problem.to_string()),
    }
    object
}

/// Bytes as a JSON string when UTF-8, else `{"base64": ...}`; `None` is `null` (as
/// `sluice consume --format json` writes them).
fn bytes(bytes: Option<&[u8]>) -> Value {
    json!(Bytes(bytes))
}

/// Text on one line: control characters escaped; bytes that are not UTF-8 shown lossily,
/// with a note.
fn readable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut line: String = text
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if std::str::from_utf8(bytes).is_err() {
        line.push_str(" (not UTF-8)");
    }
    line
}

/// Milliseconds since the epoch as `2024-05-01T12:00:00.120Z`.
fn utc(millis: i64) -> String {
    let (days, in_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_714_564_800_120), "2024-05-01T12:00:00.120Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn bytes_print_readably() {
        assert_eq!(readable(b"a\nb"), "a\\nb");
        assert_eq!(readable(b"\xffok"), "\u{fffd}ok (not UTF-8)");
        assert_eq!(bytes(Some(b"\xff")), json!({"base64": "/w=="}));
        assert_eq!(bytes(None), Value::Null);
    }
}
