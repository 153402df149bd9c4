//! `sluice-lab`: Sluicegate's benchmarks (`sluice-lab bench ...`) and reliability campaigns
//! (`sluice-lab torture ...`), a binary of their own.
//!
//! ```sh
//! cargo run -p sluicegate-lab --release -- bench consume
//! cargo run -p sluicegate-lab --release -- torture crash --short
//! ```
//!
//! # Why a second binary
//!
//! The `sluice` binary's crate, `sluicegate_cli`, is also the library every custom-handler
//! binary links (`Sluice::new().handler(..).run()`), so whatever `sluice` compiles, each of
//! those binaries compiles too. Keeping `sluice-lab bench` and `sluice-lab torture` as subcommands
//! without that cost would take a feature flag on `sluicegate_cli` or one more crate for the
//! `sluice` binary alone: more moving parts than a second binary. So the benchmarks and
//! campaigns live in this unpublished crate with a binary of its own, and the product CLI
//! does not know them.
//!
//! # Processes
//!
//! Benchmark sides and campaign members are child processes of this same binary, running its
//! hidden subcommands (`bench *-worker`, `torture member`). The development broker they run on
//! by default is a child too: the hidden `sluice-lab dev-broker` is `sluice dev-broker`, run
//! through the `sluicegate_cli` library, so no `sluice` binary is needed next to this one.
//!
//! Exit status: 0 ok (or a campaign that passed), 1 runtime failure (or a campaign that
//! failed), 2 usage error. A closed stdout (broken pipe) is not an error.

#![warn(missing_docs)]

mod app;
mod bench;
mod dice;
mod produce;
mod torture;

/// `sluice-lab` uses the same allocator as `sluice`, so that its figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    app::run(std::env::args_os())
}

/// Writes a line to stdout, returning the I/O error (a broken pipe ends the program quietly)
/// instead of panicking like `println!`.
macro_rules! out {
    ($($arg:tt)*) => {
        sluicegate_cli::tool::exit::write_line(format_args!($($arg)*))
    };
}
pub(crate) use out;
pub(crate) use sluicegate_cli::tool::runtime;
