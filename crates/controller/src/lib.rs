//! The veg reconciler's brain: from a VpcEgressGateway and the cluster around it to the OVN
//! rows that steer Pods' traffic to it (and, later in this crate, its workload and status).
//!
//! # Layout
//! - `snapshot` — the read-only inputs (a trait; an in-memory implementation).
//! - `selector` — label selectors.
//! - `context` — a gateway resolved against the snapshot, or the problem that stops it.
//! - `ovn` — the NB rows of one gateway (pure).
//! - `workload` — its Deployment (pure).
//! - `drain` — graceful scale-down: out of the nexthops first, then scaled (pure).
//! - `conflict` — gateways of one VPC whose sources overlap (pure).
//! - `status` — the status and the events of its transitions (pure).
//! - `triggers` — which gateways a change of a Pod, Namespace, Subnet, … affects (pure).
//! - `nb` — applying them with veg-ovsdb: one transaction per gateway, cleanup on every router.
//! - `bfd_port` — a VPC's BFD port `bfd@<vpc>` and its HA_Chassis_Group.
//! - `reconcile` — one pass of one gateway through all of the above, with an adapter's outputs.
//! - `queue`, `driver` — the loop both adapters run: updates → keys → passes, with backoff.
//! - `files` — the file adapter of the embedded mode: manifests in, JSON decisions out.
//! - `kube` — the Kubernetes adapter: watches in, server-side apply out, finalizer, Lease.
//! - `metrics` — what the passes count; `explain` — why a Pod leaves (or not) and how.
#![warn(missing_docs)]

pub mod bfd_port;
pub mod conflict;
pub mod context;
pub mod drain;
pub mod driver;
pub mod explain;
pub mod files;
#[cfg(test)]
mod fixtures;
pub mod kube;
pub mod metrics;
pub mod nb;
/// Real ovsdb-servers for the unit tests that need one (the veg-ovsdb test harness).
#[cfg(test)]
#[path = "../../ovsdb/tests/server/mod.rs"]
mod test_server;

pub mod ovn;
pub mod queue;
pub mod reconcile;
pub mod selector;
pub mod snapshot;
pub mod status;
pub mod triggers;
pub mod workload;

pub use context::{GatewayInputs, Problem, resolve};
pub use ovn::{BfdMode, BfdModeSetting, GatewayOvn};
pub use reconcile::{Outcome, Outputs, ReconcileError, Reconciler};
pub use snapshot::{MemorySnapshot, Snapshot};
