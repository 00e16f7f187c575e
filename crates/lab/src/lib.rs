//! The embedded lab: the whole system on one machine with a real OVN — Northbound and
//! Southbound `ovsdb-server`s, `ovn-northd`, an OVS `ovsdb-server` and `ovs-vswitchd` (userspace
//! netdev datapath, inside its own network namespace) and `ovn-controller`, all under a
//! private state directory, stopped by pid and removed without leftovers.
//!
//! # Layout
//! - `install` — which OVN build runs (Kube-OVN's or Debian's): its programs and schemas.
//! - `ovn` — bringing OVN up and down: the central databases and northd, one chassis per node.
//! - `chassis` — a node's chassis: its OVS and ovn-controller, the Geneve underlay.
//! - `topology` — the VPC router, subnets with their allow policies, Pods as namespaces.
//! - `external` — the external network (a bridge) and gateway Pods' second leg.
//! - `kubelet` — Deployments (the controller's gateways, veg's own from an overlay) → Pods
//!   with their containers as processes; `podspec` what it reads of a Pod template (pure);
//!   `scheduler` which node a Pod goes to (pure).
//! - `deploy` — an overlay of `deploy/` rendered, its controller and monitor as the lab runs
//!   them.
//! - `podsecurity` — what a stock cluster grants a Pod: Pod Security levels, the sysctl
//!   allowlist, the capabilities a container process really gets (pure).
//! - `api` — the lab's API objects (apply, delete, scale).
//! - `inputs` — the manifests and the topology file a lab is made from.
//! - `session` — a whole lab from them ([`Lab`]).
//! - `command` — running programs and writing files, failures named by step.
//! - `error` — [`LabError`].
//!

pub mod api;
pub mod chassis;
mod command;
pub mod deploy;
mod error;
mod external;
mod inputs;
pub mod install;
mod kubelet;
pub mod ovn;
pub mod podsecurity;
mod podspec;
pub mod probe;
pub mod readiness;
mod scheduler;
pub mod session;
mod topology;

pub use error::LabError;
pub use install::{OvnBuild, OvnInstall};
pub use ovn::{Ovn, OvnConfig};
pub use session::{Lab, LabOptions, LabState, Topology};
pub use topology::{LabPod, LabSubnet};
