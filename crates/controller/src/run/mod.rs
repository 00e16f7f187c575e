//! The run loop: changes from a source become keys (`triggers`), keys wait in the work
//! queue with backoff (`queue`), and each key is one reconcile pass (`reconcile`: plan →
//! NB apply → the adapter's [`Outputs`]) run by the `driver`; `metrics` counts the passes.

pub mod driver;
pub mod metrics;
pub mod outputs;
pub mod queue;
pub mod reconcile;
pub mod triggers;

pub use outputs::{OutputError, Outputs};
