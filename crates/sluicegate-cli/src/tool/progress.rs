//! Progress of long work on stderr: a bar when stderr is a terminal, a plain line every few
//! seconds otherwise (log files, CI), so piped output stays readable.
//!
//! [`Progress`] counts towards a known total (records produced, dead letters replayed). It
//! prints a last line (or leaves the full bar) when it finishes, and nothing goes to stdout.

use std::fmt;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Interval between plain progress lines when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Progress of one phase (e.g. "producing") towards a known total.
pub struct Progress {
    phase: &'static str,
    /// What it counts, plural: `records`, `dead letters`.
    unit: &'static str,
    total: u64,
    started: Instant,
    view: View,
}

enum View {
    Bar(ProgressBar),
    Lines { last_line: Instant },
}

impl Progress {
    /// A phase that counts `total` records.
    pub fn new(phase: &'static str, total: u64) -> Self {
        let view = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(style("records"));
            bar.set_prefix(phase);
            View::Bar(bar)
        } else {
            View::Lines {
                last_line: Instant::now(),
            }
        };
        Self {
            phase,
            unit: "records",
            total,
            started: Instant::now(),
            view,
        }
    }

    /// Counts `unit` (plural, e.g. `dead letters`) instead of records.
    pub fn unit(mut self, unit: &'static str) -> Self {
        self.unit = unit;
        if let View::Bar(bar) = &self.view {
            bar.set_style(style(unit));
        }
        self
    }

    /// Reports `done` so far.
    pub fn update(&mut self, done: u64) {
        match &mut self.view {
            View::Bar(bar) => bar.set_position(done),
            View::Lines { last_line } => {
                if last_line.elapsed() >= PLAIN_EVERY {
                    *last_line = Instant::now();
                    eprintln!("{}", self.line(done));
                }
            }
        }
    }

    /// Ends the phase at `done`.
    pub fn finish(self, done: u64) {
        match self.view {
            View::Bar(bar) => {
                bar.set_position(done);
                bar.finish();
            }
            View::Lines { .. } => eprintln!("{}", self.line(done)),
        }
    }

    fn line(&self, done: u64) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 {
            done as f64 / seconds
        } else {
            0.0
        };
        let unit = self.unit;
        format!(
            "{}: {} / {} {unit} ({} {unit}/s, {seconds:.1} s)",
            self.phase,
            thousands(done),
            thousands(self.total),
            thousands(rate as u64)
        )
    }
}

/// The bar's look for what it counts.
fn style(unit: &'static str) -> ProgressStyle {
    let template = format!(
        "{{prefix:>10}} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit} ({{rate}} {unit}/s, {{elapsed}})"
    );
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |state: &ProgressState, out: &mut dyn fmt::Write| {
            let _ = out.write_str(&thousands(state.per_sec() as u64));
        })
        .progress_chars("=> ")
}

/// Formats an integer with thousands separators: `1234567` → `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn plain_lines_name_the_unit() {
        let progress = Progress::new("replaying", 1_500).unit("dead letters");
        let line = progress.line(1_200);
        assert!(
            line.starts_with("replaying: 1,200 / 1,500 dead letters ("),
            "{line}"
        );
        assert!(line.contains(" dead letters/s, "), "{line}");
    }
}
