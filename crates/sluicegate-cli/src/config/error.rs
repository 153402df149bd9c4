//! A problem in a configuration file, named by its key path: `tasks.billing.retries: ...`.

use std::fmt;

/// A bad configuration: the key path at fault, what is wrong, and the line when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `tasks.billing.retry_delays[1]`; empty for a problem with the file as a whole.
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// The line (1-based) the problem was found on, when known.
    pub line: Option<usize>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.problem)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
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
            line: None,
        }
    }

    /// The file is not valid TOML.
    pub fn syntax(text: &str, error: &toml::de::Error) -> Self {
        Self {
            path: String::new(),
            problem: one_line(error.message()),
            line: error.span().map(|span| line_of(text, span.start)),
        }
    }

    /// The TOML does not fit the schema: the path comes from `serde_path_to_error`; unknown
    /// and missing keys are reworded (with a did-you-mean for a near miss).
    pub fn from_serde(text: &str, error: &serde_path_to_error::Error<toml::de::Error>) -> Self {
        let inner = error.inner();
        let mut path = match error.path().to_string() {
            root if root == "." => String::new(),
            path => path,
        };
        let message = one_line(inner.message());
        let problem = if let Some((unknown, expected)) = unknown_field(&message) {
            // serde_path_to_error names the unknown key already.
            if path.rsplit('.').next() != Some(unknown) {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(unknown);
            }
            match closest(unknown, &expected) {
                Some(near) => format!("unknown key (did you mean `{near}`?)"),
                None if expected.is_empty() => "unknown key".to_owned(),
                None => format!("unknown key (expected one of {})", quoted(&expected)),
            }
        } else if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            format!("missing key `{missing}`")
        } else {
            message
        };
        Self {
            path,
            problem,
            line: inner.span().map(|span| line_of(text, span.start)),
        }
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`", or "there are
/// no fields"): the unknown name and the expected ones.
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).collect();
    Some((unknown, expected))
}

/// The expected name nearest to `unknown`, if it is a likely typo of it.
fn closest<'a>(unknown: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|candidate| (edit_distance(unknown, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn quoted(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    quoted.join(", ")
}

fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines.join("; ")
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_get_a_did_you_mean() {
        let expected = ["topics", "group", "retry_delays", "retries"];
        assert_eq!(closest("retry_delay", &expected), Some("retry_delays"));
        assert_eq!(closest("topic", &expected), Some("topics"));
        assert_eq!(closest("colour", &expected), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
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
