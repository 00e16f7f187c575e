//! The embedded lab: the whole system on one machine with a real OVN — Northbound and
//! Southbound `ovsdb-server`s, `ovn-northd`, an OVS `ovsdb-server` and `ovs-vswitchd` (userspace
//! netdev datapath, inside its own network namespace) and `ovn-controller`, all under a
//! private state directory, stopped by pid and removed without leftovers.
//!
//! # Layout
//! - `ovn` — bringing OVN up and down.
//! - `topology` — the VPC router, subnets with their allow policies, Pods as namespaces.
//! - `error` — [`LabError`].
//!
//! The lab's kubelet, the external network and the `veg lab` commands are still to come
//! (issue 8).
#![warn(missing_docs)]

mod error;
pub mod ovn;
pub mod topology;

pub use error::LabError;
pub use ovn::{Ovn, OvnConfig};
pub use topology::{LabPod, LabSubnet};
