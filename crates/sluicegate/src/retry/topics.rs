//! The names of a task's retry topics and dead-letter topic.
//!
//! Derived from the input topic and the consumer group, so two groups reading one topic keep
//! their retries apart: retry `k` goes to `<topic>.<group>.retry.<k>` and the dead letters to
//! `<topic>.<group>.dlq`. Any name can be overridden.

use std::collections::BTreeMap;

use crate::options::OptionsError;

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME: usize = 249;

/// Where the records of one input topic go when they fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryTopics {
    input: String,
    group: String,
    retry_overrides: BTreeMap<usize, String>,
    dead_letter_override: Option<String>,
}

impl RetryTopics {
    /// The derived names for `input` consumed by `group`.
    pub fn new(input: impl Into<String>, group: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            group: group.into(),
            retry_overrides: BTreeMap::new(),
            dead_letter_override: None,
        }
    }

    /// Names retry topic `retry` (1-based) instead of deriving its name.
    pub fn retry_topic_named(mut self, retry: usize, name: impl Into<String>) -> Self {
        self.retry_overrides.insert(retry, name.into());
        self
    }

    /// Names the dead-letter topic instead of deriving its name.
    pub fn dead_letter_named(mut self, name: impl Into<String>) -> Self {
        self.dead_letter_override = Some(name.into());
        self
    }

    /// The input topic.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The topic retry `retry` (1-based) is read from.
    pub fn retry(&self, retry: usize) -> String {
        self.retry_overrides
            .get(&retry)
            .cloned()
            .unwrap_or_else(|| format!("{}.{}.retry.{retry}", self.input, self.group))
    }

    /// The dead-letter topic.
    pub fn dead_letter(&self) -> String {
        self.dead_letter_override
            .clone()
            .unwrap_or_else(|| format!("{}.{}.dlq", self.input, self.group))
    }

    /// Checks every name `retries` retries would use: valid Kafka topic names, all distinct
    /// and none equal to the input.
    pub fn validate(&self, retries: usize) -> Result<(), OptionsError> {
        let mut names: Vec<(String, String)> = (1..=retries)
            .map(|retry| (format!("retry_topic.{retry}"), self.retry(retry)))
            .collect();
        names.push(("dead_letter_topic".to_string(), self.dead_letter()));
        for (index, (key, name)) in names.iter().enumerate() {
            if let Some(problem) = topic_name_problem(name) {
                return Err(OptionsError::new(key, format!("`{name}`: {problem}")));
            }
            if name == &self.input {
                return Err(OptionsError::new(
                    key,
                    format!("`{name}` is the input topic"),
                ));
            }
            if let Some((other, _)) = names[..index].iter().find(|(_, earlier)| earlier == name) {
                return Err(OptionsError::new(key, format!("`{name}` is also {other}")));
            }
        }
        Ok(())
    }
}

/// Why `name` is not a valid Kafka topic name, if it is not.
fn topic_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("`.` and `..` are not topic names")
    } else if name.len() > MAX_TOPIC_NAME {
        Some("longer than 249 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some("only ASCII letters, digits, `.`, `_` and `-` are allowed")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_topic_and_group_and_can_be_overridden() {
        let topics = RetryTopics::new("orders", "billing");
        assert_eq!(topics.retry(1), "orders.billing.retry.1");
        assert_eq!(topics.retry(5), "orders.billing.retry.5");
        assert_eq!(topics.dead_letter(), "orders.billing.dlq");
        let named = topics
            .retry_topic_named(2, "orders-slow-retry")
            .dead_letter_named("orders-dead");
        assert_eq!(named.retry(1), "orders.billing.retry.1");
        assert_eq!(named.retry(2), "orders-slow-retry");
        assert_eq!(named.dead_letter(), "orders-dead");
        assert!(named.validate(3).is_ok());
    }

    #[test]
    fn invalid_or_clashing_names_are_refused_by_key() {
        let key = |topics: RetryTopics| topics.validate(3).unwrap_err().key;
        assert_eq!(
            key(RetryTopics::new("orders", "billing").retry_topic_named(2, "orders")),
            "retry_topic.2"
        );
        assert_eq!(
            key(RetryTopics::new("orders", "billing").dead_letter_named("orders.billing.retry.1")),
            "dead_letter_topic"
        );
        assert_eq!(
            key(RetryTopics::new("orders", "billing").retry_topic_named(3, "bad name")),
            "retry_topic.3"
        );
        assert_eq!(
            key(RetryTopics::new("orders", "group with spaces")),
            "retry_topic.1"
        );
    }
}
