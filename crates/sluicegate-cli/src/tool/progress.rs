//! Progress of long work on stderr: a bar when stderr is a terminal, a plain line every few
//! seconds otherwise (log files, CI), so piped output stays readable.
//!
//! [`Progress`] counts towards a known total (records produced, bench runs done); [`Timed`]
//! shows a phase of known length (a bench side that runs for a number of seconds), drawn by a
//! thread of its own. Both print a last line (or leave the full bar) when they finish, and
//! nothing goes to stdout.

use std::fmt;
use std::io::IsTerminal as _;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Interval between plain progress lines when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// How often a [`Timed`] phase moves its bar.
const TIMED_TICK: Duration = Duration::from_millis(200);

/// Progress of one phase (e.g. "producing") towards a known total.
pub struct Progress {
    phase: &'static str,
    measure: Measure,
    total: u64,
    started: Instant,
    view: View,
}

/// What the phase counts.
#[derive(Clone, Copy)]
enum Measure {
    /// Things, with a rate: `records`, `dead letters`, `runs`.
    Count(&'static str),
    /// Whole seconds of a phase of known length.
    Seconds,
}

enum View {
    Bar(ProgressBar),
    Lines { last_line: Instant },
}

impl Progress {
    /// A phase that counts `total` records.
    pub fn new(phase: &'static str, total: u64) -> Self {
        Self::with(phase, total, Measure::Count("records"))
    }

    /// Counts `unit` (plural, e.g. `dead letters`) instead of records.
    pub fn unit(mut self, unit: &'static str) -> Self {
        self.measure = Measure::Count(unit);
        if let View::Bar(bar) = &self.view {
            bar.set_style(style(self.measure));
        }
        self
    }

    fn with(phase: &'static str, total: u64, measure: Measure) -> Self {
        let view = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(style(measure));
            bar.set_prefix(phase);
            View::Bar(bar)
        } else {
            View::Lines {
                last_line: Instant::now(),
            }
        };
        Self {
            phase,
            measure,
            total,
            started: Instant::now(),
            view,
        }
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

    /// Prints a line of its own on stderr: above the bar, or between the plain lines (and
    /// counting as one).
    pub fn note(&mut self, line: &str) {
        match &mut self.view {
            View::Bar(bar) => bar.println(line),
            View::Lines { last_line } => {
                *last_line = Instant::now();
                eprintln!("{line}");
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
        match self.measure {
            Measure::Count(unit) => {
                let rate = if seconds > 0.0 {
                    done as f64 / seconds
                } else {
                    0.0
                };
                format!(
                    "{}: {} / {} {unit} ({} {unit}/s, {seconds:.1} s)",
                    self.phase,
                    thousands(done),
                    thousands(self.total),
                    thousands(rate as u64)
                )
            }
            Measure::Seconds => format!("{}: {done} / {} s", self.phase, self.total),
        }
    }
}

/// The bar's look for what it counts.
fn style(measure: Measure) -> ProgressStyle {
    let template = match measure {
        Measure::Count(unit) => format!(
            "{{prefix:>10}} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit} ({{rate}} {unit}/s, {{elapsed}})"
        ),
        Measure::Seconds => "{prefix:>10} [{bar:40}] {pos}/{len} s".to_owned(),
    };
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |state: &ProgressState, out: &mut dyn fmt::Write| {
            let _ = out.write_str(&thousands(state.per_sec() as u64));
        })
        .progress_chars("=> ")
}

/// A phase of known length (`sluice-lab bench backlog`'s sides), shown by a thread that moves the
/// bar with the clock until it is dropped; dropping it waits for the last line.
pub struct Timed {
    stop: Option<mpsc::Sender<()>>,
    drawer: Option<JoinHandle<()>>,
}

impl Timed {
    /// Starts showing `phase`, which should last `length`.
    pub fn start(phase: &'static str, length: Duration) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let drawer = std::thread::Builder::new()
            .name("progress".to_owned())
            .spawn(move || {
                let mut progress = Progress::with(phase, length.as_secs(), Measure::Seconds);
                let started = progress.started;
                let elapsed = move || started.elapsed().min(length).as_secs();
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TIMED_TICK) {
                    progress.update(elapsed());
                }
                progress.finish(elapsed());
            })
            .ok();
        Self {
            stop: Some(stop),
            drawer,
        }
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(drawer) = self.drawer.take() {
            let _ = drawer.join();
        }
    }
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
        let progress = Progress::new("rounds", 1_500).unit("runs");
        let line = progress.line(1_200);
        assert!(line.starts_with("rounds: 1,200 / 1,500 runs ("), "{line}");
        assert!(line.contains(" runs/s, "), "{line}");
        let timed = Progress::with("engine side", 30, Measure::Seconds);
        assert_eq!(timed.line(12), "engine side: 12 / 30 s");
    }
}
