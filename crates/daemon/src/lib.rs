//! The shell every veg daemon (`veg bfdd`, `veg gateway run`, `veg controller`, `veg monitor`)
//! shares, so each has the same endpoint, the same health semantics and the same shutdown.
//!
//! # Layout
//! - `http` — `/metrics`, `/livez`, `/readyz` and, where a daemon offers it, `PUT /log-level`.
//! - `task` — [`Task`]: a spawned task aborted when its handle is dropped.
//! - `shutdown` — [`shutdown_signal`]: SIGTERM or SIGINT as a future.

pub mod http;
mod shutdown;
mod task;

pub use http::{Endpoint, Health, InvalidLevel, SetLevel};
pub use shutdown::shutdown_signal;
pub use task::Task;
