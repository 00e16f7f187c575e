//! The Kubernetes adapter: the cluster as a [`crate::run::driver::Source`] (watches), the
//! controller's writes as [`crate::run::outputs::Outputs`] (server-side apply, events, the
//! finalizer), and one writer among replicas (a Lease).
//!
//! - `source` — [`KubeSource`]: one watcher per kind into the snapshot.
//! - `outputs` — [`KubeOutputs`]: what a pass writes, only while leading.
//! - `lease` — leader election.
//! - `rbac` — every API call the adapter makes (the ClusterRole must grant exactly these).

pub mod lease;
pub mod outputs;
pub mod rbac;
pub mod source;

pub use outputs::KubeOutputs;
pub use source::KubeSource;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
