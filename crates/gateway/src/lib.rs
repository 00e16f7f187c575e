//! The data plane inside a veg gateway Pod.
//!
//! # Layout
//! - `plan` — the pure planner: the gateway's addresses and policies → the sysctls, ip rules,
//!   routes and nftables tables the Pod must have.
//! - `state` — what the kernel holds and the changes to the plan (pure diff, ownership rules).
//! - `nft` — the nftables objects, the atomic replace batch, the comparable read-back.
//! - `netlink`, `sysctl` — the kernel I/O.
//! - `config` — flags and the internal leg's addresses → the planner's input (pure).
//! - `apply` — observe, change, undo on failure, read back.
//! - `uplink` — the external gateway's reachability verdicts (pure).
//! - `agent`, `metrics` — `veg gateway init|run`: the loop, drift repair, uplink → bfdd.

pub mod agent;
mod apply;
pub mod capabilities;
pub mod config;
pub mod metrics;
mod netlink;
mod nft;
mod plan;
mod state;
mod sysctl;
mod uplink;

pub use apply::{ApplyError, Kernel, KernelError, MakeChange, Report};
pub use nft::{BFD_PORTS, BFDD_HTTP_PORT, GATEWAY_HTTP_PORT};
pub use plan::{FamilyConfig, GatewayConfig, Plan, PlanError, plan};
pub use state::Change;
