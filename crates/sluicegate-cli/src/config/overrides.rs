//! Environment variables (`SLUICE__TASKS__BILLING__CONCURRENCY=8`) and `--set` flags
//! (`--set tasks.billing.concurrency=8`) that override values of the file; the naming rule is
//! in the [module docs](super).

use serde::Deserialize as _;

use super::error::{did_you_mean, ConfigError};
use super::path::{KeyPath, Segment};

/// The prefix of overriding environment variables.
pub const ENV_PREFIX: &str = "SLUICE__";

/// One override: the keys it names, its value, and who set it (for problems).
#[derive(Debug, Clone)]
pub struct Override {
    /// The keys as given; an environment variable's are matched to the file's keys loosely.
    keys: Vec<String>,
    /// Whether the keys came from an environment variable's name.
    from_env: bool,
    value: toml::Value,
    /// `SLUICE__TASKS__BILLING__CONCURRENCY`, or `--set tasks.billing.concurrency`.
    pub origin: String,
}

/// The overrides in `variables` (every one named `SLUICE__...`), in name order. A variable
/// whose name holds no key path is a problem.
pub fn from_env(
    variables: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<ConfigError>,
) -> Vec<Override> {
    let mut found: Vec<(String, String)> = variables
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    found.sort();
    found
        .into_iter()
        .filter_map(|(name, value)| {
            let keys: Vec<String> = name[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_lowercase)
                .collect();
            if keys.iter().any(String::is_empty) {
                problems.push(ConfigError::new(
                    "",
                    format!(
                        "environment variable {name}: not a key path (write {ENV_PREFIX}TASKS__NAME__KEY, `__` between keys)"
                    ),
                ));
                return None;
            }
            Some(Override {
                keys,
                from_env: true,
                value: parse_value(&value),
                origin: name,
            })
        })
        .collect()
}

/// The override of a `--set PATH=VALUE` flag.
pub fn from_flag(flag: &str) -> Result<Override, ConfigError> {
    let bad = |why: &str| {
        ConfigError::new(
            "",
            format!("--set {flag}: {why} (write --set tasks.NAME.KEY=VALUE)"),
        )
    };
    let (path, value) = flag.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let keys = dotted_keys(path.trim()).map_err(|why| bad(&why))?;
    Ok(Override {
        keys,
        from_env: false,
        value: parse_value(value.trim()),
        origin: format!("--set {}", path.trim()),
    })
}

/// A value as TOML when it parses as one, else as a string.
fn parse_value(text: &str) -> toml::Value {
    toml::de::ValueDeserializer::parse(text)
        .and_then(toml::Value::deserialize)
        .unwrap_or_else(|_| toml::Value::String(text.to_owned()))
}

/// The keys of a dotted key path: `a.b."c.d"`.
fn dotted_keys(path: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut chars = path.chars().peekable();
    loop {
        let mut key = String::new();
        match chars.peek() {
            Some(&quote) if quote == '"' || quote == '\'' => {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err("an unclosed quote".to_owned()),
                        Some(c) if c == quote => break,
                        Some('\\') if quote == '"' => {
                            key.push(chars.next().ok_or("an unclosed quote")?)
                        }
                        Some(c) => key.push(c),
                    }
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                        return Err(format!(
                            "`{c}` in a key: quote keys holding other characters"
                        ));
                    }
                    key.push(c);
                    chars.next();
                }
                if key.is_empty() {
                    return Err("an empty key".to_owned());
                }
            }
        }
        keys.push(key);
        match chars.next() {
            None => return Ok(keys),
            Some('.') => {}
            Some(c) => return Err(format!("`{c}` after a quoted key")),
        }
    }
}

/// The sections whose tables are named entries.
const SECTIONS: &[(&str, &str)] = &[
    ("clusters", "cluster"),
    ("producers", "producer"),
    ("tasks", "task"),
];

impl Override {
    /// Sets the value in `table`. An override must name a cluster, producer or task of the
    /// file. Returns the path of what it put in (with the file's spelling of each key): the
    /// first table it had to add, or the key it set.
    pub fn apply(&self, table: &mut toml::Table) -> Result<KeyPath, ConfigError> {
        let mut path = KeyPath::default();
        let mut added: Option<KeyPath> = None;
        let mut here = table;
        for (depth, key) in self.keys.iter().enumerate() {
            let key = self.key_in(here, key);
            path = path.key(&key);
            if depth + 1 == self.keys.len() {
                here.insert(key, self.value.clone());
                return Ok(added.unwrap_or(path));
            }
            if !here.contains_key(&key) && added.is_none() {
                added = Some(path.clone());
            }
            if depth == 1 {
                if let Some((_, kind)) = SECTIONS.iter().find(|(section, _)| {
                    path.0.first() == Some(&Segment::Key((*section).to_owned()))
                }) {
                    if !here.contains_key(&key) {
                        let known: Vec<&str> = here.keys().map(String::as_str).collect();
                        let hint = match did_you_mean(&key, known.iter().copied()) {
                            Some(near) => format!(" (did you mean `{near}`?)"),
                            None if known.is_empty() => String::new(),
                            None => format!(" (the file has {})", known.join(", ")),
                        };
                        return Err(
                            self.problem(&path, format!("no such {kind} in the file{hint}"))
                        );
                    }
                }
            }
            let next = here
                .entry(key)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            here = match next {
                toml::Value::Table(inner) => inner,
                other => {
                    return Err(self.problem(
                        &path,
                        format!(
                            "is {}, not a table: it has no key `{}`",
                            kind_of(other),
                            self.keys[depth + 1]
                        ),
                    ))
                }
            };
        }
        Err(self.problem(&path, "names no key".to_owned()))
    }

    /// The file's key in `table` that `key` names: for an environment variable, the key that
    /// matches ignoring case with `_` standing for `-` or `.` too; else `key` itself.
    fn key_in(&self, table: &toml::Table, key: &str) -> String {
        if !self.from_env || table.contains_key(key) {
            return key.to_owned();
        }
        let loose = |text: &str| text.to_lowercase().replace(['-', '.'], "_");
        table
            .keys()
            .find(|existing| loose(existing) == loose(key))
            .cloned()
            .unwrap_or_else(|| key.to_owned())
    }

    fn problem(&self, path: &KeyPath, problem: String) -> ConfigError {
        let mut error = ConfigError::at(path.clone(), problem);
        error.at = Some(format!("from {}", self.origin));
        error
    }
}

fn kind_of(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn values_are_toml_or_strings() {
        assert_eq!(parse_value("8"), toml::Value::Integer(8));
        assert_eq!(parse_value("true"), toml::Value::Boolean(true));
        assert_eq!(parse_value("1s"), toml::Value::String("1s".into()));
        assert_eq!(parse_value("\"8\""), toml::Value::String("8".into()));
        assert_eq!(
            parse_value("[\"a\", \"b\"]"),
            toml::Value::Array(vec!["a".into(), "b".into()])
        );
        assert!(parse_value("{ env = \"X\" }").is_table());
        assert_eq!(
            parse_value("8\nx = 1"),
            toml::Value::String("8\nx = 1".into())
        );
    }

    #[test]
    fn environment_names_match_the_files_keys() {
        let mut problems = Vec::new();
        let overrides = from_env(
            [
                (
                    "SLUICE__TASKS__BILLING_EU__CONCURRENCY".to_owned(),
                    "8".to_owned(),
                ),
                (
                    "SLUICE__CLUSTERS__MAIN__LIBRDKAFKA__SOCKET_KEEPALIVE_ENABLE".to_owned(),
                    "true".to_owned(),
                ),
                ("SLUICE_TOPIC".to_owned(), "ignored".to_owned()),
                ("SLUICE____X".to_owned(), "1".to_owned()),
            ],
            &mut problems,
        );
        assert_eq!(overrides.len(), 2);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let mut file = table(
            "[clusters.main.librdkafka]\n\"socket.keepalive.enable\" = false\n[tasks.Billing-EU]\ntopics = [\"a\"]\n",
        );
        let set: Vec<String> = overrides
            .iter()
            .map(|o| o.apply(&mut file).unwrap().to_string())
            .collect();
        assert_eq!(
            set,
            [
                "clusters.main.librdkafka.socket.keepalive.enable",
                "tasks.Billing-EU.concurrency"
            ]
        );
        assert_eq!(
            file["tasks"]["Billing-EU"]["concurrency"].as_integer(),
            Some(8)
        );
        assert_eq!(
            file["clusters"]["main"]["librdkafka"]["socket.keepalive.enable"].as_bool(),
            Some(true)
        );
    }

    #[test]
    fn flags_take_dotted_paths() {
        let mut file = table("[tasks.billing]\ntopics = [\"a\"]\n");
        from_flag("tasks.billing.handler.url=http://h/")
            .unwrap()
            .apply(&mut file)
            .unwrap();
        assert_eq!(
            file["tasks"]["billing"]["handler"]["url"].as_str(),
            Some("http://h/")
        );
        from_flag("tasks.billing.librdkafka.\"a.b\" = 3")
            .unwrap()
            .apply(&mut file)
            .unwrap();
        assert_eq!(
            file["tasks"]["billing"]["librdkafka"]["a.b"].as_integer(),
            Some(3)
        );

        let problem = |flag: &str| {
            let mut file = table("[tasks.billing]\ntopics = [\"a\"]\n");
            match from_flag(flag) {
                Err(error) => error.to_string(),
                Ok(set) => set.apply(&mut file).unwrap_err().to_string(),
            }
        };
        assert_eq!(
            problem("tasks.biling.concurrency=2"),
            "tasks.biling: no such task in the file (did you mean `billing`?) (from --set tasks.biling.concurrency)"
        );
        assert_eq!(
            problem("tasks.billing.topics.x=2"),
            "tasks.billing.topics: is an array, not a table: it has no key `x` (from --set tasks.billing.topics.x)"
        );
        assert!(problem("tasks.billing").contains("no `=`"));
        assert!(problem("tasks..x=1").contains("an empty key"));
        assert!(problem("tasks.\"x=1").contains("unclosed quote"));
    }
}
