//! The campaign's consumer group as the driver sees it: member slots, each running at most
//! one member process (an incarnation) at a time, started, killed and stopped on command.
//!
//! Every incarnation has a journal of its own (`m{slot}-{incarnation}.journal`) and a log
//! file for its stderr (`.log`) in the campaign's work directory. The driver holds each
//! member's stdin: if the driver dies, the pipe closes and the members stop. Dropping a
//! [`Group`] kills whatever still runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::journal::now_us;

/// How an incarnation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// SIGKILL from the driver (or a graceful stop that overran its time).
    Killed,
    /// SIGTERM from the driver and a graceful exit.
    Stopped,
    /// It exited on its own: a member must not.
    Died,
}

/// One member process, past or present.
#[derive(Debug, Clone)]
pub struct Incarnation {
    pub journal: PathBuf,
    /// When and how it ended (`None`: still running).
    pub ended: Option<(u64, Ending)>,
}

struct Running {
    child: Child,
    /// Held so that the member sees the end of stdin only when the driver goes.
    _stdin: Option<ChildStdin>,
    incarnation: usize,
}

pub struct Group {
    dir: PathBuf,
    /// The member subcommand's flags, without `--journal`.
    member_args: Vec<String>,
    slots: Vec<Option<Running>>,
    pub incarnations: Vec<Incarnation>,
}

/// How long a stopping member may take to drain, commit and leave before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

impl Group {
    /// A group of `slots` empty slots whose members run with `member_args`.
    pub fn new(dir: &Path, slots: usize, member_args: Vec<String>) -> Self {
        Self {
            dir: dir.to_owned(),
            member_args,
            slots: (0..slots).map(|_| None).collect(),
            incarnations: Vec::new(),
        }
    }

    /// Starts a new incarnation in an empty slot.
    pub fn start(&mut self, slot: usize) -> anyhow::Result<()> {
        if self.slots[slot].is_some() {
            bail!("member slot {slot} is already running");
        }
        let incarnation = self.incarnations.len();
        let journal = self.dir.join(format!("m{slot}-{incarnation}.journal"));
        let log = self.dir.join(format!("m{slot}-{incarnation}.log"));
        let stderr =
            File::create(&log).with_context(|| format!("could not create {}", log.display()))?;
        let exe = std::env::current_exe().context("could not find the sluice-lab executable")?;
        let mut child = Command::new(&exe)
            .args(sluicegate_cli::tool::logging::global_flags())
            .args(["torture", "member", "--journal"])
            .arg(&journal)
            .arg("--slot")
            .arg(slot.to_string())
            .args(&self.member_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("could not start `{} torture member`", exe.display()))?;
        let stdin = child.stdin.take();
        self.incarnations.push(Incarnation {
            journal,
            ended: None,
        });
        self.slots[slot] = Some(Running {
            child,
            _stdin: stdin,
            incarnation,
        });
        Ok(())
    }

    /// Kills the slot's member with SIGKILL and reaps it.
    pub fn kill(&mut self, slot: usize) -> anyhow::Result<()> {
        let Some(mut running) = self.slots[slot].take() else {
            bail!("member slot {slot} is not running");
        };
        let at = now_us();
        running.child.kill().context("could not kill a member")?;
        let _ = running.child.wait();
        self.end(running.incarnation, at, Ending::Killed);
        Ok(())
    }

    /// Stops the slot's member with SIGTERM and waits for its graceful exit (killing it after
    /// [`STOP_TIMEOUT`]).
    pub async fn stop(&mut self, slot: usize) -> anyhow::Result<()> {
        let Some(mut running) = self.slots[slot].take() else {
            bail!("member slot {slot} is not running");
        };
        let pid = rustix::process::Pid::from_raw(running.child.id() as i32)
            .context("a member has no process id")?;
        let ending = match rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
            Ok(()) => {
                let deadline = Instant::now() + STOP_TIMEOUT;
                loop {
                    match running.child.try_wait() {
                        Ok(Some(status)) if status.success() => break Ending::Stopped,
                        Ok(Some(_)) => break Ending::Died,
                        Ok(None) if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(None) | Err(_) => {
                            tracing::warn!(slot, "a member did not stop in time; killing it");
                            let _ = running.child.kill();
                            let _ = running.child.wait();
                            break Ending::Killed;
                        }
                    }
                }
            }
            // Already gone: it died on its own.
            Err(_) => {
                let _ = running.child.wait();
                Ending::Died
            }
        };
        self.end(running.incarnation, now_us(), ending);
        Ok(())
    }

    /// Stops every running member, all at once.
    pub async fn stop_all(&mut self) -> anyhow::Result<()> {
        let stops = self.running_slots();
        for slot in &stops {
            if let Some(running) = &self.slots[*slot] {
                if let Some(pid) = rustix::process::Pid::from_raw(running.child.id() as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
            }
        }
        for slot in stops {
            self.stop(slot).await?;
        }
        Ok(())
    }

    /// Notes members that exited on their own (their slots become empty); returns how many.
    pub fn reap_dead(&mut self) -> usize {
        let mut dead = 0;
        for slot in 0..self.slots.len() {
            let exited = self.slots[slot]
                .as_mut()
                .is_some_and(|running| matches!(running.child.try_wait(), Ok(Some(_))));
            if exited {
                if let Some(running) = self.slots[slot].take() {
                    tracing::warn!(
                        slot,
                        incarnation = running.incarnation,
                        "a member exited on its own"
                    );
                    self.end(running.incarnation, now_us(), Ending::Died);
                    dead += 1;
                }
            }
        }
        dead
    }

    pub fn running_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|slot| self.slots[*slot].is_some())
            .collect()
    }

    pub fn empty_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|slot| self.slots[*slot].is_none())
            .collect()
    }

    fn end(&mut self, incarnation: usize, at_us: u64, ending: Ending) {
        self.incarnations[incarnation].ended = Some((at_us, ending));
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for running in self.slots.iter_mut().filter_map(Option::take) {
            let mut child = running.child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
