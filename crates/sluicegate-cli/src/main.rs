//! `sluice`: the command-line face of Sluicegate, a thin binary over the
//! [`sluicegate_cli`] library (which your own binary can use to add handlers).
#![deny(unsafe_code)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluicegate_cli::Sluice::new().run()
}
