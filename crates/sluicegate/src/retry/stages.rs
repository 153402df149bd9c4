//! Which stages of a task a process runs: `0` (the input topic), `1-5` (retry topics 1 to 5),
//! `all`, or a comma list of those, as Super::Flux's `flux process --stages`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A set of stages. Stage 0 reads the input topic; stage `k` reads retry topic `k`; the
/// stage after the last retry watches the dead-letter topic (Super::Flux counts 6 stages
/// for 5 retries, so `--stages 1-6` runs every stage but the input's).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stages {
    /// Every stage of the task.
    All,
    /// These stages.
    Some(BTreeSet<usize>),
}

/// A stage list that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stages `{spec}`: {problem} (write `0`, `1-5`, `all` or a comma list such as `0,2-3`)")]
#[non_exhaustive]
pub struct StagesError {
    /// The text given.
    pub spec: String,
    /// What is wrong with it.
    pub problem: String,
}

impl FromStr for Stages {
    type Err = StagesError;

    fn from_str(spec: &str) -> Result<Self, StagesError> {
        let refuse = |problem: String| StagesError {
            spec: spec.to_string(),
            problem,
        };
        if spec.trim() == "all" {
            return Ok(Self::All);
        }
        let number = |text: &str| {
            text.trim()
                .parse::<usize>()
                .map_err(|_| refuse(format!("`{}` is not a stage number", text.trim())))
        };
        let mut stages = BTreeSet::new();
        for part in spec.split(',') {
            match part.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (number(first)?, number(last)?);
                    if first > last {
                        return Err(refuse(format!("the range `{}` is backwards", part.trim())));
                    }
                    stages.extend(first..=last);
                }
                None => {
                    stages.insert(number(part)?);
                }
            }
        }
        Ok(Self::Some(stages))
    }
}

impl fmt::Display for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Some(stages) => {
                let listed: Vec<String> = stages.iter().map(usize::to_string).collect();
                f.write_str(&listed.join(","))
            }
        }
    }
}

impl Stages {
    /// The stages to run for a task with `retries` retries (stages `0..=retries + 1`); a
    /// stage the task does not have is an error.
    pub fn resolve(&self, retries: usize) -> Result<BTreeSet<usize>, StagesError> {
        match self {
            Self::All => Ok((0..=retries + 1).collect()),
            Self::Some(stages) => match stages.iter().find(|stage| **stage > retries + 1) {
                Some(stage) => Err(StagesError {
                    spec: self.to_string(),
                    problem: format!(
                        "the task has stages 0 to {} ({retries} retries, then dead letters), not {stage}",
                        retries + 1
                    ),
                }),
                None => Ok(stages.clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages(spec: &str) -> BTreeSet<usize> {
        spec.parse::<Stages>().unwrap().resolve(5).unwrap()
    }

    #[test]
    fn specs_as_flux_process_reads_them() {
        assert_eq!(stages("0"), BTreeSet::from([0]));
        assert_eq!(stages("1-5"), BTreeSet::from([1, 2, 3, 4, 5]));
        assert_eq!(stages("1-6"), BTreeSet::from([1, 2, 3, 4, 5, 6]));
        assert_eq!(stages("all"), BTreeSet::from([0, 1, 2, 3, 4, 5, 6]));
        assert_eq!(stages("0, 2-3,5"), BTreeSet::from([0, 2, 3, 5]));
        assert_eq!("0,2-3".parse::<Stages>().unwrap().to_string(), "0,2,3");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let problem = |spec: &str| spec.parse::<Stages>().unwrap_err().problem;
        assert_eq!(problem("one"), "`one` is not a stage number");
        assert_eq!(problem("5-1"), "the range `5-1` is backwards");
        assert_eq!(problem(""), "`` is not a stage number");
        let beyond = "7".parse::<Stages>().unwrap().resolve(5).unwrap_err();
        assert_eq!(
            beyond.to_string(),
            "stages `7`: the task has stages 0 to 6 (5 retries, then dead letters), not 7 \
             (write `0`, `1-5`, `all` or a comma list such as `0,2-3`)"
        );
    }
}
