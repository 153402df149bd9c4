//! Handlers registered by name with [`Sluice::handler`](crate::Sluice::handler): how a
//! task's `handler` table with `type = "NAME"` is checked and turned into a running handler.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use sluicegate::pipeline::{BoxError, BoxHandler};

use super::spec::CustomSpec;
use super::Handler;
use crate::config::{deserialize_all, ConfigError, KeyPath};

/// The names of the built-in handlers.
const BUILT_IN: &[&str] = &["exec", "http"];

/// Checks a registered handler's settings, and builds the handler from them.
trait Factory: Send + Sync {
    /// Deserializes `settings` (found at `at`), listing every problem.
    fn check(&self, settings: &toml::Table, at: &KeyPath, problems: &mut Vec<ConfigError>) -> bool;
    /// Deserializes `settings` and calls the factory.
    fn build(&self, settings: &toml::Table) -> Result<BoxHandler, BoxError>;
}

/// A factory function and the settings type it takes.
struct Typed<S, F> {
    factory: F,
    settings: std::marker::PhantomData<fn() -> S>,
}

impl<S, H, F> Factory for Typed<S, F>
where
    S: DeserializeOwned + 'static,
    H: Handler,
    F: Fn(S) -> Result<H, BoxError> + Send + Sync + 'static,
{
    fn check(&self, settings: &toml::Table, at: &KeyPath, problems: &mut Vec<ConfigError>) -> bool {
        let found = problems.len();
        deserialize_all::<S>(toml::Value::Table(settings.clone()), at, problems).is_some()
            && problems.len() == found
    }

    fn build(&self, settings: &toml::Table) -> Result<BoxHandler, BoxError> {
        let settings: S = toml::Value::Table(settings.clone()).try_into()?;
        let handler = (self.factory)(settings)?;
        Ok(BoxHandler::new(handler))
    }
}

/// The registered handlers, by name.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Arc<dyn Factory>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

impl Registry {
    /// Registers `factory` under `name`.
    ///
    /// # Panics
    ///
    /// When `name` is a built-in handler's or was registered already: a mistake in the
    /// program, not in its input.
    pub fn register<S, H, F>(&mut self, name: &str, factory: F)
    where
        S: DeserializeOwned + 'static,
        H: Handler,
        F: Fn(S) -> Result<H, BoxError> + Send + Sync + 'static,
    {
        assert!(
            !BUILT_IN.contains(&name),
            "`{name}` is a built-in handler: register yours under another name"
        );
        let factory = Arc::new(Typed {
            factory,
            settings: std::marker::PhantomData,
        });
        let previous = self.factories.insert(name.to_owned(), factory);
        assert!(
            previous.is_none(),
            "a handler named `{name}` is registered already"
        );
    }

    /// Whether a handler is registered under `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// Every handler name a `type` may take: the built-in ones, then the registered ones.
    pub fn names(&self) -> Vec<&str> {
        BUILT_IN
            .iter()
            .copied()
            .chain(self.factories.keys().map(String::as_str))
            .collect()
    }

    /// Checks the settings of registered handler `name`; false if there were problems.
    pub fn check(
        &self,
        name: &str,
        settings: &toml::Table,
        at: &KeyPath,
        problems: &mut Vec<ConfigError>,
    ) -> bool {
        match self.factories.get(name) {
            Some(factory) => factory.check(settings, at, problems),
            None => false,
        }
    }

    /// Builds the registered handler `spec` names.
    pub fn build(&self, spec: &CustomSpec) -> Result<BoxHandler, String> {
        let factory = self
            .factories
            .get(&spec.name)
            .ok_or_else(|| format!("no handler named `{}`", spec.name))?;
        factory
            .build(&spec.settings.0)
            .map_err(|error| crate::secret::scrub(&error.to_string()))
    }
}
