//! Key paths (`tasks.billing.retry_delays[1]`), the line each key of the file is on, and
//! deserializing a table while collecting every problem in it instead of the first.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{closest, quoted, ConfigError};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    /// A key of a table.
    Key(String),
    /// An element of an array.
    Index(usize),
}

/// A path to a value of the configuration, shown as `tasks.billing.retry_delays[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    /// The path of these keys.
    pub fn keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self(
            keys.into_iter()
                .map(|key| Segment::Key(key.to_owned()))
                .collect(),
        )
    }

    /// This path, then `key`.
    pub fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }

    /// This path, then `other`.
    pub fn join(&self, other: &KeyPath) -> Self {
        let mut path = self.clone();
        path.0.extend(other.0.iter().cloned());
        path
    }

    /// Whether `self` is `other` or lies under it.
    pub fn starts_with(&self, other: &KeyPath) -> bool {
        self.0.starts_with(&other.0)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if index == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(at) => write!(f, "[{at}]")?,
            }
        }
        Ok(())
    }
}

/// The line (1-based) of every key and array element of a file, by key path.
#[derive(Debug, Default)]
pub struct Lines(BTreeMap<KeyPath, usize>);

impl Lines {
    /// The lines of `text`, a file that parsed.
    pub fn of(text: &str) -> Self {
        let mut lines = BTreeMap::new();
        if let Ok(table) = DeTable::parse(text) {
            index_table(text, table.get_ref(), &KeyPath::default(), &mut lines);
        }
        Self(lines)
    }

    /// The line of `path`, or of the nearest enclosing key the file has.
    pub fn find(&self, path: &KeyPath) -> Option<usize> {
        (0..=path.0.len())
            .rev()
            .find_map(|length| self.0.get(&KeyPath(path.0[..length].to_vec())))
            .copied()
    }
}

fn index_table(
    text: &str,
    table: &DeTable<'_>,
    at: &KeyPath,
    lines: &mut BTreeMap<KeyPath, usize>,
) {
    for (key, value) in table {
        let path = at.key(key.get_ref());
        lines.insert(path.clone(), line_of(text, key.span().start));
        index_value(text, value, &path, lines);
    }
}

fn index_value(
    text: &str,
    value: &Spanned<DeValue<'_>>,
    at: &KeyPath,
    lines: &mut BTreeMap<KeyPath, usize>,
) {
    match value.get_ref() {
        DeValue::Table(table) => index_table(text, table, at, lines),
        DeValue::Array(array) => {
            for (index, element) in array.iter().enumerate() {
                let mut path = at.clone();
                path.0.push(Segment::Index(index));
                lines.insert(path.clone(), line_of(text, element.span().start));
                index_value(text, element, &path, lines);
            }
        }
        _ => {}
    }
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

/// Deserializes `value` (found at `at`) as a `T`, collecting every problem: each one found
/// takes the offending key out of the table, and deserializing starts again, until it
/// succeeds or nothing more can be taken out. Returns the `T` (of what was left) when it
/// came to one.
pub fn deserialize_all<T: DeserializeOwned>(
    mut value: toml::Value,
    at: &KeyPath,
    problems: &mut Vec<ConfigError>,
) -> Option<T> {
    // Every round removes a key: a file has far fewer problems than this.
    for _ in 0..256 {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(parsed) => return Some(parsed),
            Err(error) => error,
        };
        let (relative, problem) = describe(&error);
        problems.push(ConfigError::at(at.join(&relative), problem));
        if !remove(&mut value, &relative) {
            return None;
        }
    }
    None
}

/// The path and the reworded problem of a deserialization error: unknown and missing keys
/// are reworded (with a did-you-mean for a near miss).
fn describe(error: &serde_path_to_error::Error<toml::de::Error>) -> (KeyPath, String) {
    use serde_path_to_error::Segment as Step;
    let mut path = KeyPath(
        error
            .path()
            .iter()
            .filter_map(|step| match step {
                Step::Map { key } => Some(Segment::Key(key.clone())),
                Step::Seq { index } => Some(Segment::Index(*index)),
                Step::Enum { .. } | Step::Unknown => None,
            })
            .collect(),
    );
    let message = one_line(error.inner().message());
    let problem = if let Some((unknown, expected)) = unknown_field(&message) {
        // serde_path_to_error names the unknown key already, or not.
        if path.0.last() != Some(&Segment::Key(unknown.to_owned())) {
            path.0.push(Segment::Key(unknown.to_owned()));
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
    (path, problem)
}

/// Takes the value of the deepest key of `path` out of its table; false if there is none.
fn remove(value: &mut toml::Value, path: &KeyPath) -> bool {
    let Some(last_key) = path
        .0
        .iter()
        .rposition(|segment| matches!(segment, Segment::Key(_)))
    else {
        return false;
    };
    let mut here = value;
    for segment in &path.0[..last_key] {
        let next = match (segment, here) {
            (Segment::Key(key), toml::Value::Table(table)) => table.get_mut(key),
            (Segment::Index(index), toml::Value::Array(array)) => array.get_mut(*index),
            _ => None,
        };
        match next {
            Some(next) => here = next,
            None => return false,
        }
    }
    match (&path.0[last_key], here) {
        (Segment::Key(key), toml::Value::Table(table)) => table.remove(key).is_some(),
        _ => false,
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`", or "there are
/// no fields"): the unknown name and the expected ones.
pub fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).collect();
    Some((unknown, expected))
}

/// A multi-line message on one line.
pub fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        size: Option<usize>,
        name: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        count: Option<usize>,
        inner: Option<Inner>,
        list: Option<Vec<usize>>,
    }

    #[test]
    fn every_problem_is_collected() {
        let value: toml::Value = toml::from_str(
            "count = \"x\"\nlist = [1, \"a\"]\ncolor = 1\n[inner]\nsise = 2\nname = 3\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        let outer: Option<Outer> = deserialize_all(value, &KeyPath::keys(["top"]), &mut problems);
        assert!(outer.is_some());
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 5, "{shown:#?}");
        for expected in [
            "top.count: invalid type: string \"x\", expected usize",
            "top.list[1]: invalid type",
            "top.color: unknown key (expected one of `count`, `inner`, `list`)",
            "top.inner.sise: unknown key (did you mean `size`?)",
            "top.inner.name: invalid type: integer `3`",
        ] {
            assert!(
                shown.iter().any(|problem| problem.starts_with(expected)),
                "{expected} not in {shown:#?}"
            );
        }
    }

    #[test]
    fn lines_are_found_by_path() {
        let text = "a = 1\n[tasks.billing]\ntopics = [\n  \"x\",\n  \"y\",\n]\n";
        let lines = Lines::of(text);
        assert_eq!(lines.find(&KeyPath::keys(["a"])), Some(1));
        assert_eq!(lines.find(&KeyPath::keys(["tasks", "billing"])), Some(2));
        let mut second = KeyPath::keys(["tasks", "billing", "topics"]);
        second.0.push(Segment::Index(1));
        assert_eq!(lines.find(&second), Some(5));
        assert_eq!(
            lines.find(&KeyPath::keys(["tasks", "billing", "nothing"])),
            Some(2)
        );
        assert_eq!(second.to_string(), "tasks.billing.topics[1]");
    }
}
