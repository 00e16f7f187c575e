//! Pure planning: from a snapshot of the cluster to what must exist — a gateway resolved
//! against its references (or the problem that stops it), its OVN rows, its Deployment, its
//! status and events, the VPC's BFD port, and the answer to "why does this Pod leave there".
//! No I/O: every function here is tested without a server.
//!
//! Read in this order: `snapshot` (the inputs) → `selector` → `tenancy` (who may steer what) → `context` (resolve) →
//! `conflict` (overlapping gateways) → `ovn`, `workload`, `drain`, `status`, `bfd_port`
//! (the outputs) → `explain` (the same resolution, told to a user).

pub mod bfd_port;
pub mod conflict;
pub mod context;
pub mod drain;
pub mod explain;
pub mod ovn;
pub mod selector;
pub mod snapshot;
pub mod stale;
pub mod status;
pub mod tenancy;
pub mod workload;
