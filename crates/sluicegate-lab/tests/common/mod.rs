//! Running the built `sluice-lab` binary in tests: runs with a deadline and what they left;
//! [`torture`] runs the campaigns and checks their reports.

#![allow(dead_code)] // Each test binary uses a different part.

pub mod torture;

use std::process::Command;

pub use sluicegate_testing::process::Run;
use sluicegate_testing::process::{self, RUN_DEADLINE};

/// The binary under test (without `RUST_LOG`: the tests count stderr lines).
pub fn sluice_lab() -> Command {
    process::binary(env!("CARGO_BIN_EXE_sluice-lab"))
}

/// Runs `sluice-lab args...` with `stdin` as its input; fails the test past [`RUN_DEADLINE`].
pub fn run(args: &[&str], stdin: &[u8]) -> Run {
    process::run(sluice_lab().args(args), stdin, RUN_DEADLINE)
}
