//! Secrets in configuration files: passwords, tokens, keys.
//!
//! A secret is written as a plain string, or read from the environment or from a file:
//!
//! ```toml
//! password = "hunter2"                      # in the file itself
//! password = { env = "KAFKA_PASSWORD" }      # from an environment variable
//! password = { file = "/run/secrets/kafka" } # a file's contents, trailing newline trimmed
//! ```
//!
//! A [`Secret`] never shows its value: `Debug` and `Display` print `***`. Every secret read is
//! also remembered for the process, and text `sluice` writes that could carry one (log lines,
//! error messages, `sluice config show`) has any remembered secret of three characters or more
//! replaced by `***`.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::RwLock;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The shortest secret that [`scrub`] replaces: shorter ones would mangle ordinary text.
const SCRUB_MIN_CHARS: usize = 3;

/// Every secret value read in this process, for [`scrub`].
static KNOWN: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// A secret value from a configuration file, the environment or a file. Its `Debug` and
/// `Display` show `***`; [`Secret::expose`] gives the value to whatever needs it.
///
/// Use it in a custom handler's settings (see [`Sluice::handler`](crate::Sluice::handler)):
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct GeocodeSettings {
///     url: String,
///     api_key: sluicegate_cli::Secret, // "..." or { env = "GEOCODE_KEY" } or { file = "..." }
/// }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value` (remembered, so that output never shows it).
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        remember(&value);
        Self(value)
    }

    /// The value itself, to hand to the client that needs it. Never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(r#"a string, { env = "VARIABLE" } or { file = "/path" }"#)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        const KEYS: &[&str] = &["env", "file"];
        let mut source: Option<Source> = None;
        while let Some(key) = map.next_key::<String>()? {
            let next = match key.as_str() {
                "env" => Source::Env(map.next_value()?),
                "file" => Source::File(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, KEYS)),
            };
            if source.is_some() {
                return Err(de::Error::custom(
                    "give `env` or `file`, not both (or a plain string)",
                ));
            }
            source = Some(next);
        }
        let source = source.ok_or_else(|| {
            de::Error::custom(r#"an empty table: write { env = "VARIABLE" } or { file = "/path" }"#)
        })?;
        source.read().map(Secret::new).map_err(de::Error::custom)
    }
}

/// Where a secret is read from.
enum Source {
    Env(String),
    File(PathBuf),
}

impl Source {
    /// The value; a problem names the variable or the file, never a value.
    fn read(&self) -> Result<String, String> {
        match self {
            Self::Env(name) => match std::env::var(name) {
                Ok(value) => Ok(value),
                Err(std::env::VarError::NotPresent) => {
                    Err(format!("environment variable `{name}` is not set"))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(format!("environment variable `{name}` is not UTF-8"))
                }
            },
            Self::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    format!(
                        "could not read secret file {}: {}",
                        path.display(),
                        io_problem(&error)
                    )
                })?;
                Ok(text
                    .strip_suffix('\n')
                    .map(|text| text.strip_suffix('\r').unwrap_or(text))
                    .unwrap_or(&text)
                    .to_owned())
            }
        }
    }
}

/// An I/O error without the OS error number.
fn io_problem(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::InvalidData => "not UTF-8 text".to_owned(),
        _ => error.to_string(),
    }
}

/// Remembers `value` as a secret, so that [`scrub`] hides it.
pub(crate) fn remember(value: &str) {
    if value.chars().count() >= SCRUB_MIN_CHARS {
        KNOWN
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(value.to_owned());
    }
}

/// `text` with every remembered secret replaced by `***`.
pub(crate) fn scrub(text: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|poison| poison.into_inner());
    let mut text = text.to_owned();
    // Longest first, so that a secret holding another is hidden whole.
    let mut secrets: Vec<&String> = known.iter().collect();
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// Whether any secret was remembered (output needs no scrubbing otherwise).
fn any_known() -> bool {
    !KNOWN
        .read()
        .unwrap_or_else(|poison| poison.into_inner())
        .is_empty()
}

/// A writer for log lines that hides remembered secrets: each write is one formatted event.
pub(crate) struct ScrubbingWriter<W>(pub W);

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if any_known() {
            let text = String::from_utf8_lossy(buf);
            self.0.write_all(scrub(&text).as_bytes())?;
        } else {
            self.0.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        secret: Secret,
    }

    fn holder(toml_text: &str) -> Result<Holder, String> {
        toml::from_str(toml_text).map_err(|error| error.message().to_owned())
    }

    #[test]
    fn a_secret_never_shows_and_is_scrubbed() {
        let held = holder(r#"secret = "plain-s3cret-1""#).unwrap();
        assert_eq!(held.secret.expose(), "plain-s3cret-1");
        assert_eq!(format!("{held:?}"), "Holder { secret: *** }");
        assert_eq!(held.secret.to_string(), "***");
        assert_eq!(
            scrub("the password is plain-s3cret-1."),
            "the password is ***."
        );
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file() {
        std::env::set_var("SLUICE_TEST_SECRET_VARIABLE", "env-s3cret-2");
        let held = holder(r#"secret = { env = "SLUICE_TEST_SECRET_VARIABLE" }"#).unwrap();
        assert_eq!(held.secret.expose(), "env-s3cret-2");
        assert_eq!(
            holder(r#"secret = { env = "SLUICE_TEST_UNSET_VARIABLE" }"#).unwrap_err(),
            "environment variable `SLUICE_TEST_UNSET_VARIABLE` is not set"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "file-s3cret-3\n").unwrap();
        let held = holder(&format!(
            "secret = {{ file = {:?} }}",
            path.display().to_string()
        ))
        .unwrap();
        assert_eq!(held.secret.expose(), "file-s3cret-3");
        let missing = dir.path().join("missing");
        let problem = holder(&format!(
            "secret = {{ file = {:?} }}",
            missing.display().to_string()
        ))
        .unwrap_err();
        assert!(problem.ends_with("missing: no such file"), "{problem}");

        assert!(holder(r#"secret = { env = "A", file = "b" }"#)
            .unwrap_err()
            .contains("not both"));
        assert!(holder(r#"secret = { path = "b" }"#)
            .unwrap_err()
            .starts_with("unknown field `path`"));
        assert!(holder("secret = {}").unwrap_err().contains("empty table"));
        assert!(holder("secret = 3").unwrap_err().contains("a string"));
    }

    #[test]
    fn log_lines_are_scrubbed() {
        remember("log-s3cret-4");
        let mut out = ScrubbingWriter(Vec::new());
        out.write_all(b"connecting with log-s3cret-4\n").unwrap();
        assert_eq!(out.0, b"connecting with ***\n");
    }
}
