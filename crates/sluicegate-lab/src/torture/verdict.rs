//! The summary every torture campaign ends with: the same figures for all campaigns, the
//! invariants checked with PASS or FAIL each, and campaign-specific notes.
//!
//! # Figures
//!
//! - `produced`: distinct records the campaign wrote to the topic (delivery confirmed).
//! - `processed`: handler invocations on those records, duplicates included.
//! - `lost`: produced records the handler never saw.
//! - `duplicated`: handler invocations beyond the first per record (`processed` minus the
//!   distinct records handled).
//! - `order_violations`: records that reached the handler out of the order the campaign's
//!   ordering mode promises (each campaign documents the rule it checks).
//! - `worst_pause_ms`: the longest time in which records were waiting and none was handled.
//! - `peak_rss_bytes`: the largest peak resident set size of any consuming process.
//!
//! # Verdict
//!
//! A campaign records each invariant it checks with [`CampaignReport::check`]; the report
//! passes when every check held. [`CampaignReport::verdict`] turns a failed report into an
//! error, so `sluice-lab torture` exits with status 1 after printing it.
//!
//! # Output
//!
//! [`CampaignReport::print`] writes a table for people, or with `json` one JSON object on one
//! line: the figures above, `pass`, then `campaign`, `checks` (`name`, `pass`, `detail`) and
//! `notes` (an object, in the order the campaign added them).

use anyhow::{bail, Context as _};
use serde::ser::SerializeMap as _;
use serde::{Deserialize, Serialize, Serializer};

use crate::out;
use sluicegate_cli::tool::progress::thousands;
use sluicegate_cli::tool::rss::mib;

/// The outcome of one campaign; see the module docs for what each figure means.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignReport {
    /// Distinct records written to the topic.
    pub produced: u64,
    /// Handler invocations, duplicates included.
    pub processed: u64,
    /// Produced records never handled.
    pub lost: u64,
    /// Handler invocations beyond the first per record.
    pub duplicated: u64,
    /// Records handled out of the promised order.
    pub order_violations: u64,
    /// Longest time with records waiting and none handled, in milliseconds.
    pub worst_pause_ms: u64,
    /// Largest peak RSS of any consuming process, in bytes.
    pub peak_rss_bytes: u64,
    /// Whether every check held (true until a check fails).
    pub pass: bool,
    /// The campaign's name (`crash`, `storm`, ...).
    pub campaign: String,
    /// Each invariant checked, in order.
    pub checks: Vec<Check>,
    /// Campaign-specific figures and settings, as (name, value), shown in the order added.
    #[serde(
        serialize_with = "notes_as_object",
        deserialize_with = "notes_from_object"
    )]
    pub notes: Vec<(String, String)>,
}

/// One invariant checked against the campaign's records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What must hold, e.g. `zero lost`.
    pub name: String,
    /// Whether it held.
    pub pass: bool,
    /// The figures behind the verdict, e.g. `3 duplicates <= bound 120`.
    pub detail: String,
}

impl CampaignReport {
    /// An empty report for `campaign` that passes until a check fails.
    pub fn new(campaign: &str) -> Self {
        Self {
            campaign: campaign.to_owned(),
            pass: true,
            ..Self::default()
        }
    }

    /// Records a check of an invariant; a check that did not hold fails the report.
    pub fn check(&mut self, name: &str, held: bool, detail: impl Into<String>) {
        self.pass &= held;
        self.checks.push(Check {
            name: name.to_owned(),
            pass: held,
            detail: detail.into(),
        });
    }

    /// The checks every campaign makes: nothing lost, order kept.
    pub fn check_delivery(&mut self) {
        self.check(
            "zero lost",
            self.lost == 0,
            format!(
                "{} of {} produced never handled",
                thousands(self.lost),
                thousands(self.produced)
            ),
        );
        self.check(
            "order kept",
            self.order_violations == 0,
            format!("{} order violations", thousands(self.order_violations)),
        );
    }

    /// Adds a campaign-specific note.
    pub fn note(&mut self, name: &str, value: impl ToString) {
        self.notes.push((name.to_owned(), value.to_string()));
    }

    /// Prints the report: a table, or one line of JSON.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            out!(
                "{}",
                serde_json::to_string(self).context("could not encode the report")?
            )?;
        } else {
            out!("{}", self.table())?;
        }
        Ok(())
    }

    /// An error naming the failed checks when the report did not pass.
    pub fn verdict(&self) -> anyhow::Result<()> {
        if self.pass {
            return Ok(());
        }
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|check| !check.pass)
            .map(|check| check.name.as_str())
            .collect();
        bail!(
            "torture campaign `{}` failed: {}",
            self.campaign,
            failed.join(", ")
        )
    }

    /// The report as an aligned table for people.
    fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("produced".into(), thousands(self.produced)),
            ("processed".into(), thousands(self.processed)),
            ("lost".into(), thousands(self.lost)),
            ("duplicated".into(), thousands(self.duplicated)),
            ("order violations".into(), thousands(self.order_violations)),
            (
                "worst pause".into(),
                format!("{} ms", thousands(self.worst_pause_ms)),
            ),
            ("peak RSS".into(), mib(self.peak_rss_bytes)),
        ];
        rows.extend(self.notes.iter().cloned());
        for check in &self.checks {
            let verdict = if check.pass { "PASS" } else { "FAIL" };
            rows.push((check.name.clone(), format!("{verdict}  {}", check.detail)));
        }
        let verdict = if self.pass { "PASS" } else { "FAIL" };
        rows.push(("verdict".into(), verdict.into()));
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let mut table = format!("torture {}\n", self.campaign);
        for (name, value) in rows {
            table.push_str(&format!("  {name:<width$}  {value}\n"));
        }
        table.pop();
        table
    }
}

/// Writes the notes as one JSON object, keys in the order they were added.
fn notes_as_object<S: Serializer>(
    notes: &[(String, String)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(notes.len()))?;
    for (name, value) in notes {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

/// Reads the notes object back, keeping its order (for drivers and tests that parse a
/// report).
fn notes_from_object<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, String)>, D::Error> {
    struct Notes;

    impl<'de> serde::de::Visitor<'de> for Notes {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of notes")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut notes = Vec::new();
            while let Some(note) = map.next_entry::<String, String>()? {
                notes.push(note);
            }
            Ok(notes)
        }
    }

    deserializer.deserialize_map(Notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CampaignReport {
        let mut report = CampaignReport::new("crash");
        report.produced = 1000;
        report.processed = 1012;
        report.duplicated = 12;
        report.peak_rss_bytes = 40 * 1024 * 1024;
        report.note("kills", 5);
        report.note("bound", "duplicates <= 300");
        report.check_delivery();
        report
    }

    #[test]
    fn passes_until_a_check_fails() {
        let mut report = sample();
        assert!(report.pass);
        assert!(report.verdict().is_ok());
        report.check("duplicates bounded", false, "12 > 10");
        assert!(!report.pass);
        let error = report.verdict().unwrap_err().to_string();
        assert!(error.contains("duplicates bounded"), "{error}");
    }

    #[test]
    fn json_has_the_issue_fields_and_ordered_notes() {
        let report = sample();
        let json = serde_json::to_string(&report).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for field in [
            "produced",
            "processed",
            "lost",
            "duplicated",
            "order_violations",
            "worst_pause_ms",
            "peak_rss_bytes",
            "pass",
        ] {
            assert!(value.get(field).is_some(), "{field} missing in {json}");
        }
        assert!(json.contains(r#""notes":{"kills":"5","bound":"duplicates <= 300"}"#));
        let back: CampaignReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn table_shows_figures_and_verdicts() {
        let table = sample().table();
        assert!(table.starts_with("torture crash"), "{table}");
        assert!(table.contains("duplicated"), "{table}");
        assert!(table.contains("PASS  0 order violations"), "{table}");
        assert!(table.ends_with("PASS"), "{table}");
    }
}
