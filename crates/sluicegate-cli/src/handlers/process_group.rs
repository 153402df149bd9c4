//! Commands run in a process group of their own, so that killing one kills what it started
//! too (a shell script's `sleep`, a pipeline's stages).

use std::process::Stdio;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::process::{Child, Command};

/// Kills a command's whole process group when dropped, unless [`ProcessGroup::finished`]
/// said the command ended by itself. Holding it through a call makes the call cancel-safe:
/// a timeout or a dropped handler future kills the command and its children.
#[derive(Debug)]
pub struct ProcessGroup {
    leader: Option<Pid>,
}

impl ProcessGroup {
    /// Starts `command` as the leader of a new process group.
    pub fn spawn(command: &mut Command) -> std::io::Result<(Child, Self)> {
        let child = command.process_group(0).spawn()?;
        let leader = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        Ok((child, Self { leader }))
    }

    /// The command ended and its output was read to the end: nothing is left to kill.
    pub fn finished(mut self) {
        self.leader = None;
    }

    /// Asks the whole group to stop (SIGTERM) instead of killing it, and lets it go.
    pub fn terminate(mut self) {
        if let Some(leader) = self.leader.take() {
            let _ = kill_process_group(leader, Signal::TERM);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(leader) = self.leader.take() {
            // The group is gone already when every member exited: nothing to do then.
            let _ = kill_process_group(leader, Signal::KILL);
        }
    }
}

/// A command's standard output when it is not the handler's to read: `sluice`'s standard
/// error, where logs go.
pub fn stdout_to_stderr() -> Stdio {
    use std::os::fd::AsFd as _;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(stderr) => Stdio::from(stderr),
        Err(_) => Stdio::null(),
    }
}
