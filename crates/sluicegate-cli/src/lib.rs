//! `sluice`, the command-line face of Sluicegate, as a library: build your own `sluice` with
//! handlers of your own.
//!
//! The `sluice` binary is [`Sluice::new().run()`](Sluice::run). A binary of yours registers
//! its handlers first and gets the same command line: the same subcommands, configuration
//! file and flags, with `type = "NAME"` in a task's `handler` table naming your handler.
//!
//! ```no_run
//! use serde::Deserialize;
//! use sluicegate_cli::{BoxError, Handler, Permanent, Record, Secret, Sluice};
//!
//! /// `handler = { type = "geocode", url = "...", api_key = { env = "GEOCODE_KEY" } }`
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct GeocodeSettings {
//!     url: String,
//!     api_key: Secret,
//! }
//!
//! struct Geocode {
//!     settings: GeocodeSettings,
//! }
//!
//! impl Handler for Geocode {
//!     async fn handle(&self, record: &Record) -> Result<(), BoxError> {
//!         let Some(address) = record.value.as_deref() else {
//!             return Err(Permanent::new("no address").into()); // to the dead letters
//!         };
//!         // ... call self.settings.url with self.settings.api_key.expose() ...
//!         # let _ = address;
//!         Ok(()) // an Err(...) is retried
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     Sluice::new()
//!         .handler("geocode", |settings: GeocodeSettings| Ok(Geocode { settings }))
//!         .run()
//! }
//! ```
//!
//! Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error. A closed stdout
//! (broken pipe) is not an error.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod app;
mod config;
mod console;
mod demo;
mod dev_broker;
mod dlq;
mod handlers;
mod observe;
mod offsets;
mod process;
mod produce;
mod secret;
mod status;
pub mod tool;

pub use app::Sluice;
pub use handlers::Handler;
pub use secret::Secret;
pub use sluicegate::pipeline::BoxError;
pub use sluicegate::retry::Permanent;
pub use sluicegate::Record;

/// Writes a line to stdout, returning the I/O error (a broken pipe ends the program quietly)
/// instead of panicking like `println!`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::tool::exit::write_line(format_args!($($arg)*))
    };
}
pub(crate) use out;
pub(crate) use tool::runtime;

/// The README's code blocks, compiled as doctests so the README cannot drift from the API.
/// They live in this crate because it sees both the library and the CLI's own API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
