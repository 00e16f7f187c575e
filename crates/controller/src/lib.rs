//! The veg reconciler: from a VpcEgressGateway and the cluster around it to the OVN rows that
//! steer Pods' traffic to it, its Deployment and its status.
//!
//! # Layers (each imports only from the ones below it)
//! - [`adapters`] — `kube` (watches in, server-side apply out, finalizer, Lease) and `files`
//!   (the embedded lab's manifests in, JSON decisions out).
//! - [`run`] — the loop: `triggers` (which gateways a change affects), `queue` (backoff),
//!   `driver`, `reconcile` (one pass), `outputs` (what a pass hands to its adapter), `metrics`.
//! - [`apply`] — desired rows → one NB transaction per gateway, cleanup on every router.
//! - [`plan`] — pure: snapshot → resolved gateway → OVN rows, Deployment, status, BFD port.
//!
//! `error` classifies failures of every layer (transient / conflict / invalid / fatal).
//! See `docs/architecture.md` for the path of one gateway from a watch event to its NB
//! transaction.

pub mod adapters;
pub mod apply;
pub mod error;
pub mod plan;
pub mod run;

#[cfg(test)]
mod fixtures;
/// Real ovsdb-servers for the unit tests that need one.
#[cfg(test)]
use veg_testkit::ovsdb as test_server;

pub use error::ErrorClass;
pub use plan::context::{GatewayInputs, Problem, resolve};
pub use plan::ovn::{BfdMode, BfdModeSetting, GatewayOvn};
pub use plan::snapshot::{MemorySnapshot, Snapshot};
pub use plan::tenancy::{NotPermitted, Tenancy, TenancyMode};
pub use run::outputs::{OutputError, Outputs};
pub use run::reconcile::{Outcome, ReconcileError, Reconciler};
