//! A problem in a configuration file, named by its key path: `tasks.billing.retries: ...`.

use std::fmt;

use super::path::{line_of, one_line, KeyPath, Segment};

/// A bad configuration: the key path at fault, what is wrong, and where it was set (a line of
/// the file, or the override that set it) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `tasks.billing.retry_delays[1]`; empty for a problem with the file as a whole.
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// `line 7`, or `from SLUICE__TASKS__BILLING__CONCURRENCY`, when known.
    pub at: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.problem)?;
        if let Some(at) = &self.at {
            write!(f, " ({at})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// A problem with the value at `path`.
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
            at: None,
        }
    }

    /// A problem with the value at `path`.
    pub fn at(path: KeyPath, problem: impl Into<String>) -> Self {
        Self::new(path.to_string(), problem)
    }

    /// The file is not valid TOML.
    pub fn syntax(text: &str, error: &toml::de::Error) -> Self {
        Self {
            path: String::new(),
            problem: one_line(error.message()),
            at: error
                .span()
                .map(|span| format!("line {}", line_of(text, span.start))),
        }
    }

    /// The key path, as segments (`a.b[1]` is `a`, `b`, 1), to find its line.
    pub fn key_path(&self) -> KeyPath {
        let mut path = KeyPath::default();
        for part in self.path.split('.') {
            let (key, indexes) = part.split_once('[').unwrap_or((part, ""));
            if !key.is_empty() {
                path.0.push(Segment::Key(key.to_owned()));
            }
            for index in indexes.split('[') {
                if let Ok(index) = index.trim_end_matches(']').parse() {
                    path.0.push(Segment::Index(index));
                }
            }
        }
        path
    }
}

/// The name among `candidates` nearest to `unknown`, if it is a likely typo of it.
pub fn did_you_mean<'a>(
    unknown: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    closest(unknown, &candidates)
}

/// The expected name nearest to `unknown`, if it is a likely typo of it.
pub fn closest<'a>(unknown: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|candidate| (edit_distance(unknown, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min()
        .map(|(_, candidate)| candidate)
}

/// Edit distance between two short strings, a swap of neighbours counting as one edit
/// (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![(0..=b.len()).collect::<Vec<usize>>()];
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(row[j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            row[j] = best;
        }
        rows.push(row);
    }
    rows[a.len()][b.len()]
}

/// Names in backquotes, comma-separated.
pub fn quoted(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::path::unknown_field;
    use super::*;

    #[test]
    fn near_misses_get_a_did_you_mean() {
        let expected = ["topics", "group", "retry_delays", "retries"];
        assert_eq!(closest("retry_delay", &expected), Some("retry_delays"));
        assert_eq!(closest("topic", &expected), Some("topics"));
        assert_eq!(closest("colour", &expected), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("exce", "exec"), 1);
        assert_eq!(closest("mian", &["main", "other"]), Some("main"));
        let problem = ConfigError::new("tasks.b.retry_delays[1]", "bad");
        let mut expected = KeyPath::keys(["tasks", "b", "retry_delays"]);
        expected.0.push(Segment::Index(1));
        assert_eq!(problem.key_path(), expected);
        assert_eq!(
            unknown_field("unknown field `x`, expected one of `a`, `bb`"),
            Some(("x", vec!["a", "bb"]))
        );
        assert_eq!(
            unknown_field("unknown field `x`, there are no fields"),
            Some(("x", vec![]))
        );
    }
}
